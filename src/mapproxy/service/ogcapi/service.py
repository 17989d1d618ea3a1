"""OGC API (Common, Maps, Tiles) at ``/ogcapi``: JSON/HTML documents, maps and map tiles."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from werkzeug.wrappers import Request, Response

from mapproxy import __version__
from mapproxy.errors import MapProxyError
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image.options import ImageOptions
from mapproxy.layer.base import TileLayer, WMSLayer
from mapproxy.layer.limit import CLIP_ALL, Clip, clip_for
from mapproxy.service.authorize import (
    AUTHORIZE_KEY,
    Authorization,
    authorize,
    clipped_tile_response,
)
from mapproxy.service.base import no_cache, script_url, tile_response
from mapproxy.service.ogcapi import documents as docs
from mapproxy.service.ogcapi.documents import HTML, JSON, OGC_REL, TileMatrixSet, link
from mapproxy.service.ogcapi.html import html_page
from mapproxy.service.wms.render import LayerAccess, LayerRenderer
from mapproxy.source.base import MapQuery
from mapproxy.srs import SRS, BBox, bbox_intersection, get_srs, transform_errors

log = logging.getLogger("mapproxy.service.ogcapi")

_DEFAULT_MAP_SIZE = 1024
_MAX_INDEX_DIGITS = 18
_MAP_PARAMS = frozenset(
    {"f", "bbox", "bbox-crs", "crs", "width", "height", "transparent", "bgcolor"}
)
_DOC_PARAMS = frozenset({"f"})


class OGCAPIError(MapProxyError):
    """A request failed; rendered as the JSON problem document."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail


def _invalid(detail: str) -> OGCAPIError:
    return OGCAPIError(400, "Invalid Parameter", detail)


@dataclass(frozen=True, slots=True)
class Collection:
    """A named WMS layer published as a map collection."""

    id: str
    title: str
    layer_names: tuple[str, ...]
    storage_srs: SRS
    wgs84_bbox: BBox
    storage_bbox: BBox


@dataclass(frozen=True, slots=True)
class OGCAPIOptions:
    """The ``services.ogcapi`` options the service needs at request time."""

    md: Mapping[str, Any]
    map_srs: Sequence[str] = ("EPSG:4326", "EPSG:3857")
    image_formats: Mapping[str, ImageOptions] | None = None
    max_output_pixels: int = 4000 * 4000
    on_source_errors: str = "notify"
    attribution: str | None = None
    default_dataset_layers: Sequence[str] = ()
    concurrent_layer_renderer: int = 1
    max_tile_age_seconds: int = 259200


