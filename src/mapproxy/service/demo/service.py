"""The ``/demo/`` service: an overview of all layers and an OpenLayers viewer per layer."""

from __future__ import annotations

import html
import json
import logging
import mimetypes
from collections.abc import Sequence
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from mapproxy import __version__
from mapproxy.layer.base import TileLayer, WMSLayer
from mapproxy.service.authorize import AUTHORIZE_KEY, authorize
from mapproxy.service.base import query_params, script_url
from mapproxy.source.base import MapExtent
from mapproxy.srs import SRS, BBox, get_srs

log = logging.getLogger("mapproxy.service.demo")

STATIC_PACKAGE = "mapproxy.service.demo"
STATIC_TYPES = {".js": "application/javascript", ".css": "text/css", ".png": "image/png"}

_CAPABILITIES_PATHS = {
    "wms_capabilities": ("/service", "REQUEST=GetCapabilities&SERVICE=WMS"),
    "wmsc_capabilities": ("/service", "REQUEST=GetCapabilities&SERVICE=WMS&tiled=true"),
    "wmts_capabilities_kvp": ("/service", "REQUEST=GetCapabilities&SERVICE=WMTS"),
    "wmts_capabilities": ("/wmts/1.0.0/WMTSCapabilities.xml", ""),
    "tms_capabilities": ("/tms/1.0.0/", ""),
}


