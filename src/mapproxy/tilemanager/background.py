"""Finishing meta tiles after the response.

A request for one missing tile fetches its whole meta tile. The requested tile is encoded
and stored first and answered at once; the other tiles of the meta tile are encoded and
stored by a background thread (one per process), which keeps the meta tile's lock until
they are on disk: other requests for them wait on the lock as before and then find them
stored. With a sync WSGI server the worker's next upstream wait overlaps that work.

The number of meta tiles waiting for the thread is bounded; beyond it the request thread
finishes the work itself, so a burst of misses never piles up decoded images in memory.
Pending work finishes before a normal interpreter exit (the executor joins its thread).

Under a uWSGI without Python thread support (``uwsgi.has_threads`` false: older versions
without ``enable-threads``) a worker keeps the GIL while it waits for the next request, so
a background thread would stall while holding the lock other processes wait for: there the
request thread stores everything itself.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("mapproxy.tilemanager")

DEFAULT_MAX_PENDING = 2


class BackgroundStorer:
    """Runs store jobs on one background thread, at most ``max_pending`` at a time."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._condition = threading.Condition()
        self._pending = 0
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._threads_run: bool | None = None

    def try_submit(self, job: Callable[[], None]) -> bool:
        """Run ``job`` in the background; False (and nothing run) when the queue is full
        or background threads cannot run in this server."""
        with self._condition:
            if self._pid != os.getpid():  # forked: the parent's thread does not exist here
                self._executor, self._pending, self._pid = None, 0, os.getpid()
                self._threads_run = None
            if self._threads_run is None:
                self._threads_run = background_threads_run()
            if not self._threads_run or self._pending >= self.max_pending:
                return False
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="mapproxy-tile-store"
                )
            self._pending += 1
            executor = self._executor
        try:
            executor.submit(self._run, job)
        except RuntimeError:  # interpreter shutting down: no new threads
            self._done()
            return False
        return True

    def wait(self, timeout_seconds: float | None = None) -> bool:
        """Wait until no job is pending; False if some still are after the timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: self._pending == 0, timeout_seconds)

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished."""
        with self._condition:
            return self._pending

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:
            log.exception("storing the rest of a meta tile failed")
        finally:
            self._done()

    def _done(self) -> None:
        with self._condition:
            self._pending -= 1
            self._condition.notify_all()


def background_threads_run() -> bool:
    """False under uWSGI without thread support, where threads only run during requests."""
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return True
    return bool(getattr(uwsgi, "has_threads", True))


background_storer = BackgroundStorer()


def wait_for_background_stores(timeout_seconds: float | None = 30.0) -> bool:
    """Wait until every meta tile handed to the background thread is stored."""
    return background_storer.wait(timeout_seconds)
