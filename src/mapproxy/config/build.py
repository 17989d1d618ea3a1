"""Turn a validated ProxyConfig into runtime objects: grids, sources, caches, layers, services."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mapproxy.config.models.caches import BackendCommonConfig, CacheConfig, FileBackendConfig
from mapproxy.config.models.common import (
    BBoxValue,
    CoverageConfig,
    HTTPOptionsConfig,
    ImageOptionsConfig,
)
from mapproxy.config.models.grids import GridConfig
from mapproxy.config.models.layers import LayerConfig
from mapproxy.config.validate import ProxyConfig, source_name
from mapproxy.errors import ConfigurationError, MapProxyError
from mapproxy.grid import MetaGrid, TileGrid
from mapproxy.grid.resolutions import compute_resolutions
from mapproxy.image.options import ImageOptions, format_extension, format_mime_type
from mapproxy.layer.base import ResolutionRange, TileLayer, WMSLayer
from mapproxy.layer.cache_layer import CacheMapLayer, DirectMapLayer
from mapproxy.source.base import MapExtent, MapSource
from mapproxy.srs import BBox, UnknownSRS, get_srs, merge_bbox
from mapproxy.util.registry import Registry

log = logging.getLogger("mapproxy.config")

MERCATOR_EXTENT = 20037508.342789244
BUILTIN_GRIDS: dict[str, dict[str, Any]] = {
    "GLOBAL_GEODETIC": {"srs": "EPSG:4326", "bbox": [-180, -90, 180, 90], "origin": "sw"},
    "GLOBAL_MERCATOR": {
        "srs": "EPSG:900913",
        "bbox": [-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT],
        "origin": "sw",
    },
    "GLOBAL_WEBMERCATOR": {
        "srs": "EPSG:3857",
        "bbox": [-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT],
        "origin": "nw",
    },
}
# Bboxes used when a grid names one of these SRS but no bbox.
DEFAULT_SRS_BBOX: dict[str, BBox] = {
    "EPSG:4326": (-180.0, -90.0, 180.0, 90.0),
    "EPSG:900913": (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
    "EPSG:3857": (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
    "EPSG:102100": (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
    "EPSG:102113": (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
}
WORLD_EXTENT = MapExtent((-180.0, -90.0, 180.0, 90.0), get_srs("EPSG:4326"))

SOURCE_CLASSES: Registry[Any] = Registry(
    "source",
    {
        "wms": "mapproxy.source.wms:WMSSource",
        "tile": "mapproxy.source.tile:TileSource",
        "debug": "mapproxy.source.debug:DebugSource",
        "raster": "mapproxy.source.raster:RasterSource",
    },
)
CACHE_CLASSES: Registry[Any] = Registry("cache", {"file": "mapproxy.cache.file:FileCache"})

DEFAULT_WMS_SRS = ["EPSG:4326", "EPSG:4258", "CRS:84", "EPSG:900913", "EPSG:3857"]
# MapProxy's order of the per-layer BoundingBox elements
DEFAULT_BBOX_SRS = ["EPSG:3857", "EPSG:4326", "EPSG:900913"]
DEFAULT_IMAGE_FORMATS = ["image/png", "image/jpeg", "image/gif", "image/GeoTIFF", "image/tiff"]


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

    def grid_extent(self, grid: TileGrid) -> MapExtent:
        """The extent of the tiles in ``grid`` (as the reference limits tile layers)."""
        return self.data_extent or MapExtent(grid.bbox, grid.srs)


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
    """Builds runtime objects from a ProxyConfig; each piece is built once and memoized."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.globals = config.globals
        self.config_dir = config.config_dir or os.getcwd()
        self._grids: dict[str, TileGrid] = {}
        self._sources: dict[str, MapSource] = {}
        self._caches: dict[str, BuiltCache] = {}
        self._building: list[str] = []
        self.base_dir = self.path(self.globals.cache.base_dir)
        self.lock_dir = self.path(
            self.globals.cache.lock_dir or os.path.join(self.globals.cache.base_dir, "tile_locks")
        )

    # paths -----------------------------------------------------------------
    def path(self, value: str) -> str:
        """``value`` resolved against the directory of the main config file."""
        return os.path.normpath(os.path.join(self.config_dir, os.path.expanduser(value)))

    # grids -----------------------------------------------------------------
    def grid(self, name: str) -> TileGrid:
        """The tile grid called ``name`` (configured or built-in)."""
        if name not in self._grids:
            self._grids[name] = self._build_grid(name)
        return self._grids[name]

    def _grid_options(self, name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        if name in seen:
            raise ConfigurationError(f"grids.{name}.base: circular base grids")
        conf = self.config.grids.get(name)
        if conf is None:
            if name in BUILTIN_GRIDS:
                return {**BUILTIN_GRIDS[name], "name": name}
            raise ConfigurationError(f"unknown grid '{name}'")
        options: dict[str, Any] = {}
        if conf.base:
            options = self._grid_options(conf.base, (*seen, name))
            options["_inherited_origin"] = True
            options.pop("name", None)
        for key, value in conf.model_dump(exclude_none=True, exclude={"base"}).items():
            if key in GridConfig.model_fields:
                options[key] = value
        options.setdefault("name", name)
        return options

    def _build_grid(self, name: str) -> TileGrid:
        options = self._grid_options(name)
        path = f"grids.{name}"
        try:
            srs = get_srs(options.get("srs", "EPSG:900913"))
        except UnknownSRS as error:
            raise ConfigurationError(f"{path}.srs: {error}") from None
        tile_size = tuple(options.get("tile_size") or self.globals.grid.tile_size)
        if len(tile_size) != 2 or min(tile_size) <= 0:
            raise ConfigurationError(f"{path}.tile_size: expected two positive integers")
        bbox_value = options.get("bbox")
        if bbox_value is None:
            if srs.code not in DEFAULT_SRS_BBOX:
                raise ConfigurationError(f"{path}: missing 'bbox' (no default for {srs.code})")
            bbox = DEFAULT_SRS_BBOX[srs.code]
        else:
            bbox = parse_bbox(bbox_value, f"{path}.bbox")
            bbox_srs_code = options.get("bbox_srs")
            if bbox_srs_code:
                try:
                    bbox = get_srs(bbox_srs_code).transform_bbox_to(srs, bbox)
                except MapProxyError as error:
                    raise ConfigurationError(f"{path}.bbox_srs: {error}") from None
        origin = options.get("origin")
        if origin is None:
            if not options.get("_inherited_origin"):
                log.warning(
                    "grid %s does not have an origin. default origin will change from sw "
                    "(south/west) to nw (north-west) with MapProxy 2.0",
                    name,
                )
            origin = "sw"
        res_factor = options.get("res_factor", 2.0)
        try:
            resolutions = compute_resolutions(
                bbox,
                tile_size,
                res=options.get("res"),
                res_factor=res_factor,
                num_levels=options.get("num_levels"),
                min_res=options.get("min_res"),
                max_res=options.get("max_res"),
            )
        except (ValueError, ZeroDivisionError) as error:
            raise ConfigurationError(f"{path}: {error}") from None
        if not resolutions:
            raise ConfigurationError(f"{path}: the options give no resolution levels")
        return TileGrid(
            srs,
            bbox,
            resolutions,
            tile_size=(int(tile_size[0]), int(tile_size[1])),
            origin=origin,
            name=options.get("name", name),
            stretch_factor=float(options.get("stretch_factor", self.globals.image.stretch_factor)),
            max_shrink_factor=float(
                options.get("max_shrink_factor", self.globals.image.max_shrink_factor)
            ),
            threshold_res=options.get("threshold_res"),
        )

    # image options ---------------------------------------------------------
    def image_options(
        self,
        format_name: str | None,
        conf: ImageOptionsConfig | None = None,
        transparent: bool | None = None,
    ) -> ImageOptions:
        """ImageOptions for a format name or mime type, with ``globals.image`` defaults."""
        image_globals = self.globals.image
        named = image_globals.formats.get(format_name) if format_name else None
        merged: dict[str, Any] = {}
        for source in (named, conf):
            if source is not None:
                merged.update(source.model_dump(exclude_none=True))
        fmt = merged.get("format") or format_name or "image/png"
        if not fmt.startswith("image/") and (named is None or "format" not in merged):
            fmt = "image/" + fmt
        encoding = merged.get("encoding_options") or {}
        options = ImageOptions(
            format=fmt,
            mode=merged.get("mode"),
            transparent=merged.get("transparent", transparent),
            colors=merged.get("colors"),
            resampling=merged.get("resampling_method", image_globals.resampling_method),
            jpeg_quality=int(encoding.get("jpeg_quality", image_globals.jpeg_quality)),
            opacity=merged.get("opacity"),
            quantizer=encoding.get("quantizer"),
            paletted=image_globals.paletted,
        )
        return options

    # sources ---------------------------------------------------------------
    def http_options(self, conf: HTTPOptionsConfig | None) -> dict[str, Any]:
        """HTTPClient keyword arguments: source ``http`` over ``globals.http``."""
        glob = self.globals.http
        local = conf.model_dump(exclude_none=True) if conf else {}

        def pick(key: str, default: Any) -> Any:
            if key in local:
                return local[key]
            value = getattr(glob, key, None)
            return default if value is None else value

        # as in MapProxy, a source's ``headers`` replace the global ones (they are not merged)
        headers = dict(pick("headers", None) or {})
        ca_certs = pick("ssl_ca_certs", None)
        return {
            "timeout_seconds": float(pick("client_timeout", 60)),
            "headers": headers,
            "ssl_ca_certs": self.path(ca_certs) if ca_certs else None,
            "ssl_no_cert_checks": bool(pick("ssl_no_cert_checks", False)),
            "hide_error_details": bool(pick("hide_error_details", True)),
            "method": pick("method", "AUTO"),
        }

    def http_client(self, conf: HTTPOptionsConfig | None) -> Any:
        """An HTTPClient for a source's ``http`` options."""
        from mapproxy.http.client import HTTPClient

        return HTTPClient(**self.http_options(conf))

    def source(self, name: str) -> MapSource:
        """The source called ``name``."""
        if name not in self._sources:
            self._sources[name] = self._build_source(name)
        return self._sources[name]

    def source_ref(self, ref: str, path: str) -> MapSource:
        """The source for a layer/cache reference, honouring tagged names (``wms:a,b``)."""
        name, _, tags = ref.partition(":")
        if not tags:
            return self.source(name)
        key = f"{name}:{tags}"
        if key in self._sources:
            return self._sources[key]
        conf = self.config.sources[name]
        if conf.type != "wms":
            raise ConfigurationError(
                f"{path}: tagged source names ('{ref}') are only supported for wms sources"
            )
        tagged = [layer.strip() for layer in tags.split(",") if layer.strip()]
        configured = conf.req.layers
        if configured:
            allowed = configured.split(",") if isinstance(configured, str) else list(configured)
            missing = [layer for layer in tagged if layer not in allowed]
            if missing:
                raise ConfigurationError(
                    f"{path}: layers {', '.join(missing)} of '{ref}' are not in "
                    f"sources.{name}.req.layers"
                )
        self._sources[key] = self._build_source(name, layers=",".join(tagged))
        return self._sources[key]

    def _build_source(self, name: str, layers: str | None = None) -> MapSource:
        conf = self.config.sources[name]
        path = f"sources.{name}"
        builder = getattr(self, f"_build_{conf.type}_source", None)
        if builder is None:
            raise ConfigurationError(
                f"{path}.type: source type '{conf.type}' is not supported by this version yet"
            )
        try:
            if layers is not None:
                return builder(name, conf, path, layers=layers)  # type: ignore[no-any-return]
            return builder(name, conf, path)  # type: ignore[no-any-return]
        except ConfigurationError:
            raise
        except MapProxyError as error:
            raise ConfigurationError(f"{path}: {error}") from None

    def _coverage_extent(self, coverage: CoverageConfig | None, path: str) -> MapExtent | None:
        if coverage is None:
            return None
        if coverage.bbox is None and isinstance(coverage.datasource, list | str):
            bbox_value: BBoxValue | None = coverage.datasource
        else:
            bbox_value = coverage.bbox
        if bbox_value is None:
            raise ConfigurationError(
                f"{path}.coverage: only bbox coverages are supported by this version yet"
            )
        srs_code = coverage.srs or coverage.bbox_srs or "EPSG:4326"
        try:
            srs = get_srs(srs_code)
        except UnknownSRS as error:
            raise ConfigurationError(f"{path}.coverage.srs: {error}") from None
        return MapExtent(parse_bbox(bbox_value, f"{path}.coverage.bbox"), srs)

    def _srs_list(self, codes: Sequence[str] | None, path: str) -> list[Any] | None:
        if codes is None:
            return None
        result = []
        for index, code in enumerate(codes):
            try:
                result.append(get_srs(code))
            except UnknownSRS as error:
                raise ConfigurationError(f"{path}[{index}]: {error}") from None
        return result

    def _build_wms_source(
        self, name: str, conf: Any, path: str, layers: str | None = None
    ) -> MapSource:
        cls = SOURCE_CLASSES.get("wms")
        req = conf.req.model_dump(exclude_none=True)
        url = req.pop("url")
        if layers is not None:
            req["layers"] = layers
        if not req.get("layers") and not req.get("sld") and not req.get("sld_body"):
            raise ConfigurationError(f"{path}.req: missing 'layers'")
        params: dict[str, str] = {}
        for key, value in req.items():
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            params[key] = str(value)
        transparent = str(req.get("transparent", "")).lower() == "true"
        image = conf.image
        extent = self._coverage_extent(conf.coverage, path)
        on_error = _on_error_dict(conf.on_error)
        return cls(  # type: ignore[no-any-return]
            self.http_client(conf.http),
            url,
            params,
            version=conf.wms_opts.version,
            supported_srs=self._srs_list(conf.supported_srs, f"{path}.supported_srs"),
            supported_formats=[format_mime_type(f) for f in conf.supported_formats]
            if conf.supported_formats
            else None,
            transparent=transparent,
            image_options=self.image_options(None, image, transparent=transparent),
            extent=extent,
            min_res=conf.min_res,
            max_res=conf.max_res,
            on_error=on_error,
            transparent_color=image.transparent_color if image else None,
            transparent_color_tolerance=(
                image.transparent_color_tolerance
                if image and image.transparent_color_tolerance is not None
                else 5
            ),
            opacity=image.opacity if image else None,
        )

    def _build_tile_source(self, name: str, conf: Any, path: str) -> MapSource:
        cls = SOURCE_CLASSES.get("tile")
        grid_name = conf.grid or "GLOBAL_MERCATOR"
        if conf.grid is None:
            log.warning("tile source %s does not have a grid. using GLOBAL_MERCATOR", name)
        fmt = conf.request_format or (conf.image.format if conf.image else None) or "image/png"
        return cls(  # type: ignore[no-any-return]
            self.http_client(conf.http),
            conf.url,
            self.grid(grid_name),
            format=format_mime_type(fmt),
            transparent=conf.transparent,
            on_error=_on_error_dict(conf.on_error),
            extent=self._coverage_extent(conf.coverage, path),
            url_origin=conf.origin,
        )

    def _build_debug_source(self, name: str, conf: Any, path: str) -> MapSource:
        return SOURCE_CLASSES.get("debug")()  # type: ignore[no-any-return]

    def _build_raster_source(self, name: str, conf: Any, path: str) -> MapSource:
        cls = SOURCE_CLASSES.get("raster")
        filename = self.path(conf.filename)
        if not os.path.exists(filename):
            raise ConfigurationError(f"{path}.filename: file not found: {filename}")
        return cls(  # type: ignore[no-any-return]
            filename,
            transparent=conf.transparent,
            resampling=conf.resampling,
            extent=self._coverage_extent(conf.coverage, path),
            nodata=conf.nodata,
            bands=conf.bands,
        )

    # caches ----------------------------------------------------------------
    def cache(self, name: str) -> BuiltCache:
        """The built cache called ``name`` (caches may feed other caches)."""
        if name in self._caches:
            return self._caches[name]
        if name in self._building:
            chain = " -> ".join([*self._building, name])
            raise ConfigurationError(f"caches.{name}: circular cache sources ({chain})")
        self._building.append(name)
        try:
            built = self._build_cache(name)
        finally:
            self._building.pop()
        self._caches[name] = built
        return built

    def cache_format(self, conf: CacheConfig) -> str:
        """Storage format name: image.format, format, request_format, else image/png."""
        if conf.image and conf.image.format:
            return conf.image.format
        return conf.format or conf.request_format or "image/png"

    def _build_cache(self, name: str) -> BuiltCache:
        from mapproxy.tilemanager.locking import TileLocker
        from mapproxy.tilemanager.tile_manager import TileManager

        conf = self.config.caches[name]
        path = f"caches.{name}"
        if not isinstance(conf.sources, list):
            raise ConfigurationError(
                f"{path}.sources: band merging is not supported by this version yet"
            )
        sources: list[MapSource] = []
        for index, ref in enumerate(conf.sources):
            base = source_name(ref)
            if base in self.config.caches:
                sources.append(self.cache(base).map_layer)  # type: ignore[arg-type]
            else:
                sources.append(self.source_ref(ref, f"{path}.sources[{index}]"))
        grid_names = conf.grids
        if not grid_names:
            log.warning(
                "cache %s does not have any grids. default will change from "
                "[GLOBAL_MERCATOR] to [GLOBAL_WEBMERCATOR] with MapProxy 2.0",
                name,
            )
            grid_names = ["GLOBAL_MERCATOR"]
        fmt_name = self.cache_format(conf)
        transparent = any(getattr(s, "transparent", False) for s in sources)
        image_options = self.image_options(fmt_name, conf.image, transparent=transparent)
        if image_options.mime_type == "image/jpeg":
            image_options = image_options.updated(transparent=False)
        request_format = format_mime_type(conf.request_format or image_options.format)
        globals_cache = self.globals.cache
        meta_size = conf.meta_size or globals_cache.meta_size
        meta_buffer = (
            conf.meta_buffer if conf.meta_buffer is not None else (globals_cache.meta_buffer)
        )
        backend = self.config.cache_backends.get(name) or FileBackendConfig()
        tile_managers = []
        for grid_name in grid_names:
            grid = self.grid(grid_name)
            cache_store = self._build_cache_backend(name, conf, backend, grid, image_options)
            tile_lock_dir = self._tile_lock_dir(conf, backend)
            locker = TileLocker(tile_lock_dir, timeout_seconds=self.http_timeout())
            meta_grid = MetaGrid(grid, meta_size=tuple(meta_size), meta_buffer=meta_buffer)
            tile_managers.append(
                TileManager(
                    grid,
                    cache_store,
                    sources,
                    image_options,
                    request_format=request_format,
                    meta_grid=meta_grid,
                    locker=locker,
                    identifier=f"{name}_{grid.name}",
                    disable_storage=conf.disable_storage,
                    concurrent_tile_creators=conf.concurrent_tile_creators
                    or globals_cache.concurrent_tile_creators,
                )
            )
        data_extent = self._cache_data_extent(conf, sources, path)
        grid = tile_managers[0].grid
        extent = data_extent or MapExtent(grid.bbox, grid.srs)
        map_layer = CacheMapLayer(
            tile_managers,
            extent,
            image_options,
            transparent=transparent,
            max_tile_limit=globals_cache.max_tile_limit,
        )
        return BuiltCache(name, tile_managers, map_layer, image_options, extent, data_extent)

    def _cache_data_extent(
        self, conf: CacheConfig, sources: Sequence[Any], path: str
    ) -> MapExtent | None:
        """The coverage, else the union of the sources' extents if all have one."""
        coverage = self._coverage_extent(conf.coverage, path)
        if coverage is not None:
            return coverage
        source_extents = [s.extent for s in sources if getattr(s, "extent", None) is not None]
        if source_extents and len(source_extents) == len(sources):
            return union_extent(source_extents)
        return None

    def http_timeout(self) -> float:
        """``globals.http.client_timeout`` (also the lock timeout)."""
        return float(self.globals.http.client_timeout or 60)

    def _tile_lock_dir(self, conf: CacheConfig, backend: BackendCommonConfig) -> str:
        explicit = backend.tile_lock_dir or conf.tile_lock_dir or self.globals.cache.tile_lock_dir
        if explicit:
            return self.path(explicit)
        cache_root = getattr(backend, "directory", None) or conf.cache_dir
        if cache_root:
            return os.path.join(self.path(cache_root), "tile_locks")
        return os.path.join(self.base_dir, "tile_locks")

    def _build_cache_backend(
        self,
        name: str,
        conf: CacheConfig,
        backend: BackendCommonConfig,
        grid: TileGrid,
        image_options: ImageOptions,
    ) -> Any:
        if not isinstance(backend, FileBackendConfig):
            raise ConfigurationError(
                f"caches.{name}.cache.type: cache type '{backend.type}' "  # type: ignore[attr-defined]
                "is not supported by this version yet"
            )
        cls = CACHE_CLASSES.get("file")
        if backend.directory:
            cache_dir = self.path(backend.directory)
        else:
            root = self.path(conf.cache_dir) if conf.cache_dir else self.base_dir
            cache_dir = os.path.join(root, f"{name}_{cache_grid_id(grid, backend.use_grid_names)}")
        globals_cache = self.globals.cache
        link = conf.link_single_color_images
        if link is None:
            link = globals_cache.link_single_color_images
        return cls(
            cache_dir,
            format_extension(image_options.format),
            directory_layout=backend.directory_layout,
            link_single_color_images=link,
            file_permissions=_octal(backend.file_permissions or globals_cache.file_permissions),
            directory_permissions=_octal(
                backend.directory_permissions or globals_cache.directory_permissions
            ),
        )

    # layers ----------------------------------------------------------------
    def build_layers(self) -> tuple[WMSLayer | None, list[TileLayer]]:
        """The WMS root layer and the tile layers for TMS/WMTS."""
        tile_layers: list[TileLayer] = []
        top = [
            self._build_layer(layer, f"layers[{i}]", tile_layers)
            for i, layer in enumerate(self.config.layers)
        ]
        if not top:
            return None, tile_layers
        if len(top) == 1:
            return top[0], tile_layers
        wms_md = self._service_md("wms")
        extent = union_extent([layer.extent for layer in top])
        root = WMSLayer(
            name=None,
            title=str(wms_md.get("title", "MapProxy WMS")),
            extent=extent,
            children=top,
        )
        return root, tile_layers

    def _service_md(self, service: str) -> dict[str, Any]:
        conf = self.config.services.get(service)
        md = getattr(conf, "md", None) if conf is not None else None
        return dict(md or {})

    def _build_layer(self, conf: LayerConfig, path: str, tile_layers: list[TileLayer]) -> WMSLayer:
        res_range = _res_range(conf)
        map_layers: list[Any] = []
        caches_used: list[str] = []
        for index, ref in enumerate(conf.sources or []):
            base = source_name(ref)
            if base in self.config.caches:
                cache = self.cache(base)
                caches_used.append(base)
                map_layers.append(cache.map_layer)
            else:
                source = self.source_ref(ref, f"{path}.sources[{index}]")
                if self.config.sources[base].type == "tile":
                    raise ConfigurationError(
                        f'{path}.sources[{index}]: source "{base}" of layer '
                        f'"{conf.name}" does not support un-tiled access'
                    )
                extent = source.extent or WORLD_EXTENT
                map_layers.append(DirectMapLayer(source, extent, res_range))
        if res_range is not None:
            for layer in map_layers:
                if isinstance(layer, CacheMapLayer):
                    index = map_layers.index(layer)
                    map_layers[index] = _with_res_range(layer, res_range)
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
        )
        if conf.name:
            tile_cache_names = conf.tile_sources or (
                caches_used if len(caches_used) == 1 and len(map_layers) == 1 else []
            )
            for cache_name in tile_cache_names:
                self._add_tile_layers(conf, cache_name, tile_layers)
        return layer

    def _add_tile_layers(self, conf: LayerConfig, cache_name: str, out: list[TileLayer]) -> None:
        cache = self.cache(cache_name)
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
                )
            )

    # services --------------------------------------------------------------
    def build(self) -> BuiltConfig:
        """Build every configured service."""
        root_layer, tile_layers = self.build_layers()
        services: dict[str, Any] = {}
        configured = self.config.services
        max_age = int(float(self.globals.tiles.expires_hours) * 3600)
        wms_md = self._service_md("wms") or {}
        wms_md.setdefault("title", "MapProxy WMS")
        if "wms" in configured:
            services["wms"] = self._build_wms_service(configured["wms"], root_layer, wms_md)
        if "tms" in configured:
            from mapproxy.service.tms import TileService

            tms_conf = configured["tms"]
            services["tms"] = TileService(
                tile_layers,
                {**wms_md, **(tms_conf.md or {})},
                use_grid_names=tms_conf.use_grid_names,
                origin=tms_conf.origin,
                max_tile_age_seconds=max_age,
            )
        if "wmts" in configured:
            from mapproxy.service.wmts.service import WMTSRestService, WMTSService

            wmts_conf = configured["wmts"]
            kvp, restful = wmts_conf.kvp, wmts_conf.restful
            if kvp is None and restful is None:
                kvp = restful = True
            md = {**wms_md, **(wmts_conf.md or {})}
            if kvp:
                services["wmts_kvp"] = WMTSService(tile_layers, md, max_tile_age_seconds=max_age)
            if restful:
                kwargs: dict[str, Any] = {"max_tile_age_seconds": max_age}
                if wmts_conf.restful_template:
                    kwargs["template"] = wmts_conf.restful_template
                services["wmts"] = WMTSRestService(tile_layers, md, **kwargs)
        cors = self.globals.http.access_control_allow_origin
        background = (self.globals.background or {}).get("url")
        wms_conf = configured.get("wms")
        tms_conf = configured.get("tms")
        return BuiltConfig(
            services=services,
            tile_layers=tile_layers,
            root_layer=root_layer,
            cors_origin=cors or None,
            demo_enabled="demo" in configured,
            config_file=self.config.config_file,
            config_files=dict(self.config.config_files),
            caches=dict(self._caches),
            grids=dict(self._grids),
            background_url=background,
            wms_srs=list((wms_conf.srs if wms_conf else None) or DEFAULT_WMS_SRS),
            wms_formats=[
                self.image_options(f).format
                for f in ((wms_conf.image_formats if wms_conf else None) or DEFAULT_IMAGE_FORMATS)
            ],
            tms_use_grid_names=bool(tms_conf.use_grid_names) if tms_conf else False,
        )

    def _build_wms_service(self, conf: Any, root_layer: WMSLayer | None, md: dict[str, Any]) -> Any:
        from mapproxy.service.wms.service import WMSService

        if root_layer is None:
            raise ConfigurationError("layers: found no WMS layer (the wms service needs layers)")
        max_pixels: int = 4000 * 4000
        if isinstance(conf.max_output_pixels, list):
            max_pixels = int(conf.max_output_pixels[0]) * int(conf.max_output_pixels[1])
        elif conf.max_output_pixels is not None:
            max_pixels = int(conf.max_output_pixels)
        srs = conf.srs or DEFAULT_WMS_SRS
        for index, code in enumerate(srs):
            try:
                get_srs(code)
            except UnknownSRS as error:
                raise ConfigurationError(f"services.wms.srs[{index}]: {error}") from None
        image_formats = conf.image_formats or DEFAULT_IMAGE_FORMATS
        format_options: dict[str, ImageOptions] = {}
        for fmt in image_formats:
            format_options[fmt] = self.image_options(fmt)
        bbox_srs = conf.bbox_srs or [code for code in DEFAULT_BBOX_SRS if code in srs]
        attribution = (conf.attribution or {}).get("text")
        return WMSService(
            root_layer,
            md,
            srs=srs,
            bbox_srs=bbox_srs,
            image_formats=[self.image_options(f).format for f in image_formats],
            format_options={
                self.image_options(f).format: opts for f, opts in format_options.items()
            },
            max_output_pixels=max_pixels,
            versions=conf.versions or ("1.0.0", "1.1.0", "1.1.1", "1.3.0"),
            strict=conf.strict,
            on_source_errors=conf.on_source_errors,
            attribution=attribution,
            concurrent_layer_renderer=conf.concurrent_layer_renderer,
        )


