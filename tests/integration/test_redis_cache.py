"""The ``redis`` cache against a real redis-server: keys, TTL, outages, Sentinel, reference."""

from __future__ import annotations

import logging
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from fakes.fake_upstream import FakeUpstream, image_handler
from mapproxy.cache.redis import RedisCache, RedisConnectionOptions
from mapproxy.grid.tile_grid import TileCoord

try:
    from .redis_server import RedisServer
    from .reference import ReferenceMissing, ReferenceServer, reference_python
except ImportError:
    from redis_server import RedisServer
    from reference import ReferenceMissing, ReferenceServer, reference_python

pytestmark = pytest.mark.integration


def _cache(server: RedisServer, prefix: str = "t", **kwargs: object) -> RedisCache:
    options = RedisConnectionOptions(host=server.host, port=server.port, **kwargs)  # type: ignore[arg-type]
    return RedisCache(prefix, options, retry_after_seconds=0)


def _raw(server: RedisServer, db: int = 0) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, db=db)


def test_tiles_round_trip_with_mapproxy_key_names_and_ttl(redis_server: RedisServer) -> None:
    cache = RedisCache(
        "osm_GLOBAL_WEBMERCATOR",
        RedisConnectionOptions(host=redis_server.host, port=redis_server.port, db=3),
        default_ttl=120,
    )
    cache.store_tiles({TileCoord(1, 2, 3): b"tile-a", TileCoord(0, 0, 0): b"tile-b"})
    raw = _raw(redis_server, db=3)
    assert sorted(raw.keys()) == [b"osm_GLOBAL_WEBMERCATOR-0-0-0", b"osm_GLOBAL_WEBMERCATOR-3-1-2"]
    assert raw.get("osm_GLOBAL_WEBMERCATOR-3-1-2") == b"tile-a"
    assert 118 <= raw.ttl("osm_GLOBAL_WEBMERCATOR-3-1-2") <= 120
    assert _raw(redis_server, db=0).keys() == []
    tile = cache.load_tile(TileCoord(1, 2, 3))
    assert tile is not None and tile.data == b"tile-a" and tile.timestamp is None
    assert cache.is_cached(TileCoord(1, 2, 3))
    assert not cache.is_cached(TileCoord(1, 2, 2))
    assert cache.load_tile(TileCoord(1, 2, 2)) is None
    stamp = cache.tile_timestamp(TileCoord(1, 2, 3))
    assert stamp is not None and abs(stamp - time.time()) < 3
    cache.remove_tile(TileCoord(1, 2, 3))
    assert raw.keys() == [b"osm_GLOBAL_WEBMERCATOR-0-0-0"]


def test_default_ttl_zero_stores_without_expiry(redis_server: RedisServer) -> None:
    cache = RedisCache("p", RedisConnectionOptions(port=redis_server.port), default_ttl=0)
    cache.store_tiles({TileCoord(0, 0, 0): b"x"})
    assert _raw(redis_server).ttl("p-0-0-0") == -1
    assert cache.tile_timestamp(TileCoord(0, 0, 0)) is None


def test_remove_level_tiles_before_uses_ttl_age(redis_server: RedisServer) -> None:
    cache = _cache(redis_server, prefix="a*b")
    other = _cache(redis_server, prefix="axb")
    tiles = {TileCoord(x, 0, 2): b"d" for x in range(3)}
    cache.store_tiles(tiles | {TileCoord(0, 0, 1): b"d"})
    other.store_tiles(tiles)
    raw = _raw(redis_server)
    raw.expire("a*b-2-0-0", 3600 - 600)  # stored ten minutes ago
    cache.remove_level_tiles_before(2, time.time() - 300)
    assert sorted(raw.keys("a\\*b-*")) == [b"a*b-1-0-0", b"a*b-2-1-0", b"a*b-2-2-0"]
    cache.remove_level_tiles_before(2, None)
    assert raw.keys("a\\*b-*") == [b"a*b-1-0-0"]
    assert len(raw.keys("axb-*")) == 3  # glob characters in the prefix are escaped


def test_outage_is_logged_and_reads_miss_until_redis_is_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _cache(redis_server, socket_timeout_seconds=0.5, connect_timeout_seconds=0.5)
    cache.store_tiles({TileCoord(0, 0, 0): b"x"})
    redis_server.stop()
    with caplog.at_level(logging.ERROR, logger="mapproxy.cache.redis"):
        started = time.monotonic()
        assert cache.load_tile(TileCoord(0, 0, 0)) is None
        assert not cache.is_cached(TileCoord(0, 0, 0))
        cache.store_tiles({TileCoord(0, 0, 1): b"y"})
        cache.remove_tile(TileCoord(0, 0, 0))
        assert time.monotonic() - started < 5
    errors = [r for r in caplog.records if r.name == "mapproxy.cache.redis"]
    assert len(errors) == 4 and all(r.levelno == logging.ERROR for r in errors)
    redis_server.start()
    cache.store_tiles({TileCoord(0, 0, 1): b"y"})
    tile = cache.load_tile(TileCoord(0, 0, 1))
    assert tile is not None and tile.data == b"y"


def test_failure_skips_redis_for_retry_window(redis_server: RedisServer) -> None:
    cache = RedisCache("w", RedisConnectionOptions(port=redis_server.port), retry_after_seconds=0.5)
    redis_server.stop()
    assert cache.load_tile(TileCoord(0, 0, 0)) is None
    redis_server.start()
    cache.store_tiles({TileCoord(0, 0, 0): b"lost"})  # still inside the window: dropped
    assert _raw(redis_server).keys() == []
    time.sleep(0.6)
    cache.store_tiles({TileCoord(0, 0, 0): b"kept"})
    assert _raw(redis_server).get("w-0-0-0") == b"kept"


