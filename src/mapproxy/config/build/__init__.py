"""Turn a validated ProxyConfig into runtime objects: grids, sources, caches, layers, services.

``ConfigBuilder`` composes one builder per section; each builds a piece once and memoizes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from mapproxy.config.build.cache_storage import CACHE_CLASSES, cache_grid_id
from mapproxy.config.build.caches import BuiltCache, CacheBuilder, cache_format
from mapproxy.config.build.coverages import parse_bbox
from mapproxy.config.build.extents import union_extent
from mapproxy.config.build.grids import BUILTIN_GRIDS, GridBuilder
from mapproxy.config.build.http_options import http_client, http_options, http_timeout
from mapproxy.config.build.images import build_image_options
from mapproxy.config.build.layers import LayerBuilder
from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.build.services import (
    DEFAULT_BBOX_SRS,
    DEFAULT_IMAGE_FORMATS,
    DEFAULT_WMS_SRS,
    build_services,
)
from mapproxy.config.build.sources import SOURCE_CLASSES, SourceBuilder
from mapproxy.config.models.caches import CacheConfig
from mapproxy.config.models.common import HTTPOptionsConfig, ImageOptionsConfig
from mapproxy.config.validate import ProxyConfig
from mapproxy.grid import TileGrid
from mapproxy.image.options import ImageOptions
from mapproxy.layer.base import TileLayer, WMSLayer
from mapproxy.source.base import MapSource

__all__ = [
    "BUILTIN_GRIDS",
    "CACHE_CLASSES",
    "DEFAULT_BBOX_SRS",
    "DEFAULT_IMAGE_FORMATS",
    "DEFAULT_WMS_SRS",
    "SOURCE_CLASSES",
    "BuiltCache",
    "BuiltConfig",
    "ConfigBuilder",
    "cache_grid_id",
    "parse_bbox",
    "union_extent",
]


@dataclass
class BuiltConfig:
    """Everything the WSGI app needs, built once at load time."""

    services: dict[str, Any]
    tile_layers: list[TileLayer]
    root_layer: WMSLayer | None
    cors_origin: str | None
    demo_enabled: bool
    config_file: str
    config_files: dict[str, float] = field(default_factory=dict)
    caches: dict[str, BuiltCache] = field(default_factory=dict)
    grids: dict[str, TileGrid] = field(default_factory=dict)
    background_url: str | None = None
    wms_srs: list[str] = field(default_factory=list)
    wms_formats: list[str] = field(default_factory=list)
    tms_use_grid_names: bool = False


class ConfigBuilder:
    """Builds runtime objects from a ProxyConfig; each piece is built once and memoized.

    ``seed``: build for mapproxy-seed, where ``seed_only`` sources are active.
    """

    def __init__(self, config: ProxyConfig, seed: bool = False) -> None:
        self.config = config
        self.globals = config.globals
        self._paths = ConfigPaths(config.config_dir or os.getcwd(), self.globals.cache.base_dir)
        self._grids = GridBuilder(config.grids, self.globals)
        self._sources = SourceBuilder(config, self._paths, self._grids, seed=seed)
        self._caches = CacheBuilder(config, self._paths, self._grids, self._sources)
        self._layers = LayerBuilder(config, self._caches, self._sources)

    @property
    def paths(self) -> ConfigPaths:
        """Path resolution against the main config file (e.g. for coverage files)."""
        return self._paths

    def path(self, value: str) -> str:
        """``value`` resolved against the directory of the main config file."""
        return self._paths.path(value)

    def grid(self, name: str) -> TileGrid:
        """The tile grid called ``name`` (configured or built-in)."""
        return self._grids.grid(name)

    def image_options(
        self,
        format_name: str | None,
        conf: ImageOptionsConfig | None = None,
        transparent: bool | None = None,
    ) -> ImageOptions:
        """ImageOptions for a format name or mime type, with ``globals.image`` defaults."""
        return build_image_options(self.globals.image, format_name, conf, transparent)

    def http_options(self, conf: HTTPOptionsConfig | None) -> dict[str, Any]:
        """HTTPClient keyword arguments: source ``http`` over ``globals.http``."""
        return http_options(self.globals.http, conf, self._paths)

    def http_client(self, conf: HTTPOptionsConfig | None) -> Any:
        """An HTTPClient for a source's ``http`` options."""
        return http_client(self.globals.http, conf, self._paths)

    def http_timeout(self) -> float:
        """``globals.http.client_timeout`` (the default lock timeout)."""
        return http_timeout(self.globals.http)

    def source(self, name: str) -> MapSource:
        """The source called ``name``."""
        return self._sources.source(name)

    def source_ref(self, ref: str, path: str) -> MapSource:
        """The source for a layer/cache reference, honouring tagged names (``wms:a,b``)."""
        return self._sources.source_ref(ref, path)

    def cache(self, name: str) -> BuiltCache:
        """The built cache called ``name`` (caches may feed other caches)."""
        return self._caches.cache(name)

    def cache_format(self, conf: CacheConfig) -> str:
        """Storage format name: image.format, format, request_format, else image/png."""
        return cache_format(conf)

    def build_layers(self) -> tuple[WMSLayer | None, list[TileLayer]]:
        """The WMS root layer and the tile layers for TMS/WMTS."""
        return self._layers.build_layers()

    def build(self) -> BuiltConfig:
        """Build every configured service."""
        root_layer, tile_layers = self.build_layers()
        services = build_services(self.config, root_layer, tile_layers)
        configured = self.config.services
        wms_conf = configured.get("wms")
        tms_conf = configured.get("tms")
        return BuiltConfig(
            services=services,
            tile_layers=tile_layers,
            root_layer=root_layer,
            cors_origin=self.globals.http.access_control_allow_origin or None,
            demo_enabled="demo" in configured,
            config_file=self.config.config_file,
            config_files=dict(self.config.config_files),
            caches=dict(self._caches.built),
            grids=dict(self._grids.built),
            background_url=(self.globals.background or {}).get("url"),
            wms_srs=list((wms_conf.srs if wms_conf else None) or DEFAULT_WMS_SRS),
            wms_formats=[
                self.image_options(f).format
                for f in ((wms_conf.image_formats if wms_conf else None) or DEFAULT_IMAGE_FORMATS)
            ],
            tms_use_grid_names=bool(tms_conf.use_grid_names) if tms_conf else False,
        )
