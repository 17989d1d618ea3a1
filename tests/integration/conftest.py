"""Fixtures for integration tests that need real external services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

try:  # works whether or not tests/ is turned into a package later
    from .mapserver import MapServerMissing, MapServerWMS, find_mapserv
    from .redis_server import RedisServer, RedisServerMissing, find_redis_server
except ImportError:
    from mapserver import MapServerMissing, MapServerWMS, find_mapserv
    from redis_server import RedisServer, RedisServerMissing, find_redis_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using the MapServer fixture are integration tests."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "mapserver_wms" in fixtures or "redis_server" in fixtures:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mapserver_wms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MapServerWMS]:
    """A MapServer WMS on 127.0.0.1 with layers `raster` and `vector` (see mapserver.py).

    Never skips: without `mapserv` the test fails, pointing at
    scripts/install-system-deps.sh.
    """
    try:
        binary = find_mapserv()
    except MapServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    wms = MapServerWMS(tmp_path_factory.mktemp("mapserver"), mapserv=binary)
    wms.start()
    try:
        yield wms
    finally:
        wms.stop()


@pytest.fixture
def mapserver(mapserver_wms: MapServerWMS) -> MapServerWMS:
    """`mapserver_wms` with an empty request log and no delay/override hooks."""
    mapserver_wms.reset()
    yield mapserver_wms
    mapserver_wms.reset()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh, empty redis-server on 127.0.0.1 (``host``/``port``; ``stop``/``start``
    for outages), stopped by PID afterwards; skips if redis-server is not installed."""
    try:
        binary = find_redis_server()
    except RedisServerMissing as exc:
        pytest.skip(str(exc))
    with RedisServer(tmp_path_factory.mktemp("redis"), binary=binary) as server:
        yield server
