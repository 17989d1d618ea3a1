"""Published layers: the WMS layer tree and the tile layers for TMS/WMTS."""

from __future__ import annotations

from typing import Any

from mapproxy.config.build.caches import BuiltCache, CacheBuilder
from mapproxy.config.build.extents import WORLD_EXTENT, union_extent
from mapproxy.config.build.services import service_md
from mapproxy.config.build.sources import SourceBuilder
from mapproxy.config.models.layers import LayerConfig
from mapproxy.config.validate import ProxyConfig, source_name
from mapproxy.errors import ConfigurationError
from mapproxy.image.options import format_extension
from mapproxy.layer.base import MapLayer, ResolutionRange, TileLayer, TileLegend, WMSLayer
from mapproxy.layer.cache_layer import CacheMapLayer, DirectMapLayer
from mapproxy.layer.conditional import ResolutionConditionalLayer
from mapproxy.layer.dimensions import parse_dimensions


class LayerBuilder:
    """Builds the WMS layer tree from ``layers``; collects the tile layers on the way."""

    def __init__(self, config: ProxyConfig, caches: CacheBuilder, sources: SourceBuilder) -> None:
        self._config = config
        self._caches = caches
        self._sources = sources

    def build_layers(self) -> tuple[WMSLayer | None, list[TileLayer]]:
        """The WMS root layer and the tile layers for TMS/WMTS."""
        tile_layers: list[TileLayer] = []
        top = [
            self._build_layer(layer, f"layers[{i}]", tile_layers)
            for i, layer in enumerate(self._config.layers)
        ]
        if not top:
            return None, tile_layers
        if len(top) == 1:
            return top[0], tile_layers
        wms_md = service_md(self._config, "wms")
        extent = union_extent([layer.extent for layer in top])
        root = WMSLayer(
            name=None,
            title=str(wms_md.get("title", "MapProxy WMS")),
            extent=extent,
            children=top,
            queryable=any(layer.queryable for layer in top),
        )
        return root, tile_layers

    def _build_layer(self, conf: LayerConfig, path: str, tile_layers: list[TileLayer]) -> WMSLayer:
        res_range = _res_range(conf)
        dimensions = parse_dimensions(conf.dimensions, f"{path}.dimensions")
        map_layers: list[Any] = []
        caches_used: list[str] = []
        info_sources: list[Any] = []
        legend_sources: list[Any] = []
        for index, ref in enumerate(conf.sources or []):
            ref_path = f"{path}.sources[{index}]"
            resolved = self._caches.resolve(ref, ref_path)
            if isinstance(resolved, BuiltCache):
                caches_used.append(resolved.name)
                map_layers.append(resolved.wms_layer or resolved.map_layer)
                info_sources += resolved.info_sources
                legend_sources += resolved.legend_sources
                continue
            info = self._sources.info_source(ref, ref_path)
            legend = self._sources.legend_source(ref, ref_path)
            info_sources += [info] if info is not None else []
            legend_sources += [legend] if legend is not None else []
            if not self._sources.is_map_source(ref):
                continue
            base = source_name(ref)
            if self._config.sources[base].type == "tile":
                raise ConfigurationError(
                    f'{ref_path}: source "{base}" of layer '
                    f'"{conf.name}" does not support un-tiled access'
                )
            extent = resolved.extent or WORLD_EXTENT
            map_layers.append(DirectMapLayer(resolved, extent, res_range))
        if res_range is not None or dimensions:
            map_layers = [
                _for_layer(layer, res_range, frozenset(dimensions)) for layer in map_layers
            ]
        children = [
            self._build_layer(child, f"{path}.layers[{i}]", tile_layers)
            for i, child in enumerate(conf.layers or [])
        ]
        extents = [layer.extent for layer in map_layers] + [child.extent for child in children]
        extent = union_extent(extents) if extents else WORLD_EXTENT
        layer = WMSLayer(
            name=conf.name,
            title=conf.title,
            extent=extent,
            map_layers=map_layers,
            children=children,
            md=dict(conf.md or {}),
            res_range=res_range,
            transparent=all(getattr(m, "transparent", False) for m in map_layers)
            if map_layers
            else True,
            queryable=bool(info_sources)
            or (not map_layers and any(child.queryable for child in children)),
            info_sources=info_sources,
            legend_sources=(
                [self._sources.static_legend(conf.legendurl)] if conf.legendurl else legend_sources
            ),
            dimensions=dimensions,
        )
        if conf.name:
            tile_cache_names = conf.tile_sources or (
                caches_used if len(caches_used) == 1 and len(map_layers) == 1 else []
            )
            for cache_name in tile_cache_names:
                self._add_tile_layers(conf, cache_name, tile_layers, info_sources)
        return layer

    def _add_tile_layers(
        self,
        conf: LayerConfig,
        cache_name: str,
        out: list[TileLayer],
        info_sources: list[Any],
    ) -> None:
        cache = self._caches.cache(cache_name)
        dimensions = parse_dimensions(conf.dimensions, "dimensions")
        legend = TileLegend(
            kvp_url=conf.wmts_kvp_legendurl,
            rest_url=conf.wmts_rest_legendurl,
            has_static_legend=bool(conf.legendurl),
        )
        for manager in cache.tile_managers:
            out.append(
                TileLayer(
                    name=str(conf.name),
                    title=conf.title,
                    grid=manager.grid,
                    tile_manager=manager,
                    format=cache.image_options.mime_type,
                    extension=format_extension(cache.image_options.format),
                    extent=cache.grid_extent(manager.grid),
                    md=dict(conf.md or {}),
                    info_sources=list(info_sources),
                    legend=legend,
                    dimensions=dimensions,
                )
            )


def _res_range(conf: LayerConfig) -> ResolutionRange | None:
    """The layer's resolution range; scales are converted with 0.28 mm pixels.

    ``min_scale`` is the small scale number, i.e. the fine limit (``max_res``), and
    ``max_scale`` the coarse one (``min_res``), as in MapProxy.
    """
    min_res = conf.min_res
    max_res = conf.max_res
    if conf.max_scale is not None:
        min_res = conf.max_scale * 0.00028
    if conf.min_scale is not None:
        max_res = conf.min_scale * 0.00028
    if min_res is None and max_res is None:
        return None
    return ResolutionRange(min_res=min_res, max_res=max_res)


def _for_layer(
    layer: MapLayer, res_range: ResolutionRange | None, dimension_names: frozenset[str]
) -> MapLayer:
    """A copy of a cache's layer limited to ``res_range`` and passing on the dimensions
    ``dimension_names`` (the cache's layer is shared); other layers are returned as is."""
    if isinstance(layer, ResolutionConditionalLayer):
        return ResolutionConditionalLayer(
            _for_layer(layer.cached, res_range, dimension_names),
            layer.direct,
            layer.threshold_res,
            layer.threshold_srs,
        )
    if not isinstance(layer, CacheMapLayer):
        return layer
    return CacheMapLayer(
        layer.tile_managers,
        layer.extent,
        layer.image_options,
        transparent=layer.transparent,
        max_tile_limit=layer.max_tile_limit,
        res_range=res_range,
        dimension_names=dimension_names,
    )
