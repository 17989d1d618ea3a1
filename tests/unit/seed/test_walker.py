"""TileWalker: the seeded tiles per level are exactly the meta tiles touching the coverage."""

from __future__ import annotations

import math

import shapely

from mapproxy.coverage import bbox_coverage, geometry_coverage
from mapproxy.grid import TileGrid
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.seed.walker import TileWalker, WalkReporter, position_fraction
from mapproxy.srs import get_srs

MERC = get_srs("EPSG:3857")
HALF = 20037508.342789244


def webmercator(levels: int = 8) -> TileGrid:
    res = [2 * HALF / 256 / 2**z for z in range(levels)]
    return TileGrid(MERC, (-HALF, -HALF, HALF, HALF), res, origin="sw")


def expected_tiles(grid: TileGrid, level: int, meta: int, inside) -> set[TileCoord]:  # type: ignore[no-untyped-def]
    """Independent grid math: all tiles of every meta block whose bbox passes ``inside``."""
    size = 2 * HALF / 2**level  # tile width in m
    tiles_per_side = 2**level
    result = set()
    for mx in range(0, tiles_per_side, meta):
        for my in range(0, tiles_per_side, meta):
            minx = -HALF + mx * size
            miny = -HALF + my * size
            maxx = minx + meta * size
            maxy = miny + meta * size
            if inside((minx, miny, maxx, maxy)):
                for x in range(mx, min(mx + meta, tiles_per_side)):
                    for y in range(my, min(my + meta, tiles_per_side)):
                        result.add(TileCoord(x, y, level))
    return result


def walk(grid, levels, coverage, meta=2, **kwargs):  # type: ignore[no-untyped-def]
    seen: list[list[TileCoord]] = []
    walker = TileWalker(
        grid, levels, seen.append, coverage=coverage, meta_size=(meta, meta), **kwargs
    )
    start = coverage.bbox_for(grid.srs) if coverage is not None else grid.bbox
    walker.walk(start)
    return seen, walker


def test_bbox_coverage_seeds_every_meta_tile_intersecting_it_per_level():
    grid = webmercator()
    bbox = (645653.0466, 5974780.48215, 1680924.31098, 7381298.31219)
    coverage = bbox_coverage(bbox, MERC)
    seen, walker = walk(grid, range(8), coverage)
    tiles = {coord for meta in seen for coord in meta}

    def inside(b):  # type: ignore[no-untyped-def]
        return b[0] < bbox[2] and b[2] > bbox[0] and b[1] < bbox[3] and b[3] > bbox[1]

    for level in range(8):
        got = {t for t in tiles if t.z == level}
        assert got == expected_tiles(grid, level, 2, inside), level
    assert walker.meta_tiles == len(seen)


def test_polygon_coverage_skips_meta_tiles_outside_the_triangle():
    grid = webmercator()
    # edges off the tile edges: float noise at shared edges would make the test flaky
    triangle = shapely.Polygon([(1e5, 1e5), (8e6, 2e5), (3e5, 7e6)])
    coverage = geometry_coverage(triangle, MERC)
    seen, _ = walk(grid, [3, 4, 5, 6], coverage)
    tiles = {coord for meta in seen for coord in meta}

    def inside(b):  # type: ignore[no-untyped-def]
        box = shapely.box(*b)
        return triangle.intersects(box) and not triangle.touches(box)

    for level in (3, 4, 5, 6):
        assert {t for t in tiles if t.z == level} == expected_tiles(grid, level, 2, inside)
    assert not any(t.z < 3 for t in tiles)


def test_meta_tiles_are_handled_after_their_descendants():
    grid = webmercator(4)
    seen, _ = walk(grid, [0, 1, 2, 3], None)
    order = [meta[0].z for meta in seen]
    # depth first: the single level-0 meta tile comes last, level 3 comes first
    assert order[0] == 3
    assert order[-1] == 0
    assert len(seen) == 1 + 1 + 4 + 16


def test_unselected_levels_are_traversed_but_not_handled():
    grid = webmercator(5)
    seen, _ = walk(grid, [1, 4], None)
    assert {meta[0].z for meta in seen} == {1, 4}
    assert sum(len(meta) for meta in seen if meta[0].z == 4) == 16 * 16


def test_skip_geoms_for_last_levels_treats_tiles_as_inside():
    grid = webmercator(6)
    coverage = bbox_coverage((1, 1, 2, 2), MERC)  # a tiny box: one tile per level
    normal, _ = walk(grid, [4, 5], coverage, meta=1)
    skipped, _ = walk(grid, [4, 5], coverage, meta=1, skip_geoms_for_last_levels=1)
    assert len(normal) == 2
    # level 5 below the level-4 tile: all four children, untested
    assert len(skipped) == 1 + 4


class Recorder(WalkReporter):
    def __init__(self) -> None:
        self.positions: list[list[tuple[int, int]]] = []

    def log_step(self, level, bbox, position, meta_tiles):  # type: ignore[no-untyped-def]
        self.positions.append(list(position))


def test_resume_from_a_stored_position_handles_exactly_the_rest():
    grid = webmercator(5)
    full, _ = walk(grid, [2, 3, 4], None)
    recorder = Recorder()
    walk(grid, [2, 3, 4], None, reporter=recorder)
    # a position in the middle of the walk, as the progress file would hold it
    position = recorder.positions[len(recorder.positions) // 2]
    resumed, _ = walk(grid, [2, 3, 4], None, resume=position)
    assert resumed == full[len(full) - len(resumed) :]
    fraction = position_fraction(position)
    assert 0 < fraction < 1
    assert math.isclose(len(resumed) / len(full), 1 - fraction, abs_tol=0.15)
