"""``limited_to`` areas of the authorization API: parse, transform to a request SRS, rasterize.

An authorization callback may limit a layer (or a whole request) to an area given as a
bbox list, WKT (polygons/multipolygons, one per line) or a shapely geometry, each with
an SRS. Services clip map images and tiles to it and shrink advertised extents.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from PIL import Image, ImageChops
from shapely.errors import GEOSException
from shapely.geometry.base import BaseGeometry

from mapproxy.errors import TransformationError
from mapproxy.srs import SRS, BBox, UnknownSRS, get_srs

# Straight edges are split into this many pieces (of the area's extent) before
# reprojection, so that they bend the way the target SRS bends them.
_SEGMENTS_PER_EXTENT = 64
_PARSED_CACHE_SIZE = 256


class InvalidLimit(ValueError):
    """A ``limited_to`` value returned by an authorization callback is unusable.

    A plain ValueError on purpose: it is a deployment bug, answered with 500 and logged.
    """


class LimitArea:
    """A polygonal area in ``srs``; its copies in other SRS are computed once and kept.

    Geometries are shared between request threads, so they are never ``prepared``
    (GEOS prepared geometries are not thread-safe). A geometry that cannot be
    transformed into an SRS is treated as empty there, so a failing transformation
    hides data instead of showing it.
    """

    __slots__ = ("_by_srs", "geometry", "srs")

    def __init__(self, geometry: BaseGeometry, srs: SRS) -> None:
        self.geometry = geometry
        self.srs = srs
        self._by_srs: dict[str, BaseGeometry] = {srs.code: geometry}

    def __repr__(self) -> str:
        return f"LimitArea({self.geometry.wkt[:60]!r}, {self.srs.code!r})"

    def geometry_in(self, srs: SRS) -> BaseGeometry:
        """The area in ``srs`` (x/y order); empty if it cannot be transformed."""
        geometry = self._by_srs.get(srs.code)
        if geometry is None:
            try:
                geometry = _transform(self.geometry, self.srs, srs)
            except TransformationError:
                geometry = shapely.Polygon()
            # Benign race: two threads may both compute it; either result is the same.
            self._by_srs[srs.code] = geometry
        return geometry

    def bbox_in(self, srs: SRS) -> BBox | None:
        """Bounds of the area in ``srs``, None if empty there."""
        geometry = self.geometry_in(srs)
        if geometry.is_empty:
            return None
        minx, miny, maxx, maxy = geometry.bounds
        return (float(minx), float(miny), float(maxx), float(maxy))


def parse_limited_to(value: Any) -> LimitArea:
    """A ``{geometry: ..., srs: ...}`` mapping as a LimitArea; raises InvalidLimit.

    Parsed areas are kept in a small cache keyed by content (bbox values, WKT text)
    or by the identity of a shapely geometry (those are immutable), so callbacks that
    return the same limits on every request parse them once.
    """
    if not isinstance(value, Mapping):
        raise InvalidLimit(f"limited_to must be a mapping with geometry and srs, not {value!r}")
    geometry = value.get("geometry")
    srs_code = value.get("srs")
    if not isinstance(srs_code, str) or not srs_code:
        raise InvalidLimit("limited_to needs an srs")
    key = _cache_key(geometry, srs_code)
    cached = _PARSED.get(key)
    if cached is not None and (not isinstance(geometry, BaseGeometry) or cached[0] is geometry):
        return cached[1]
    try:
        srs = get_srs(srs_code)
    except UnknownSRS as error:
        raise InvalidLimit(f"limited_to: unknown srs {srs_code!r}") from error
    area = LimitArea(_parse_geometry(geometry), srs)
    _PARSED.put(key, (geometry, area))
    return area


@dataclass(frozen=True, slots=True)
class Clip:
    """Which pixels of a map request lie inside the limits.

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


