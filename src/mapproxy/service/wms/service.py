"""The WMS service: GetCapabilities and GetMap for versions 1.0.0 to 1.3.0."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import replace
from typing import Any

from werkzeug.wrappers import Request, Response

from mapproxy.errors import InvalidDimensionValue, MapProxyError
from mapproxy.image.encode import detect_format, encode_image
from mapproxy.image.merge import merge_images
from mapproxy.image.message import message_image
from mapproxy.image.options import ImageOptions, format_extension
from mapproxy.image.result import ImageResult
from mapproxy.layer.base import TileLayer, WMSLayer
from mapproxy.layer.cache_layer import NotASingleTile, single_tile
from mapproxy.layer.limit import LimitArea
from mapproxy.service.authorize import AUTHORIZE_KEY, Authorization, authorize
from mapproxy.service.base import (
    InvalidRequest,
    no_cache,
    query_params,
    request_base_url,
    tile_response,
    xml_response,
)
from mapproxy.service.decorate import DECORATE_IMG_KEY, REQUEST_KEY, decorate_image
from mapproxy.service.wms.capabilities import CAPABILITIES_CONTENT_TYPES, CapabilitiesDocuments
from mapproxy.service.wms.exceptions import exception_response, xml_exception_response
from mapproxy.service.wms.featureinfo import FeatureInfoHandler
from mapproxy.service.wms.legend import LegendHandler
from mapproxy.service.wms.render import LayerAccess, LayerRenderer, RenderError
from mapproxy.service.wms.request import (
    FormatTable,
    GetMapParser,
    GetMapRequest,
    ImageSizeTooLarge,
    request_type,
    request_version,
)
from mapproxy.source.base import MapQuery
from mapproxy.srs import SRS, BBox, UnknownSRS, get_srs

log = logging.getLogger("mapproxy.config")

SUPPORTED_VERSIONS = ("1.0.0", "1.1.0", "1.1.1", "1.3.0")
DEFAULT_SRS = ("EPSG:4326", "EPSG:4258", "CRS:84", "EPSG:900913", "EPSG:3857")
# MapProxy's order of the per-layer BoundingBox elements
DEFAULT_BBOX_SRS = ("EPSG:3857", "EPSG:4326", "EPSG:900913")
DEFAULT_IMAGE_FORMATS = ("image/png", "image/jpeg", "image/gif", "image/GeoTIFF", "image/tiff")
DEFAULT_FEATUREINFO_TYPES = ("text", "html", "xml")

_TIFF_TYPES = frozenset({"image/tiff", "image/geotiff"})
_ERROR_TEXT_COLOR = (200, 0, 0)


class WMSService:
    """Answers WMS requests for one published layer tree."""

    def __init__(
        self,
        root_layer: WMSLayer,
        md: Mapping[str, Any],
        srs: Sequence[str] = DEFAULT_SRS,
        bbox_srs: Sequence[str | Mapping[str, Any]] = DEFAULT_BBOX_SRS,
        image_formats: Sequence[str] = DEFAULT_IMAGE_FORMATS,
        format_options: Mapping[str, ImageOptions] | None = None,
        max_output_pixels: int = 4000 * 4000,
        versions: Sequence[str] = SUPPORTED_VERSIONS,
        strict: bool = False,
        on_source_errors: str = "notify",
        attribution: str | None = None,
        concurrent_layer_renderer: int = 1,
        featureinfo_types: Sequence[str] = DEFAULT_FEATUREINFO_TYPES,
        featureinfo_xslt: Mapping[str, str] | None = None,
        inspire_md: Mapping[str, Any] | None = None,
        tile_layers: Sequence[TileLayer] = (),
        max_tile_age_seconds: int = 259200,
    ) -> None:
        md = md or {}
        self.root_layer = root_layer
        self.md = md
        self.strict = strict
        self.attribution = attribution or None
        self.max_output_pixels = max_output_pixels
        self.versions = tuple(v for v in SUPPORTED_VERSIONS if v in versions) or (
            SUPPORTED_VERSIONS
        )
        self.srs: dict[str, SRS] = {}
        for code in srs:
            try:
                self.srs.setdefault(code.strip().upper(), get_srs(code))
            except UnknownSRS:
                log.warning("WMS srs %r is unknown to PROJ; not offered", code)
        self.formats = FormatTable(image_formats, format_options)
        self.layers_by_name = {node.name: node for node in root_layer.iter_named() if node.name}
        self.parser = GetMapParser(
            list(self.layers_by_name), self.formats, self.srs, max_output_pixels
        )
        self.renderer = LayerRenderer(
            root_layer,
            on_source_errors,
            concurrent_layer_renderer,
            forced_bboxes=_forced_bboxes(bbox_srs, self.srs),
        )
        self.featureinfo = FeatureInfoHandler(
            self.layers_by_name, self.parser, strict, featureinfo_xslt
        )
        self.legends = LegendHandler(self.layers_by_name, self.formats, strict)
        self.capabilities = CapabilitiesDocuments(
            root_layer,
            md,
            list(self.srs.values()),
            bbox_srs,
            self.formats,
            max_output_pixels,
            self.versions,
            featureinfo_types,
            legend_size=self.legends.legend_size,
            inspire_md=inspire_md,
            tile_layers=tile_layers,
        )
        self.max_tile_age_seconds = max_tile_age_seconds
        # WMS-C: the tile layers by name and grid SRS code (as in MapProxy, a later grid
        # in the same SRS replaces an earlier one)
        self.wmsc_layers: dict[str, dict[str, TileLayer]] = {}
        for tile_layer in tile_layers:
            by_srs = self.wmsc_layers.setdefault(tile_layer.name, {})
            by_srs[tile_layer.grid.srs.code] = tile_layer

    def handle(self, request: Request) -> Response:
        """Answer one WMS request (any version, any operation)."""
        params = query_params(request)
        version = request_version(params, self.versions)
        try:
            operation = request_type(params, version)
        except InvalidRequest as error:
            return xml_exception_response(version, error.message, error.code)
        if operation == "GetMap":
            return self.get_map(params, version, request.environ)
        if operation == "GetCapabilities":
            return self.get_capabilities(request, version)
        if operation == "GetFeatureInfo":
            return self.featureinfo.handle(params, version, request.environ, xml_exception_response)
        if operation == "GetLegendGraphic":
            return self.legends.handle(params, version, xml_exception_response)
        return xml_exception_response(
            version, f"{operation} is not supported", "OperationNotSupported"
        )

    def get_capabilities(self, request: Request, version: str) -> Response:
        """The capabilities document of ``version`` with this request's public URL."""
        view = None
        callback = request.environ.get(AUTHORIZE_KEY)
        if callback is not None:
            auth = authorize(
                callback, request.environ, "wms.capabilities", list(self.layers_by_name)
            )
            denial = auth.denial
            if denial is not None:
                return xml_exception_response(version, denial[1], status=denial[0])
            if not auth.is_full:
                view = self.capabilities.authorized_view(
                    auth.permits,
                    lambda name: auth.map_limits(name) if name else _request_limits(auth),
                )
        # WMS-C: tile sets as VendorSpecificCapabilities (1.1.x only)
        tiled = (query_params(request).get("tiled") or "").lower() == "true"
        body = self.capabilities.render(version, request_base_url(request), view, tiled=tiled)
        return xml_response(body, CAPABILITIES_CONTENT_TYPES[version])

    def get_map(
        self,
        params: Mapping[str, str],
        version: str,
        environ: MutableMapping[str, Any] | None = None,
    ) -> Response:
        """Validate, authorize, render, merge and encode a GetMap request."""
        context = self.parser.exception_context(params, version)
        try:
            map_request = self.parser.parse(params, version)
        except ImageSizeTooLarge as error:
            return xml_exception_response(version, error.message, error.code)
        except InvalidRequest as error:
            return exception_response(context, error.message, error.code)
        if environ is not None:
            environ[REQUEST_KEY] = map_request
        if map_request.dimensions and environ is not None:
            # Dimension directories of caches use the client's spelling (as MapProxy).
            map_request = replace(
                map_request, dimensions=_client_spelling(map_request.dimensions, environ)
            )

        access = None
        callback = environ.get(AUTHORIZE_KEY) if environ is not None else None
        if callback is not None:
            assert environ is not None
            access_or_denial = self._map_access(callback, environ, map_request)
            if isinstance(access_or_denial, tuple):
                status, message = access_or_denial
                return xml_exception_response(version, message, status=status)
            access = access_or_denial

        if map_request.tiled and len(map_request.layers) == 1:
            by_srs = self.wmsc_layers.get(map_request.layers[0])
            if by_srs and (access is None or not access.limits):
                wmsc = self._wmsc_tile(map_request, by_srs, environ)
                if isinstance(wmsc, Response):
                    return wmsc
                if wmsc is not None:
                    return exception_response(context, wmsc)

        options = map_request.format.options.updated(
            transparent=map_request.transparent, bgcolor=map_request.bgcolor
        )
        query = MapQuery(
            bbox=map_request.bbox,
            size=map_request.size,
            srs=map_request.srs,
            format=options.mime_type,
            transparent=map_request.transparent,
            tiled_only=map_request.tiled,
            dimensions=map_request.dimensions,
        )
        try:
            rendered = self.renderer.render(map_request.layers, query, options, access)
        except InvalidDimensionValue as error:
            return exception_response(context, str(error), "InvalidDimensionValue", 400)
        except RenderError as error:
            return exception_response(context, str(error))

        image = rendered.image
        overlays: list[ImageResult] = []
        overlay_options = options.updated(transparent=True)
        if rendered.errors:
            text = "\n".join(rendered.errors)
            overlays.append(
                message_image(text, query.size, overlay_options, color=_ERROR_TEXT_COLOR)
            )
        if self.attribution and not map_request.tiled:
            overlays.append(
                message_image(
                    self.attribution,
                    query.size,
                    overlay_options,
                    placement="bottom-right",
                    font_size=10,
                    halo=(255, 255, 255),
                    cacheable=True,
                )
            )
        if overlays:
            image = merge_images([image, *overlays], query.size, options)
        decorate = environ.get(DECORATE_IMG_KEY) if environ is not None else None
        if decorate is not None:
            assert environ is not None
            layers = self.renderer.leaf_names(map_request.layers)
            if access is not None:
                layers = [name for name in layers if name in access.permitted]
            query_extent = (map_request.srs.code, map_request.bbox)
            image = decorate_image(decorate, image, "wms.map", layers, environ, query_extent)
        cacheable = image.cacheable and not rendered.errors

        try:
            body = self._encode(image, options, map_request)
        except ValueError:
            return exception_response(
                context,
                f"unsupported image format: {map_request.format.name}",
                "InvalidFormat",
            )
        mimetype = options.mime_type
        if mimetype == "image/mixed":
            mimetype = detect_format(body) or "image/png"
        response = Response(body, mimetype=mimetype)
        return response if cacheable else no_cache(response)

    def _wmsc_tile(
        self,
        map_request: GetMapRequest,
        by_srs: Mapping[str, TileLayer],
        environ: Mapping[str, Any] | None,
    ) -> Response | str | None:
        """A WMS-C GetMap of one tile layer: the cached tile, an error message, or None
        to render normally (the tile lies outside the grid)."""
        tile_layer = by_srs.get(map_request.srs.code) or next(iter(by_srs.values()))
        requested_ext = format_extension(map_request.format.options.mime_type)
        if requested_ext != tile_layer.extension:
            return f"Invalid request: invalid tile format, use {tile_layer.extension}"
        width, height = tile_layer.grid.tile_size
        if tuple(map_request.size) != (width, height):
            return f"Invalid request: invalid tile size (use {width}x{height})"
        grid = tile_layer.grid
        coord = None
        if grid.srs.is_same_as(map_request.srs):
            coord = single_tile(grid, map_request.bbox, map_request.size)
        if coord is None:
            return str(NotASingleTile())
        if not grid.is_valid(coord):
            return None
        try:
            # As in GetMap: caches with storage get only the layer's dimensions.
            dimensions = map_request.dimensions if tile_layer.dimensions else None
            if dimensions and not getattr(tile_layer.tile_manager, "disable_storage", False):
                dimensions = {
                    name: value
                    for name, value in dimensions.items()
                    if name.lower() in tile_layer.dimensions
                }
            tile = tile_layer.load_tile(coord, dimensions=dimensions)
        except MapProxyError as error:
            return str(error)
        mimetype = tile_layer.format
        if mimetype == "image/mixed":
            mimetype = detect_format(tile.data or b"") or "image/png"
        request = Request(dict(environ or {}))
        return tile_response(request, tile, mimetype, self.max_tile_age_seconds)

    def _map_access(
        self, callback: Any, environ: Mapping[str, Any], map_request: GetMapRequest
    ) -> LayerAccess | tuple[int, str] | None:
        """What the GetMap may draw, (status, message) if refused, None if unrestricted.

        An explicitly requested layer that is not permitted refuses the whole request;
        layers only reached through a requested group are left out silently.
        """
        leaves = self.renderer.leaf_names(map_request.layers)
        query_extent = (map_request.srs.code, map_request.bbox)
        auth = authorize(callback, environ, "wms.map", leaves, query_extent)
        denial = auth.denial
        if denial is not None:
            return denial
        if auth.is_full:
            return None
        permitted = frozenset(name for name in leaves if auth.permits(name, "map"))
        leaf_set = set(leaves)
        for name in map_request.layers:
            if name in leaf_set and name not in permitted:
                return 403, "forbidden"
        limits = {name: auth.map_limits(name) for name in permitted}
        return LayerAccess(permitted, {name: areas for name, areas in limits.items() if areas})

    def _encode(self, image: ImageResult, options: ImageOptions, request: GetMapRequest) -> bytes:
        """Encoded output; TIFF gets GeoTIFF tags for the request bbox and SRS."""
        if options.mime_type in _TIFF_TYPES:
            return encode_image(image.as_image(), options, bbox=request.bbox, srs=request.srs)
        return image.as_bytes(options)


def _forced_bboxes(
    bbox_srs: Sequence[str | Mapping[str, Any]], offered: Mapping[str, SRS]
) -> dict[str, BBox]:
    """Explicit ``{srs, bbox}`` entries of ``bbox_srs`` by SRS code (offered SRS only)."""
    forced: dict[str, BBox] = {}
    for entry in bbox_srs:
        if isinstance(entry, Mapping) and entry.get("bbox"):
            srs = offered.get(str(entry.get("srs", "")).strip().upper())
            if srs is not None and srs.code not in forced:
                minx, miny, maxx, maxy = (float(v) for v in entry["bbox"])
                forced[srs.code] = (minx, miny, maxx, maxy)
    return forced


def _request_limits(auth: Authorization) -> tuple[LimitArea, ...]:
    return () if auth.limited_to is None else (auth.limited_to,)


def _client_spelling(dimensions: Mapping[str, str], environ: Mapping[str, Any]) -> dict[str, str]:
    """``dimensions`` (lower-case names) with names spelled as in the request."""
    request = Request(dict(environ))
    names: dict[str, str] = {}
    for key in request.args:
        names.setdefault(key.lower(), key)
    return {names.get(name, name): value for name, value in dimensions.items()}
