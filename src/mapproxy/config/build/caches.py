"""Caches: tile managers per grid, the cache's WMS layer, caches feeding other caches."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mapproxy.config.build.cache_storage import CacheStorageBuilder
from mapproxy.config.build.coverages import load_coverage
from mapproxy.config.build.extents import WORLD_EXTENT, coverage_map_extent, union_extent
from mapproxy.config.build.grids import GridBuilder
from mapproxy.config.build.images import build_image_options
from mapproxy.config.build.locks import lock_timeout
from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.build.sources import SourceBuilder
from mapproxy.config.build.tile_locking import TileLockerBuilder
from mapproxy.config.build.tile_options import tile_pipeline_options
from mapproxy.config.models.caches import BackendCommonConfig, CacheConfig, FileBackendConfig
from mapproxy.config.validate import ProxyConfig, source_name
from mapproxy.coverage import Coverage
from mapproxy.errors import ConfigurationError
from mapproxy.grid import MetaGrid, TileGrid
from mapproxy.image.options import ImageOptions, format_mime_type
from mapproxy.layer.base import MapLayer
from mapproxy.layer.cache_layer import CacheMapLayer, DirectMapLayer
from mapproxy.layer.conditional import ResolutionConditionalLayer
from mapproxy.source.base import MapExtent, MapSource

if TYPE_CHECKING:
    from mapproxy.tilemanager.tile_manager import TileFilter, TileManager

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
    # what WMS layers draw: map_layer, or switching to the source (use_direct_from_*)
    wms_layer: MapLayer | None = None

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
        self._paths = paths
        self._storage = CacheStorageBuilder(paths, config.globals.cache)
        self._lockers = TileLockerBuilder(config.globals.cache.locking, paths)
        self._font_path = self._watermark_font(config)
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
        sources: list[MapSource] = []
        info_sources: list[Any] = []
        legend_sources: list[Any] = []
        source_caches: list[BuiltCache] = []
        if not isinstance(conf.sources, list):
            sources.append(self._band_merge_source(conf.sources, f"{path}.sources"))
        for index, ref in enumerate(conf.sources if isinstance(conf.sources, list) else []):
            ref_path = f"{path}.sources[{index}]"
            resolved = self.resolve(ref, ref_path)
            if isinstance(resolved, BuiltCache):
                sources.append(resolved.map_layer)  # type: ignore[arg-type]
                source_caches.append(resolved)
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
        coverage = self._coverage(conf, backend, path)
        tile_managers: list[TileManager] = []
        for grid_name in grid_names:
            grid = self._grids.grid(grid_name)
            grid_sources = self._cache_tile_sources(grid, source_caches, conf, image_options)
            tile_managers.append(
                self._tile_manager(
                    name, conf, backend, grid, grid_sources or sources, image_options, coverage
                )
            )
        data_extent = self._data_extent(coverage, sources)
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
        built.wms_layer = self._use_direct_layer(conf, map_layer, grid, path)
        return built

    def _use_direct_layer(
        self, conf: CacheConfig, cache_layer: CacheMapLayer, grid: TileGrid, path: str
    ) -> MapLayer:
        """The cache's layer for WMS: switching to its source at and below
        ``use_direct_from_level`` (of the first grid, preferred) or ``use_direct_from_res``."""
        if conf.use_direct_from_level is not None:
            key, level = "use_direct_from_level", conf.use_direct_from_level
            if not 0 <= level < grid.levels:
                raise ConfigurationError(
                    f"{path}.{key}: level {level} is not a level of grid "
                    f"{grid.name} (0-{grid.levels - 1})"
                )
            threshold = grid.resolution(level)
        elif conf.use_direct_from_res is not None:
            key, threshold = "use_direct_from_res", float(conf.use_direct_from_res)
        else:
            return cache_layer
        refs = conf.sources if isinstance(conf.sources, list) else []
        if len(refs) != 1:
            raise ConfigurationError(
                f"{path}.{key}: only supported for caches with a single source"
            )
        ref = refs[0]
        if source_name(ref) in self._config.caches:
            raise ConfigurationError(
                f"{path}.{key}: the source must not be a cache (sources[0]: '{ref}')"
            )
        if self._config.sources[source_name(ref)].type == "tile":
            raise ConfigurationError(
                f"{path}.{key}: source '{ref}' does not support un-tiled access"
            )
        if not self._sources.is_map_source(ref):
            raise ConfigurationError(f"{path}.{key}: source '{ref}' does not serve maps")
        source = self._sources.source_ref(ref, f"{path}.sources[0]")
        direct = DirectMapLayer(source, source.extent or WORLD_EXTENT)
        return ResolutionConditionalLayer(cache_layer, direct, threshold, grid.srs)

    def _band_merge_source(self, bands: dict[str, Any], path: str) -> MapSource:
        """The source of a cache whose ``sources`` name the bands of its image."""
        from mapproxy.source.band_merge import TARGET_BANDS, BandInput, BandMergeSource

        names = list(bands)
        for key in names:
            if key not in TARGET_BANDS:
                raise ConfigurationError(f"{path}.{key}: unknown band (use r, g, b, a or l)")
        if "l" in names and len(names) > 1:
            raise ConfigurationError(f"{path}.l: band l cannot be combined with r, g, b or a")
        refs: dict[str, str] = {}  # reference -> path of its first use
        inputs: dict[str, list[BandInput]] = {}
        for key, items in bands.items():
            if not isinstance(items, list) or not items:
                raise ConfigurationError(f"{path}.{key}: expected a list of band sources")
            inputs[key] = []
            for index, item in enumerate(items):
                item_path = f"{path}.{key}[{index}]"
                ref, band, factor = _band_input(item, item_path)
                if source_name(ref) not in self._config.caches and (
                    source_name(ref) not in self._config.sources
                ):
                    raise ConfigurationError(f"{item_path}.source: unknown source '{ref}'")
                refs.setdefault(ref, f"{item_path}.source")
                inputs[key].append(BandInput(list(refs).index(ref), band, factor))
        sources: list[MapSource] = []
        for ref, ref_path in refs.items():
            resolved = self.resolve(ref, ref_path)
            if isinstance(resolved, BuiltCache):
                sources.append(resolved.map_layer)  # type: ignore[arg-type]
            else:
                sources.append(resolved)
        extents = [s.extent for s in sources if s.extent is not None]
        extent = union_extent(extents) if extents and len(extents) == len(sources) else None
        return BandMergeSource(sources, inputs, extent)

    def _cache_tile_sources(
        self,
        grid: TileGrid,
        source_caches: Sequence[BuiltCache],
        conf: CacheConfig,
        image_options: ImageOptions,
    ) -> list[MapSource] | None:
        """Sources reading the tiles of the source caches 1:1, if all of them are caches
        with the same format and a grid holding all tiles of ``grid``; else None."""
        from mapproxy.tilemanager.cache_source import CacheTileSource, compatible_levels

        if not source_caches or len(source_caches) != len(conf.sources):
            return None
        request_format = format_mime_type(conf.request_format or image_options.format)
        tile_sources: list[MapSource] = []
        for cache in source_caches:
            if cache.image_options.mime_type != request_format:
                return None
            for manager in cache.tile_managers:
                levels = compatible_levels(manager.grid, grid)
                if levels is not None:
                    fallback: MapSource = cache.map_layer  # type: ignore[assignment]
                    tile_sources.append(CacheTileSource(manager, grid, levels, fallback))
                    break
            else:
                return None
        return tile_sources

    def _tile_filters(self, conf: CacheConfig, path: str) -> list[TileFilter]:
        """The watermark of the cache as a tile filter (MapProxy draws it on new tiles)."""
        if conf.watermark is None:
            return []
        from mapproxy.image.watermark import Watermark, parse_color

        mark = conf.watermark
        try:
            color = parse_color(mark.color)
        except ValueError as error:
            raise ConfigurationError(f"{path}.color: {error}") from None
        if mark.opacity is not None and not 0 <= mark.opacity <= 255:
            raise ConfigurationError(f"{path}.opacity: {mark.opacity} is not within 0-255")
        return [
            Watermark(
                mark.text,
                font_size=mark.font_size or 24,
                color=color,
                opacity=mark.opacity if mark.opacity is not None else 30,
                spacing=mark.spacing,
                font_path=self._font_path,
            )
        ]

    def _watermark_font(self, config: ProxyConfig) -> str | None:
        """DejaVuSans.ttf from ``globals.image.font_dir`` or the system, looked up once
        (only if a cache has a watermark)."""
        if not any(cache.watermark is not None for cache in config.caches.values()):
            return None
        from mapproxy.image.watermark import find_font

        font_dir = config.globals.image.font_dir
        return find_font(self._paths.path(font_dir) if font_dir else None)

    def _tile_manager(
        self,
        name: str,
        conf: CacheConfig,
        backend: BackendCommonConfig,
        grid: TileGrid,
        sources: Sequence[MapSource],
        image_options: ImageOptions,
        coverage: Coverage | None = None,
    ) -> TileManager:
        """The tile manager of cache ``name`` for ``grid``: store, lock, meta tiles."""
        from mapproxy.tilemanager.tile_manager import TileManager

        globals_cache = self._globals.cache
        cache_store = self._storage.backend(name, conf, backend, grid, image_options)
        locker = self._lockers.locker(
            name,
            conf,
            self._storage.tile_lock_dir(conf, backend),
            lock_timeout(self._globals, conf.lock_timeout),
        )
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
            tile_filters=self._tile_filters(conf, f"caches.{name}.watermark"),
            disable_storage=conf.disable_storage,
            concurrent_tile_creators=conf.concurrent_tile_creators
            or globals_cache.concurrent_tile_creators,
            coverage=coverage,
            **tile_pipeline_options(conf, globals_cache, self._paths.config_dir, f"caches.{name}"),
        )

    def _coverage(
        self, conf: CacheConfig, backend: BackendCommonConfig, path: str
    ) -> Coverage | None:
        """The cache coverage: ``cache.coverage``, else the cache's own ``coverage``."""
        if backend.coverage is not None:
            return load_coverage(backend.coverage, f"{path}.cache.coverage", self._paths)
        if conf.coverage is not None:
            return load_coverage(conf.coverage, f"{path}.coverage", self._paths)
        return None

    def _data_extent(self, coverage: Coverage | None, sources: Sequence[Any]) -> MapExtent | None:
        """The bbox of the cache coverage, else the union of the sources' extents if all
        have one."""
        if coverage is not None:
            return coverage_map_extent(coverage)
        source_extents = [s.extent for s in sources if getattr(s, "extent", None) is not None]
        if source_extents and len(source_extents) == len(sources):
            return union_extent(source_extents)
        return None


def _band_input(item: Any, path: str) -> tuple[str, int, float]:
    """``source``, ``band`` and ``factor`` of one band merging entry."""
    if not isinstance(item, dict) or "source" not in item or "band" not in item:
        raise ConfigurationError(f"{path}: expected {{source: name, band: n, factor: f}}")
    ref, band, factor = item["source"], item["band"], item.get("factor", 1.0)
    if not isinstance(ref, str):
        raise ConfigurationError(f"{path}.source: expected a source or cache name")
    if not isinstance(band, int) or isinstance(band, bool) or band < 0:
        raise ConfigurationError(f"{path}.band: expected a band number (0, 1, ...)")
    if not isinstance(factor, int | float) or isinstance(factor, bool):
        raise ConfigurationError(f"{path}.factor: expected a number")
    return ref, band, float(factor)
