"""Sources: one builder per source ``type``, tagged source names (``wms:a,b``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mapproxy.config.build.extents import coverage_extent
from mapproxy.config.build.grids import GridBuilder
from mapproxy.config.build.http_options import http_client
from mapproxy.config.build.images import build_image_options
from mapproxy.config.build.locks import request_limiter
from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.models.sources import (
    DebugSourceConfig,
    RasterSourceConfig,
    TileSourceConfig,
    WMSSourceConfig,
)
from mapproxy.config.validate import ProxyConfig
from mapproxy.errors import ConfigurationError, MapProxyError
from mapproxy.image.options import format_mime_type
from mapproxy.source.base import MapSource
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
    },
)


class SourceBuilder:
    """Builds each source once; a tagged name (``wms:a,b``) is a source of its own."""

    def __init__(self, config: ProxyConfig, paths: ConfigPaths, grids: GridBuilder) -> None:
        self._config = config
        self._globals = config.globals
        self._paths = paths
        self._grids = grids
        self._built: dict[str, MapSource] = {}
        self._extras: dict[str, Any] = {}  # feature info and legend sources by reference
        # the supported ``type``s; each builder takes the class from SOURCE_CLASSES
        self._builders: dict[str, Callable[..., MapSource]] = {
            "wms": self._build_wms,
            "tile": self._build_tile,
            "debug": self._build_debug,
            "raster": self._build_raster,
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
        return not (isinstance(conf, WMSSourceConfig) and not conf.wms_opts.map)

    def info_source(self, ref: str, path: str) -> InfoSource | None:
        """The feature info source of a WMS source with ``wms_opts.featureinfo``."""
        conf = self._config.sources[ref.partition(":")[0]]
        if not isinstance(conf, WMSSourceConfig) or not conf.wms_opts.featureinfo:
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
        if not isinstance(conf, WMSSourceConfig):
            return None
        opts = conf.wms_opts
        if not opts.legendurl and not opts.legendgraphic:
            return None
        key = f"legend:{ref}"
        if key not in self._extras:
            from mapproxy.source.legend import WMSLegendSource

            if opts.legendurl:
                self._extras[key] = self.static_legend(opts.legendurl, conf.http)
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
        return ",".join(tagged)

    def _build(self, name: str, layers: str | None = None) -> MapSource:
        conf = self._config.sources[name]
        path = f"sources.{name}"
        builder = self._builders.get(conf.type)
        if builder is None:
            raise ConfigurationError(
                f"{path}.type: source type '{conf.type}' is not supported by this version yet"
            )
        try:
            if layers is not None:
                return builder(name, conf, path, layers=layers)
            return builder(name, conf, path)
        except ConfigurationError:
            raise
        except MapProxyError as error:
            raise ConfigurationError(f"{path}: {error}") from None

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
        params: dict[str, str] = {}
        for key, value in req.items():
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            params[key] = str(value)
        transparent = str(req.get("transparent", "")).lower() == "true"
        image = conf.image
        extent = coverage_extent(conf.coverage, path)
        on_error = _on_error_dict(conf.on_error)
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
            image_options=build_image_options(
                self._globals.image, None, image, transparent=transparent
            ),
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
            request_limiter=request_limiter(
                self._globals, self._paths, url, conf.concurrent_requests
            ),
            forward_req_params=conf.forward_req_params,
        )

    def _build_tile(self, name: str, conf: TileSourceConfig, path: str) -> MapSource:
        cls = SOURCE_CLASSES.get("tile")
        grid_name = conf.grid or "GLOBAL_MERCATOR"
        if conf.grid is None:
            log.warning("tile source %s does not have a grid. using GLOBAL_MERCATOR", name)
        fmt = conf.request_format or (conf.image.format if conf.image else None) or "image/png"
        return cls(  # type: ignore[no-any-return]
            http_client(self._globals.http, conf.http, self._paths, "mapproxy.source.tile"),
            conf.url,
            self._grids.grid(grid_name),
            format=format_mime_type(fmt),
            transparent=conf.transparent,
            on_error=_on_error_dict(conf.on_error),
            extent=coverage_extent(conf.coverage, path),
            url_origin=conf.origin,
            request_limiter=request_limiter(
                self._globals, self._paths, conf.url, conf.concurrent_requests
            ),
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
            extent=coverage_extent(conf.coverage, path),
            nodata=conf.nodata,
            bands=conf.bands,
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


def _on_error_dict(conf: Mapping[Any, Any] | None) -> dict[Any, dict[str, Any]] | None:
    if not conf:
        return None
    return {key: value.model_dump() for key, value in conf.items()}
