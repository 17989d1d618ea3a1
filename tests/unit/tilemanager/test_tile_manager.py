from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from PIL import Image, ImageDraw

from mapproxy.cache.file import FileCache
from mapproxy.errors import LockTimeout, SourceError, TileOutsideGrid
from mapproxy.grid import MetaGrid, TileGrid
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.srs import SRS
from mapproxy.tilemanager.background import wait_for_background_stores
from mapproxy.tilemanager.locking import TileLocker
from mapproxy.tilemanager.tile_manager import TileManager

# 4096 x 4096 units; level z has 2**z x 2**z tiles of 256 px (res 16 / 2**z).
GRID_BBOX = (0.0, 0.0, 4096.0, 4096.0)
GRID_RES = (16.0, 8.0, 4.0, 2.0, 1.0)
PNG = ImageOptions(format="image/png")


def make_grid(origin: str = "sw") -> TileGrid:
    return TileGrid(SRS("EPSG:3857"), GRID_BBOX, GRID_RES, (256, 256), origin=origin)


def tile_color(coord: TileCoord) -> tuple[int, int, int]:
    return (coord.x * 20 + 5, coord.y * 20 + 5, coord.z * 20 + 5)


def draw_tiles(grid: TileGrid, query: MapQuery) -> Image.Image:
    """An image in which every grid tile is filled with ``tile_color(tile)``."""
    width, height = query.size
    minx, _miny, maxx, maxy = query.bbox
    res = (maxx - minx) / width
    level = min(range(grid.levels), key=lambda z: abs(grid.resolutions[z] - res))
    image = Image.new("RGB", query.size, (0, 0, 0))
    draw = ImageDraw.Draw(image)
    cols, rows = grid.grid_size(level)
    for x in range(cols):
        for y in range(rows):
            tminx, tminy, tmaxx, tmaxy = grid.tile_bbox(TileCoord(x, y, level))
            left = round((tminx - minx) / res)
            right = round((tmaxx - minx) / res) - 1
            top = round((maxy - tmaxy) / res)
            bottom = round((maxy - tminy) / res) - 1
            if right < 0 or bottom < 0 or left >= width or top >= height:
                continue
            draw.rectangle((left, top, right, bottom), fill=tile_color(TileCoord(x, y, level)))
    return image


class CountingSource:
    """Fake WMS-like source that records its queries."""

    transparent = False

    def __init__(
        self,
        grid: TileGrid,
        supports_meta_tiles: bool = True,
        extent: MapExtent | None = None,
        delay_seconds: float = 0.0,
        error: Exception | None = None,
        cacheable: bool = True,
    ) -> None:
        self.grid = grid
        self.supports_meta_tiles = supports_meta_tiles
        self.extent = extent
        self.delay_seconds = delay_seconds
        self.error = error
        self.cacheable = cacheable
        self.queries: list[MapQuery] = []
        self._lock = threading.Lock()

    def get_map(self, query: MapQuery) -> ImageResult:
        with self._lock:
            self.queries.append(query)
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if self.error is not None:
            raise self.error
        image = draw_tiles(self.grid, query)
        return ImageResult(image, cacheable=self.cacheable)


class TileSource:
    """Fake tile source in the cache's own grid, answering get_tile with PNG bytes."""

    transparent = False
    supports_meta_tiles = False
    extent = None

    def __init__(self, grid: TileGrid) -> None:
        self.grid = grid
        self.requested: list[TileCoord] = []

    def get_tile(self, coord: TileCoord) -> ImageResult:
        self.requested.append(coord)
        return ImageResult(png_bytes(tile_color(coord)), format="image/png")

    def get_map(self, query: MapQuery) -> ImageResult:
        raise AssertionError("tile sources in the same grid are asked with get_tile")


def png_bytes(color: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), color).save(buf, "PNG")
    return buf.getvalue()


def decoded_color(data: bytes) -> tuple[int, ...]:
    image = Image.open(io.BytesIO(data))
    assert image.size == (256, 256)
    colors = image.convert("RGBA").convert("RGB").getcolors(1)
    assert colors is not None, "tile is not single coloured"
    return colors[0][1]


