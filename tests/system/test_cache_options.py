"""Tile pipeline options of caches end to end: refresh_before (+ on_error authorize_stale),
upscale/downscale_tiles, minimize_meta_requests, bulk_meta_tiles.

Expected upstream requests, pixels and stored files were observed on the reference
MapProxy 7.0.0 with the same configs and requests (tests/integration/
test_reference_tile_options.py compares them side by side).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from fakes.fake_upstream import FakeUpstream, image_handler, status_handler
from mapproxy.errors import ConfigurationError

HALF_WORLD = 20037508.342789244
RED = (255, 0, 0, 255)
GREEN = (0, 255, 0, 255)
BLUE = (0, 0, 255, 255)
YELLOW = (255, 255, 0, 255)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(image_handler(RED)) as fake:
        yield fake


def tile_path(base: Path, cache: str, z: int, x: int, y: int) -> Path:
    """tc layout path of a GLOBAL_WEBMERCATOR (north-west origin) tile."""
    xs, ys = f"{x:09d}", f"{y:09d}"
    return (
        base / "cache_data" / f"{cache}_EPSG3857" / f"{z:02d}"
        / xs[:3] / xs[3:6] / xs[6:] / ys[:3] / ys[3:6] / f"{ys[6:]}.png"
    )  # fmt: skip


def stored(base: Path, cache: str) -> set[tuple[int, int, int]]:
    """(z, x, y) of every stored tile of ``cache``."""
    root = base / "cache_data" / f"{cache}_EPSG3857"
    result = set()
    for path in root.rglob("*.png"):
        parts = path.relative_to(root).parts
        x = int("".join(parts[1:4]))
        y = int("".join(parts[4:6]) + parts[6].split(".")[0])
        result.add((int(parts[0]), x, y))
    return result


def put_tile(base: Path, cache: str, z: int, x: int, y: int, color: tuple[int, ...]) -> None:
    path = tile_path(base, cache, z, x, y)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (256, 256), color).save(path)


def image_from(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGBA")


def samples(data: bytes) -> list[tuple[int, ...]]:
    """Pixels near the four corners: upper left, upper right, lower left, lower right."""
    image = image_from(data)
    return [image.getpixel(xy) for xy in ((10, 10), (200, 10), (10, 200), (200, 200))]


def bbox_of(query: dict[str, str]) -> list[float]:
    return [round(float(v), 2) for v in query["bbox"].split(",")]


def getmap(bbox: tuple[float, ...], size: int, layer: str = "c") -> str:
    return (
        "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&STYLES=&SRS=EPSG:3857"
        f"&FORMAT=image/png&LAYERS={layer}&WIDTH={size}&HEIGHT={size}"
        f"&BBOX={','.join(repr(v) for v in bbox)}"
    )


# --- minimize_meta_requests / bulk_meta_tiles --------------------------------------------

META_CONFIG = """
services:
  wms:
    srs: ['EPSG:3857']
  wmts:
layers:
  - name: c
    title: c
    sources: [c]
  - name: t
    title: t
    sources: [t]
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [w]
    meta_size: [4, 4]
    meta_buffer: {buffer}
    minimize_meta_requests: true
  t:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [ts]
    meta_size: [2, 2]
    bulk_meta_tiles: true
sources:
  w:
    type: wms
    req:
      url: {url}/service
      layers: foo
  ts:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    url: {url}/tiles/%(z)s/%(x)s/%(y)s.png
