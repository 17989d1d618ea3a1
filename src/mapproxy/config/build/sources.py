"""Sources: one builder per source ``type``, tagged source names (``wms:a,b``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mapproxy.config.build.coverages import load_coverage
from mapproxy.config.build.extents import coverage_map_extent
from mapproxy.config.build.grids import GridBuilder
from mapproxy.config.build.http_options import http_client
from mapproxy.config.build.images import build_image_options
from mapproxy.config.build.locks import request_limiter
from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.models.sources import (
    ArcGISSourceConfig,
    DebugSourceConfig,
    MapnikSourceConfig,
    MapServerSourceConfig,
    OGCAPIMapsSourceConfig,
    OGCAPITilesSourceConfig,
    RasterSourceConfig,
    TileSourceConfig,
    WMSSourceConfig,
)
from mapproxy.config.validate import ProxyConfig
from mapproxy.coverage import Coverage
from mapproxy.errors import ConfigurationError, MapProxyError
from mapproxy.http.client import split_credentials
from mapproxy.image.options import format_mime_type
from mapproxy.source.base import MapExtent, MapSource
from mapproxy.source.featureinfo import InfoSource
from mapproxy.source.legend import LegendSource
from mapproxy.srs import SRS, UnknownSRS, get_srs
from mapproxy.util.registry import Registry

log = logging.getLogger("mapproxy.config")

SOURCE_CLASSES: Registry[Any] = Registry(
    "source",
    {
        "wms": "mapproxy.source.wms:WMSSource",
        "tile": "mapproxy.source.tile:TileSource",
        "debug": "mapproxy.source.debug:DebugSource",
        "raster": "mapproxy.source.raster:RasterSource",
        "mapserver": "mapproxy.source.wms:WMSSource",
        "arcgis": "mapproxy.source.arcgis:ArcGISSource",
        "mapnik": "mapproxy.source.mapnik:MapnikSource",
        "ogcapitiles": "mapproxy.source.ogcapi:OGCAPITilesSource",
        "ogcapimaps": "mapproxy.source.ogcapi:OGCAPIMapsSource",
    },
)


class SourceBuilder:
    """Builds each source once; a tagged name (``wms:a,b``) is a source of its own."""

    def __init__(
        self, config: ProxyConfig, paths: ConfigPaths, grids: GridBuilder, seed: bool = False
    ) -> None:
        # seed mode (mapproxy-seed): ``seed_only`` sources are active; otherwise they
        # answer transparent images without upstream requests
        self._seed = seed
        self._config = config
        self._globals = config.globals
        self._paths = paths
        self._grids = grids
        self._built: dict[str, MapSource] = {}
        self._extras: dict[str, Any] = {}  # feature info and legend sources by reference
        self._coverages: dict[str, Coverage] = {}
        # the supported ``type``s; each builder takes the class from SOURCE_CLASSES
        self._builders: dict[str, Callable[..., MapSource]] = {
            "wms": self._build_wms,
            "tile": self._build_tile,
            "debug": self._build_debug,
            "raster": self._build_raster,
            "mapserver": self._build_mapserver,
            "arcgis": self._build_arcgis,
            "mapnik": self._build_mapnik,
            "ogcapitiles": self._build_ogcapitiles,
            "ogcapimaps": self._build_ogcapimaps,
        }

    def source(self, name: str) -> MapSource:
        """The source called ``name``."""
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def source_ref(self, ref: str, path: str) -> MapSource:
        """The source for a layer/cache reference, honouring tagged names (``wms:a,b``)."""
        name, _, tags = ref.partition(":")
        if not tags:
            return self.source(name)
        key = f"{name}:{tags}"
        if key not in self._built:
            layers = self._tagged_layers(name, ref, tags, path)
            self._built[key] = self._build(name, layers=layers)
        return self._built[key]

    def is_map_source(self, ref: str) -> bool:
        """False for WMS sources with ``wms_opts.map: false`` (feature info only)."""
        conf = self._config.sources[ref.partition(":")[0]]
        if isinstance(conf, ArcGISSourceConfig):
            return bool((conf.opts or {}).get("map", True))
        _wms_like = (WMSSourceConfig, MapServerSourceConfig)
        return not (isinstance(conf, _wms_like) and not conf.wms_opts.map)

    def info_source(self, ref: str, path: str) -> InfoSource | None:
        """The feature info source of a WMS source with ``wms_opts.featureinfo``."""
        conf = self._config.sources[ref.partition(":")[0]]
        if isinstance(conf, ArcGISSourceConfig):
            return self._arcgis_info_source(conf, ref, path)
        _wms_like = (WMSSourceConfig, MapServerSourceConfig)
        if not isinstance(conf, _wms_like) or not conf.wms_opts.featureinfo:
            return None
        key = f"info:{ref}"
        if key not in self._extras:
            from mapproxy.source.featureinfo import WMSInfoSource, XSLTransformer, info_type

            opts = conf.wms_opts
            xslt = None
            if opts.featureinfo_xslt:
                out_type = (
                    info_type(opts.featureinfo_out_format) if opts.featureinfo_out_format else None
                )
                try:
                    xslt = XSLTransformer(self._paths.path(opts.featureinfo_xslt), out_type)
                except MapProxyError as error:
                    raise ConfigurationError(f"{path}: {error}") from None
            query_layers = opts.query_layers
            if isinstance(query_layers, list):
                query_layers = ",".join(query_layers)
            self._extras[key] = WMSInfoSource(
                self.source_ref(ref, path),  # type: ignore[arg-type]
                query_layers=query_layers or None,
                info_format=opts.featureinfo_format,
                xslt=xslt,
            )
        return self._extras[key]  # type: ignore[no-any-return]

    def legend_source(self, ref: str, path: str) -> LegendSource | None:
        """The legend of a WMS source with ``legendgraphic`` or ``legendurl``."""
        conf = self._config.sources[ref.partition(":")[0]]
        if not isinstance(conf, (WMSSourceConfig, MapServerSourceConfig)):
            return None
        opts = conf.wms_opts
        if not opts.legendurl and not opts.legendgraphic:
            return None
        key = f"legend:{ref}"
        if key not in self._extras:
            from mapproxy.source.legend import WMSLegendSource

            if opts.legendurl:
                self._extras[key] = self.static_legend(
                    opts.legendurl, conf.http if isinstance(conf, WMSSourceConfig) else None
                )
            else:
                self._extras[key] = WMSLegendSource(self.source_ref(ref, path))  # type: ignore[arg-type]
        return self._extras[key]  # type: ignore[no-any-return]

    def static_legend(self, url: str, http: Any = None) -> LegendSource:
        """A legend from an http(s) URL or a ``file://`` path (relative to the config)."""
        from mapproxy.source.legend import StaticLegendSource

        if url.startswith("file://"):
            return StaticLegendSource(path=self._paths.path(url[len("file://") :]))
        client = http_client(self._globals.http, http, self._paths, "mapproxy.source.wms")
        return StaticLegendSource(url=url, client=client)

    def _tagged_layers(self, name: str, ref: str, tags: str, path: str) -> str:
        """The layers named in the tagged reference ``ref``; they must be in ``req.layers``."""
        conf = self._config.sources[name]
        if not isinstance(conf, (WMSSourceConfig, MapServerSourceConfig)):
            raise ConfigurationError(
                f"{path}: tagged source names ('{ref}') are only supported for wms and "
                "mapserver sources"
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
        return ",".join(tagged)

    def _build(self, name: str, layers: str | None = None) -> MapSource:
        conf = self._config.sources[name]
        path = f"sources.{name}"
        if getattr(conf, "seed_only", False) and not self._seed:
            from mapproxy.source.seed_only import SeedOnlySource

            return SeedOnlySource()
        builder = self._builders.get(conf.type)
        if builder is None:
            raise ConfigurationError(
                f"{path}.type: source type '{conf.type}' is not supported by this version yet"
            )
        try:
            if layers is not None:
                source = builder(name, conf, path, layers=layers)
            else:
                source = builder(name, conf, path)
        except ConfigurationError:
            raise
        except MapProxyError as error:
            raise ConfigurationError(f"{path}: {error}") from None
        coverage = self._coverage(name)
        if coverage is not None:
            # Every source type: the tile manager and direct layers skip requests
            # outside it and clip results (``clip: true``).
            source.coverage = coverage  # type: ignore[attr-defined]
            if getattr(source, "extent", None) is None:
                source.extent = coverage_map_extent(coverage)
        return source

    def _coverage(self, name: str) -> Coverage | None:
        """The loaded ``coverage`` of source ``name`` (loaded once), or None."""
        conf = self._config.sources[name].coverage
        if conf is None:
            return None
        if name not in self._coverages:
            self._coverages[name] = load_coverage(conf, f"sources.{name}.coverage", self._paths)
        return self._coverages[name]

    def _coverage_extent(self, name: str) -> MapExtent | None:
        coverage = self._coverage(name)
        return coverage_map_extent(coverage) if coverage is not None else None

    def _build_wms(
        self, name: str, conf: WMSSourceConfig, path: str, layers: str | None = None
    ) -> MapSource:
        cls = SOURCE_CLASSES.get("wms")
        req = conf.req.model_dump(exclude_none=True)
        url = req.pop("url")
        if layers is not None:
            req["layers"] = layers
        if not req.get("layers") and not req.get("sld") and not req.get("sld_body"):
            raise ConfigurationError(f"{path}.req: missing 'layers'")
        if str(req.get("sld", "")).startswith("file://"):
            req["sld_body"] = self._read_sld(req.pop("sld")[len("file://") :], f"{path}.req.sld")
        params: dict[str, str] = {}
        for key, value in req.items():
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            params[key] = str(value)
        transparent = str(req.get("transparent", "")).lower() == "true"
        image = conf.image
        _warn_merge_method(image, path)
        extent = self._coverage_extent(name)
        on_error = _on_error_dict(conf.on_error)
        min_res, max_res = _res_range(conf)
        return cls(  # type: ignore[no-any-return]
            http_client(self._globals.http, conf.http, self._paths, "mapproxy.source.wms"),
            url,
            params,
            version=conf.wms_opts.version,
            supported_srs=_srs_list(conf.supported_srs, f"{path}.supported_srs"),
            supported_formats=[format_mime_type(f) for f in conf.supported_formats]
            if conf.supported_formats
            else None,
            transparent=transparent,
            extent=extent,
            min_res=min_res,
            max_res=max_res,
            on_error=on_error,
            **self._image_kwargs(image, transparent),
            preferred_src_proj=self._preferred_src_proj(),
            request_limiter=request_limiter(
                self._globals, self._paths, url, conf.concurrent_requests
            ),
            forward_req_params=conf.forward_req_params,
        )

    def _image_kwargs(self, image: Any, transparent: bool) -> dict[str, Any]:
        """Image options of an HTTP map source: format options, transparent colour, opacity."""
        return {
            "image_options": build_image_options(
                self._globals.image, None, image, transparent=transparent
            ),
            "transparent_color": image.transparent_color if image else None,
            "transparent_color_tolerance": (
                image.transparent_color_tolerance
                if image and image.transparent_color_tolerance is not None
                else 5
            ),
            "opacity": image.opacity if image else None,
        }

    def _read_sld(self, filename: str, path: str) -> str:
        """The text of an ``sld: file://...`` file (relative to the config directory)."""
        try:
            with open(self._paths.path(filename), encoding="utf-8") as sld:
                return sld.read()
        except OSError as error:
            raise ConfigurationError(f"{path}: cannot read SLD file: {error}") from None

    def _preferred_src_proj(self) -> dict[str, list[SRS]]:
        """``globals.srs.preferred_src_proj`` with SRS objects."""
        conf = self._globals.srs.preferred_src_proj or {}
        return {
            target: _srs_list(codes, f"globals.srs.preferred_src_proj.{target}") or []
            for target, codes in conf.items()
        }

    def _build_tile(self, name: str, conf: TileSourceConfig, path: str) -> MapSource:
        cls = SOURCE_CLASSES.get("tile")
        grid_name = conf.grid or "GLOBAL_MERCATOR"
        url = split_credentials(conf.url)[0]
        if conf.grid is None:
            log.warning(
                "tile source for %s does not have a grid configured and defaults to "
                "GLOBAL_MERCATOR. default will change with MapProxy 2.0",
                url,
            )
        if conf.origin is not None:
            # as MapProxy 7.0.0: the grid's origin counts, ``origin`` is ignored
            log.warning("%s.origin: origin for tile sources is deprecated and ignored", path)
        fmt = conf.request_format or (conf.image.format if conf.image else None) or "image/png"
        _warn_merge_method(conf.image, path)
        min_res, max_res = _res_range(conf)
        return cls(  # type: ignore[no-any-return]
            # tile sources have no ``method``: a global POST must not reach tile servers
            http_client(
                self._globals.http, conf.http, self._paths, "mapproxy.source.tile", method="GET"
            ),
            conf.url,
            self._grids.grid(grid_name),
            format=format_mime_type(fmt),
            transparent=conf.transparent,
            on_error=_on_error_dict(conf.on_error),
            extent=self._coverage_extent(name),
            url_origin=None,
            request_limiter=request_limiter(
                self._globals, self._paths, conf.url, conf.concurrent_requests
            ),
            min_res=min_res,
            max_res=max_res,
        )

    def _build_debug(self, name: str, conf: DebugSourceConfig, path: str) -> MapSource:
        return SOURCE_CLASSES.get("debug")()  # type: ignore[no-any-return]

    def _build_raster(self, name: str, conf: RasterSourceConfig, path: str) -> MapSource:
        cls = SOURCE_CLASSES.get("raster")
        filename = self._paths.path(conf.filename)
        if not os.path.exists(filename):
            raise ConfigurationError(f"{path}.filename: file not found: {filename}")
        return cls(  # type: ignore[no-any-return]
            filename,
            transparent=conf.transparent,
            resampling=conf.resampling,
            extent=self._coverage_extent(name),
            nodata=conf.nodata,
            bands=conf.bands,
        )

    def _build_mapserver(
        self, name: str, conf: MapServerSourceConfig, path: str, layers: str | None = None
    ) -> MapSource:
        """A WMS source whose requests run the ``mapserv`` CGI binary instead of HTTP."""
        from mapproxy.source.mapserver import MapServerClient, find_mapserv_binary, mapserver_url

        local = conf.mapserver or {}
        configured = local.get("binary") or self._globals.mapserver.binary
        key = f"{path}.mapserver.binary" if local.get("binary") else "globals.mapserver.binary"
        if configured and os.sep in configured:
            configured = self._paths.path(configured)
        binary = find_mapserv_binary(configured)
        if binary is None:
            raise ConfigurationError(
                f"{key}: mapserver binary '{configured or 'mapserv'}' not found or not executable"
                + ("" if configured else " (searched PATH)")
            )
        working_dir = local.get("working_dir") or self._globals.mapserver.working_dir
        data = conf.model_dump(exclude_none=True, exclude={"mapserver"}, by_alias=True)
        data.update(conf.model_extra or {})
        data["type"] = "wms"
        data["req"]["url"] = mapserver_url(binary)
        data["req"]["map"] = self._paths.path(conf.req.map)
        source = self._build_wms(name, WMSSourceConfig.model_validate(data), path, layers=layers)
        http = self._globals.http
        source.client = MapServerClient(  # type: ignore[attr-defined]
            binary,
            working_dir=self._paths.path(working_dir) if working_dir else None,
            timeout_seconds=float(http.client_timeout or 60),
            hide_error_details=bool(
                True if http.hide_error_details is None else http.hide_error_details
            ),
        )
        return source

    def _build_arcgis(self, name: str, conf: ArcGISSourceConfig, path: str) -> MapSource:
        cls = SOURCE_CLASSES.get("arcgis")
        req = dict(conf.req)
        url = req.pop("url", None)
        if not url:
            raise ConfigurationError(f"{path}.req.url: missing")
        transparent = str(req.get("transparent", "")).lower() == "true"
        image = conf.image
        min_res, max_res = _res_range(conf)
        return cls(  # type: ignore[no-any-return]
            http_client(self._globals.http, conf.http, self._paths, "mapproxy.source.arcgis"),
            str(url),
            req,
            supported_srs=_srs_list(conf.supported_srs, f"{path}.supported_srs"),
            supported_formats=[format_mime_type(f) for f in conf.supported_formats]
            if conf.supported_formats
            else None,
            extent=self._coverage_extent(name),
            min_res=min_res,
            max_res=max_res,
            on_error=_on_error_dict(conf.on_error),
            **self._image_kwargs(image, transparent),
            preferred_src_proj=self._preferred_src_proj(),
            request_limiter=request_limiter(
                self._globals, self._paths, str(url), conf.concurrent_requests
            ),
        )

    def _arcgis_info_source(
        self, conf: ArcGISSourceConfig, ref: str, path: str
    ) -> InfoSource | None:
        """``identify`` requests for an arcgis source with ``opts.featureinfo``."""
        opts = conf.opts or {}
        if not opts.get("featureinfo"):
            return None
        key = f"info:{ref}"
        if key not in self._extras:
            from mapproxy.source.arcgis import ArcGISInfoSource

            self._extras[key] = ArcGISInfoSource(
                self.source_ref(ref, path),  # type: ignore[arg-type]
                tolerance=int(opts.get("featureinfo_tolerance", 5)),
                return_geometries=bool(opts.get("featureinfo_return_geometries", False)),
            )
        return self._extras[key]  # type: ignore[no-any-return]

    def _build_mapnik(self, name: str, conf: MapnikSourceConfig, path: str) -> MapSource:
        from mapproxy.source.mapnik import mapnik_available

        if not mapnik_available():
            raise ConfigurationError(
                f"{path}: the mapnik source needs the mapnik Python package (not installed)"
            )
        mapfile = self._paths.path(conf.mapfile)
        if not os.path.exists(mapfile):
            raise ConfigurationError(f"{path}.mapfile: file not found: {mapfile}")
        layers = conf.layers.split(",") if isinstance(conf.layers, str) else conf.layers
        return SOURCE_CLASSES.get("mapnik")(  # type: ignore[no-any-return]
            mapfile,
            layers=layers,
            transparent=conf.transparent,
            scale_factor=conf.scale_factor,
            multithreaded=conf.multithreaded,
            extent=self._coverage_extent(name),
        )

    def _build_ogcapitiles(self, name: str, conf: OGCAPITilesSourceConfig, path: str) -> MapSource:
        return SOURCE_CLASSES.get("ogcapitiles")(  # type: ignore[no-any-return]
            http_client(self._globals.http, conf.http, self._paths, "mapproxy.source.ogcapi"),
            conf.landingpage_url,
            collection=conf.collection,
            tile_matrix_set_id=conf.tile_matrix_set_id,
            transparent=bool(conf.image and conf.image.transparent),
            extent=self._coverage_extent(name),
            request_limiter=request_limiter(
                self._globals, self._paths, conf.landingpage_url, conf.concurrent_requests
            ),
        )

    def _build_ogcapimaps(self, name: str, conf: OGCAPIMapsSourceConfig, path: str) -> MapSource:
        image = conf.image
        min_res, max_res = _res_range(conf)
        return SOURCE_CLASSES.get("ogcapimaps")(  # type: ignore[no-any-return]
            http_client(self._globals.http, conf.http, self._paths, "mapproxy.source.ogcapi"),
            conf.landingpage_url,
            collection=conf.collection,
            bgcolor=conf.bgcolor,
            supported_srs=_srs_list(conf.supported_srs, f"{path}.supported_srs"),
            transparent=conf.transparent,
            extent=self._coverage_extent(name),
            min_res=min_res,
            max_res=max_res,
            **self._image_kwargs(image, conf.transparent),
            preferred_src_proj=self._preferred_src_proj(),
            request_limiter=request_limiter(
                self._globals, self._paths, conf.landingpage_url, conf.concurrent_requests
            ),
        )


def _srs_list(codes: Sequence[str] | None, path: str) -> list[SRS] | None:
    if codes is None:
        return None
    result = []
    for index, code in enumerate(codes):
        try:
            result.append(get_srs(code))
        except UnknownSRS as error:
            raise ConfigurationError(f"{path}[{index}]: {error}") from None
    return result


def _res_range(conf: Any) -> tuple[float | None, float | None]:
    """A source's ``min_res``/``max_res`` (m/px), else from ``max_scale``/``min_scale``.

    As in MapProxy 7.0.0, ``min_scale`` is the small scale number (the fine limit, like
    ``max_res``) and ``max_scale`` the coarse limit (like ``min_res``); 0.28 mm pixels.
    """
    min_res, max_res = conf.min_res, conf.max_res
    if min_res is None and conf.max_scale is not None:
        min_res = conf.max_scale * 0.00028
    if max_res is None and conf.min_scale is not None:
        max_res = conf.min_scale * 0.00028
    return min_res, max_res


def _warn_merge_method(image: Any, path: str) -> None:
    if image is not None and image.merge_method is not None:
        log.warning("%s.image.merge_method is deprecated and ignored", path)


def _on_error_dict(conf: Mapping[Any, Any] | None) -> dict[Any, dict[str, Any]] | None:
    if not conf:
        return None
    return {key: value.model_dump() for key, value in conf.items()}
