"""GetMap rendering: resolve layer names, query map layers, merge the results."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image, ImageChops

from mapproxy.errors import InvalidDimensionValue, MapProxyError
from mapproxy.image.blank import blank_image
from mapproxy.image.merge import merge_images
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.layer.base import MapLayer, ResolutionRange, WMSLayer
from mapproxy.layer.cache_layer import NotASingleTile
from mapproxy.layer.limit import Clip, LimitArea, apply_clip, clip_for
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.srs import (
    SRS,
    BBox,
    bbox_contains,
    bbox_intersection,
    bbox_intersects,
    get_srs,
    transform_errors,
)

log = logging.getLogger("mapproxy.service.wms")


_WORLD_BBOX = (-180.0, -90.0, 180.0, 90.0)


def forced_extent_bbox(extent: MapExtent, srs: SRS, forced: BBox) -> BBox | None:
    """The bbox in ``srs`` of ``extent`` cut to a ``bbox_srs`` entry's explicit ``forced``
    bbox (given in ``srs``); None if they do not meet.

    As MapProxy: a layer without a known extent (the world default) takes ``forced`` as
    is; otherwise both are intersected in EPSG:4326 and the result transformed back.
    """
    if extent.srs.code == "EPSG:4326" and tuple(extent.bbox) == _WORLD_BBOX:
        return forced
    wgs84 = get_srs("EPSG:4326")
    try:
        lonlat = bbox_intersection(extent.bbox_for(wgs84), srs.transform_bbox_to(wgs84, forced))
        if lonlat is None:
            return None
        bbox = wgs84.transform_bbox_to(srs, lonlat)
    except transform_errors():
        return None
    return bbox if all(math.isfinite(v) for v in bbox) else None


class RenderError(MapProxyError):
    """No image could be produced (all sources failed, or ``on_source_errors: raise``)."""


@dataclass(frozen=True, slots=True)
class RenderItem:
    """One map layer to draw, with every res range from the requested node down to it.

    ``owner`` is the name of the nearest named node at or above the layer's node: the
    name authorization decides on.
    """

    layer: MapLayer
    res_ranges: tuple[ResolutionRange, ...] = ()
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class LayerAccess:
    """What one request may draw: permitted owner names and the areas each is limited to."""

    permitted: frozenset[str]
    limits: Mapping[str, tuple[LimitArea, ...]] = field(default_factory=dict)


@dataclass(slots=True)
class RenderResult:
    """The merged image and the messages of sources that failed (``notify`` mode)."""

    image: ImageResult
    errors: list[str] = field(default_factory=list)


def expand_layer(
    node: WMSLayer, ranges: tuple[ResolutionRange, ...] = (), owner: str | None = None
) -> list[RenderItem]:
    """Map layers of ``node`` bottom to top.

    A layer with its own sources draws only those (also when it has child layers, as
    MapProxy does); a pure group draws its children in order.
    """
    if node.res_range is not None:
        ranges = (*ranges, node.res_range)
    owner = node.name or owner
    if node.map_layers:
        return [RenderItem(layer, ranges, owner) for layer in node.map_layers]
    items: list[RenderItem] = []
    for child in node.children:
        items.extend(expand_layer(child, ranges, owner))
    return items


class LayerRenderer:
    """Renders named WMS layers for a GetMap request."""

    def __init__(
        self,
        root: WMSLayer,
        on_source_errors: str = "notify",
        concurrent_layer_renderer: int = 1,
        forced_bboxes: Mapping[str, BBox] | None = None,
    ) -> None:
        # explicit ``bbox_srs`` bboxes by SRS code: layers are clipped to them
        self.forced_bboxes = dict(forced_bboxes or {})
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
        access: LayerAccess | None = None,
    ) -> RenderResult:
        """Merge all layers of ``layer_names`` (bottom to top) for ``query``.

        With ``access`` only permitted layers are drawn, each clipped to its limits.
        """
        clips = self.clips(layer_names, query, access) if access is not None else None
        items = self.visible_items(layer_names, query, clips)
        masks = [clips[item.owner].mask for item in items] if clips is not None else None
        forced = self.forced_bboxes.get(query.srs.code)
        if forced is not None:
            masks = [
                _combine_masks(
                    masks[index] if masks is not None else None,
                    _window_mask(self._layer_bbox(item.layer.extent, query.srs), query),
                )
                for index, item in enumerate(items)
            ]
        results, errors = self._query_layers([item.layer for item in items], query, masks)
        if errors and not results:
            raise RenderError("Could not get any sources:\n" + "\n".join(errors))
        if not results:
            return RenderResult(blank_image(query.size, options))
        return RenderResult(merge_images(results, query.size, options), errors)

    def leaf_names(self, layer_names: Sequence[str]) -> list[str]:
        """Names authorization decides on for ``layer_names``: the named nodes with content.

        Content of unnamed nodes belongs to their nearest named ancestor.
        """
        names: dict[str, None] = {}
        for name in layer_names:
            for item in self.items_by_name.get(name, ()):
                if item.owner is not None:
                    names[item.owner] = None
        return list(names)

    def clips(
        self, layer_names: Sequence[str], query: MapQuery, access: LayerAccess
    ) -> dict[str | None, Clip]:
        """The clip of every permitted owner of ``layer_names`` (missing = not permitted)."""
        clips: dict[str | None, Clip] = {}
        for owner in self.leaf_names(layer_names):
            if owner in access.permitted:
                areas = access.limits.get(owner, ())
                clips[owner] = clip_for(areas, query.bbox, query.size, query.srs)
        return clips

    def visible_items(
        self,
        layer_names: Sequence[str],
        query: MapQuery,
        clips: Mapping[str | None, Clip] | None = None,
    ) -> list[RenderItem]:
        """Items within their res ranges and extents, minus those an opaque layer hides.

        With ``clips`` (per owner) items without a clip or clipped away are left out.
        """
        bbox = query.bbox
        width = bbox[2] - bbox[0]
        visible: list[RenderItem] = []
        for name in layer_names:
            for item in self.items_by_name.get(name, ()):
                if clips is not None:
                    clip = clips.get(item.owner)
                    if clip is None or clip.covers_nothing:
                        continue
                if not all(r.contains(width, query.size[0], query.srs) for r in item.res_ranges):
                    continue
                extent_bbox = self._layer_bbox(item.layer.extent, query.srs)
                if extent_bbox is not None and not bbox_intersects(extent_bbox, bbox):
                    continue
                visible.append(item)
        for index in range(len(visible) - 1, 0, -1):
            layer = visible[index].layer
            if layer.transparent:
                continue
            if clips is not None and not clips[visible[index].owner].covers_all:
                continue  # a clipped layer hides nothing outside its area
            extent_bbox = self._layer_bbox(layer.extent, query.srs)
            if extent_bbox is not None and bbox_contains(extent_bbox, bbox):
                return visible[index:]
        return visible

    def _layer_bbox(self, extent: MapExtent | None, srs: SRS) -> BBox | None:
        """The area a layer draws in ``srs``: its extent, cut to an explicit ``bbox_srs``
        bbox of ``srs`` (an empty bbox if they do not meet)."""
        forced = self.forced_bboxes.get(srs.code)
        if forced is None:
            return self._extent_in(extent, srs)
        if extent is None:
            return forced
        key = (extent, "forced:" + srs.code)
        try:
            return self._extent_cache[key]
        except KeyError:
            pass
        bbox = forced_extent_bbox(extent, srs, forced) or (
            forced[0],
            forced[1],
            forced[0],
            forced[1],
        )
        with self._lock:
            self._extent_cache[key] = bbox
        return bbox

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
        except transform_errors():
            bbox = None
        if bbox is not None and not all(math.isfinite(v) for v in bbox):
            bbox = None
        with self._lock:
            if len(self._extent_cache) > 10_000:
                self._extent_cache.clear()
            self._extent_cache[key] = bbox
        return bbox

    def _query_layers(
        self,
        layers: Sequence[MapLayer],
        query: MapQuery,
        masks: Sequence[Image.Image | None] | None = None,
    ) -> tuple[list[ImageResult], list[str]]:
        """Results in layer order and error messages of failed layers.

        ``masks`` (parallel to ``layers``) clip each result: transparent where 0.
        """
        jobs = list(zip(layers, masks or [None] * len(layers), strict=True))
        if self._executor is not None and len(jobs) > 1:
            outcomes = list(self._executor.map(lambda job: _query(job[0], job[1], query), jobs))
        else:
            outcomes = [_query(layer, mask, query) for layer, mask in jobs]
        results: list[ImageResult] = []
        errors: list[str] = []
        for outcome in outcomes:
            if isinstance(outcome, InvalidDimensionValue):
                raise outcome
            if isinstance(outcome, NotASingleTile):
                # a WMS-C request error, not a layer failure
                raise RenderError(str(outcome)) from outcome
            if isinstance(outcome, MapProxyError):
                log.warning(
                    "layer error in GetMap for bbox %s (%s): %s",
                    ",".join(str(v) for v in query.bbox),
                    query.srs.code,
                    outcome,
                )
                if self.raise_source_errors:
                    raise RenderError(str(outcome)) from outcome
                errors.append(str(outcome))
            else:
                results.append(outcome)
        return results, errors


def _window_mask(area: BBox | None, query: MapQuery) -> Image.Image | None:
    """A mask (255 inside) of the pixels of ``query`` within ``area``; None if all are."""
    if area is None or bbox_contains(area, query.bbox):
        return None
    minx, miny, maxx, maxy = query.bbox
    width, height = query.size
    x0 = math.floor((area[0] - minx) / (maxx - minx) * width)
    x1 = math.floor((area[2] - minx) / (maxx - minx) * width)
    y0 = math.floor((maxy - area[3]) / (maxy - miny) * height)
    y1 = math.floor((maxy - area[1]) / (maxy - miny) * height)
    mask = Image.new("L", (width, height), 0)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(width, x1), min(height, y1)
    if x1 > x0 and y1 > y0:
        mask.paste(255, (x0, y0, x1, y1))
    return mask


def _combine_masks(a: Image.Image | None, b: Image.Image | None) -> Image.Image | None:
    if a is None:
        return b
    if b is None:
        return a
    return ImageChops.multiply(a, b)


def _query(
    layer: MapLayer, mask: Image.Image | None, query: MapQuery
) -> ImageResult | MapProxyError:
    try:
        result = layer.get_map(query)
    except MapProxyError as error:
        return error
    if mask is None:
        return result
    return ImageResult(
        apply_clip(result.as_image(), mask),
        size=query.size,
        transparent=True,
        cacheable=result.cacheable,
    )
