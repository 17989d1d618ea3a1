"""WMTS KVP: GetTile coordinates, GetCapabilities URLs and OWS exception reports."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

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
)

from mapproxy.errors import SourceError
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.service.base import tile_etag
from mapproxy.service.wmts import WMTSService

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
    return make_client(WMTSService(list(layers.values()), {"title": "KVP"}))


def get_tile(client, path="/service", **overrides):
    params = {
        "SERVICE": "WMTS",
        "REQUEST": "GetTile",
        "VERSION": "1.0.0",
        "LAYER": "osm",
        "STYLE": "default",
        "TILEMATRIXSET": "GLOBAL_WEBMERCATOR",
        "TILEMATRIX": "1",
        "TILEROW": "0",
        "TILECOL": "1",
        "FORMAT": "image/png",
    }
    params.update(overrides)
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return client.get(f"{path}?{query}")


def exception_of(response) -> tuple[str, str]:
    assert response.headers["Content-Type"] == "text/xml"
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    root = ET.fromstring(response.data)
    assert root.tag == f"{OWS}ExceptionReport"
    assert root.get("version") == "1.0.0"
    exception = root.find(f"{OWS}Exception")
    return exception.get("exceptionCode"), exception.findtext(f"{OWS}ExceptionText")


@pytest.mark.parametrize(
    ("overrides", "key", "expected"),
    [
        ({}, "merc", TileCoord(1, 0, 1)),
        ({"TILEMATRIX": "01", "TILEROW": "1", "TILECOL": "0"}, "merc", TileCoord(0, 1, 1)),
        (
            {"TILEMATRIX": "19", "TILEROW": "524287", "TILECOL": "3"},
            "merc",
            TileCoord(3, 524287, 19),
        ),
        # sw grid: WMTS rows count from the north, internal rows from the south
        ({"TILEMATRIXSET": "geo2"}, "geo2", TileCoord(1, 1, 1)),
        ({"TILEMATRIXSET": "geo2", "TILEROW": "1"}, "geo2", TileCoord(1, 0, 1)),
        ({"TILEMATRIXSET": "geo2", "TILEMATRIX": "0", "TILECOL": "1"}, "geo2", TileCoord(1, 0, 0)),
        ({"TILEMATRIXSET": "geo2", "TILEMATRIX": "2", "TILEROW": "3"}, "geo2", TileCoord(1, 0, 2)),
        # format spellings
        ({"FORMAT": "png"}, "merc", TileCoord(1, 0, 1)),
        ({"FORMAT": "image/png; mode=8bit"}, "merc", TileCoord(1, 0, 1)),
        ({"FORMAT": ""}, "merc", TileCoord(1, 0, 1)),
        (
            {"LAYER": "photo", "TILEMATRIXSET": "geo2", "FORMAT": "image/jpeg"},
            "jpeg",
            TileCoord(1, 1, 1),
        ),
        # parameter names are case-insensitive; unknown parameters are ignored
        ({"TIME": "2020", "STYLES": ""}, "merc", TileCoord(1, 0, 1)),
    ],
)
def test_get_tile_coordinates(client, layers, overrides, key, expected):
    response = get_tile(client, **overrides)
    assert response.status_code == 200, response.data
    assert response.data == PNG
    assert response.headers["Content-Type"] == layers[key].format
    assert coords_of(layers[key]) == [expected]


def test_lower_case_parameter_names(client, layers):
    query = (
        "service=wmts&request=gettile&version=1.0.0&layer=osm&style=&tilematrixset=geo2"
        "&tilematrix=1&tilerow=0&tilecol=1&format=image/png"
    )
    assert client.get(f"/ows?{query}").status_code == 200
    assert coords_of(layers["geo2"]) == [TileCoord(1, 1, 1)]


def test_tile_cache_headers_and_conditional_get(layers):
    client = make_client(WMTSService(list(layers.values()), {}, max_tile_age_seconds=60))
    response = get_tile(client)
    etag = tile_etag(1700000000.5, len(PNG))
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-control"] == "public, max-age=60, s-maxage=60"
    assert "Last-modified" in response.headers
    cached = client.get(
        "/service?" + response.request.query_string.decode(), headers={"If-None-Match": etag}
    )
    assert cached.status_code == 304
    assert cached.data == b""


@pytest.mark.parametrize(
    ("overrides", "status", "code", "message"),
    [
        ({"LAYER": "foo"}, 400, "InvalidParameterValue", "unknown layer: foo"),
        ({"LAYER": ""}, 400, "InvalidParameterValue", "unknown layer: "),
        ({"TILEMATRIXSET": "foo"}, 400, "InvalidParameterValue", "unknown tilematrixset: foo"),
        # GLOBAL_GEODETIC cannot be addressed from the north-west: not published
        (
            {"TILEMATRIXSET": "GLOBAL_GEODETIC"},
            400,
            "InvalidParameterValue",
            "unknown tilematrixset: GLOBAL_GEODETIC",
        ),
        (
            {"FORMAT": "image/jpeg"},
            400,
            "InvalidParameterValue",
            "invalid format (jpeg). this tile set only supports (png)",
        ),
        ({"TILEMATRIX": "20"}, 400, "TileOutOfRange", OUTSIDE),
        ({"TILEMATRIX": "-1"}, 400, "TileOutOfRange", OUTSIDE),
        ({"TILEROW": "2"}, 400, "TileOutOfRange", OUTSIDE),
        ({"TILEROW": "-1"}, 400, "TileOutOfRange", OUTSIDE),
        ({"TILECOL": "-1"}, 400, "TileOutOfRange", OUTSIDE),
        ({"TILECOL": "9" * 5000}, 400, "TileOutOfRange", OUTSIDE),
        ({"TILEMATRIXSET": "geo2", "TILEROW": "2"}, 400, "TileOutOfRange", OUTSIDE),
        # malformed numbers are client errors (the reference answers 500 internal error)
        ({"TILEMATRIX": "x"}, 400, "InvalidParameterValue", "invalid TileMatrix: x"),
        ({"TILEROW": "1.5"}, 400, "InvalidParameterValue", "invalid TileRow: 1.5"),
        ({"TILECOL": ""}, 400, "InvalidParameterValue", "invalid TileCol: "),
        ({"TILECOL": "\u0661"}, 400, "InvalidParameterValue", "invalid TileCol: \u0661"),
        (
            {"TILEMATRIX": "EPSG:3857:1"},
            400,
            "InvalidParameterValue",
            "invalid TileMatrix: EPSG:3857:1",
        ),
        # documented reference behaviour: 500 for these
        ({"TILECOL": None}, 500, "NoApplicableCode", "missing parameters ['tilecol']"),
        (
            {"VERSION": None, "STYLE": None, "FORMAT": None},
            500,
            "NoApplicableCode",
            "missing parameters ['version', 'style', 'format']",
        ),
        ({"STYLES": "foo"}, 500, "StyleNotDefined", "unsupported styles: foo"),
        ({"REQUEST": "Foo"}, 500, "NoApplicableCode", "unknown WMTS request type 'None'"),
        ({"REQUEST": None}, 500, "NoApplicableCode", "unknown WMTS request type 'None'"),
    ],
)
def test_get_tile_errors(client, layers, overrides, status, code, message):
    response = get_tile(client, **overrides)
    assert response.status_code == status
    assert exception_of(response) == (code, message)
    assert all(coords_of(layer) == [] for layer in layers.values())


def test_missing_parameters_report_exact_text(client):
    response = client.get("/service?SERVICE=WMTS&REQUEST=GetTile")
    assert response.status_code == 500
    assert response.get_data(as_text=True) == (
        '<?xml version="1.0"?>\n'
        '<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows/1.1"\n'
        '  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        '  xsi:schemaLocation="http://www.opengis.net/ows/1.1 '
        'http://schemas.opengis.net/ows/1.1.0/owsExceptionReport.xsd"\n'
        '  version="1.0.0" xml:lang="en">\n'
        '  <ows:Exception exceptionCode="NoApplicableCode">\n'
        "    <ows:ExceptionText>missing parameters [&#x27;version&#x27;, &#x27;layer&#x27;, "
        "&#x27;style&#x27;, &#x27;tilematrixset&#x27;, &#x27;tilematrix&#x27;, "
        "&#x27;tilerow&#x27;, &#x27;tilecol&#x27;, &#x27;format&#x27;]</ows:ExceptionText>\n"
        "  </ows:Exception>\n"
        "</ows:ExceptionReport>\n"
    )


def test_malformed_numbers_name_the_parameter(client):
    response = get_tile(client, TILEROW="a")
    root = ET.fromstring(response.data)
    assert root.find(f"{OWS}Exception").get("locator") == "tilerow"


def test_source_errors_are_500_no_applicable_code():
    layer = make_layer("osm", global_webmercator(), manager=FakeTileManager(SourceError("boom")))
    response = get_tile(make_client(WMTSService([layer], {})))
    assert response.status_code == 500
    assert exception_of(response) == ("NoApplicableCode", "boom")


def test_featureinfo_without_formats(client):
    response = get_tile(client, REQUEST="GetFeatureInfo")
    assert response.status_code == 500
    assert exception_of(response) == (
        "NoApplicableCode",
        "missing parameters ['infoformat', 'i', 'j']",
    )
    response = get_tile(client, REQUEST="GetFeatureInfo", INFOFORMAT="text/plain", I="1", J="1")
    assert response.status_code == 400
    assert exception_of(response) == ("InvalidParameterValue", "unknown infoformat: text/plain")


@pytest.mark.parametrize(
    ("path", "href"),
    [
        ("/service", "http://localhost/service?"),
        ("/ows", "http://localhost/ows?"),
        ("/service/foo", "http://localhost/service/foo?"),
    ],
)
def test_capabilities_point_to_the_requested_endpoint(client, path, href):
    response = client.get(f"{path}?SERVICE=WMTS&REQUEST=getcapabilities")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/xml"
    root = ET.fromstring(response.data)
    gets = root.findall(f".//{OWS}Get")
    assert [g.get("{http://www.w3.org/1999/xlink}href") for g in gets] == [href] * 3
    assert [v.text for v in root.iter(f"{OWS}Value")] == ["KVP"] * 3
    text = response.get_data(as_text=True)
    assert "ResourceURL" not in text
    assert "ServiceMetadataURL" not in text
    assert text.endswith("  </Contents>\n</Capabilities>")


def test_capabilities_urls_follow_proxy_headers(client):
    response = client.get(
        "/service?SERVICE=WMTS&REQUEST=GetCapabilities",
        headers={"X-Forwarded-Host": "example.org", "X-Forwarded-Proto": "https"},
        base_url="http://localhost/mapproxy",
    )
    root = ET.fromstring(response.data)
    href = root.find(f".//{OWS}Get").get("{http://www.w3.org/1999/xlink}href")
    assert href == "https://example.org/mapproxy/service?"


def test_malformed_parameter_values_never_give_server_errors(client):
    rng = random.Random(4242)
    alphabet = "0123456789-+. abcxyzEPSG:/;=%_é\x00\t"
    names = [
        "LAYER",
        "TILEMATRIXSET",
        "TILEMATRIX",
        "TILEROW",
        "TILECOL",
        "FORMAT",
        "STYLE",
        "VERSION",
    ]
    valid = {
        "LAYER": ["osm", "photo"],
        "TILEMATRIXSET": ["GLOBAL_WEBMERCATOR", "geo2", "GLOBAL_GEODETIC"],
        "TILEMATRIX": ["0", "1", "19"],
        "TILEROW": ["0", "1"],
        "TILECOL": ["0", "1"],
        "FORMAT": ["image/png", "image/jpeg", "png"],
        "STYLE": ["", "default"],
        "VERSION": ["1.0.0"],
    }
    for _ in range(400):
        overrides = {name: rng.choice(valid[name]) for name in names}
        for name in rng.sample(names, rng.randint(1, 3)):
            if rng.random() < 0.5:
                overrides[name] = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
            else:
                overrides[name] = str(rng.choice([-1, 10**30, -(10**30), 2**63, 99]))
        response = get_tile(client, **overrides)
        assert response.status_code < 500, (overrides, response.data)
        if response.status_code != 200:
            assert response.status_code == 400
            exception_of(response)
