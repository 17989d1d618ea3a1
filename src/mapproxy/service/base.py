"""Shared service plumbing: parameters, public URLs, responses, tile caching headers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from email.utils import formatdate, parsedate_to_datetime
from typing import Protocol
from urllib.parse import quote
from xml.sax.saxutils import escape

from werkzeug.wrappers import Request, Response

from mapproxy.cache.base import Tile
from mapproxy.errors import MapProxyError

VARY_HEADER = "X-Script-Name, X-Forwarded-Host, X-Forwarded-Proto"
NO_CACHE_HEADERS = {"Cache-Control": "no-cache, no-store", "Pragma": "no-cache", "Expires": "-1"}


class InvalidRequest(MapProxyError):
    """A client request is malformed; services turn it into their exception document."""

    def __init__(self, message: str, code: str | None = None, locator: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.locator = locator


class Service(Protocol):
    """A service mounted on one or more first path segments (``wms``, ``tms`` ...)."""

    def handle(self, request: Request) -> Response:
        """Answer one request."""
        ...


# Repeated values of these parameters are joined with commas (LAYERS=a&LAYERS=b means a,b);
# for all others the first value wins. Both as in MapProxy.
_JOINED_PARAMS = frozenset({"layers", "styles", "query_layers", "layer"})


def query_params(request: Request) -> dict[str, str]:
    """Query (and form) parameters with lower-cased names."""
    params: dict[str, str] = {}
    items = list(request.args.items(multi=True))
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        items.extend(request.form.items(multi=True))
    for key, value in items:
        name = key.lower()
        if name in params:
            if name in _JOINED_PARAMS:
                params[name] += "," + value
        else:
            params[name] = value
    return params


def public_host(request: Request) -> str:
    """Host (and port) clients use: X-Forwarded-Host, Forwarded, Host, SERVER_NAME."""
    environ = request.environ
    forwarded_host = environ.get("HTTP_X_FORWARDED_HOST")
    if forwarded_host:
        return str(forwarded_host).split(",")[0].strip()
    forwarded = _forwarded_values(environ.get("HTTP_FORWARDED", ""))
    if "host" in forwarded:
        return forwarded["host"]
    host = environ.get("HTTP_HOST")
    scheme = public_scheme(request)
    if host:
        host = str(host)
        if (scheme == "http" and host.endswith(":80")) or (
            scheme == "https" and host.endswith(":443")
        ):
            host = host.rsplit(":", 1)[0]
        return host
    server = str(environ.get("SERVER_NAME", "localhost"))
    port = str(environ.get("SERVER_PORT", ""))
    if port and not ((scheme == "http" and port == "80") or (scheme == "https" and port == "443")):
        server = f"{server}:{port}"
    return server


def public_scheme(request: Request) -> str:
    """Scheme clients use: X-Forwarded-Proto, Forwarded proto, else the WSGI scheme."""
    environ = request.environ
    proto = environ.get("HTTP_X_FORWARDED_PROTO")
    if proto:
        return str(proto).split(",")[0].strip().lower()
    forwarded = _forwarded_values(environ.get("HTTP_FORWARDED", ""))
    if "proto" in forwarded:
        return forwarded["proto"].lower()
    return str(environ.get("wsgi.url_scheme", "http"))


def _forwarded_values(header: str) -> dict[str, str]:
    """First element of an RFC 7239 Forwarded header as a dict."""
    if not header:
        return {}
    first = header.split(",")[0]
    values: dict[str, str] = {}
    for part in first.split(";"):
        if "=" in part:
            key, _, value = part.partition("=")
            values[key.strip().lower()] = value.strip().strip('"')
    return values


def script_url(request: Request) -> str:
    """Public URL of the application root, without trailing slash."""
    script_name = request.environ.get("SCRIPT_NAME", "") or ""
    return (
        f"{public_scheme(request)}://{public_host(request)}{_quote_wsgi(script_name.rstrip('/'))}"
    )


def request_base_url(request: Request) -> str:
    """Public URL of the requested resource without query string."""
    path = request.environ.get("PATH_INFO", "") or ""
    return script_url(request) + _quote_wsgi(path)


def _quote_wsgi(text: str) -> str:
    """URL-quote a WSGI path string (WSGI carries the raw bytes decoded as latin-1)."""
    return quote(text, encoding="latin-1", errors="replace")


def finish_headers(response: Response, cors_origin: str | None) -> Response:
    """Add the Vary and CORS headers every MapProxy response carries."""
    mimetype = response.mimetype or ""
    if mimetype.startswith(("text/", "application/")):
        response.headers["Vary"] = VARY_HEADER
    if cors_origin:
        response.headers["Access-control-allow-origin"] = cors_origin
    return response


def xml_response(body: str | bytes, content_type: str, status: int = 200) -> Response:
    """An XML document response with an exact Content-Type header."""
    response = Response(body, status=status)
    response.headers["Content-Type"] = content_type
    return response


def no_cache(response: Response) -> Response:
    """Mark a response as not cacheable (errors, partial results)."""
    for key, value in NO_CACHE_HEADERS.items():
        response.headers[key] = value
    return response


def ows_exception_report(
    message: str, code: str = "NoApplicableCode", locator: str | None = None
) -> str:
    """An OWS 1.1 ExceptionReport document."""
    locator_attr = f' locator="{escape(locator, {chr(34): "&quot;"})}"' if locator else ""
    return (
        '<?xml version="1.0"?>\n'
        '<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows/1.1"\n'
        '  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        '  xsi:schemaLocation="http://www.opengis.net/ows/1.1 '
        'http://schemas.opengis.net/ows/1.1.0/owsExceptionReport.xsd"\n'
        '  version="1.0.0" xml:lang="en">\n'
        f'  <ows:Exception exceptionCode="{escape(code)}"{locator_attr}>\n'
        f"    <ows:ExceptionText>{escape(_xml_safe(message))}</ows:ExceptionText>\n"
        "  </ows:Exception>\n"
        "</ows:ExceptionReport>\n"
    )


_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _xml_safe(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (NUL and other control characters)."""
    return _XML_UNSAFE.sub("", text)


