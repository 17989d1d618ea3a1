from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from mapproxy.errors import LockTimeout
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.tilemanager import locking
from mapproxy.tilemanager.locking import (
    FileLock,
    LocalTileLocker,
    SemaphoreLock,
    SourceConcurrencyLimiter,
    TileLocker,
    cleanup_stale_locks,
)

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file locking semantics")


def run_script(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


HOLD_LOCK_SCRIPT = """
import sys, time
from mapproxy.tilemanager.locking import FileLock
with FileLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_lock_file_exists_while_held_and_is_removed_on_unlock(tmp_path):
    path = str(tmp_path / "locks" / "a.lck")
    lock = FileLock(path)
    with lock:
        assert lock.is_locked
        assert os.path.exists(path)
    assert not lock.is_locked
    assert not os.path.exists(path)


def test_lock_file_is_kept_without_remove_on_unlock(tmp_path):
    path = str(tmp_path / "a.lck")
    with FileLock(path, remove_on_unlock=False):
        pass
    assert os.path.exists(path)


def test_threads_are_mutually_exclusive(tmp_path):
    path = str(tmp_path / "shared.lck")
    inside = 0
    max_inside = 0
    guard = threading.Lock()

    def worker():
        nonlocal inside, max_inside
        for _ in range(20):
            with FileLock(path):
                with guard:
                    inside += 1
                    max_inside = max(max_inside, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max_inside == 1
    assert not os.path.exists(path)
    assert locking._path_locks._locks == {}


def test_lock_timeout_between_threads(tmp_path):
    path = str(tmp_path / "a.lck")
    with FileLock(path):
        errors = []

        def waiter():
            try:
                with FileLock(path, timeout_seconds=0.1):
                    pass
            except LockTimeout as error:
                errors.append(error)

        thread = threading.Thread(target=waiter)
        start = time.monotonic()
        thread.start()
        thread.join()
        assert time.monotonic() - start >= 0.1
    assert len(errors) == 1


def test_lock_timeout_when_another_process_holds_the_lock(tmp_path):
    path = str(tmp_path / "a.lck")
    holder = run_script(HOLD_LOCK_SCRIPT, path, "3")
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(LockTimeout), FileLock(path, timeout_seconds=0.2):
            pass
        elapsed = time.monotonic() - start
        assert 0.2 <= elapsed < 2.5
    finally:
        holder.kill()
        holder.communicate()


def test_lock_is_acquired_after_other_process_releases(tmp_path):
    path = str(tmp_path / "a.lck")
    holder = run_script(HOLD_LOCK_SCRIPT, path, "0.3")
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with FileLock(path, timeout_seconds=10):
            assert time.monotonic() - start >= 0.1
    finally:
        holder.communicate()


def test_processes_and_removal_keep_mutual_exclusion(tmp_path):
    # Each process increments a counter file under the lock; lost updates would show
    # if a waiter ever got a lock on an already removed lock file.
    counter = tmp_path / "counter"
    counter.write_text("0")
    script = """
    import sys
    from mapproxy.tilemanager.locking import FileLock
    lock_path, counter = sys.argv[1], sys.argv[2]
    for _ in range(40):
        with FileLock(lock_path, poll_seconds=0.001):
            with open(counter) as f:
                value = int(f.read())
            with open(counter, "w") as f:
                f.write(str(value + 1))
    """
    procs = [run_script(script, str(tmp_path / "c.lck"), str(counter)) for _ in range(4)]
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert counter.read_text() == "160"


def test_try_lock(tmp_path):
    path = str(tmp_path / "a.lck")
    first = FileLock(path)
    second = FileLock(path)
    assert first.try_lock()
    assert not second.try_lock()
    first.unlock()
    assert second.try_lock()
    second.unlock()


def make_lock_file(path, age_seconds):
    path.write_text("")
    then = time.time() - age_seconds
    os.utime(path, (then, then))


def test_cleanup_stale_locks_removes_only_old_lck_files(tmp_path):
    make_lock_file(tmp_path / "old.lck", 120)
    make_lock_file(tmp_path / "fresh.lck", 1)
    make_lock_file(tmp_path / "slot.lck0", 120)
    make_lock_file(tmp_path / "other.txt", 120)
    assert cleanup_stale_locks(str(tmp_path), 70) == 1
    assert sorted(os.listdir(tmp_path)) == ["fresh.lck", "other.txt", "slot.lck0"]
    assert cleanup_stale_locks(str(tmp_path / "missing"), 70) == 0


def test_purged_lock_of_a_holder_is_not_removed_from_the_new_holder(tmp_path):
    path = tmp_path / "a.lck"
    first = FileLock(str(path))
    first.lock()
    os.unlink(path)  # what a stale-lock purge does
    holder = run_script(HOLD_LOCK_SCRIPT, str(path), "3")
    try:
        assert holder.stdout.readline().strip() == "locked"
        first.unlock()
        assert path.exists()
        with pytest.raises(LockTimeout), FileLock(str(path), timeout_seconds=0.1):
            pass
    finally:
        holder.kill()
        holder.communicate()


def test_tile_locker_names_lock_files(tmp_path):
    locker = TileLocker(str(tmp_path), timeout_seconds=5)
    lock = locker.lock("abc123", TileCoord(4, 5, 6))
    assert lock.path == os.path.join(str(tmp_path), "abc123-4-5-6.lck")
    assert lock.timeout_seconds == 5
    with lock:
        assert os.listdir(tmp_path) == ["abc123-4-5-6.lck"]


def test_tile_locker_purges_stale_locks_every_50th_lock(tmp_path):
    locker = TileLocker(str(tmp_path), timeout_seconds=60)
    make_lock_file(tmp_path / "stale-1-1-1.lck", 71)
    make_lock_file(tmp_path / "young-1-1-1.lck", 50)
    for i in range(49):
        locker.lock("id", TileCoord(i, 0, 0))
    assert (tmp_path / "stale-1-1-1.lck").exists()
    locker.lock("id", TileCoord(0, 0, 0))
    assert not (tmp_path / "stale-1-1-1.lck").exists()
    assert (tmp_path / "young-1-1-1.lck").exists()


def test_local_tile_locker_excludes_threads():
    locker = LocalTileLocker(timeout_seconds=0.05)
    coord = TileCoord(0, 0, 0)
    errors = []

    def waiter():
        try:
            with locker.lock("c", coord):
                pass
        except LockTimeout as error:
            errors.append(error)

    with locker.lock("c", coord):
        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join()
        with locker.lock("c", TileCoord(1, 0, 0)):
            pass
    assert len(errors) == 1
    with locker.lock("c", coord):
        pass


def test_source_limiter_file_names(tmp_path):
    limiter = SourceConcurrencyLimiter(str(tmp_path), "example.org:8080", 3)
    digest = hashlib.md5(b"example.org:8080").hexdigest()
    assert limiter.paths == [os.path.join(str(tmp_path), f"{digest}.lck{i}") for i in range(3)]


def test_semaphore_allows_count_holders_and_times_out_beyond(tmp_path):
    limiter = SemaphoreLock(str(tmp_path), "host", 2, timeout_seconds=0.1)
    first = limiter.acquire()
    second = limiter.acquire()
    assert {first.path, second.path} == set(limiter.paths)
    with pytest.raises(LockTimeout):
        limiter.acquire()
    second.unlock()
    with limiter:
        pass
    first.unlock()


def test_semaphore_limits_concurrency_across_threads(tmp_path):
    limiter = SourceConcurrencyLimiter(str(tmp_path), "example.org", 2, timeout_seconds=10)
    inside = 0
    max_inside = 0
    guard = threading.Lock()

    def worker():
        nonlocal inside, max_inside
        for _ in range(5):
            with limiter:
                with guard:
                    inside += 1
                    max_inside = max(max_inside, inside)
                time.sleep(0.002)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max_inside == 2


def test_semaphore_counts_slots_held_by_other_processes(tmp_path):
    limiter = SemaphoreLock(str(tmp_path), "host", 1, timeout_seconds=0.2)
    holder = run_script(HOLD_LOCK_SCRIPT, limiter.paths[0], "3")
    try:
        # The holder uses a removing FileLock; wait for it to hold the slot file.
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockTimeout), limiter:
            pass
    finally:
        holder.kill()
        holder.communicate()
