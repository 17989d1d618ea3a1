"""What every source offers: answer a MapQuery with an ImageResult."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from mapproxy.image.result import ImageResult
from mapproxy.srs import SRS, BBox


@dataclass(frozen=True, slots=True)
class MapQuery:
    """A request for one image: ``bbox`` is x/y (east/north) in ``srs``, ``size`` in px."""

    bbox: BBox
    size: tuple[int, int]
    srs: SRS
    format: str = "image/png"
    transparent: bool = False
    tiled_only: bool = False
    dimensions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MapExtent:
    """A bbox with its SRS, e.g. the coverage of a source or layer."""

    bbox: BBox
    srs: SRS

    def bbox_for(self, srs: SRS) -> BBox:
        """This extent transformed into ``srs``."""
        return self.srs.transform_bbox_to(srs, self.bbox)


class LazyMapExtent(MapExtent):
    """A MapExtent computed on first use, e.g. the union of many layers' extents in
    EPSG:4326: it needs PROJ, which a process serving only cached tiles never loads."""

    __slots__ = ("_compute", "_computed")
    _compute: Callable[[], MapExtent]
    _computed: MapExtent | None

    def __init__(self, compute: Callable[[], MapExtent]) -> None:
        object.__setattr__(self, "_compute", compute)
        object.__setattr__(self, "_computed", None)

    def _extent(self) -> MapExtent:
        computed: MapExtent | None = self._computed
        if computed is None:
            computed = self._compute()
            object.__setattr__(self, "_computed", computed)
        return computed

    @property
    def bbox(self) -> BBox:
        """The computed extent's bbox."""
        return self._extent().bbox

    @property
    def srs(self) -> SRS:
        """The computed extent's SRS."""
        return self._extent().srs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MapExtent):
            return NotImplemented
        return (self.bbox, self.srs) == (other.bbox, other.srs)

    def __hash__(self) -> int:
        return hash((self.bbox, self.srs))


class MapSource(Protocol):
    """A source of map images (WMS, tile server, raster file, debug, another cache)."""

    transparent: bool
    supports_meta_tiles: bool
    extent: MapExtent | None

    def get_map(self, query: MapQuery) -> ImageResult:
        """Render ``query``; raises SourceError on upstream failures."""
        ...
