"""Map layers: a cache assembled from tiles (and reprojected), or a source used directly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from mapproxy.cache.base import Tile
from mapproxy.errors import MapProxyError, NoTiles, TransformationError
from mapproxy.grid.tile_grid import TileCoord, TileGrid
from mapproxy.image.blank import blank_image
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.image.transform import transform_tiles
from mapproxy.layer.base import ResolutionRange
from mapproxy.source.base import MapExtent, MapQuery, MapSource
from mapproxy.source.coverage import get_covered_map, source_coverage
from mapproxy.srs import BBox, bbox_intersects


class TooManyTiles(MapProxyError):
    """A request would need more tiles than ``max_tile_limit`` allows."""


NOT_A_SINGLE_TILE = "Request too large or invalid BBOX. (not a single tile)"


class NotASingleTile(MapProxyError):
    """A WMS-C (``TILED=true``) request does not match exactly one tile of a cache."""

    def __init__(self, message: str = NOT_A_SINGLE_TILE) -> None:
        super().__init__(message)


def single_tile(grid: TileGrid, bbox: BBox, size: tuple[int, int]) -> TileCoord | None:
    """The tile of ``grid`` whose bbox is ``bbox`` (grid srs) at ``size``, else None.

    The level is the one a normal request of that resolution uses; the tile is the one
    holding the bbox centre, and its bbox must match within a tenth of a pixel. The
    coordinate may lie outside the grid (check ``grid.is_valid``).
    """
    if tuple(size) != tuple(grid.tile_size) or size[0] <= 0 or size[1] <= 0:
        return None
    res = min((bbox[2] - bbox[0]) / size[0], (bbox[3] - bbox[1]) / size[1])
    if res <= 0:
        return None
    level = grid.closest_level(res)
    coord = grid.tile_coord((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, level)
    if not _same_bbox(grid.tile_bbox(coord), bbox, grid.resolution(level)):
        return None
    return coord


class GridTileLoader(Protocol):
    """A TileManager: the grid it serves and a bulk tile load."""

    grid: TileGrid

    def load_tiles(self, coords: Sequence[TileCoord]) -> list[Tile]:
        """Tiles for ``coords`` in the same order, created where missing (a TileManager
        also takes ``dimensions=`` for its sources)."""
        ...


class CacheMapLayer:
    """Renders arbitrary bboxes/SRS from the tiles of a cache (one tile manager per grid).

    The grid in the request SRS is used when there is one; otherwise a projected grid
    for projected requests and a geographic one for geographic requests, else any. Of
    several candidates the last listed wins, as in MapProxy 7.0.0.
    Of the query's dimensions, caches with storage get those named in
    ``dimension_names`` (the layer's, lower-case; spelled as in the query); caches with
    ``disable_storage`` get all.
    """

    supports_meta_tiles = True

    def __init__(
        self,
        tile_managers: Sequence[GridTileLoader],
        extent: MapExtent,
        image_options: ImageOptions,
        transparent: bool = False,
        max_tile_limit: int = 500,
        res_range: ResolutionRange | None = None,
        dimension_names: frozenset[str] = frozenset(),
    ) -> None:
        if not tile_managers:
            raise ValueError("a cache layer needs at least one tile manager")
        self.tile_managers = list(tile_managers)
        self.extent = extent
        self.image_options = image_options
        self.transparent = transparent
        self.max_tile_limit = max_tile_limit
        self.res_range = res_range
        self.dimension_names = dimension_names
        # later grids replace earlier ones of the same SRS
        self._manager_by_srs: dict[str, GridTileLoader] = {
            tm.grid.srs.code: tm for tm in self.tile_managers
        }
        self._fallback_manager = self._manager_by_srs[self.tile_managers[0].grid.srs.code]

    def _manager_for(self, query: MapQuery) -> GridTileLoader:
        manager = self._manager_by_srs.get(query.srs.code)
        if manager is not None:
            return manager
        candidates = [tm for tm in self.tile_managers if tm.grid.srs.is_same_as(query.srs)]
        if not candidates:
            candidates = [
                tm for tm in self.tile_managers if tm.grid.srs.is_latlong == query.srs.is_latlong
            ]
        # with no grid of the same kind MapProxy 7.0.0 takes the first grid's SRS (and
        # of its grids the last); seen side by side with geographic requests
        manager = candidates[-1] if candidates else self._fallback_manager
        self._manager_by_srs[query.srs.code] = manager
        return manager

    def get_map(self, query: MapQuery) -> ImageResult:
        """Assemble the tiles covering ``query`` and fit them to its bbox/size/SRS."""
        options = self.image_options.updated(transparent=True)
        if self.res_range is not None and not self.res_range.contains(
            query.bbox[2] - query.bbox[0], query.size[0], query.srs
        ):
            return blank_image(query.size, options)
        try:
            extent_bbox = self.extent.bbox_for(query.srs)
        except TransformationError:
            extent_bbox = None
        if extent_bbox is not None and not bbox_intersects(extent_bbox, query.bbox):
            return blank_image(query.size, options)

        manager = self._manager_for(query)
        grid = manager.grid
        if query.tiled_only and (
            not grid.srs.is_same_as(query.srs) or single_tile(grid, query.bbox, query.size) is None
        ):
            raise NotASingleTile()
        try:
            affected = grid.affected_tiles(query.bbox, query.size, query.srs)
        except (NoTiles, TransformationError):
            return blank_image(query.size, options)
        coords = [coord for coord in affected.tiles if coord is not None]
        if len(coords) > self.max_tile_limit:
            raise TooManyTiles(
                f"too many tiles, max_tile_limit: {self.max_tile_limit}, tiles: {len(coords)}"
            )
        if not coords:
            return blank_image(query.size, options)
        dimensions = query.dimensions
        if dimensions and not getattr(manager, "disable_storage", False):
            dimensions = {
                name: value
                for name, value in dimensions.items()
                if name.lower() in self.dimension_names
            }
        if dimensions:
            load: Any = manager.load_tiles
            loaded: list[Tile] = load(coords, dimensions=dimensions)
        else:
            loaded = manager.load_tiles(coords)
        by_coord = {tile.coord: tile for tile in loaded}
        cacheable = all(tile.cacheable for tile in loaded)
        tile_results: list[ImageResult | None] = []
        for coord in affected.tiles:
            tile = by_coord.get(coord) if coord is not None else None
            if tile is None or not tile.data:
                tile_results.append(None)
            else:
                tile_results.append(ImageResult(tile.data))

        if (
            len(tile_results) == 1
            and tile_results[0] is not None
            and grid.srs.is_same_as(query.srs)
            and _same_bbox(affected.bbox, query.bbox, grid.resolution(affected.level))
            and tuple(grid.tile_size) == tuple(query.size)
        ):
            single = tile_results[0]
            single.cacheable = cacheable
            return single

        result_image = transform_tiles(
            tile_results,
            affected.grid_size,
            grid.tile_size,
            affected.bbox,
            grid.srs,
            query.bbox,
            query.size,
            query.srs,
            resampling=self.image_options.resampling,
        )
        return ImageResult(result_image, size=query.size, transparent=True, cacheable=cacheable)


def _same_bbox(a: BBox, b: BBox, res: float) -> bool:
    tolerance = res / 10
    return all(abs(x - y) < tolerance for x, y in zip(a, b, strict=True))


class DirectMapLayer:
    """A source used directly (no cache), limited to its extent and resolution range."""

    def __init__(
        self,
        source: MapSource,
        extent: MapExtent,
        res_range: ResolutionRange | None = None,
    ) -> None:
        self.source = source
        self.extent = extent
        self.transparent = source.transparent
        self.supports_meta_tiles = source.supports_meta_tiles
        self.res_range = res_range

    def get_map(self, query: MapQuery) -> ImageResult:
        """The source's answer for ``query``, or a transparent image outside its range."""
        options = ImageOptions(format=query.format, transparent=True)
        if self.res_range is not None and not self.res_range.contains(
            query.bbox[2] - query.bbox[0], query.size[0], query.srs
        ):
            return blank_image(query.size, options)
        if self.source.extent is not None:
            try:
                extent_bbox = self.source.extent.bbox_for(query.srs)
            except TransformationError:
                extent_bbox = None
            if extent_bbox is not None and not bbox_intersects(extent_bbox, query.bbox):
                return blank_image(query.size, options)
        coverage = source_coverage(self.source)
        if coverage is not None:
            result = get_covered_map(self.source, coverage, query)
            return result if result is not None else blank_image(query.size, options)
        return self.source.get_map(query)