@pytest.fixture
def grid() -> TileGrid:
    return make_grid()


@pytest.fixture
def cache(tmp_path) -> FileCache:
    return FileCache(str(tmp_path / "cache"), "png", lock_dir=str(tmp_path / "locks"))


@pytest.fixture
def locker(tmp_path) -> TileLocker:
    return TileLocker(str(tmp_path / "locks"), timeout_seconds=10)


def make_manager(grid, cache, sources, locker=None, meta=(4, 4), buffer=0, **kwargs):
    meta_grid = MetaGrid(grid, meta, buffer) if meta else None
    return TileManager(
        grid,
        cache,
        sources,
        kwargs.pop("image_options", PNG),
        meta_grid=meta_grid,
        locker=locker,
        **kwargs,
    )


# -- cache hits ------------------------------------------------------------------


def test_cache_hit_returns_stored_bytes_without_calling_source(grid, cache, locker):
    source = CountingSource(grid)
    manager = make_manager(grid, cache, [source], locker)
    coord = TileCoord(1, 2, 2)
    cache.store_tiles({coord: b"stored bytes, not even an image"})
    tile = manager.load_tile(coord)
    assert tile.data == b"stored bytes, not even an image"
    assert tile.timestamp == pytest.approx(os.stat(cache.tile_path(coord)).st_mtime)
    assert manager.load_tiles([coord, coord])[1].data == tile.data
    assert source.queries == []
    assert manager.is_cached(coord)


def test_tile_outside_grid_raises(grid, cache, locker):
    source = CountingSource(grid)
    manager = make_manager(grid, cache, [source], locker)
    for coord in (TileCoord(4, 0, 2), TileCoord(0, -1, 2), TileCoord(0, 0, 5)):
        with pytest.raises(TileOutsideGrid):
            manager.load_tile(coord)
        with pytest.raises(TileOutsideGrid):
            manager.load_tiles([TileCoord(0, 0, 2), coord])
    assert source.queries == []


# -- meta tile creation ----------------------------------------------------------


@pytest.mark.parametrize("origin", ["sw", "nw"])
@pytest.mark.parametrize("buffer", [0, 80])
def test_meta_tile_is_fetched_once_and_all_tiles_stored(tmp_path, locker, origin, buffer):
    grid = make_grid(origin)
    cache = FileCache(str(tmp_path / "cache"), "png")
    source = CountingSource(grid)
    manager = make_manager(grid, cache, [source], locker, buffer=buffer)
    coord = TileCoord(5, 6, 3)
    before = time.time()
    tile = manager.load_tile(coord)
    # the stored file's mtime, from the kernel's coarse clock (up to a tick behind)
    assert before - 0.02 <= tile.timestamp <= time.time()
    assert decoded_color(tile.data) == tile_color(coord)
    assert wait_for_background_stores()

    assert len(source.queries) == 1
    query = source.queries[0]
    meta = MetaGrid(grid, (4, 4), buffer).meta_tile(coord)
    assert query.bbox == meta.bbox
    assert query.size == meta.size
    assert query.srs == grid.srs
    assert query.format == "image/png"
    stored = [TileCoord(x, y, 3) for x in range(4, 8) for y in range(4, 8)]
    for stored_coord in stored:
        cached = cache.load_tile(stored_coord)
        assert cached is not None, stored_coord
        assert decoded_color(cached.data) == tile_color(stored_coord)
    assert not cache.is_cached(TileCoord(3, 3, 3))

    for stored_coord in stored:
        manager.load_tile(stored_coord)
    assert len(source.queries) == 1


