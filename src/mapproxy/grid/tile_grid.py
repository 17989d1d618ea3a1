"""TileGrid: a pyramid of tile levels over a bbox in one SRS.

INTERFACE CONTRACT (filled in by the grid helper; signatures are fixed):

- ``TileGrid(srs, bbox, resolutions, tile_size=(256, 256), origin='sw', name=None,
  stretch_factor=1.15, max_shrink_factor=4.0, threshold_res=None)``; ``origin`` is
  normalized to ``'sw'`` (also ``'ll'``) or ``'nw'`` (also ``'ul'``).
- Attributes: ``srs``, ``bbox``, ``tile_size``, ``resolutions`` (tuple, coarsest
  first), ``origin``, ``name``, ``levels``, ``grid_sizes`` ((cols, rows) per level),
  ``stretch_factor``, ``max_shrink_factor``, ``threshold_res``.
- ``resolution(level)``, ``grid_size(level)``, ``tile_bbox(coord)``,
  ``tile_coord(x, y, level)``, ``is_valid(coord)``, ``limit_tile(coord)``,
  ``closest_level(res)``, ``affected_tiles(bbox, size, req_srs=None)``,
  ``affected_level_tiles(bbox, level)``, ``flip_y(coord)``,
  ``supports_nw_addressing()``, ``is_global_mercator``, ``is_global_geodetic``,
  ``tms_profile``.

All coordinates are x/y (east/north) in grid SRS units; tile y counts northwards
from ``miny`` for ``sw`` grids and southwards from ``maxy`` for ``nw`` grids.
Levels out of range raise TileOutsideGrid; requests without tiles raise NoTiles.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from mapproxy.errors import NoTiles, TileOutsideGrid
from mapproxy.srs import SRS, BBox, bbox_intersects


@dataclass(frozen=True, slots=True)
class TileCoord:
    """Internal tile coordinate: x/y counted from the grid origin, z the level index."""

    x: int
    y: int
    z: int


@dataclass(frozen=True, slots=True)
class AffectedTiles:
    """Tiles needed to cover a request at one level.

    ``tiles`` is row-major in *image order*: the first row is the northern-most row,
    each row runs west to east. Entries are None where the position lies outside the
    grid. ``bbox`` is the union of the tile bboxes (including outside positions);
    ``grid_size`` is (columns, rows).
    """

    bbox: BBox
    grid_size: tuple[int, int]
    tiles: tuple[TileCoord | None, ...]
    level: int


_ORIGINS = {"sw": "sw", "ll": "sw", "nw": "nw", "ul": "nw"}

# Slack, in tile widths, for float noise when mapping coordinates to tile indices:
# a request edge this close to a tile edge counts as lying on it.
_TILE_EPS = 1e-6
# A request reaching at most this far (in pixels of the level) over a tile edge does
# not need the tile beyond it (as MapProxy 7.0.0, for maps and for seeding).
_OVERLAP_TOLERANCE_PX = 0.1
# Slack, in pixels, when counting the pixels of the grid bbox per level.
_PIXEL_EPS = 1e-6
# Max misalignment, in pixels, for a sw grid to still be addressable from the north.
_ALIGN_TOLERANCE_PX = 0.01
# Relative slack for resolution comparisons in level selection.
_RES_EPS = 1e-9
# Relative tolerance when comparing a grid bbox with the well-known global ones.
_BBOX_REL_TOL = 1e-9

_MERCATOR_EXTENT = 20037508.342789244
GLOBAL_MERCATOR_BBOX: BBox = (
    -_MERCATOR_EXTENT,
    -_MERCATOR_EXTENT,
    _MERCATOR_EXTENT,
    _MERCATOR_EXTENT,
)
GLOBAL_GEODETIC_BBOX: BBox = (-180.0, -90.0, 180.0, 90.0)
_MERCATOR_CODES = frozenset({"EPSG:900913", "EPSG:3857"})


class TileGrid:
    """Tile levels over ``bbox`` in ``srs``; level 0 is the coarsest resolution.

    Tiles are anchored at the origin corner of the bbox: column 0 starts at minx,
    row 0 starts at miny (``sw``) or at maxy counting southwards (``nw``). Tiles of
    the last column/row may extend beyond the bbox.
    """

    __slots__ = (
        "_align_nw",
        "_is_nw",
        "_max_request_res",
        "_maxy",
        "_minx",
        "_miny",
        "_neg_res",
        "_thresholds",
        "_tile_heights",
        "_tile_widths",
        "bbox",
        "grid_sizes",
        "levels",
        "max_shrink_factor",
        "name",
        "origin",
        "resolutions",
        "srs",
        "stretch_factor",
        "threshold_res",
        "tile_size",
    )

    def __init__(
        self,
        srs: SRS,
        bbox: BBox | Sequence[float],
        resolutions: Sequence[float],
        tile_size: Sequence[int] = (256, 256),
        origin: str | None = "sw",
        name: str | None = None,
        stretch_factor: float = 1.15,
        max_shrink_factor: float = 4.0,
        threshold_res: Sequence[float] | None = None,
    ) -> None:
        normalized_origin = _ORIGINS.get((origin or "sw").lower())
        if normalized_origin is None:
            raise ValueError(f"unknown grid origin {origin!r} (use sw, ll, nw or ul)")
        minx, miny, maxx, maxy = (float(v) for v in bbox)
        if not (minx < maxx and miny < maxy):
            raise ValueError(f"invalid grid bbox {tuple(bbox)!r}")
        res = tuple(float(r) for r in resolutions)
        if not res:
            raise ValueError("a grid needs at least one resolution")
        if res[-1] <= 0:
            raise ValueError(f"resolutions must be positive, got {res[-1]}")
        if any(a < b for a, b in pairwise(res)):
            raise ValueError("resolutions must be sorted from coarsest to finest")
        tile_w, tile_h = int(tile_size[0]), int(tile_size[1])
        if tile_w <= 0 or tile_h <= 0:
            raise ValueError(f"invalid tile size {tuple(tile_size)!r}")

        self.srs = srs
        self.bbox: BBox = (minx, miny, maxx, maxy)
        self.tile_size = (tile_w, tile_h)
        self.resolutions = res
        self.origin = normalized_origin
        self.name = name
        self.stretch_factor = float(stretch_factor)
        self.max_shrink_factor = float(max_shrink_factor)
        self.levels = len(res)

        width, height = maxx - minx, maxy - miny
        self.grid_sizes = tuple(
            (_tiles_for_extent(width, r, tile_w), _tiles_for_extent(height, r, tile_h)) for r in res
        )
        self._minx, self._miny, self._maxy = minx, miny, maxy
        self._is_nw = normalized_origin == "nw"
        self._tile_widths = tuple(r * tile_w for r in res)
        self._tile_heights = tuple(r * tile_h for r in res)
        self._neg_res = tuple(-r for r in res)
        self._max_request_res = res[0] * self.max_shrink_factor
        self._align_nw = self._is_nw or all(
            abs(height / r - rows * tile_h) <= _ALIGN_TOLERANCE_PX
            for r, (_, rows) in zip(res, self.grid_sizes, strict=True)
        )

        self.threshold_res = tuple(sorted((float(t) for t in threshold_res or ()), reverse=True))
        # One entry per gap between level l and l + 1: the threshold that decides
        # between them, or None where the stretch factor decides.
        gaps: list[float | None] = []
        for coarse, fine in pairwise(res):
            inside = [t for t in self.threshold_res if coarse > t >= fine]
            gaps.append(max(inside) if inside else None)
        self._thresholds = tuple(gaps) if any(g is not None for g in gaps) else None

    def __repr__(self) -> str:
        return (
            f"TileGrid(name={self.name!r}, srs={self.srs.code!r}, bbox={self.bbox!r}, "
            f"origin={self.origin!r}, levels={self.levels})"
        )

    def _check_level(self, level: int) -> None:
        if not 0 <= level < self.levels:
            raise TileOutsideGrid(f"level {level} is outside the grid (0-{self.levels - 1})")

    def resolution(self, level: int) -> float:
        """Resolution (grid units per pixel) of ``level``; raises TileOutsideGrid."""
        self._check_level(level)
        return self.resolutions[level]

    def grid_size(self, level: int) -> tuple[int, int]:
        """Number of (columns, rows) of ``level``; raises TileOutsideGrid."""
        self._check_level(level)
        return self.grid_sizes[level]

    def tile_bbox(self, coord: TileCoord) -> BBox:
        """Bbox of ``coord`` in grid units; x/y may lie outside the grid, z may not."""
        z = coord.z
        if not 0 <= z < self.levels:
            self._check_level(z)
        w = self._tile_widths[z]
        h = self._tile_heights[z]
        minx = self._minx + coord.x * w
        maxx = self._minx + (coord.x + 1) * w
        if self._is_nw:
            return (minx, self._maxy - (coord.y + 1) * h, maxx, self._maxy - coord.y * h)
        return (minx, self._miny + coord.y * h, maxx, self._miny + (coord.y + 1) * h)

    def tile_coord(self, x: float, y: float, level: int) -> TileCoord:
        """Tile containing the point x/y at ``level`` (may be outside the grid).

        A point on a tile edge belongs to the tile that starts there.
        """
        self._check_level(level)
        col = math.floor((x - self._minx) / self._tile_widths[level] + _TILE_EPS)
        if self._is_nw:
            row = math.floor((self._maxy - y) / self._tile_heights[level] + _TILE_EPS)
        else:
            row = math.floor((y - self._miny) / self._tile_heights[level] + _TILE_EPS)
        return TileCoord(col, row, level)

    def is_valid(self, coord: TileCoord) -> bool:
        """True if the level exists and x/y lie inside that level's grid."""
        if not 0 <= coord.z < self.levels:
            return False
        cols, rows = self.grid_sizes[coord.z]
        return 0 <= coord.x < cols and 0 <= coord.y < rows

    def limit_tile(self, coord: TileCoord) -> TileCoord | None:
        """``coord`` if it is inside the grid, else None."""
        return coord if self.is_valid(coord) else None

    def flip_y(self, coord: TileCoord) -> TileCoord:
        """Same tile numbered from the other origin (sw <-> nw): y -> rows - 1 - y."""
        self._check_level(coord.z)
        rows = self.grid_sizes[coord.z][1]
        return TileCoord(coord.x, rows - 1 - coord.y, coord.z)

    def closest_level(self, res: float) -> int:
        """Level to serve a request of ``res`` grid units per pixel.

        The coarsest level whose resolution is at most ``res * stretch_factor`` is
        used, so tiles are upscaled by at most ``stretch_factor``; when even the
        finest level is too coarse, the finest level. Where a ``threshold_res``
        value t lies between two neighbouring levels (coarse > t >= fine), it
        decides between them instead: ``res > t`` selects the coarser level,
        ``res <= t`` the finer one.
        """
        limit = res * self.stretch_factor * (1 + _RES_EPS)
        if self._thresholds is None:
            # Resolutions are descending, so their negatives are ascending.
            return min(bisect_left(self._neg_res, -limit), self.levels - 1)
        resolutions = self.resolutions
        for level, threshold in enumerate(self._thresholds):
            if threshold is None:
                if resolutions[level] <= limit:
                    return level
            elif res > threshold:
                return level
        return self.levels - 1

    def affected_tiles(
        self,
        bbox: BBox,
        size: tuple[int, int],
        req_srs: SRS | None = None,
    ) -> AffectedTiles:
        """Tiles needed to render ``bbox`` (in ``req_srs``, default grid srs) at ``size`` px.

        Raises NoTiles when the request is coarser than the first level allows
        (``resolutions[0] * max_shrink_factor``) or misses the grid bbox.
        """
        if req_srs is not None and req_srs != self.srs:
            bbox = req_srs.transform_bbox_to(self.srs, bbox)
        width_px, height_px = size
        if width_px <= 0 or height_px <= 0:
            raise NoTiles(f"invalid request size {width_px}x{height_px}")
        # the finer of the two axes decides, as in MapProxy (matters for reprojected requests)
        res = min((bbox[2] - bbox[0]) / width_px, (bbox[3] - bbox[1]) / height_px)
        if res > self._max_request_res:
            raise NoTiles(f"request resolution {res} is too coarse for the grid")
        return self.affected_level_tiles(bbox, self.closest_level(res))

    def affected_level_tiles(self, bbox: BBox, level: int) -> AffectedTiles:
        """Tiles of ``level`` covering ``bbox`` (grid srs) in image order, None outside.

        Raises NoTiles when ``bbox`` does not intersect the grid bbox.
        """
        self._check_level(level)
        if not bbox_intersects(bbox, self.bbox):
            raise NoTiles("request bbox does not intersect the grid")
        w = self._tile_widths[level]
        h = self._tile_heights[level]
        minx = self._minx
        # Shrink the bbox by the overlap tolerance; a shrunk edge on a tile edge
        # belongs to the tile that starts there.
        delta = self.resolutions[level] * _OVERLAP_TOLERANCE_PX
        x0 = math.floor((bbox[0] + delta - minx) / w)
        x1 = max(x0, math.floor((bbox[2] - delta - minx) / w))
        if self._is_nw:
            maxy = self._maxy
            y0 = math.floor((maxy - (bbox[3] - delta)) / h)
            y1 = max(y0, math.floor((maxy - (bbox[1] + delta)) / h))
            rows_in_image_order = range(y0, y1 + 1)
            tiles_bbox = (minx + x0 * w, maxy - (y1 + 1) * h, minx + (x1 + 1) * w, maxy - y0 * h)
        else:
            miny = self._miny
            y0 = math.floor((bbox[1] + delta - miny) / h)
            y1 = max(y0, math.floor((bbox[3] - delta - miny) / h))
            rows_in_image_order = range(y1, y0 - 1, -1)
            tiles_bbox = (minx + x0 * w, miny + y0 * h, minx + (x1 + 1) * w, miny + (y1 + 1) * h)

        cols, rows = self.grid_sizes[level]
        num_cols = x1 - x0 + 1
        columns = range(x0, x1 + 1)
        inside_all_cols = x0 >= 0 and x1 < cols
        tiles: list[TileCoord | None] = []
        for y in rows_in_image_order:
            if not 0 <= y < rows:
                tiles.extend([None] * num_cols)
            elif inside_all_cols:
                tiles.extend([TileCoord(x, y, level) for x in columns])
            else:
                tiles.extend([TileCoord(x, y, level) if 0 <= x < cols else None for x in columns])
        return AffectedTiles(
            bbox=tiles_bbox,
            grid_size=(num_cols, y1 - y0 + 1),
            tiles=tuple(tiles),
            level=level,
        )

    def supports_nw_addressing(self) -> bool:
        """True if tiles can be numbered from the north-west corner (needed by WMTS).

        Always for ``nw`` grids; for ``sw`` grids only when the bbox height is a
        whole number of tile rows on every level.
        """
        return self._align_nw

    @property
    def is_global_mercator(self) -> bool:
        """EPSG:900913 or EPSG:3857 with the default global web-mercator bbox."""
        return self.srs.code in _MERCATOR_CODES and _bbox_close(self.bbox, GLOBAL_MERCATOR_BBOX)

    @property
    def is_global_geodetic(self) -> bool:
        """EPSG:4326 with bbox -180,-90,180,90."""
        return self.srs.code == "EPSG:4326" and _bbox_close(self.bbox, GLOBAL_GEODETIC_BBOX)

    @property
    def tms_profile(self) -> str:
        """TMS profile name: ``global-mercator``, ``global-geodetic`` or ``local``."""
        if self.is_global_mercator:
            return "global-mercator"
        if self.is_global_geodetic:
            return "global-geodetic"
        return "local"


def _tiles_for_extent(extent: float, res: float, tile_pixels: int) -> int:
    # Count whole pixels first: a sub-pixel remainder does not add a tile, which
    # also absorbs float noise (360 / 1.40625 / 256 is exactly one tile).
    pixels = math.floor(extent / res + _PIXEL_EPS)
    return max(1, -(-pixels // tile_pixels))


def _bbox_close(a: BBox, b: BBox) -> bool:
    return all(
        math.isclose(va, vb, rel_tol=_BBOX_REL_TOL, abs_tol=1e-9)
        for va, vb in zip(a, b, strict=True)
    )
