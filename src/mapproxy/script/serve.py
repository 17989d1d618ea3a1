"""``mapproxy-util serve-develop`` and ``serve-multiapp-develop``: werkzeug development servers.

The server runs under werkzeug's stat reloader: a watcher process starts a server
process and starts it again whenever that one sees a change in a loaded Python module
or in one of the configuration files (including ``base:`` files).

A configuration that is broken at start-up ends the command with exit code 2. One
that breaks while the server runs does not stop it: the restarted server process
prints the error once and answers every request with a 500 page naming the problem,
until the next change to a configuration file restarts it again.

``serve-multiapp-develop`` restarts only on code changes: the MultiMapProxy app loads and
reloads its projects itself.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import html
import logging
import logging.config
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger("mapproxy.script.serve")

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8080
DEFAULT_BIND = "127.0.0.1:8080"
LOG_FORMAT = "[%(asctime)s] %(name)s - %(levelname)s - %(message)s"

# The watcher process puts the config files it loaded here, so that a restarted server
# process whose configuration fails to load still knows which files to watch.
WATCH_FILES_ENV = "MAPPROXY_SERVE_WATCH_FILES"

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def parse_bind_address(address: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT``, ``:PORT`` (all interfaces), ``PORT`` or ``HOST``."""
    address = address.strip()
    if address.startswith("["):  # IPv6: [::1]:8080 or [::1]
        host, _, rest = address[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid bind address {address!r}")
        port = rest[1:] if rest else str(DEFAULT_PORT)
    elif re.fullmatch(r"\d+", address):
        host, port = DEFAULT_HOST, address
    elif address.count(":") == 1:
        host, port = address.split(":")
        host = host or "0.0.0.0"
    else:  # a host name or an IPv6 address without port
        host, port = address, str(DEFAULT_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid bind address {address!r}")
    return host, int(port)


def _bind_address_type(value: str) -> tuple[str, int]:
    try:
        return parse_bind_address(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def is_local_host(host: str) -> bool:
    """True if ``host`` only accepts connections from this machine."""
    return host in _LOCAL_HOSTS or host.startswith("127.")


def _security_warning(host: str) -> str:
    line = "=" * 78
    return "\n".join(
        [
            line,
            "WARNING: --debug enables the interactive werkzeug debugger, which lets anyone",
            "who can open a page of this server run any Python code on this machine. The",
            f"server listens on '{host}', which is reachable from other machines.",
            "Only use --debug with -b localhost or -b 127.0.0.1.",
            line,
        ]
    )


def _is_reloader_child() -> bool:
    return os.environ.get("WERKZEUG_RUN_MAIN") == "true"


class LogConfigError(Exception):
    """The --log-config file is missing or not a valid logging configuration."""


def setup_logging(log_config: str | None, debug: bool) -> None:
    """Configure logging from ``log_config`` (``here`` = its directory) or to stdout."""
    if log_config:
        if not os.path.isfile(log_config):
            raise LogConfigError(f"log configuration {log_config} not found")
        here = os.path.dirname(os.path.abspath(log_config))
        try:
            logging.config.fileConfig(
                log_config, defaults={"here": here}, disable_existing_loggers=False
            )
        except (configparser.Error, KeyError, ValueError, TypeError, OSError) as error:
            raise LogConfigError(f"invalid log configuration {log_config}: {error!r}") from None
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


@contextlib.contextmanager
def _logging_disabled() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


class ConfigErrorApp:
    """Answers every request with a 500 page that shows a configuration error."""

    def __init__(self, config_file: str, message: str) -> None:
        self.config_file = config_file
        self.message = message

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        body = (
            "<html><head><title>MapProxy configuration error</title></head><body>"
            "<h1>MapProxy configuration error</h1>"
            f"<p>Could not load {html.escape(self.config_file)}:</p>"
            f"<pre>{html.escape(self.message)}</pre>"
            "<p>The server restarts when a configuration file changes.</p>"
            "</body></html>"
        ).encode()
        start_response(
            "500 Internal Server Error",
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]


def _print_error(message: str) -> None:
    sys.stdout.flush()
    print(f"ERROR: {message}", file=sys.stderr, flush=True)


def _files_to_watch_after_error(config_file: str) -> list[str]:
    """The config files to watch when the configuration could not be built."""
    from mapproxy.config.loader import load_configuration_files
    from mapproxy.errors import ConfigurationError

    files = [config_file]
    files += os.environ.get(WATCH_FILES_ENV, "").split(os.pathsep)
    # if the YAML is fine and only validation failed, the current base files are known
    with contextlib.suppress(ConfigurationError), _logging_disabled():
        files += list(load_configuration_files(config_file).config_files)
    return list(dict.fromkeys(path for path in files if path))


def _run_server(host: str, port: int, app: Any, extra_files: list[str]) -> None:
    from werkzeug.serving import run_simple

    run_simple(
        host,
        port,
        app,
        threaded=True,
        use_reloader=True,
        extra_files=extra_files,
        reloader_type="stat",
    )


def _serve_parser(prog: str, usage: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, usage=usage, description=description)
    parser.add_argument(
        "-b",
        "--bind",
        dest="address",
        default=DEFAULT_BIND,
        type=_bind_address_type,
        metavar="ADDRESS",
        help=f"server socket [{DEFAULT_BIND}]",
    )
    parser.add_argument(
        "--debug",
        default=False,
        action="store_true",
        help="enable debug mode (DEBUG logging and the interactive debugger)",
    )
    return parser


def serve_develop_command(argv: list[str]) -> int:
    """Run ``mapproxy-util serve-develop``; returns the exit code."""
    parser = _serve_parser(
        "mapproxy-util serve-develop",
        "%(prog)s [options] mapproxy.yaml",
        "Run MapProxy development server.",
    )
    parser.add_argument(
        "--log-config",
        dest="log_config",
        metavar="FILE",
        help="logging configuration (Python logging ini file)",
    )
    parser.add_argument(
        "config", nargs="?", metavar="mapproxy.yaml", help="the MapProxy configuration"
    )
    options = parser.parse_args(argv)
    if not options.config:
        parser.print_help()
        _print_error("MapProxy configuration required.")
        return 1
    host, port = options.address
    try:
        setup_logging(options.log_config, options.debug)
    except LogConfigError as error:
        _print_error(str(error))
        return 2

    from mapproxy.errors import ConfigurationError
    from mapproxy.wsgiapp import build_app, make_wsgi_app

    config_file = os.path.abspath(options.config)
    app: Any
    if not _is_reloader_child():
        # The watcher process: fail early on a broken configuration. The server process
        # loads it again and logs its warnings, so this check runs silently.
        if options.debug and not is_local_host(host):
            print(_security_warning(host), flush=True)
        try:
            with _logging_disabled():
                app = build_app(config_file, debug=options.debug)
        except ConfigurationError as error:
            _print_error(str(error))
            return 2
        watch_files = list(app.config_files)
        os.environ[WATCH_FILES_ENV] = os.pathsep.join(watch_files)
    else:
        try:
            app = make_wsgi_app(config_file, debug=options.debug)
            watch_files = list(getattr(app, "config_files", {})) or [config_file]
        except ConfigurationError as error:
            _print_error(str(error))
            print(
                "Serving an error page until a configuration file changes.",
                file=sys.stderr,
                flush=True,
            )
            app = ConfigErrorApp(config_file, str(error))
            watch_files = _files_to_watch_after_error(config_file)
    _run_server(host, port, app, watch_files)
    return 0


def serve_multiapp_develop_command(argv: list[str]) -> int:
    """Run ``mapproxy-util serve-multiapp-develop``; returns the exit code.

    The MultiMapProxy app builds each project on its first request and rebuilds it when
    one of its configuration files changes; a new ``<name>.yaml`` is served without a
    restart. So the reloader only restarts the server on code changes, and a broken
    project answers 500 with the configuration error while the others keep working.
    """
    parser = _serve_parser(
        "mapproxy-util serve-multiapp-develop",
        "%(prog)s [options] projects/",
        "Run MultiMapProxy development server.",
    )
    parser.add_argument(
        "--log-config",
        dest="log_config",
        metavar="FILE",
        help="logging configuration (Python logging ini file)",
    )
    parser.add_argument(
        "projects",
        nargs="?",
        metavar="CONFIG_DIR",
        help="directory with one MapProxy configuration (<name>.yaml) per project",
    )
    options = parser.parse_args(argv)
    if not options.projects:
        parser.print_help()
        _print_error("MapProxy projects directory required.")
        return 1
    if not os.path.isdir(options.projects):
        _print_error(f"MapProxy projects directory {options.projects} not found")
        return 1
    host, port = options.address
    try:
        setup_logging(options.log_config, options.debug)
    except LogConfigError as error:
        _print_error(str(error))
        return 2
    if options.debug and not is_local_host(host) and not _is_reloader_child():
        print(_security_warning(host), flush=True)

    from mapproxy.multiapp import make_wsgi_app as make_multiapp

    app = make_multiapp(
        os.path.abspath(options.projects),
        allow_listing=True,
        debug=options.debug,
        show_config_errors=True,
    )
    _run_server(host, port, app, [])
    return 0