class DemoService:
    """Serves the demo overview, layer viewers, capabilities views and static assets."""

    def __init__(self, built: Any) -> None:
        self.built = built
        self.services = built.services
        self.root_layer: WMSLayer | None = built.root_layer
        self.wms_layers = (
            sorted(
                (layer for layer in self.root_layer.iter_named()),
                key=lambda layer: str(layer.name),
            )
            if self.root_layer is not None and "wms" in self.services
            else []
        )
        self.wms_srs: list[str] = list(getattr(built, "wms_srs", None) or ["EPSG:3857"])
        self.wms_formats: list[str] = list(getattr(built, "wms_formats", None) or ["image/png"])
        self.tile_layers: list[TileLayer] = list(built.tile_layers)
        self.background_url = (
            built.background_url or "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
        )
        self.tms_use_grid_names = bool(getattr(built, "tms_use_grid_names", False))
        self._wms_by_name = {str(layer.name): layer for layer in self.wms_layers}
        self._tile_by_key = {(layer.name, layer.grid_name): layer for layer in self.tile_layers}

    def handle(self, request: Request) -> Response:
        """Answer ``/demo/...``."""
        path = request.path
        if path.startswith("/demo/static/"):
            return self._static(path[len("/demo/static/") :])
        if path != "/demo/":
            response = _plain("", status=301)
            response.headers["Location"] = script_url(request) + "/demo/"
            return response
        callback = request.environ.get(AUTHORIZE_KEY)
        if callback is not None:
            auth = authorize(callback, request.environ, "demo", [])
            # The demo has no per-layer rules: anything but full access is refused.
            denial = auth.denial or (None if auth.is_full else (403, "forbidden"))
            if denial is not None:
                return _plain(denial[1], status=denial[0])
        params = query_params(request)
        for key in _CAPABILITIES_PATHS:
            if key in params:
                return self._capabilities(request, key, params)
        if "wms_layer" in params:
            return self._wms_viewer(request, params)
        if "wmts_layer" in params:
            return self._tile_viewer(request, params, "wmts")
        if "tms_layer" in params:
            return self._tile_viewer(request, params, "tms")
        return _html(self._index())

    # static files ----------------------------------------------------------
    def _static(self, name: str) -> Response:
        if not name or ".." in name.split("/") or name.startswith("/"):
            return _plain("file not found", status=404)
        resource = resources.files(STATIC_PACKAGE).joinpath("static", *name.split("/"))
        if not resource.is_file():
            return _plain("file not found", status=404)
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        mimetype = STATIC_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "text/plain"
        response = Response(resource.read_bytes())
        # like MapProxy: the bare type, no charset parameter
        response.headers["Content-Type"] = mimetype
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    # overview --------------------------------------------------------------
    def _index(self) -> str:
        parts = [f"<h2>About</h2><p>MapProxy version {html.escape(__version__)}</p>"]
        if "ogcapi" in self.services:
            parts.append(_ogcapi_links())
        if "wms" in self.services:
            parts.append(
                _capabilities_links(
                    "WMS", "wms_capabilities", "../service?REQUEST=GetCapabilities&SERVICE=WMS"
                )
            )
            rows = []
            for layer in self.wms_layers:
                options = "".join(
                    f'<option value="{html.escape(code)}">{html.escape(code)}</option>'
                    for code in self.wms_srs
                )
                formats = " ".join(
                    f'<button name="format" value="{html.escape(fmt)}">'
                    f"{html.escape(fmt.split('/')[-1])}</button>"
                    for fmt in self.wms_formats
                    if fmt.split(";")[0] in ("image/png", "image/jpeg", "image/gif")
                )
                rows.append(
                    f"<tr><td>{html.escape(str(layer.name))}</td><td>{html.escape(layer.title)}"
                    f'</td><td><form action="" method="get">'
                    f'<input type="hidden" name="wms_layer" value="{html.escape(str(layer.name))}">'
                    f'<select name="srs">{options}</select> {formats}</form></td></tr>'
                )
            parts.append(_table(["Layer", "Title", "View in SRS / format"], rows))
        if "wmts" in self.services or "wmts_kvp" in self.services:
            if "wmts_kvp" in self.services:
                parts.append(
                    _capabilities_links(
                        "WMTS (KVP)",
                        "wmts_capabilities_kvp",
                        "../service?REQUEST=GetCapabilities&SERVICE=WMTS",
                    )
                )
            if "wmts" in self.services:
                parts.append(
                    _capabilities_links(
                        "WMTS (RESTful)", "wmts_capabilities", "../wmts/1.0.0/WMTSCapabilities.xml"
                    )
                )
            rows = [
                self._tile_row("wmts_layer", layer)
                for layer in self.tile_layers
                if layer.grid.supports_nw_addressing()
            ]
            parts.append(_table(["Layer", "Grid", "SRS", "Format"], rows))
        if "tms" in self.services:
            parts.append(_capabilities_links("TMS", "tms_capabilities", "../tms/1.0.0/"))
            rows = [self._tile_row("tms_layer", layer) for layer in self.tile_layers]
            parts.append(_table(["Layer", "Grid", "SRS", "Format"], rows))
        kml = self.services.get("kml")
        if kml is not None:
            parts.append(_kml_section(kml.tile_set_paths()))
        return _page("MapProxy Demo", "".join(parts))

    def _tile_row(self, param: str, layer: TileLayer) -> str:
        query = urlencode({param: layer.name, "grid": layer.grid_name, "format": layer.extension})
        link = f'<a href="?{html.escape(query)}">'
        return (
            f"<tr><td>{link}{html.escape(layer.name)}</a></td>"
            f"<td>{link}{html.escape(layer.grid_name)}</a></td>"
            f"<td>{html.escape(layer.grid.srs.code)}</td><td>{html.escape(layer.extension)}</td></tr>"
        )

    # capabilities ----------------------------------------------------------
    def _capabilities(self, request: Request, key: str, params: dict[str, str]) -> Response:
        path, query = _CAPABILITIES_PATHS[key]
        if key == "tms_capabilities" and params.get("layer"):
            path = f"/tms/1.0.0/{quote(params['layer'])}/{quote(params.get('srs', ''))}"
        segment = path.strip("/").split("/")[0]
        handler_key = {"service": "ows", "wmts": "wmts", "tms": "tms"}[segment]
        body = self._internal_get(request, handler_key, path, query)
        external = f"{script_url(request)}{path}{'?' + query if query else ''}"
        content = (
            f'<p><a href="{html.escape(external)}">{html.escape(external)}</a></p>'
            f'<pre class="code">{html.escape(body)}</pre>'
        )
        return _html(_page("Capabilities", content))

    def _internal_get(self, request: Request, handler_key: str, path: str, query: str) -> str:
        from mapproxy.service.ows import OWSDispatcher

        if handler_key == "ows":
            handler: Any = OWSDispatcher(
                wms=self.services.get("wms"), wmts_kvp=self.services.get("wmts_kvp")
            )
        else:
            handler = self.services.get(handler_key)
        if handler is None:
            return "service not enabled"
        environ = EnvironBuilder(
            path=path,
            query_string=query,
            base_url=script_url(request),
        ).get_environ()
        for header in (
            "HTTP_X_SCRIPT_NAME",
            "HTTP_X_FORWARDED_HOST",
            "HTTP_X_FORWARDED_PROTO",
            "HTTP_FORWARDED",
            "HTTP_HOST",
        ):
            if header in request.environ:
                environ[header] = request.environ[header]
        environ["SCRIPT_NAME"] = request.environ.get("SCRIPT_NAME", "")
        if AUTHORIZE_KEY in request.environ:
            # Filter the viewed capabilities for the same user: pass on what the callback
            # may look at (cookies, REMOTE_USER, middleware keys) unless set here.
            for key, value in request.environ.items():
                environ.setdefault(key, value)
        response = handler.handle(Request(environ))
        if response.status_code >= 400:
            log.warning("demo capabilities request %s?%s answered %s", path, query, response.status)
        return str(response.get_data(as_text=True))

    # viewers ---------------------------------------------------------------
    def _wms_viewer(self, request: Request, params: dict[str, str]) -> Response:
        name = params["wms_layer"]
        layer = self._wms_by_name.get(name)
        if layer is None:
            return _html(_page("Unknown layer", f"<p>unknown layer {html.escape(name)}</p>"))
        srs_code = params.get("srs", self.wms_srs[0])
        if srs_code not in self.wms_srs:
            srs_code = self.wms_srs[0]
        fmt = params.get("format", self.wms_formats[0])
        srs = get_srs(srs_code)
        extent = _display_extent(layer.extent, srs)
        config = {
            "kind": "wms",
            "url": "../service",
            "layer": name,
            "format": fmt,
            "srs": srs_code,
            "extent": list(extent),
            "transparent": layer.transparent,
            "units": "degrees" if srs.is_latlong else "m",
            "version": "1.1.1",
            "background": self.background_url if srs_code in ("EPSG:3857", "EPSG:900913") else None,
        }
        title = f"WMS {name} {srs_code}"
        return _html(_viewer_page(title, layer.title, config))

    def _tile_viewer(self, request: Request, params: dict[str, str], kind: str) -> Response:
        name = params[f"{kind}_layer"]
        grid_name = params.get("grid") or params.get("srs", "")
        layer = self._tile_by_key.get((name, grid_name))
        if layer is None:
            candidates = [tl for tl in self.tile_layers if tl.name == name]
            if grid_name:
                candidates = [
                    tl for tl in candidates if tl.grid.srs.code == grid_name
                ] or candidates
            layer = candidates[0] if candidates else None
        if layer is None:
            return _html(_page("Unknown layer", f"<p>unknown layer {html.escape(name)}</p>"))
        grid = layer.grid
        srs = grid.srs
        extent = _display_extent(layer.extent, srs)
        if kind == "wmts":
            url = (
                f"../wmts/{quote(layer.name)}/{quote(layer.grid_name)}"
                f"/{{z}}/{{x}}/{{y}}.{layer.extension}"
            )
            origin = "nw"
            level_offset = 0
        else:
            url = (
                f"../tiles/{quote(layer.name)}/{quote(self._tms_grid_part(layer))}"
                f"/{{z}}/{{x}}/{{y}}.{layer.extension}?origin=nw"
            )
            origin = "nw"
            level_offset = 0
        config = {
            "kind": "tiles",
            "url": url,
            "origin": origin,
            "level_offset": level_offset,
            "srs": srs.code,
            "units": "degrees" if srs.is_latlong else "m",
            "grid_extent": list(grid.bbox),
            "grid_origin": grid.origin,
            "grid_rows": [grid.grid_size(z)[1] for z in range(grid.levels)],
            "resolutions": list(grid.resolutions),
            "tile_size": list(grid.tile_size),
            "extent": list(extent),
            "background": self.background_url if srs.code in ("EPSG:3857", "EPSG:900913") else None,
        }
        title = f"{kind.upper()} {layer.name} {layer.grid_name}"
        return _html(_viewer_page(title, layer.title, config))

    def _tms_grid_part(self, layer: TileLayer) -> str:
        if self.tms_use_grid_names:
            return layer.grid_name
        return layer.grid.srs.srs_code_no_colon