def test_load_tiles_creates_each_meta_tile_once_and_keeps_order(grid, cache, locker):
    source = CountingSource(grid, delay_seconds=0.05)
    manager = make_manager(grid, cache, [source], locker)
    coords = [TileCoord(x, y, 3) for y in (3, 4) for x in (2, 3, 4, 5)]
    tiles = manager.load_tiles(coords)
    assert [tile.coord for tile in tiles] == coords
    assert [decoded_color(tile.data) for tile in tiles] == [tile_color(c) for c in coords]
    # The 8 tiles touch 4 meta tiles (x 0-3/4-7, y 0-3/4-7).
    assert len(source.queries) == 4
    assert len({query.bbox for query in source.queries}) == 4


def test_load_tiles_runs_meta_tile_creation_in_parallel(grid, cache, locker):
    source = CountingSource(grid, delay_seconds=0.5)
    manager = make_manager(grid, cache, [source], locker, concurrent_tile_creators=2)
    start = time.monotonic()
    manager.load_tiles([TileCoord(0, 0, 3), TileCoord(4, 0, 3)])
    assert time.monotonic() - start < 0.95
    assert len(source.queries) == 2


def test_single_tile_meta_at_level_zero_is_not_split(grid, cache, locker):
    source = CountingSource(grid)
    manager = make_manager(grid, cache, [source], locker, buffer=80)
    tile = manager.load_tile(TileCoord(0, 0, 0))
    assert source.queries[0].size == (256, 256)
    assert source.queries[0].bbox == GRID_BBOX
    assert decoded_color(tile.data) == tile_color(TileCoord(0, 0, 0))


def test_tiles_are_stored_in_the_cache_format(tmp_path, grid, locker):
    cache = FileCache(str(tmp_path / "cache"), "jpeg")
    source = CountingSource(grid)
    manager = make_manager(
        grid,
        cache,
        [source],
        locker,
        image_options=ImageOptions(format="image/jpeg"),
        request_format="image/png",
    )
    tile = manager.load_tile(TileCoord(1, 1, 2))
    assert wait_for_background_stores()
    assert source.queries[0].format == "image/png"
    assert tile.data.startswith(b"\xff\xd8\xff")
    assert cache.load_tile(TileCoord(0, 0, 2)).data.startswith(b"\xff\xd8\xff")


# -- concurrency -----------------------------------------------------------------


@pytest.mark.parametrize("use_file_locks", [True, False])
def test_missing_meta_tile_is_fetched_once_by_16_threads(grid, cache, locker, use_file_locks):
    source = CountingSource(grid, delay_seconds=0.2)
    manager = make_manager(grid, cache, [source], locker if use_file_locks else None)
    coords = [TileCoord(x, y, 2) for x in range(4) for y in range(4)]
    barrier = threading.Barrier(len(coords))
    results: dict[TileCoord, bytes] = {}
    errors: list[BaseException] = []

    def request(coord: TileCoord) -> None:
        try:
            barrier.wait()
            results[coord] = manager.load_tile(coord).data
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=request, args=(coord,)) for coord in coords]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(source.queries) == 1
    assert {coord: decoded_color(data) for coord, data in results.items()} == {
        coord: tile_color(coord) for coord in coords
    }


PROCESS_SCRIPT = """
import os, sys, time
from PIL import Image
from mapproxy.cache.file import FileCache
from mapproxy.grid import MetaGrid, TileGrid
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.srs import SRS
from mapproxy.tilemanager.locking import TileLocker
from mapproxy.tilemanager.tile_manager import TileManager

cache_dir, lock_dir, calls_file, go_file, x, y = sys.argv[1:7]

class FileCountingSource:
    transparent = False
    supports_meta_tiles = True
    extent = None

    def get_map(self, query):
        with open(calls_file, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(0.5)
        return ImageResult(Image.new("RGB", query.size, (10, 20, 30)))

grid = TileGrid(SRS("EPSG:3857"), (0, 0, 4096, 4096), (16, 8, 4, 2, 1), (256, 256))
manager = TileManager(
    grid, FileCache(cache_dir, "png"), [FileCountingSource()], ImageOptions("image/png"),
    meta_grid=MetaGrid(grid, (4, 4), 0), locker=TileLocker(lock_dir, 30),
)
print("ready", flush=True)
while not os.path.exists(go_file):
    time.sleep(0.005)
tile = manager.load_tile(TileCoord(int(x), int(y), 2))
print(len(tile.data), flush=True)
"""


