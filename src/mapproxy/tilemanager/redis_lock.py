"""Tile creation locks in Redis, shared by every process and host that uses the same Redis.

A lock is the key ``<prefix><cache_id>-<x>-<y>-<z>`` set with ``SET NX PX`` to a random
token: a lease of ``lease_seconds``. While held, one daemon thread per process renews the
leases of all held locks every lease/3 (compare-and-PEXPIRE), so a long meta tile request
keeps its lock while a crashed holder blocks the others for at most one lease. Release is a
compare-and-delete, so a holder whose lease expired never deletes a successor's lock.

Inside a process, threads wanting the same key first wait on an in-process lock; only its
holder talks to Redis. On release, a lease is handed to the next local waiter instead of
being deleted, so N concurrent local requests for one meta tile take the Redis lock once.

Redis being unreachable never fails or blocks a request for long: the error is logged (once
per back-off period, logger ``mapproxy.lock``), Redis is skipped for ``retry_after_seconds``
and the in-process lock alone protects the tile creation meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import redis

from mapproxy.cache.redis import RedisConnectionOptions
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.tilemanager.locking import TILE_LOCK_PURPOSE, lock_timeout_error

log = logging.getLogger("mapproxy.lock")

T = TypeVar("T")

DEFAULT_PREFIX = "mapproxy:lock:"

_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

_RENEW_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class _RedisUnavailable(Exception):
    """Redis failed recently; callers fall back to in-process locking."""


class _Slot:
    """In-process state of one lock key: the thread lock, its users and the held lease."""

    __slots__ = ("key", "lock", "lost", "next_renewal", "state", "token", "users")

    def __init__(self, state: _LockState, key: str) -> None:
        self.state = state
        self.key = key
        self.lock = threading.Lock()
        self.users = 0  # threads holding or waiting for ``lock``
        self.token: str | None = None  # our Redis lease, if held
        self.lost = False  # the lease expired or was deleted while we held it
        self.next_renewal = 0.0


class _LeaseRenewer:
    """One daemon thread per process renewing the leases of all held Redis locks."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: set[_Slot] = set()
        self._started = False

    def add(self, slot: _Slot) -> None:
        """Renew ``slot``'s lease every lease/3 until discarded."""
        with self._cond:
            if not self._started:
                thread = threading.Thread(
                    target=self._run, name="mapproxy-lock-renewer", daemon=True
                )
                thread.start()
                self._started = True
            slot.next_renewal = time.monotonic() + slot.state.renew_interval_seconds
            self._slots.add(slot)
            self._cond.notify()

    def discard(self, slot: _Slot) -> None:
        """Stop renewing ``slot``."""
        with self._cond:
            self._slots.discard(slot)

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                due = self._wait_for_due(cond)
                work = [(slot, slot.token) for slot in due]
                for slot in due:
                    slot.next_renewal = time.monotonic() + slot.state.renew_interval_seconds
            for slot, token in work:
                if token is not None and not slot.state.renew(slot.key, token):
                    with cond:
                        if slot in self._slots and slot.token == token:
                            self._slots.discard(slot)
                            slot.lost = True
                    log.warning(
                        "tile lock %s expired or was taken over while still held "
                        "(lease_seconds too short or Redis restarted?)",
                        slot.key,
                    )

    def _wait_for_due(self, cond: threading.Condition) -> list[_Slot]:
        while True:
            now = time.monotonic()
            due = [slot for slot in self._slots if slot.next_renewal <= now]
            if due:
                return due
            if self._slots:
                cond.wait(min(slot.next_renewal for slot in self._slots) - now)
            else:
                cond.wait()


_renewer = _LeaseRenewer()
_states: weakref.WeakSet[_LockState] = weakref.WeakSet()


