"""What every source offers: answer a MapQuery with an ImageResult."""

from __future__ import annotations

from collections.abc import Mapping
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


class MapSource(Protocol):
    """A source of map images (WMS, tile server, raster file, debug, another cache)."""

    transparent: bool
    supports_meta_tiles: bool
    extent: MapExtent | None

    def get_map(self, query: MapQuery) -> ImageResult:
        """Render ``query``; raises SourceError on upstream failures."""
        ...
