"""The WSGI application: route the first path segment to a service; optional reloader."""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.wrappers import Request, Response

from mapproxy import __version__
from mapproxy.config import load_configuration
from mapproxy.config.build import BuiltConfig, ConfigBuilder
from mapproxy.errors import ConfigurationError
from mapproxy.service.base import finish_headers, script_url
from mapproxy.service.fast_tiles import TileFastPath
from mapproxy.util.system import log_system_info

log = logging.getLogger("mapproxy.wsgiapp")
config_log = logging.getLogger("mapproxy.config")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_request_interceptors: list[Callable[[Request], Request]] = []


def register_request_interceptor(func: Callable[[Request], Request]) -> None:
    """Call ``func`` with every request before dispatch; it must return a request."""
    _request_interceptors.append(func)


class MapProxyApp:
    """Dispatches requests by the first path segment to the configured services."""

    def __init__(self, built: BuiltConfig, debug: bool = False) -> None:
        from mapproxy.service.ows import OWSDispatcher

        self.built = built
        self.debug = debug
        self.config_files = dict(built.config_files)
        self.cors_origin = built.cors_origin
        services = built.services
        handlers: dict[str, Any] = {}
        ows = OWSDispatcher(wms=services.get("wms"), wmts_kvp=services.get("wmts_kvp"))
        handlers["service"] = ows
        handlers["ows"] = ows
        if "wms" in services:
            handlers["wms"] = ows
        if "tms" in services:
            handlers["tms"] = services["tms"]
            handlers["tiles"] = services["tms"]
        if "kml" in services:
            handlers["kml"] = services["kml"]
        if "wmts" in services:
            handlers["wmts"] = services["wmts"]
        if "ogcapi" in services:
            handlers["ogcapi"] = services["ogcapi"]
        if built.demo_enabled:
            from mapproxy.service.demo.service import DemoService

            handlers["demo"] = DemoService(built)
        self.handlers = handlers
        fast = TileFastPath(handlers, services.get("wmts_kvp"), self.cors_origin)
        self.fast_tiles: TileFastPath | None = fast if fast.is_active else None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        _apply_script_name_header(environ)
        # Interceptors see every request, so they rule out the fast path.
        if self.fast_tiles is not None and not _request_interceptors:
            served = self.fast_tiles(environ, start_response)
            if served is not None:
                return served
        request = Request(environ)
        for interceptor in _request_interceptors:
            request = interceptor(request)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        """The response for one request (never raises unless in debug mode)."""
        path = request.environ.get("PATH_INFO", "") or ""
        segment = path.lstrip("/").split("/", 1)[0]
        try:
            if not segment:
                response = self.welcome(request)
            else:
                handler = self.handlers.get(segment)
                if handler is None:
                    response = Response("not found", status=404, mimetype="text/plain")
                else:
                    response = handler.handle(request)
        except Exception:
            if self.debug:
                raise
            query = request.environ.get("QUERY_STRING", "")
            log.exception("fatal error in %s for %s?%s", segment, path, query)
            _write_traceback(request.environ)
            response = Response("internal error", status=500)
            response.headers["Content-Type"] = "text/plain"
        return finish_headers(response, self.cors_origin)

    def welcome(self, request: Request) -> Response:
        """The root page."""
        body = f"<html><body><h1>Welcome to MapProxy {__version__}</h1>"
        if "demo" in self.handlers:
            body += (
                f"<p>See all configured layers and services at: "
                f'<a href="{script_url(request)}/demo/">demo</a>'
            )
        return Response(body, mimetype="text/html")


def _write_traceback(environ: dict[str, Any]) -> None:
    """Write the current exception's traceback to the server's ``wsgi.errors`` stream."""
    stream = environ.get("wsgi.errors")
    if stream is None:
        return
    try:
        stream.write(traceback.format_exc())
        stream.flush()
    except Exception:  # pragma: no cover - a broken error stream must not hide the 500
        log.debug("could not write to wsgi.errors", exc_info=True)


def _apply_script_name_header(environ: dict[str, Any]) -> None:
    script_name = environ.get("HTTP_X_SCRIPT_NAME")
    if not script_name:
        return
    script_name = "/" + str(script_name).strip("/") if script_name.strip("/") else ""
    environ["SCRIPT_NAME"] = script_name
    path = environ.get("PATH_INFO", "")
    if script_name and path.startswith(script_name):
        environ["PATH_INFO"] = path[len(script_name) :]


def build_app(
    config_file: str, debug: bool = False, ignore_config_warnings: bool = True
) -> MapProxyApp:
    """Load, validate and build ``config_file`` into a MapProxyApp."""
    log_system_info()
    with _gc_paused():
        config = load_configuration(config_file, ignore_warnings=ignore_config_warnings)
        if "demo" in config.services:
            config_log.warning(
                "the demo service is enabled: disable it in production (remove services.demo)"
            )
        built = ConfigBuilder(config).build()
        return MapProxyApp(built, debug=debug)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: building a large config allocates many
    long-lived objects, and the collections they trigger find nothing to free."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ReloaderApp:
    """Rebuilds the app when a config file (or a ``base:`` include) changes.

    A broken new configuration keeps the old app serving; the rebuild is retried on the
    next request because the recorded mtimes stay old.
    """

    def __init__(self, config_file: str, debug: bool = False) -> None:
        self.config_file = config_file
        self.debug = debug
        self._lock = threading.Lock()
        self.app = build_app(config_file, debug=debug)

    def _changed(self) -> bool:
        for path, mtime in self.app.config_files.items():
            try:
                if os.path.getmtime(path) != mtime:
                    return True
            except OSError:
                return True
        return False

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self._changed():
            with self._lock:
                if self._changed():
                    try:
                        self.app = build_app(self.config_file, debug=self.debug)
                        config_log.info("reloaded configuration %s", self.config_file)
                    except ConfigurationError as error:
                        config_log.error("could not reload configuration: %s", error)
        return self.app(environ, start_response)


def make_wsgi_app(
    services_conf: str | None = None,
    debug: bool = False,
    ignore_config_warnings: bool = True,
    reloader: bool = False,
) -> Any:
    """The MapProxy WSGI application for ``services_conf`` (default ``./mapproxy.yaml``)."""
    if services_conf is None:
        services_conf = os.path.join(os.getcwd(), "mapproxy.yaml")
    try:
        if reloader:
            app: Any = ReloaderApp(services_conf, debug=debug)
        else:
            app = build_app(
                services_conf, debug=debug, ignore_config_warnings=ignore_config_warnings
            )
    except ConfigurationError as error:
        config_log.fatal("%s", error)
        raise
    if debug:
        try:
            from werkzeug.debug import DebuggedApplication
        except ImportError:  # pragma: no cover - werkzeug always has it
            return app
        wrapped = DebuggedApplication(app, evalex=True)
        wrapped.config_files = getattr(app, "config_files", {})  # type: ignore[attr-defined]
        return wrapped
    return app


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use mapproxy-util serve-develop")