def _reset_after_fork() -> None:
    # Only the forking thread survives a fork: locks held by other threads of the parent
    # would never be released here, and its renewer thread is gone.
    global _renewer
    _renewer = _LeaseRenewer()
    for state in list(_states):
        state.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class _LockState:
    """What all lockers of one Redis lock configuration share in a process: the client,
    the in-process slots and the back-off after Redis errors."""

    def __init__(
        self,
        options: RedisConnectionOptions,
        prefix: str,
        lease_seconds: float,
        retry_after_seconds: float,
        client: Any,
    ) -> None:
        self.options = options
        self.prefix = prefix
        self.lease_ms = max(1, round(lease_seconds * 1000))
        self.renew_interval_seconds = lease_seconds / 3
        self.retry_after_seconds = retry_after_seconds
        self._client = client
        self._own_client = client is None
        self._guard = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._down_until = 0.0
        self._is_down = False
        self._log_guard = threading.Lock()
        self._token_prefix = f"{socket.gethostname()}:{os.getpid()}:"
        _states.add(self)

    # --- in-process slots ------------------------------------------------------------

    def checkout(self, key: str) -> _Slot:
        """The slot of ``key`` with this thread counted as a user."""
        with self._guard:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(self, key)
            slot.users += 1
            return slot

    def leave(self, slot: _Slot, holds_lock: bool) -> None:
        """Stop using ``slot``; hand a held lease to the next local waiter, else release it."""
        token = None
        with self._guard:
            slot.users -= 1
            hand_over = slot.users > 0 and slot.token is not None and not slot.lost
            if slot.users == 0 and self._slots.get(slot.key) is slot:
                del self._slots[slot.key]
            if not hand_over and slot.token is not None:
                token, slot.token = slot.token, None
                _renewer.discard(slot)
        if holds_lock:
            slot.lock.release()
        if token is not None:
            self.release(slot.key, token)

    def reset_after_fork(self) -> None:
        """Forget the parent's in-process locks and connections (in a forked child)."""
        self._guard = threading.Lock()
        self._log_guard = threading.Lock()
        self._slots = {}
        if self._own_client:
            self._client = None
        self._token_prefix = f"{socket.gethostname()}:{os.getpid()}:"

    # --- Redis -------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The pooled client, created on first use."""
        if self._client is None:
            with self._guard:
                if self._client is None:
                    self._client = self.options.client()
        return self._client

    def new_token(self) -> str:
        """A token unique to one acquisition (host and PID first, for debugging)."""
        return self._token_prefix + secrets.token_hex(12)

    def call(self, operation: Callable[[Any], T]) -> T:
        """Run ``operation(client)``; raises _RedisUnavailable during a back-off period."""
        now = time.monotonic()
        if now < self._down_until:
            raise _RedisUnavailable
        try:
            result = operation(self.client)
        except redis.RedisError as error:
            now = time.monotonic()
            with self._log_guard:  # log once per back-off period, not once per thread
                should_log = now >= self._down_until
                self._down_until = now + self.retry_after_seconds
            if should_log:
                log.error(
                    "Redis for tile locks at %s unavailable, using in-process locks only "
                    "for the next %gs: %s",
                    self._address(),
                    self.retry_after_seconds,
                    error,
                )
            self._is_down = True
            raise _RedisUnavailable from error
        if self._is_down:
            self._is_down = False
            log.warning("Redis for tile locks at %s is available again", self._address())
        return result

    def try_acquire(self, key: str, token: str) -> bool:
        """``SET key token NX PX lease``: True if we got the lease."""
        return bool(self.call(lambda c: c.set(key, token, nx=True, px=self.lease_ms)))

    def renew(self, key: str, token: str) -> bool:
        """Extend our lease; False only if it is no longer ours (errors count as renewed)."""
        try:
            return bool(self.call(lambda c: c.eval(_RENEW_SCRIPT, 1, key, token, self.lease_ms)))
        except _RedisUnavailable:
            return True

    def release(self, key: str, token: str) -> None:
        """Delete the key if it still holds ``token`` (errors: the lease just expires)."""
        with contextlib.suppress(_RedisUnavailable):
            self.call(lambda c: c.eval(_RELEASE_SCRIPT, 1, key, token))

    def _address(self) -> str:
        if self.options.cluster:
            return "cluster " + ",".join(f"{h}:{p}" for h, p in self.options.startup_nodes)
        if self.options.sentinels:
            return f"sentinel service {self.options.service_name or 'mymaster'}"
        return f"{self.options.host}:{self.options.port}/{self.options.db}"


