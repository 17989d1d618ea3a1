"""Meta tiles: aligned blocks of tiles fetched from a source in one request."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mapproxy.errors import TileOutsideGrid
from mapproxy.grid.tile_grid import TileCoord, TileGrid
from mapproxy.srs import BBox

# Slack, in pixels, for float noise when measuring the room left for a buffer.
_PIXEL_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class MetaTile:
    """One meta tile: the request to a source and where each tile sits in its image.

    ``main_coord`` is the tile with the lowest x and y (grid numbering) and serves
    as the lock key. ``bbox`` (grid srs) and ``size`` (pixels) include the buffer.
    ``tile_patterns`` lists every tile, in image order, with the (left, top) pixel
    offset of its upper-left corner in the meta image.
    """

    main_coord: TileCoord
    bbox: BBox
    size: tuple[int, int]
    tile_patterns: tuple[tuple[TileCoord, tuple[int, int]], ...]

    @property
    def tiles(self) -> tuple[TileCoord, ...]:
        """Coordinates of all tiles in this meta tile, in image order."""
        return tuple(coord for coord, _ in self.tile_patterns)


class MetaGrid:
    """Groups the tiles of ``grid`` into meta tiles of ``meta_size`` tiles.

    Meta tiles are aligned blocks (x // meta width, y // meta height) cut to the
    tiles that exist at the level. ``meta_buffer`` pixels are added on every side,
    but only as far as the grid bbox reaches.
    """

    __slots__ = ("grid", "meta_buffer", "meta_size")

    def __init__(
        self, grid: TileGrid, meta_size: Sequence[int] = (4, 4), meta_buffer: int = 80
    ) -> None:
        meta_w, meta_h = int(meta_size[0]), int(meta_size[1])
        if meta_w < 1 or meta_h < 1:
            raise ValueError(f"invalid meta_size {tuple(meta_size)!r}")
        if meta_buffer < 0:
            raise ValueError(f"meta_buffer must not be negative, got {meta_buffer}")
        self.grid = grid
        self.meta_size = (meta_w, meta_h)
        self.meta_buffer = int(meta_buffer)

    def __repr__(self) -> str:
        return (
            f"MetaGrid({self.grid!r}, meta_size={self.meta_size}, meta_buffer={self.meta_buffer})"
        )

    def _block(self, coord: TileCoord) -> tuple[int, int, int, int]:
        """Inclusive tile range (x0, y0, x1, y1) of the meta tile containing ``coord``."""
        if not self.grid.is_valid(coord):
            raise TileOutsideGrid(f"tile {coord.x}/{coord.y}/{coord.z} is outside the grid")
        cols, rows = self.grid.grid_sizes[coord.z]
        meta_w, meta_h = self.meta_size
        x0 = coord.x // meta_w * meta_w
        y0 = coord.y // meta_h * meta_h
        return x0, y0, min(x0 + meta_w, cols) - 1, min(y0 + meta_h, rows) - 1

    def main_tile(self, coord: TileCoord) -> TileCoord:
        """Lock key of the meta tile containing ``coord``; raises TileOutsideGrid."""
        x0, y0, _, _ = self._block(coord)
        return TileCoord(x0, y0, coord.z)

    def meta_tile(self, coord: TileCoord) -> MetaTile:
        """The meta tile containing ``coord``; raises TileOutsideGrid."""
        return self._block_meta_tile(self._block(coord), coord.z)

    def minimal_meta_tile(self, coords: Iterable[TileCoord]) -> MetaTile:
        """One meta tile of the smallest tile block holding ``coords`` (all of one level).

        The block may be larger or smaller than ``meta_size``; the buffer is as for
        ``meta_tile``. Raises TileOutsideGrid for invalid coords, ValueError for none.
        """
        coords = list(coords)
        if not coords:
            raise ValueError("minimal_meta_tile needs at least one tile")
        level = coords[0].z
        for coord in coords:
            if coord.z != level or not self.grid.is_valid(coord):
                raise TileOutsideGrid(f"tile {coord.x}/{coord.y}/{coord.z} is outside the grid")
        block = (
            min(c.x for c in coords),
            min(c.y for c in coords),
            max(c.x for c in coords),
            max(c.y for c in coords),
        )
        return self._block_meta_tile(block, level)

    def _block_meta_tile(self, block: tuple[int, int, int, int], level: int) -> MetaTile:
        grid = self.grid
        x0, y0, x1, y1 = block
        tile_w, tile_h = grid.tile_size
        res = grid.resolutions[level]

        # Union of the tile bboxes: south-west corner tile and north-east corner tile.
        if grid.origin == "nw":
            sw_bbox = grid.tile_bbox(TileCoord(x0, y1, level))
            ne_bbox = grid.tile_bbox(TileCoord(x1, y0, level))
        else:
            sw_bbox = grid.tile_bbox(TileCoord(x0, y0, level))
            ne_bbox = grid.tile_bbox(TileCoord(x1, y1, level))
        minx, miny, maxx, maxy = sw_bbox[0], sw_bbox[1], ne_bbox[2], ne_bbox[3]

        grid_bbox = grid.bbox
        left = self._buffer_px(minx - grid_bbox[0], res)
        bottom = self._buffer_px(miny - grid_bbox[1], res)
        right = self._buffer_px(grid_bbox[2] - maxx, res)
        top = self._buffer_px(grid_bbox[3] - maxy, res)

        num_cols = x1 - x0 + 1
        num_rows = y1 - y0 + 1
        size = (num_cols * tile_w + left + right, num_rows * tile_h + top + bottom)
        bbox = (
            minx - left * res,
            miny - bottom * res,
            maxx + right * res,
            maxy + top * res,
        )

        # Image order: north-most row first; that is y1 for sw grids, y0 for nw grids.
        rows = range(y0, y1 + 1) if grid.origin == "nw" else range(y1, y0 - 1, -1)
        patterns = tuple(
            (TileCoord(x, y, level), (left + col * tile_w, top + row * tile_h))
            for row, y in enumerate(rows)
            for col, x in enumerate(range(x0, x1 + 1))
        )
        return MetaTile(
            main_coord=TileCoord(x0, y0, level),
            bbox=bbox,
            size=size,
            tile_patterns=patterns,
        )

    def _buffer_px(self, room: float, res: float) -> int:
        """Buffer pixels that fit into ``room`` grid units, at most ``meta_buffer``."""
        if self.meta_buffer == 0 or room <= 0:
            return 0
        return min(self.meta_buffer, math.floor(room / res + _PIXEL_EPS))

    def meta_tiles_for(self, coords: Iterable[TileCoord]) -> list[MetaTile]:
        """Unique meta tiles containing ``coords``, in first-seen order."""
        seen: set[TileCoord] = set()
        result: list[MetaTile] = []
        for coord in coords:
            main = self.main_tile(coord)
            if main in seen:
                continue
            seen.add(main)
            result.append(self.meta_tile(coord))
        return result
