"""Coverages: polygonal areas with an SRS, reprojected once per SRS and shared by all layers.

Sources, caches, seed tasks and ``limited_to`` restrict themselves to a coverage. A
coverage is a (multi)polygon in its own SRS; copies in other SRS are computed on first
use and kept. Geometries are shared between request threads, so they are never
``prepared`` (GEOS prepared geometries are not thread-safe).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageChops

from mapproxy.errors import TransformationError
from mapproxy.srs import SRS, BBox, bbox_contains, bbox_intersects, get_srs
from mapproxy.util.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import shapely
    from shapely.geometry.base import BaseGeometry
else:  # loaded on first use: they cost every server process ~14 MB
    np = lazy_module("numpy")
    shapely = lazy_module("shapely")

# Straight edges are split into this many pieces (of the area's extent) before
# reprojection, so that they bend the way the target SRS bends them.
_SEGMENTS_PER_EXTENT = 64

# Half the width of the EPSG:3857 world, in metres.
_MERCATOR_HALF_WORLD = 20037508.342789244

EMPTY_BBOX: BBox = (0.0, 0.0, 0.0, 0.0)


class NotPolygonal(ValueError):
    """A geometry has no polygonal parts (points and lines cannot cover an area)."""


class Coverage:
    """A polygonal area in ``srs``; its copies in other SRS are computed once and kept.

    ``clip``: sources make the area outside transparent. ``is_bbox_only``: the area is
    a plain bbox (checks use bbox math; in other SRS the transformed bbox).
    A geometry that cannot be transformed into an SRS is empty there, so a failing
    transformation hides data instead of requesting it.
    """

    def __init__(
        self,
        geometry: BaseGeometry,
        srs: SRS,
        clip: bool = False,
        *,
        is_bbox_only: bool = False,
    ) -> None:
        self.geometry = geometry
        self.srs = srs
        self.clip = clip
        self._is_bbox_only = is_bbox_only
        self.bbox: BBox = _bounds(geometry) or EMPTY_BBOX
        self._lock = threading.Lock()
        self._by_srs: dict[str, BaseGeometry] = {srs.code: geometry}
        self._bbox_by_srs: dict[str, BBox] = {srs.code: self.bbox}

    def __repr__(self) -> str:
        kind = "bbox" if self._is_bbox_only else self.geometry.geom_type
        return f"Coverage({kind} {self.bbox}, {self.srs.code!r}, clip={self.clip})"

    def __getstate__(self) -> dict[str, Any]:
        # Picklable for seed worker processes: the lock and the per-SRS caches stay behind.
        return {
            "geometry": self.geometry,
            "srs": self.srs.code,
            "clip": self.clip,
            "is_bbox_only": self._is_bbox_only,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["geometry"],
            get_srs(state["srs"]),
            state["clip"],
            is_bbox_only=state["is_bbox_only"],
        )

    @property
    def is_bbox_only(self) -> bool:
        """True when the coverage is a plain bbox in its SRS."""
        return self._is_bbox_only

    @property
    def is_empty(self) -> bool:
        """True when the coverage covers nothing at all."""
        return bool(self.geometry.is_empty)

    def with_clip(self, clip: bool) -> Coverage:
        """The same area with another ``clip`` flag."""
        return Coverage(self.geometry, self.srs, clip, is_bbox_only=self._is_bbox_only)

    def geometry_in(self, srs: SRS) -> BaseGeometry:
        """The area in ``srs`` (x/y order), computed once per SRS; empty if not transformable."""
        geometry = self._by_srs.get(srs.code)
        if geometry is not None:
            return geometry
        with self._lock:
            geometry = self._by_srs.get(srs.code)
            if geometry is None:
                try:
                    geometry = transform_geometry(self.geometry, self.srs, srs)
                except TransformationError:
                    geometry = shapely.Polygon()
                self._by_srs[srs.code] = geometry
        return geometry

    def bbox_for(self, srs: SRS) -> BBox:
        """Bounds of the area in ``srs``; raises TransformationError if not transformable."""
        bbox = self._bbox_by_srs.get(srs.code)
        if bbox is not None:
            return bbox
        if self._is_bbox_only:
            bbox = self.srs.transform_bbox_to(srs, self.bbox)
        else:
            bounds = _bounds(self.geometry_in(srs))
            if bounds is None:
                if not self.is_empty:
                    raise TransformationError(
                        f"could not transform coverage from {self.srs.code} to {srs.code}"
                    )
                bounds = EMPTY_BBOX
            bbox = bounds
        with self._lock:
            self._bbox_by_srs[srs.code] = bbox
        return bbox

    def _bbox_or_none(self, srs: SRS) -> BBox | None:
        try:
            return self.bbox_for(srs)
        except TransformationError:
            return None

    def intersects(self, bbox: BBox, srs: SRS) -> bool:
        """True if ``bbox`` (x/y in ``srs``) overlaps the area (polygons: or touches it)."""
        if self.is_empty:
            return False
        bounds = self._bbox_or_none(srs)
        if bounds is None:
            return False
        if self._is_bbox_only:
            return bbox_intersects(bounds, bbox)
        if bbox[0] > bounds[2] or bbox[2] < bounds[0] or bbox[1] > bounds[3] or bbox[3] < bounds[1]:
            return False
        # As in MapProxy, a bbox that only touches the polygon intersects it.
        return bool(shapely.intersects(self.geometry_in(srs), shapely.box(*bbox)))

    def contains_point(self, x: float, y: float, srs: SRS) -> bool:
        """True if the point ``x``/``y`` in ``srs`` lies in the area (its edge included)."""
        if self.is_empty:
            return False
        bounds = self._bbox_or_none(srs)
        if bounds is None or not (bounds[0] <= x <= bounds[2] and bounds[1] <= y <= bounds[3]):
            return False
        if self._is_bbox_only:
            return True
        return bool(shapely.intersects(self.geometry_in(srs), shapely.Point(x, y)))

    def contains(self, bbox: BBox, srs: SRS) -> bool:
        """True if ``bbox`` (x/y in ``srs``) lies completely inside the area."""
        if self.is_empty:
            return False
        bounds = self._bbox_or_none(srs)
        if bounds is None or not bbox_contains(bounds, bbox):
            return False
        if self._is_bbox_only and srs.is_same_as(self.srs):
            return True
        return bool(shapely.covers(self.geometry_in(srs), shapely.box(*bbox)))

    def clip_for(self, bbox: BBox, size: tuple[int, int], srs: SRS) -> Clip:
        """Which pixels of a ``size`` image of ``bbox`` (x/y in ``srs``) lie inside."""
        return clip_for_geometries([self.geometry_in(srs)], bbox, size, srs)

    def mask_for(self, bbox: BBox, size: tuple[int, int], srs: SRS) -> Image.Image | None:
        """Mask (mode ``L``, 255 inside) for an image of ``bbox``; None when all is inside."""
        clip = self.clip_for(bbox, size, srs)
        if clip.covers_all:
            return None
        if clip.mask is None:
            return Image.new("L", size, 0)
        return clip.mask


# --- building coverages -------------------------------------------------------------------


def bbox_coverage(bbox: BBox, srs: SRS, clip: bool = False) -> Coverage:
    """A coverage of the plain ``bbox`` (x/y in ``srs``)."""
    return Coverage(shapely.box(*bbox), srs, clip, is_bbox_only=True)


def geometry_coverage(geometry: BaseGeometry, srs: SRS, clip: bool = False) -> Coverage:
    """A coverage of the polygonal parts of ``geometry``; raises NotPolygonal."""
    return Coverage(polygonal(geometry), srs, clip)


def union_coverage(coverages: Sequence[Coverage], clip: bool = False) -> Coverage:
    """The union of ``coverages`` in the SRS of the first one."""
    srs = coverages[0].srs
    geometries = [coverage.geometry_in(srs) for coverage in coverages]
    return Coverage(polygonal(shapely.union_all(geometries)), srs, clip)


def intersection_coverage(coverages: Sequence[Coverage], clip: bool = False) -> Coverage:
    """The area covered by all ``coverages``, in the SRS of the first one."""
    srs = coverages[0].srs
    geometries = [coverage.geometry_in(srs) for coverage in coverages]
    return Coverage(polygonal(shapely.intersection_all(geometries)), srs, clip)


def difference_coverage(coverages: Sequence[Coverage], clip: bool = False) -> Coverage:
    """The first coverage minus all others, in the SRS of the first one."""
    srs = coverages[0].srs
    geometry = coverages[0].geometry
    rest = [coverage.geometry_in(srs) for coverage in coverages[1:]]
    if rest:
        geometry = shapely.difference(geometry, shapely.union_all(rest))
    return Coverage(polygonal(geometry), srs, clip)


def mercator_tile_bbox(x: int, y: int, z: int) -> BBox:
    """Bbox in EPSG:3857 of web mercator tile ``z/x/y`` (y counted from the north)."""
    size = 2 * _MERCATOR_HALF_WORLD / 2**z
    minx = -_MERCATOR_HALF_WORLD + x * size
    maxy = _MERCATOR_HALF_WORLD - y * size
    return (minx, maxy - size, minx + size, maxy)


def tiles_coverage(tiles: Iterable[tuple[int, int, int]], clip: bool = False) -> Coverage:
    """Union of web mercator tiles given as ``(x, y, z)`` (north-west origin), in EPSG:3857."""
    unique = set(tiles)
    if not unique:
        return Coverage(shapely.Polygon(), get_srs("EPSG:3857"), clip)
    boxes = np.array([mercator_tile_bbox(x, y, z) for x, y, z in unique], dtype=float)
    geometries = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    return Coverage(polygonal(shapely.union_all(geometries)), get_srs("EPSG:3857"), clip)


# --- geometry helpers ---------------------------------------------------------------------


def polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """The polygon parts of ``geometry`` as one valid (multi)polygon; raises NotPolygonal."""
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    polygons = polygons_of(geometry)
    if not polygons:
        if geometry.is_empty:
            return shapely.Polygon()
        raise NotPolygonal(f"geometry must be polygonal, not {geometry.geom_type}")
    if len(polygons) == 1:
        return polygons[0]
    return shapely.union_all(polygons)


def polygons_of(geometry: BaseGeometry) -> list[shapely.Polygon]:
    """All non-empty polygons in ``geometry`` (nested collections flattened)."""
    if isinstance(geometry, shapely.Polygon):
        return [] if geometry.is_empty else [geometry]
    if isinstance(geometry, shapely.MultiPolygon | shapely.GeometryCollection):
        result: list[shapely.Polygon] = []
        for part in geometry.geoms:
            result.extend(polygons_of(part))
        return result
    return []


def transform_geometry(geometry: BaseGeometry, source: SRS, target: SRS) -> BaseGeometry:
    """``geometry`` from ``source`` to ``target``, edges densified; raises TransformationError."""
    if source.is_same_as(target) or geometry.is_empty:
        return geometry
    minx, miny, maxx, maxy = geometry.bounds
    step = max(maxx - minx, maxy - miny) / _SEGMENTS_PER_EXTENT
    dense = shapely.segmentize(geometry, step) if step > 0 else geometry
    try:
        return _project(dense, source, target)
    except TransformationError:
        # Geographic areas reaching the poles do not fit e.g. web mercator: retry with
        # the part inside the target's area of use.
        area = target.valid_lonlat_bbox if source.is_latlong else None
        if area is None:
            raise
        clipped = shapely.intersection(dense, shapely.box(*area))
        return _project(clipped, source, target)


def _project(geometry: BaseGeometry, source: SRS, target: SRS) -> BaseGeometry:
    def convert(coords: np.ndarray) -> np.ndarray:
        if len(coords) == 0:
            return coords
        points = [(float(x), float(y)) for x, y in coords.tolist()]
        return np.asarray(source.transform_to(target, points), dtype=float)

    projected = shapely.transform(geometry, convert)
    try:
        return polygonal(projected)
    except NotPolygonal as error:
        raise TransformationError(str(error)) from error


def _bounds(geometry: BaseGeometry) -> BBox | None:
    if geometry.is_empty:
        return None
    minx, miny, maxx, maxy = geometry.bounds
    return (float(minx), float(miny), float(maxx), float(maxy))


# --- clipping and rasterization -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clip:
    """Which pixels of a map image lie inside an area.

    ``covers_all``: every pixel; else ``mask`` (mode ``L``, 255 inside) marks them;
    neither means no pixel at all.
    """

    covers_all: bool = False
    mask: Image.Image | None = None

    @property
    def covers_nothing(self) -> bool:
        """True when no pixel is inside."""
        return not self.covers_all and self.mask is None


CLIP_ALL = Clip(covers_all=True)
CLIP_NOTHING = Clip()


def clip_for_geometries(
    geometries: Sequence[BaseGeometry], bbox: BBox, size: tuple[int, int], srs: SRS
) -> Clip:
    """The pixels of a ``size`` image of ``bbox`` (x/y in ``srs``) inside all ``geometries``.

    The geometries must already be in ``srs``. A pixel is inside when its centre is.
    """
    if not geometries:
        return CLIP_ALL
    box = shapely.box(*bbox)
    if any(geometry.is_empty or not geometry.intersects(box) for geometry in geometries):
        return CLIP_NOTHING
    if all(geometry.covers(box) for geometry in geometries):
        return CLIP_ALL
    inside: BaseGeometry = box
    for geometry in geometries:
        inside = shapely.intersection(inside, geometry)
    mask = rasterize(inside, bbox, size)
    if mask is None:
        return CLIP_NOTHING
    return Clip(mask=mask)


def apply_clip(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A new RGBA copy of ``image`` made transparent where ``mask`` is 0."""
    rgba = image.convert("RGBA") if image.mode != "RGBA" else image.copy()
    if mask.size != rgba.size:
        mask = mask.resize(rgba.size, Image.Resampling.NEAREST)
    rgba.putalpha(ImageChops.multiply(rgba.getchannel("A"), mask))
    return rgba


