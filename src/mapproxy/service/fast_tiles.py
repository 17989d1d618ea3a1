"""Cached-tile fast path: file-cache hits answered from the raw WSGI environ.

WMTS (RESTful with the default template, and KVP GetTile), TMS and ``/tiles`` requests
for tiles already in a plain file cache are answered here without werkzeug request or
response objects, with the same status, headers and body as the general path. Anything
else (a miss, an error, an authorization or decorate callback, a layer with dimensions,
``refresh_before`` or another cache type, a URL in an unusual spelling) returns None and
the caller takes the general path, which then does all the work again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from hashlib import md5
from typing import Any
from urllib.parse import unquote_plus

from mapproxy.cache.file import FileCache
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image.verify import looks_complete
from mapproxy.layer.base import TileLayer
from mapproxy.service.authorize import AUTHORIZE_KEY
from mapproxy.service.base import not_modified
from mapproxy.service.decorate import DECORATE_IMG_KEY
from mapproxy.service.tms import TileService
from mapproxy.service.wmts.service import (
    DEFAULT_TEMPLATE,
    TILE_PARAMS,
    WMTSRestService,
    WMTSService,
)
from mapproxy.service.wmts.tile_sets import request_extension
from mapproxy.tilemanager.tile_manager import TileManager

StartResponse = Callable[..., Any]

_OK = "200 OK"
_NOT_MODIFIED = "304 NOT MODIFIED"  # werkzeug's reason phrase
# Longer indices are outside every grid; the general path answers those.
_MAX_INDEX_DIGITS = 9
_HTTP_DATES_MAX = 4096


@dataclass(frozen=True, slots=True)
class FastTileSet:
    """What answering a hit of one tile set needs, computed at load time.

    ``grid_sizes`` are indexed by published level; ``levels`` maps a published level to
    the internal one; ``flip`` converts the requested row to the grid's numbering.
    """

    tile_path: Callable[[TileCoord], str]
    extension: str
    content_type: str
    stored_mime_type: str
    grid_sizes: tuple[tuple[int, int], ...]
    levels: tuple[int, ...]
    flip: bool
    link_mtime: bool
    cache_control: str


def fast_cache(layer: TileLayer) -> tuple[FileCache, str] | None:
    """The layer's file cache and stored mime type if its hits may skip the tile manager."""
    if layer.dimensions:
        return None
    manager = layer.tile_manager
    if type(manager) is not TileManager:
        return None
    if manager.disable_storage or manager.refresh_before is not None:
        return None
    if manager.grid is not layer.grid:
        return None
    cache = manager.cache
    if type(cache) is not FileCache:
        return None
    mimetype = layer.format.split(";", 1)[0].strip()
    # Other types get a charset or Vary header from werkzeug/finish_headers.
    if not mimetype.startswith("image/"):
        return None
    return cache, manager.image_options.mime_type


def _tile_set(
    layer: TileLayer,
    levels: tuple[int, ...],
    flip: bool,
    max_age_seconds: int,
) -> FastTileSet | None:
    found = fast_cache(layer)
    if found is None:
        return None
    cache, stored_mime_type = found
    grid = layer.grid
    return FastTileSet(
        tile_path=cache.tile_path,
        extension=layer.extension,
        content_type=layer.format.split(";", 1)[0].strip(),
        stored_mime_type=stored_mime_type,
        grid_sizes=tuple(grid.grid_sizes[level] for level in levels),
        levels=levels,
        flip=flip,
        link_mtime=cache.link_mode == "symlink",
        cache_control=f"public, max-age={max_age_seconds}, s-maxage={max_age_seconds}",
    )


