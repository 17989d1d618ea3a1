"""File locks for tile creation and source concurrency, safe across threads and processes.

flock() locks belong to an open file description, so two threads of one process that
open the lock file separately would not exclude each other reliably. Every FileLock
therefore first takes an in-process lock for its path, then the file lock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Hashable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol

from mapproxy.errors import LockTimeout
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.util.fs import ensure_directory

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

log = logging.getLogger("mapproxy.lock")

# Lock files are only removed where an open file may be unlinked (not on Windows).
_CAN_REMOVE = os.name != "nt"

CLEANUP_INTERVAL = 50

TILE_LOCK_PURPOSE = "the tile creation lock"


class KeyedLocks:
    """In-process locks by key, created on demand and dropped when nobody uses them."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}

    def acquire(self, key: Hashable, timeout_seconds: float) -> bool:
        """Take the lock for ``key``; False if not acquired within the timeout (-1: wait)."""
        lock = self._checkout(key)
        if lock.acquire(timeout=timeout_seconds):
            return True
        self._checkin(key)
        return False

    def try_acquire(self, key: Hashable) -> bool:
        """Take the lock for ``key`` without waiting."""
        lock = self._checkout(key)
        if lock.acquire(blocking=False):
            return True
        self._checkin(key)
        return False

    def release(self, key: Hashable) -> None:
        """Release the lock for ``key`` taken by acquire/try_acquire."""
        with self._guard:
            lock, users = self._locks[key]
            lock.release()
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def _checkout(self, key: Hashable) -> threading.Lock:
        with self._guard:
            entry = self._locks.get(key)
            if entry is None:
                lock = threading.Lock()
                self._locks[key] = (lock, 1)
            else:
                lock = entry[0]
                self._locks[key] = (lock, entry[1] + 1)
            return lock

    def _checkin(self, key: Hashable) -> None:
        with self._guard:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


_path_locks = KeyedLocks()


