"""The WSGI module from `mapproxy-util create -t wsgi-app` under real gunicorn workers.

For each worker class a bounded burst of concurrent WMS, WMTS and /tiles requests (all in
the four meta tiles of one level) must succeed, and the MapServer behind the cache must see
exactly one GetMap per meta tile although several worker processes (and threads or
greenlets in each) ask for the same meta tile at once.

gunicorn 26 removed its eventlet worker (eventlet itself is unmaintained), so with a
current gunicorn the eventlet case runs the same module under eventlet's own WSGI server in
two processes sharing the port; gunicorn's `-k eventlet -w 4` is used where it still exists.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from . import deploy
except ImportError:
    import deploy

pytestmark = pytest.mark.integration

# Level 3 of GLOBAL_WEBMERCATOR has 8 x 8 tiles, i.e. 2 x 2 meta tiles of 4 x 4.
LEVEL = 3
TILES = 2**LEVEL
META = 4
HALF_WORLD = 20037508.342789244
TILE_SPAN = 2 * HALF_WORLD / TILES

REQUESTS = 64
CLIENT_THREADS = 16

EVENTLET_RUNNER = """\
import eventlet

eventlet.monkey_patch()

import sys

import eventlet.wsgi

sys.path.insert(0, sys.argv[1])
from config import application  # noqa: E402

sock = eventlet.listen(("127.0.0.1", int(sys.argv[2])), reuse_port=True)
print("listening", flush=True)
eventlet.wsgi.server(sock, application, log_output=False, max_size=200)
"""


def gunicorn_has_eventlet_worker() -> bool:
    from gunicorn.workers import SUPPORTED_WORKERS

    return "eventlet" in SUPPORTED_WORKERS


WORKERS = {
    "sync": ["-k", "sync", "-w", "2"],
    "gthread": ["-k", "gthread", "-w", "2", "--threads", "4"],
    "eventlet": ["-k", "eventlet", "-w", "4"],
    "gevent": ["-k", "gevent", "-w", "2"],
}
WORKER_MODULES = {"sync": "gunicorn", "gthread": "gunicorn", "eventlet": "eventlet"}


@dataclass(frozen=True)
class Tile:
    x: int  # column from the west
    y: int  # row from the north (WMTS)

    @property
    def meta(self) -> tuple[int, int]:
        return (self.x // META, self.y // META)


def wmts_path(tile: Tile) -> str:
    return f"/wmts/cached/GLOBAL_WEBMERCATOR/{LEVEL:02d}/{tile.x}/{tile.y}.png"


def tiles_path(tile: Tile) -> str:
    # TMS rows count from the south
    return f"/tiles/cached/EPSG3857/{LEVEL}/{tile.x}/{TILES - 1 - tile.y}.png"


def wms_path(tile: Tile) -> str:
    """GetMap of the 2 x 2 tiles starting at ``tile``, at exactly the level's resolution."""
    minx = -HALF_WORLD + tile.x * TILE_SPAN
    maxy = HALF_WORLD - tile.y * TILE_SPAN
    bbox = f"{minx!r},{maxy - 2 * TILE_SPAN!r},{minx + 2 * TILE_SPAN!r},{maxy!r}"
    return (
        "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS=cached&STYLES="
        f"&SRS=EPSG:3857&BBOX={bbox}&WIDTH=512&HEIGHT=512&FORMAT=image/png"
    )


def request_mix(seed: int = 7) -> list[str]:
    """64 paths: for each meta tile 8 WMTS tiles, 4 /tiles tiles and 4 WMS GetMaps."""
    paths = []
    for mx in range(TILES // META):
        for my in range(TILES // META):
            inner = [
                Tile(mx * META + dx, my * META + dy) for dy in range(META) for dx in range(META)
            ]
            paths += [wmts_path(t) for t in inner[0::2]]
            paths += [tiles_path(t) for t in inner[1::4]]
            paths += [wms_path(t) for t in inner if t.x % 2 == 0 and t.y % 2 == 0]
    random.Random(seed).shuffle(paths)
    assert len(paths) == REQUESTS
    return paths


@pytest.fixture
def app_script(tmp_path: Path, mapserver) -> Path:  # type: ignore[no-untyped-def]
    return deploy.write_app(tmp_path, mapserver.url)


def start_eventlet_processes(script: Path, log_dir: Path) -> tuple[list[deploy.ServerProcess], str]:
    runner = log_dir / "eventlet_serve.py"
    runner.write_text(EVENTLET_RUNNER)
    port = deploy.free_port()
    url = f"http://127.0.0.1:{port}"
    servers = [
        deploy.ServerProcess(
            f"eventlet WSGI server {n}",
            [sys.executable, str(runner), str(script.parent), str(port)],
            url + "/",
            log_dir / f"eventlet-{n}.log",
            cwd=script.parent,
            ready_marker="listening",
        )
        for n in range(2)
    ]
    return servers, url


@pytest.fixture(params=list(WORKERS))
def served(request: pytest.FixtureRequest, app_script: Path, tmp_path: Path) -> Iterator[str]:
    """Base URL of the app under one worker class."""
    worker = request.param
    deploy.require_python_module("gunicorn")
    deploy.require_python_module(WORKER_MODULES.get(worker, worker))
    if worker == "eventlet" and not gunicorn_has_eventlet_worker():
        servers, url = start_eventlet_processes(app_script, tmp_path)
    else:
        server, url = deploy.gunicorn_server(app_script, WORKERS[worker], tmp_path)
        servers = [server]
    started: list[deploy.ServerProcess] = []
    try:
        for server in servers:
            started.append(server.start())
        yield url
    finally:
        for server in started:
            server.stop()


def test_concurrent_requests_one_upstream_getmap_per_meta_tile(served: str, mapserver) -> None:  # type: ignore[no-untyped-def]
    mapserver.reset()  # forget anything the startup probe may have caused
    mapserver.delay = 0.3  # keep the meta tile requests in flight while others queue up
    paths = request_mix()

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        responses = list(pool.map(lambda path: deploy.http_get(served + path, timeout=60), paths))

    failures = [
        (path, response)
        for path, response in zip(paths, responses, strict=True)
        if response.status != 200 or response.content_type != "image/png"
    ]
    assert not failures, failures[:5]
    assert all(response.body.startswith(b"\x89PNG") for response in responses)

    getmaps = [q for q in mapserver.requests if q.get("REQUEST", "").lower() == "getmap"]
    bboxes = sorted(q.get("BBOX") for q in getmaps)
    assert len(getmaps) == (TILES // META) ** 2, bboxes
    assert len(set(bboxes)) == len(getmaps)
    assert mapserver.count(request="GetMap") == 4

    # everything is cached now: a second round needs no upstream request at all
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        again = list(pool.map(lambda path: deploy.http_get(served + path, timeout=60), paths[:16]))
    assert [r.status for r in again] == [200] * 16
    assert mapserver.count(request="GetMap") == 4


def test_capabilities_name_the_gunicorn_address(app_script: Path, tmp_path: Path) -> None:
    deploy.require_python_module("gunicorn")
    server, url = deploy.gunicorn_server(app_script, WORKERS["gthread"], tmp_path)
    with server:
        wms = deploy.http_get(url + "/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1")
        wmts = deploy.http_get(url + "/wmts/1.0.0/WMTSCapabilities.xml")
    assert wms.status == 200, wms
    assert wms.content_type == "application/vnd.ogc.wms_xml"
    deploy.assert_urls_start_with(wms.text, url + "/service", minimum=3)
    assert wmts.status == 200, wmts
    deploy.assert_urls_start_with(wmts.text, url + "/wmts", minimum=2)
