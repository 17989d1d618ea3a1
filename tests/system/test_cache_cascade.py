"""Caches as sources of other caches: 1:1 tile copies on compatible grids, else like a WMS."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream

EARTH_RADIUS = 6378137.0
CELL = 10.0  # degrees per colour cell


def cell_color(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    col = np.floor((lon + 180.0) / CELL).astype(int)
    row = np.floor((lat + 90.0) / CELL).astype(int)
    return np.stack([col * 7, row * 13, 60 + 120 * ((col + row) % 2)], axis=-1).astype(np.uint8)


def geo_handler(request: Request) -> Response:
    """A WMS (EPSG:3857 or EPSG:4326) painting each pixel by its 10 degree cell."""
    args = {key.lower(): value for key, value in request.args.items()}
    minx, miny, maxx, maxy = (float(v) for v in args["bbox"].split(","))
    width, height = int(args["width"]), int(args["height"])
    xs = minx + (np.arange(width) + 0.5) * (maxx - minx) / width
    ys = maxy - (np.arange(height) + 0.5) * (maxy - miny) / height
    x, y = np.meshgrid(xs, ys)
    if args["srs"] == "EPSG:3857":
        lon = np.degrees(x / EARTH_RADIUS)
        lat = np.degrees(np.arctan(np.sinh(y / EARTH_RADIUS)))
    else:
        lon, lat = x, y
    out = io.BytesIO()
    Image.fromarray(cell_color(lon, lat), "RGB").save(out, "PNG")
    return Response(out.getvalue(), content_type="image/png")


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(geo_handler) as fake:
        yield fake


# res of GLOBAL_WEBMERCATOR level 2 and 4
LEVEL2_RES = 2 * math.pi * EARTH_RADIUS / 256 / 4
LEVEL4_RES = LEVEL2_RES / 4

CONFIG = f"""
services:
  wmts: {{}}
layers:
  - {{name: src, title: src, sources: [src_cache]}}
  - {{name: same, title: same, sources: [same_cache]}}
  - {{name: geo, title: geo, sources: [geo_cache]}}
  - {{name: merc, title: merc, sources: [merc_cache]}}
grids:
  sub:
    base: GLOBAL_WEBMERCATOR
    res: [{LEVEL2_RES!r}, {LEVEL4_RES!r}]
caches:
  src_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [up]
  same_cache:
    grids: [sub]
    sources: [src_cache]
  geo_cache:
    grids: [GLOBAL_GEODETIC]
    sources: [up]
  merc_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [geo_cache]
sources:
  up:
    type: wms
    req: {{url: "URL/service", layers: world}}
globals:
  cache:
    base_dir: ./cache_data
    meta_size: [4, 4]
    meta_buffer: 0
  image:
    paletted: false
"""


@pytest.fixture
def app(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(CONFIG.replace("URL", upstream.url))


def test_compatible_grid_copies_the_source_tiles_unchanged(
    app: Client, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Level 1 of ``sub`` is level 4 of GLOBAL_WEBMERCATOR: tiles are copied, no meta
    requests of the target cache, only the source cache's own meta tile."""
    target = app.get("/wmts/same/sub/1/5/6.png")
    assert target.status_code == 200
    assert len(upstream.requests) == 1
    query = upstream.requests[0][1]
    assert (query["srs"], query["width"], query["height"]) == ("EPSG:3857", "1024", "1024")
    source_file = tmp_path / "cache_data/src_cache_EPSG3857/04/000/000/005/000/000/006.png"
    target_file = tmp_path / "cache_data/same_cache_EPSG3857/01/000/000/005/000/000/006.png"
    assert source_file.read_bytes() == target.data
    assert target_file.read_bytes() == target.data
    # the neighbour lies in the same source meta tile: no new upstream request
    neighbour = app.get("/wmts/same/sub/1/6/7.png")
    assert neighbour.status_code == 200
    assert len(upstream.requests) == 1
    source = app.get("/wmts/src/GLOBAL_WEBMERCATOR/4/6/7.png")
    assert source.data == neighbour.data
    assert not (tmp_path / "cache_data/same_cache_EPSG3857/01/000/000/004").exists()


def test_tiles_already_in_the_source_cache_need_no_upstream_request(
    app: Client, upstream: FakeUpstream
) -> None:
    first = app.get("/wmts/src/GLOBAL_WEBMERCATOR/2/1/2.png")
    assert len(upstream.requests) == 1
    target = app.get("/wmts/same/sub/0/1/2.png")
    assert target.data == first.data
    assert len(upstream.requests) == 1


def test_other_grid_uses_the_source_cache_like_a_wms(
    app: Client, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """An EPSG:3857 cache fed by an EPSG:4326 cache: reprojected from the 4326 tiles."""
    response = app.get("/wmts/merc/GLOBAL_WEBMERCATOR/2/2/1.png")
    assert response.status_code == 200
    assert upstream.requests
    assert {query["srs"] for _path, query in upstream.requests} == {"EPSG:4326"}
    assert (tmp_path / "cache_data/merc_cache_EPSG3857/02/000/000/002/000/000/001.png").is_file()
    assert list((tmp_path / "cache_data/geo_cache_EPSG4326").rglob("*.png"))
    # pixels carry the colour of their geographic cell (away from cell borders)
    image = np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB")).astype(int)
    res = LEVEL2_RES
    half = math.pi * EARTH_RADIUS
    xs = -half + 2 * 256 * res + (np.arange(256) + 0.5) * res
    ys = half - 1 * 256 * res - (np.arange(256) + 0.5) * res
    x, y = np.meshgrid(xs, ys)
    lon = np.degrees(x / EARTH_RADIUS)
    lat = np.degrees(np.arctan(np.sinh(y / EARTH_RADIUS)))
    expected = cell_color(lon, lat).astype(int)
    lon_off = np.abs((lon + 180) / CELL - np.round((lon + 180) / CELL)) * CELL
    lat_off = np.abs((lat + 90) / CELL - np.round((lat + 90) / CELL)) * CELL
    inside = (lon_off > 1.0) & (lat_off > 1.0)
    assert inside.mean() > 0.5
    assert (np.abs(image - expected).max(axis=-1)[inside] <= 2).all()


def test_different_format_is_used_like_a_wms(
    make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = CONFIG.replace(
        "  same_cache:\n    grids: [sub]\n",
        "  same_cache:\n    grids: [sub]\n    format: image/jpeg\n",
    )
    app = make_app(config.replace("URL", upstream.url))
    response = app.get("/wmts/same/sub/1/5/6.jpeg")
    assert response.status_code == 200
    assert response.data.startswith(b"\xff\xd8")
    # the target cache builds a 4x4 meta tile from the source cache's tiles
    assert (tmp_path / "cache_data/same_cache_EPSG3857/01/000/000/004/000/000/004.jpeg").is_file()
