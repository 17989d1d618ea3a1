"""Locking through the app: tile lock timeouts, stale locks of killed processes, lock dirs
apart from the cache, and ``concurrent_requests`` across threads and processes.

Lock holders and extra app instances run as subprocesses; every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, image_handler
from fakes.lock_holders import LockHolders
from mapproxy.grid.tile_grid import TileCoord

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file locking and signals")

TESTS_DIR = Path(__file__).resolve().parent.parent

CONFIG = """
services:
  wms:
  tms:
  wmts:
layers:
  - name: osm
    title: OSM
    sources: [osm_cache]
caches:
  osm_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [osm_wms]
    {cache_options}
sources:
  osm_wms:
    type: wms
    req:
      url: {url}/service
      layers: osm
    {source_options}
globals:
  {globals}
"""

WMS_GETMAP = {
    "SERVICE": "WMS",
    "REQUEST": "GetMap",
    "VERSION": "1.1.1",
    "LAYERS": "osm",
    "STYLES": "",
    "SRS": "EPSG:3857",
    "BBOX": "-20037508.342789244,-20037508.342789244,20037508.342789244,20037508.342789244",
    "WIDTH": "512",
    "HEIGHT": "512",
    "FORMAT": "image/png",
}

# Level 1 of GLOBAL_WEBMERCATOR (2x2 tiles) is one meta tile with the default 4x4 meta size;
# these requests all need it: WMTS 1/0/0, TMS 0/0/0 (TMS level 0 is level 1 here), GetMap.
LEVEL1_TILE_URLS = ("/wmts/osm/GLOBAL_WEBMERCATOR/1/0/0.png", "/tms/1.0.0/osm/EPSG3857/0/0/0.png")

HOLD_LOCK_SCRIPT = """
import sys, time
from mapproxy.tilemanager.locking import FileLock
lock = FileLock(sys.argv[1], timeout_seconds=10)
lock.lock()
print("locked", flush=True)
time.sleep(60)
"""


def config_text(
    url: str, cache_options: str = "", source_options: str = "", globals_text: str = ""
) -> str:
    return CONFIG.format(
        url=url,
        cache_options=cache_options,
        source_options=source_options,
        globals=globals_text or "image: {paletted: false}",
    )


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def hold_lock() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """``hold_lock(path)``: a subprocess holding the file lock ``path`` until killed."""
    holders = LockHolders()
    yield lambda path: holders.start(HOLD_LOCK_SCRIPT, path)
    holders.close()


def tile_manager(client: Client, cache: str = "osm_cache"):  # type: ignore[no-untyped-def]
    return client.app.built.caches[cache].tile_managers[0]  # type: ignore[attr-defined]


def level1_lock_path(client: Client) -> str:
    """The lock file the app takes to create the level 1 meta tile."""
    manager = tile_manager(client)
    main_coord = manager.meta_grid.meta_tile(TileCoord(0, 0, 1)).main_coord
    return str(manager.locker.lock_path(manager.cache.lock_cache_id, main_coord))


def kill_hard(holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=10)
    assert holder.returncode == -signal.SIGKILL


# --- lock_timeout ------------------------------------------------------------------------


def test_lock_timeout_defaults_to_http_client_timeout(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    client = make_app(config_text(upstream.url, globals_text="http: {client_timeout: 7}"))
    assert tile_manager(client).locker.timeout_seconds == 7.0


def test_lock_timeout_from_globals_and_per_cache(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    client = make_app(
        config_text(
            upstream.url,
            globals_text="http: {client_timeout: 7}\n  cache: {lock_timeout: 3}",
        )
    )
    assert tile_manager(client).locker.timeout_seconds == 3.0
    client = make_app(
        config_text(
            upstream.url,
            cache_options="lock_timeout: 0.5",
            globals_text="cache: {lock_timeout: 3}",
        )
    )
    assert tile_manager(client).locker.timeout_seconds == 0.5


def test_held_tile_lock_times_out_with_clean_service_errors(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    hold_lock: Callable[[str], subprocess.Popen[str]],
) -> None:
    client = make_app(config_text(upstream.url, cache_options="lock_timeout: 0.3"))
    hold_lock(level1_lock_path(client))
    message = "timeout while waiting for the tile creation lock (after 0.3s)"

    start = time.monotonic()
    wmts = client.get(LEVEL1_TILE_URLS[0])
    assert 0.3 <= time.monotonic() - start < 5
    assert wmts.status_code == 500
    report = etree.fromstring(wmts.data)
    assert report.tag == "{http://www.opengis.net/ows/1.1}ExceptionReport"
    namespaces = {"ows": "http://www.opengis.net/ows/1.1"}
    assert report.xpath("//ows:Exception/@exceptionCode", namespaces=namespaces) == [
        "NoApplicableCode"
    ]
    assert report.xpath("string(//ows:ExceptionText)", namespaces=namespaces) == message

    tms = client.get(LEVEL1_TILE_URLS[1])
    assert tms.status_code == 500
    assert etree.fromstring(tms.data).findtext("Message") == message

    wms = client.get("/service", query_string=WMS_GETMAP)
    assert wms.headers["Content-Type"].startswith("application/vnd.ogc.se_xml")
    exception_text = etree.fromstring(wms.data).findtext("ServiceException")
    assert exception_text is not None and message in exception_text

    for response in (wmts, tms, wms):
        assert response.headers["Cache-Control"] == "no-cache, no-store"
    assert upstream.requests == []


def test_tile_lock_of_a_killed_process_does_not_block(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    hold_lock: Callable[[str], subprocess.Popen[str]],
) -> None:
    client = make_app(config_text(upstream.url, cache_options="lock_timeout: 0.3"))
    lock_path = level1_lock_path(client)
    holder = hold_lock(lock_path)
    assert client.get(LEVEL1_TILE_URLS[0]).status_code == 500  # really held

    kill_hard(holder)
    assert os.path.exists(lock_path)  # the killed process left its lock file behind

    start = time.monotonic()
    response = client.get(LEVEL1_TILE_URLS[0])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    # a 200 within the 0.3 s lock timeout: the dead process's lock did not block
    assert time.monotonic() - start < 5
    assert len(upstream.requests) == 1
    assert client.get(LEVEL1_TILE_URLS[1]).status_code == 200  # now cached
    assert len(upstream.requests) == 1
    assert not os.path.exists(lock_path)  # removed by the next holder's unlock


def test_stale_lock_file_of_a_killed_process_is_purged_later(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    hold_lock: Callable[[str], subprocess.Popen[str]],
) -> None:
    client = make_app(
        config_text(upstream.url, cache_options="lock_timeout: 0.5\n    meta_size: [1, 1]")
    )
    lock_path = level1_lock_path(client)
    kill_hard(hold_lock(lock_path))
    # older than lock timeout + 10 s: stale
    old = time.time() - 60
    os.utime(lock_path, (old, old))

    # every 50th lock purges stale lock files; create 50 other tiles (level 3: 8x8)
    for index in range(50):
        x, y = divmod(index, 8)
        response = client.get(f"/wmts/osm/GLOBAL_WEBMERCATOR/3/{x}/{y}.png")
        assert response.status_code == 200
    assert not os.path.exists(lock_path)
    assert os.listdir(os.path.dirname(lock_path)) == []


# --- lock directories -------------------------------------------------------------------


def test_tile_lock_dir_on_a_local_disk_apart_from_the_cache_directory(
    make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "shared_storage" / "osm"
    lock_dir = tmp_path / "local_disk" / "locks"
    seen_lock_files: list[list[str]] = []

    def handler(request: Request) -> Response:
        seen_lock_files.append(sorted(os.listdir(lock_dir)))
        return image_handler()(request)

    upstream.handler = handler
    client = make_app(
        config_text(
            upstream.url,
            cache_options=f"cache: {{type: file, directory: {cache_dir}}}",
            globals_text=f"cache: {{tile_lock_dir: {lock_dir}}}",
        )
    )
    response = client.get(LEVEL1_TILE_URLS[0])
    assert response.status_code == 200
    # the lock was held in the local lock dir while the tile was created ...
    assert len(seen_lock_files) == 1
    (lock_files,) = seen_lock_files
    assert len(lock_files) == 1 and lock_files[0].endswith("-0-0-1.lck")
    # ... the tiles are in the cache directory, and no lock dir was made next to them
    assert os.listdir(lock_dir) == []
    assert (cache_dir / "01" / "000" / "000" / "000" / "000" / "000" / "000.png").exists()
    assert not any(path.name == "tile_locks" for path in tmp_path.rglob("*"))
    # the app takes its tile locks there
    assert level1_lock_path(client).startswith(str(lock_dir) + os.sep)


# --- concurrent_requests ----------------------------------------------------------------


class ConcurrencyRecorder:
    """Upstream handler that answers after ``delay`` seconds and records the peak
    number of requests in progress at once."""

    def __init__(self, upstream: FakeUpstream, delay: float = 0.15) -> None:
        self.upstream = upstream
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        self._image = image_handler()

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.upstream.sleep(self.delay)
        finally:
            with self._lock:
                self.active -= 1
        return self._image(request)


def get_in_threads(client: Client, urls: list[str]) -> list[int]:
    """GET ``urls`` at once, one thread each; the status codes in order."""
    statuses: list[int] = [0] * len(urls)
    barrier = threading.Barrier(len(urls))

    def fetch(index: int) -> None:
        own = Client(client.app)  # type: ignore[attr-defined]
        barrier.wait(timeout=10)
        statuses[index] = own.get(urls[index]).status_code

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return statuses


def level3_urls(tiles: range) -> list[str]:
    """WMTS URLs of distinct level 3 tiles (one meta tile each with meta_size 1x1)."""
    return [f"/wmts/osm/GLOBAL_WEBMERCATOR/3/{i % 8}/{i // 8}.png" for i in tiles]


APP_PROCESS_SCRIPT = """
import json, os, sys, threading, time
from werkzeug.test import Client
from mapproxy.wsgiapp import make_wsgi_app

