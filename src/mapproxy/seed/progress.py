"""Progress output of mapproxy-seed and the progress file used by ``--continue``."""

from __future__ import annotations

import math
import os
import pickle
import stat
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from mapproxy.seed.walker import Position, WalkReporter, position_fraction
from mapproxy.srs import BBox
from mapproxy.util.fs import write_atomic


def timestamp() -> str:
    """``[HH:MM:SS]`` of the local time."""
    return time.strftime("[%H:%M:%S]")


_QUARTER_SYMBOLS = ".oO0"


def progress_string(position: Position) -> str:
    """One symbol per depth of the walk: how far it is in that frame (``.`` ``o`` ``O`` ``0``).

    The symbol shows the quarter the current child ends in: with four children the
    first is ``.`` and the last ``0``; a single child is ``0``.
    """
    symbols = []
    for index, count in position:
        if count <= 0:
            break
        quarter = min(3, max(0, math.ceil((index + 1) * 4 / count) - 1))
        symbols.append(_QUARTER_SYMBOLS[quarter])
    return "".join(symbols)


class ProgressStore:
    """Walk positions per task identity, pickled to ``path`` (atomically replaced)."""

    def __init__(self, path: str, load: bool = True, out: TextIO | None = None) -> None:
        self.path = path
        self.status: dict[Any, Any] = {}
        if load:
            self.status = self._read(out or sys.stdout)

    def _read(self, out: TextIO) -> dict[Any, Any]:
        try:
            mode = os.stat(self.path).st_mode
        except OSError:
            return {}
        if mode & stat.S_IWOTH:
            print(f"progress file ({self.path}) is world writable, ignoring file", file=out)
            return {}
        try:
            with open(self.path, "rb") as handle:
                data = pickle.load(handle)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError):
            print(f"unable to read progress file ({self.path}), ignoring file", file=out)
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, task_id: Any) -> Any:
        """The stored position of ``task_id``, ``"done"``, or None."""
        return self.status.get(task_id)

    def add(self, task_id: Any, position: Position | str) -> None:
        """Remember ``position`` (or ``"done"``) for ``task_id``."""
        self.status[task_id] = list(position) if not isinstance(position, str) else position

    def write(self) -> None:
        """Replace the progress file atomically (a kill never leaves a partial file)."""
        write_atomic(self.path, pickle.dumps(self.status))

    def remove(self) -> None:
        """Delete the progress file (after a complete run)."""
        if os.path.exists(self.path):
            os.remove(self.path)


class ProgressLog(WalkReporter):
    """Prints progress lines of the running task, at most every ``interval`` seconds.

    ``verbose`` (a TTY without ``-q``) also writes an in-place status line. ``silent``
    (``-qq``) prints nothing. ``tiles_per_meta_tile`` multiplies the meta tile count.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        verbose: bool = True,
        silent: bool = False,
        interval: float = 1.0,
    ) -> None:
        self.out = out or sys.stdout
        self.verbose = verbose
        self.silent = silent
        self.interval = interval
        self.tiles_per_meta_tile = 1
        # shared by all tasks of a run, as in the reference: the first line of a
        # task only appears if the interval has passed
        self._last_log = 0.0
        self._last_status = 0.0
        self.on_store: Callable[[Position], None] | None = None
        self._last_step: tuple[int, BBox, int] | None = None

    def log_step(self, level: int, bbox: BBox, position: Position, meta_tiles: int) -> None:
        """Print a progress line if due; store the progress with ``on_store``."""
        now = time.time()
        self._last_step = (level, bbox, meta_tiles)
        # the fraction is only computed when something is printed: this runs per meta tile
        if now - self._last_log >= self.interval:
            fraction = position_fraction(position)
            # the 100 % line is printed once by finish()
            if fraction < 1.0:
                self._last_log = now
                if self.on_store is not None:
                    self.on_store(position)
                self._print_line(level, bbox, fraction, meta_tiles)
                return
        if self.verbose and not self.silent and now - self._last_status >= 0.5:
            self._last_status = now
            fraction = position_fraction(position)
            bar = progress_string(position)
            self.out.write(f"{timestamp()} {fraction * 100:6.2f}%\t{bar:20} \r")
            self.out.flush()

    def finish(self) -> None:
        """The 100 % line of the task."""
        if self._last_step is not None:
            level, bbox, meta_tiles = self._last_step
            self._print_line(level, bbox, 1.0, meta_tiles)
        self._last_step = None

    def _print_line(self, level: int, bbox: BBox, fraction: float, meta_tiles: int) -> None:
        if self.silent:
            return
        coords = ", ".join(f"{v:.5f}" for v in bbox)
        tiles = meta_tiles * self.tiles_per_meta_tile
        self.out.write(f"{timestamp()} {level:2} {fraction * 100:6.2f}% {coords} ({tiles} tiles)\n")
        self.out.flush()

    def message(self, text: str) -> None:
        """A timestamped line (e.g. ``removing old tiles in ...``)."""
        if self.silent:
            return
        self.out.write(f"{timestamp()} {text}\n")
        self.out.flush()