def test_two_processes_create_a_meta_tile_once(tmp_path):
    calls_file = tmp_path / "calls"
    go_file = tmp_path / "go"
    cache_dir = str(tmp_path / "cache")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(PROCESS_SCRIPT),
                cache_dir,
                str(tmp_path / "locks"),
                str(calls_file),
                str(go_file),
                str(x),
                str(y),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for x, y in ((0, 0), (3, 2))
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        go_file.write_text("")
        for proc in procs:
            _out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert len(calls_file.read_text().splitlines()) == 1
    cache = FileCache(cache_dir, "png")
    assert all(cache.is_cached(TileCoord(x, y, 2)) for x in range(4) for y in range(4))
    assert os.listdir(tmp_path / "locks") == []


# -- errors and special results --------------------------------------------------


def test_lock_held_longer_than_timeout_raises_lock_timeout(grid, cache, tmp_path):
    source = CountingSource(grid)
    locker = TileLocker(str(tmp_path / "locks"), timeout_seconds=0.2)
    manager = make_manager(grid, cache, [source], locker)
    coord = TileCoord(5, 6, 3)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with locker.lock(cache.lock_cache_id, TileCoord(4, 4, 3)):
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        with pytest.raises(LockTimeout):
            manager.load_tile(coord)
    finally:
        release.set()
        holder.join()
    assert source.queries == []
    manager.load_tile(coord)
    assert len(source.queries) == 1


def test_source_error_propagates_and_nothing_is_stored(grid, cache, locker, tmp_path):
    source = CountingSource(grid, error=SourceError("upstream down"))
    manager = make_manager(grid, cache, [source], locker)
    with pytest.raises(SourceError, match="upstream down"):
        manager.load_tile(TileCoord(1, 1, 2))
    assert not os.path.exists(cache.cache_dir) or not any(os.scandir(cache.cache_dir))
    assert os.listdir(tmp_path / "locks") == []


def test_uncacheable_result_is_returned_but_not_stored(grid, cache, locker):
    source = CountingSource(grid, cacheable=False)
    manager = make_manager(grid, cache, [source], locker)
    tile = manager.load_tile(TileCoord(1, 1, 2))
    assert tile.cacheable is False
    assert decoded_color(tile.data) == tile_color(TileCoord(1, 1, 2))
    assert not cache.is_cached(TileCoord(1, 1, 2))


def test_disabled_storage_fetches_every_time_without_locks(grid, cache, tmp_path):
    source = CountingSource(grid)
    locker = TileLocker(str(tmp_path / "locks"))
    manager = make_manager(grid, cache, [source], locker, disable_storage=True)
    coord = TileCoord(1, 1, 2)
    manager.load_tile(coord)
    manager.load_tile(coord)
    assert len(source.queries) == 2
    assert not manager.is_cached(coord)
    assert not cache.is_cached(coord)
    assert not os.path.exists(tmp_path / "locks")


def test_source_outside_extent_is_skipped_and_blank_tile_stored(grid, cache, locker):
    extent = MapExtent((2048.0, 2048.0, 4096.0, 4096.0), SRS("EPSG:3857"))
    source = CountingSource(grid, extent=extent)
    manager = make_manager(
        grid, cache, [source], locker, image_options=ImageOptions("image/png", transparent=True)
    )
    tile = manager.load_tile(TileCoord(0, 0, 3))  # south-west quarter: outside
    assert source.queries == []
    image = Image.open(io.BytesIO(tile.data)).convert("RGBA")
    assert image.getpixel((0, 0))[3] == 0
    assert cache.load_tile(TileCoord(3, 3, 3)).data == tile.data
    manager.load_tile(TileCoord(7, 7, 3))
    assert len(source.queries) == 1


