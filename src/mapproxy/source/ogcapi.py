"""OGC API sources: maps (``/map``) and map tiles of a remote OGC API service.

The landing page, collection and tile set documents are fetched at first use (the
upstream may be down while the configuration loads) and kept for the process.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from mapproxy.errors import SourceError
from mapproxy.http.client import HTTPClient, UpstreamHTTPError
from mapproxy.image.options import format_mime_type
from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.source.wms import WMSSource, image_from_response
from mapproxy.srs import SRS, BBox, UnknownSRS, get_srs

__all__ = [
    "OGCAPIMapsSource",
    "OGCAPITilesSource",
    "bgcolor_param",
    "crs_uri",
    "srs_from_uri",
]

REL_MAP = "http://www.opengis.net/def/rel/ogc/1.0/map"
REL_TILESETS_MAP = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-map"
REL_TILING_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
_EPSG_URI = re.compile(r"/def/crs/EPSG/[^/]+/(\d+)$", re.IGNORECASE)
_CRS84_URI = re.compile(r"/def/crs/OGC/[^/]+/CRS84$", re.IGNORECASE)


def crs_uri(srs: SRS) -> str:
    """The OGC CRS URI of ``srs``; CRS:84 is sent as EPSG:4326 (as the reference does)."""
    code = "4326" if srs.code.upper() == "CRS:84" else srs.code.rsplit(":", 1)[-1]
    return f"http://www.opengis.net/def/crs/EPSG/0/{code}"


def srs_from_uri(uri: str) -> SRS | None:
    """The SRS of an OGC CRS URI (``.../EPSG/0/3857``, ``.../OGC/1.3/CRS84``); None if unknown."""
    if _CRS84_URI.search(uri):
        return get_srs("CRS:84")
    match = _EPSG_URI.search(uri)
    if match is None:
        return None
    try:
        return get_srs(f"EPSG:{match.group(1)}")
    except UnknownSRS:
        return None


def bgcolor_param(color: str) -> str:
    """``#rrggbb`` -> ``0xrrggbb`` and ``#rrggbbaa`` -> ``0xaarrggbb`` (alpha first)."""
    digits = color.strip().lstrip("#")
    if len(digits) == 8:
        digits = digits[6:8] + digits[:6]
    return "0x" + digits


