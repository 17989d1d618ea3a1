"""Scale-out: three gunicorn instances behind nginx (round robin) sharing one cache.

With Redis tile locks and a shared cache (Redis, S3 on a moto server, or one file cache
directory), a burst of concurrent requests for all tiles of 4 uncached meta tiles causes
exactly 4 upstream GetMap requests. With file locks
in local lock directories (a shared file cache, as on a network filesystem) the instances
fetch the same meta tiles several times. Fault tests: an instance killed while it holds a
lock blocks the others only until its lease expires; a Redis outage is logged and served
from the source, and caching resumes when Redis is back. docs/scaling.md shows the counts.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import redis

try:
    from . import deploy
    from .cluster import (
        Cluster,
        CountingWMS,
        burst,
        expected_tile,
        meta_bbox,
        same_bbox,
        tile_pixels,
    )
    from .redis_server import RedisServer, RedisServerMissing, find_redis_server
    from .serving import free_port
except ImportError:
    import deploy
    from cluster import (
        Cluster,
        CountingWMS,
        burst,
        expected_tile,
        meta_bbox,
        same_bbox,
        tile_pixels,
    )
    from redis_server import RedisServer, RedisServerMissing, find_redis_server
    from serving import free_port

pytestmark = pytest.mark.integration

LATENCY_SECONDS = 0.3  # long enough for the requests of one burst to overlap upstream
LEASE_SECONDS = 2
TILE_KEY = re.compile(rb"c_GLOBAL_WEBMERCATOR-(\d+)-(\d+)-(\d+)")

Tile = tuple[int, int, int]  # WMTS x, y (from the top), z


def meta_tile_block(z: int, column: int, row: int) -> list[Tile]:
    """All tiles of the 2x2 meta tiles in the 2x2 block at meta tile column/row."""
    tiles = []
    for meta_x in (column, column + 1):
        for meta_y in (row, row + 1):
            for x in (2 * meta_x, 2 * meta_x + 1):
                tiles += [(x, y, z) for y in (2 * meta_y, 2 * meta_y + 1)]
    return tiles  # the tiles of one meta tile are neighbours in the list


def tile_url(base: str, tile: Tile) -> str:
    x, y, z = tile
    return f"{base}/wmts/l/GLOBAL_WEBMERCATOR/{z}/{x}/{y}.png"


@functools.cache
def _expected(tile: Tile) -> np.ndarray:
    return expected_tile(*tile)


def assert_correct_tiles(responses: list[deploy.Response], tiles: list[Tile]) -> None:
    """Every response is a 200 PNG with the pixels cut from the upstream's meta image."""
    for response, tile in zip(responses, tiles, strict=True):
        assert response.status == 200, (tile, response)
        assert response.content_type == "image/png", (tile, response)
        assert np.array_equal(tile_pixels(response.body), _expected(tile)), tile


def assert_meta_requests(upstream: CountingWMS, tiles: list[Tile]) -> None:
    """Every upstream request is the 512x512 image of a meta tile of ``tiles``; each such
    meta tile was requested at least once."""
    wanted = {meta_bbox(*tile) for tile in tiles}
    requested = []
    for getmap in upstream.getmaps:
        assert (getmap.width, getmap.height) == (512, 512)
        matches = [bbox for bbox in wanted if same_bbox(bbox, getmap.bbox)]
        assert matches, f"unexpected upstream bbox {getmap.bbox}"
        requested.append(matches[0])
    assert set(requested) == wanted


def cached_tiles(client: redis.Redis) -> set[Tile]:
    """Tiles stored in Redis by the cache `c` (key ``c_GLOBAL_WEBMERCATOR-z-x-y``)."""
    tiles = set()
    for key in client.keys("c_GLOBAL_WEBMERCATOR-*"):
        match = TILE_KEY.fullmatch(key)
        assert match, key
        z, x, y = (int(group) for group in match.groups())
        tiles.add((x, y, z))
    return tiles


def redis_locking(server: RedisServer) -> str:
    """``globals.cache.locking`` for Redis leases of LEASE_SECONDS in ``server``."""
    return f"""
locking:
  type: redis
  url: {server.url}
  lease_seconds: {LEASE_SECONDS}
"""


def record(request: pytest.FixtureRequest, name: str, value: object) -> None:
    """Keep a measured number in the junit report and print it (``pytest -s``)."""
    request.node.user_properties.append((name, value))
    print(f"\n{request.node.name}: {name} = {value}")


# --------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the Redis cluster's cache and locks."""
    try:
        binary = find_redis_server()
    except RedisServerMissing as exc:
        pytest.skip(str(exc))
    with RedisServer(tmp_path_factory.mktemp("cluster-redis"), binary=binary) as server:
        yield server


@pytest.fixture(scope="module")
def counting_wms() -> Iterator[CountingWMS]:
    with CountingWMS(LATENCY_SECONDS) as wms:
        yield wms


