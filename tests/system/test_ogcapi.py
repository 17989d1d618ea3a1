"""OGC API (/ogcapi): documents, links behind proxies, maps, tiles, errors, fuzz."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import pytest
from PIL import Image
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream, image_handler

CONFIG = """
services:
  ogcapi:
    md:
      identification: {{title: Test OGC, description: A test}}
      license: {{name: MIT}}
    default_dataset_layers: [red, blue]
    attribution: {{text: Some attribution}}
    max_output_pixels: [2000, 2000]
layers:
  - name: red
    title: Red layer
    sources: [red_cache]
  - name: grp
    title: Group
    layers:
      - name: blue
        title: Blue
        sources: [blue_wms]
caches:
  red_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [red_wms]
sources:
  red_wms:
    type: wms
    req: {{url: "{url}/red", layers: red}}
  blue_wms:
    type: wms
    req: {{url: "{url}/blue", layers: blue}}
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    def handle(request):  # type: ignore[no-untyped-def]
        color = (255, 0, 0, 255) if request.path.startswith("/red") else (0, 0, 255, 255)
        return image_handler(color)(request)

    with FakeUpstream(handle) as server:
        yield server


@pytest.fixture
def client(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(CONFIG.format(url=upstream.url))


def _json(response) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    return json.loads(response.get_data(as_text=True))  # type: ignore[no-any-return]


def _image(response) -> Image.Image:  # type: ignore[no-untyped-def]
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image


def _rels(document: dict) -> set[str]:  # type: ignore[type-arg]
    return {entry["rel"] for entry in document["links"]}


def test_landing_page_links(client: Client) -> None:
    doc = _json(client.get("/ogcapi"))
    hrefs = {entry["href"] for entry in doc["links"]}
    assert "http://localhost/ogcapi/conformance?f=json" in hrefs
    assert "http://localhost/ogcapi/collections?f=json" in hrefs
    assert "http://localhost/ogcapi/api?f=json" in hrefs
    assert "http://localhost/ogcapi/map.png" in hrefs
    assert "http://localhost/ogcapi/tileMatrixSets?f=json" in hrefs
    assert {"self", "alternate", "conformance", "service-desc", "data"} <= _rels(doc)
    assert client.get("/ogcapi/").status_code == 200


def test_links_use_public_url(client: Client) -> None:
    headers = {"X-Script-Name": "/mp", "X-Forwarded-Host": "maps.example.org"}
    for path in ("/ogcapi", "/ogcapi/collections", "/ogcapi/collections/red/map/tiles"):
        text = client.get(path, headers=headers).get_data(as_text=True)
        assert "http://localhost" not in text
        assert "http://maps.example.org/mp/ogcapi/" in text
    response = client.get("/ogcapi/api", headers=headers)
    assert response.headers["Content-Type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert json.loads(response.data)["servers"][0]["url"] == "http://maps.example.org/mp/ogcapi"


def test_conformance(client: Client) -> None:
    doc = _json(client.get("/ogcapi/conformance?f=json"))
    assert "http://www.opengis.net/spec/ogcapi-maps-1/1.0/conf/core" in doc["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core" in doc["conformsTo"]


def test_collections(client: Client) -> None:
    doc = _json(client.get("/ogcapi/collections"))
    assert [c["id"] for c in doc["collections"]] == ["red", "grp", "blue"]
    red = doc["collections"][0]
    assert red["storageCrs"] == "http://www.opengis.net/def/crs/EPSG/0/3857"
    assert red["extent"]["spatial"]["storageCrsBbox"][0][0] == pytest.approx(-20037508.342789244)
    assert red["extent"]["spatial"]["bbox"][0][1] == pytest.approx(-85.0511287798066)
    assert red["attribution"] == "Some attribution"
    blue = _json(client.get("/ogcapi/collections/blue"))
    assert blue["storageCrs"] == "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    assert "storageCrsBbox" not in blue["extent"]["spatial"]
    hrefs = {entry["href"] for entry in blue["links"]}
    assert "http://localhost/ogcapi/collections/blue/map.png" in hrefs
    assert "http://localhost/ogcapi/collections/blue/map/tiles?f=json" in hrefs


def test_collection_not_found(client: Client) -> None:
    response = client.get("/ogcapi/collections/nope")
    assert response.status_code == 404
    assert json.loads(response.data) == {
        "title": "OGCAPI",
        "type": "Not Found",
        "status": 404,
        "detail": "Collection not found",
    }


def test_collection_map_png(client: Client) -> None:
    response = client.get("/ogcapi/collections/blue/map.png?bbox=0,0,10,10&width=100&height=50")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    assert response.headers["Content-Bbox"] == "0,0,10,10"
    image = _image(response)
    assert image.size == (100, 50)
    assert image.convert("RGB").getpixel((50, 25)) == (0, 0, 255)


def test_collection_map_defaults_and_crs(client: Client) -> None:
    response = client.get("/ogcapi/collections/red/map")
    assert response.status_code == 200
    assert _image(response).size == (1024, 1024)
    assert response.headers["Content-Crs"] == "<http://www.opengis.net/def/crs/EPSG/0/3857>"
    response = client.get(
        "/ogcapi/collections/red/map.jpg?crs=http://www.opengis.net/def/crs/EPSG/0/4326"
        "&bbox=-10,-10,10,10&width=64"
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    image = _image(response)
    assert image.size == (64, 64)
    red, green, blue = image.convert("RGB").getpixel((32, 32))
    assert red > 200 and green < 50 and blue < 50


def test_map_format_negotiation(client: Client) -> None:
    response = client.get("/ogcapi/collections/blue/map?width=10&height=10&f=jpeg")
    assert response.headers["Content-Type"] == "image/jpeg"
    response = client.get(
        "/ogcapi/collections/blue/map?width=10&height=10", headers={"Accept": "image/jpeg"}
    )
    assert response.headers["Content-Type"] == "image/jpeg"
    response = client.get("/ogcapi/collections/blue/map", headers={"Accept": "application/xml"})
    assert response.status_code == 406
    assert json.loads(response.data)["type"] == "Not Acceptable"


def test_map_transparent_and_bgcolor(client: Client) -> None:
    response = client.get(
        "/ogcapi/collections/blue/map.png?bbox=-180,-90,180,90&width=20&height=10"
        "&transparent=true&bgcolor=0x00ff00"
    )
    assert response.status_code == 200
    assert _image(response).size == (20, 10)


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("bbox=a", "bbox must be a list of 4 or 6 numeric values"),
        ("width=0", "width must be strictly positive"),
        ("width=-3", "width must be strictly positive"),
        ("f=xml", "Invalid value for f query parameter"),
        ("crs=EPSG:1234567", "Invalid value for crs: EPSG:1234567"),
        ("width=3000&height=3000", "exceeds the maximum"),
        ("bgcolor=zz", "bgcolor"),
    ],
)
def test_map_errors(client: Client, query: str, detail: str) -> None:
    response = client.get(f"/ogcapi/collections/red/map?{query}")
    assert response.status_code == 400
    doc = json.loads(response.data)
    assert doc["title"] == "OGCAPI" and doc["status"] == 400
    assert detail in doc["detail"]
    assert response.headers["Cache-Control"] == "no-cache, no-store"


def test_unknown_parameter(client: Client) -> None:
    response = client.get("/ogcapi/collections?foo=bar")
    assert response.status_code == 400
    assert json.loads(response.data)["detail"] == "Unknown query parameter foo"


def test_tile_matrix_sets(client: Client) -> None:
    doc = _json(client.get("/ogcapi/tileMatrixSets"))
    ids = [entry["id"] for entry in doc["tileMatrixSets"]]
    assert ids == ["GLOBAL_GEODETIC", "GLOBAL_MERCATOR", "WebMercatorQuad"]
    tms = _json(client.get("/ogcapi/tileMatrixSets/WebMercatorQuad"))
    assert tms["uri"] == "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
    first = tms["tileMatrices"][1]
    assert first["matrixWidth"] == 2 and first["cornerOfOrigin"] == "topLeft"
    assert first["scaleDenominator"] == pytest.approx(279541132.0143589)
    response = client.get("/ogcapi/tileMatrixSets/GLOBAL_WEBMERCATOR")
    assert response.status_code == 404
    assert json.loads(response.data)["detail"] == "TileMatrixSet not found"


def test_tilesets(client: Client) -> None:
    doc = _json(client.get("/ogcapi/collections/red/map/tiles"))
    titles = [tileset["title"] for tileset in doc["tilesets"]]
    assert "red with WebMercatorQuad tile matrix set" in titles
    response = client.get("/ogcapi/collections/red/map/tiles/WebMercatorQuad")
    tileset = _json(response)
    templates = [e["href"] for e in tileset["links"] if e["rel"] == "item"]
    assert (
        "http://localhost/ogcapi/collections/red/map/tiles/WebMercatorQuad/"
        "{tileMatrix}/{tileRow}/{tileCol}.png"
    ) in templates
    assert "geodata" in " ".join(_rels(tileset))
    assert response.headers["Link-Template"].startswith("</ogcapi/collections/red/map/tiles/")


def test_cached_tile_with_cache_headers(client: Client) -> None:
    response = client.get("/ogcapi/collections/red/map/tiles/WebMercatorQuad/1/0/1.png")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Bbox"] == "0,0,20037508.342789244,20037508.342789244"
    assert "max-age=" in response.headers["Cache-control"]
    assert _image(response).convert("RGB").getpixel((5, 5)) == (255, 0, 0)
    again = client.get("/ogcapi/collections/red/map/tiles/WebMercatorQuad/1/0/1.png")
    etag = again.headers["ETag"]
    not_modified = client.get(
        "/ogcapi/collections/red/map/tiles/WebMercatorQuad/1/0/1.png",
        headers={"If-None-Match": etag},
    )
    assert not_modified.status_code == 304


def test_rendered_tiles(client: Client) -> None:
    # row numbering follows the grid origin: GLOBAL_GEODETIC counts from the bottom
    response = client.get("/ogcapi/collections/blue/map/tiles/GLOBAL_GEODETIC/1/0/1.jpg")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Content-Bbox"] == "0,-90,180,90"
    response = client.get("/ogcapi/collections/blue/map/tiles/GLOBAL_MERCATOR/1/1/0")
    assert response.headers["Content-Bbox"] == "-20037508.342789244,0,0,20037508.342789244"
    assert _image(response).size == (256, 256)


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("WebMercatorQuad/1/0/5.png", "Invalid col number. Valid range is [0,1]"),
        ("WebMercatorQuad/1/2/0.png", "Invalid row number. Valid range is [0,1]"),
        ("WebMercatorQuad/a/0/0", "Invalid zoom level. Valid range is [0,19]"),
        ("WebMercatorQuad/30/0/0", "Invalid zoom level. Valid range is [0,19]"),
    ],
)
def test_tile_errors(client: Client, path: str, detail: str) -> None:
    response = client.get(f"/ogcapi/collections/red/map/tiles/{path}")
    assert response.status_code == 400
    assert json.loads(response.data)["detail"] == detail