def _number(value: float) -> str:
    """``1.5`` -> ``1.5``, ``100000.0`` -> ``100000``."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _is_geographic_4326(srs: SRS) -> bool:
    return srs.code.upper() in ("EPSG:4326", "CRS:84")


class _Documents:
    """Fetches and caches the JSON documents of one OGC API service."""

    def __init__(self, client: HTTPClient, landingpage_url: str, collection: str | None) -> None:
        self.client = client
        self.landingpage_url = landingpage_url.rstrip("/")
        self.collection = collection
        self.lock = threading.Lock()

    @property
    def root_url(self) -> str:
        """The collection URL, or the landing page URL without a collection."""
        if self.collection:
            return f"{self.landingpage_url}/collections/{quote(self.collection, safe='')}"
        return self.landingpage_url

    def fetch(self, url: str) -> dict[str, Any]:
        """The JSON object at ``url``; raises SourceError."""
        try:
            response = self.client.open(url)
        except UpstreamHTTPError as error:
            raise SourceError(str(error)) from None
        try:
            document = json.loads(response.body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise SourceError(f"no JSON document at {url}")
        return document


def _links(document: Mapping[str, Any], rel: str) -> list[Mapping[str, Any]]:
    rels = {rel, "[ogc-rel:" + rel.rsplit("/", 1)[-1] + "]"}
    return [
        link
        for link in document.get("links", ())
        if isinstance(link, Mapping) and link.get("rel") in rels and link.get("href")
    ]


class OGCAPIMapsSource(WMSSource):
    """Maps from ``<collection>/map`` (or the landing page's dataset map).

    The map links of the collection document are found at first use; the one of the
    query format is used (else the first). ``supported_srs`` defaults to the ``crs``
    list of the collection. ``bgcolor`` is ``#rrggbb[aa]``.
    """

    def __init__(
        self,
        client: HTTPClient,
        landingpage_url: str,
        collection: str | None = None,
        bgcolor: str | None = None,
        supported_srs: Sequence[SRS] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(client, landingpage_url, {}, supported_srs=supported_srs, **kwargs)
        self.documents = _Documents(client, landingpage_url, collection)
        self.bgcolor = bgcolor
        self.sends_transparent = self.transparent or self.transparent_color is not None
        self._configured_srs = supported_srs is not None
        self._map_links: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"OGCAPIMapsSource({self.documents.root_url!r})"

    def map_links(self) -> dict[str, str]:
        """Mime type -> map URL, fetched once."""
        if self._map_links is None:
            with self.documents.lock:
                if self._map_links is None:
                    self._map_links = self._load()
        return self._map_links

    def _load(self) -> dict[str, str]:
        url = self.documents.root_url
        document = self.documents.fetch(url)
        links = {
            format_mime_type(str(link.get("type") or "image/png")): str(link["href"])
            for link in _links(document, REL_MAP)
        }
        if not links:
            raise SourceError(f"Could not retrieve a map link in {url} response")
        if not self._configured_srs:
            found = [srs_from_uri(str(uri)) for uri in document.get("crs", ())]
            self.supported_srs = [srs for srs in found if srs is not None]
        return links

    def source_srs(self, srs: SRS) -> SRS:
        """As for WMS, with the default SRS list taken from the collection."""
        self.map_links()
        return super().source_srs(srs)

    def map_url(
        self,
        bbox: BBox,
        size: tuple[int, int],
        srs: SRS,
        format: str,
        dimensions: Mapping[str, str] | None = None,
    ) -> str:
        """The map URL for an x/y ``bbox`` in ``srs`` (EPSG:4326 bboxes are lon/lat CRS84)."""
        links = self.map_links()
        href = links.get(format_mime_type(format)) or next(iter(links.values()))
        params = [("bbox", ",".join(_number(v) for v in bbox))]
        if not _is_geographic_4326(srs):
            params.append(("bbox-crs", crs_uri(srs)))
        params += [
            ("crs", crs_uri(srs)),
            ("width", str(int(size[0]))),
            ("height", str(int(size[1]))),
        ]
        if self.sends_transparent:
            params.append(("transparent", "true"))
        if self.bgcolor:
            params.append(("bgcolor", bgcolor_param(self.bgcolor)))
        query = "&".join(f"{name}={quote(value, safe=',')}" for name, value in params)
        return f"{href}{'&' if '?' in href else '?'}{query}"

    def source_format(self, format: str) -> str:
        """The query format if the upstream offers it, else its first map format."""
        links = self.map_links()
        wanted = format_mime_type(format)
        return wanted if wanted in links else next(iter(links))


class _TileMatrix:
    """One tile matrix of a tile matrix set, reduced to what tile addressing needs."""

    def __init__(self, entry: Mapping[str, Any], swap_axes: bool) -> None:
        self.id = str(entry["id"])
        self.cell_size = float(entry["cellSize"])
        origin = [float(v) for v in entry["pointOfOrigin"]]
        self.origin = (origin[1], origin[0]) if swap_axes else (origin[0], origin[1])
        self.is_top_left = str(entry.get("cornerOfOrigin", "topLeft")) == "topLeft"
        self.tile_size = (int(entry["tileWidth"]), int(entry["tileHeight"]))


def _tile_matrices(document: Mapping[str, Any], srs: SRS) -> list[_TileMatrix]:
    uri = str(document.get("crs", ""))
    if isinstance(document.get("crs"), Mapping):
        uri = str(document["crs"].get("uri", ""))
    swap = srs.is_axis_order_ne and not _CRS84_URI.search(uri)
    try:
        return [_TileMatrix(entry, swap) for entry in document.get("tileMatrices", ())]
    except (KeyError, TypeError, ValueError, IndexError):
        return []


class _TileSet:
    """A chosen tile set: its tile matrices and item URL templates by mime type."""

    def __init__(self, matrices: list[_TileMatrix], templates: dict[str, str]) -> None:
        self.matrices = matrices
        self.templates = templates

    def matrix_for(self, query: MapQuery) -> tuple[_TileMatrix, int, int] | None:
        """The matrix, column and row of the tile that ``query`` is exactly; None if none."""
        res = (query.bbox[2] - query.bbox[0]) / query.size[0]
        minx, miny, _maxx, maxy = query.bbox
        for matrix in self.matrices:
            if matrix.tile_size != tuple(query.size) or abs(matrix.cell_size - res) > res * 1e-6:
                continue
            col = (minx - matrix.origin[0]) / (matrix.tile_size[0] * res)
            if matrix.is_top_left:
                row = (matrix.origin[1] - maxy) / (matrix.tile_size[1] * res)
            else:
                row = (miny - matrix.origin[1]) / (matrix.tile_size[1] * res)
            if abs(col - round(col)) < 1e-3 and abs(row - round(row)) < 1e-3:
                return matrix, round(col), round(row)
        return None


class OGCAPITilesSource:
    """Map tiles of an OGC API service; answers only queries that are exactly one tile.

    At first use (per SRS) the tile sets of the collection (or the landing page) are
    listed and the first one in the query's SRS (or the one named
    ``tile_matrix_set_id``) with a tile matrix of the query's resolution and tile
    size is used; the tile set documents are then kept.
    """

    supports_meta_tiles = False

    def __init__(
        self,
        client: HTTPClient,
        landingpage_url: str,
        collection: str | None = None,
        tile_matrix_set_id: str | None = None,
        transparent: bool = False,
        extent: MapExtent | None = None,
        request_limiter: contextlib.AbstractContextManager[object] | None = None,
    ) -> None:
        self.client = client
        self.documents = _Documents(client, landingpage_url, collection)
        self.tile_matrix_set_id = tile_matrix_set_id
        self.transparent = transparent
        self.extent = extent
        self.request_limiter = request_limiter
        self._tilesets: dict[str, _TileSet] = {}

    def __repr__(self) -> str:
        return f"OGCAPITilesSource({self.documents.root_url!r})"

    def tile_url(self, query: MapQuery) -> str:
        """The upstream URL of the tile ``query`` covers; raises SourceError."""
        tileset = self._tileset(query)
        found = tileset.matrix_for(query)
        if found is None:
            raise SourceError(f"invalid tile request: {_describe(query)}")
        matrix, col, row = found
        template = tileset.templates.get(format_mime_type(query.format))
        template = template or next(iter(tileset.templates.values()))
        values = {"tileMatrix": matrix.id, "tileRow": str(row), "tileCol": str(col)}
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)

    def get_map(self, query: MapQuery) -> ImageResult:
        """Fetch the tile ``query`` covers; raises SourceError."""
        url = self.tile_url(query)
        with self.request_limiter or contextlib.nullcontext():
            response = self.client.open(url)
        result = image_from_response(
            response, self.client.hide_error_details, source_name="OGC API tiles source"
        )
        result.transparent = self.transparent
        return result

    def _tileset(self, query: MapQuery) -> _TileSet:
        key = query.srs.code
        with self.documents.lock:
            if key not in self._tilesets:
                self._tilesets[key] = self._find_tileset(query)
            return self._tilesets[key]

    def _find_tileset(self, query: MapQuery) -> _TileSet:
        docs = self.documents
        root = docs.fetch(docs.root_url)
        tilesets_links = _json_links(_links(root, REL_TILESETS_MAP))
        if not tilesets_links:
            raise SourceError(f"no map tile sets link in {docs.root_url}")
        tilesets = docs.fetch(str(tilesets_links[0]["href"])).get("tilesets", ())
        for tileset in tilesets if isinstance(tilesets, list) else ():
            if not isinstance(tileset, Mapping) or not self._may_match(tileset, query.srs):
                continue
            scheme_links = _json_links(_links(tileset, REL_TILING_SCHEME))
            if not scheme_links:
                continue
            matrices = _tile_matrices(docs.fetch(str(scheme_links[0]["href"])), query.srs)
            if _TileSet(matrices, {}).matrix_for(query) is None:
                continue
            self_links = [
                link for link in _json_links(tileset.get("links", ())) if link.get("rel") == "self"
            ]
            described = docs.fetch(str(self_links[0]["href"])) if self_links else tileset
            templates = {
                format_mime_type(str(link.get("type") or "image/png")): str(link["href"])
                for link in described.get("links", ())
                if isinstance(link, Mapping) and link.get("rel") == "item" and link.get("href")
            }
            if templates:
                return _TileSet(matrices, templates)
        raise SourceError(f"no tile set matching {_describe(query)} in {docs.root_url}")

    def _may_match(self, tileset: Mapping[str, Any], srs: SRS) -> bool:
        if self.tile_matrix_set_id:
            names = {str(tileset.get("tileMatrixSetId", ""))}
            names.update(
                str(link["href"]).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
                for link in _links(tileset, REL_TILING_SCHEME)
            )
            names.add(str(tileset.get("tileMatrixSetURI", "")).rstrip("/").rsplit("/", 1)[-1])
            return self.tile_matrix_set_id in names
        crs = tileset.get("crs")
        if not isinstance(crs, str):
            return True
        found = srs_from_uri(crs)
        return found is not None and found.is_same_as(srs)


def _describe(query: MapQuery) -> str:
    bbox = ",".join(f"{v:.6f}" for v in query.bbox)
    return f"bbox {bbox} size {query.size[0]}x{query.size[1]} srs {query.srs.code}"


def _json_links(links: Any) -> list[Mapping[str, Any]]:
    """The links of JSON type first (type-less links count as JSON), others dropped."""
    return [
        link
        for link in links
        if isinstance(link, Mapping)
        and str(link.get("type") or "application/json").split(";")[0].strip()
        in ("application/json", "application/vnd.oai.openapi+json")
    ]
