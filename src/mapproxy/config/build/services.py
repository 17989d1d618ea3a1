"""Service objects (WMS, TMS, WMTS) over the built layers."""

from __future__ import annotations

import os
from typing import Any

from mapproxy.config.build.images import build_image_options
from mapproxy.config.models.globals import ImageGlobalsConfig
from mapproxy.config.validate import ProxyConfig
from mapproxy.errors import ConfigurationError
from mapproxy.image.options import ImageOptions
from mapproxy.layer.base import TileLayer, WMSLayer
from mapproxy.srs import UnknownSRS, get_srs

DEFAULT_WMS_SRS = ["EPSG:4326", "EPSG:4258", "CRS:84", "EPSG:900913", "EPSG:3857"]
# MapProxy's order of the per-layer BoundingBox elements
DEFAULT_BBOX_SRS = ["EPSG:3857", "EPSG:4326", "EPSG:900913"]
DEFAULT_IMAGE_FORMATS = ["image/png", "image/jpeg", "image/gif", "image/GeoTIFF", "image/tiff"]


def service_md(config: ProxyConfig, service: str) -> dict[str, Any]:
    """A copy of ``services.<service>.md`` (empty if not configured)."""
    conf = config.services.get(service)
    md = getattr(conf, "md", None) if conf is not None else None
    return dict(md or {})


def build_services(
    config: ProxyConfig, root_layer: WMSLayer | None, tile_layers: list[TileLayer]
) -> dict[str, Any]:
    """The configured services by name (``wms``, ``tms``, ``wmts_kvp``, ``wmts``)."""
    services: dict[str, Any] = {}
    configured = config.services
    max_age = int(float(config.globals.tiles.expires_hours) * 3600)
    # the WMS metadata are the defaults of the other services' metadata
    wms_md = service_md(config, "wms")
    wms_md.setdefault("title", "MapProxy WMS")
    if "wms" in configured:
        services["wms"] = _wms_service(
            configured["wms"], root_layer, wms_md, config.globals.image, config, tile_layers
        )
    if "tms" in configured:
        services["tms"] = _tms_service(configured["tms"], tile_layers, wms_md, max_age)
    if "kml" in configured:
        services["kml"] = _kml_service(configured["kml"], tile_layers, wms_md, max_age)
    if "wmts" in configured:
        legend_version = _highest_wms_version(configured["wms"]) if "wms" in configured else None
        services.update(
            _wmts_services(configured["wmts"], tile_layers, wms_md, max_age, legend_version)
        )
    if "ogcapi" in configured:
        services["ogcapi"] = _ogcapi_service(config, root_layer, tile_layers, max_age)
    return services


def _wms_service(
    conf: Any,
    root_layer: WMSLayer | None,
    md: dict[str, Any],
    image_globals: ImageGlobalsConfig,
    config: ProxyConfig,
    tile_layers: list[TileLayer] | None = None,
) -> Any:
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
    # by configured name; several names may give one mime type
    format_options: dict[str, ImageOptions] = {
        fmt: build_image_options(image_globals, fmt) for fmt in image_formats
    }
    bbox_srs = conf.bbox_srs or [code for code in DEFAULT_BBOX_SRS if code in srs]
    attribution = (conf.attribution or {}).get("text")
    inspire_md = None
    if conf.inspire_md is not None:
        from mapproxy.service.wms.inspire import missing_keys

        inspire_md = conf.inspire_md.model_dump(exclude_none=True)
        missing = missing_keys(inspire_md)
        if missing:
            raise ConfigurationError(
                f"services.wms.inspire_md: missing required key '{missing[0]}'"
                f" for type {inspire_md['type']}"
            )
    return WMSService(
        root_layer,
        md,
        srs=srs,
        bbox_srs=bbox_srs,
        image_formats=[format_options[fmt].format for fmt in image_formats],
        format_options={opts.format: opts for opts in format_options.values()},
        max_output_pixels=max_pixels,
        versions=conf.versions or ("1.0.0", "1.1.0", "1.1.1", "1.3.0"),
        strict=conf.strict,
        on_source_errors=conf.on_source_errors,
        attribution=attribution,
        concurrent_layer_renderer=conf.concurrent_layer_renderer,
        featureinfo_types=conf.featureinfo_types
        or list(conf.featureinfo_xslt or {})
        or ["text", "html", "xml"],
        featureinfo_xslt={
            kind: os.path.normpath(os.path.join(config.config_dir or os.getcwd(), path))
            for kind, path in (conf.featureinfo_xslt or {}).items()
        },
        inspire_md=inspire_md,
        # WMS-C (TILED=true) serves the cached tiles of the tile layers
        tile_layers=tile_layers or [],
        max_tile_age_seconds=int(float(config.globals.tiles.expires_hours) * 3600),
    )


def _tms_service(
    conf: Any, tile_layers: list[TileLayer], wms_md: dict[str, Any], max_age: int
) -> Any:
    from mapproxy.service.tms import TileService

    return TileService(
        tile_layers,
        {**wms_md, **(conf.md or {})},
        use_grid_names=conf.use_grid_names,
        origin=conf.origin,
        max_tile_age_seconds=max_age,
    )


