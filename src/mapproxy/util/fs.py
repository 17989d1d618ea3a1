"""Filesystem helpers: atomic writes and directory creation with permissions."""

from __future__ import annotations

import contextlib
import itertools
import os

# Unique suffixes for temp files; next() on itertools.count is atomic under the GIL.
_temp_counter = itertools.count()


def ensure_directory(path: str, permissions: int | None = None) -> None:
    """Create ``path`` and missing parents; new directories get ``permissions`` (octal int)."""
    if os.path.isdir(path):
        return
    if permissions is None:
        os.makedirs(path, exist_ok=True)
        return
    parent = os.path.dirname(os.path.normpath(path))
    if parent and parent != path and not os.path.isdir(parent):
        ensure_directory(parent, permissions)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    # chmod because mkdir's mode is reduced by the umask.
    os.chmod(path, permissions)


def write_atomic(
    path: str,
    data: bytes,
    file_permissions: int | None = None,
    directory_permissions: int | None = None,
) -> None:
    """Write ``data`` to a temp file next to ``path`` and rename it into place.

    Readers see either the old file or the complete new one, never a partial write.
    Missing parent directories are created (with ``directory_permissions``).
    """
    try:
        fd, temp_path = _open_temp(path)
    except FileNotFoundError:
        ensure_directory(os.path.dirname(path) or ".", directory_permissions)
        fd, temp_path = _open_temp(path)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)
        if file_permissions is not None:
            os.chmod(temp_path, file_permissions)
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def temp_path_for(path: str) -> str:
    """A temp file name next to ``path``, unique within this process."""
    return f"{path}.{os.getpid()}-{next(_temp_counter)}.tmp"


def _open_temp(path: str) -> tuple[int, str]:
    # Mode 0o666 so the umask applies as for a plain open(); mkstemp would force 0o600.
    while True:
        temp_path = temp_path_for(path)
        try:
            return os.open(temp_path, _TEMP_FLAGS, 0o666), temp_path
        except FileExistsError:  # left over by a crashed process that had our pid
            continue
