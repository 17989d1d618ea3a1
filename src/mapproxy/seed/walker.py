"""Depth-first walk over the meta tiles of a task, tested against its coverage."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from mapproxy.grid import MetaGrid, TileGrid
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.srs import BBox, bbox_intersects

# (index, count) of the child being handled at each depth of the walk
Position = list[tuple[int, int]]
TileHandler = Callable[[list[TileCoord]], None]
# as TileGrid.affected_level_tiles: an edge this close (in tile widths) to a tile edge lies on it
_TILE_EPS = 1e-6


class WalkReporter:
    """What the walker reports to: progress of the walk (see progress.ProgressLog)."""

    def log_step(self, level: int, bbox: BBox, position: Position, meta_tiles: int) -> None:
        """Called at the start of every frame and after every child."""


def walk_meta_size(tile_manager: Any) -> tuple[int, int]:
    """The cache's meta size, or 1x1 when its sources take no meta requests."""
    meta_grid = getattr(tile_manager, "meta_grid", None)
    sources = getattr(tile_manager, "sources", [])
    if meta_grid is None or not all(s.supports_meta_tiles for s in sources):
        return (1, 1)
    return (int(meta_grid.meta_size[0]), int(meta_grid.meta_size[1]))


class TileWalker:
    """Walks ``grid`` from the first to the last of ``levels`` over meta tiles.

    Each meta tile is handed to ``handler`` (valid tiles only) after all its
    descendants, if its level is selected; without a handler (dry run) meta tiles are
    only counted. Children outside ``coverage`` are skipped;
    inside it (and on the last ``skip_geoms_for_last_levels`` levels) no geometry is
    tested. ``resume`` is a position stored by an earlier run.
    """

    def __init__(
        self,
        grid: TileGrid,
        levels: Sequence[int],
        handler: TileHandler | None,
        coverage: Any | None = None,
        meta_size: tuple[int, int] = (1, 1),
        reporter: WalkReporter | None = None,
        skip_geoms_for_last_levels: int = 0,
        resume: Position | None = None,
    ) -> None:
        self.grid = grid
        self.levels = sorted(levels)
        self._selected = frozenset(self.levels)
        self.handler = handler
        self.coverage = coverage
        self.meta_grid = MetaGrid(grid, meta_size=meta_size, meta_buffer=0)
        self.reporter = reporter or WalkReporter()
        last = self.levels[-1] if self.levels else 0
        self._geom_test_until = last - max(0, skip_geoms_for_last_levels)
        self._resume = list(resume) if resume else None
        self._levels_math: dict[int, _LevelMath] = {}
        self.meta_tiles = 0
        self.position: Position = []

    def walk(self, bbox: BBox) -> None:
        """Walk everything below ``bbox`` (grid SRS)."""
        if not self.levels:
            return
        self._walk(bbox, self.levels[0], all_inside=self.coverage is None, depth=0)
        self.position = []

    def _level_math(self, level: int) -> _LevelMath:
        found = self._levels_math.get(level)
        if found is None:
            found = _LevelMath(self.grid, level, self.meta_grid.meta_size)
            self._levels_math[level] = found
        return found

    def _children(self, bbox: BBox, level: int) -> list[tuple[int, int]]:
        """Meta tile indices (column, row) of ``level`` below ``bbox``, in image order."""
        grid_bbox = self.grid.bbox
        if not bbox_intersects(bbox, grid_bbox):
            return []
        return self._level_math(level).meta_indices(bbox)

    def _walk(self, bbox: BBox, level: int, all_inside: bool, depth: int) -> None:
        metas = self._children(bbox, level)
        count = len(metas)
        start = 0
        resume_here = None
        if self._resume is not None:
            if depth < len(self._resume) and self._resume[depth][1] == count:
                start = self._resume[depth][0]
                if depth + 1 >= len(self._resume):
                    self._resume = None
                else:
                    resume_here = start
            else:
                self._resume = None
        position = self.position
        position[depth:] = [(start, count)]
        log_step = self.reporter.log_step
        log_step(level, bbox, position, self.meta_tiles)
        srs = self.grid.srs
        coverage = self.coverage
        level_math = self._level_math(level)
        meta_bbox = level_math.meta_bbox
        # whole subtrees inside the coverage (or below the geometry levels) are not tested
        inside = all_inside or level > self._geom_test_until or coverage is None
        descend = level < self.levels[-1]
        selected = level in self._selected
        handler = self.handler
        for index in range(start, count):
            column, row = metas[index]
            child_bbox = meta_bbox(column, row)
            position[depth:] = [(index, count)]
            if index != resume_here and self._resume is not None:
                self._resume = None
            child_inside = inside
            if not inside:
                assert coverage is not None
                if coverage.contains(child_bbox, srs):
                    child_inside = True
                elif not coverage.intersects(child_bbox, srs):
                    position[depth:] = [(index + 1, count)]
                    log_step(level, bbox, position, self.meta_tiles)
                    continue
            if descend:
                self._walk(child_bbox, level + 1, child_inside, depth + 1)
                position[depth:] = [(index, count)]
            if selected:
                if handler is not None:
                    handler(level_math.meta_tiles(column, row))
                self.meta_tiles += 1
            position[depth:] = [(index + 1, count)]
            log_step(level, bbox, position, self.meta_tiles)


