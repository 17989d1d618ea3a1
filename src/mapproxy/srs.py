"""Spatial reference systems: pyproj CRS, axis order, cached transformers."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from mapproxy.errors import MapProxyError, TransformationError
from mapproxy.util.lazy import lazy_module
from mapproxy.util.system import log_proj_info

if TYPE_CHECKING:
    import pyproj
else:
    # PROJ costs about 70 ms and 12 MB per process: loaded when a CRS is first needed,
    # which serving cached tiles never does.
    pyproj = lazy_module("pyproj")

BBox = tuple[float, float, float, float]
Point = tuple[float, float]

_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]*:[A-Z0-9_.-]+\Z")

# Codes MapProxy accepts that PROJ spells differently.
_ALIASES = {
    "EPSG:900913": "EPSG:3857",
    "EPSG:102100": "EPSG:3857",
    "EPSG:102113": "EPSG:3857",
    "CRS:84": "OGC:CRS84",
}

# Codes whose axis order MapProxy fixes regardless of PROJ.
_FORCED_NORTH_EAST = {"EPSG:4326", "EPSG:4258", "EPSG:31466", "EPSG:31467", "EPSG:31468"}
_FORCED_EAST_NORTH = {"CRS:84", "EPSG:900913", "EPSG:25831", "EPSG:25832", "EPSG:25833"}


# (is_latlong, is_axis_order_ne) of the most common codes, so that configs using only
# these load without PROJ; tests/unit/test_srs.py checks them against PROJ.
_WELL_KNOWN: dict[str, tuple[bool, bool]] = {
    "EPSG:4326": (True, True),
    "EPSG:4258": (True, True),
    "CRS:84": (True, False),
    "EPSG:3857": (False, False),
    "EPSG:900913": (False, False),
    "EPSG:102100": (False, False),
    "EPSG:102113": (False, False),
    "EPSG:25831": (False, False),
    "EPSG:25832": (False, False),
    "EPSG:25833": (False, False),
    "EPSG:31466": (False, True),
    "EPSG:31467": (False, True),
    "EPSG:31468": (False, True),
    "EPSG:3035": (False, True),
    "EPSG:2056": (False, False),
    "EPSG:2154": (False, False),
    "EPSG:27700": (False, False),
    "EPSG:28992": (False, False),
    "EPSG:32632": (False, False),
    "EPSG:32633": (False, False),
    "EPSG:3395": (False, False),
}
_UNSET = object()


class UnknownSRS(MapProxyError):
    """The SRS code is malformed or unknown to PROJ."""


def transform_errors(*more: type[Exception]) -> tuple[type[Exception], ...]:
    """MapProxyError, pyproj's ProjError and ``more``, for ``except transform_errors():``.
    An except clause is evaluated only when an exception is matched, so PROJ stays
    unloaded until then."""
    return (MapProxyError, pyproj.exceptions.ProjError, *more)


class SRS:
    """One spatial reference system, identified by its MapProxy code (e.g. ``EPSG:4326``).

    Coordinates passed to and returned from all methods are always x/y (east/north,
    lon/lat) regardless of the axis order of the CRS; ``is_axis_order_ne`` tells how
    to read or write them for WMS 1.3.0 and WMTS.
    """

    __slots__ = (
        "_crs",
        "_transformers",
        "_valid_lonlat_bbox",
        "code",
        "is_axis_order_ne",
        "is_latlong",
    )

    def __init__(self, code: str) -> None:
        self.code = normalize_srs_code(code)
        if not _CODE_PATTERN.match(self.code):
            raise UnknownSRS(f"unknown srs {code!r}")
        self._crs: pyproj.CRS | None = None
        self._valid_lonlat_bbox: BBox | object | None = _UNSET
        self._transformers: dict[str, pyproj.Transformer] = {}
        known = _WELL_KNOWN.get(self.code)
        if known is not None:
            self.is_latlong, self.is_axis_order_ne = known
        else:
            self.is_latlong = bool(self.crs.is_geographic)
            self.is_axis_order_ne = _axis_order_is_north_east(self.code, self.crs)

    @property
    def crs(self) -> pyproj.CRS:
        """The pyproj CRS (created on first use); raises UnknownSRS."""
        if self._crs is None:
            log_proj_info()
            try:
                self._crs = pyproj.CRS.from_user_input(_ALIASES.get(self.code, self.code))
            except pyproj.exceptions.CRSError as error:
                raise UnknownSRS(f"unknown srs {self.code!r}") from error
        return self._crs

    @property
    def valid_lonlat_bbox(self) -> BBox | None:
        """PROJ's area of use of a projected CRS as a lon/lat bbox (None if unknown)."""
        if self._valid_lonlat_bbox is _UNSET:
            area = None if self.is_latlong else self.crs.area_of_use
            self._valid_lonlat_bbox = (
                (area.west, area.south, area.east, area.north)
                if area is not None and area.west < area.east
                else None
            )
        return self._valid_lonlat_bbox  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"SRS({self.code!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SRS) and self.code == other.code

    def __hash__(self) -> int:
        return hash(self.code)

    @property
    def srs_code_no_colon(self) -> str:
        """``EPSG:4326`` -> ``EPSG4326`` as used in TMS layer names."""
        return self.code.replace(":", "")

    def is_same_as(self, other: SRS) -> bool:
        """True when both describe the same coordinate space (e.g. 900913 and 3857)."""
        if self.code == other.code:
            return True
        return _ALIASES.get(self.code, self.code) == _ALIASES.get(other.code, other.code)

    def _transformer_to(self, other: SRS) -> pyproj.Transformer:
        transformer = self._transformers.get(other.code)
        if transformer is None:
            transformer = _transformer(self.code, other.code)
            self._transformers[other.code] = transformer
        return transformer

    def transform_to(self, other: SRS, points: Sequence[Point]) -> list[Point]:
        """Transform x/y points into ``other``; raises TransformationError on failure."""
        if self.is_same_as(other):
            return [(float(x), float(y)) for x, y in points]
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        try:
            out_x, out_y = self._transformer_to(other).transform(xs, ys, errcheck=True)
        except pyproj.exceptions.ProjError as error:
            raise TransformationError(
                f"could not transform from {self.code} to {other.code}"
            ) from error
        result = list(zip(out_x, out_y, strict=True))
        if not all(math.isfinite(x) and math.isfinite(y) for x, y in result):
            raise TransformationError(f"could not transform from {self.code} to {other.code}")
        return result

    def transform_bbox_to(self, other: SRS, bbox: BBox, with_points: int = 16) -> BBox:
        """Transform a bbox by sampling ``with_points`` points along each edge.

        Geographic bboxes are cut to the latitudes of a target valid at every longitude
        (web mercator ends at about +-85 deg; beyond it y grows without bound).
        """
        if self.is_same_as(other):
            return bbox
        # configs transform the same few extents (grids, coverages) over and over
        return _transformed_bbox(self.code, other.code, tuple(bbox), with_points)

    def _transform_bbox_to(self, other: SRS, bbox: BBox, with_points: int) -> BBox:
        area = other.valid_lonlat_bbox if self.is_latlong else None
        if area is not None and area[0] <= -180 and area[2] >= 180:
            bbox = bbox_intersection(bbox, area) or bbox
        points = _edge_points(bbox, with_points, clamp_latitude=self.is_latlong)
        return _points_bbox(self.transform_to(other, points))

    def clip_to_valid_area(self, lonlat_bbox: BBox) -> BBox:
        """The part of a lon/lat bbox inside this SRS's area of use (for display extents)."""
        if self.valid_lonlat_bbox is None:
            return lonlat_bbox
        return bbox_intersection(lonlat_bbox, self.valid_lonlat_bbox) or lonlat_bbox

    def align_bbox(self, bbox: BBox) -> BBox:
        """Clip geographic bboxes to valid latitudes (other SRS are returned unchanged)."""
        if not self.is_latlong:
            return bbox
        minx, miny, maxx, maxy = bbox
        return (minx, max(-90.0, miny), maxx, min(90.0, maxy))

    def axis_ordered(self, bbox: BBox) -> BBox:
        """Return x/y ``bbox`` in this CRS's own axis order (lat/lon for NE systems)."""
        if self.is_axis_order_ne:
            return (bbox[1], bbox[0], bbox[3], bbox[2])
        return bbox