config, go_file, urls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
app = make_wsgi_app(config)
print("ready", flush=True)
deadline = time.monotonic() + 20
while not os.path.exists(go_file) and time.monotonic() < deadline:
    time.sleep(0.005)
statuses = [0] * len(urls)

def fetch(index):
    statuses[index] = Client(app).get(urls[index]).status_code

threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(urls))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(30)
print(json.dumps(statuses), flush=True)
"""


def start_app_process(config: Path, go_file: Path, urls: list[str]) -> subprocess.Popen[str]:
    script = textwrap.dedent(APP_PROCESS_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(config), str(go_file), json.dumps(urls)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(TESTS_DIR),
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise AssertionError(process.communicate(timeout=10)[1])
    return process


def test_concurrent_requests_limit_upstream_requests_across_threads_and_processes(
    make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path: Path
) -> None:
    recorder = ConcurrencyRecorder(upstream)
    upstream.handler = recorder
    client = make_app(
        config_text(
            upstream.url,
            cache_options="meta_size: [1, 1]\n    meta_buffer: 0",
            source_options="concurrent_requests: 2",
        )
    )
    config = tmp_path / "mapproxy.yaml"
    go_file = tmp_path / "go"
    processes = [
        start_app_process(config, go_file, level3_urls(range(0, 3))),
        start_app_process(config, go_file, level3_urls(range(3, 6))),
    ]
    try:
        go_file.touch()
        statuses = get_in_threads(client, level3_urls(range(6, 10)))
        outputs = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
        statuses += json.loads(stdout.strip().splitlines()[-1])

    assert statuses == [200] * 10
    assert len(upstream.requests) == 10
    assert recorder.max_active == 2
    # the semaphore: lock files <md5(netloc)>.lck<i> in <base_dir>/tile_locks
    digest = hashlib.md5(f"127.0.0.1:{upstream.port}".encode()).hexdigest()
    lock_dir = tmp_path / "cache_data" / "tile_locks"
    assert sorted(os.listdir(lock_dir)) == [f"{digest}.lck0", f"{digest}.lck1"]


def test_global_concurrent_requests_limit_a_tile_source_in_lock_dir(
    make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path: Path
) -> None:
    recorder = ConcurrencyRecorder(upstream, delay=0.1)
    upstream.handler = recorder
    client = make_app(
        f"""
        services:
          wmts:
        layers:
          - name: osm
            title: OSM
            sources: [osm_cache]
        caches:
          osm_cache:
            grids: [GLOBAL_WEBMERCATOR]
            sources: [osm_tiles]
        sources:
          osm_tiles:
            type: tile
            grid: GLOBAL_WEBMERCATOR
            url: {upstream.url}/tiles/%(z)s/%(x)s/%(y)s.png
        globals:
          http:
            concurrent_requests: 1
          cache:
            lock_dir: ./request_locks
        """
    )
    statuses = get_in_threads(client, level3_urls(range(4)))
    assert statuses == [200] * 4
    assert len(upstream.requests) == 4
    assert recorder.max_active == 1
    digest = hashlib.md5(f"127.0.0.1:{upstream.port}".encode()).hexdigest()
    assert os.listdir(tmp_path / "request_locks") == [f"{digest}.lck0"]


def test_without_concurrent_requests_upstream_requests_run_in_parallel(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    recorder = ConcurrencyRecorder(upstream, delay=0.3)
    upstream.handler = recorder
    client = make_app(
        config_text(upstream.url, cache_options="meta_size: [1, 1]\n    meta_buffer: 0")
    )
    assert get_in_threads(client, level3_urls(range(4))) == [200] * 4
    assert recorder.max_active > 1
    assert tile_manager(client).sources[0].request_limiter is None


def test_waiting_for_a_request_slot_times_out_with_a_clean_error(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    tmp_path: Path,
    hold_lock: Callable[[str], subprocess.Popen[str]],
) -> None:
    client = make_app(
        config_text(
            upstream.url,
            source_options="concurrent_requests: 1",
            globals_text="cache: {lock_timeout: 0.3}",
        )
    )
    limiter = tile_manager(client).sources[0].request_limiter
    assert limiter.timeout_seconds == 0.3
    (slot_path,) = limiter.paths
    hold_lock(slot_path)
    response = client.get(LEVEL1_TILE_URLS[1])
    assert response.status_code == 500
    assert etree.fromstring(response.data).findtext("Message") == (
        "timeout while waiting for a free request slot for the source "
        "(concurrent_requests) (after 0.3s)"
    )
    assert upstream.requests == []
