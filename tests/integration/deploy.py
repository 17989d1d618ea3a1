"""Helpers for the deployment tests: real WSGI/HTTP servers as child processes.

Every server runs in its own process group (so stopping it also stops its workers), on a
loopback port, with its configuration, logs and pid files in a temporary directory. A
missing server binary or Python package fails the test with a message that says how to
install it; nothing is skipped.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from email.message import Message
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEM_DEPS_HINT = (
    "Run `scripts/install-system-deps.sh` (as root) to install the Debian packages the "
    "deployment tests need (nginx, apache2, libapache2-mod-wsgi-py3, python3-venv)."
)
PYTHON_DEPS_HINT = "Run `scripts/bootstrap.sh test` to install the test extra of pyproject.toml."

# Without a proxy handler urllib would honour http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    """Retry ``check`` until it passes (no AssertionError) or ``timeout`` runs out.

    A server answers a cache miss before the rest of its meta tile is stored (in the
    background, under the meta tile's lock): state beyond the answered tiles settles
    a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_executable(name: str, *candidates: str) -> str:
    """Path of a server binary (PATH first, then ``candidates``); fails the test if missing."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"`{name}` was not found. {SYSTEM_DEPS_HINT}", pytrace=False)


def require_file(path: str | Path, what: str) -> Path:
    """``path`` if it exists; fails the test pointing at the system dependencies script."""
    path = Path(path)
    if not path.exists():
        pytest.fail(f"{what} ({path}) is missing. {SYSTEM_DEPS_HINT}", pytrace=False)
    return path


def require_python_module(name: str) -> None:
    """Fail the test if the test extra's module ``name`` is not importable."""
    if importlib.util.find_spec(name) is None:
        pytest.fail(f"Python package `{name}` is missing. {PYTHON_DEPS_HINT}", pytrace=False)


def venv_script(name: str) -> str:
    """A console script of the Python environment running the tests (e.g. gunicorn)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"`{path}` is missing. {PYTHON_DEPS_HINT}", pytrace=False)
    return str(path)


# --------------------------------------------------------------------------------------
# the MapProxy configuration and WSGI module under test

APP_CONFIG = """\
services:
  wms:
    srs: ['EPSG:3857', 'EPSG:4326']
    md:
      title: Deployment test
  wmts:
  tms:
  demo:
layers:
  - name: cached
    title: MapServer raster through a cache
    sources: [ms_cache]
caches:
  ms_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [ms_wms]
    meta_size: [4, 4]
    meta_buffer: 0
sources:
  ms_wms:
    type: wms
    supported_srs: ['EPSG:3857']
    req:
      url: {url}
      layers: raster
globals:
  cache:
    base_dir: {base_dir}
  http:
    client_timeout: {client_timeout}
"""


def write_app(
    directory: Path, source_url: str, client_timeout: float = 30, base_dir: Path | None = None
) -> Path:
    """Write mapproxy.yaml into ``directory`` and create ``config.py`` next to it with the
    real ``mapproxy-util create -t wsgi-app``; returns the path of config.py."""
    config = directory / "mapproxy.yaml"
    config.write_text(
        APP_CONFIG.format(
            url=source_url,
            base_dir=base_dir or directory / "cache_data",
            client_timeout=client_timeout,
        )
    )
    script = directory / "config.py"
    result = subprocess.run(
        [venv_script("mapproxy-util"), "create", "-t", "wsgi-app", "-f", str(config), str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"writing MapProxy app to {script}" in result.stdout
    assert "application = make_wsgi_app(" in script.read_text()
    return script


# --------------------------------------------------------------------------------------
# HTTP


class Response:
    """Status, headers and body of one HTTP response (also for 3xx/4xx/5xx)."""

    def __init__(self, status: int, headers: Message, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.content_type} {self.body[:200]!r}>"


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 60) -> Response:
    """GET ``url`` without any environment proxy."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Response(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())


# --------------------------------------------------------------------------------------
# child server processes


class ServerProcess:
    """A server started as ``argv`` in its own session; stdout/stderr go to ``log_file``.

    ``start()`` waits (bounded) until ``ready_url`` answers (and, if given, ``ready_marker``
    appears in the log); if the process dies or does not get ready in time the test fails
    with the log's tail.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        ready_url: str,
        log_file: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60,
        extra_logs: Sequence[Path] = (),
        ready_marker: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready_url = ready_url
        self.log_file = log_file
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.startup_timeout = startup_timeout
        self.extra_logs = list(extra_logs)
        self.ready_marker = ready_marker
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                self.fail(f"exited with code {self.process.returncode} during startup")
            try:
                http_get(self.ready_url, timeout=2)
                if self.ready_marker is None or self.ready_marker in self.log_file.read_text():
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                self.fail(f"did not answer {self.ready_url} within {self.startup_timeout} s")
            time.sleep(0.1)

    def logs(self) -> str:
        parts = []
        for path in (self.log_file, *self.extra_logs):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"--- {path} (last 4000 characters)\n{text[-4000:]}")
        return "\n".join(parts)

    def fail(self, message: str) -> None:
        command = " ".join(self.argv)
        pytest.fail(f"{self.name} {message}\ncommand: {command}\n{self.logs()}", pytrace=False)

    def stop(self) -> None:
        """SIGTERM to the whole process group; SIGKILL if it has not ended after 15 s."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def nginx_user_line() -> str:
    """``user root;`` when running as root: nginx would run its workers as ``nobody``, who
    cannot enter the test's private temporary directory."""
    return "user root;\n" if os.geteuid() == 0 else ""


def nginx_server(binary: str, prefix: Path, conf: Path, ready_url: str) -> ServerProcess:
    """nginx in the foreground with ``conf``; prefix and logs in ``prefix`` (not started)."""
    error_log = prefix / "nginx-error.log"
    return ServerProcess(
        "nginx",
        [binary, "-e", str(error_log), "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        ready_url,
        prefix / "nginx-stdout.log",
        extra_logs=[error_log],
        startup_timeout=20,
    )


def gunicorn_server(
    script: Path, worker_args: Sequence[str], log_dir: Path, port: int | None = None
) -> tuple[ServerProcess, str]:
    """gunicorn serving ``<script dir>/config.py``'s ``application`` on 127.0.0.1.

    Returns the (not yet started) process and its base URL.
    """
    port = port or free_port()
    argv = [
        venv_script("gunicorn"),
        *worker_args,
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(script.parent),
        "--timeout",
        "60",
        "--graceful-timeout",
        "5",
        f"{script.stem}:application",
    ]
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(
        "gunicorn", argv, url + "/", log_dir / f"gunicorn-{port}.log", cwd=script.parent
    )
    return server, url


# --------------------------------------------------------------------------------------
# checking generated URLs

# Namespace and schema URLs in capabilities documents and the demo viewer's background map
# (not links into our service).
FOREIGN_URL = re.compile(
    r"^https?://(www\.opengis\.net|schemas\.opengis\.net|www\.w3\.org|"
    r"inspire\.ec\.europa\.eu|www\.isotc211\.org|mapproxy\.org|openlayers\.org|"
    r"tile\.openstreetmap\.org)(/|$)"
)
ABSOLUTE_URL = re.compile(r"https?://[^\s\"'<>)]+")


def service_urls(text: str) -> list[str]:
    """Absolute URLs in a document that are not XML namespace/schema URLs."""
    return [url for url in ABSOLUTE_URL.findall(text) if not FOREIGN_URL.match(url)]


def assert_urls_start_with(text: str, prefix: str, minimum: int = 1) -> list[str]:
    """Every service URL in ``text`` starts with ``prefix``; at least ``minimum`` exist."""
    urls = service_urls(text)
    wrong = sorted({url for url in urls if not url.startswith(prefix)})
    assert not wrong, f"URLs not starting with {prefix}: {wrong[:10]}"
    assert len(urls) >= minimum, f"expected at least {minimum} URLs under {prefix}, got {urls}"
    return urls


LINK = re.compile(r'(?:href|src|action)="([^"]*)"|"url": "([^"]*)"')


def relative_links(page: str) -> list[str]:
    """href/src/form targets and the demo viewer's service URL of an HTML page, unescaped."""
    links = []
    for attribute, viewer_url in LINK.findall(page):
        link = html.unescape(attribute or viewer_url)
        if not ABSOLUTE_URL.match(link):
            links.append(link)
    return links