class TileFastPath:
    """Answers file-cache tile hits for the mounted tile services, or returns None."""

    def __init__(
        self,
        handlers: Mapping[str, Any],
        wmts_kvp: WMTSService | None,
        cors_origin: str | None,
    ) -> None:
        self.cors_origin = cors_origin
        self._wmts_rest: dict[tuple[str, str], FastTileSet] = {}
        self._wmts_kvp: dict[tuple[str, str], FastTileSet] = {}
        self._tms_sets: dict[int, FastTileSet] = {}
        self._tiles_sets: dict[int, FastTileSet] = {}
        self._tms: TileService | None = None
        self._kvp_segments: frozenset[str] = frozenset()
        self._http_dates: dict[int, str] = {}
        rest = handlers.get("wmts")
        if isinstance(rest, WMTSRestService) and rest.template == DEFAULT_TEMPLATE:
            self._wmts_rest = _wmts_sets(rest.layers.tile_sets, rest.max_tile_age_seconds)
        if wmts_kvp is not None:
            self._wmts_kvp = _wmts_sets(wmts_kvp.layers.tile_sets, wmts_kvp.max_tile_age_seconds)
            ows = handlers.get("service")
            self._kvp_segments = frozenset(
                name for name in ("service", "ows", "wms") if handlers.get(name) is ows
            )
        tms = handlers.get("tms")
        if isinstance(tms, TileService):
            self._tms = tms
            self._add_tms_sets(tms)

    def _add_tms_sets(self, tms: TileService) -> None:
        """Fast tile sets for ``/tms`` (TMS levels and rows) and ``/tiles``."""
        for tile_set in tms.tile_sets():
            layer = tile_set.layer
            flip = not tile_set.is_sw
            fast = _tile_set(layer, tile_set.tms_levels, flip, tms.max_tile_age_seconds)
            if fast is not None:
                self._tms_sets[id(tile_set)] = fast
            origin = tms.origin
            flip = origin is not None and (origin == "sw") != tile_set.is_sw
            fast = _tile_set(layer, tile_set.tile_levels, flip, tms.max_tile_age_seconds)
            if fast is not None:
                self._tiles_sets[id(tile_set)] = fast

    @property
    def is_active(self) -> bool:
        """True if any tile set can be served by the fast path."""
        return bool(self._wmts_rest or self._wmts_kvp or self._tms_sets or self._tiles_sets)

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes] | None:
        """The response for a cached tile, or None to take the general path."""
        method = environ.get("REQUEST_METHOD")
        if method != "GET" and method != "HEAD":
            return None
        if AUTHORIZE_KEY in environ or DECORATE_IMG_KEY in environ:
            return None
        path = environ.get("PATH_INFO") or ""
        if not path.isascii():
            return None
        found: tuple[FastTileSet, int, int, int] | None
        if path.startswith("/wmts/"):
            found = self._wmts_rest_tile(path)
        elif path.startswith("/tms/1.0.0/"):
            found = self._tms_tile(path[11:], self._tms_sets)
        elif path.startswith("/tiles/"):
            if environ.get("QUERY_STRING"):
                return None
            found = self._tms_tile(_strip_version(path[7:]), self._tiles_sets)
        elif path[1:] in self._kvp_segments:
            found = self._wmts_kvp_tile(environ.get("QUERY_STRING") or "")
        else:
            return None
        if found is None:
            return None
        tile_set, level, col, row = found
        return self._respond(environ, start_response, tile_set, level, col, row, method)

    # URL parsing -------------------------------------------------------------------

    def _wmts_rest_tile(self, path: str) -> tuple[FastTileSet, int, int, int] | None:
        parts = path[6:].split("/")
        if len(parts) != 5:
            return None
        layer, matrix_set, level, col, last = parts
        tile_set = self._wmts_rest.get((layer, matrix_set))
        if tile_set is None:
            return None
        row, _, extension = last.partition(".")
        if extension != tile_set.extension:
            return None
        return _indices(tile_set, level, col, row)

    def _wmts_kvp_tile(self, query: str) -> tuple[FastTileSet, int, int, int] | None:
        params = _query_params(query)
        if params is None or "styles" in params:
            return None
        if params.get("service", "").lower() != "wmts":
            return None
        if params.get("request", "").lower() != "gettile":
            return None
        for name in TILE_PARAMS:
            if name not in params:
                return None
        tile_set = self._wmts_kvp.get((params["layer"], params["tilematrixset"]))
        if tile_set is None:
            return None
        requested = request_extension(params["format"])
        if requested and requested != tile_set.extension:
            return None
        return _indices(tile_set, params["tilematrix"], params["tilecol"], params["tilerow"])

    def _tms_tile(
        self, rest: str | None, sets: Mapping[int, FastTileSet]
    ) -> tuple[FastTileSet, int, int, int] | None:
        if rest is None or self._tms is None:
            return None
        parts = rest.split("/")
        if len(parts) == 5:
            layer_part, grid_part, level, col, last = parts
        elif len(parts) == 4:
            layer_part, level, col, last = parts
            grid_part = None
        else:
            return None
        if not layer_part or grid_part == "":
            return None
        service_set = self._tms.lookup(layer_part, grid_part)
        if service_set is None:
            return None
        tile_set = sets.get(id(service_set))
        if tile_set is None:
            return None
        row, _, extension = last.partition(".")
        if extension != tile_set.extension:
            return None
        return _indices(tile_set, level, col, row)

    # response ----------------------------------------------------------------------

    def _respond(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        tile_set: FastTileSet,
        level: int,
        col: int,
        row: int,
        method: str,
    ) -> Iterable[bytes] | None:
        if tile_set.flip:
            row = tile_set.grid_sizes[level][1] - 1 - row
        path = tile_set.tile_path(TileCoord(col, row, tile_set.levels[level]))
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            stat = os.fstat(fd)
            mtime = stat.st_mtime
            data = os.read(fd, stat.st_size)
        except OSError:
            return None
        finally:
            os.close(fd)
        if tile_set.link_mtime:
            try:
                mtime = os.lstat(path).st_mtime
            except OSError:
                return None
        if not looks_complete(data, tile_set.stored_mime_type):
            return None  # the general path logs it and creates the tile again
        etag = md5((repr(mtime) + str(len(data))).encode("ascii")).hexdigest()
        if_none_match = environ.get("HTTP_IF_NONE_MATCH")
        if_modified_since = environ.get("HTTP_IF_MODIFIED_SINCE")
        if (if_none_match is not None or if_modified_since) and not_modified(
            if_none_match, if_modified_since, etag, mtime
        ):
            headers = [("ETag", etag), ("Cache-control", tile_set.cache_control)]
            if self.cors_origin:
                headers.append(("Access-control-allow-origin", self.cors_origin))
            start_response(_NOT_MODIFIED, headers)
            return []
        headers = [
            ("Content-Type", tile_set.content_type),
            ("Content-Length", str(len(data))),
            ("ETag", etag),
            ("Last-modified", self._http_date(mtime)),
            ("Cache-control", tile_set.cache_control),
        ]
        if self.cors_origin:
            headers.append(("Access-control-allow-origin", self.cors_origin))
        start_response(_OK, headers)
        return [] if method == "HEAD" else [data]

    def _http_date(self, timestamp: float) -> str:
        """``formatdate(timestamp, usegmt=True)``, memoized per second."""
        second = int(timestamp)
        dates = self._http_dates
        text = dates.get(second)
        if text is None:
            if len(dates) >= _HTTP_DATES_MAX:
                dates.clear()
            text = dates[second] = formatdate(timestamp, usegmt=True)
        return text


