"""``globals.cache.locking`` / ``caches.<name>.locking``: models, errors and built lockers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from mapproxy.cache.redis import RedisConnectionOptions
from mapproxy.config.build import ConfigBuilder
from mapproxy.config.build.tile_locking import TILE_LOCKERS
from mapproxy.config.validate import validate_config
from mapproxy.errors import ConfigurationError
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.tilemanager.locking import TileLocker
from mapproxy.tilemanager.redis_lock import RedisTileLocker

WMS_SOURCE = {"type": "wms", "req": {"url": "http://127.0.0.1:9/wms", "layers": "a"}}


def raw_config(
    global_locking: dict[str, Any] | None = None, cache_locking: dict[str, Any] | None = None
) -> dict[str, Any]:
    osm: dict[str, Any] = {"grids": ["GLOBAL_WEBMERCATOR"], "sources": ["wms"]}
    if cache_locking is not None:
        osm["locking"] = cache_locking
    raw: dict[str, Any] = {
        "sources": {"wms": WMS_SOURCE},
        "caches": {
            "osm": osm,
            "other": {"grids": ["GLOBAL_WEBMERCATOR"], "sources": ["wms"], "lock_timeout": 5},
        },
    }
    if global_locking is not None:
        raw["globals"] = {"cache": {"locking": global_locking}}
    return raw


def locker(raw: dict[str, Any], tmp_path: Path, cache: str = "osm") -> Any:
    config = validate_config(raw)
    config.config_file = str(tmp_path / "mapproxy.yaml")
    return ConfigBuilder(config).cache(cache).tile_managers[0].locker


def test_default_is_file_locks_in_the_tile_lock_dir(tmp_path: Path) -> None:
    built = locker(raw_config(), tmp_path)
    assert type(built) is TileLocker
    assert built.lock_dir == str(tmp_path / "cache_data" / "tile_locks")
    built = locker(raw_config({"type": "file", "url": "redis://ignored:1/0"}), tmp_path)
    assert type(built) is TileLocker


def test_redis_locking_from_globals(tmp_path: Path) -> None:
    raw = raw_config(
        {
            "type": "redis",
            "url": "redis://user:s%40cret@10.1.2.3:6380/3",
            "lease_seconds": 12,
            "prefix": "tiles:",
            "socket_timeout": 0.5,
        }
    )
    built = locker(raw, tmp_path)
    assert isinstance(built, RedisTileLocker)
    assert built.prefix == "tiles:"
    assert built.lease_seconds == 12
    assert built.options == RedisConnectionOptions(
        host="10.1.2.3",
        port=6380,
        db=3,
        username="user",
        password="s@cret",
        socket_timeout_seconds=0.5,
        connect_timeout_seconds=0.5,
    )
    assert built.lock_key("osm-id", TileCoord(1, 2, 3)) == "tiles:osm-id-1-2-3"
    assert built.timeout_seconds == 60  # http.client_timeout, as for file locks
    other = locker(raw, tmp_path, "other")
    assert other.timeout_seconds == 5


def test_redis_defaults(tmp_path: Path) -> None:
    built = locker(raw_config({"type": "redis"}), tmp_path)
    assert built.prefix == "mapproxy:lock:"
    assert built.lease_seconds == 30
    assert (built.options.host, built.options.port, built.options.db) == ("127.0.0.1", 6379, 0)
    assert built.options.socket_timeout_seconds == 1.0
    assert not built.options.use_ssl
    assert locker(raw_config({"type": "redis", "url": "rediss://h"}), tmp_path).options.use_ssl


def test_caches_with_the_same_redis_settings_share_one_lock_state(tmp_path: Path) -> None:
    config = validate_config(raw_config({"type": "redis"}))
    config.config_file = str(tmp_path / "mapproxy.yaml")
    build = ConfigBuilder(config)
    first = build.cache("osm").tile_managers[0].locker
    second = build.cache("other").tile_managers[0].locker
    assert first._state is second._state
    assert (first.timeout_seconds, second.timeout_seconds) == (60, 5)


def test_cache_locking_replaces_the_global_one(tmp_path: Path) -> None:
    raw = raw_config({"type": "redis"}, cache_locking={"type": "file"})
    assert type(locker(raw, tmp_path)) is TileLocker
    assert isinstance(locker(raw, tmp_path, "other"), RedisTileLocker)
    raw = raw_config(cache_locking={"type": "redis", "url": "redis://h:1/2", "lease_seconds": 3})
    built = locker(raw, tmp_path)
    assert (built.options.host, built.options.port, built.options.db) == ("h", 1, 2)
    assert built.lease_seconds == 3
    assert type(locker(raw, tmp_path, "other")) is TileLocker


def test_sentinel_and_cluster_options(tmp_path: Path) -> None:
    sentinel = locker(
        raw_config(
            {
                "type": "redis",
                "url": "redis://:pw@ignored/1",
                "sentinels": [["127.0.0.1", 26379]],
                "service_name": "locks",
            }
        ),
        tmp_path,
    )
    assert sentinel.options.sentinels == (("127.0.0.1", 26379),)
    assert sentinel.options.service_name == "locks"
    assert (sentinel.options.db, sentinel.options.password) == (1, "pw")
    cluster = locker(
        raw_config({"type": "redis", "cluster": True, "startup_nodes": [["10.0.0.1", 7000]]}),
        tmp_path,
    )
    assert cluster.options.cluster
    assert cluster.options.startup_nodes == (("10.0.0.1", 7000),)


@pytest.mark.parametrize(
    ("global_locking", "cache_locking", "message"),
    [
        (
            {"type": "redis", "url": "http://h:1/0"},
            None,
            r"globals\.cache\.locking\.url: 'http://h:1/0' is not valid: .*expected redis://",
        ),
        (
            {"type": "redis", "url": "redis://h:1/x"},
            None,
            r"globals\.cache\.locking\.url: .* database must be a number",
        ),
        (
            {"type": "redis", "url": "redis://h:port/0"},
            None,
            r"globals\.cache\.locking\.url: .* invalid port",
        ),
        (
            {"type": "redis", "lease_seconds": 0},
            None,
            r"globals\.cache\.locking\.lease_seconds: 0 is not valid: .*greater than 0",
        ),
        (
            {"type": "zookeeper"},
            None,
            r"globals\.cache\.locking\.type: invalid value 'zookeeper', expected 'file' or 'redis'",
        ),
        (
            None,
            {"type": "redis", "socket_timeout": -1},
            r"caches\.osm\.locking\.socket_timeout: -1 is not valid",
        ),
    ],
)
def test_invalid_locking_values_name_the_key(
    global_locking: dict[str, Any] | None,
    cache_locking: dict[str, Any] | None,
    message: str,
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        validate_config(raw_config(global_locking, cache_locking))


@pytest.mark.parametrize(
    ("locking", "message"),
    [
        (
            {"type": "redis", "sentinels": [["h", 1]], "cluster": True},
            r"^globals\.cache\.locking\.sentinels: cannot be combined with cluster: true$",
        ),
        (
            {"type": "redis", "startup_nodes": [["h", 1]]},
            r"^globals\.cache\.locking\.startup_nodes: needs cluster: true$",
        ),
        (
            {"type": "redis", "cluster": True, "url": "redis://h/2"},
            r"^globals\.cache\.locking\.url: Redis Cluster only has db 0$",
        ),
    ],
)
def test_inconsistent_redis_options_are_build_errors(
    locking: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        locker(raw_config(locking), tmp_path)


def test_redis_locking_without_the_redis_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TILE_LOCKERS, "_loaded", {})
    monkeypatch.delitem(sys.modules, "mapproxy.tilemanager.redis_lock")
    monkeypatch.delitem(sys.modules, "mapproxy.cache.redis")
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigurationError) as excinfo:
        locker(raw_config(cache_locking={"type": "redis"}), tmp_path)
    assert str(excinfo.value) == (
        "caches.osm.locking.type: lock type 'redis' needs redis: pip install 'mapproxy[redis]'"
    )