def clip_for(areas: Sequence[LimitArea], bbox: BBox, size: tuple[int, int], srs: SRS) -> Clip:
    """The pixels of a ``size`` image of ``bbox`` (x/y, in ``srs``) inside all ``areas``.

    A pixel is inside when its centre is.
    """
    if not areas:
        return CLIP_ALL
    box = shapely.box(*bbox)
    geometries = [area.geometry_in(srs) for area in areas]
    if any(geometry.is_empty or not geometry.intersects(box) for geometry in geometries):
        return CLIP_NOTHING
    if all(geometry.covers(box) for geometry in geometries):
        return CLIP_ALL
    inside: BaseGeometry = box
    for geometry in geometries:
        inside = shapely.intersection(inside, geometry)
    mask = _rasterize(inside, bbox, size)
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


# --- parsing --------------------------------------------------------------------------


def _parse_geometry(geometry: Any) -> BaseGeometry:
    if isinstance(geometry, BaseGeometry):
        return _polygonal(geometry)
    if isinstance(geometry, str):
        return _polygonal(_parse_wkt(geometry))
    if isinstance(geometry, list | tuple) and len(geometry) == 4:
        try:
            minx, miny, maxx, maxy = (float(v) for v in geometry)
        except (TypeError, ValueError) as error:
            raise InvalidLimit(f"limited_to: invalid bbox {geometry!r}") from error
        if not (minx < maxx and miny < maxy) or not all(
            math.isfinite(v) for v in (minx, miny, maxx, maxy)
        ):
            raise InvalidLimit(f"limited_to: invalid bbox {geometry!r}")
        return shapely.box(minx, miny, maxx, maxy)
    raise InvalidLimit(
        f"limited_to: geometry must be a bbox list, WKT or a shapely geometry, not {geometry!r}"
    )


def _parse_wkt(text: str) -> BaseGeometry:
    try:
        return shapely.from_wkt(text)
    except GEOSException:
        pass
    # Several geometries, one per line.
    parts: list[BaseGeometry] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            parts.append(shapely.from_wkt(line))
        except GEOSException as error:
            raise InvalidLimit(f"limited_to: invalid WKT: {error}") from error
    if not parts:
        raise InvalidLimit("limited_to: empty WKT")
    return shapely.union_all(parts)


def _polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """The polygon parts of ``geometry`` as one valid (multi)polygon."""
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    polygons = _polygons(geometry)
    if not polygons:
        if geometry.is_empty:
            return shapely.Polygon()
        raise InvalidLimit(f"limited_to: geometry must be polygonal, not {geometry.geom_type}")
    if len(polygons) == 1:
        return polygons[0]
    return shapely.union_all(polygons)


def _polygons(geometry: BaseGeometry) -> list[shapely.Polygon]:
    if isinstance(geometry, shapely.Polygon):
        return [] if geometry.is_empty else [geometry]
    if isinstance(geometry, shapely.MultiPolygon | shapely.GeometryCollection):
        result: list[shapely.Polygon] = []
        for part in geometry.geoms:
            result.extend(_polygons(part))
        return result
    return []


def _cache_key(geometry: Any, srs_code: str) -> tuple[Any, ...]:
    if isinstance(geometry, str):
        return ("wkt", geometry, srs_code)
    if isinstance(geometry, list | tuple):
        try:
            return ("bbox", tuple(float(v) for v in geometry), srs_code)
        except (TypeError, ValueError):
            return ("invalid", id(geometry), srs_code)
    return ("object", id(geometry), srs_code)


class _LRU:
    """A small thread-safe LRU mapping."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], tuple[Any, LimitArea]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> tuple[Any, LimitArea] | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: tuple[Any, LimitArea]) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_PARSED = _LRU(_PARSED_CACHE_SIZE)


# --- transformation -----------------------------------------------------------------------


def _transform(geometry: BaseGeometry, source: SRS, target: SRS) -> BaseGeometry:
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
    return _polygonal(projected)


# --- rasterization ------------------------------------------------------------------------


def _rasterize(geometry: BaseGeometry, bbox: BBox, size: tuple[int, int]) -> Image.Image | None:
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
    for polygon in _polygons(geometry):
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
