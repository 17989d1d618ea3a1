"""ogcapimaps/ogcapitiles sources against our own OGC API service as the upstream.

The expected upstream requests are those the reference MapProxy 7.0.0 sends for the
same configuration (recorded with the reference as a black box).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, image_handler

UPSTREAM_CONFIG = """
services:
  ogcapi: {{}}
layers:
  - name: red
    title: Red
    sources: [red_cache]
caches:
  red_cache:
    grids: [GLOBAL_WEBMERCATOR, GLOBAL_GEODETIC]
    sources: [red_wms]
    cache: {{type: file, directory: {cache_dir}}}
sources:
  red_wms:
    type: wms
    req: {{url: "{url}/red", layers: red}}
"""

CONFIG = """
services:
  wms:
    md: {{title: t}}
    srs: ['EPSG:4326', 'EPSG:3857', 'CRS:84']
  tms: {{}}
layers:
  - name: maps
    title: a
    sources: [maps]
  - name: plain
    title: a
    sources: [plain]
  - name: tiles
    title: b
    sources: [tcache]
caches:
  tcache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [tiles]
sources:
  maps:
    type: ogcapimaps
    landingpage_url: {url}/ogcapi
    collection: red
    transparent: true
    bgcolor: '#11223344'
  plain:
    type: ogcapimaps
    landingpage_url: {url}/ogcapi/
    collection: red
    bgcolor: '#112233'
  tiles:
    type: ogcapitiles
    landingpage_url: {url}/ogcapi
    collection: red
"""

EPSG = "http%3A%2F%2Fwww.opengis.net%2Fdef%2Fcrs%2FEPSG%2F0%2F"
GETMAP = "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&STYLES=&WIDTH=200&HEIGHT=100"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[FakeUpstream]:
    """Our OGC API app (over a red WMS) served by a recording FakeUpstream."""
    from mapproxy.wsgiapp import make_wsgi_app

    with FakeUpstream(image_handler((255, 0, 0, 255))) as wms, FakeUpstream() as server:
        config = tmp_path / "upstream.yaml"
        config.write_text(UPSTREAM_CONFIG.format(url=wms.url, cache_dir=tmp_path / "up_cache"))
        inner = Client(make_wsgi_app(str(config)))

        def forward(request: Request) -> Response:
            answer = inner.get(
                request.path,
                query_string=request.query_string.decode(),
                base_url=server.url,
            )
            return Response(answer.data, status=answer.status_code, headers=dict(answer.headers))

        server.handler = forward
        yield server


@pytest.fixture
def client(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(CONFIG.format(url=upstream.url))


def _requests(upstream: FakeUpstream) -> list[tuple[str, str]]:
    seen = [(r.path, r.raw_query) for r in upstream.recorded]
    upstream.recorded.clear()
    return seen


def test_maps_fetch_collection_once_then_map_with_crs_uris(
    client: Client, upstream: FakeUpstream
) -> None:
    response = client.get(
        GETMAP + "&LAYERS=maps&SRS=EPSG:3857&BBOX=0,0,100000,100000&FORMAT=image/png"
    )
    assert response.status_code == 200
    assert image_from(response).convert("RGBA").getpixel((5, 5)) == (255, 0, 0, 255)
    assert _requests(upstream) == [
        ("/ogcapi/collections/red", ""),
        (
            "/ogcapi/collections/red/map.png",
            f"bbox=0,0,100000,100000&bbox-crs={EPSG}3857&crs={EPSG}3857"
            "&width=200&height=100&transparent=true&bgcolor=0x44112233",
        ),
    ]
    response = client.get(GETMAP + "&LAYERS=maps&SRS=EPSG:4326&BBOX=0,0,10,10&FORMAT=image/jpeg")
    assert response.status_code == 200
    assert _requests(upstream) == [
        (
            "/ogcapi/collections/red/map.jpg",
            f"bbox=0,0,10,10&crs={EPSG}4326&width=200&height=100"
            "&transparent=true&bgcolor=0x44112233",
        )
    ]


@pytest.mark.parametrize(
    ("srs", "bbox", "expected"),
    [
        ("EPSG:4326", "1.5,2.25,10.125,5", f"bbox=1.5,2.25,10.125,5&crs={EPSG}4326"),
        ("CRS:84", "1.5,2.25,10.125,5", f"bbox=1.5,2.25,10.125,5&crs={EPSG}4326"),
        (
            "EPSG:3857",
            "1000.123456789,2000.5,100000,100000.75",
            f"bbox=1000.123456789,2000.5,100000,100000.75&bbox-crs={EPSG}3857&crs={EPSG}3857",
        ),
    ],
)
def test_maps_bbox_and_crs_params(
    client: Client, upstream: FakeUpstream, srs: str, bbox: str, expected: str
) -> None:
    response = client.get(GETMAP + f"&LAYERS=plain&SRS={srs}&BBOX={bbox}&FORMAT=image/png")
    assert response.status_code == 200
    # not transparent: no transparent param; an RGB bgcolor has no alpha digits
    assert _requests(upstream)[-1] == (
        "/ogcapi/collections/red/map.png",
        f"{expected}&width=200&height=100&bgcolor=0x112233",
    )


def test_tiles_pick_the_tileset_of_the_cache_grid(client: Client, upstream: FakeUpstream) -> None:
    response = client.get("/tms/1.0.0/tiles/EPSG3857/1/0/0.png")
    assert response.status_code == 200
    assert image_from(response).convert("RGBA").getpixel((5, 5)) == (255, 0, 0, 255)
    assert _requests(upstream) == [
        ("/ogcapi/collections/red", ""),
        ("/ogcapi/collections/red/map/tiles", "f=json"),
        ("/ogcapi/tileMatrixSets/GLOBAL_MERCATOR", "f=json"),
        ("/ogcapi/collections/red/map/tiles/GLOBAL_MERCATOR", "f=json"),
        ("/ogcapi/collections/red/map/tiles/GLOBAL_MERCATOR/2/0/0.png", ""),
    ]
    assert client.get("/tms/1.0.0/tiles/EPSG3857/2/1/2.png").status_code == 200
    assert _requests(upstream) == [
        ("/ogcapi/collections/red/map/tiles/GLOBAL_MERCATOR/3/2/1.png", ""),
    ]


def test_metadata_is_not_fetched_at_load(make_app: Callable[..., Client]) -> None:
    # nothing listens on port 9: loading must still work
    client = make_app(CONFIG.format(url="http://127.0.0.1:9"))
    response = client.get(GETMAP + "&LAYERS=maps&SRS=EPSG:4326&BBOX=0,0,10,10&FORMAT=image/png")
    assert response.status_code == 500
    assert b"No response from URL" in response.data


def image_from(response) -> Image.Image:  # type: ignore[no-untyped-def]
    """The decoded image of a response."""
    return Image.open(io.BytesIO(response.data))
