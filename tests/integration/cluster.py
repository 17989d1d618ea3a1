"""A MapProxy cluster on 127.0.0.1 for the scale-out tests (test_cluster.py).

* `CountingWMS`: a threaded WMS in this process whose GetMap answer is the deterministic
  image of benchmarks/upstream.py for the requested BBOX/WIDTH/HEIGHT. It records every
  GetMap (bbox and size) and can delay its answers (``latency_seconds``, read when a request
  arrives) so that concurrent requests overlap.
* `Cluster`: three gunicorn instances of one mapproxy.yaml (three copies differing only in
  ``globals.cache.tile_lock_dir``), each with two gthread workers and a logging setup that
  writes MapProxy's log records to the instance's log file, behind an nginx load balancer
  (round robin, no sticky sessions). Every process runs in its own session and is stopped
  by PID (process group).
"""

from __future__ import annotations

import importlib
import io
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from PIL import Image

try:
    from . import deploy
except ImportError:
    import deploy

REPO_ROOT = Path(__file__).resolve().parents[2]

# GLOBAL_WEBMERCATOR: half the width of the world in metres, tiles of 256 px, origin nw.
WORLD_HALF = 20037508.342789244
TILE_PX = 256


def _benchmark_upstream() -> ModuleType:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module("benchmarks.upstream")


# --------------------------------------------------------------------------------------
# the counting upstream


@dataclass(frozen=True)
class GetMap:
    """One GetMap the upstream answered: bbox in metres and size in pixels."""

    bbox: tuple[float, float, float, float]
    width: int
    height: int


class _WMSHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _WMSServer

    def do_GET(self) -> None:
        query = {key.upper(): value for key, value in parse_qsl(urlsplit(self.path).query)}
        owner = self.server.owner
        status, content_type, body = owner.render(query)
        if status == 200:
            owner.record(query)
            delay = owner.latency_seconds
            if delay > 0:
                owner.released.wait(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client (a killed instance) is gone
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""


class _WMSServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, owner: CountingWMS) -> None:
        super().__init__(("127.0.0.1", 0), _WMSHandler)
        self.owner = owner


class CountingWMS:
    """Deterministic WMS on 127.0.0.1 counting its GetMap requests (a context manager)."""

    def __init__(self, latency_seconds: float = 0.0) -> None:
        self.latency_seconds = latency_seconds
        self.released = threading.Event()  # set on close: delayed answers go out at once
        self._lock = threading.Lock()
        self._getmaps: list[GetMap] = []
        self._upstream = _benchmark_upstream()
        self._server = _WMSServer(self)
        self.url = f"http://127.0.0.1:{self._server.server_port}/service"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CountingWMS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def render(self, query: dict[str, str]) -> tuple[int, str, bytes]:
        """Status, content type and body for one request (upper-case keys)."""
        result: tuple[int, str, bytes] = self._upstream.getmap(query)
        return result

    def record(self, query: dict[str, str]) -> None:
        """Count one answered GetMap."""
        minx, miny, maxx, maxy = (float(value) for value in query["BBOX"].split(","))
        getmap = GetMap((minx, miny, maxx, maxy), int(query["WIDTH"]), int(query["HEIGHT"]))
        with self._lock:
            self._getmaps.append(getmap)

    def reset(self, latency_seconds: float) -> None:
        """Forget the recorded requests and set the latency."""
        with self._lock:
            self._getmaps.clear()
        self.latency_seconds = latency_seconds

    @property
    def getmaps(self) -> list[GetMap]:
        """The GetMap requests so far, in arrival order."""
        with self._lock:
            return list(self._getmaps)

    @property
    def count(self) -> int:
        """Number of GetMap requests so far."""
        with self._lock:
            return len(self._getmaps)

    def wait_for_count(self, count: int, timeout_seconds: float) -> None:
        """Wait until at least ``count`` GetMap requests arrived (AssertionError otherwise)."""
        deadline = time.monotonic() + timeout_seconds
        while self.count < count:
            assert time.monotonic() < deadline, f"{self.count} GetMap requests, not {count}"
            time.sleep(0.02)


# --------------------------------------------------------------------------------------
# tile geometry and expected pixels


def meta_bbox(x: int, y: int, z: int, meta: int = 2) -> tuple[float, float, float, float]:
    """Bbox (metres) of the ``meta`` x ``meta`` meta tile containing WMTS tile x/y/z.

    Valid for levels where the number of tiles per row is a multiple of ``meta``, so the
    meta tiles are the same counted from the north or the south.
    """
    size = 2 * WORLD_HALF / 2**z
    column, row = x // meta * meta, y // meta * meta
    minx = -WORLD_HALF + column * size
    maxy = WORLD_HALF - row * size
    return (minx, maxy - meta * size, minx + meta * size, maxy)


def expected_tile(x: int, y: int, z: int, meta: int = 2) -> np.ndarray:
    """RGB pixels of WMTS tile x/y/z cut from the upstream image of its meta tile."""
    pixels: np.ndarray = _benchmark_upstream().render(
        meta_bbox(x, y, z, meta), meta * TILE_PX, meta * TILE_PX
    )
    top, left = (y % meta) * TILE_PX, (x % meta) * TILE_PX
    return pixels[top : top + TILE_PX, left : left + TILE_PX]


def tile_pixels(body: bytes) -> np.ndarray:
    """Decode a tile as RGB pixels."""
    with Image.open(io.BytesIO(body)) as image:
        return np.asarray(image.convert("RGB"))


