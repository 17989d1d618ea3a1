"""MultiMapProxy: one MapProxy app per YAML file in a directory, built lazily, reloaded on change.

``<config_dir>/<name>.yaml`` is served under ``/<name>/``. An instance is built on its
first request and kept in a small LRU; every request compares the mtimes of the
instance's configuration files (``base:`` files included) with the ones it was built
from and rebuilds it when one changed.

A configuration that cannot be built makes only that instance answer 500 (a plain-text
page naming the instance); the other instances are not affected. The failed attempt is
remembered, so a broken file is not parsed again on every request: it is tried again as
soon as one of its known files changes, and otherwise at most every
``FAILED_RETRY_SECONDS`` (to notice fixes in ``base:`` files that could not be read yet).
"""

from __future__ import annotations

import html
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from mapproxy import __version__
from mapproxy.errors import ConfigurationError
from mapproxy.service.base import finish_headers, script_url
from mapproxy.wsgiapp import MapProxyApp, StartResponse, _apply_script_name_header, build_app

log = logging.getLogger("mapproxy.multiapp")
config_log = logging.getLogger("mapproxy.config")

MAX_CACHED_APPS = 100
FAILED_RETRY_SECONDS = 2.0

_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})
# a leading dot (also "." and ".."), "..", path separators, NUL and other control characters
_UNSAFE_NAME = re.compile(r"\A\.|\.\.|[/\\\x00-\x1f\x7f]")


def is_valid_instance_name(name: str) -> bool:
    """True if ``name`` can only refer to a file directly inside the projects directory."""
    return bool(name) and _UNSAFE_NAME.search(name) is None