class OGCAPIService:
    """Answers every request below ``/ogcapi``."""

    def __init__(
        self,
        root_layer: WMSLayer,
        tile_layers: Sequence[TileLayer],
        tile_matrix_sets: Sequence[TileMatrixSet],
        options: OGCAPIOptions,
    ) -> None:
        self.options = options
        self.renderer = LayerRenderer(
            root_layer, options.on_source_errors, options.concurrent_layer_renderer
        )
        self.collections = {
            node.name: _collection(node) for node in root_layer.iter_named() if node.name
        }
        self.tile_matrix_sets = {tms.id: tms for tms in sorted(tile_matrix_sets, key=_tms_key)}
        self.tile_layers = {(layer.name, layer.grid_name): layer for layer in tile_layers}
        self.image_options = dict(options.image_formats or {})
        if not self.image_options:
            self.image_options = {
                "png": ImageOptions(format="image/png"),
                "jpeg": ImageOptions(format="image/jpeg"),
            }
        self.crs_list = [docs.CRS84] + [
            docs.crs_uri(get_srs(code)) for code in options.map_srs if code.upper() != "CRS:84"
        ]
        dataset = [name for name in options.default_dataset_layers if name in self.collections]
        self.dataset: Collection | None = None
        if dataset:
            first = self.collections[dataset[0]]
            self.dataset = replace(first, id="", title="Whole dataset", layer_names=tuple(dataset))

    # dispatch -------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one ``/ogcapi`` request."""
        path = request.path
        parts = [part for part in path.split("/")[2:] if part]
        try:
            return self._dispatch(request, parts)
        except OGCAPIError as error:
            return error_response(error)
        except _NotFound:
            return _plain_not_found()

    def _dispatch(self, request: Request, parts: list[str]) -> Response:
        base = script_url(request) + "/ogcapi"
        count = len(parts)
        head = parts[0] if parts else ""
        if count == 0:
            return self._document(request, base, self._landing(base), "Home")
        if head == "conformance" and count == 1:
            return self._document(request, base, {"conformsTo": docs.CONFORMANCE}, "Conformance")
        if head == "api" and count == 1:
            return self._api(request, base)
        if head == "collections":
            if count == 1:
                listed = self._listed_collections(request)
                return self._document(request, base, self._collections(base, listed), "Collections")
            collection = self.collections.get(parts[1])
            if collection is None:
                self._check_params(request, _MAP_PARAMS)
                raise OGCAPIError(404, "Not Found", "Collection not found")
            href = f"{base}/collections/{collection.id}"
            if count == 2:
                limited = self._authorize_listing(request, collection)
                doc = self._collection_document(base, limited)
                return self._document(request, base, doc, collection.title)
            return self._map_routes(request, base, collection, href, collection.id, parts[2:])
        if head in ("map", "map.png", "map.jpg"):
            if self.dataset is None:
                raise _NotFound()
            return self._map_routes(request, base, self.dataset, base, "the whole dataset", parts)
        if head == "tileMatrixSets":
            if count == 1:
                return self._document(request, base, self._tile_matrix_sets(base), "Tiling schemes")
            if count == 2:
                tms = self._tms(parts[1])
                doc = docs.tile_matrix_set_document(tms)
                return self._document(request, base, doc, tms.id)
        raise _NotFound()

    def _map_routes(
        self,
        request: Request,
        base: str,
        collection: Collection,
        href: str,
        subject: str,
        parts: list[str],
    ) -> Response:
        """``map[.ext]``, ``map/tiles[/tms[/z/row/col[.ext]]]`` below ``href``."""
        head, count = parts[0], len(parts)
        if count == 1 and head in ("map", "map.png", "map.jpg"):
            extension = head.partition(".")[2] or None
            return self._map(request, collection, extension)
        if head != "map" or count < 2 or parts[1] != "tiles":
            raise _NotFound()
        if count <= 3:
            self._authorize_listing(request, collection)
        tiles_href = f"{href}/map/tiles"
        label = "Whole dataset" if not collection.id else collection.id
        if count == 2:
            doc = self._tilesets(base, tiles_href, label, subject)
            return self._document(request, base, doc, f"Map tilesets for {label}")
        tms = self._tms(parts[2])
        if count == 3:
            formats = list(self.image_options)
            doc = docs.tileset_document(base, tms, tiles_href, label, formats, subject)
            doc["links"].extend(self._tileset_extra_links(base, tms, collection, label))
            response = self._document(request, base, doc, doc["title"])
            first = next(iter(self.image_options))
            ext, mimetype, _ = docs.IMAGE_FORMATS[first]
            path = tiles_href[len(script_url(request)) :]
            response.headers["Link-Template"] = (
                f"<{path}/{tms.id}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}.{ext}>; "
                f'rel="item"; type="{mimetype}"'
            )
            return response
        if count == 6:
            return self._tile(request, collection, tms, parts[3], parts[4], parts[5])
        raise _NotFound()

    def _callback_auth(
        self,
        request: Request,
        service: str,
        names: Sequence[str],
        query_extent: tuple[str, BBox] | None,
    ) -> Authorization | None:
        """The callback's answer for ``names`` (None without a callback); raises on denial."""
        callback = request.environ.get(AUTHORIZE_KEY)
        if callback is None:
            return None
        auth = authorize(callback, request.environ, service, names, query_extent)
        denial = auth.denial
        if denial is not None:
            raise _denied(denial)
        return auth

    def _listed_collections(self, request: Request) -> list[Collection]:
        """Collections the ``/collections`` list shows: those with a permitted layer.

        The callback sees service ``ogcapi.collections`` and every collection's layers;
        a collection is listed when one of its layers permits ``map`` or ``tile``.
        """
        collections = list(self.collections.values())
        leaves = {c.id: self.renderer.leaf_names(c.layer_names) for c in collections}
        names = list(dict.fromkeys(name for group in leaves.values() for name in group))
        auth = self._callback_auth(request, "ogcapi.collections", names, None)
        if auth is None or auth.is_full:
            return collections
        listed = []
        for collection in collections:
            if _any_permitted(auth, leaves[collection.id]):
                limited = _limited_collection(collection, auth)
                if limited is not None:
                    listed.append(limited)
        return listed

    def _authorize_listing(self, request: Request, collection: Collection) -> Collection:
        """Refuse a collection's documents (403) unless one of its layers is permitted.

        Returns the collection with its extents cut to the answer's ``limited_to``
        (403 as well when they do not meet, as the list leaves it out then).
        """
        names = self.renderer.leaf_names(collection.layer_names)
        auth = self._callback_auth(request, "ogcapi.collections", names, None)
        if auth is None or auth.is_full:
            return collection
        limited = _limited_collection(collection, auth) if _any_permitted(auth, names) else None
        if limited is None:
            raise _denied((403, "forbidden"))
        return limited

    def _access(
        self,
        request: Request,
        collection: Collection,
        service: str,
        feature: str,
        query_extent: tuple[str, BBox],
    ) -> LayerAccess | None:
        """What a map or tile of ``collection`` may draw (None: everything).

        Like WMS GetMap: a requested layer that is not permitted refuses the request
        (403), unpermitted sub-layers of a group are left out. Maps are clipped to the
        layer's and the request's ``limited_to``; tiles to the layer's own if it has one,
        else the request's (as TMS/WMTS).
        """
        names = self.renderer.leaf_names(collection.layer_names)
        auth = self._callback_auth(request, service, names, query_extent)
        if auth is None or auth.is_full:
            return None
        permitted = frozenset(name for name in names if auth.permits(name, feature))
        if not permitted or any(
            name in names and name not in permitted for name in collection.layer_names
        ):
            raise _denied((403, "forbidden"))
        limits: dict[str, tuple[Any, ...]] = {}
        for name in permitted:
            if feature == "tile":
                area = auth.tile_limit(name)
                areas: tuple[Any, ...] = () if area is None else (area,)
            else:
                areas = auth.map_limits(name)
            if areas:
                limits[name] = areas
        return LayerAccess(permitted, limits)

    # documents ------------------------------------------------------------------

    def _landing(self, base: str) -> dict[str, Any]:
        landing = "landing page for this OGC (geospatial) API Service providing links to the API "
        landing += "definition, the conformance declaration and information about the data "
        landing += "collections offered at this endpoint."
        conformance = (
            "conformance declaration for this server listing the requirement classes "
            "implemented by this server"
        )
        data = "list of all data collections served from this endpoint"
        links = [
            link("self", JSON, f"The JSON representation of the {landing}", f"{base}?f=json"),
            link("alternate", HTML, f"The HTML representation of the {landing}", f"{base}?f=html"),
            link("conformance", JSON, f"The JSON representation of the {conformance}",
                 f"{base}/conformance?f=json"),
            link(OGC_REL + "conformance", JSON, f"The JSON representation of the {conformance}",
                 f"{base}/conformance?f=json"),
            link(OGC_REL + "conformance", HTML, f"The HTML representation of the {conformance}",
                 f"{base}/conformance?f=html"),
            link("service-desc", docs.OPENAPI,
                 "The JSON OpenAPI 3.0 document that describes the API offered at this endpoint",
                 f"{base}/api?f=json"),
            link("service-doc", HTML, "The HTML documentation of the API offered at this endpoint",
                 f"{base}/api?f=html"),
            link("data", JSON, f"The JSON representation of the {data}",
                 f"{base}/collections?f=json"),
            link("data", HTML, f"The HTML representation of the {data}",
                 f"{base}/collections?f=html"),
            link(OGC_REL + "data", JSON, f"The JSON representation of the {data}",
                 f"{base}/collections?f=json"),
            link(OGC_REL + "data", HTML, f"The HTML representation of the {data}",
                 f"{base}/collections?f=html"),
        ]  # fmt: skip
        if self.dataset is not None:
            for name in self.image_options:
                ext, mimetype, label = docs.IMAGE_FORMATS[name]
                links.append(
                    link(OGC_REL + "map", mimetype,
                         f"Default map of the whole dataset (as {label})", f"{base}/map.{ext}")
                )  # fmt: skip
            links.append(
                link(OGC_REL + "tilesets-map", JSON,
                     "Map tilesets available for the whole dataset (as JSON)",
                     f"{base}/map/tiles?f=json")
            )  # fmt: skip
        links.append(
            link(OGC_REL + "tiling-schemes", JSON, "The list of supported tiling schemes (as JSON)",
                 f"{base}/tileMatrixSets?f=json")
        )  # fmt: skip
        links.append(
            link(OGC_REL + "tiling-schemes", HTML, "The list of supported tiling schemes (as HTML)",
                 f"{base}/tileMatrixSets?f=html")
        )  # fmt: skip
        return {"links": links}

    def _collections(self, base: str, collections: Sequence[Collection]) -> dict[str, Any]:
        data = "list of all data collections served from this endpoint"
        return {
            "collections": [self._collection_document(base, c) for c in collections],
            "links": docs.json_html_links(
                f"{base}/collections",
                f"The JSON representation of the {data}",
                f"The HTML representation of the {data}",
            ),
        }

    def _collection_document(self, base: str, collection: Collection) -> dict[str, Any]:
        href = f"{base}/collections/{collection.id}"
        spatial: dict[str, Any] = {"bbox": [list(collection.wgs84_bbox)]}
        storage_crs = docs.crs_uri(collection.storage_srs)
        if storage_crs != docs.CRS84:
            spatial["storageCrsBbox"] = [list(collection.storage_bbox)]
        links = docs.json_html_links(
            href,
            "The JSON representation of this data collection",
            "The HTML representation of this data collection",
        )
        for name in self.image_options:
            ext, mimetype, label = docs.IMAGE_FORMATS[name]
            links.append(
                link(OGC_REL + "map", mimetype, f"Default map (as {label})", f"{href}/map.{ext}")
            )
        for mimetype, label, f in ((JSON, "JSON", "json"), (HTML, "HTML", "html")):
            links.append(
                link(OGC_REL + "tilesets-map", mimetype,
                     f"Map tilesets available for this collection (as {label})",
                     f"{href}/map/tiles?f={f}")
            )  # fmt: skip
        document: dict[str, Any] = {
            "dataType": "map",
            "id": collection.id,
            "title": collection.title,
            "extent": {"spatial": spatial},
            "crs": self.crs_list,
            "storageCrs": storage_crs,
            "links": links,
        }
        if self.options.attribution:
            document["attribution"] = self.options.attribution
        return document

    def _tile_matrix_sets(self, base: str) -> dict[str, Any]:
        entries = []
        for tms in self.tile_matrix_sets.values():
            what = f"the {tms.id} tiling scheme definition"
            entry: dict[str, Any] = {
                "id": tms.id,
                "title": tms.id,
                "links": docs.json_html_links(
                    f"{base}/tileMatrixSets/{tms.id}",
                    f"The JSON representation of {what}",
                    f"The HTML representation of {what}",
                ),
            }
            if tms.is_web_mercator_quad:
                entry["uri"] = docs.WEB_MERCATOR_QUAD_URI
            entries.append(entry)
        return {"tileMatrixSets": entries}

    def _tilesets(self, base: str, tiles_href: str, label: str, subject: str) -> dict[str, Any]:
        what = f"available map tilesets for {subject}"
        formats = list(self.image_options)
        return {
            "links": docs.json_html_links(
                tiles_href,
                f"The JSON representation of the {what} (as JSON)",
                f"The HTML representation of the {what} (as HTML)",
            ),
            "tilesets": [
                docs.tileset_document(base, tms, tiles_href, label, formats, subject)
                for tms in self.tile_matrix_sets.values()
            ],
        }

    def _tileset_extra_links(
        self, base: str, tms: TileMatrixSet, collection: Collection, label: str
    ) -> list[dict[str, Any]]:
        scheme = f"{base}/tileMatrixSets/{tms.id}"
        links = [
            link(OGC_REL + "tiling-scheme", JSON, f"{tms.id} definition (as JSON)",
                 f"{scheme}?f=json"),
            link(OGC_REL + "tiling-scheme", HTML, f"{tms.id} definition (as HTML)",
                 f"{scheme}?f=html"),
        ]  # fmt: skip
        if collection.id:
            href = f"{base}/collections/{collection.id}"
            links.append(link(OGC_REL + "geodata", JSON, f"{label} collection (as JSON)",
                              f"{href}?f=json"))  # fmt: skip
            links.append(link(OGC_REL + "geodata", HTML, f"{label} collection (as HTML)",
                              f"{href}?f=html"))  # fmt: skip
        return links

    def _api(self, request: Request, base: str) -> Response:
        document = docs.openapi_document(
            base,
            self.options.md,
            __version__,
            self.options.max_output_pixels,
            self.dataset is not None,
        )
        if self._wants_html(request):
            return self._html(base, document, "API definition")
        return _json_response(document, docs.OPENAPI)

    def _document(self, request: Request, base: str, document: Any, title: str) -> Response:
        if self._wants_html(request):
            return self._html(base, document, title)
        return _json_response(document, JSON)

    def _html(self, base: str, document: Any, title: str) -> Response:
        response = Response(html_page(title, base, document))
        response.headers["Content-Type"] = "text/html"
        return response

    def _wants_html(self, request: Request) -> bool:
        """True for ``f=html`` or an Accept header preferring HTML; raises for bad ``f``."""
        params = self._check_params(request, _DOC_PARAMS)
        f = params.get("f")
        if f is not None:
            if f.lower() in ("json", "application/json"):
                return False
            if f.lower() in ("html", "text/html"):
                return True
            raise _invalid("Invalid value for f query parameter")
        accept = request.accept_mimetypes
        if not accept.provided:
            return False
        best = accept.best_match([JSON, HTML])
        return best == HTML and accept[HTML] > accept[JSON]

    def _check_params(self, request: Request, allowed: frozenset[str]) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in request.args.items(multi=True):
            name = key.lower()
            if name not in allowed:
                raise OGCAPIError(400, "Bad Request", f"Unknown query parameter {key}")
            params.setdefault(name, value)
        return params

    def _tms(self, name: str) -> TileMatrixSet:
        tms = self.tile_matrix_sets.get(name)
        if tms is None:
            raise OGCAPIError(404, "Not Found", "TileMatrixSet not found")
        return tms

    # maps and tiles ---------------------------------------------------------------

    def _image_options(self, request: Request, params: Mapping[str, str], ext: str | None) -> str:
        """The configured format name (``png``/``jpeg``) for a map or tile request."""
        requested = params.get("f")
        if ext is not None:
            name = "jpeg" if ext in ("jpg", "jpeg") else ext
        elif requested is not None:
            lowered = requested.lower()
            name = {"jpg": "jpeg", "image/png": "png", "image/jpeg": "jpeg"}.get(lowered, lowered)
            if name not in docs.IMAGE_FORMATS:
                raise _invalid("Invalid value for f query parameter")
        else:
            accept = request.accept_mimetypes
            name = next(iter(self.image_options))
            if accept.provided:
                mimetypes = [docs.IMAGE_FORMATS[n][1] for n in self.image_options]
                best = accept.best_match(mimetypes)
                if best is None:
                    header = request.headers.get("Accept", "")
                    raise OGCAPIError(406, "Not Acceptable", f"Unsupported image format {header}")
                name = "jpeg" if best == "image/jpeg" else "png"
        if name not in self.image_options:
            raise OGCAPIError(406, "Not Acceptable", f"Unsupported image format {name}")
        return name

    def _map(self, request: Request, collection: Collection, ext: str | None) -> Response:
        params = self._check_params(request, _MAP_PARAMS)
        format_name = self._image_options(request, params, ext)
        out_srs = collection.storage_srs
        if "crs" in params:
            out_srs = self._srs_param(params["crs"], "crs")
        if "bbox" in params:
            bbox_srs = self._srs_param(params.get("bbox-crs", docs.CRS84), "bbox-crs")
            bbox = _parse_bbox(params["bbox"])
            if bbox_srs != out_srs:
                try:
                    bbox = bbox_srs.transform_bbox_to(out_srs, bbox)
                except transform_errors(ValueError) as error:
                    raise _invalid(f"bbox cannot be transformed: {error}") from error
        else:
            if "bbox-crs" in params:
                raise _invalid("bbox-crs requires bbox")
            bbox = collection.storage_bbox
            if out_srs != collection.storage_srs:
                try:
                    bbox = collection.storage_srs.transform_bbox_to(out_srs, bbox)
                except transform_errors(ValueError) as error:
                    raise _invalid(f"extent cannot be transformed: {error}") from error
        if not all(math.isfinite(v) for v in bbox) or bbox[0] >= bbox[2] or bbox[1] >= bbox[3]:
            raise _invalid("bbox must have minx < maxx and miny < maxy")
        size = self._map_size(params, bbox)
        options = self._request_options(params, format_name)
        access = self._access(request, collection, "ogcapi.map", "map", (out_srs.code, bbox))
        query = MapQuery(
            bbox, size, out_srs, format=options.format, transparent=bool(options.transparent)
        )
        response = self._render(collection, query, options, access)
        if access is not None:
            no_cache(response)
        response.headers["Content-Crs"] = f"<{docs.crs_uri(out_srs)}>"
        response.headers["Content-Bbox"] = docs.bbox_header(bbox)
        return response

    def _map_size(self, params: Mapping[str, str], bbox: BBox) -> tuple[int, int]:
        width = _positive_int(params, "width")
        height = _positive_int(params, "height")
        aspect = (bbox[2] - bbox[0]) / (bbox[3] - bbox[1])
        if width is None and height is None:
            if aspect >= 1:
                width, height = _DEFAULT_MAP_SIZE, round(_DEFAULT_MAP_SIZE / aspect)
            else:
                width, height = round(_DEFAULT_MAP_SIZE * aspect), _DEFAULT_MAP_SIZE
        elif height is None:
            assert width is not None
            height = round(width / aspect)
        elif width is None:
            width = round(height * aspect)
        width, height = max(1, width), max(1, height)
        if width * height > self.options.max_output_pixels:
            raise _invalid(
                f"Requested image size {width}x{height} exceeds the maximum of "
                f"{self.options.max_output_pixels} pixels"
            )
        return width, height

    def _request_options(self, params: Mapping[str, str], format_name: str) -> ImageOptions:
        options = self.image_options[format_name]
        transparent = params.get("transparent")
        if transparent is not None:
            value = transparent.lower()
            if value not in ("true", "false"):
                raise _invalid("transparent must be true or false")
            options = replace(options, transparent=value == "true")
        bgcolor = params.get("bgcolor")
        if bgcolor is not None:
            options = replace(options, bgcolor=_parse_color(bgcolor))
        return options

    def _srs_param(self, value: str, name: str) -> SRS:
        code = docs.srs_code_from_uri(value)
        try:
            srs = get_srs(code)
        except MapProxyError as error:
            raise _invalid(f"Invalid value for {name}: {value}") from error
        if docs.crs_uri(srs) not in self.crs_list:
            raise _invalid(f"Unsupported value for {name}: {value}")
        return srs

    def _render(
        self,
        collection: Collection,
        query: MapQuery,
        options: ImageOptions,
        access: LayerAccess | None = None,
    ) -> Response:
        try:
            result = self.renderer.render(collection.layer_names, query, options, access)
        except MapProxyError as error:
            log.error("could not render %s: %s", collection.id or "dataset", error)
            raise OGCAPIError(500, "InternalError", str(error)) from error
        data = result.image.as_bytes(options)
        response = Response(data, mimetype=options.format.split(";", 1)[0].strip())
        if result.errors:
            no_cache(response)
        return response

    def _tile(
        self,
        request: Request,
        collection: Collection,
        tms: TileMatrixSet,
        level_text: str,
        row_text: str,
        col_text: str,
    ) -> Response:
        col_text, _, ext = col_text.partition(".")
        if ext and ext not in ("png", "jpg", "jpeg"):
            raise _NotFound()
        params = self._check_params(request, _DOC_PARAMS)
        format_name = self._image_options(request, params, ext or None)
        grid = tms.grid
        level = _index(level_text)
        if level is None or not 0 <= level < grid.levels:
            raise _invalid(f"Invalid zoom level. Valid range is [0,{grid.levels - 1}]")
        cols, rows = grid.grid_size(level)
        row = _index(row_text)
        if row is None or not 0 <= row < rows:
            raise _invalid(f"Invalid row number. Valid range is [0,{rows - 1}]")
        col = _index(col_text)
        if col is None or not 0 <= col < cols:
            raise _invalid(f"Invalid col number. Valid range is [0,{cols - 1}]")
        coord = TileCoord(col, row, level)
        bbox = grid.tile_bbox(coord)
        options = self.image_options[format_name]
        query_extent = (grid.srs.code, bbox)
        access = self._access(request, collection, "ogcapi.tile", "tile", query_extent)
        tile_layer = None
        if len(collection.layer_names) == 1:
            tile_layer = self.tile_layers.get((collection.layer_names[0], tms.grid.name or ""))
        if (
            access is not None
            and tile_layer is not None
            and tile_layer.name not in access.permitted
        ):
            tile_layer = None  # only some sub-layers are permitted: render those
        if tile_layer is not None and tile_layer.format.split(";")[0] == options.format:
            clip = CLIP_ALL
            if access is not None:
                clip = _tile_clip(access, tile_layer.name, bbox, grid)
                if clip.covers_nothing:
                    return clipped_tile_response(None, clip, grid.tile_size)
            try:
                tile = tile_layer.load_tile(coord)
            except MapProxyError as error:
                log.error("error while loading tile %s of %s: %s", coord, tile_layer.name, error)
                raise OGCAPIError(500, "InternalError", str(error)) from error
            if not clip.covers_all:
                response = clipped_tile_response(tile.data, clip, grid.tile_size)
            else:
                response = tile_response(
                    request, tile, options.format, self.options.max_tile_age_seconds
                )
        else:
            if access is not None and access.limits and options.format == "image/png":
                options = replace(options, transparent=True)  # hidden parts as in TMS
            query = MapQuery(
                bbox,
                grid.tile_size,
                grid.srs,
                format=options.format,
                transparent=bool(options.transparent),
            )
            response = self._render(collection, query, options, access)
            if access is not None:
                no_cache(response)
        if response.status_code == 200:
            response.headers["Content-Crs"] = f"<{tms.crs}>"
            response.headers["Content-Bbox"] = docs.bbox_header(bbox)
        return response


