"""``redis`` cache options without a server: config building, key names, client kinds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
import yaml

from mapproxy.cache.redis import RedisCache, RedisConnectionOptions
from mapproxy.config import load_configuration
from mapproxy.config.build import ConfigBuilder, cache_storage
from mapproxy.errors import ConfigurationError
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.util.registry import Registry


def _build(tmp_path: Path, backend: dict[str, Any], grids: list[str] | None = None) -> list[Any]:
    caches = {"rc": {"grids": grids or ["GLOBAL_WEBMERCATOR"], "sources": [], "cache": backend}}
    config = tmp_path / "mapproxy.yaml"
    config.write_text(yaml.safe_dump({"caches": caches}))
    built = ConfigBuilder(load_configuration(str(config))).cache("rc")
    return [manager.cache for manager in built.tile_managers]


def test_defaults_from_the_spec(tmp_path: Path) -> None:
    (cache,) = _build(tmp_path, {"type": "redis"})
    assert isinstance(cache, RedisCache)
    assert cache.prefix == "rc_GLOBAL_WEBMERCATOR"
    assert cache.default_ttl == 3600
    options = cache.options
    assert (options.host, options.port, options.db) == ("127.0.0.1", 6379, 0)
    assert cache.key(TileCoord(3, 4, 5)) == "rc_GLOBAL_WEBMERCATOR-5-3-4"
    (cache,) = _build(tmp_path, {"type": "redis", "socket_timeout": 0.5})
    assert cache.options.socket_timeout_seconds == cache.options.connect_timeout_seconds == 0.5


def test_prefix_is_per_grid_unless_set(tmp_path: Path) -> None:
    caches = _build(tmp_path, {"type": "redis"}, grids=["GLOBAL_WEBMERCATOR", "GLOBAL_GEODETIC"])
    assert [c.prefix for c in caches] == ["rc_GLOBAL_WEBMERCATOR", "rc_GLOBAL_GEODETIC"]
    caches = _build(
        tmp_path,
        {"type": "redis", "prefix": "x", "db": 2, "default_ttl": 60, "password": "pw"},
        grids=["GLOBAL_WEBMERCATOR", "GLOBAL_GEODETIC"],
    )
    assert [c.prefix for c in caches] == ["x", "x"]  # MapProxy shares the keys, too
    assert caches[0].options.db == 2 and caches[0].default_ttl == 60
    assert caches[0].options.password == "pw"


def test_sentinel_and_cluster_options(tmp_path: Path) -> None:
    (cache,) = _build(
        tmp_path,
        {"type": "redis", "sentinels": [["10.0.0.1", 26379]], "service_name": "tiles"},
    )
    assert cache.options.sentinels == (("10.0.0.1", 26379),)
    assert cache.options.service_name == "tiles"
    (cache,) = _build(
        tmp_path,
        {"type": "redis", "cluster": True, "startup_nodes": [["127.0.0.1", 7000]]},
    )
    assert cache.options.cluster and cache.options.startup_nodes == (("127.0.0.1", 7000),)


@pytest.mark.parametrize(
    ("backend", "key"),
    [
        ({"sentinels": [["h", 1]], "cluster": True}, "sentinels"),
        ({"startup_nodes": [["h", 1]]}, "startup_nodes"),
        ({"cluster": True, "db": 1}, "db"),
    ],
)
def test_conflicting_options_name_the_key(
    tmp_path: Path, backend: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigurationError, match=rf"caches\.rc\.cache\.{key}:"):
        _build(tmp_path, {"type": "redis", **backend})


def test_missing_redis_package_names_key_and_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        cache_storage,
        "CACHE_CLASSES",
        Registry("cache", {"redis": "mapproxy.cache.redis:RedisCache"}),
    )
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "mapproxy.cache.redis")
    with pytest.raises(ConfigurationError) as info:
        _build(tmp_path, {"type": "redis"})
    message = str(info.value)
    assert message.startswith("caches.rc.cache.type:")
    assert "pip install 'mapproxy[redis]'" in message


def test_client_kinds() -> None:
    single = RedisConnectionOptions(
        port=6390, db=2, socket_timeout_seconds=0.5, connect_timeout_seconds=0.3
    ).client()
    assert isinstance(single, redis.Redis)
    kwargs = single.connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == (6390, 2, 0.5)
    assert kwargs["socket_connect_timeout"] == 0.3
    tls = RedisConnectionOptions(ssl_ca_certs="/ca.pem").client()
    assert tls.connection_pool.connection_class is redis.SSLConnection
    assert tls.connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
    sentinel = RedisConnectionOptions(sentinels=(("127.0.0.1", 1),), service_name="m").client()
    assert sentinel.connection_pool.service_name == "m"


def test_unreachable_redis_never_raises() -> None:
    cache = RedisCache(
        "p",
        RedisConnectionOptions(port=1, socket_timeout_seconds=0.2, connect_timeout_seconds=0.2),
    )
    assert cache.load_tile(TileCoord(0, 0, 0)) is None
    cache.store_tiles({TileCoord(0, 0, 0): b"x"})
    assert cache.tile_timestamp(TileCoord(0, 0, 0)) is None
    cache.remove_level_tiles_before(0, None)
