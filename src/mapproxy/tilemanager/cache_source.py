"""A cache as the source of another cache whose grid lies on the same tiles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mapproxy.grid.tile_grid import TileCoord, TileGrid
from mapproxy.image.options import format_mime_type
from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapExtent, MapQuery, MapSource

if TYPE_CHECKING:
    from mapproxy.tilemanager.tile_manager import TileManager

_RES_REL_TOLERANCE = 1e-9
_ALIGN_TOLERANCE_PX = 0.01


def compatible_levels(source: TileGrid, target: TileGrid) -> dict[int, int] | None:
    """For each level of ``target`` the level of ``source`` with the very same tiles.

    None unless every tile of ``target`` is a tile of ``source``: same SRS and tile
    size, each target resolution one of the source's, tiles aligned (origins may
    differ, e.g. ``nw`` and ``sw``) and the target grid inside the source grid.
    """
    if tuple(source.tile_size) != tuple(target.tile_size) or not source.srs.is_same_as(target.srs):
        return None
    levels: dict[int, int] = {}
    for level, res in enumerate(target.resolutions):
        source_level = next(
            (
                index
                for index, source_res in enumerate(source.resolutions)
                if abs(source_res - res) <= res * _RES_REL_TOLERANCE
            ),
            None,
        )
        if source_level is None:
            return None
        columns, rows = target.grid_sizes[level]
        corners = (TileCoord(0, 0, level), TileCoord(columns - 1, rows - 1, level))
        for corner in corners:
            mapped = _source_coord(source, target.tile_bbox(corner), source_level)
            if not source.is_valid(mapped):
                return None
            expected = target.tile_bbox(corner)
            tolerance = res * _ALIGN_TOLERANCE_PX
            if any(
                abs(a - b) > tolerance
                for a, b in zip(source.tile_bbox(mapped), expected, strict=True)
            ):
                return None
        levels[level] = source_level
    return levels


def _source_coord(
    source: TileGrid, bbox: tuple[float, float, float, float], level: int
) -> TileCoord:
    return source.tile_coord((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, level)


class CacheTileSource:
    """The tiles of another cache's ``manager`` served 1:1 as tiles of ``grid``.

    ``levels`` maps our levels to the manager's (``compatible_levels``). Tiles are
    loaded (and created there if missing) and passed on as stored, without meta
    requests. Other queries go to ``fallback``, the cache's map layer.
    """

    supports_meta_tiles = False

    def __init__(
        self,
        manager: TileManager,
        grid: TileGrid,
        levels: Mapping[int, int],
        fallback: MapSource,
    ) -> None:
        self.manager = manager
        self.grid = grid
        self.levels = dict(levels)
        self.fallback = fallback
        self.transparent = fallback.transparent
        self.extent: MapExtent | None = fallback.extent
        self.format = format_mime_type(manager.image_options.format)

    def __repr__(self) -> str:
        return f"CacheTileSource({self.manager!r})"

    def get_tile(self, coord: TileCoord) -> ImageResult | None:
        """Our tile ``coord`` as the other cache stores it; None for an empty tile."""
        source_coord = _source_coord(
            self.manager.grid, self.grid.tile_bbox(coord), self.levels[coord.z]
        )
        tile = self.manager.load_tile(source_coord)
        if not tile.data:
            return None
        return ImageResult(
            tile.data, format=self.format, transparent=self.transparent, cacheable=tile.cacheable
        )

    def get_map(self, query: MapQuery) -> ImageResult:
        """A single tile of our grid directly, anything else through the fallback layer."""
        coord = self._tile_for(query)
        if coord is not None:
            result = self.get_tile(coord)
            if result is not None:
                return result
        return self.fallback.get_map(query)

    def _tile_for(self, query: MapQuery) -> TileCoord | None:
        grid = self.grid
        if tuple(query.size) != tuple(grid.tile_size) or not query.srs.is_same_as(grid.srs):
            return None
        res = (query.bbox[2] - query.bbox[0]) / query.size[0]
        level = next(
            (index for index, r in enumerate(grid.resolutions) if abs(r - res) <= r * 1e-6), None
        )
        if level is None:
            return None
        bbox = query.bbox
        coord = grid.tile_coord((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, level)
        if not grid.is_valid(coord):
            return None
        tolerance = res * _ALIGN_TOLERANCE_PX * 10
        if any(abs(a - b) > tolerance for a, b in zip(grid.tile_bbox(coord), bbox, strict=True)):
            return None
        return coord
