"""Walker arithmetic, progress string, failed-tile lists and the shared rate limiter."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from mapproxy.grid import MetaGrid, TileGrid
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.seed.config import SeedConfigurationError
from mapproxy.seed.failures import format_tiles, read_tiles_file
from mapproxy.seed.progress import progress_string
from mapproxy.seed.ratelimit import SharedRateLimiter
from mapproxy.seed.seeder import FailedTiles, TooManyFailures, group_meta_tiles
from mapproxy.seed.walker import TileWalker, _LevelMath
from mapproxy.srs import get_srs

MERC = get_srs("EPSG:3857")


@pytest.mark.parametrize("origin", ["sw", "nw"])
@pytest.mark.parametrize("meta_size", [(1, 1), (2, 2), (3, 2)])
def test_level_math_matches_meta_grid(origin, meta_size):
    # odd sizes: the last meta tiles of a level are cut to the tiles that exist
    grid = TileGrid(
        MERC, (1e5, 2e5, 9e5, 1.1e6), [1000 / 1.7**z for z in range(5)],
        tile_size=(200, 300), origin=origin,
    )  # fmt: skip
    meta_grid = MetaGrid(grid, meta_size=meta_size, meta_buffer=0)
    for level in range(grid.levels):
        math_ = _LevelMath(grid, level, meta_size)
        indices = math_.meta_indices(grid.bbox)
        cols, rows = grid.grid_size(level)
        assert len(indices) == -(-cols // meta_size[0]) * -(-rows // meta_size[1])
        for column, row in indices:
            meta = meta_grid.meta_tile(TileCoord(column * meta_size[0], row * meta_size[1], level))
            assert math_.meta_bbox(column, row) == meta.bbox
            assert math_.meta_tiles(column, row) == list(meta.tiles)


def test_walker_without_handler_counts_the_same_meta_tiles():
    grid = TileGrid(MERC, (-2e7, -2e7, 2e7, 2e7), [2e7 / 128 / 2**z for z in range(6)])
    seen: list[list[TileCoord]] = []
    with_handler = TileWalker(grid, [1, 3, 5], seen.append, meta_size=(2, 2))
    with_handler.walk(grid.bbox)
    counting = TileWalker(grid, [1, 3, 5], None, meta_size=(2, 2))
    counting.walk(grid.bbox)
    assert counting.meta_tiles == with_handler.meta_tiles == len(seen) == 1 + 16 + 256


def test_progress_string_shows_the_quarter_per_depth():
    assert progress_string([(0, 1), (0, 4), (1, 4), (2, 4), (3, 4)]) == "0.oO0"
    assert progress_string([(0, 2), (1, 2), (4, 4)]) == "o00"
    assert progress_string([(0, 1), (0, 0)]) == "0"


def test_failed_tiles_stop_at_max_failures_and_format_sorted():
    failed = FailedTiles(max_failures=2)
    failed.add("c", "g", [TileCoord(1, 0, 2), TileCoord(0, 0, 2)])
    with pytest.raises(
        TooManyFailures, match=r"^aborted: 2 meta tiles failed \(--max-failures 2\)$"
    ):
        failed.add("b", "g", [TileCoord(5, 6, 3)])
    assert format_tiles(failed.tiles) == "b g 3 5 6\nc g 2 0 0\nc g 2 1 0\n"


def test_tiles_file_is_read_per_cache_and_grid(tmp_path: Path):
    path = tmp_path / "tiles.txt"
    path.write_text("# failed\nc g 2 1 0\n\nd g 0 0 0\n  c g  3 4 5 \n")
    assert read_tiles_file(str(path)) == {
        ("c", "g"): [TileCoord(1, 0, 2), TileCoord(4, 5, 3)],
        ("d", "g"): [TileCoord(0, 0, 0)],
    }
    path.write_text("c g 2 1\n")
    with pytest.raises(SeedConfigurationError, match="line 1: expected 'cache grid z x y'"):
        read_tiles_file(str(path))


def test_group_meta_tiles_keeps_first_appearance_order():
    coords = [TileCoord(3, 3, 2), TileCoord(0, 0, 2), TileCoord(2, 2, 2), TileCoord(1, 1, 2)]
    assert group_meta_tiles(coords, (2, 2)) == [
        [TileCoord(3, 3, 2), TileCoord(2, 2, 2)],
        [TileCoord(0, 0, 2), TileCoord(1, 1, 2)],
    ]


def _take_slots(limiter: SharedRateLimiter, count: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    for _ in range(count):
        limiter.wait()
        out.put(time.monotonic())


def test_rate_limiter_spaces_calls_across_forked_processes():
    limiter = SharedRateLimiter(50)
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    workers = [context.Process(target=_take_slots, args=(limiter, 5, out)) for _ in range(4)]
    for worker in workers:
        worker.start()
    times = sorted(out.get(timeout=10) for _ in range(20))
    for worker in workers:
        worker.join()
    # 20 calls at 50/s: slots at least 19 * 20 ms apart (minus scheduling noise);
    # unlimited, the 20 calls take a few milliseconds
    assert times[-1] - times[0] >= 19 / 50 * 0.9
