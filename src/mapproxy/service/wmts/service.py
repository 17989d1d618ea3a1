"""WMTS 1.0.0 services: KVP (via the OWS dispatcher) and RESTful (``/wmts``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Request, Response

from mapproxy.errors import ConfigurationError
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.layer.base import TileLayer
from mapproxy.layer.limit import CLIP_ALL
from mapproxy.service.authorize import (
    AUTHORIZE_KEY,
    authorize,
    authorize_tile,
    clipped_tile_response,
)
from mapproxy.service.base import (
    query_params,
    request_base_url,
    script_url,
    tile_response,
    xml_response,
)
from mapproxy.service.decorate import DECORATE_IMG_KEY, decorated_tile_response
from mapproxy.service.wmts.capabilities import CAPABILITIES_CONTENT_TYPE, CapabilitiesTemplate
from mapproxy.service.wmts.featureinfo import InfoFormats, featureinfo_response, parse_pixel
from mapproxy.service.wmts.tile_sets import (
    WMTSError,
    WMTSLayers,
    WMTSTileSet,
    collect_layers,
    dimension_values,
    exception_response,
    format_message,
    parse_index,
    request_extension,
)

DEFAULT_TEMPLATE = "/{Layer}/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}.{Format}"
DEFAULT_FEATUREINFO_TEMPLATE = (
    "/{Layer}/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}/{I}/{J}.{InfoFormat}"
)
CAPABILITIES_PATH = "/wmts/1.0.0/WMTSCapabilities.xml"

# Parameter order of the reference's "missing parameters" message.
TILE_PARAMS = (
    "version",
    "layer",
    "style",
    "tilematrixset",
    "tilematrix",
    "tilerow",
    "tilecol",
    "format",
)
_FEATUREINFO_PARAMS = (*TILE_PARAMS, "infoformat", "i", "j")


class WMTSService:
    """WMTS KVP: GetCapabilities, GetTile and GetFeatureInfo from query parameters."""

    def __init__(
        self,
        layers: Sequence[TileLayer],
        md: Mapping[str, Any],
        max_tile_age_seconds: int = 259200,
        featureinfo_formats: Sequence[tuple[str, str]] = (),
        legend_wms_version: str | None = None,
    ) -> None:
        self.md = md
        self.max_tile_age_seconds = max_tile_age_seconds
        self.layers = collect_layers(layers)
        self.info_formats = InfoFormats(featureinfo_formats)
        self._capabilities = CapabilitiesTemplate(
            md,
            self.layers,
            info_formats=self.info_formats.formats,
            legend_wms_version=legend_wms_version,
        )

    def handle(self, request: Request) -> Response:
        """Answer one KVP request (``SERVICE=WMTS`` was checked by the dispatcher)."""
        params = query_params(request)
        request_type = params.get("request", "").lower()
        try:
            if request_type == "gettile":
                return self._get_tile(request, params)
            if request_type == "getcapabilities":
                return self._get_capabilities(request)
            if request_type == "getfeatureinfo":
                return self._get_featureinfo(request, params)
            # The reference names no request type here, whatever was sent.
            raise WMTSError("unknown WMTS request type 'None'")
        except WMTSError as error:
            return exception_response(error)

    def _get_tile(self, request: Request, params: dict[str, str]) -> Response:
        _check_params(params, TILE_PARAMS)
        tile_set = self.layers.lookup(params["layer"], params["tilematrixset"])
        requested = request_extension(params["format"])
        if requested and requested != tile_set.extension:
            raise WMTSError(format_message(requested, tile_set.extension), "InvalidParameterValue")
        # Other parameters are dimensions; those of the layer are checked.
        dimensions = dimension_values(tile_set.layer, params)
        coord = tile_set.coord(
            parse_index(params["tilematrix"], "TileMatrix"),
            parse_index(params["tilecol"], "TileCol"),
            parse_index(params["tilerow"], "TileRow"),
        )
        return _tile(request, tile_set, coord, self.max_tile_age_seconds, dimensions)

    def _get_featureinfo(self, request: Request, params: dict[str, str]) -> Response:
        _check_params(params, _FEATUREINFO_PARAMS)
        tile_set = self.layers.lookup(params["layer"], params["tilematrixset"])
        mimetype = self.info_formats.from_kvp(params["infoformat"])
        return _featureinfo(
            request,
            tile_set,
            mimetype,
            (params["tilematrix"], params["tilecol"], params["tilerow"]),
            (params["i"], params["j"]),
        )

    def _get_capabilities(self, request: Request) -> Response:
        permitted = _permitted_layers(request, self.layers)
        if isinstance(permitted, Response):
            return permitted
        body = self._capabilities.render(
            request_base_url(request) + "?", script_url(request), permitted
        )
        return xml_response(body, CAPABILITIES_CONTENT_TYPE)


def _tile(
    request: Request,
    tile_set: WMTSTileSet,
    coord: TileCoord,
    max_tile_age_seconds: int,
    dimensions: Mapping[str, str] | None = None,
) -> Response:
    """The tile response, authorized and clipped when the request carries a callback."""
    clip = CLIP_ALL
    callback = request.environ.get(AUTHORIZE_KEY)
    if callback is not None:
        access = authorize_tile(callback, request.environ, "wmts", tile_set.layer, coord)
        if isinstance(access, tuple):
            return _denied(*access)
        clip = access
        if clip.covers_nothing:
            return clipped_tile_response(None, clip, tile_set.layer.grid.tile_size)
    tile = tile_set.load(coord, dimensions)
    if not clip.covers_all:
        return clipped_tile_response(tile.data, clip, tile_set.layer.grid.tile_size)
    decorate = request.environ.get(DECORATE_IMG_KEY)
    if decorate is not None:
        return decorated_tile_response(
            decorate,
            request,
            "wmts",
            tile_set.layer,
            coord,
            tile,
            tile_set.mimetype,
            max_tile_age_seconds,
        )
    return tile_response(request, tile, tile_set.mimetype, max_tile_age_seconds)


def _featureinfo(
    request: Request,
    tile_set: WMTSTileSet,
    mimetype: str,
    tile: tuple[str, str, str],
    pixel: tuple[str, str],
) -> Response:
    """GetFeatureInfo for a (TileMatrix, TileCol, TileRow) tile and (I, J) pixel."""
    layer = tile_set.layer
    if not layer.queryable:
        raise WMTSError(f"layer {layer.name} not queryable", "OperationNotSupported")
    level = parse_index(tile[0], "TileMatrix")
    col = parse_index(tile[1], "TileCol")
    row = parse_index(tile[2], "TileRow")
    tile_set.coord(level, col, row)  # raises TileOutOfRange
    pos = parse_pixel(pixel[0], pixel[1], layer.grid.tile_size)
    wmts_tile = TileCoord(col, row, level)
    return featureinfo_response(request.environ, tile_set, wmts_tile, pos, mimetype)


def _permitted_layers(request: Request, layers: WMTSLayers) -> Response | set[str] | None:
    """Layer names the capabilities may list (None: all), or the refusal response."""
    callback = request.environ.get(AUTHORIZE_KEY)
    if callback is None:
        return None
    names = list(layers.layers_by_name)
    auth = authorize(callback, request.environ, "wmts", names)
    denial = auth.denial
    if denial is not None:
        return _denied(*denial)
    if auth.is_full:
        return None
    return {name for name in names if auth.permits(name, "tile")}


def _denied(status: int, message: str) -> Response:
    response = exception_response(WMTSError(message))
    response.status_code = status
    return response


def _check_params(params: Mapping[str, str], names: Sequence[str]) -> None:
    missing = [name for name in names if name not in params]
    if missing:
        raise WMTSError(f"missing parameters {missing!r}")
    styles = params.get("styles")
    if styles:
        raise WMTSError(f"unsupported styles: {styles}", "StyleNotDefined")


class WMTSRestService:
    """WMTS RESTful: capabilities at ``/wmts/1.0.0/WMTSCapabilities.xml``, tiles by template.

    ``template`` and ``featureinfo_template`` are relative to ``/wmts``; variables are
    ``{Layer}``, ``{TileMatrixSet}``, ``{TileMatrix}``, ``{TileCol}``, ``{TileRow}``,
    ``{Format}``, ``{Style}`` (feature info: ``{I}``, ``{J}``, ``{InfoFormat}``); any
    other name is a dimension that only accepts ``default``.
    """

    def __init__(
        self,
        layers: Sequence[TileLayer],
        md: Mapping[str, Any],
        template: str = DEFAULT_TEMPLATE,
        max_tile_age_seconds: int = 259200,
        featureinfo_template: str = DEFAULT_FEATUREINFO_TEMPLATE,
        featureinfo_formats: Sequence[tuple[str, str]] = (),
        legend_wms_version: str | None = None,
    ) -> None:
        self.md = md
        self.max_tile_age_seconds = max_tile_age_seconds
        self.template = _single_braces(template)
        self.featureinfo_template = _single_braces(featureinfo_template)
        self._tile_route = RestRoute(self.template, _TILE_REQUIRED)
        self._featureinfo_route = RestRoute(self.featureinfo_template, _FEATUREINFO_REQUIRED)
        self.layers = collect_layers(layers)
        self.info_formats = InfoFormats(featureinfo_formats)
        self._capabilities = CapabilitiesTemplate(
            md,
            self.layers,
            rest_template=self.template,
            info_formats=self.info_formats.formats,
            featureinfo_template=self.featureinfo_template,
            legend_wms_version=legend_wms_version,
        )

    def handle(self, request: Request) -> Response:
        """Answer a ``/wmts/...`` request."""
        path = request.path
        try:
            if path == CAPABILITIES_PATH:
                return self._get_capabilities(request)
            relative = path[5:] if path.startswith("/wmts") else path
            match = self._tile_route.regex.match(relative)
            if match is not None:
                return self._get_tile(request, match)
            match = self._featureinfo_route.regex.match(relative)
            if match is not None:
                return self._get_featureinfo(request, match)
            # The reference answers 500 text/plain here; a malformed URL is a client error.
            raise WMTSError(f"invalid request ({path})", "InvalidParameterValue")
        except WMTSError as error:
            return exception_response(error)

    def _get_tile(self, request: Request, match: re.Match[str]) -> Response:
        route = self._tile_route
        tile_set = self.layers.lookup(match["Layer"], match["TileMatrixSet"])
        if route.has_format:
            requested = match["Format"]
            if requested != tile_set.extension:
                raise WMTSError(
                    format_message(requested, tile_set.extension), "InvalidParameterValue"
                )
        requested_dimensions: dict[str, str] = {}
        for group, name in route.dimensions:
            if name.lower() in tile_set.layer.dimensions:
                requested_dimensions[name.lower()] = match[group]
            elif match[group] != "default":
                raise WMTSError(f"unknown dimension: {name.lower()}", "InvalidParameterValue")
        dimensions = dimension_values(tile_set.layer, requested_dimensions)
        coord = tile_set.coord(
            parse_index(match["TileMatrix"], "TileMatrix"),
            parse_index(match["TileCol"], "TileCol"),
            parse_index(match["TileRow"], "TileRow"),
        )
        return _tile(request, tile_set, coord, self.max_tile_age_seconds, dimensions)

    def _get_featureinfo(self, request: Request, match: re.Match[str]) -> Response:
        tile_set = self.layers.lookup(match["Layer"], match["TileMatrixSet"])
        route = self._featureinfo_route
        if route.has_info_format:
            mimetype = self.info_formats.from_suffix(match["InfoFormat"])
        elif self.info_formats.formats:
            mimetype = self.info_formats.formats[0][0]
        else:
            raise WMTSError("unknown infoformat: None", "InvalidParameterValue")
        for group, name in route.dimensions:
            if match[group] != "default":
                raise WMTSError(f"unknown dimension: {name.lower()}", "InvalidParameterValue")
        return _featureinfo(
            request,
            tile_set,
            mimetype,
            (match["TileMatrix"], match["TileCol"], match["TileRow"]),
            (match["I"], match["J"]),
        )

    def _get_capabilities(self, request: Request) -> Response:
        permitted = _permitted_layers(request, self.layers)
        if isinstance(permitted, Response):
            return permitted
        base = script_url(request)
        body = self._capabilities.render(f"{base}/wmts?", base, permitted)
        return xml_response(body, CAPABILITIES_CONTENT_TYPE)


_TILE_REQUIRED = ("TileCol", "TileRow", "TileMatrix", "TileMatrixSet", "Layer")
_FEATUREINFO_REQUIRED = (*_TILE_REQUIRED, "I", "J")
_VARIABLE_PATTERNS = {
    "Layer": r"[^/]+",
    "TileMatrixSet": r"[^/]+",
    "TileMatrix": r"-?[0-9]+",
    "TileCol": r"-?[0-9]+",
    "TileRow": r"-?[0-9]+",
    "I": r"-?[0-9]+",
    "J": r"-?[0-9]+",
    "Format": r"\w+",
    "InfoFormat": r"\w+",
    "Style": r"[^/]+",
}
_DIMENSION_PATTERN = r"[\w.,:-]+"
_VARIABLE_RE = re.compile(r"\{\{?(\w+)\}?\}")
_DOUBLE_BRACES_RE = re.compile(r"\{\{(\w+)\}\}")


def _single_braces(template: str) -> str:
    """``{{Layer}}`` (deprecated form) -> ``{Layer}``."""
    return _DOUBLE_BRACES_RE.sub(r"{\1}", template)


class RestRoute:
    """A RESTful URL template compiled once into an anchored regex."""

    def __init__(self, template: str, required: Sequence[str]) -> None:
        names = _VARIABLE_RE.findall(template)
        missing = [name for name in required if name not in names]
        if missing:
            raise ConfigurationError(
                f"services.wmts: restful template {template!r} lacks "
                + ", ".join(f"{{{name}}}" for name in missing)
            )
        pattern: list[str] = ["^"]
        groups: dict[str, str] = {}
        self.dimensions: list[tuple[str, str]] = []
        position = 0
        for match in _VARIABLE_RE.finditer(template):
            pattern.append(re.escape(template[position : match.start()]))
            position = match.end()
            name = match.group(1)
            if name in groups:
                # A repeated variable must repeat the same value.
                pattern.append(f"(?P={groups[name]})")
                continue
            # Dimension names need not be valid group names, so they get their own.
            group = name if name in _VARIABLE_PATTERNS else f"dim{len(self.dimensions)}"
            groups[name] = group
            if group != name:
                self.dimensions.append((group, name))
            pattern.append(f"(?P<{group}>{_VARIABLE_PATTERNS.get(name, _DIMENSION_PATTERN)})")
        pattern.append(re.escape(template[position:]))
        pattern.append(r"/?\Z")
        self.regex = re.compile("".join(pattern))
        self.has_format = "Format" in groups
        self.has_info_format = "InfoFormat" in groups
