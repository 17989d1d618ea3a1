"""Redis tile locks against a real redis-server: leases, renewal, tokens, outages, coalescing.

Other processes holding a lock run as subprocesses (``hold_redis_lock``); every wait is
bounded.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from fakes.lock_holders import LockHolders
from mapproxy.cache.redis import RedisConnectionOptions
from mapproxy.errors import LockTimeout
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.tilemanager.redis_lock import RedisTileLocker

try:
    from .redis_server import RedisServer
except ImportError:
    from redis_server import RedisServer

pytestmark = pytest.mark.skipif(os.name == "nt", reason="signals")

COORD = TileCoord(4, 8, 5)
KEY = "mapproxy:lock:cache-4-8-5"

# argv: port lease_seconds hold_seconds; prints "locked", holds, prints "released <time>"
HOLD_SCRIPT = """
import sys, time
from mapproxy.cache.redis import RedisConnectionOptions
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.tilemanager.redis_lock import RedisTileLocker
locker = RedisTileLocker(
    RedisConnectionOptions(port=int(sys.argv[1])), lease_seconds=float(sys.argv[2])
)
with locker.lock("cache", TileCoord(4, 8, 5)):
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
print("released", time.time(), flush=True)
"""


def _locker(server: RedisServer, **kwargs: object) -> RedisTileLocker:
    options = RedisConnectionOptions(
        port=server.port, socket_timeout_seconds=1.0, connect_timeout_seconds=1.0
    )
    return RedisTileLocker(options, **kwargs)  # type: ignore[arg-type]


def _raw(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port)


@pytest.fixture
def hold_redis_lock() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``hold_redis_lock(server, lease, hold)``: a process holding the lock of ``COORD``."""
    holders = LockHolders()

    def start(server: RedisServer, lease: float, hold: float) -> subprocess.Popen[str]:
        return holders.start(HOLD_SCRIPT, str(server.port), str(lease), str(hold))

    yield start
    holders.close()


def test_lock_is_a_lease_with_a_token_and_release_deletes_it(redis_server: RedisServer) -> None:
    locker = _locker(redis_server, lease_seconds=2)
    raw = _raw(redis_server)
    with locker.lock("cache", COORD):
        token = raw.get(KEY)
        assert token is not None
        assert token.decode().startswith(f"{socket.gethostname()}:{os.getpid()}:")
        assert 0 < raw.pttl(KEY) <= 2000
    assert raw.exists(KEY) == 0
    with locker.lock("cache", COORD):
        assert raw.get(KEY) != token  # a new token per acquisition
    assert locker.lock_key("cache", COORD) == KEY


def test_lock_excludes_another_process(
    redis_server: RedisServer, hold_redis_lock: Callable[..., subprocess.Popen[str]]
) -> None:
    holder = hold_redis_lock(redis_server, 30, 1.0)
    locker = _locker(redis_server, timeout_seconds=20)
    with locker.lock("cache", COORD):
        acquired_at = time.time()
    out, _ = holder.communicate(timeout=20)
    released_at = float(out.split()[-1])
    assert released_at <= acquired_at
    assert holder.returncode == 0


def test_killed_holder_blocks_only_until_its_lease_expires(
    redis_server: RedisServer, hold_redis_lock: Callable[..., subprocess.Popen[str]]
) -> None:
    holder = hold_redis_lock(redis_server, 1, 60)
    time.sleep(1.5)  # longer than the lease: the holder's renewals keep it alive
    assert _raw(redis_server).exists(KEY) == 1
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=10)
    start = time.monotonic()
    with _locker(redis_server, timeout_seconds=10).lock("cache", COORD):
        waited = time.monotonic() - start
    assert waited < 2.5  # at most one lease (1 s) plus polling


