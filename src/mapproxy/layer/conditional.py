"""A map layer that switches between a cache and its source by the request resolution."""

from __future__ import annotations

from mapproxy.errors import TransformationError
from mapproxy.image.result import ImageResult
from mapproxy.layer.base import MapLayer
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.srs import SRS


class ResolutionConditionalLayer:
    """Renders with ``direct`` at and below ``threshold_res``, else with ``cached``.

    This is a cache's ``use_direct_from_level``/``use_direct_from_res`` for WMS. The
    request bbox is transformed into ``threshold_srs`` (the cache's first grid) and its
    resolution is the finer of the x and y resolutions, in ``threshold_srs`` units per
    pixel; a resolution equal to the threshold is served directly.
    """

    def __init__(
        self, cached: MapLayer, direct: MapLayer, threshold_res: float, threshold_srs: SRS
    ) -> None:
        self.cached = cached
        self.direct = direct
        self.threshold_res = threshold_res
        self.threshold_srs = threshold_srs
        self.extent: MapExtent = cached.extent
        self.transparent: bool = cached.transparent

    def is_direct(self, query: MapQuery) -> bool:
        """True if ``query`` is at or below the threshold (served by the source)."""
        try:
            bbox = query.srs.transform_bbox_to(self.threshold_srs, query.bbox)
        except TransformationError:
            return False  # the cache layer answers with a blank image
        width, height = query.size
        res = min((bbox[2] - bbox[0]) / max(width, 1), (bbox[3] - bbox[1]) / max(height, 1))
        return res <= self.threshold_res

    def get_map(self, query: MapQuery) -> ImageResult:
        """The image for ``query`` from the source or from the cache."""
        layer = self.direct if self.is_direct(query) else self.cached
        return layer.get_map(query)