"""


def meta_app(make_app, upstream: FakeUpstream, buffer: int):
    return make_app(META_CONFIG.format(url=upstream.url, buffer=buffer))


@pytest.mark.parametrize(
    ("buffer", "expected_bbox", "expected_size"),
    [
        (0, [0.0, 0.0, 10018754.17, 10018754.17], "512"),
        (80, [-1565430.34, -1565430.34, 11584184.51, 11584184.51], "672"),
    ],
)
def test_minimized_request_covers_only_the_needed_tiles(
    make_app, upstream, tmp_path, buffer, expected_bbox, expected_size
):
    client = meta_app(make_app, upstream, buffer)
    response = client.get(getmap((0.0, 0.0, HALF_WORLD / 2, HALF_WORLD / 2), 512))
    assert response.status_code == 200
    assert len(upstream.requests) == 1
    query = upstream.requests[0][1]
    assert bbox_of(query) == expected_bbox
    assert (query["width"], query["height"]) == (expected_size, expected_size)
    # the four tiles of level 3 the map needs, nothing else of their meta tile
    assert stored(tmp_path, "c") == {(3, 4, 2), (3, 5, 2), (3, 4, 3), (3, 5, 3)}


def test_minimized_request_spans_meta_tile_borders(make_app, upstream, tmp_path):
    client = meta_app(make_app, upstream, 0)
    response = client.get(getmap((-1e6, -1e6, 1e6, 1e6), 300))
    assert response.status_code == 200
    assert len(upstream.requests) == 1
    query = upstream.requests[0][1]
    assert bbox_of(query) == [-1252344.27, -1252344.27, 1252344.27, 1252344.27]
    assert (query["width"], query["height"]) == ("512", "512")
    assert stored(tmp_path, "c") == {(5, 15, 15), (5, 16, 15), (5, 15, 16), (5, 16, 16)}


def test_single_tile_still_fetches_its_whole_meta_tile(make_app, upstream, tmp_path):
    client = meta_app(make_app, upstream, 0)
    response = client.get("/wmts/c/GLOBAL_WEBMERCATOR/4/1/1.png")
    assert response.status_code == 200
    assert len(upstream.requests) == 1
    query = upstream.requests[0][1]
    assert bbox_of(query) == [-20037508.34, 10018754.17, -10018754.17, 20037508.34]
    assert (query["width"], query["height"]) == ("1024", "1024")
    assert len(stored(tmp_path, "c")) == 16


def test_bulk_meta_tiles_fetch_and_store_the_whole_meta_tile(make_app, upstream, tmp_path):
    client = meta_app(make_app, upstream, 0)
    response = client.get("/wmts/t/GLOBAL_WEBMERCATOR/4/1/1.png")
    assert response.status_code == 200
    assert sorted(path for path, _ in upstream.requests) == [
        "/tiles/4/0/0.png",
        "/tiles/4/0/1.png",
        "/tiles/4/1/0.png",
        "/tiles/4/1/1.png",
    ]
    assert stored(tmp_path, "t") == {(4, 0, 0), (4, 1, 0), (4, 0, 1), (4, 1, 1)}
    assert client.get("/wmts/t/GLOBAL_WEBMERCATOR/4/0/0.png").status_code == 200
    assert len(upstream.requests) == 4


def test_bulk_meta_tiles_for_a_wms_map(make_app, upstream, tmp_path):
    client = meta_app(make_app, upstream, 0)
    response = client.get(getmap((0.0, 0.0, HALF_WORLD / 2, HALF_WORLD / 2), 512, layer="t"))
    assert response.status_code == 200
    assert sorted(path for path, _ in upstream.requests) == [
        "/tiles/3/4/2.png",
        "/tiles/3/4/3.png",
        "/tiles/3/5/2.png",
        "/tiles/3/5/3.png",
    ]
    assert image_from(response.data).getpixel((256, 256)) == RED


# --- upscale_tiles / downscale_tiles --------------------------------------------------------

RESCALE_CONFIG = """
services:
  wmts:
layers:
  - name: u
    title: u
    sources: [u]
  - name: d
    title: d
    sources: [d]
caches:
  u:
    grids: [GLOBAL_WEBMERCATOR]
    sources: []
    upscale_tiles: 2
    cache_rescaled_tiles: {store}
  d:
    grids: [GLOBAL_WEBMERCATOR]
    sources: []
    downscale_tiles: 2
    cache_rescaled_tiles: {store}