class _NotFound(Exception):
    """No route matches: the plain ``not found`` of the app."""


def _denied(denial: tuple[int, str]) -> OGCAPIError:
    kind = "Forbidden" if denial[0] == 403 else "Unauthorized"
    return OGCAPIError(denial[0], kind, denial[1])


def _any_permitted(auth: Authorization, names: Sequence[str]) -> bool:
    return any(auth.permits(name, "map") or auth.permits(name, "tile") for name in names)


def _limited_collection(collection: Collection, auth: Authorization) -> Collection | None:
    """``collection`` with extents cut to its limits (as WMS capabilities); None: outside.

    The areas are the collection layer's own ``limited_to`` and the request-wide one.
    """
    areas = auth.map_limits(collection.id) if collection.id else ()
    if not areas:
        return collection
    crs84 = get_srs("CRS:84")
    wgs84: BBox | None = collection.wgs84_bbox
    storage: BBox | None = collection.storage_bbox
    for area in areas:
        wgs84_area = area.bbox_in(crs84)
        wgs84 = bbox_intersection(wgs84, wgs84_area) if wgs84 and wgs84_area else None
        storage_area = area.bbox_in(collection.storage_srs)
        storage = bbox_intersection(storage, storage_area) if storage and storage_area else None
    if wgs84 is None or storage is None:
        return None
    return replace(collection, wgs84_bbox=wgs84, storage_bbox=storage)