def _try_lock_fd(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True
    try:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


class FileLock:
    """Exclusive lock on ``path`` across threads and processes; a context manager.

    Polls every ``poll_seconds`` and raises LockTimeout after ``timeout_seconds``; its
    message names the ``purpose`` ("the lock") and is safe to show to clients.
    With ``remove_on_unlock`` the lock file is deleted on release (while still held, so
    waiters notice that their file is gone and retry on the new one).
    """

    def __init__(
        self,
        path: str,
        timeout_seconds: float = 60.0,
        poll_seconds: float = 0.01,
        remove_on_unlock: bool = True,
        purpose: str = "the lock",
    ) -> None:
        self.path = path
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self.remove_on_unlock = remove_on_unlock and _CAN_REMOVE
        self.purpose = purpose
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"FileLock({self.path!r})"

    @property
    def is_locked(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def lock(self) -> None:
        """Acquire the lock; raises LockTimeout."""
        if self._fd is not None:
            raise RuntimeError(f"{self!r} is already locked by this object")
        deadline = time.monotonic() + self.timeout_seconds
        if not _path_locks.acquire(self.path, max(self.timeout_seconds, 0.0)):
            raise self._timeout()
        try:
            while True:
                fd = self._try_file_lock()
                if fd is not None:
                    self._fd = fd
                    return
                if time.monotonic() >= deadline:
                    raise self._timeout()
                time.sleep(self.poll_seconds)
        except BaseException:
            _path_locks.release(self.path)
            raise

    def try_lock(self) -> bool:
        """Acquire the lock if it is free right now."""
        if self._fd is not None:
            raise RuntimeError(f"{self!r} is already locked by this object")
        if not _path_locks.try_acquire(self.path):
            return False
        try:
            fd = self._try_file_lock()
        except BaseException:
            _path_locks.release(self.path)
            raise
        if fd is None:
            _path_locks.release(self.path)
            return False
        self._fd = fd
        return True

    def unlock(self) -> None:
        """Release the lock (and remove the lock file); no-op if not held."""
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        try:
            if self.remove_on_unlock:
                self._remove_own_file(fd)
            os.close(fd)  # closing the last descriptor releases the flock
        finally:
            _path_locks.release(self.path)

    def __enter__(self) -> FileLock:
        self.lock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unlock()

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            return os.open(self.path, flags, 0o666)
        except FileNotFoundError:
            ensure_directory(os.path.dirname(self.path) or ".")
            return os.open(self.path, flags, 0o666)

    def _try_file_lock(self) -> int | None:
        fd = self._open()
        try:
            if not _try_lock_fd(fd):
                os.close(fd)
                return None
            if self.remove_on_unlock and not self._is_current_file(fd):
                # The previous holder removed the file after we opened it; the lock
                # we got is on an orphan. Try again on whatever the path is now.
                os.close(fd)
                return None
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        return fd

    def _is_current_file(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_ino, on_disk.st_dev) == (held.st_ino, held.st_dev)

    def _remove_own_file(self, fd: int) -> None:
        # Only unlink if the path is still our file: a stale-lock purge may have removed
        # it and another process may now hold a new file under the same name.
        if self._is_current_file(fd):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _timeout(self) -> LockTimeout:
        return lock_timeout_error(self.purpose, self.timeout_seconds)


def lock_timeout_error(purpose: str, timeout_seconds: float) -> LockTimeout:
    """The LockTimeout after waiting ``timeout_seconds`` in vain for ``purpose`` ("the lock")."""
    return LockTimeout(f"timeout while waiting for {purpose} (after {timeout_seconds:g}s)")


def cleanup_stale_locks(lock_dir: str, max_age_seconds: float) -> int:
    """Remove ``*.lck`` files in ``lock_dir`` older than ``max_age_seconds``; returns count."""
    removed = 0
    limit = time.time() - max_age_seconds
    try:
        entries = os.scandir(lock_dir)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    with entries:
        for entry in entries:
            if not entry.name.endswith(".lck"):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as error:
                log.warning("could not remove stale lock %s: %s", entry.path, error)
    return removed


class TileLocking(Protocol):
    """What a tile manager needs from a locker (file, in-process or Redis locks)."""

    timeout_seconds: float

    def lock(self, cache_id: str, coord: TileCoord) -> AbstractContextManager[Any]:
        """An (unacquired) lock for ``coord`` of cache ``cache_id``; a context manager."""
        ...


class TileLocker:
    """Creates tile creation locks ``<lock_dir>/<cache_id>-<x>-<y>-<z>.lck``.

    Every ``CLEANUP_INTERVAL``-th lock purges lock files older than timeout + 10 s.
    """

    def __init__(
        self, lock_dir: str, timeout_seconds: float = 60.0, poll_seconds: float = 0.01
    ) -> None:
        self.lock_dir = lock_dir
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self._prefix = os.path.join(lock_dir, "")
        self._counter = itertools.count(1)

    def __repr__(self) -> str:
        return f"TileLocker({self.lock_dir!r})"

    def lock_path(self, cache_id: str, coord: TileCoord) -> str:
        """Path of the lock file for ``coord`` of cache ``cache_id``."""
        return f"{self._prefix}{cache_id}-{coord.x}-{coord.y}-{coord.z}.lck"

    def lock(self, cache_id: str, coord: TileCoord) -> FileLock:
        """An (unacquired) lock for ``coord``; use it as a context manager."""
        if next(self._counter) % CLEANUP_INTERVAL == 0:
            cleanup_stale_locks(self.lock_dir, self.timeout_seconds + 10)
        return FileLock(
            self.lock_path(cache_id, coord),
            self.timeout_seconds,
            self.poll_seconds,
            purpose=TILE_LOCK_PURPOSE,
        )


class _LocalLock:
    """In-process lock for one key; the context manager LocalTileLocker hands out."""

    __slots__ = ("_key", "_locked", "_locks", "_timeout_seconds")

    def __init__(self, locks: KeyedLocks, key: Hashable, timeout_seconds: float) -> None:
        self._locks = locks
        self._key = key
        self._timeout_seconds = timeout_seconds
        self._locked = False

    def __enter__(self) -> _LocalLock:
        if not self._locks.acquire(self._key, self._timeout_seconds):
            raise lock_timeout_error(TILE_LOCK_PURPOSE, self._timeout_seconds)
        self._locked = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._locked:
            self._locked = False
            self._locks.release(self._key)


class LocalTileLocker:
    """Tile locks between threads of this process only (no lock files)."""

    def __init__(self, timeout_seconds: float = 60.0) -> None:
        self.timeout_seconds = timeout_seconds
        self._locks = KeyedLocks()

    def lock(self, cache_id: str, coord: TileCoord) -> _LocalLock:
        """An (unacquired) lock for ``coord``; use it as a context manager."""
        return _LocalLock(self._locks, (cache_id, coord), self.timeout_seconds)


class SemaphoreLock:
    """Counting semaphore of ``count`` lock files ``<lock_dir>/<md5(key)>.lck<i>``.

    Use as a context manager (each ``with`` takes one slot; the object may be shared
    by threads) or via ``acquire()`` which returns the held slot lock.
    """

    purpose = "a free slot of the lock"

    def __init__(
        self,
        lock_dir: str,
        key: str,
        count: int,
        timeout_seconds: float = 60.0,
        poll_seconds: float = 0.01,
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.lock_dir = lock_dir
        self.count = count
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        digest = hashlib.md5(key.encode("utf-8")).hexdigest()
        self.paths = [os.path.join(lock_dir, f"{digest}.lck{i}") for i in range(count)]
        self._held = threading.local()

    def acquire(self) -> FileLock:
        """Take a free slot, waiting up to the timeout; raises LockTimeout."""
        deadline = time.monotonic() + self.timeout_seconds
        # Start at a random slot so waiting processes do not all hammer slot 0.
        start = random.randrange(self.count)
        order = self.paths[start:] + self.paths[:start]
        while True:
            for path in order:
                # The slot files are a small fixed set: keep them instead of removing.
                slot = FileLock(path, self.timeout_seconds, self.poll_seconds, False)
                if slot.try_lock():
                    return slot
            if time.monotonic() >= deadline:
                raise lock_timeout_error(self.purpose, self.timeout_seconds)
            time.sleep(self.poll_seconds)

    def __enter__(self) -> SemaphoreLock:
        slot = self.acquire()
        held = getattr(self._held, "slots", None)
        if held is None:
            held = self._held.slots = []
        held.append(slot)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._held.slots.pop().unlock()


class SourceConcurrencyLimiter(SemaphoreLock):
    """``concurrent_requests`` for one upstream: at most ``count`` requests to ``netloc``."""

    # no netloc here: the message reaches clients, who should not learn upstream hosts
    purpose = "a free request slot for the source (concurrent_requests)"

    def __init__(
        self,
        lock_dir: str,
        netloc: str,
        count: int,
        timeout_seconds: float = 60.0,
        poll_seconds: float = 0.01,
    ) -> None:
        super().__init__(lock_dir, netloc, count, timeout_seconds, poll_seconds)
        self.netloc = netloc