def as_bool(value: Any) -> bool:
    """A PasteDeploy option as boolean: ``1``, ``true``, ``yes``, ``on`` (any case) are True."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE_VALUES


def _mtime(path: str) -> float | None:
    try:
        return os.path.getmtime(path)
    except OSError:
        return None


def _decode_segment(segment: str) -> str | None:
    """The real text of a PATH_INFO segment (WSGI passes UTF-8 bytes as latin-1 text)."""
    try:
        raw = segment.encode("latin-1")
    except UnicodeEncodeError:  # the server already decoded it
        return segment
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass
class ProjectApp:
    """One instance: the built app, or the error of the last attempt, and its watched files."""

    name: str
    config_file: str
    watched_files: dict[str, float | None]  # absolute path -> mtime it was read with
    app: MapProxyApp | None = None
    error: str | None = None
    attempted_at: float = 0.0  # time.monotonic() of a failed attempt

    def is_stale(self) -> bool:
        """True if the instance must be built again (a file changed or a retry is due)."""
        for path, mtime in self.watched_files.items():
            if _mtime(path) != mtime:
                return True
        return self.app is None and time.monotonic() - self.attempted_at >= FAILED_RETRY_SECONDS


class MultiMapProxy:
    """WSGI app that serves every ``<name>.yaml`` in ``config_dir`` under ``/<name>/``."""

    def __init__(
        self,
        config_dir: str,
        allow_listing: bool = True,
        debug: bool = False,
        show_config_errors: bool = False,
        max_cached_apps: int | None = None,
    ) -> None:
        self.config_dir = os.path.abspath(config_dir)
        self.allow_listing = allow_listing
        self.debug = debug
        self.show_config_errors = show_config_errors
        self.max_cached_apps = MAX_CACHED_APPS if max_cached_apps is None else max_cached_apps
        self.apps: OrderedDict[str, ProjectApp] = OrderedDict()
        self._apps_lock = threading.Lock()  # guards self.apps (held only briefly)
        self._build_lock = threading.Lock()  # serialises building instances

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # The proxy prefix has to be applied before the instance name is moved to
        # SCRIPT_NAME; the instance must not apply it a second time.
        _apply_script_name_header(environ)
        environ.pop("HTTP_X_SCRIPT_NAME", None)
        path = environ.get("PATH_INFO", "") or ""
        segment, slash, rest = path.removeprefix("/").partition("/")
        if not segment:
            return self.index(Request(environ))(environ, start_response)
        name = _decode_segment(segment)
        project = None
        if name is not None and is_valid_instance_name(name):
            try:
                project = self.project_app(name)
            except Exception:
                if self.debug:
                    raise
                log.exception("could not initialize project app %s", name)
                return _text_response("internal error", 500)(environ, start_response)
        if name is None or project is None:
            return _text_response("not found", 404)(environ, start_response)
        if project.app is None:
            return self.error_response(project)(environ, start_response)
        environ["SCRIPT_NAME"] = (environ.get("SCRIPT_NAME", "") or "").rstrip("/") + "/" + segment
        environ["PATH_INFO"] = slash + rest
        environ["mapproxy.instance_name"] = name
        return project.app(environ, start_response)

    def config_file(self, name: str) -> str:
        """The configuration file of instance ``name`` (which must be a valid name)."""
        return os.path.join(self.config_dir, name + ".yaml")

    def list_instances(self) -> list[str]:
        """Names of all instances, sorted (suffix matched case-insensitively, like MapProxy)."""
        names = []
        try:
            with os.scandir(self.config_dir) as entries:
                for entry in entries:
                    if not entry.name.lower().endswith(".yaml") or not entry.is_file():
                        continue
                    name = entry.name[: -len(".yaml")]
                    if is_valid_instance_name(name):
                        names.append(name)
        except OSError as error:
            log.warning("cannot list projects directory %s: %s", self.config_dir, error)
        return sorted(names)

    def index(self, request: Request) -> Response:
        """The welcome page, listing the instances if allowed."""
        body = f"<html><body><h1>Welcome to MapProxy {__version__}</h1>"
        if self.allow_listing:
            base = script_url(request)
            items = []
            for name in self.list_instances():
                url = html.escape(f"{base}/{quote(name)}/")
                items.append(f'<li><a href="{url}">{html.escape(name)}</a></li>')
            body += "<h2>available instances:</h2><ul>" + "\n".join(items) + "</ul>"
        body += "</body></html>"
        response = Response(body)
        response.headers["Content-Type"] = "text/html"
        return finish_headers(response, None)

    def error_response(self, project: ProjectApp) -> Response:
        """The 500 page of an instance whose configuration cannot be built."""
        text = f"MapProxy instance '{project.name}' has a configuration error"
        if self.show_config_errors:
            text += (
                f":\n\n{project.error}\n\n"
                "The instance is loaded again when its configuration changes.\n"
            )
        else:
            text += "; the server log has the details.\n"
        return _text_response(text, 500)

    def project_app(self, name: str) -> ProjectApp | None:
        """The current instance ``name``, built or rebuilt if needed; None if there is none."""
        config_file = self.config_file(name)
        if os.path.dirname(config_file) != self.config_dir or not os.path.isfile(config_file):
            with self._apps_lock:
                self.apps.pop(name, None)
            return None
        project = self._cached(name)
        if project is not None and not project.is_stale():
            return project
        with self._build_lock:
            project = self._cached(name)
            if project is None or project.is_stale():
                project = self._build(name, config_file, project)
                self._store(project)
        return project

    def _cached(self, name: str) -> ProjectApp | None:
        with self._apps_lock:
            project = self.apps.get(name)
            if project is not None:
                self.apps.move_to_end(name)
            return project

    def _store(self, project: ProjectApp) -> None:
        with self._apps_lock:
            self.apps[project.name] = project
            self.apps.move_to_end(project.name)
            while len(self.apps) > max(self.max_cached_apps, 1):
                self.apps.popitem(last=False)

    def _build(self, name: str, config_file: str, previous: ProjectApp | None) -> ProjectApp:
        # read before building, so that a change during the build triggers another one
        known = [config_file, *(previous.watched_files if previous else ())]
        watched = {path: _mtime(path) for path in dict.fromkeys(known)}
        log.info("initializing project app %s with %s", name, config_file)
        try:
            app = build_app(config_file, debug=self.debug)
        except ConfigurationError as error:
            config_log.critical("could not initialize project app %s: %s", name, error)
            return ProjectApp(
                name, config_file, watched, error=str(error), attempted_at=time.monotonic()
            )
        files: Mapping[str, float] = app.config_files
        return ProjectApp(name, config_file, dict(files), app=app)


def _text_response(text: str, status: int) -> Response:
    response = Response(text, status=status)
    response.headers["Content-Type"] = "text/plain"
    return finish_headers(response, None)


def make_wsgi_app(
    config_dir: str,
    allow_listing: bool = True,
    debug: bool = False,
    *,
    show_config_errors: bool | None = None,
) -> Any:
    """The MultiMapProxy app for the ``<name>.yaml`` files in ``config_dir``.

    ``show_config_errors`` puts configuration error messages into the 500 pages
    (default: only with ``debug``, as they contain file paths). ``debug`` also lets
    exceptions propagate into werkzeug's interactive debugger.
    """
    app = MultiMapProxy(
        config_dir,
        allow_listing=allow_listing,
        debug=debug,
        show_config_errors=debug if show_config_errors is None else show_config_errors,
    )
    if debug:
        from werkzeug.debug import DebuggedApplication

        return DebuggedApplication(app, evalex=True)
    return app


def app_factory(
    global_options: Mapping[str, Any], config_dir: str, allow_listing: Any = False, **kw: Any
) -> Any:
    """PasteDeploy app factory; ``allow_listing`` is parsed from ``1/true/yes/on``."""
    return make_wsgi_app(config_dir, allow_listing=as_bool(allow_listing))