def _tile_clip(access: LayerAccess, name: str, bbox: BBox, grid: Any) -> Clip:
    """The clip of a cached tile of layer ``name`` (already known to be permitted)."""
    areas = access.limits.get(name, ())
    if not areas:
        return CLIP_ALL
    return clip_for(areas, bbox, grid.tile_size, grid.srs)


def _tms_key(tms: TileMatrixSet) -> str:
    return tms.id


def _collection(node: WMSLayer) -> Collection:
    extent = node.extent
    storage_srs = extent.srs
    if storage_srs.code.upper() == "EPSG:4326":
        # published as CRS84; other geographic systems (EPSG:4258) keep their own URI
        storage_srs = get_srs("CRS:84")
    try:
        wgs84 = extent.bbox_for(get_srs("CRS:84"))
    except transform_errors():
        wgs84 = (-180.0, -90.0, 180.0, 90.0)
    return Collection(
        id=str(node.name),
        title=node.title,
        layer_names=(str(node.name),),
        storage_srs=storage_srs,
        wgs84_bbox=wgs84,
        storage_bbox=extent.bbox if storage_srs == extent.srs else wgs84,
    )


def _index(text: str) -> int | None:
    if not text.isdigit() or not text.isascii() or len(text) > _MAX_INDEX_DIGITS:
        return None
    return int(text)