"""


@pytest.fixture
def rescale_tiles(tmp_path: Path) -> set[tuple[str, int, int, int]]:
    put_tile(tmp_path, "u", 2, 1, 1, RED)
    put_tile(tmp_path, "u", 3, 3, 3, GREEN)
    put_tile(tmp_path, "d", 4, 2, 2, BLUE)
    put_tile(tmp_path, "d", 4, 3, 2, BLUE)
    for x in range(4, 8):
        for y in range(4, 8):
            put_tile(tmp_path, "d", 5, x, y, YELLOW)
    return {("u", *t) for t in stored(tmp_path, "u")} | {("d", *t) for t in stored(tmp_path, "d")}


def all_stored(base: Path) -> set[tuple[str, int, int, int]]:
    return {("u", *t) for t in stored(base, "u")} | {("d", *t) for t in stored(base, "d")}


def test_upscaled_tiles_come_from_up_to_n_coarser_levels(make_app, tmp_path, rescale_tiles):
    client = make_app(RESCALE_CONFIG.format(store="false"))
    assert samples(client.get("/wmts/u/GLOBAL_WEBMERCATOR/3/2/2.png").data) == [RED] * 4
    assert samples(client.get("/wmts/u/GLOBAL_WEBMERCATOR/4/4/4.png").data) == [RED] * 4
    # three levels below the red tile: transparent
    data = client.get("/wmts/u/GLOBAL_WEBMERCATOR/5/8/8.png").data
    assert samples(data) == [(255, 255, 255, 0)] * 4
    # the nearest level wins
    assert samples(client.get("/wmts/u/GLOBAL_WEBMERCATOR/4/7/7.png").data) == [GREEN] * 4
    assert all_stored(tmp_path) == rescale_tiles


def test_downscaled_tiles_combine_finer_levels(make_app, tmp_path, rescale_tiles):
    client = make_app(RESCALE_CONFIG.format(store="false"))
    response = client.get("/wmts/d/GLOBAL_WEBMERCATOR/3/1/1.png")
    assert response.status_code == 200
    # upper half from the blue level 4 tiles, the lower half from level 5 (via level 4)
    assert samples(response.data) == [BLUE, BLUE, YELLOW, YELLOW]
    # level 5 is three levels away from level 2: only the blue part is found
    data = client.get("/wmts/d/GLOBAL_WEBMERCATOR/2/0/0.png").data
    assert samples(data) == [(0, 0, 0, 0)] * 4
    assert image_from(data).getpixel((200, 160))[:3] == BLUE[:3]  # scaled twice: alpha ~253
    assert (
        samples(client.get("/wmts/d/GLOBAL_WEBMERCATOR/4/4/4.png").data) == [(255, 255, 255, 0)] * 4
    )
    assert all_stored(tmp_path) == rescale_tiles


def test_rescaled_tiles_are_stored_with_cache_rescaled_tiles(make_app, tmp_path, rescale_tiles):
    client = make_app(RESCALE_CONFIG.format(store="true"))
    for url in ("u/GLOBAL_WEBMERCATOR/3/2/2", "u/GLOBAL_WEBMERCATOR/4/4/4"):
        client.get(f"/wmts/{url}.png")
    # stored level 4 tile: level 5 is now one level away
    assert samples(client.get("/wmts/u/GLOBAL_WEBMERCATOR/5/8/8.png").data) == [RED] * 4
    client.get("/wmts/d/GLOBAL_WEBMERCATOR/3/1/1.png")
    client.get("/wmts/d/GLOBAL_WEBMERCATOR/4/4/4.png")  # nothing found: not stored
    assert all_stored(tmp_path) - rescale_tiles == {
        ("u", 3, 2, 2),
        ("u", 4, 4, 4),
        ("u", 5, 8, 8),
        ("d", 3, 1, 1),
        ("d", 4, 2, 3),
        ("d", 4, 3, 3),
    }


def test_sources_out_of_resolution_range_trigger_rescaling(make_app, upstream, tmp_path):
    put_tile(tmp_path, "u", 2, 1, 1, GREEN)
    client = make_app(
        f"""
        services:
          wmts:
        layers:
          - name: u
            title: u
            sources: [u]
        caches:
          u:
            grids: [GLOBAL_WEBMERCATOR]
            sources: [w]
            upscale_tiles: 1
        sources:
          w:
            type: wms
            max_res: 30000
            req:
              url: {upstream.url}/service
              layers: foo
        """
    )
    assert samples(client.get("/wmts/u/GLOBAL_WEBMERCATOR/3/2/2.png").data) == [GREEN] * 4
    assert upstream.requests == []
    # level 2 (39136 m/px) is in range: fetched as usual
    assert samples(client.get("/wmts/u/GLOBAL_WEBMERCATOR/2/0/0.png").data) == [RED] * 4
    assert len(upstream.requests) == 1


def test_upscale_and_downscale_together_is_a_configuration_error(make_app):
    config = RESCALE_CONFIG.replace("upscale_tiles: 2", "upscale_tiles: 2\n    downscale_tiles: 1")
    with pytest.raises(ConfigurationError, match=r"caches\.u: cannot use both"):
        make_app(config.format(store="false"))


# --- refresh_before and on_error authorize_stale ------------------------------------------

REFRESH_CONFIG = """
services:
  wmts:
layers:
  - name: f
    title: f
    sources: [f]
  - name: s
    title: s
    sources: [s]
caches:
  f:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [w]
    meta_size: [1, 1]
    meta_buffer: 0
    refresh_before: {refresh}
  s:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [w2]
    meta_size: [1, 1]
    meta_buffer: 0
    refresh_before: {refresh}
sources:
  w:
    type: wms
    req:
      url: {url}/service
      layers: foo
  w2:
    type: wms
    req:
      url: {url}/service
      layers: foo
    on_error:
      500:
        response: '#00ff00'
        authorize_stale: true
      404:
        response: '#0000ff'