class _LevelMath:
    """Tile and meta tile arithmetic of one level (meta buffer 0), without objects per tile."""

    __slots__ = (
        "cols",
        "is_nw",
        "level",
        "maxy",
        "meta_h",
        "meta_w",
        "minx",
        "miny",
        "rows",
        "tile_h",
        "tile_w",
    )

    def __init__(self, grid: TileGrid, level: int, meta_size: tuple[int, int]) -> None:
        self.level = level
        self.cols, self.rows = grid.grid_size(level)
        res = grid.resolution(level)
        self.tile_w = res * grid.tile_size[0]
        self.tile_h = res * grid.tile_size[1]
        self.minx, self.miny, _, self.maxy = grid.bbox
        self.is_nw = grid.origin == "nw"
        self.meta_w, self.meta_h = meta_size

    def meta_indices(self, bbox: BBox) -> list[tuple[int, int]]:
        """Meta tiles touching the tiles of ``bbox``: north-most row first, west to east."""
        w, h = self.tile_w, self.tile_h
        x0 = math.floor((bbox[0] - self.minx) / w + _TILE_EPS)
        x1 = max(x0, math.ceil((bbox[2] - self.minx) / w - _TILE_EPS) - 1)
        if self.is_nw:
            y0 = math.floor((self.maxy - bbox[3]) / h + _TILE_EPS)
            y1 = max(y0, math.ceil((self.maxy - bbox[1]) / h - _TILE_EPS) - 1)
        else:
            y0 = math.floor((bbox[1] - self.miny) / h + _TILE_EPS)
            y1 = max(y0, math.ceil((bbox[3] - self.miny) / h - _TILE_EPS) - 1)
        x0, x1 = max(x0, 0), min(x1, self.cols - 1)
        y0, y1 = max(y0, 0), min(y1, self.rows - 1)
        if x0 > x1 or y0 > y1:
            return []
        columns = range(x0 // self.meta_w, x1 // self.meta_w + 1)
        meta_rows = range(y0 // self.meta_h, y1 // self.meta_h + 1)
        if not self.is_nw:
            meta_rows = meta_rows[::-1]
        return [(column, row) for row in meta_rows for column in columns]

    def _block(self, column: int, row: int) -> tuple[int, int, int, int]:
        x0 = column * self.meta_w
        y0 = row * self.meta_h
        return x0, y0, min(x0 + self.meta_w, self.cols) - 1, min(y0 + self.meta_h, self.rows) - 1

    def meta_bbox(self, column: int, row: int) -> BBox:
        """Bbox of a meta tile (grid units), the same floats as ``MetaGrid`` computes."""
        x0, y0, x1, y1 = self._block(column, row)
        w, h = self.tile_w, self.tile_h
        minx = self.minx + x0 * w
        maxx = self.minx + (x1 + 1) * w
        if self.is_nw:
            return (minx, self.maxy - (y1 + 1) * h, maxx, self.maxy - y0 * h)
        return (minx, self.miny + y0 * h, maxx, self.miny + (y1 + 1) * h)

    def meta_tiles(self, column: int, row: int) -> list[TileCoord]:
        """The tiles of a meta tile in image order (north-most row first)."""
        x0, y0, x1, y1 = self._block(column, row)
        rows = range(y0, y1 + 1) if self.is_nw else range(y1, y0 - 1, -1)
        level = self.level
        return [TileCoord(x, y, level) for y in rows for x in range(x0, x1 + 1)]


def position_fraction(position: Position) -> float:
    """How much of the walk lies before ``position`` (0.0 to 1.0)."""
    fraction = 0.0
    scale = 1.0
    for index, count in position:
        if count == 0:
            break
        fraction += scale * index / count
        scale /= count
    return min(1.0, fraction)
