"""HTTP client for upstream requests: pooled connections, timeouts, MapProxy error texts."""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import (
    InsecureRequestWarning,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.response import HTTPResponse as HTTPResponseBody
from urllib3.util.retry import Retry

import mapproxy
from mapproxy.errors import HTTPClientError

__all__ = ["HTTPClient", "HTTPResponse", "UpstreamHTTPError", "split_credentials"]

request_log = logging.getLogger("mapproxy.source.request")
log = logging.getLogger(__name__)

# Query strings longer than this are sent as POST body with method AUTO.
MAX_GET_QUERY_LENGTH = 4000

USER_AGENT = f"MapProxy-{mapproxy.__version__}"

_SLD_BODY = re.compile(r"(?:^|&)sld_body=", re.IGNORECASE)

_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _QuickAckConnection(HTTPConnection):
    """Acknowledges the first segment of each response at once (Linux ``TCP_QUICKACK``).

    On a kept-alive connection the kernel delays ACKs; a server that writes headers
    and body in two sends with Nagle's algorithm on then holds the body until the
    delayed ACK, about 40 ms per response. A new connection per request (as MapProxy
    does) starts in quick-ACK mode; this keeps that for pooled connections.
    """

    def getresponse(self) -> HTTPResponseBody:  # type: ignore[override]
        """Switch to quick ACKs, then read the response as urllib3 does."""
        _quick_ack(self.sock)
        return super().getresponse()


class _QuickAckHTTPSConnection(HTTPSConnection):
    """``_QuickAckConnection`` for TLS."""

    def getresponse(self) -> HTTPResponseBody:  # type: ignore[override]
        """Switch to quick ACKs, then read the response as urllib3 does."""
        _quick_ack(self.sock)
        return super().getresponse()


def _quick_ack(sock: socket.socket | None) -> None:
    if sock is not None and _TCP_QUICKACK is not None:
        with contextlib.suppress(OSError):  # e.g. a non-TCP socket in tests
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _QuickAckConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _QuickAckHTTPSConnection


_pool_managers: dict[tuple[str | None, bool], urllib3.PoolManager] = {}
_pool_managers_lock = threading.Lock()


def _pool_manager(ssl_ca_certs: str | None, ssl_no_cert_checks: bool) -> urllib3.PoolManager:
    """The process-wide PoolManager for one set of SSL settings (connections are shared)."""
    key = (ssl_ca_certs, ssl_no_cert_checks)
    with _pool_managers_lock:
        manager = _pool_managers.get(key)
        if manager is None:
            options: dict[str, Any] = {}
            if ssl_no_cert_checks:
                options["cert_reqs"] = "CERT_NONE"
                # The user asked for unchecked connections; a warning per request is noise.
                urllib3.disable_warnings(InsecureRequestWarning)
            else:
                options["cert_reqs"] = "CERT_REQUIRED"
                if ssl_ca_certs:
                    options["ca_certs"] = ssl_ca_certs
            manager = urllib3.PoolManager(num_pools=64, maxsize=16, block=False, **options)
            manager.pool_classes_by_scheme = {
                "http": _HTTPConnectionPool,
                "https": _HTTPSConnectionPool,
            }
            _pool_managers[key] = manager
        return manager


class _Retry(Retry):
    """Retries only what is safe: a GET on a dropped pooled connection; never timeouts."""

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> Retry:
        if isinstance(error, Urllib3TimeoutError):
            # Also covers NewConnectionError (a ConnectTimeoutError subclass): refused
            # connections and timeouts fail at once instead of doubling the wait.
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


_RETRIES = _Retry(total=None, connect=0, read=1, redirect=5, status=0, other=0)


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """A complete upstream response; ``headers`` are case-insensitive."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    duration_seconds: float = field(default=0.0, compare=False)

    @property
    def content_type(self) -> str:
        """Lower-case mime type without parameters, e.g. ``image/png`` ('' if missing)."""
        value = self.headers.get("Content-Type", "") or ""
        return value.split(";", 1)[0].strip().lower()


class UpstreamHTTPError(HTTPClientError):
    """An HTTPClientError that knows the URL, the status (None: no response) and the reason.

    ``str(error)`` is the user-visible message (short when error details are hidden);
    ``full_message`` always names the URL and reason.
    """

    def __init__(self, message: str, url: str, status: int | None, full_message: str) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.full_message = full_message


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` part, and the Basic ``Authorization`` value.

    User and password are percent-decoded (RFC 3986); the value is None without credentials.
    The rest of the URL is kept character for character.
    """
    scheme_end = url.find("://")
    if scheme_end < 0:
        return url, None
    start = scheme_end + 3
    end = len(url)
    for delimiter in "/?#":
        position = url.find(delimiter, start)
        if position >= 0:
            end = min(end, position)
    userinfo, at, _ = url[start:end].rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    credentials = f"{unquote(user)}:{unquote(password)}".encode()
    authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
    return url[:start] + url[start + len(userinfo) + 1 :], authorization


class _CookieResponse:
    """The part of a urllib response ``CookieJar.extract_cookies`` reads: ``info().get_all``."""

    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def info(self) -> _CookieResponse:
        return self

    def get_all(self, name: str, default: Any = None) -> Any:
        values = self._headers.getlist(name)
        return values or default


def error_message(reason: str, url: str, detail: object, hide_error_details: bool) -> str:
    """User-visible error text; the full form names the URL and the detail."""
    if hide_error_details:
        return f"{reason} (see logs for URL and reason)."
    return f'{reason} "{url}": {detail}'


class HTTPClient:
    """Fetches URLs with one timeout, headers and SSL settings (a source's ``http`` options).

    ``method`` is ``AUTO`` (GET; POST for query strings over 4000 characters or with an
    ``sld_body``), ``GET`` or
    ``POST`` (the query string is sent as form body). Connections are pooled per process.
    Credentials in a URL (``http://user:password@host/``) are sent as Basic
    ``Authorization`` header and never appear in logs, errors or ``HTTPResponse.url``.
    With ``manage_cookies`` the cookies upstreams set are sent back on later requests of
    this client. Failures are logged at WARNING on ``error_log`` (default
    ``mapproxy.http.client``).
    """

    def __init__(
        self,
        timeout_seconds: float = 60.0,
        headers: Mapping[str, str] | None = None,
        ssl_ca_certs: str | None = None,
        ssl_no_cert_checks: bool = False,
        hide_error_details: bool = True,
        method: str = "AUTO",
        error_log: logging.Logger | None = None,
        manage_cookies: bool = False,
    ) -> None:
        method = method.upper()
        if method not in ("AUTO", "GET", "POST"):
            raise ValueError(f"unsupported http method {method!r}")
        self.timeout_seconds = float(timeout_seconds)
        self.headers: dict[str, str] = {"User-Agent": USER_AGENT}
        for name, value in (headers or {}).items():
            self.headers[str(name)] = str(value)
        self.ssl_ca_certs = ssl_ca_certs
        self.ssl_no_cert_checks = ssl_no_cert_checks
        self.hide_error_details = hide_error_details
        self.method = method
        # failed requests are logged here, e.g. on the logger of the source using us
        self.error_log = error_log or log
        self._timeout = urllib3.Timeout(connect=self.timeout_seconds, read=self.timeout_seconds)
        self._pool = _pool_manager(ssl_ca_certs, ssl_no_cert_checks)
        # CookieJar locks itself, so one jar serves all threads of the source.
        self.cookie_jar: CookieJar | None = CookieJar() if manage_cookies else None

    def open(self, url: str, data: bytes | None = None) -> HTTPResponse:
        """Fetch ``url`` (POST ``data`` if given); raises UpstreamHTTPError (an HTTPClientError).

        Every request is logged on ``mapproxy.source.request``; status >= 400 is an error.
        """
        url, authorization = split_credentials(url)
        method, request_url, body, headers = self._prepare(url, data)
        if authorization is not None:
            headers["Authorization"] = authorization
        cookie_request = self._add_cookies(method, request_url, headers)
        if self.ssl_no_cert_checks:
            # again per request: warning filters may have been reset since the pool was made
            urllib3.disable_warnings(InsecureRequestWarning)
        start = time.perf_counter()
        try:
            response = self._pool.request(
                method,
                request_url,
                body=body,
                headers=headers,
                timeout=self._timeout,
                retries=_RETRIES,
                preload_content=False,
            )
        except (Urllib3HTTPError, OSError) as error:
            self._log_request(method, url, None, None, time.perf_counter() - start)
            raise self._no_response(url, error) from error
        duration = time.perf_counter() - start
        status = response.status
        if cookie_request is not None and self.cookie_jar is not None:
            self.cookie_jar.extract_cookies(
                _CookieResponse(response.headers),  # type: ignore[arg-type]
                cookie_request,
            )
        try:
            # urllib3 enforces Content-Length: a body cut short (connection dropped
            # mid-body) raises ProtocolError(IncompleteRead) here, never returns short.
            payload = response.read()
        except (Urllib3HTTPError, OSError) as error:
            self._log_request(method, url, status, None, duration)
            reason = "Incomplete response from URL" if isinstance(error, ProtocolError) else None
            raise self._no_response(url, error, reason) from error
        finally:
            response.release_conn()
        if status >= 400:
            self._log_request(method, url, status, None, duration)
            message = error_message("HTTP Error", url, status, self.hide_error_details)
            full = error_message("HTTP Error", url, status, False)
            self.error_log.warning("%s", full)
            raise UpstreamHTTPError(message, url, status, full)
        self._log_request(method, url, status, response.headers.get("Content-Length"), duration)
        return HTTPResponse(
            status=status,
            headers=response.headers,
            body=payload,
            url=url,
            duration_seconds=duration,
        )

    def _add_cookies(
        self, method: str, url: str, headers: dict[str, str]
    ) -> urllib.request.Request | None:
        """Add the ``Cookie`` header for ``url``; the request is needed to store new cookies."""
        if self.cookie_jar is None:
            return None
        request = urllib.request.Request(url, method=method)
        self.cookie_jar.add_cookie_header(request)
        cookie = request.get_header("Cookie")
        if cookie:
            headers["Cookie"] = cookie
        return request

    def _prepare(
        self, url: str, data: bytes | None
    ) -> tuple[str, str, bytes | None, dict[str, str]]:
        headers = dict(self.headers)
        if data is not None:
            return "POST", url, data, headers
        if self.method == "GET":
            return "GET", url, None, headers
        parts = urlsplit(url)
        if (
            self.method == "POST"
            or len(parts.query) > MAX_GET_QUERY_LENGTH
            # as MapProxy, an SLD document is always posted with AUTO
            or _SLD_BODY.search(parts.query) is not None
        ):
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
            return "POST", base_url, parts.query.encode("ascii", "replace"), headers
        return "GET", url, None, headers

    def _no_response(
        self, url: str, error: BaseException, reason: str | None = None
    ) -> UpstreamHTTPError:
        reason_error = error.reason if isinstance(error, MaxRetryError) else error
        if isinstance(reason_error, SSLError):
            reason = "Could not verify connection to URL"
        elif reason is None:
            reason = "No response from URL"
        detail = _describe(reason_error)
        message = error_message(reason, url, detail, self.hide_error_details)
        full = error_message(reason, url, detail, False)
        self.error_log.warning("%s", full)
        return UpstreamHTTPError(message, url, None, full)

    @staticmethod
    def _log_request(
        method: str,
        url: str,
        status: int | None,
        content_length: str | None,
        duration_seconds: float,
    ) -> None:
        if not request_log.isEnabledFor(logging.INFO):
            return
        size = "-"
        if content_length is not None:
            try:
                size = f"{int(content_length) / 1024:.1f}"
            except ValueError:
                size = "-"
        duration = str(int(duration_seconds * 1000)) if duration_seconds else "-"
        request_log.info(
            "%s %s %s %s %s",
            method,
            url.replace(" ", ""),
            "-" if status is None else status,
            size,
            duration,
        )


def _describe(error: BaseException | None) -> str:
    """A short reason text for a urllib3/socket error."""
    if error is None:
        return "unknown error"
    if isinstance(error, Urllib3TimeoutError) and not isinstance(error, NewConnectionError):
        return "timed out"
    if isinstance(error, NewConnectionError):
        # "<HTTPConnection...>: Failed to establish a new connection: [Errno 111] ..."
        text = str(error)
        marker = "Failed to establish a new connection: "
        return text.split(marker, 1)[1] if marker in text else text
    if isinstance(error, MaxRetryError):
        return _describe(error.reason)
    return str(error) or type(error).__name__