@pytest.fixture
def upstream(counting_wms: CountingWMS) -> CountingWMS:
    """The counting WMS with no requests recorded and the default latency."""
    counting_wms.reset(LATENCY_SECONDS)
    return counting_wms


@pytest.fixture(scope="module")
def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory, shared_redis: RedisServer, counting_wms: CountingWMS
) -> Iterator[Cluster]:
    """Redis cache and Redis tile locks (lease of 2 s) shared by three instances."""
    cache = f"""
type: redis
host: {shared_redis.host}
port: {shared_redis.port}
default_ttl: 600
socket_timeout: 0.5
"""
    directory = tmp_path_factory.mktemp("redis-cluster")
    with Cluster(directory, counting_wms.url, cache, redis_locking(shared_redis)) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1 (stopped after the module)."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._port}"
    finally:
        server.stop()


@pytest.fixture
def redis_client(shared_redis: RedisServer) -> Iterator[redis.Redis]:
    """A client of the (emptied) shared Redis."""
    shared_redis.flushall()
    client = redis.Redis(host=shared_redis.host, port=shared_redis.port)
    yield client
    client.close()


# --------------------------------------------------------------------------------------
# one upstream request per meta tile


def test_redis_locks_fetch_each_meta_tile_once_across_instances(
    redis_cluster: Cluster,
    upstream: CountingWMS,
    redis_client: redis.Redis,
    request: pytest.FixtureRequest,
) -> None:
    tiles = meta_tile_block(3, 0, 0)  # 16 tiles of 4 meta tiles
    rounds = [tile for _ in range(4) for tile in tiles]
    responses = burst([tile_url(redis_cluster.url, tile) for tile in rounds])
    record(request, "upstream GetMap requests for 4 meta tiles", upstream.count)
    assert_correct_tiles(responses, rounds)
    assert upstream.count == 4
    assert_meta_requests(upstream, tiles)
    assert cached_tiles(redis_client) == set(tiles)
    # nginx spread the burst over all three instances
    used = redis_cluster.upstreams_used()
    assert all(used.get(url.removeprefix("http://"), 0) > 0 for url in redis_cluster.instance_urls)
    # a second burst is answered from Redis by every instance
    again = burst([tile_url(url, tile) for url in redis_cluster.instance_urls for tile in tiles])
    assert_correct_tiles(again, tiles * 3)
    assert upstream.count == 4


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_redis_locks_fetch_each_meta_tile_once_with_file_and_s3_caches(
    backend: str,
    tmp_path: Path,
    upstream: CountingWMS,
    shared_redis: RedisServer,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    if backend == "s3":
        boto3 = pytest.importorskip("boto3")
        endpoint = request.getfixturevalue("s3_endpoint")
        # dummy credentials for the instances (they inherit the environment); no ~/.aws
        for name, value in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config")),
            ("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials")),
        ]:
            monkeypatch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="cluster-tiles")
        cache = f"type: s3\nbucket_name: cluster-tiles\nendpoint_url: {endpoint}\ndirectory: c"
    else:
        cache = "type: file"
    shared = tmp_path / "shared"
    with Cluster(tmp_path, upstream.url, cache, redis_locking(shared_redis), shared) as cluster:
        tiles = meta_tile_block(3, 0, 0)
        rounds = [tile for _ in range(4) for tile in tiles]
        responses = burst([tile_url(cluster.url, tile) for tile in rounds])
        record(request, "upstream GetMap requests for 4 meta tiles", upstream.count)
        assert_correct_tiles(responses, rounds)
        assert upstream.count == 4
        assert_meta_requests(upstream, tiles)
    if backend == "s3":
        listing = s3.list_objects_v2(Bucket="cluster-tiles", Prefix="c/3/")
        assert len(listing.get("Contents", [])) == 16
    else:
        assert len(list((shared / "c_EPSG3857/03").rglob("*.png"))) == 16


def test_file_locks_in_local_lock_dirs_fetch_meta_tiles_repeatedly(
    tmp_path: Path, upstream: CountingWMS, request: pytest.FixtureRequest
) -> None:
    # one cache directory for all (the network filesystem), one tile_lock_dir per instance
    with Cluster(tmp_path, upstream.url, "type: file", base_dir=tmp_path / "shared") as cluster:
        tiles = meta_tile_block(3, 0, 0)
        rounds = [tile for _ in range(4) for tile in tiles]
        responses = burst([tile_url(cluster.url, tile) for tile in rounds])
        record(request, "upstream GetMap requests for 4 meta tiles", upstream.count)
        assert_correct_tiles(responses, rounds)
        assert_meta_requests(upstream, tiles)
        # duplicates across instances; the two workers of an instance share its lock dir
        assert 4 < upstream.count <= 12
        stored = sorted((tmp_path / "shared/c_EPSG3857/03").rglob("*.png"))
        assert len(stored) == 16  # in the one shared cache directory


