"""Redis tile locks through the app and mapproxy-seed: one upstream request per meta tile,
also across instances that share a cache but not a lock dir.

Instances are simulated by two apps in this process (each has its own in-process locks)
or by two ``mapproxy-seed`` processes. The file-lock counterparts show the duplicate
requests that separate lock dirs cause.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, Handler, image_handler
from mapproxy.tilemanager.redis_lock import RedisTileLocker

try:
    from .redis_server import RedisServer
except ImportError:
    from redis_server import RedisServer

SEED_SCRIPT = str(Path(sys.executable).parent / "mapproxy-seed")

CONFIG = """
services:
  wmts:
layers:
  - name: osm
    title: OSM
    sources: [osm_cache]
caches:
  osm_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [osm_wms]
sources:
  osm_wms:
    type: wms
    req:
      url: {url}/service
      layers: osm
globals:
  image: {{paletted: false}}
  cache:
    base_dir: {base_dir}
    tile_lock_dir: {lock_dir}
    locking: {locking}
"""

# level 2 of GLOBAL_WEBMERCATOR: 4x4 tiles, one meta tile with the default meta_size
LEVEL2_URLS = [f"/wmts/osm/GLOBAL_WEBMERCATOR/2/{x}/{y}.png" for x in range(4) for y in range(4)]

SEED_YAML = """
seeds:
  world:
    caches: [osm_cache]
    levels:
      to: 3
"""
# meta tiles of levels 0-3 with meta_size 4x4: 1 + 1 + 1 + 4
SEED_META_TILES = 7


def config_text(upstream: FakeUpstream, base_dir: Path, lock_dir: Path, locking: str) -> str:
    return CONFIG.format(url=upstream.url, base_dir=base_dir, lock_dir=lock_dir, locking=locking)


def redis_locking(server: RedisServer, lease_seconds: float = 30) -> str:
    return f"{{type: redis, url: '{server.url}', lease_seconds: {lease_seconds}}}"


def gathering_handler(then: Handler, expected: int, timeout_seconds: float) -> Handler:
    """Hold each of the first ``expected`` requests until all of them arrived (or the
    timeout): makes concurrent duplicates certain when locks do not prevent them."""
    arrived = 0
    guard = threading.Lock()
    all_here = threading.Event()

    def handle(request: Request) -> Response:
        nonlocal arrived
        with guard:
            arrived += 1
            if arrived >= expected:
                all_here.set()
        all_here.wait(timeout_seconds)
        return then(request)

    return handle


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def fetch_all(clients: list[Client], urls: list[str]) -> list[tuple[int, str]]:
    """Request ``urls`` at once from threads, spread round robin over ``clients``."""
    barrier = threading.Barrier(len(urls))
    results: list[tuple[int, str]] = [(0, "")] * len(urls)

    def fetch(index: int) -> None:
        barrier.wait(timeout=20)
        response = clients[index % len(clients)].get(urls[index])
        results[index] = (response.status_code, response.headers["Content-Type"])

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_requests_for_one_meta_tile_fetch_it_once(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    upstream.handler = upstream.sleep_handler(0.3, image_handler((0, 0, 255, 255)))
    client = make_app(
        config_text(upstream, tmp_path / "data", tmp_path / "locks", redis_locking(redis_server))
    )
    locker = client.app.built.caches["osm_cache"].tile_managers[0].locker  # type: ignore[attr-defined]
    assert isinstance(locker, RedisTileLocker)
    raw = redis.Redis(port=redis_server.port)
    raw.config_resetstat()

    results = fetch_all([client], LEVEL2_URLS)

    assert results == [(200, "image/png")] * 16
    assert len(upstream.requests) == 1
    query = upstream.queries[0]
    assert (query["width"], query["height"]) == ("1024", "1024")  # the meta tile: 4x4 tiles
    assert raw.info("commandstats")["cmdstat_set"]["calls"] == 1  # threads coalesced
    assert raw.keys("mapproxy:lock:*") == []
    assert len(list((tmp_path / "data").rglob("*.png"))) == 16
    assert not (tmp_path / "locks").exists()  # no lock files with Redis locks


@pytest.mark.parametrize(("use_redis", "expected_requests"), [(True, 1), (False, 2)])
def test_two_instances_with_separate_lock_dirs(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    redis_server: RedisServer,
    tmp_path: Path,
    use_redis: bool,
    expected_requests: int,
) -> None:
    # File locks in separate lock dirs do not see each other, so both instances fetch the
    # meta tile; the Redis lock makes the second instance wait and reuse the tile.
    upstream.handler = gathering_handler(image_handler(), expected=2, timeout_seconds=2)
    locking = redis_locking(redis_server) if use_redis else "{type: file}"
    clients = [
        make_app(config_text(upstream, tmp_path / "data", tmp_path / name, locking))
        for name in ("locks_a", "locks_b")
    ]

    results = fetch_all(clients, LEVEL2_URLS)

    assert results == [(200, "image/png")] * 16
    assert len(upstream.requests) == expected_requests


def run_two_seeders(tmp_path: Path, upstream: FakeUpstream, locking: str) -> None:
    (tmp_path / "seed.yaml").write_text(SEED_YAML)
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            config_text(upstream, tmp_path / "shared_cache", tmp_path / f"locks_{name}", locking)
        )
    seeders = [
        subprocess.Popen(
            [SEED_SCRIPT, "-f", f"{name}.yaml", "-s", "seed.yaml", "-c", "2"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for seeder in seeders:
        try:
            out, err = seeder.communicate(timeout=120)
        finally:
            if seeder.poll() is None:
                seeder.kill()
                seeder.communicate(timeout=10)
        assert seeder.returncode == 0, out + err


def test_seeders_on_several_machines_fetch_each_meta_tile_once(
    upstream: FakeUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    # The first request is held until a second one arrives or 3 s pass: the other seeder
    # waits on the Redis lock meanwhile, beyond the 1 s lease (renewed while held).
    upstream.handler = gathering_handler(upstream.sleep_handler(0.1), expected=2, timeout_seconds=3)
    run_two_seeders(tmp_path, upstream, redis_locking(redis_server, lease_seconds=1))
    assert len(upstream.requests) == SEED_META_TILES
    assert len(list((tmp_path / "shared_cache").rglob("*.png"))) == 1 + 4 + 16 + 64
    assert redis.Redis(port=redis_server.port).keys("mapproxy:lock:*") == []


def test_seeders_with_separate_file_lock_dirs_fetch_meta_tiles_twice(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.handler = gathering_handler(
        upstream.sleep_handler(0.1), expected=2, timeout_seconds=10
    )
    run_two_seeders(tmp_path, upstream, "{type: file}")
    assert len(upstream.requests) > SEED_META_TILES
    assert len(list((tmp_path / "shared_cache").rglob("*.png"))) == 1 + 4 + 16 + 64