def _wmts_sets(tile_sets: Mapping[tuple[str, str], Any], max_age: int) -> dict[Any, FastTileSet]:
    result: dict[Any, FastTileSet] = {}
    for key, tile_set in tile_sets.items():
        grid = tile_set.layer.grid
        levels = tuple(range(grid.levels))
        fast = _tile_set(tile_set.layer, levels, tile_set.is_sw, max_age)
        if fast is not None:
            result[key] = fast
    return result


def _indices(
    tile_set: FastTileSet, level_text: str, col_text: str, row_text: str
) -> tuple[FastTileSet, int, int, int] | None:
    """Checked published (level, col, row), or None for anything unusual or outside."""
    for text in (level_text, col_text, row_text):
        if not text.isdigit() or not text.isascii() or len(text) > _MAX_INDEX_DIGITS:
            return None
    level = int(level_text)
    if level >= len(tile_set.grid_sizes):
        return None
    cols, rows = tile_set.grid_sizes[level]
    col = int(col_text)
    row = int(row_text)
    if col >= cols or row >= rows:
        return None
    return tile_set, level, col, row


def _strip_version(rest: str) -> str | None:
    """``/tiles`` accepts an optional ``1.0.0/`` before the layer (as its URL regex does)."""
    if rest.startswith("1.0.0/"):
        stripped = rest[6:]
        # Only when the rest is a tile path; else the general path decides.
        return stripped if stripped.count("/") in (3, 4) else None
    return rest


def _query_params(query: str) -> dict[str, str] | None:
    """Query parameters with lower-case names, or None where werkzeug could differ."""
    if not query or ";" in query:
        return None
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            return None
        if "%" in part or "+" in part:
            key = unquote_plus(key)
            value = unquote_plus(value)
            if "\ufffd" in key or "\ufffd" in value:
                return None
        name = key.lower()
        if name in params:
            return None
        params[name] = value
    return params