# --------------------------------------------------------------------------------------
# faults


def test_killed_lock_holder_blocks_others_only_until_the_lease_expires(
    redis_cluster: Cluster,
    upstream: CountingWMS,
    redis_client: redis.Redis,
    request: pytest.FixtureRequest,
) -> None:
    tile = (20, 12, 5)
    upstream.latency_seconds = 30  # the holder's upstream request stays in flight
    holder = threading.Thread(
        target=lambda: _ignore_errors(tile_url(redis_cluster.instance_urls[0], tile)),
        daemon=True,
    )
    holder.start()
    try:
        upstream.wait_for_count(1, timeout_seconds=15)
        # the meta tile lock is a lease in Redis (default key prefix); nothing cached yet
        locks = redis_client.keys("mapproxy:lock:*")
        assert len(locks) == 1 and 0 < redis_client.pttl(locks[0]) <= LEASE_SECONDS * 1000
        assert not cached_tiles(redis_client)
        upstream.latency_seconds = LATENCY_SECONDS
        redis_cluster.kill_instance(0)
        killed = time.monotonic()
        others = [redis_cluster.instance_urls[1], redis_cluster.instance_urls[2], redis_cluster.url]
        finished: list[float] = []

        def fetch(base: str) -> deploy.Response:
            response = deploy.http_get(tile_url(base, tile), timeout=30)
            finished.append(time.monotonic() - killed)
            return response

        with ThreadPoolExecutor(len(others)) as pool:
            responses = list(pool.map(fetch, others))
        record(request, "seconds from the kill to the answers", sorted(finished))
        assert_correct_tiles(responses, [tile] * len(others))
        # they waited for the dead holder's lease (not ignoring the lock), but not forever
        assert min(finished) >= 0.5 and max(finished) < LEASE_SECONDS + 4, finished
        assert upstream.count == 2  # the killed holder's request and one take-over
        assert tile in cached_tiles(redis_client)

        def lock_released() -> None:  # after the rest of the meta tile is stored
            assert not redis_client.keys("mapproxy:lock:*")

        deploy.eventually(lock_released)
    finally:
        holder.join(timeout=5)
        redis_cluster.ensure_running(0)  # for the later tests


def _ignore_errors(url: str) -> None:
    with contextlib.suppress(OSError):  # the instance gets killed
        deploy.http_get(url, timeout=40)


def test_redis_outage_serves_from_source_and_caching_resumes(
    redis_cluster: Cluster,
    upstream: CountingWMS,
    shared_redis: RedisServer,
    redis_client: redis.Redis,
) -> None:
    first = (8, 8, 4)
    assert_correct_tiles([deploy.http_get(tile_url(redis_cluster.url, first))], [first])
    assert upstream.count == 1
    assert first in cached_tiles(redis_client)  # stored before the answer, the rest after

    def whole_meta_tile_cached() -> None:
        assert cached_tiles(redis_client) == {(8, 8, 4), (9, 8, 4), (8, 9, 4), (9, 9, 4)}

    deploy.eventually(whole_meta_tile_cached)

    shared_redis.stop()
    try:
        tiles = [first] * 3 + meta_tile_block(4, 6, 6)[:4] * 2
        started = time.monotonic()
        responses = burst([tile_url(redis_cluster.url, tile) for tile in tiles], threads=6)
        outage_seconds = time.monotonic() - started
        assert_correct_tiles(responses, tiles)
        assert outage_seconds < 20  # Redis timeouts are 0.5 s; nothing waits for long
        assert upstream.count >= 3  # the cached tile and the new meta tile came from the source
        logs = redis_cluster.instance_logs()
        error = f"mapproxy.cache.redis ERROR unable to read from Redis cache {shared_redis.host}"
        assert error in logs, logs[-3000:]
        assert "mapproxy.lock ERROR" in logs, logs[-3000:]  # the locks fell back, logged
    finally:
        shared_redis.start()  # empty

    # after a failure each process skips Redis for a while: 2 s for the cache, 5 s for locks
    time.sleep(5.2)
    before = upstream.count
    meta_tile = meta_tile_block(4, 7, 7)[:4]
    rounds = meta_tile * 3
    assert_correct_tiles(burst([tile_url(redis_cluster.url, t) for t in rounds]), rounds)
    assert upstream.count == before + 1  # locked in Redis again
    assert set(meta_tile) <= cached_tiles(redis_client)  # and cached there
    repeats = [tile_url(url, meta_tile[0]) for url in redis_cluster.instance_urls]
    assert_correct_tiles(burst(repeats), [meta_tile[0]] * len(repeats))
    assert upstream.count == before + 1  # every instance reads it from Redis
