"""TileManager options: stale tiles on failures, rescaling, minimized and bulk meta tiles."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest
from PIL import Image

from mapproxy.cache.file import FileCache
from mapproxy.errors import SourceError
from mapproxy.grid import MetaGrid, TileGrid
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapQuery
from mapproxy.source.on_error import OnErrorResponse
from mapproxy.srs import SRS
from mapproxy.tilemanager.background import wait_for_background_stores
from mapproxy.tilemanager.tile_manager import TileManager

PNG = ImageOptions(format="image/png")


def tile_color(coord: TileCoord) -> tuple[int, int, int]:
    return (coord.x * 20 + 5, coord.y * 20 + 5, coord.z * 40 + 5)


@pytest.fixture(params=["sw", "nw"])
def grid(request) -> TileGrid:
    # 4096 units square; level z has 2**z x 2**z tiles of 256 px
    return TileGrid(
        SRS("EPSG:3857"), (0.0, 0.0, 4096.0, 4096.0), (16.0, 8.0, 4.0, 2.0, 1.0), (256, 256),
        origin=request.param,
    )  # fmt: skip


@pytest.fixture
def cache(tmp_path) -> FileCache:
    return FileCache(str(tmp_path / "cache"), "png", lock_dir=str(tmp_path / "locks"))


class PaintingSource:
    """Paints each grid tile in ``tile_color``; records queries; may fail or answer a fixed
    result."""

    transparent = False
    extent = None

    def __init__(self, grid: TileGrid, supports_meta_tiles: bool = True) -> None:
        self.grid = grid
        self.supports_meta_tiles = supports_meta_tiles
        self.queries: list[MapQuery] = []
        self.answer: Exception | ImageResult | None = None
        self._lock = threading.Lock()

    def get_map(self, query: MapQuery) -> ImageResult:
        with self._lock:
            self.queries.append(query)
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer is not None:
            return self.answer
        res = (query.bbox[2] - query.bbox[0]) / query.size[0]
        level = self.grid.resolutions.index(res)
        image = Image.new("RGB", query.size)
        affected = self.grid.affected_level_tiles(query.bbox, level)
        for _index, coord in enumerate(affected.tiles):
            if coord is None:
                continue
            tminx, _, _, tmaxy = self.grid.tile_bbox(coord)
            left = round((tminx - query.bbox[0]) / res)
            top = round((query.bbox[3] - tmaxy) / res)
            image.paste(tile_color(coord), (left, top, left + 256, top + 256))
        return ImageResult(image)


def color_of(data: bytes | None) -> tuple[int, ...]:
    assert data is not None
    colors = Image.open(io.BytesIO(data)).convert("RGBA").getcolors(1)
    assert colors is not None, "not single coloured"
    return colors[0][1]


def png(color: tuple[int, ...]) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (256, 256), color).save(out, "PNG")
    return out.getvalue()


def manager(grid, cache, sources, meta=(4, 4), buffer=0, **kwargs) -> TileManager:
    return TileManager(grid, cache, sources, PNG, meta_grid=MetaGrid(grid, meta, buffer), **kwargs)


def make_stale(cache: FileCache, coord: TileCoord, color=(1, 2, 3, 255)) -> None:
    cache.store_tiles({coord: png(color)})
    old = time.time() - 3600
    os.utime(cache.tile_path(coord), (old, old))


# -- stale tiles ---------------------------------------------------------------------------


def refresh() -> float:
    return time.time() - 60


def test_failed_refresh_serves_the_stale_tile(grid, cache):
    source = PaintingSource(grid)
    source.answer = SourceError("down")
    coord = TileCoord(1, 1, 2)
    make_stale(cache, coord)
    tile = manager(grid, cache, [source], refresh_before=refresh).load_tile(coord)
    assert color_of(tile.data) == (1, 2, 3, 255)
    assert len(source.queries) == 1


def test_failure_without_stale_tile_raises(grid, cache):
    source = PaintingSource(grid)
    source.answer = SourceError("down")
    with pytest.raises(SourceError):
        manager(grid, cache, [source], refresh_before=refresh).load_tile(TileCoord(1, 1, 2))


def test_authorize_stale_image_is_replaced_by_the_stale_tile(grid, cache):
    source = PaintingSource(grid)
    source.answer = OnErrorResponse((0, 255, 0, 255), authorize_stale=True).image(
        (1024, 1024), "image/png"
    )
    coord = TileCoord(1, 1, 2)
    make_stale(cache, coord)
    tm = manager(grid, cache, [source], refresh_before=refresh)
    assert color_of(tm.load_tile(coord).data) == (1, 2, 3, 255)
    # a tile without stale version gets the on_error image, not stored (cache: false)
    other = TileCoord(0, 0, 2)
    assert color_of(tm.load_tile(other).data) == (0, 255, 0, 255)
    assert not cache.is_cached(other)


def test_plain_on_error_image_replaces_the_stale_tile(grid, cache):
    source = PaintingSource(grid)
    source.answer = OnErrorResponse((0, 0, 255, 255)).image((1024, 1024), "image/png")
    coord = TileCoord(1, 1, 2)
    make_stale(cache, coord)
    tile = manager(grid, cache, [source], refresh_before=refresh).load_tile(coord)
    assert color_of(tile.data) == (0, 0, 255, 255)


def test_load_tiles_serves_stale_tiles_when_refresh_fails(grid, cache):
    source = PaintingSource(grid)
    coords = [TileCoord(0, 0, 2), TileCoord(1, 0, 2)]
    for coord in coords:
        make_stale(cache, coord)
    source.answer = SourceError("down")
    tiles = manager(grid, cache, [source], refresh_before=refresh).load_tiles(coords)
    assert [color_of(t.data) for t in tiles] == [(1, 2, 3, 255)] * 2


# -- minimize_meta_requests / bulk_meta_tiles ----------------------------------------------


def test_minimized_request_is_split_into_the_right_tiles(grid, cache):
    source = PaintingSource(grid)
    tm = manager(grid, cache, [source], minimize_meta_requests=True, buffer=10)
    coords = [TileCoord(3, 2, 3), TileCoord(4, 3, 3), TileCoord(3, 3, 3)]
    tiles = tm.load_tiles(coords)
    assert wait_for_background_stores()
    assert len(source.queries) == 1
    query = source.queries[0]
    # tiles x 3-4, y 2-3 of level 3 (512 units each) and 10 px (20 units) around them
    if grid.origin == "sw":
        assert query.bbox == (1516.0, 1004.0, 2580.0, 2068.0)
    else:
        assert query.bbox == (1516.0, 2028.0, 2580.0, 3092.0)
    assert query.size == (532, 532)
    assert [color_of(t.data) for t in tiles] == [(*tile_color(c), 255) for c in coords]
    block = {TileCoord(x, y, 3) for x in (3, 4) for y in (2, 3)}
    assert {c for c in block if cache.is_cached(c)} == block
    unwanted = TileCoord(4, 2, 3)
    assert color_of(cache.load_tile(unwanted).data) == (*tile_color(unwanted), 255)


def test_single_tile_is_not_minimized(grid, cache):
    source = PaintingSource(grid)
    tm = manager(grid, cache, [source], minimize_meta_requests=True)
    tm.load_tiles([TileCoord(1, 1, 3)])
    assert source.queries[0].size == (1024, 1024)


def test_bulk_meta_tiles_query_every_tile_of_the_meta_tile(grid, cache):
    source = PaintingSource(grid, supports_meta_tiles=False)
    tm = manager(grid, cache, [source], meta=(2, 2), bulk_meta_tiles=True)
    tile = tm.load_tile(TileCoord(3, 3, 3))
    assert color_of(tile.data) == (*tile_color(TileCoord(3, 3, 3)), 255)
    assert sorted(q.bbox for q in source.queries) == sorted(
        grid.tile_bbox(TileCoord(x, y, 3)) for x in (2, 3) for y in (2, 3)
    )
    assert all(q.size == (256, 256) for q in source.queries)
    for x in (2, 3):
        for y in (2, 3):
            stored = cache.load_tile(TileCoord(x, y, 3))
            assert stored is not None
            assert color_of(stored.data) == (*tile_color(TileCoord(x, y, 3)), 255)


def test_without_bulk_tiled_sources_are_asked_per_tile(grid, cache):
    source = PaintingSource(grid, supports_meta_tiles=False)
    manager(grid, cache, [source], meta=(2, 2)).load_tile(TileCoord(3, 3, 3))
    assert len(source.queries) == 1


# -- rescaling ------------------------------------------------------------------------------


def test_upscaled_tile_is_cropped_from_the_parent(grid, cache):
    parent = TileCoord(0, 0, 1)
    image = Image.new("RGBA", (256, 256), (255, 0, 0, 255))
    # the parent's quarter that holds child (1, 1, 2) in this grid's numbering
    child = TileCoord(1, 1, 2)
    cbbox, pbbox = grid.tile_bbox(child), grid.tile_bbox(parent)
    left = round((cbbox[0] - pbbox[0]) / 8)
    top = round((pbbox[3] - cbbox[3]) / 8)
    image.paste((0, 0, 255, 255), (left, top, left + 128, top + 128))
    out = io.BytesIO()
    image.save(out, "PNG")
    cache.store_tiles({parent: out.getvalue()})
    tm = manager(grid, cache, [], upscale_tiles=1)
    image = Image.open(io.BytesIO(tm.load_tile(child).data)).convert("RGBA")
    # bicubic scaling blends the outermost pixels with the parent's red
    assert {image.getpixel((x, y)) for x in (8, 128, 247) for y in (8, 128, 247)} == {
        (0, 0, 255, 255)
    }
    assert not cache.is_cached(child)
    # two levels away with upscale_tiles: 1: transparent
    assert color_of(tm.load_tile(TileCoord(2, 2, 3)).data)[3] == 0


def test_downscaled_tile_is_stored_with_cache_rescaled_tiles(grid, cache):
    for x in (0, 1):
        for y in (0, 1):
            cache.store_tiles({TileCoord(x, y, 2): png((0, 255, 0, 255))})
    tm = manager(grid, cache, [], downscale_tiles=1, cache_rescaled_tiles=True)
    coord = TileCoord(0, 0, 1)
    assert color_of(tm.load_tile(coord).data) == (0, 255, 0, 255)
    assert cache.is_cached(coord)


def test_levels_a_source_serves_are_fetched_not_rescaled(grid, cache):
    source = PaintingSource(grid)
    cache.store_tiles({TileCoord(0, 0, 1): png((0, 255, 0, 255))})
    tm = manager(grid, cache, [source], upscale_tiles=1)
    assert color_of(tm.load_tile(TileCoord(0, 0, 2)).data) == (*tile_color(TileCoord(0, 0, 2)), 255)


def test_seed_only_sources_do_not_create_tiles_on_request(grid, cache):
    source = PaintingSource(grid)
    source.seed_only = True  # type: ignore[attr-defined]
    cache.store_tiles({TileCoord(0, 0, 1): png((0, 255, 0, 255))})
    tm = manager(grid, cache, [source], upscale_tiles=1)
    assert color_of(tm.load_tile(TileCoord(0, 0, 2)).data) == (0, 255, 0, 255)
    assert source.queries == []


def test_upscale_and_downscale_cannot_be_combined(grid, cache):
    with pytest.raises(ValueError):
        manager(grid, cache, [], upscale_tiles=1, downscale_tiles=1)
