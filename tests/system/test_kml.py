"""The KML service (``/kml``): super-overlay documents, tile images, errors, authorization.

Expected numbers were observed on MapProxy 7.0.0 for the same configuration.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from PIL import Image
from werkzeug.test import Client

KML = "{http://www.opengis.net/kml/2.2}"
KML_TYPE = "application/vnd.google-earth.kml+xml"

CONFIG = """
globals:
  cache:
    base_dir: {base_dir}
services:
  kml:
  tms:
layers:
  - name: osm
    title: OSM <&> "x"
    sources: [c_merc]
  - name: geo
    title: Geo
    sources: [c_geo]
  - name: both
    title: Both
    sources: [c_both]
  - name: a&b
    title: Ampersand
    sources: [c_merc]
caches:
  c_merc:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
  c_geo:
    grids: [GLOBAL_GEODETIC]
    sources: [dbg]
    format: image/jpeg
  c_both:
    grids: [GLOBAL_MERCATOR, GLOBAL_GEODETIC]
    sources: [dbg]
sources:
  dbg:
    type: debug
"""


@pytest.fixture
def app(make_app: Callable[..., Client], tmp_path: Path) -> Client:
    return make_app(CONFIG.format(base_dir=tmp_path / "cache_data"))


def parse(response: Any) -> etree._Element:
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"] == KML_TYPE
    root = etree.fromstring(response.data)
    assert root.tag == f"{KML}kml"
    return root


def box(element: etree._Element) -> tuple[str, str, str, str]:
    """(north, south, east, west) texts of a LatLonAltBox/LatLonBox."""
    return tuple(element.findtext(f"{KML}{side}") for side in ("north", "south", "east", "west"))  # type: ignore[return-value]


def links(root: etree._Element) -> list[str]:
    return [link.findtext(f"{KML}Link/{KML}href") for link in root.iter(f"{KML}NetworkLink")]  # type: ignore[misc]


def overlays(root: etree._Element) -> list[str]:
    return [o.findtext(f"{KML}Icon/{KML}href") for o in root.iter(f"{KML}GroundOverlay")]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/kml/geo", "geo"),
        ("/kml/geo/", "geo"),
        ("/kml/geo_EPSG4326", "geo_EPSG4326"),
        ("/kml/geo/EPSG4326", "geo"),
        ("/kml/geo/EPSG4326/", "geo"),
        ("/kml/geo/EPSG4326/0/0/0.kml", "geo"),
        ("/kml/geo/EPSG4326/0/0/0.kml/", "geo"),
    ],
)
def test_initial_document_url_forms(app: Client, path: str, name: str):
    root = parse(app.get(path))
    document = root.find(f"{KML}Document")
    assert document is not None
    assert document.findtext(f"{KML}name") == name
    region = document.find(f"{KML}Region/{KML}LatLonAltBox")
    assert region is not None
    assert box(region) == ("90.000000", "-90.000000", "180.000000", "-180.000000")
    # GLOBAL_GEODETIC level 1 has 2x1 tiles: only the existing subtiles are linked
    assert links(root) == [
        "http://localhost/kml/geo/EPSG4326/1/0/0.kml",
        "http://localhost/kml/geo/EPSG4326/1/1/0.kml",
    ]
    assert overlays(root) == [
        "http://localhost/kml/geo/EPSG4326/1/0/0.jpeg",
        "http://localhost/kml/geo/EPSG4326/1/1/0.jpeg",
    ]
    names = [n.findtext(f"{KML}name") for n in root.iter(f"{KML}NetworkLink")]
    assert names == [f"{name} - (0, 0, 1)", f"{name} - (1, 0, 1)"]


def test_layer_without_grid_prefers_epsg4326_then_900913(app: Client):
    assert links(parse(app.get("/kml/both")))[0] == "http://localhost/kml/both/EPSG4326/1/0/0.kml"
    assert links(parse(app.get("/kml/both/EPSG900913")))[0] == (
        "http://localhost/kml/both/EPSG900913/1/0/1.kml"
    )
    # EPSG:3857 grids are only reachable with their grid part
    assert app.get("/kml/osm").status_code == 404
    assert app.get("/kml/osm/EPSG3857").status_code == 200


def test_webmercator_tile_document_regions_and_lods(app: Client):
    root = parse(app.get("/kml/osm/EPSG3857/1/0/1.kml"))
    document = root.find(f"{KML}Document")
    assert document is not None
    region = document.find(f"{KML}Region/{KML}LatLonAltBox")
    assert region is not None
    # the web mercator edge is shown as 90 degrees, like the reference
    assert box(region) == ("90.000000", "0.000000", "0.000000", "-180.000000")
    link_elements = list(root.iter(f"{KML}NetworkLink"))
    assert [box(e.find(f"{KML}Region/{KML}LatLonAltBox")) for e in link_elements] == [  # type: ignore[arg-type]
        ("90.000000", "66.513260", "-90.000000", "-180.000000"),
        ("90.000000", "66.513260", "0.000000", "-90.000000"),
        ("66.513260", "0.000000", "-90.000000", "-180.000000"),
        ("66.513260", "0.000000", "0.000000", "-90.000000"),
    ]
    for link in link_elements:
        assert link.findtext(f"{KML}Region/{KML}Lod/{KML}minLodPixels") == "128"
        assert link.findtext(f"{KML}Region/{KML}Lod/{KML}maxLodPixels") == "-1"
        assert link.findtext(f"{KML}Link/{KML}viewRefreshMode") == "onRegion"
    assert links(root) == [
        f"http://localhost/kml/osm/EPSG3857/2/{x}/{y}.kml"
        for x, y in ((0, 3), (1, 3), (0, 2), (1, 2))
    ]
    ground = list(root.iter(f"{KML}GroundOverlay"))
    assert [g.findtext(f"{KML}name") for g in ground] == [
        "(0, 3, 2)",
        "(1, 3, 2)",
        "(0, 2, 2)",
        "(1, 2, 2)",
    ]
    for overlay, link in zip(ground, link_elements, strict=True):
        lod = overlay.find(f"{KML}Region/{KML}Lod")
        assert lod is not None
        assert lod.findtext(f"{KML}minLodPixels") == "128"
        assert lod.findtext(f"{KML}maxLodPixels") == "768"
        assert overlay.findtext(f"{KML}drawOrder") == "2"
        lat_lon_box = overlay.find(f"{KML}LatLonBox")
        assert lat_lon_box is not None
        assert box(lat_lon_box) == box(link.find(f"{KML}Region/{KML}LatLonAltBox"))  # type: ignore[arg-type]
    assert overlays(root)[0] == "http://localhost/kml/osm/EPSG3857/2/0/3.png"


def test_geodetic_tile_document_regions(app: Client):
    root = parse(app.get("/kml/geo/EPSG4326/3/5/2.kml"))
    region = root.find(f"{KML}Document/{KML}Region/{KML}LatLonAltBox")
    assert region is not None
    # GLOBAL_GEODETIC level 0 is one 360x360 degree tile, so level 3 tiles span 45 degrees
    assert box(region) == ("45.000000", "0.000000", "90.000000", "45.000000")
    boxes = [
        box(e.find(f"{KML}Region/{KML}LatLonAltBox"))  # type: ignore[arg-type]
        for e in root.iter(f"{KML}NetworkLink")
    ]
    assert boxes == [
        ("45.000000", "22.500000", "67.500000", "45.000000"),
        ("45.000000", "22.500000", "90.000000", "67.500000"),
        ("22.500000", "0.000000", "67.500000", "45.000000"),
        ("22.500000", "0.000000", "90.000000", "67.500000"),
    ]
    assert links(root) == [
        f"http://localhost/kml/geo/EPSG4326/4/{x}/{y}.kml"
        for x, y in ((10, 5), (11, 5), (10, 4), (11, 4))
    ]


def test_urls_follow_proxy_headers(app: Client):
    headers = {
        "X-Script-Name": "/pre",
        "X-Forwarded-Host": "ex.org, other",
        "X-Forwarded-Proto": "https",
    }
    root = parse(app.get("/pre/kml/geo", headers=headers))
    assert links(root)[0] == "https://ex.org/pre/kml/geo/EPSG4326/1/0/0.kml"
    assert overlays(root)[1] == "https://ex.org/pre/kml/geo/EPSG4326/1/1/0.jpeg"


def test_names_and_urls_are_escaped(app: Client):
    response = app.get("/kml/a%26b/EPSG3857")
    assert b"<name>a&amp;b</name>" in response.data
    root = parse(response)
    assert root.findtext(f"{KML}Document/{KML}name") == "a&b"
    assert links(root)[0] == "http://localhost/kml/a%26b/EPSG3857/1/0/1.kml"
    assert app.get("/kml/a%3Cb").data == b"unknown layer: a<b"


@pytest.mark.parametrize(
    ("kml_path", "tiles_path"),
    [
        ("/kml/osm/EPSG3857/1/0/1.png", "/tiles/osm/EPSG3857/1/0/1.png?origin=sw"),
        ("/kml/osm/EPSG3857/2/3/0.png", "/tiles/osm/EPSG3857/2/3/0.png?origin=sw"),
        ("/kml/geo/EPSG4326/1/1/0.jpeg", "/tiles/geo/EPSG4326/1/1/0.jpeg?origin=sw"),
        ("/kml/geo/EPSG4326/0/0/0.jpeg", "/tiles/geo/EPSG4326/0/0/0.jpeg?origin=sw"),
        # TMS level n is internal level n + 1 for the global profiles; KML has no offset
        ("/kml/geo/EPSG4326/2/3/1.jpeg", "/tms/1.0.0/geo/EPSG4326/1/3/1.jpeg"),
    ],
)
def test_tile_coordinates_are_internal_levels_with_sw_rows(
    app: Client, kml_path: str, tiles_path: str
):
    kml_tile = app.get(kml_path)
    assert kml_tile.status_code == 200
    assert kml_tile.data == app.get(tiles_path).data


def test_tile_images_have_cache_headers_and_304(app: Client):
    response = app.get("/kml/geo/EPSG4326/1/0/0.jpeg")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Cache-control"] == "public, max-age=259200, s-maxage=259200"
    assert "Last-modified" in response.headers
    etag = response.headers["ETag"]
    again = app.get("/kml/geo/EPSG4326/1/0/0.jpeg", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""


def test_documents_have_md5_etag_max_age_and_304(app: Client):
    response = app.get("/kml/geo")
    etag = response.headers["ETag"]
    assert etag == hashlib.md5(response.data).hexdigest()
    assert response.headers["Cache-control"] == "public, max-age=259200, s-maxage=259200"
    assert "Last-modified" not in response.headers
    assert "X-Script-Name" in response.headers["Vary"]
    again = app.get("/kml/geo", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    # another public URL gives another document, hence another ETag
    other = app.get("/kml/geo", headers={"X-Forwarded-Host": "example.org"})
    assert other.headers["ETag"] != etag


def test_deepest_level_document_has_no_subtiles(app: Client):
    # the reference fails with 500 here; a document without links is more useful
    root = parse(app.get("/kml/geo/EPSG4326/19/0/0.kml"))
    assert links(root) == []
    assert overlays(root) == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/kml", "invalid request (/kml)"),
        ("/kml/", "invalid request (/kml/)"),
        ("/kml/geo/EPSG4326/1/0/0", "invalid request (/kml/geo/EPSG4326/1/0/0)"),
        ("/kml/a/b/c/d/e", "invalid request (/kml/a/b/c/d/e)"),
        ("/kml/nothere", "unknown layer: nothere"),
        ("/kml/geo/EPSG3857", "unknown layer: geo"),
        ("/kml/geo/EPSG4326/0/0/0.png", "invalid format (png). this tile set only supports (jpeg)"),
        (
            "/kml/geo/EPSG4326/20/0/0.kml",
            "The requested tile is outside the bounding box of the tile map.",
        ),
        (
            "/kml/geo/EPSG4326/0/1/0.kml",
            "The requested tile is outside the bounding box of the tile map.",
        ),
        (
            "/kml/geo/EPSG4326/-1/0/0.kml",
            "The requested tile is outside the bounding box of the tile map.",
        ),
        (
            "/kml/geo/EPSG4326/1/0/99999999999999999999999.jpeg",
            "The requested tile is outside the bounding box of the tile map.",
        ),
    ],
)
def test_errors_are_plain_text_404(app: Client, path: str, message: str):
    response = app.get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    assert response.get_data(as_text=True) == message


def test_malformed_paths_never_give_server_errors(app: Client):
    rng = random.Random(4711)
    parts = [
        "geo",
        "osm",
        "EPSG4326",
        "EPSG3857",
        "0",
        "1",
        "-1",
        "19",
        "99",
        "x",
        "",
        "0.kml",
        "1.png",
        "0.jpeg",
        ".kml",
        "%00",
        "%2F",
        "..",
        "a&b",
        "\u00e4",
        "999999999999999999999.kml",
    ]
    for _ in range(300):
        path = "/kml/" + "/".join(rng.choice(parts) for _ in range(rng.randint(0, 6)))
        response = app.get(path)
        assert response.status_code < 500, (path, response.data)


# --- authorization ---------------------------------------------------------------------


class Recorder:
    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.calls: list[tuple[str, list[str], Any]] = []

    def __call__(self, service: str, layers: list[str], **kwargs: Any) -> dict[str, Any]:
        self.calls.append((service, layers, kwargs["query_extent"]))
        return self.result


def authorized_client(app: Client, result: dict[str, Any]) -> tuple[Client, Recorder]:
    recorder = Recorder(result)
    mapproxy = app.app  # type: ignore[attr-defined]

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        environ["mapproxy.authorize"] = recorder
        return mapproxy(environ, start_response)

    return Client(middleware), recorder


@pytest.mark.parametrize(
    "path", ["/kml/geo", "/kml/geo/EPSG4326/1/0/0.kml", "/kml/geo/EPSG4326/1/0/0.jpeg"]
)
@pytest.mark.parametrize(
    ("result", "status", "body"),
    [
        ({"authorized": "none"}, 403, b"forbidden"),
        ({"authorized": "unauthenticated"}, 401, b"unauthorized"),
        ({"authorized": "partial", "layers": {"geo": {"map": True}}}, 403, b"forbidden"),
    ],
)
def test_refused_requests(app: Client, path: str, result: dict[str, Any], status: int, body: bytes):
    client, recorder = authorized_client(app, result)
    response = client.get(path)
    assert (response.status_code, response.data) == (status, body)
    assert response.headers["Content-Type"] == "text/plain"
    assert recorder.calls[0][:2] == ("kml", ["geo"])


def test_authorize_sees_the_tile_extent(app: Client):
    client, recorder = authorized_client(app, {"authorized": "full"})
    assert client.get("/kml/geo").status_code == 200
    assert client.get("/kml/geo/EPSG4326/1/1/0.jpeg").status_code == 200
    assert recorder.calls == [
        ("kml", ["geo"], ("EPSG:4326", (-180.0, -90.0, 180.0, 270.0))),
        ("kml", ["geo"], ("EPSG:4326", (0.0, -90.0, 180.0, 90.0))),
    ]


def test_limited_to_masks_tiles(app: Client):
    limit = {"geometry": [-180, -90, 0, 90], "srs": "EPSG:4326"}
    result = {"authorized": "partial", "layers": {"osm": {"tile": True, "limited_to": limit}}}
    client, _ = authorized_client(app, result)
    plain = app.get("/kml/osm/EPSG3857/1/0/0.png")
    inside = client.get("/kml/osm/EPSG3857/1/0/0.png")
    assert inside.data == plain.data
    outside = client.get("/kml/osm/EPSG3857/1/1/0.png")
    assert outside.headers["Content-Type"] == "image/png"
    assert outside.headers["Cache-Control"] == "no-cache, no-store"
    image = Image.open(io.BytesIO(outside.data)).convert("RGBA")
    assert image.getextrema()[3] == (0, 0)
    partly = client.get("/kml/osm/EPSG3857/0/0/0.png")
    image = Image.open(io.BytesIO(partly.data)).convert("RGBA")
    assert image.getpixel((200, 128))[3] == 0  # type: ignore[index]
    # documents stay unmasked but still need the tile permission
    assert client.get("/kml/osm/EPSG3857").status_code == 200