def test_sentinel_connection_reaches_the_master(redis_server: RedisServer) -> None:
    sentinel_port = redis_server.start_sentinel("tiles")
    options = RedisConnectionOptions(
        sentinels=(("127.0.0.1", sentinel_port),), service_name="tiles"
    )
    cache = RedisCache("s", options)
    cache.store_tiles({TileCoord(1, 1, 1): b"via-sentinel"})
    assert _raw(redis_server).get("s-1-1-1") == b"via-sentinel"
    tile = cache.load_tile(TileCoord(1, 1, 1))
    assert tile is not None and tile.data == b"via-sentinel"


def _app_config(redis_port: int, upstream_url: str, extra: str = "") -> str:
    return f"""
services:
  wmts:
  tms:
layers:
  - name: l
    title: l
    sources: [c]
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wms]
    meta_size: [1, 1]
    cache:
      type: redis
      port: {redis_port}
      default_ttl: 600{extra}
sources:
  wms:
    type: wms
    req:
      url: {upstream_url}/service
      layers: base
"""


def test_wmts_tiles_are_cached_in_redis(make_app, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    with FakeUpstream(image_handler((0, 0, 255, 255))) as upstream:
        client = make_app(_app_config(redis_server.port, upstream.url))
        first = client.get("/wmts/l/GLOBAL_WEBMERCATOR/1/0/1.png")
        second = client.get("/wmts/l/GLOBAL_WEBMERCATOR/1/0/1.png")
        assert first.status_code == second.status_code == 200
        assert first.data == second.data
        assert len(upstream.requests) == 1
        # the south-west tile plus the default meta_buffer of 80 px
        bbox = "-20037508.342789244,-20037508.342789244,6261721.357121639,6261721.357121639"
        assert upstream.requests[0][1]["bbox"] == bbox
    raw = _raw(redis_server)
    assert raw.keys() == [b"c_GLOBAL_WEBMERCATOR-1-0-1"]
    assert raw.get("c_GLOBAL_WEBMERCATOR-1-0-1") == first.data
    assert 590 <= raw.ttl("c_GLOBAL_WEBMERCATOR-1-0-1") <= 600


def test_custom_prefix_and_db_from_config(make_app, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    with FakeUpstream() as upstream:
        client = make_app(
            _app_config(redis_server.port, upstream.url, "\n      prefix: my\n      db: 4")
        )
        assert client.get("/wmts/l/GLOBAL_WEBMERCATOR/0/0/0.png").status_code == 200
    assert _raw(redis_server, db=4).keys() == [b"my-0-0-0"]


def test_outage_serves_from_source_and_caching_resumes(  # type: ignore[no-untyped-def]
    make_app, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeUpstream() as upstream:
        client = make_app(
            _app_config(redis_server.port, upstream.url, "\n      socket_timeout: 0.5")
        )
        assert client.get("/wmts/l/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
        assert len(upstream.requests) == 1
        redis_server.stop()
        with caplog.at_level(logging.ERROR, logger="mapproxy.cache.redis"):
            started = time.monotonic()
            for _ in range(2):
                response = client.get("/wmts/l/GLOBAL_WEBMERCATOR/1/0/0.png")
                assert response.status_code == 200
                assert response.headers["Content-Type"] == "image/png"
            assert time.monotonic() - started < 10
        assert len(upstream.requests) == 3  # served from the source while Redis is down
        assert any(
            r.name == "mapproxy.cache.redis" and r.levelno == logging.ERROR for r in caplog.records
        )
        redis_server.start()  # empty again
        time.sleep(2.1)  # the cache's retry window
        assert client.get("/wmts/l/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
        assert client.get("/wmts/l/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
        assert len(upstream.requests) == 4
    assert _raw(redis_server).keys() == [b"c_GLOBAL_WEBMERCATOR-1-0-0"]


def test_reference_serves_our_tiles_and_we_serve_its(  # type: ignore[no-untyped-def]
    make_app, redis_server: RedisServer, tmp_path: Path
) -> None:
    try:
        python = reference_python()
    except ReferenceMissing as exc:
        pytest.skip(str(exc))
    with FakeUpstream(image_handler((0, 255, 0, 255))) as upstream:
        text = _app_config(redis_server.port, upstream.url)
        ours = make_app(text)
        ref_dir = tmp_path / "ref"
        ref_dir.mkdir()
        (ref_dir / "mapproxy.yaml").write_text(text)
        with ReferenceServer(ref_dir / "mapproxy.yaml", python=python) as ref:
            ours_tile = ours.get("/wmts/l/GLOBAL_WEBMERCATOR/2/1/3.png").data
            assert len(upstream.requests) == 1
            with urllib.request.urlopen(ref.url + "/wmts/l/GLOBAL_WEBMERCATOR/2/1/3.png") as r:
                assert r.read() == ours_tile
            assert len(upstream.requests) == 1  # the reference read our key
            with urllib.request.urlopen(ref.url + "/wmts/l/GLOBAL_WEBMERCATOR/2/3/0.png") as r:
                ref_tile = r.read()
            assert len(upstream.requests) == 2
            assert ours.get("/wmts/l/GLOBAL_WEBMERCATOR/2/3/0.png").data == ref_tile
            assert len(upstream.requests) == 2  # we read the reference's key
    keys = sorted(_raw(redis_server).keys())
    assert keys == [b"c_GLOBAL_WEBMERCATOR-2-1-3", b"c_GLOBAL_WEBMERCATOR-2-3-0"]