"""


def age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_relative_refresh_before_refetches_old_tiles(make_app, upstream, tmp_path):
    client = make_app(REFRESH_CONFIG.format(url=upstream.url, refresh="{minutes: 1}"))
    url = "/wmts/f/GLOBAL_WEBMERCATOR/2/1/1.png"
    client.get(url)
    client.get(url)
    assert len(upstream.requests) == 1
    age(tile_path(tmp_path, "f", 2, 1, 1), 59)
    client.get(url)
    assert len(upstream.requests) == 1
    age(tile_path(tmp_path, "f", 2, 1, 1), 61)
    upstream.handler = image_handler(BLUE)
    assert samples(client.get(url).data) == [BLUE] * 4
    assert len(upstream.requests) == 2
    assert samples(tile_path(tmp_path, "f", 2, 1, 1).read_bytes()) == [BLUE] * 4


def test_mtime_refresh_before_follows_the_file(make_app, upstream, tmp_path):
    reseed = tmp_path / "reseed.time"
    reseed.touch()
    client = make_app(REFRESH_CONFIG.format(url=upstream.url, refresh="{mtime: reseed.time}"))
    url = "/wmts/f/GLOBAL_WEBMERCATOR/2/1/1.png"
    client.get(url)
    client.get(url)
    assert len(upstream.requests) == 1
    age(tile_path(tmp_path, "f", 2, 1, 1), 10)
    age(reseed, 20)
    client.get(url)
    assert len(upstream.requests) == 1
    reseed.touch()  # newer than the tile
    client.get(url)
    assert len(upstream.requests) == 2


def test_absolute_refresh_before(make_app, upstream, tmp_path):
    client = make_app(
        REFRESH_CONFIG.format(url=upstream.url, refresh="{time: '2020-01-01T00:00:00'}")
    )
    url = "/wmts/f/GLOBAL_WEBMERCATOR/2/1/1.png"
    client.get(url)
    age(tile_path(tmp_path, "f", 2, 1, 1), time.time() - 1577000000)  # Dec 2019
    client.get(url)
    assert len(upstream.requests) == 2
    client.get(url)
    assert len(upstream.requests) == 2


def test_invalid_refresh_time_is_a_configuration_error(make_app, upstream):
    with pytest.raises(ConfigurationError, match=r"caches.f.refresh_before: can't parse time"):
        make_app(REFRESH_CONFIG.format(url=upstream.url, refresh="{time: 'yesterday'}"))


@pytest.fixture
def stale_client(make_app, upstream, tmp_path):
    client = make_app(REFRESH_CONFIG.format(url=upstream.url, refresh="{seconds: 30}"))
    for cache in ("f", "s"):
        assert client.get(f"/wmts/{cache}/GLOBAL_WEBMERCATOR/2/1/1.png").status_code == 200
        age(tile_path(tmp_path, cache, 2, 1, 1), 60)
    return client


def test_authorize_stale_serves_the_stale_tile(stale_client, upstream, tmp_path):
    upstream.handler = status_handler(500)
    response = stale_client.get("/wmts/s/GLOBAL_WEBMERCATOR/2/1/1.png")
    assert response.status_code == 200
    assert samples(response.data) == [RED] * 4
    assert len(upstream.requests) == 3
    # a missing tile gets the on_error image
    response = stale_client.get("/wmts/s/GLOBAL_WEBMERCATOR/2/2/2.png")
    assert samples(response.data) == [GREEN] * 4
    assert not tile_path(tmp_path, "s", 2, 2, 2).exists()


def test_on_error_response_without_authorize_stale_replaces_the_stale_tile(stale_client, upstream):
    upstream.handler = status_handler(404)
    response = stale_client.get("/wmts/s/GLOBAL_WEBMERCATOR/2/1/1.png")
    assert samples(response.data) == [BLUE] * 4


def test_unhandled_upstream_error_serves_the_stale_tile(stale_client, upstream):
    # as MapProxy 7.0: a failed refresh keeps the old tile instead of an error
    upstream.handler = status_handler(503)
    for cache in ("f", "s"):
        response = stale_client.get(f"/wmts/{cache}/GLOBAL_WEBMERCATOR/2/1/1.png")
        assert response.status_code == 200
        assert samples(response.data) == [RED] * 4
    assert len(upstream.requests) == 4


def test_seed_only_sources_trigger_rescaling(make_app, upstream, tmp_path):
    put_tile(tmp_path, "u", 2, 1, 1, GREEN)
    client = make_app(
        f"""
        services:
          wmts:
        layers:
          - name: u
            title: u
            sources: [u]
        caches:
          u:
            grids: [GLOBAL_WEBMERCATOR]
            sources: [w]
            upscale_tiles: 1
        sources:
          w:
            type: wms
            seed_only: true
            req:
              url: {upstream.url}/service
              layers: foo
        """
    )
    assert samples(client.get("/wmts/u/GLOBAL_WEBMERCATOR/3/2/2.png").data) == [GREEN] * 4
    assert upstream.requests == []
