"""An in-process HTTP upstream (WMS / tile server) on 127.0.0.1 for tests.

Import as ``from fakes.fake_upstream import FakeUpstream`` (tests/conftest.py puts tests/
on sys.path). ``FakeUpstream`` runs a threaded werkzeug server in the background, records every
request and answers with a settable handler (by default: a PNG of the requested
WIDTH/HEIGHT, 256x256 otherwise)::

    with FakeUpstream() as upstream:
        upstream.handler = service_exception_handler("unknown layer")
        ...
        assert upstream.requests[0] == ("/service", {"layers": "foo", ...})
"""

from __future__ import annotations

import io
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from PIL import Image
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

Handler = Callable[[Request], Response]

__all__ = [
    "FakeUpstream",
    "Handler",
    "RecordedRequest",
    "image_handler",
    "png_bytes",
    "service_exception_handler",
    "sleep_handler",
    "status_handler",
]


def png_bytes(
    size: tuple[int, int] = (256, 256),
    color: tuple[int, ...] = (255, 0, 0, 255),
    format: str = "PNG",
) -> bytes:
    """Encoded single-colour image (RGBA for PNG, RGB otherwise)."""
    mode = "RGBA" if format.upper() == "PNG" and len(color) == 4 else "RGB"
    image = Image.new(mode, size, tuple(color[: len(mode)]))
    out = io.BytesIO()
    image.save(out, format)
    return out.getvalue()


def _requested_size(request: Request) -> tuple[int, int]:
    args = {key.lower(): value for key, value in request.values.items()}
    try:
        return int(args["width"]), int(args["height"])
    except (KeyError, ValueError):
        return 256, 256


def image_handler(
    color: tuple[int, ...] = (255, 0, 0, 255),
    format: str = "PNG",
    content_type: str | None = None,
) -> Handler:
    """Answer with a ``color`` image of the requested WIDTH/HEIGHT (256x256 without)."""
    mime = content_type or f"image/{format.lower()}"

    def handle(request: Request) -> Response:
        return Response(png_bytes(_requested_size(request), color, format), content_type=mime)

    return handle


def service_exception_handler(
    message: str = "unknown layer",
    content_type: str = "application/vnd.ogc.se_xml",
    status: int = 200,
) -> Handler:
    """Answer with a WMS 1.1.1 ServiceExceptionReport (HTTP 200, as most servers do)."""
    body = (
        '<?xml version="1.0"?>\n'
        '<ServiceExceptionReport version="1.1.1">\n'
        f'  <ServiceException code="LayerNotDefined">{message}</ServiceException>\n'
        "</ServiceExceptionReport>\n"
    )

    def handle(request: Request) -> Response:
        return Response(body, status=status, content_type=content_type)

    return handle


def status_handler(
    status: int, body: bytes = b"error", content_type: str = "text/plain"
) -> Handler:
    """Answer every request with ``status``."""

    def handle(request: Request) -> Response:
        return Response(body, status=status, content_type=content_type)

    return handle


@dataclass
class RecordedRequest:
    """One request as the fake saw it; ``query`` merges URL and form parameters."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    raw_query: str = ""
    timestamp: float = field(default_factory=time.monotonic)


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        pass


class FakeUpstream:
    """Background HTTP server on 127.0.0.1 with a settable ``handler``.

    ``requests`` is a list of ``(path, query dict)`` tuples (keys as sent);
    ``recorded`` holds the full ``RecordedRequest`` objects (method, headers, body).
    """

    def __init__(
        self, handler: Handler | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.handler: Handler = handler or image_handler()
        self.ssl_context = ssl_context  # serve HTTPS with this context
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.recorded: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeUpstream:
        """Start serving on a free port."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = make_server(
            "127.0.0.1",
            0,
            self._wsgi_app,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=self.ssl_context,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-upstream",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; sleeping handlers are woken up."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- helpers -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on."""
        assert self._server is not None, "FakeUpstream is not started"
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:12345`` (no trailing slash; https with SSL)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def sleep(self, seconds: float) -> None:
        """Sleep inside a handler; returns early when the server stops."""
        self._stopping.wait(seconds)

    def sleep_handler(self, seconds: float, then: Handler | None = None) -> Handler:
        """A handler that sleeps ``seconds`` and then answers like ``then``."""
        follow = then or image_handler()

        def handle(request: Request) -> Response:
            self.sleep(seconds)
            return follow(request)

        return handle

    def reset(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self.requests.clear()
            self.recorded.clear()

    @property
    def queries(self) -> list[dict[str, str]]:
        """Just the query dicts of ``requests``."""
        return [query for _, query in self.requests]

    # --- WSGI ----------------------------------------------------------------------

    def _wsgi_app(self, environ: Mapping[str, Any], start_response: Any) -> Any:
        request = Request(dict(environ))
        body = request.get_data(cache=True)
        query = dict(parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True))
        if request.mimetype == "application/x-www-form-urlencoded":
            query.update(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=query,
            headers=dict(request.headers.items()),
            body=body,
            raw_query=request.query_string.decode("latin-1"),
        )
        with self._lock:
            self.requests.append((request.path, query))
            self.recorded.append(recorded)
        response = self.handler(request)
        return response(environ, start_response)


def sleep_handler(upstream: FakeUpstream, seconds: float, then: Handler | None = None) -> Handler:
    """Module-level alias of ``FakeUpstream.sleep_handler``."""
    return upstream.sleep_handler(seconds, then)