def _display_extent(extent: MapExtent, srs: SRS) -> BBox:
    """``extent`` in ``srs``, limited to the SRS's area of use so the map fits sensibly."""
    wgs84 = get_srs("EPSG:4326")
    lonlat = srs.clip_to_valid_area(extent.bbox_for(wgs84))
    minx, miny, maxx, maxy = wgs84.transform_bbox_to(srs, lonlat)
    if srs.is_latlong:
        miny, maxy = max(miny, -90.0), min(maxy, 90.0)
    return (minx, miny, maxx, maxy)


def _plain(body: str, status: int) -> Response:
    """A ``text/plain`` response without charset (as MapProxy sends 301/404 here)."""
    response = Response(body, status=status)
    response.headers["Content-Type"] = "text/plain"
    return response


def _html(body: str) -> Response:
    response = Response(body)
    response.headers["Content-Type"] = "text/html"
    return response


def _table(headers: Sequence[str], rows: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(rows) or f'<tr><td colspan="{len(headers)}">no layers</td></tr>'
    return f'<table class="layers"><tr>{head}</tr>{body}</table>'


def _capabilities_links(title: str, key: str, download: str) -> str:
    return (
        f'<h2>{html.escape(title)}</h2><p class="capabilities">Capabilities: '
        f'<a href="{html.escape(download)}">download XML</a> · '
        f'<a href="?{key}">view</a> · <a href="?{key}&amp;type=external">view (external)</a></p>'
    )


def _ogcapi_links() -> str:
    """Landing page, API definition and collections of ``/ogcapi`` as HTML and JSON."""
    items = "".join(
        f'<li>{label}: <a href="../ogcapi{path}">HTML</a> · '
        f'<a href="../ogcapi{path}?f=json">JSON</a></li>'
        for label, path in (("Landing page", ""), ("API", "/api"), ("Collections", "/collections"))
    )
    return f'<h2>OGC API</h2><ul class="capabilities">{items}</ul>'


def _kml_section(tile_sets: Sequence[tuple[TileLayer, str]]) -> str:
    """One KML super-overlay link (``../kml/<layer>/<grid part>``) per tile layer."""
    rows = []
    for layer, path in tile_sets:
        href = html.escape(f"../kml/{quote(path)}")
        rows.append(
            f'<tr><td><a href="{href}">{html.escape(layer.name)}</a></td>'
            f"<td>{html.escape(layer.grid_name)}</td><td>{html.escape(layer.grid.srs.code)}</td>"
            f"<td>{html.escape(layer.extension)}</td></tr>"
        )
    return "<h2>KML</h2>" + _table(["Layer", "Grid", "SRS", "Format"], rows)


def _page(title: str, content: str, head: str = "", script: str = "") -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<link rel="stylesheet" href="static/demo.css">'
        f"{head}</head><body>"
        '<header><a href="./">MapProxy demo</a></header>'
        f"<main>{content}</main>{script}</body></html>"
    )


def _viewer_page(title: str, layer_title: str, config: dict[str, Any]) -> str:
    config_json = json.dumps(config).replace("</", "<\\/")
    content = (
        f"<h2>{html.escape(title)}</h2><p>{html.escape(layer_title)}</p>"
        '<div id="map" class="map"></div>'
        '<p><button id="zoom-extent">Zoom to layer extent</button> '
        '<button id="toggle-background">Toggle background</button></p>'
        f'<p class="code">Extent: {html.escape(", ".join(str(v) for v in config["extent"]))}</p>'
    )
    head = '<link rel="stylesheet" href="static/ol/ol.css">'
    script = (
        '<script src="static/ol/ol.js"></script>'
        f"<script>window.MAPPROXY_DEMO = {config_json};</script>"
        '<script src="static/viewer.js"></script>'
    )
    return _page(title, content, head=head, script=script)