xml_safe = _xml_safe


def tile_etag(timestamp: float, size: int) -> str:
    """MapProxy's tile ETag: MD5 of the float timestamp repr and the byte size."""
    return hashlib.md5((repr(float(timestamp)) + str(size)).encode("ascii")).hexdigest()


def tile_response(
    request: Request,
    tile: Tile,
    mimetype: str,
    max_age_seconds: int,
    cacheable: bool = True,
) -> Response:
    """Tile bytes with ETag/Last-modified/Cache-control and conditional GET (304)."""
    data = tile.data or b""
    if not cacheable or tile.timestamp is None or not tile.cacheable:
        response = Response(data, mimetype=mimetype)
        if not cacheable or not tile.cacheable:
            no_cache(response)
        return response
    timestamp = tile.timestamp
    etag = tile_etag(timestamp, len(data))
    headers = {
        "ETag": etag,
        "Last-modified": formatdate(timestamp, usegmt=True),
        "Cache-control": f"public, max-age={max_age_seconds}, s-maxage={max_age_seconds}",
    }
    if not_modified(
        request.headers.get("If-None-Match"),
        request.headers.get("If-Modified-Since"),
        etag,
        timestamp,
    ):
        response = Response(status=304)
        response.headers.remove("Content-Type")
        for key, value in headers.items():
            response.headers[key] = value
        return response
    response = Response(data, mimetype=mimetype)
    for key, value in headers.items():
        response.headers[key] = value
    return response


def not_modified(
    if_none_match: str | None, if_modified_since: str | None, etag: str, timestamp: float
) -> bool:
    """True if the conditional request headers match the tile (answer 304)."""
    if if_none_match is not None:
        candidates = [value.strip() for value in if_none_match.split(",")]
        normalized = {value.removeprefix("W/").strip('"') for value in candidates}
        return etag in normalized or "*" in normalized
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        # HTTP dates have whole seconds; compare against the truncated mtime so that
        # echoing Last-modified back yields 304 (the reference never does, see docs).
        return since >= int(timestamp)
    return False


def header_items(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Headers as a list of pairs."""
    return list(headers.items())
