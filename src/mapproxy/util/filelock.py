"""A blocking inter-process file lock for short critical sections (e.g. one bundle write)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from mapproxy.util.fs import ensure_directory

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


def _lock_fd(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    else:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)


@contextlib.contextmanager
def exclusive_file_lock(path: str, directory_permissions: int | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing, removed afterwards).

    Blocks until the lock is free. Threads and processes exclude each other because every
    call opens its own file description.
    """
    ensure_directory(os.path.dirname(path) or ".", directory_permissions)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _lock_fd(fd)
        except BaseException:
            os.close(fd)
            raise
        # The previous holder may have removed the file after we opened it: then our lock
        # is on an orphaned inode and another process may lock a new file at ``path``.
        try:
            current = os.stat(path)
        except FileNotFoundError:
            os.close(fd)
            continue
        own = os.fstat(fd)
        if (current.st_ino, current.st_dev) != (own.st_ino, own.st_dev):
            os.close(fd)
            continue
        break
    try:
        yield
    finally:
        if fcntl is not None:
            # Remove while still locked so no waiter can lock the name after it is gone.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(fd)