def cache_grid_id(grid: TileGrid, use_grid_names: bool = False) -> str:
    """Directory suffix of a file cache: the SRS without colon (``EPSG3857``), as MapProxy
    names them, or the grid name with ``use_grid_names``."""
    if use_grid_names:
        return str(grid.name)
    return grid.srs.srs_code_no_colon


def parse_bbox(value: BBoxValue, path: str) -> BBox:
    """A bbox from a list or ``"minx,miny,maxx,maxy"`` string; checks order and length."""
    if isinstance(value, str):
        parts: list[Any] = value.replace(" ", "").split(",")
    else:
        parts = list(value)
    try:
        numbers = [float(part) for part in parts]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{path}: expected four numbers, got {value!r}") from None
    if len(numbers) != 4:
        raise ConfigurationError(f"{path}: expected four numbers, got {value!r}")
    if numbers[0] >= numbers[2] or numbers[1] >= numbers[3]:
        raise ConfigurationError(f"{path}: minx/miny must be smaller than maxx/maxy: {value!r}")
    return (numbers[0], numbers[1], numbers[2], numbers[3])


def union_extent(extents: Sequence[MapExtent]) -> MapExtent:
    """Union of extents, in EPSG:4326 unless all share one SRS."""
    first = extents[0]
    if all(extent.srs == first.srs for extent in extents):
        bbox = first.bbox
        for extent in extents[1:]:
            bbox = merge_bbox(bbox, extent.bbox)
        return MapExtent(bbox, first.srs)
    wgs84 = get_srs("EPSG:4326")
    bbox = first.bbox_for(wgs84)
    for extent in extents[1:]:
        bbox = merge_bbox(bbox, extent.bbox_for(wgs84))
    return MapExtent(bbox, wgs84)


def _res_range(conf: LayerConfig) -> ResolutionRange | None:
    min_res = conf.min_res
    max_res = conf.max_res
    if conf.min_scale is not None:
        min_res = conf.min_scale * 0.00028
    if conf.max_scale is not None:
        max_res = conf.max_scale * 0.00028
    if min_res is None and max_res is None:
        return None
    return ResolutionRange(min_res=min_res, max_res=max_res)


def _with_res_range(layer: CacheMapLayer, res_range: ResolutionRange) -> CacheMapLayer:
    limited = CacheMapLayer(
        layer.tile_managers,
        layer.extent,
        layer.image_options,
        transparent=layer.transparent,
        max_tile_limit=layer.max_tile_limit,
        res_range=res_range,
    )
    return limited


def _on_error_dict(conf: Mapping[Any, Any] | None) -> dict[Any, dict[str, Any]] | None:
    if not conf:
        return None
    return {key: value.model_dump() for key, value in conf.items()}


def _octal(value: str | None) -> int | None:
    return int(value, 8) if value else None


def lock_id_for(path: str) -> str:
    """MD5 of a path, as used in lock file names."""
    return hashlib.md5(path.encode("utf-8")).hexdigest()
