"""Caches: tile managers per grid, the cache's WMS layer, caches feeding other caches."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mapproxy.config.build.cache_storage import CacheStorageBuilder
from mapproxy.config.build.extents import coverage_extent, union_extent
from mapproxy.config.build.grids import GridBuilder
from mapproxy.config.build.images import build_image_options
from mapproxy.config.build.locks import lock_timeout
from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.build.sources import SourceBuilder
from mapproxy.config.models.caches import BackendCommonConfig, CacheConfig, FileBackendConfig
from mapproxy.config.validate import ProxyConfig, source_name
from mapproxy.errors import ConfigurationError
from mapproxy.grid import MetaGrid, TileGrid
from mapproxy.image.options import ImageOptions, format_mime_type
from mapproxy.layer.cache_layer import CacheMapLayer
from mapproxy.source.base import MapExtent, MapSource

if TYPE_CHECKING:
    from mapproxy.tilemanager.tile_manager import TileManager

log = logging.getLogger("mapproxy.config")


@dataclass
class BuiltCache:
    """A cache: one tile manager per grid, the layer used for WMS, its tile format."""

    name: str
    tile_managers: list[Any]
    map_layer: CacheMapLayer
    image_options: ImageOptions
    extent: MapExtent
    # from the coverage or the sources; None: each grid's bbox is the extent
    data_extent: MapExtent | None = None
    # feature info and legend sources among the cache's sources (and their caches')
    info_sources: list[Any] = field(default_factory=list)
    legend_sources: list[Any] = field(default_factory=list)

    def grid_extent(self, grid: TileGrid) -> MapExtent:
        """The extent of the tiles in ``grid`` (as the reference limits tile layers)."""
        return self.data_extent or MapExtent(grid.bbox, grid.srs)


def cache_format(conf: CacheConfig) -> str:
    """Storage format name: image.format, format, request_format, else image/png."""
    if conf.image and conf.image.format:
        return conf.image.format
    return conf.format or conf.request_format or "image/png"


class CacheBuilder:
    """Builds each cache once; a cache may be the source of another (cycles are errors)."""

    def __init__(
        self,
        config: ProxyConfig,
        paths: ConfigPaths,
        grids: GridBuilder,
        sources: SourceBuilder,
    ) -> None:
        self._config = config
        self._globals = config.globals
        self._grids = grids
        self._sources = sources
        self._storage = CacheStorageBuilder(paths, config.globals.cache)
        self._building: list[str] = []
        self.built: dict[str, BuiltCache] = {}

    def cache(self, name: str) -> BuiltCache:
        """The built cache called ``name`` (caches may feed other caches)."""
        if name in self.built:
            return self.built[name]
        if name in self._building:
            chain = " -> ".join([*self._building, name])
            raise ConfigurationError(f"caches.{name}: circular cache sources ({chain})")
        self._building.append(name)
        try:
            built = self._build(name)
        finally:
            self._building.pop()
        self.built[name] = built
        return built

    def resolve(self, ref: str, path: str) -> BuiltCache | MapSource:
        """What a ``sources`` entry of a layer or cache names: a cache, else a source."""
        base = source_name(ref)
        if base in self._config.caches:
            return self.cache(base)
        return self._sources.source_ref(ref, path)

    def _build(self, name: str) -> BuiltCache:
        conf = self._config.caches[name]
        path = f"caches.{name}"
        if not isinstance(conf.sources, list):
            raise ConfigurationError(
                f"{path}.sources: band merging is not supported by this version yet"
            )
        sources: list[MapSource] = []
        info_sources: list[Any] = []
        legend_sources: list[Any] = []
        for index, ref in enumerate(conf.sources):
            ref_path = f"{path}.sources[{index}]"
            resolved = self.resolve(ref, ref_path)
            if isinstance(resolved, BuiltCache):
                sources.append(resolved.map_layer)  # type: ignore[arg-type]
                info_sources += resolved.info_sources
                legend_sources += resolved.legend_sources
                continue
            info = self._sources.info_source(ref, ref_path)
            legend = self._sources.legend_source(ref, ref_path)
            info_sources += [info] if info is not None else []
            legend_sources += [legend] if legend is not None else []
            if self._sources.is_map_source(ref):
                sources.append(resolved)
        grid_names = conf.grids
        if not grid_names:
            log.warning(
                "cache %s does not have any grids. default will change from "
                "[GLOBAL_MERCATOR] to [GLOBAL_WEBMERCATOR] with MapProxy 2.0",
                name,
            )
            grid_names = ["GLOBAL_MERCATOR"]
        transparent = any(getattr(s, "transparent", False) for s in sources)
        image_options = build_image_options(
            self._globals.image, cache_format(conf), conf.image, transparent=transparent
        )
        if image_options.mime_type == "image/jpeg":
            image_options = image_options.updated(transparent=False)
        backend = self._config.cache_backends.get(name) or FileBackendConfig()
        tile_managers = [
            self._tile_manager(
                name, conf, backend, self._grids.grid(grid_name), sources, image_options
            )
            for grid_name in grid_names
        ]
        data_extent = self._data_extent(conf, backend, sources, path)
        grid = tile_managers[0].grid
        extent = data_extent or MapExtent(grid.bbox, grid.srs)
        map_layer = CacheMapLayer(
            tile_managers,
            extent,
            image_options,
            transparent=transparent,
            max_tile_limit=self._globals.cache.max_tile_limit,
        )
        built = BuiltCache(name, tile_managers, map_layer, image_options, extent, data_extent)
        built.info_sources = info_sources
        built.legend_sources = legend_sources
        return built

    def _tile_manager(
        self,
        name: str,
        conf: CacheConfig,
        backend: BackendCommonConfig,
        grid: TileGrid,
        sources: Sequence[MapSource],
        image_options: ImageOptions,
    ) -> TileManager:
        """The tile manager of cache ``name`` for ``grid``: store, lock, meta tiles."""
        from mapproxy.tilemanager.locking import TileLocker
        from mapproxy.tilemanager.tile_manager import TileManager

        globals_cache = self._globals.cache
        cache_store = self._storage.backend(name, conf, backend, grid, image_options)
        tile_lock_dir = self._storage.tile_lock_dir(conf, backend)
        locker = TileLocker(tile_lock_dir, lock_timeout(self._globals, conf.lock_timeout))
        meta_size = conf.meta_size or globals_cache.meta_size
        meta_buffer = (
            conf.meta_buffer if conf.meta_buffer is not None else globals_cache.meta_buffer
        )
        meta_grid = MetaGrid(grid, meta_size=tuple(meta_size), meta_buffer=meta_buffer)
        return TileManager(
            grid,
            cache_store,
            sources,
            image_options,
            request_format=format_mime_type(conf.request_format or image_options.format),
            meta_grid=meta_grid,
            locker=locker,
            identifier=f"{name}_{grid.name}",
            disable_storage=conf.disable_storage,
            concurrent_tile_creators=conf.concurrent_tile_creators
            or globals_cache.concurrent_tile_creators,
        )

    def _data_extent(
        self,
        conf: CacheConfig,
        backend: BackendCommonConfig,
        sources: Sequence[Any],
        path: str,
    ) -> MapExtent | None:
        """The cache coverage (``cache.coverage`` or the cache's own ``coverage``), else the
        union of the sources' extents if all have one."""
        coverage = coverage_extent(backend.coverage, f"{path}.cache") or coverage_extent(
            conf.coverage, path
        )
        if coverage is not None:
            return coverage
        source_extents = [s.extent for s in sources if getattr(s, "extent", None) is not None]
        if source_extents and len(source_extents) == len(sources):
            return union_extent(source_extents)
        return None