def _edge_points(bbox: BBox, with_points: int, clamp_latitude: bool) -> list[Point]:
    minx, miny, maxx, maxy = bbox
    points: list[Point] = []
    for i in range(with_points + 1):
        fx = minx + (maxx - minx) * i / with_points
        fy = miny + (maxy - miny) * i / with_points
        points.extend([(fx, miny), (fx, maxy), (minx, fy), (maxx, fy)])
    if clamp_latitude:
        points = [(x, max(-89.999999, min(89.999999, y))) for x, y in points]
    return points


def _points_bbox(points: Sequence[Point]) -> BBox:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def normalize_srs_code(code: str) -> str:
    """Upper-case and strip a code; accepts ``urn:ogc:def:crs:EPSG::4326`` and the like."""
    text = code.strip()
    lowered = text.lower()
    if lowered.startswith("urn:ogc:def:crs:"):
        parts = text.split(":")
        authority, number = parts[4], parts[-1]
        text = f"{authority}:{number}"
    elif lowered.startswith("http://www.opengis.net/def/crs/"):
        parts = text.rstrip("/").split("/")
        text = f"{parts[-3]}:{parts[-1]}"
    return text.upper()


def _axis_order_is_north_east(code: str, crs: pyproj.CRS) -> bool:
    if code in _FORCED_NORTH_EAST:
        return True
    if code in _FORCED_EAST_NORTH:
        return False
    axes = crs.axis_info
    if len(axes) < 2:
        return False
    return axes[0].direction.lower() in ("north", "south")


_transformer_lock = threading.Lock()


@lru_cache(maxsize=512)
def _transformer(from_code: str, to_code: str) -> pyproj.Transformer:
    log_proj_info()
    with _transformer_lock:
        return pyproj.Transformer.from_crs(
            _ALIASES.get(from_code, from_code), _ALIASES.get(to_code, to_code), always_xy=True
        )


@lru_cache(maxsize=4096)
def _transformed_bbox(from_code: str, to_code: str, bbox: BBox, with_points: int) -> BBox:
    return get_srs(from_code)._transform_bbox_to(get_srs(to_code), bbox, with_points)


@lru_cache(maxsize=1024)
def get_srs(code: str) -> SRS:
    """Return the shared SRS object for ``code``; raises UnknownSRS."""
    return SRS(code)


def merge_bbox(a: BBox, b: BBox) -> BBox:
    """Smallest bbox containing both."""
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def bbox_intersects(a: BBox, b: BBox) -> bool:
    """True if the two bboxes overlap with a non-empty area."""
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def bbox_contains(outer: BBox, inner: BBox) -> bool:
    """True if ``inner`` lies completely inside ``outer``."""
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and outer[2] >= inner[2]
        and (outer[3] >= inner[3])
    )


def bbox_intersection(a: BBox, b: BBox) -> BBox | None:
    """Overlap of two bboxes, or None."""
    result = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    if result[0] >= result[2] or result[1] >= result[3]:
        return None
    return result