def test_read_only_cache_returns_blank_without_storing(grid, cache, locker):
    manager = make_manager(grid, cache, [], locker)
    tile = manager.load_tile(TileCoord(1, 1, 2))
    assert Image.open(io.BytesIO(tile.data)).size == (256, 256)
    assert not cache.is_cached(TileCoord(1, 1, 2))


def test_sources_are_merged_bottom_to_top(grid, cache, locker):
    pytest.importorskip("mapproxy.image.merge")

    class Overlay:
        transparent = True
        supports_meta_tiles = True
        extent = None

        def __init__(self):
            self.queries = []

        def get_map(self, query):
            self.queries.append(query)
            image = Image.new("RGBA", query.size, (0, 0, 0, 0))
            ImageDraw.Draw(image).rectangle((0, 0, 255, 255), fill=(255, 0, 0, 255))
            return ImageResult(image, transparent=True)

    base = CountingSource(grid)
    overlay = Overlay()
    manager = make_manager(grid, cache, [base, overlay], locker, image_options=PNG)
    nw_tile = manager.load_tile(TileCoord(0, 3, 2))  # top-left of the meta image
    other = manager.load_tile(TileCoord(1, 1, 2))
    assert len(base.queries) == len(overlay.queries) == 1
    assert decoded_color(nw_tile.data) == (255, 0, 0)
    assert decoded_color(other.data) == tile_color(TileCoord(1, 1, 2))


# -- tile sources ----------------------------------------------------------------


def test_source_without_meta_support_is_queried_per_tile(grid, cache, locker):
    source = CountingSource(grid, supports_meta_tiles=False)
    manager = make_manager(grid, cache, [source], locker)
    coords = [TileCoord(0, 0, 2), TileCoord(1, 0, 2)]
    tiles = manager.load_tiles(coords)
    assert sorted(query.bbox for query in source.queries) == sorted(
        grid.tile_bbox(coord) for coord in coords
    )
    assert all(query.size == (256, 256) for query in source.queries)
    assert [decoded_color(tile.data) for tile in tiles] == [tile_color(c) for c in coords]
    assert not cache.is_cached(TileCoord(2, 0, 2))


def test_tile_source_in_same_grid_is_stored_untouched(grid, cache, locker):
    source = TileSource(grid)
    manager = make_manager(grid, cache, [source], locker)
    coord = TileCoord(2, 3, 2)
    tile = manager.load_tile(coord)
    assert source.requested == [coord]
    assert tile.data == png_bytes(tile_color(coord))
    assert cache.load_tile(coord).data == tile.data
    manager.load_tile(coord)
    assert source.requested == [coord]


# -- refresh ---------------------------------------------------------------------


def test_stale_tiles_are_recreated(grid, cache, locker):
    source = CountingSource(grid)
    manager = make_manager(grid, cache, [source], locker, refresh_before=lambda: time.time() - 3600)
    coord = TileCoord(1, 1, 2)
    cache.store_tiles({coord: b"old"})
    old = time.time() - 7200
    os.utime(cache.tile_path(coord), (old, old))
    tile = manager.load_tile(coord)
    assert len(source.queries) == 1
    assert decoded_color(tile.data) == tile_color(coord)
    assert manager.load_tile(coord).data == tile.data
    assert len(source.queries) == 1


def test_create_tiles_renders_even_when_cached(grid, cache, locker):
    source = CountingSource(grid)
    manager = make_manager(grid, cache, [source], locker)
    coord = TileCoord(1, 1, 2)
    cache.store_tiles({coord: b"old"})
    tiles = manager.create_tiles([coord])
    assert len(source.queries) == 1
    assert decoded_color(tiles[0].data) == tile_color(coord)
    assert cache.load_tile(coord).data == tiles[0].data


def test_remove_tile(grid, cache, locker):
    manager = make_manager(grid, cache, [CountingSource(grid)], locker)
    coord = TileCoord(1, 1, 2)
    cache.store_tiles({coord: b"x"})
    manager.remove_tile(coord)
    assert not manager.is_cached(coord)
