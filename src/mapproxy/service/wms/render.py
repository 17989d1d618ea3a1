"""GetMap rendering: resolve layer names, query map layers, merge the results."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pyproj.exceptions import ProjError

from mapproxy.errors import MapProxyError
from mapproxy.image.blank import blank_image
from mapproxy.image.merge import merge_images
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.layer.base import MapLayer, ResolutionRange, WMSLayer
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.srs import SRS, BBox, bbox_contains, bbox_intersects


class RenderError(MapProxyError):
    """No image could be produced (all sources failed, or ``on_source_errors: raise``)."""


@dataclass(frozen=True, slots=True)
class RenderItem:
    """One map layer to draw, with every res range from the requested node down to it."""

    layer: MapLayer
    res_ranges: tuple[ResolutionRange, ...] = ()


@dataclass(slots=True)
class RenderResult:
    """The merged image and the messages of sources that failed (``notify`` mode)."""

    image: ImageResult
    errors: list[str] = field(default_factory=list)


def expand_layer(node: WMSLayer, ranges: tuple[ResolutionRange, ...] = ()) -> list[RenderItem]:
    """Map layers of ``node`` bottom to top: own content first, then each child."""
    if node.res_range is not None:
        ranges = (*ranges, node.res_range)
    items = [RenderItem(layer, ranges) for layer in node.map_layers]
    for child in node.children:
        items.extend(expand_layer(child, ranges))
    return items


class LayerRenderer:
    """Renders named WMS layers for a GetMap request."""

    def __init__(
        self,
        root: WMSLayer,
        on_source_errors: str = "notify",
        concurrent_layer_renderer: int = 1,
    ) -> None:
        self.items_by_name: dict[str, tuple[RenderItem, ...]] = {
            node.name: tuple(expand_layer(node)) for node in root.iter_named() if node.name
        }
        self.raise_source_errors = on_source_errors == "raise"
        self._executor = (
            ThreadPoolExecutor(
                max_workers=concurrent_layer_renderer, thread_name_prefix="wms-render"
            )
            if concurrent_layer_renderer > 1
            else None
        )
        # Extents transformed into request SRS; a benign race may compute one twice.
        self._extent_cache: dict[tuple[MapExtent, str], BBox | None] = {}
        self._lock = threading.Lock()

    def render(
        self,
        layer_names: Sequence[str],
        query: MapQuery,
        options: ImageOptions,
    ) -> RenderResult:
        """Merge all layers of ``layer_names`` (bottom to top) for ``query``."""
        items = self.visible_items(layer_names, query)
        results, errors = self._query_layers([item.layer for item in items], query)
        if errors and not results:
            raise RenderError("Could not get any sources:\n" + "\n".join(errors))
        if not results:
            return RenderResult(blank_image(query.size, options))
        return RenderResult(merge_images(results, query.size, options), errors)

    def visible_items(self, layer_names: Sequence[str], query: MapQuery) -> list[RenderItem]:
        """Items within their res ranges and extents, minus those an opaque layer hides."""
        bbox = query.bbox
        width = bbox[2] - bbox[0]
        visible: list[RenderItem] = []
        for name in layer_names:
            for item in self.items_by_name.get(name, ()):
                if not all(r.contains(width, query.size[0], query.srs) for r in item.res_ranges):
                    continue
                extent_bbox = self._extent_in(item.layer.extent, query.srs)
                if extent_bbox is not None and not bbox_intersects(extent_bbox, bbox):
                    continue
                visible.append(item)
        for index in range(len(visible) - 1, 0, -1):
            layer = visible[index].layer
            if layer.transparent:
                continue
            extent_bbox = self._extent_in(layer.extent, query.srs)
            if extent_bbox is not None and bbox_contains(extent_bbox, bbox):
                return visible[index:]
        return visible

    def _extent_in(self, extent: MapExtent | None, srs: SRS) -> BBox | None:
        """``extent`` as x/y bbox in ``srs``; None if unknown or not transformable."""
        if extent is None:
            return None
        key = (extent, srs.code)
        try:
            return self._extent_cache[key]
        except KeyError:
            pass
        try:
            bbox: BBox | None = extent.bbox_for(srs)
        except (MapProxyError, ProjError):
            bbox = None
        if bbox is not None and not all(math.isfinite(v) for v in bbox):
            bbox = None
        with self._lock:
            if len(self._extent_cache) > 10_000:
                self._extent_cache.clear()
            self._extent_cache[key] = bbox
        return bbox

    def _query_layers(
        self, layers: Sequence[MapLayer], query: MapQuery
    ) -> tuple[list[ImageResult], list[str]]:
        """Results in layer order and error messages of failed layers."""
        if self._executor is not None and len(layers) > 1:
            outcomes = list(self._executor.map(lambda layer: _query(layer, query), layers))
        else:
            outcomes = [_query(layer, query) for layer in layers]
        results: list[ImageResult] = []
        errors: list[str] = []
        for outcome in outcomes:
            if isinstance(outcome, MapProxyError):
                if self.raise_source_errors:
                    raise RenderError(str(outcome)) from outcome
                errors.append(str(outcome))
            else:
                results.append(outcome)
        return results, errors


def _query(layer: MapLayer, query: MapQuery) -> ImageResult | MapProxyError:
    try:
        return layer.get_map(query)
    except MapProxyError as error:
        return error