def test_dataset_map_and_tiles(client: Client) -> None:
    response = client.get("/ogcapi/map.png?bbox=-180,-80,180,80&width=40&height=20")
    assert response.status_code == 200
    # blue is drawn over red
    assert _image(response).convert("RGB").getpixel((20, 10)) == (0, 0, 255)
    doc = _json(client.get("/ogcapi/map/tiles"))
    assert doc["tilesets"][0]["title"].startswith("Whole dataset with ")
    assert client.get("/ogcapi/map/tiles/WebMercatorQuad/0/0/0").status_code == 200


def test_html_variants(client: Client) -> None:
    for path in ("/ogcapi?f=html", "/ogcapi/collections?f=html", "/ogcapi/api?f=html"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/html"
        assert b"<html" in response.data
    response = client.get("/ogcapi/collections", headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.headers["Content-Type"] == "text/html"
    assert b'href="http://localhost/ogcapi/collections/red?f=html"' in response.data


def test_unknown_route(client: Client) -> None:
    response = client.get("/ogcapi/whatever")
    assert response.status_code == 404
    assert response.data == b"not found"


def test_dataset_disabled(make_app: Callable[..., Client], upstream: FakeUpstream) -> None:
    config = CONFIG.format(url=upstream.url).replace("default_dataset_layers: [red, blue]", "")
    client = make_app(config)
    assert client.get("/ogcapi/map").status_code == 404
    hrefs = {entry["href"] for entry in _json(client.get("/ogcapi"))["links"]}
    assert not any("/ogcapi/map" in href for href in hrefs)


FUZZ_PATHS = [
    "/ogcapi//collections",
    "/ogcapi/collections/%00",
    "/ogcapi/collections/red/map.gif",
    "/ogcapi/collections/red/map/tiles/WebMercatorQuad/1/0/1.gif",
    "/ogcapi/collections/red/map/tiles/WebMercatorQuad/99999999999999999999/0/0",
    "/ogcapi/collections/red/map/tiles/WebMercatorQuad/-1/0/0",
    "/ogcapi/collections/red/map/tiles/WebMercatorQuad/1/0",
    "/ogcapi/collections/red/map/tiles/nope/0/0/0",
    "/ogcapi/tileMatrixSets/WebMercatorQuad/extra",
    "/ogcapi/map/tiles/WebMercatorQuad/0/0/0.png/x",
    "/ogcapi/api/x",
    "/ogcapi/conformance/x",
]
FUZZ_QUERIES = [
    "bbox=1,2,3",
    "bbox=1,1,1,1",
    "bbox=nan,0,1,1",
    "bbox=inf,0,1,1",
    "bbox=-200,-100,200,100&width=10&height=10",
    "bbox=0,0,1e308,1e308&bbox-crs=EPSG:4326&width=10&height=10",
    "bbox-crs=EPSG:3857",
    "crs=nonsense",
    "crs=[EPSG:3857]&width=5&height=5",
    "width=99999999999999999999999",
    "height=1.5",
    "transparent=maybe",
    "bgcolor=0xff",
    "f=",
    "F=PNG&width=5&height=5",
    "f=html",
]


@pytest.mark.parametrize("path", FUZZ_PATHS)
def test_fuzz_paths(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code < 500
    assert b"Traceback" not in response.data


@pytest.mark.parametrize("query", FUZZ_QUERIES)
def test_fuzz_queries(client: Client, query: str) -> None:
    for path in ("/ogcapi/collections/red/map", "/ogcapi/map.png"):
        response = client.get(f"{path}?{query}")
        assert response.status_code < 500, response.data
        assert b"Traceback" not in response.data


def test_authorize_denies_maps(client: Client) -> None:
    def deny(service, layers, environ=None, query_extent=None):  # type: ignore[no-untyped-def]
        assert service in ("ogcapi.map", "ogcapi.tile")
        return {"authorized": "none"}

    environ = {"mapproxy.authorize": deny}
    response = client.get("/ogcapi/collections/red/map", environ_overrides=environ)
    assert response.status_code == 403
    assert json.loads(response.data)["status"] == 403
    tile = "/ogcapi/collections/red/map/tiles/WebMercatorQuad/0/0/0"
    assert client.get(tile, environ_overrides=environ).status_code == 403

    def allow(service, layers, environ=None, query_extent=None):  # type: ignore[no-untyped-def]
        return {"authorized": "full"}

    response = client.get(tile, environ_overrides={"mapproxy.authorize": allow})
    assert response.status_code == 200


GRIDS_CONFIG = """
services:
  ogcapi:
    default_dataset_layers: [geo]
layers:
  - name: geo
    title: Geo
    sources: [geo_cache]
  - name: utm
    title: UTM
    sources: [utm_cache]
caches:
  geo_cache:
    grids: [GLOBAL_GEODETIC, GLOBAL_MERCATOR, g4258, gcrs84]
    sources: [red_wms]
  utm_cache:
    grids: [utm32]
    sources: [red_wms]
sources:
  red_wms:
    type: wms
    req: {{url: "{url}/red", layers: red}}
grids:
  utm32:
    srs: 'EPSG:25832'
    bbox: [200000, 5200000, 1000000, 6200000]
    origin: sw
    num_levels: 3
  g4258:
    srs: 'EPSG:4258'
    bbox: [5, 47, 15, 55]
    origin: sw
    num_levels: 2
  gcrs84:
    srs: 'CRS:84'
    bbox: [5, 47, 15, 55]
    origin: sw
    num_levels: 2
"""

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


@pytest.fixture
def grids_client(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(GRIDS_CONFIG.format(url=upstream.url))


@pytest.mark.parametrize(
    ("name", "crs", "origin", "scale0"),
    [
        # values observed on MapProxy 7.0.0
        ("GLOBAL_GEODETIC", CRS84, [-180.0, -90.0], 5022.321428571429),
        (
            "GLOBAL_MERCATOR",
            "http://www.opengis.net/def/crs/EPSG/0/3857",
            [-20037508.342789244, -20037508.342789244],
            559082264.0287178,
        ),
        (
            "utm32",
            "http://www.opengis.net/def/crs/EPSG/0/25832",
            [200000.0, 5200000.0],
            13950892.857142858,
        ),
        # north/east axis order: y first
        ("g4258", "http://www.opengis.net/def/crs/EPSG/0/4258", [47.0, 5.0], 139.50892857142858),
        ("gcrs84", "http://www.opengis.net/def/crs/CRS/0/84", [5.0, 47.0], 139.50892857142858),
    ],
)
def test_tile_matrix_set_crs_and_origin(
    grids_client: Client, name: str, crs: str, origin: list[float], scale0: float
) -> None:
    tms = _json(grids_client.get(f"/ogcapi/tileMatrixSets/{name}"))
    assert tms["crs"] == crs
    level = tms["tileMatrices"][0]
    assert level["pointOfOrigin"] == origin
    assert level["scaleDenominator"] == scale0
    tileset = _json(grids_client.get(f"/ogcapi/map/tiles/{name}"))
    assert tileset["crs"] == crs


def test_geographic_storage_crs(grids_client: Client) -> None:
    doc = _json(grids_client.get("/ogcapi/collections/geo"))
    assert doc["storageCrs"] == CRS84
    assert "storageCrsBbox" not in doc["extent"]["spatial"]
    doc = _json(grids_client.get("/ogcapi/collections/utm"))
    assert doc["storageCrs"] == "http://www.opengis.net/def/crs/EPSG/0/25832"
    assert doc["extent"]["spatial"]["storageCrsBbox"] == [
        [200000.0, 5200000.0, 1000000.0, 6200000.0]
    ]


def test_dataset_tileset_link_titles(grids_client: Client) -> None:
    doc = _json(grids_client.get("/ogcapi/map/tiles"))
    tileset = doc["tilesets"][0]
    assert tileset["title"] == "Whole dataset with GLOBAL_GEODETIC tile matrix set"
    titles = {entry["rel"]: entry["title"] for entry in tileset["links"]}
    assert titles["self"] == "GLOBAL_GEODETIC map tileset for the whole dataset (as JSON)"
    single = _json(grids_client.get("/ogcapi/map/tiles/GLOBAL_GEODETIC"))
    assert single["links"][2]["title"] == titles["self"]