def same_bbox(a: Sequence[float], b: Sequence[float]) -> bool:
    """Bboxes equal up to the rounding of the request's number formatting."""
    return all(abs(p - q) < 1e-3 for p, q in zip(a, b, strict=True))


# --------------------------------------------------------------------------------------
# the cluster

MAPPROXY_YAML = """\
services:
  wmts:
layers:
  - name: l
    title: Cluster test layer
    sources: [c]
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wms]
    format: image/png
    meta_size: [2, 2]
    meta_buffer: 0
    cache:
{cache}
sources:
  wms:
    type: wms
    req:
      url: {upstream_url}
      layers: base
globals:
  image:
    paletted: false
  cache:
    base_dir: {base_dir}
    tile_lock_dir: {tile_lock_dir}
{locking}"""

# Errors of the app's loggers go to stderr, i.e. into the instance's log file.
WSGI_SCRIPT = """\
import logging
logging.basicConfig(
    level=logging.INFO, format="%(asctime)s [%(process)d] %(name)s %(levelname)s %(message)s"
)
from mapproxy.wsgiapp import make_wsgi_app
application = make_wsgi_app({config!r})
"""

NGINX_CONF = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;

events {{
    worker_connections 512;
}}

http {{
    log_format cluster '$request_uri $status $upstream_addr';
    access_log {tmp}/nginx-access.log cluster;
    client_body_temp_path {tmp}/nginx-client-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;

    # round robin (nginx's default), no sticky sessions
    upstream mapproxy_cluster {{
{servers}
    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
            proxy_pass http://mapproxy_cluster;
            proxy_set_header Host $http_host;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in text.strip().splitlines())


class Cluster:
    """Three gunicorn instances of one config behind nginx; ``start()``/``stop()``."""

    def __init__(
        self,
        directory: Path,
        upstream_url: str,
        cache_yaml: str,
        locking_yaml: str = "",
        base_dir: Path | None = None,
        instances: int = 3,
    ) -> None:
        self.directory = directory
        self.nginx_binary = deploy.require_executable("nginx", "/usr/sbin/nginx")
        deploy.require_python_module("gunicorn")
        shared_base = base_dir or directory / "cache_data"
        self.instances: list[deploy.ServerProcess] = []
        self.instance_urls: list[str] = []
        for number in range(instances):
            home = directory / f"instance{number}"
            home.mkdir(parents=True, exist_ok=True)
            config = home / "mapproxy.yaml"
            config.write_text(
                MAPPROXY_YAML.format(
                    cache=_indent(cache_yaml, 6),
                    upstream_url=upstream_url,
                    base_dir=shared_base,
                    tile_lock_dir=home / "tile_locks",  # local to the "host"
                    locking=_indent(locking_yaml, 4) if locking_yaml else "",
                )
            )
            script = home / "cluster_app.py"
            script.write_text(WSGI_SCRIPT.format(config=str(config)))
            server, url = deploy.gunicorn_server(
                script, ["-k", "gthread", "-w", "2", "--threads", "4"], home
            )
            self.instances.append(server)
            self.instance_urls.append(url)
        self.port = deploy.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.nginx: deploy.ServerProcess | None = None

    def start(self) -> Cluster:
        """Start the instances (in parallel) and then nginx; stops everything on failure."""
        try:
            with ThreadPoolExecutor(len(self.instances)) as pool:
                for future in [pool.submit(server.start) for server in self.instances]:
                    future.result()
            self.nginx = self._nginx().start()
        except BaseException:
            self.stop()
            raise
        return self

    def _nginx(self) -> deploy.ServerProcess:
        tmp = self.directory
        servers = "\n".join(
            f"        server {url.removeprefix('http://')};" for url in self.instance_urls
        )
        conf = tmp / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                user=deploy.nginx_user_line(),
                tmp=tmp,
                servers=servers,
                port=self.port,
            )
        )
        ready_url = self.url + "/wmts/1.0.0/WMTSCapabilities.xml"
        return deploy.nginx_server(self.nginx_binary, tmp, conf, ready_url)

    def stop(self) -> None:
        """Stop nginx and every instance by PID (process group)."""
        if self.nginx is not None:
            self.nginx.stop()
        for server in self.instances:
            server.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill_instance(self, number: int) -> None:
        """SIGKILL instance ``number`` (master and workers: its process group)."""
        process = self.instances[number].process
        assert process is not None and process.poll() is None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def ensure_running(self, number: int) -> None:
        """Start instance ``number`` again if it is not running (same port and config)."""
        process = self.instances[number].process
        if process is None or process.poll() is not None:
            self.instances[number].start()

    def instance_logs(self) -> str:
        """The log files of all instances (gunicorn and MapProxy's log records)."""
        return "\n".join(server.log_file.read_text(errors="replace") for server in self.instances)

    def upstreams_used(self) -> dict[str, int]:
        """Requests nginx passed to each instance (``host:port``), from its access log."""
        counts: dict[str, int] = {}
        log = self.directory / "nginx-access.log"
        for line in log.read_text().splitlines():
            for address in line.split()[-1].split(","):
                counts[address.strip()] = counts.get(address.strip(), 0) + 1
        return counts


# --------------------------------------------------------------------------------------
# load


def burst(
    urls: Sequence[str], threads: int = 16, timeout_seconds: float = 60
) -> list[deploy.Response]:
    """GET every URL, ``threads`` at a time; the responses in the order of ``urls``."""

    def get(url: str) -> deploy.Response:
        return deploy.http_get(url, timeout=timeout_seconds)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(get, urls))
