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
from typing import TYPE_CHECKING, Any

from mapproxy.coverage import (
    CLIP_ALL,
    CLIP_NOTHING,
    Clip,
    Coverage,
    NotPolygonal,
    apply_clip,
    clip_for_geometries,
    polygonal,
)
from mapproxy.srs import SRS, BBox, UnknownSRS, get_srs
from mapproxy.util.lazy import lazy_module

if TYPE_CHECKING:
    import shapely
    from shapely.geometry.base import BaseGeometry
else:  # loaded on first use: shapely and numpy cost ~14 MB
    shapely = lazy_module("shapely")

__all__ = [
    "CLIP_ALL",
    "CLIP_NOTHING",
    "Clip",
    "InvalidLimit",
    "LimitArea",
    "apply_clip",
    "clip_for",
    "parse_limited_to",
]

_PARSED_CACHE_SIZE = 256


class InvalidLimit(ValueError):
    """A ``limited_to`` value returned by an authorization callback is unusable.

    A plain ValueError on purpose: it is a deployment bug, answered with 500 and logged.
    """


class LimitArea(Coverage):
    """A ``limited_to`` area: a Coverage that also answers ``bbox_in``."""

    def __repr__(self) -> str:
        return f"LimitArea({self.geometry.wkt[:60]!r}, {self.srs.code!r})"

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
    if cached is not None and (not isinstance(geometry, shapely.Geometry) or cached[0] is geometry):
        return cached[1]
    try:
        srs = get_srs(srs_code)
    except UnknownSRS as error:
        raise InvalidLimit(f"limited_to: unknown srs {srs_code!r}") from error
    area = LimitArea(_parse_geometry(geometry), srs)
    _PARSED.put(key, (geometry, area))
    return area


def clip_for(areas: Sequence[LimitArea], bbox: BBox, size: tuple[int, int], srs: SRS) -> Clip:
    """The pixels of a ``size`` image of ``bbox`` (x/y, in ``srs``) inside all ``areas``.

    A pixel is inside when its centre is.
    """
    return clip_for_geometries([area.geometry_in(srs) for area in areas], bbox, size, srs)


# --- parsing --------------------------------------------------------------------------


def _parse_geometry(geometry: Any) -> BaseGeometry:
    if isinstance(geometry, shapely.Geometry):
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
    except shapely.errors.GEOSException:
        pass
    # Several geometries, one per line.
    parts: list[BaseGeometry] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            parts.append(shapely.from_wkt(line))
        except shapely.errors.GEOSException as error:
            raise InvalidLimit(f"limited_to: invalid WKT: {error}") from error
    if not parts:
        raise InvalidLimit("limited_to: empty WKT")
    return shapely.union_all(parts)


def _polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """The polygon parts of ``geometry`` as one valid (multi)polygon."""
    try:
        return polygonal(geometry)
    except NotPolygonal as error:
        raise InvalidLimit(f"limited_to: {error}") from error


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
