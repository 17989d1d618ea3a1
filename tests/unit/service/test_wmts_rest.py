"""WMTS RESTful: URL templates, nw rows, dimensions and 4xx reports for malformed paths."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from tile_service_helpers import (
    PNG,
    FakeTileManager,
    aligned_geodetic,
    coords_of,
    global_geodetic,
    global_webmercator,
    make_client,
    make_layer,
    mutated_paths,
)

from mapproxy.errors import ConfigurationError, SourceError
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.service.base import tile_etag
from mapproxy.service.wmts import WMTSRestService
from mapproxy.service.wmts.service import RestRoute

OWS = "{http://www.opengis.net/ows/1.1}"
OUTSIDE = "The requested tile is outside the bounding box of the tile map."


@pytest.fixture
def layers():
    return {
        "merc": make_layer("osm", global_webmercator()),
        "geo2": make_layer("osm", aligned_geodetic()),
        "geodetic": make_layer("osm", global_geodetic()),
        "jpeg": make_layer("photo", aligned_geodetic(), format="image/jpeg", extension="jpeg"),
    }


@pytest.fixture
def client(layers):
    return make_client(WMTSRestService(list(layers.values()), {}))


def exception_of(response) -> tuple[str, str]:
    assert response.headers["Content-Type"] == "text/xml"
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    root = ET.fromstring(response.data)
    assert root.tag == f"{OWS}ExceptionReport"
    exception = root.find(f"{OWS}Exception")
    return exception.get("exceptionCode"), exception.findtext(f"{OWS}ExceptionText")


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        ("/wmts/osm/GLOBAL_WEBMERCATOR/1/0/0.png", "merc", TileCoord(0, 0, 1)),
        ("/wmts/osm/GLOBAL_WEBMERCATOR/01/1/0.png", "merc", TileCoord(1, 0, 1)),
        ("/wmts/osm/GLOBAL_WEBMERCATOR/00/0/0.png", "merc", TileCoord(0, 0, 0)),
        ("/wmts/osm/GLOBAL_WEBMERCATOR/19/524287/1.png", "merc", TileCoord(524287, 1, 19)),
        # sw grid: TileRow counts from the north
        ("/wmts/osm/geo2/1/1/0.png", "geo2", TileCoord(1, 1, 1)),
        ("/wmts/osm/geo2/1/1/1.png", "geo2", TileCoord(1, 0, 1)),
        ("/wmts/osm/geo2/01/1/0.png", "geo2", TileCoord(1, 1, 1)),
        ("/wmts/osm/geo2/001/0/0.png", "geo2", TileCoord(0, 1, 1)),
        ("/wmts/osm/geo2/2/7/3.png", "geo2", TileCoord(7, 0, 2)),
        ("/wmts/osm/geo2/1/0/0.png/", "geo2", TileCoord(0, 1, 1)),
        ("/wmts/osm/geo2/1/0/0.png?foo=bar", "geo2", TileCoord(0, 1, 1)),
        ("/wmts/photo/geo2/0/1/0.jpeg", "jpeg", TileCoord(1, 0, 0)),
    ],
)
def test_tile_coordinates(client, layers, path, key, expected):
    response = client.get(path)
    assert response.status_code == 200, response.data
    assert response.data == PNG
    assert response.headers["Content-Type"] == layers[key].format
    assert coords_of(layers[key]) == [expected]


def test_tile_cache_headers_and_conditional_get(layers):
    client = make_client(WMTSRestService(list(layers.values()), {}, max_tile_age_seconds=10))
    response = client.get("/wmts/osm/geo2/1/0/0.png")
    etag = tile_etag(1700000000.5, len(PNG))
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-control"] == "public, max-age=10, s-maxage=10"
    cached = client.get("/wmts/osm/geo2/1/0/0.png", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.data == b""
    assert "Content-Type" not in cached.headers


@pytest.mark.parametrize(
    ("path", "status", "code", "message"),
    [
        ("/wmts/foo/geo2/1/0/0.png", 400, "InvalidParameterValue", "unknown layer: foo"),
        ("/wmts/osm/foo/1/0/0.png", 400, "InvalidParameterValue", "unknown tilematrixset: foo"),
        (
            "/wmts/osm/GLOBAL_GEODETIC/1/0/0.png",
            400,
            "InvalidParameterValue",
            "unknown tilematrixset: GLOBAL_GEODETIC",
        ),
        (
            "/wmts/osm/geo2/1/0/0.jpeg",
            400,
            "InvalidParameterValue",
            "invalid format (jpeg). this tile set only supports (png)",
        ),
        ("/wmts/osm/geo2/1/1/2.png", 400, "TileOutOfRange", OUTSIDE),
        ("/wmts/osm/geo2/1/4/0.png", 400, "TileOutOfRange", OUTSIDE),
        ("/wmts/osm/geo2/1/-1/0.png", 400, "TileOutOfRange", OUTSIDE),
        ("/wmts/osm/geo2/1/0/-1.png", 400, "TileOutOfRange", OUTSIDE),
        ("/wmts/osm/geo2/-1/0/0.png", 400, "TileOutOfRange", OUTSIDE),
        ("/wmts/osm/geo2/3/0/0.png", 400, "TileOutOfRange", OUTSIDE),
        ("/wmts/osm/geo2/1/" + "8" * 5000 + "/0.png", 400, "TileOutOfRange", OUTSIDE),
        ("/wmts/osm/geo2/1/1/1/1/1.txt", 400, "InvalidParameterValue", "unknown infoformat: txt"),
        # malformed paths: 4xx ExceptionReports instead of the reference's 500 text/plain
        ("/wmts", 400, "InvalidParameterValue", "invalid request (/wmts)"),
        ("/wmts/", 400, "InvalidParameterValue", "invalid request (/wmts/)"),
        ("/wmts/1.0.0", 400, "InvalidParameterValue", "invalid request (/wmts/1.0.0)"),
        (
            "/wmts/1.0.0/wmtscapabilities.xml",
            400,
            "InvalidParameterValue",
            "invalid request (/wmts/1.0.0/wmtscapabilities.xml)",
        ),
        (
            "/wmts/osm/geo2/1/0/0",
            400,
            "InvalidParameterValue",
            "invalid request (/wmts/osm/geo2/1/0/0)",
        ),
        (
            "/wmts/osm/geo2/a/0/0.png",
            400,
            "InvalidParameterValue",
            "invalid request (/wmts/osm/geo2/a/0/0.png)",
        ),
        (
            "/wmts/osm/geo2/1/0/0/0.png",
            400,
            "InvalidParameterValue",
            "invalid request (/wmts/osm/geo2/1/0/0/0.png)",
        ),
    ],
)
def test_errors(client, layers, path, status, code, message):
    response = client.get(path)
    assert response.status_code == status
    assert exception_of(response) == (code, message)
    assert all(coords_of(layer) == [] for layer in layers.values())


def test_exception_report_exact_text(client):
    response = client.get("/wmts/osm/geo2/1/1/2.png")
    assert response.get_data(as_text=True) == (
        '<?xml version="1.0"?>\n'
        '<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows/1.1"\n'
        '  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        '  xsi:schemaLocation="http://www.opengis.net/ows/1.1 '
        'http://schemas.opengis.net/ows/1.1.0/owsExceptionReport.xsd"\n'
        '  version="1.0.0" xml:lang="en">\n'
        '  <ows:Exception exceptionCode="TileOutOfRange">\n'
        f"    <ows:ExceptionText>{OUTSIDE}</ows:ExceptionText>\n"
        "  </ows:Exception>\n"
        "</ows:ExceptionReport>\n"
    )


def test_source_errors_are_500():
    layer = make_layer("osm", global_webmercator(), manager=FakeTileManager(SourceError("down")))
    response = make_client(WMTSRestService([layer], {})).get(
        "/wmts/osm/GLOBAL_WEBMERCATOR/0/0/0.png"
    )
    assert response.status_code == 500
    assert exception_of(response) == ("NoApplicableCode", "down")


def test_custom_template_with_style_and_dimension(layers):
    template = (
        "/{Layer}/{Style}/{Time}/{TileMatrixSet}-{TileMatrix}-{TileCol}-{TileRow}/tile.{Format}"
    )
    client = make_client(WMTSRestService(list(layers.values()), {}, template=template))
    response = client.get("/wmts/osm/default/default/geo2-1-0-0/tile.png")
    assert response.status_code == 200
    assert (
        client.get("/wmts/osm/anything/default/GLOBAL_WEBMERCATOR-2-3-1/tile.png").status_code
        == 200
    )
    assert coords_of(layers["geo2"]) == [TileCoord(0, 1, 1)]
    assert coords_of(layers["merc"]) == [TileCoord(3, 1, 2)]
    for value in ("2020", "20:20"):
        response = client.get(f"/wmts/osm/foo/{value}/geo2-1-0-0/tile.png")
        assert response.status_code == 400
        assert exception_of(response) == ("InvalidParameterValue", "unknown dimension: time")
    response = client.get("/wmts/osm/GLOBAL_WEBMERCATOR/1/0/0.png")
    assert response.status_code == 400


def test_template_without_format_accepts_any_layer_format(layers):
    template = "/tiles/{TileMatrixSet}/{Layer}/{TileMatrix}/{TileRow}/{TileCol}"
    client = make_client(WMTSRestService(list(layers.values()), {}, template=template))
    response = client.get("/wmts/tiles/geo2/photo/1/0/3")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert coords_of(layers["jpeg"]) == [TileCoord(3, 1, 1)]


def test_double_braces_are_accepted(layers):
    template = "/{{Layer}}/{{TileMatrixSet}}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.{{Format}}"
    service = WMTSRestService(list(layers.values()), {}, template=template)
    assert service.template == "/{Layer}/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}.{Format}"
    assert make_client(service).get("/wmts/osm/geo2/1/0/0.png").status_code == 200


def test_repeated_variables_must_repeat_the_value():
    route = RestRoute("/{Layer}/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}/{Layer}.png", ())
    assert route.regex.match("/a/g/1/0/0/a.png")
    assert not route.regex.match("/a/g/1/0/0/b.png")


def test_templates_need_the_tile_variables(layers):
    with pytest.raises(ConfigurationError, match=r"\{TileRow\}"):
        WMTSRestService(
            list(layers.values()),
            {},
            template="/{Layer}/{TileMatrixSet}/{TileMatrix}/{TileCol}.png",
        )


def test_template_literals_are_not_regex_syntax(layers):
    template = "/x.y+/{Layer}/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}.{Format}"
    client = make_client(WMTSRestService(list(layers.values()), {}, template=template))
    assert client.get("/wmts/x.y+/osm/geo2/1/0/0.png").status_code == 200
    assert client.get("/wmts/xzyy/osm/geo2/1/0/0.png").status_code == 400


def test_malformed_paths_never_give_server_errors(client):
    seeds = [
        "/wmts/1.0.0/WMTSCapabilities.xml",
        "/wmts/osm/GLOBAL_WEBMERCATOR/1/0/0.png",
        "/wmts/osm/geo2/02/3/1.png",
        "/wmts/photo/geo2/0/1/0.jpeg",
        "/wmts/osm/geo2/1/0/0/5/5.xml",
    ]
    checked = 0
    for path in mutated_paths(seeds, 600, seed=9001):
        if not re.match(r"^/wmts(?:$|[/?])", path):
            continue
        response = client.get(path)
        checked += 1
        assert response.status_code < 500, path
        if response.status_code != 200:
            assert response.status_code == 400, path
            exception_of(response)
    assert checked > 300