def rasterize(geometry: BaseGeometry, bbox: BBox, size: tuple[int, int]) -> Image.Image | None:
    """Mask (mode ``L``) of the pixels whose centres lie in ``geometry``; None if none do.

    Even-odd scanline fill, vectorized with numpy: each edge yields the x of its
    crossing with every pixel row centre it spans (half-open in y, so every row has an
    even number of crossings); sorted crossings pair up into filled spans.
    """
    width, height = size
    minx, miny, maxx, maxy = bbox
    scale_x = width / (maxx - minx)
    scale_y = height / (maxy - miny)
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    for polygon in polygons_of(geometry):
        for ring in (polygon.exterior, *polygon.interiors):
            coords = np.asarray(ring.coords, dtype=float)
            if len(coords) < 3:
                continue
            px = (coords[:, 0] - minx) * scale_x
            py = (maxy - coords[:, 1]) * scale_y
            points = np.column_stack([px, py])
            starts.append(points[:-1])
            ends.append(points[1:])
    if not starts:
        return None
    p0 = np.concatenate(starts)
    p1 = np.concatenate(ends)
    x0, y0, x1, y1 = p0[:, 0], p0[:, 1], p1[:, 0], p1[:, 1]
    sloped = y0 != y1
    x0, y0, x1, y1 = x0[sloped], y0[sloped], x1[sloped], y1[sloped]
    ylow = np.minimum(y0, y1)
    yhigh = np.maximum(y0, y1)
    # rows whose centre r + 0.5 lies in [ylow, yhigh)
    first_row = np.clip(np.ceil(ylow - 0.5), 0, height).astype(np.int64)
    end_row = np.clip(np.ceil(yhigh - 0.5), 0, height).astype(np.int64)
    counts = end_row - first_row
    keep = counts > 0
    if not keep.any():
        return None
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    first_row, counts = first_row[keep], counts[keep]
    edge = np.repeat(np.arange(len(counts)), counts)
    offsets = np.arange(len(edge)) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = first_row[edge] + offsets
    centre_y = rows + 0.5
    crossing_x = x0[edge] + (centre_y - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    order = np.lexsort((crossing_x, rows))
    rows = rows[order]
    crossing_x = crossing_x[order]
    span_rows = rows[0::2]
    # columns whose centre c + 0.5 lies in [left, right)
    left = np.clip(np.ceil(crossing_x[0::2] - 0.5), 0, width).astype(np.int64)
    right = np.clip(np.ceil(crossing_x[1::2] - 0.5), 0, width).astype(np.int64)
    filled = right > left
    if not filled.any():
        return None
    # One flat running sum: every span marks +1 at its start and -1 at its end in its
    # own row, so rows never leak into each other. Spans are disjoint and non-empty,
    # so starts are unique and ends are unique (plain assignment suffices).
    stride = width + 1
    marks = np.zeros(height * stride, dtype=np.int8)
    marks[span_rows[filled] * stride + left[filled]] = 1
    marks[span_rows[filled] * stride + right[filled]] -= 1
    inside = np.cumsum(marks, dtype=np.int8).view(np.uint8) * np.uint8(255)
    pixels = np.ascontiguousarray(inside.reshape(height, stride)[:, :width])
    return Image.fromarray(pixels, "L")