def test_renewal_keeps_the_lock_beyond_its_lease(redis_server: RedisServer) -> None:
    holder = _locker(redis_server, lease_seconds=1)
    other = _locker(redis_server, lease_seconds=1, timeout_seconds=0.5)
    raw = _raw(redis_server)
    with holder.lock("cache", COORD):
        time.sleep(2.5)
        assert 0 < raw.pttl(KEY) <= 1000
        start = time.monotonic()
        with pytest.raises(LockTimeout) as excinfo, other.lock("cache", COORD):
            pass
        assert 0.5 <= time.monotonic() - start < 2
    assert str(excinfo.value) == "timeout while waiting for the tile creation lock (after 0.5s)"
    assert raw.exists(KEY) == 0
    with other.lock("cache", COORD):
        assert raw.exists(KEY) == 1


def test_release_keeps_a_lock_now_owned_by_another_token(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _raw(redis_server)
    with caplog.at_level(logging.WARNING, logger="mapproxy.lock"):
        with _locker(redis_server, lease_seconds=0.6).lock("cache", COORD):
            raw.set(KEY, "someone-else", px=5000)  # as if our lease expired and was taken
            time.sleep(0.5)  # a renewal (every 0.2 s) notices
        assert raw.get(KEY) == b"someone-else"
    lost = [r for r in caplog.records if "expired or was taken over" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING


def test_redis_outage_falls_back_to_local_locks_and_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    locker = _locker(redis_server, retry_after_seconds=1.0)
    with locker.lock("cache", COORD):
        pass
    redis_server.stop()
    inside = 0
    overlaps = []

    def work() -> None:
        nonlocal inside
        with locker.lock("cache", COORD):
            inside += 1
            overlaps.append(inside)
            time.sleep(0.02)
            inside -= 1

    with caplog.at_level(logging.ERROR, logger="mapproxy.lock"):
        start = time.monotonic()
        threads = [threading.Thread(target=work) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert time.monotonic() - start < 3
    assert overlaps == [1] * 5  # still exclusive within the process
    errors = [r for r in caplog.records if r.name == "mapproxy.lock"]
    assert len(errors) == 1  # once per back-off period, not per lock
    assert "unavailable, using in-process locks only" in errors[0].getMessage()

    redis_server.start()
    time.sleep(1.1)  # the back-off period
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mapproxy.lock"), locker.lock("cache", COORD):
        assert _raw(redis_server).exists(KEY) == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"Redis for tile locks at 127.0.0.1:{redis_server.port}/0 is available again"
    ]


def test_unresponsive_redis_delays_a_lock_only_by_the_socket_timeout() -> None:
    # accepts connections (backlog) but never answers
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        options = RedisConnectionOptions(
            port=port, socket_timeout_seconds=0.3, connect_timeout_seconds=0.3
        )
        locker = RedisTileLocker(options, retry_after_seconds=30)
        start = time.monotonic()
        with locker.lock("cache", COORD):
            pass
        first = time.monotonic() - start
        start = time.monotonic()
        with locker.lock("cache", COORD):
            pass
        second = time.monotonic() - start
    assert first < 1.5
    assert second < 0.1  # backing off: Redis is not asked again


def test_threads_of_one_process_take_the_redis_lock_once(redis_server: RedisServer) -> None:
    locker = _locker(redis_server)
    raw = _raw(redis_server)
    raw.config_resetstat()
    barrier = threading.Barrier(8)
    inside = 0
    overlaps = []

    def work() -> None:
        nonlocal inside
        barrier.wait(timeout=10)
        with locker.lock("cache", COORD):
            inside += 1
            overlaps.append(inside)
            time.sleep(0.05)
            inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert overlaps == [1] * 8
    stats = raw.info("commandstats")
    assert stats["cmdstat_set"]["calls"] == 1  # one SET NX for all 8 (handed over)
    assert stats["cmdstat_eval"]["calls"] == 1  # one release
    assert raw.exists(KEY) == 0


def test_lockers_with_other_timeouts_share_in_process_locks(redis_server: RedisServer) -> None:
    locker = _locker(redis_server, timeout_seconds=30)
    short = locker.with_timeout(0.2)
    assert short.timeout_seconds == 0.2 and locker.timeout_seconds == 30
    with locker.lock("cache", COORD):
        start = time.monotonic()
        with pytest.raises(LockTimeout), short.lock("cache", COORD):
            pass
        assert time.monotonic() - start < 1
    with short.lock("cache", COORD):
        pass