def _positive_int(params: Mapping[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not text.isascii() or len(text) > _MAX_INDEX_DIGITS:
        if text.lstrip("-").isdigit():
            raise _invalid(f"{name} must be strictly positive")
        raise _invalid(f"{name} must be an integer")
    number = int(text)
    if number <= 0:
        raise _invalid(f"{name} must be strictly positive")
    return number


def _parse_bbox(value: str) -> BBox:
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) == 6:  # 3D bbox: drop the heights
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise _invalid("bbox must be a list of 4 or 6 numeric values")
    return (numbers[0], numbers[1], numbers[2], numbers[3])


def _parse_color(value: str) -> tuple[int, ...]:
    text = value.strip().lower()
    for prefix in ("0x", "#"):
        text = text.removeprefix(prefix)
    if len(text) not in (6, 8) or any(ch not in "0123456789abcdef" for ch in text):
        raise _invalid("bgcolor must be a hexadecimal RGB value (0xRRGGBB)")
    return tuple(int(text[i : i + 2], 16) for i in range(0, len(text), 2))


def _json_response(document: Any, content_type: str, status: int = 200) -> Response:
    response = Response(json.dumps(document, indent=2, ensure_ascii=False), status=status)
    response.headers["Content-Type"] = content_type
    return response


def error_response(error: OGCAPIError) -> Response:
    """The JSON problem document ``{title: OGCAPI, type, status, detail}``."""
    document = {
        "title": "OGCAPI",
        "type": error.kind,
        "status": error.status,
        "detail": error.detail,
    }
    return no_cache(_json_response(document, JSON, error.status))


def _plain_not_found() -> Response:
    response = Response("not found", status=404)
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    return response