def _kml_service(
    conf: Any, tile_layers: list[TileLayer], wms_md: dict[str, Any], max_age: int
) -> Any:
    from mapproxy.service.kml import KMLService

    return KMLService(
        tile_layers,
        {**wms_md, **(conf.md or {})},
        use_grid_names=conf.use_grid_names,
        max_tile_age_seconds=max_age,
    )


def _highest_wms_version(conf: Any) -> str:
    """The highest WMS version offered (used for WMTS legend URLs)."""
    versions = conf.versions or ("1.0.0", "1.1.0", "1.1.1", "1.3.0")
    return str(max(versions, key=lambda v: tuple(int(p) for p in str(v).split(".") if p.isdigit())))


def _featureinfo_formats(conf: Any) -> list[tuple[str, str]]:
    """``services.wmts.featureinfo_formats`` as (mimetype, suffix) pairs."""
    formats: list[tuple[str, str]] = []
    for index, entry in enumerate(conf.featureinfo_formats or []):
        mimetype, suffix = entry.get("mimetype"), entry.get("suffix")
        if not mimetype or not suffix:
            raise ConfigurationError(
                f"services.wmts.featureinfo_formats[{index}]: mimetype and suffix are required"
            )
        formats.append((str(mimetype), str(suffix)))
    return formats


def _wmts_services(
    conf: Any,
    tile_layers: list[TileLayer],
    wms_md: dict[str, Any],
    max_age: int,
    legend_wms_version: str | None = None,
) -> dict[str, Any]:
    """The KVP (``wmts_kvp``) and RESTful (``wmts``) services; both unless one is chosen.

    ``legend_wms_version`` is the WMS version for default GetLegendGraphic LegendURLs
    (None when WMS is not enabled).
    """
    from mapproxy.service.wmts.service import WMTSRestService, WMTSService

    services: dict[str, Any] = {}
    kvp, restful = conf.kvp, conf.restful
    if kvp is None and restful is None:
        kvp = restful = True
    md = {**wms_md, **(conf.md or {})}
    formats = _featureinfo_formats(conf)
    if kvp:
        services["wmts_kvp"] = WMTSService(
            tile_layers,
            md,
            max_tile_age_seconds=max_age,
            featureinfo_formats=formats,
            legend_wms_version=legend_wms_version,
        )
    if restful:
        kwargs: dict[str, Any] = {
            "max_tile_age_seconds": max_age,
            "featureinfo_formats": formats,
            "legend_wms_version": legend_wms_version,
        }
        if conf.restful_template:
            kwargs["template"] = conf.restful_template
        if conf.restful_featureinfo_template:
            kwargs["featureinfo_template"] = conf.restful_featureinfo_template
        services["wmts"] = WMTSRestService(tile_layers, md, **kwargs)
    return services


def _ogcapi_service(
    config: ProxyConfig, root_layer: WMSLayer | None, tile_layers: list[TileLayer], max_age: int
) -> Any:
    """The OGC API service; grids are all built-in and configured grids."""
    from mapproxy.config.build.grids import BUILTIN_GRIDS, GridBuilder
    from mapproxy.service.ogcapi import OGCAPIOptions, OGCAPIService
    from mapproxy.service.ogcapi.documents import WEB_MERCATOR_QUAD, TileMatrixSet

    conf = config.services["ogcapi"]
    if root_layer is None:
        raise ConfigurationError("layers: found no layer (the ogcapi service needs layers)")
    grids = GridBuilder(config.grids, config.globals)
    tile_matrix_sets = []
    for name in dict.fromkeys([*BUILTIN_GRIDS, *config.grids]):
        public = WEB_MERCATOR_QUAD if name == "GLOBAL_WEBMERCATOR" else name
        tile_matrix_sets.append(TileMatrixSet(public, grids.grid(name)))
    image_formats: dict[str, ImageOptions] = {}
    for fmt in conf.image_formats or ["png", "jpeg"]:
        format_options = build_image_options(config.globals.image, fmt)
        mimetype = format_options.format.split(";")[0]
        format_name = {"image/png": "png", "image/jpeg": "jpeg"}.get(mimetype)
        if format_name is None:
            raise ConfigurationError(f"services.ogcapi.image_formats: unsupported {fmt!r}")
        image_formats[format_name] = format_options
    max_pixels = 4000 * 4000
    if isinstance(conf.max_output_pixels, list):
        max_pixels = int(conf.max_output_pixels[0]) * int(conf.max_output_pixels[1])
    elif conf.max_output_pixels is not None:
        max_pixels = int(conf.max_output_pixels)
    for index, code in enumerate(conf.map_srs or ()):
        try:
            get_srs(code)
        except UnknownSRS as error:
            raise ConfigurationError(f"services.ogcapi.map_srs[{index}]: {error}") from None
    options = OGCAPIOptions(
        md=dict(conf.md or {}),
        map_srs=tuple(conf.map_srs or ("EPSG:4326", "EPSG:3857")),
        image_formats=image_formats,
        max_output_pixels=max_pixels,
        on_source_errors=conf.on_source_errors,
        attribution=(conf.attribution or {}).get("text"),
        default_dataset_layers=tuple(conf.default_dataset_layers or ()),
        concurrent_layer_renderer=conf.concurrent_layer_renderer,
        max_tile_age_seconds=max_age,
    )
    return OGCAPIService(root_layer, tile_layers, tile_matrix_sets, options)