class RedisLock:
    """The Redis tile lock of one key; a context manager handed out by RedisTileLocker."""

    __slots__ = ("_key", "_slot", "_state", "_timeout_seconds", "poll_seconds")

    def __init__(
        self,
        state: _LockState,
        key: str,
        timeout_seconds: float,
        poll_seconds: tuple[float, float],
    ) -> None:
        self._state = state
        self._key = key
        self._timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self._slot: _Slot | None = None

    def __repr__(self) -> str:
        return f"RedisLock({self._key!r})"

    @property
    def key(self) -> str:
        """The Redis key of this lock."""
        return self._key

    def __enter__(self) -> RedisLock:
        if self._slot is not None:
            raise RuntimeError(f"{self!r} is already locked by this object")
        deadline = time.monotonic() + self._timeout_seconds
        slot = self._state.checkout(self._key)
        if not slot.lock.acquire(timeout=max(self._timeout_seconds, 0.0)):
            self._state.leave(slot, holds_lock=False)
            raise lock_timeout_error(TILE_LOCK_PURPOSE, self._timeout_seconds)
        try:
            if slot.token is None or slot.lost:
                slot.token = None
                self._acquire_lease(slot, deadline)
        except BaseException:
            self._state.leave(slot, holds_lock=True)
            raise
        self._slot = slot
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            self._state.leave(slot, holds_lock=True)

    def _acquire_lease(self, slot: _Slot, deadline: float) -> None:
        state = self._state
        token = state.new_token()
        low, high = self.poll_seconds
        while True:
            try:
                acquired = state.try_acquire(slot.key, token)
            except _RedisUnavailable:
                return  # Redis is down: the in-process lock must do
            if acquired:
                slot.token = token
                slot.lost = False
                _renewer.add(slot)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise lock_timeout_error(TILE_LOCK_PURPOSE, self._timeout_seconds)
            # jitter: waiters of several processes should not poll in lockstep
            time.sleep(min(remaining, random.uniform(low, high)))


class RedisTileLocker:
    """Tile creation locks ``<prefix><cache_id>-<x>-<y>-<z>`` as Redis leases.

    ``lease_seconds`` bounds how long a crashed holder blocks others; waiting for a lock
    raises LockTimeout after ``timeout_seconds``. After a Redis error Redis is skipped for
    ``retry_after_seconds``. ``client`` replaces the client built from ``options`` (tests).
    """

    def __init__(
        self,
        options: RedisConnectionOptions | None = None,
        prefix: str = DEFAULT_PREFIX,
        lease_seconds: float = 30.0,
        timeout_seconds: float = 60.0,
        retry_after_seconds: float = 5.0,
        poll_seconds: tuple[float, float] = (0.01, 0.05),
        client: Any = None,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be greater than 0")
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self._state = _LockState(
            options or RedisConnectionOptions(),
            prefix,
            lease_seconds,
            retry_after_seconds,
            client,
        )

    def __repr__(self) -> str:
        return f"RedisTileLocker({self._state._address()}, prefix={self.prefix!r})"

    @property
    def prefix(self) -> str:
        """The key prefix of all locks."""
        return self._state.prefix

    @property
    def lease_seconds(self) -> float:
        """How long a lock lives without renewal."""
        return self._state.lease_ms / 1000

    @property
    def options(self) -> RedisConnectionOptions:
        """How Redis is reached."""
        return self._state.options

    def with_timeout(self, timeout_seconds: float) -> RedisTileLocker:
        """A locker with another lock timeout sharing this one's client, in-process locks
        and back-off state."""
        other = object.__new__(RedisTileLocker)
        other.timeout_seconds = timeout_seconds
        other.poll_seconds = self.poll_seconds
        other._state = self._state
        return other

    def lock_key(self, cache_id: str, coord: TileCoord) -> str:
        """The Redis key of the lock for ``coord`` of cache ``cache_id``."""
        return f"{self._state.prefix}{cache_id}-{coord.x}-{coord.y}-{coord.z}"

    def lock(self, cache_id: str, coord: TileCoord) -> RedisLock:
        """An (unacquired) lock for ``coord``; use it as a context manager."""
        return RedisLock(
            self._state, self.lock_key(cache_id, coord), self.timeout_seconds, self.poll_seconds
        )
