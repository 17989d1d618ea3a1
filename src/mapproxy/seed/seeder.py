"""Seeding: walk a task's pyramid and let worker processes create the tiles."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mapproxy.errors import LockTimeout, MapProxyError, SourceError
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.seed.config import SeedTask, walk_bbox
from mapproxy.seed.progress import ProgressLog, ProgressStore
from mapproxy.seed.walker import Position, TileWalker, walk_meta_size


@dataclass(frozen=True)
class RetryOptions:
    """Backoff for failed meta tiles: ``delay_seconds`` doubling up to ``max_delay_seconds``."""

    max_retries: int = 100
    delay_seconds: float = 2.0
    max_delay_seconds: float = 600.0


class SeedAborted(MapProxyError):
    """Every worker gave up; seeding cannot go on."""


class TooManyFailures(SeedAborted):
    """``--max-failures`` meta tiles failed; the run stops."""


class FailedTiles:
    """Meta tiles that failed after all retries, as ``(cache, grid, coord)`` per tile.

    ``max_failures`` (meta tiles) makes ``add`` raise TooManyFailures once reached.
    """

    def __init__(self, max_failures: int | None = None) -> None:
        self.max_failures = max_failures
        self.meta_tiles = 0
        self.tiles: list[tuple[str, str, TileCoord]] = []

    def add(self, cache_name: str, grid_name: str, coords: list[TileCoord]) -> None:
        """Record one failed meta tile; raises TooManyFailures at the limit."""
        self.meta_tiles += 1
        self.tiles += [(cache_name, grid_name, coord) for coord in coords]
        if self.max_failures is not None and self.meta_tiles >= self.max_failures:
            raise TooManyFailures(
                f"aborted: {self.meta_tiles} meta tiles failed (--max-failures {self.max_failures})"
            )


class TileRefresher:
    """Creates the missing or stale tiles of one meta tile (runs in a worker)."""

    def __init__(self, task: SeedTask) -> None:
        self.tile_manager = task.tile_manager
        # A seeded meta tile counts as done once all its tiles are stored.
        self.tile_manager.background_storer = None
        self.refresh_timestamp = task.refresh_timestamp
        self.force = task.refresh_timestamp is not None and not task.supports_timestamps
        if task.refresh_timestamp is not None and task.supports_timestamps:
            before = float(task.refresh_timestamp)
            self.tile_manager.refresh_before = lambda: before

    def stale(self, coord: TileCoord) -> bool:
        """True if ``coord`` is cached but older than the refresh timestamp."""
        if self.refresh_timestamp is None:
            return False
        if self.force:
            return bool(self.tile_manager.is_cached(coord))
        stamp = self.tile_manager.cache.tile_timestamp(coord)
        return stamp is not None and stamp < self.refresh_timestamp

    def __call__(self, coords: list[TileCoord]) -> None:
        if self.force:
            self.tile_manager.create_tiles(coords)
        else:
            # checks the cache again under the meta tile lock: tiles created meanwhile
            # (e.g. by the server) are not requested twice
            self.tile_manager.load_tiles(coords)


def handle_with_retries(
    handler: Callable[[list[TileCoord]], None],
    coords: list[TileCoord],
    retry: RetryOptions,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Run ``handler``; retry source and IO errors with backoff. False if given up."""
    delay = retry.delay_seconds
    retries_left = retry.max_retries
    while True:
        try:
            handler(coords)
            return True
        except LockTimeout:
            continue
        except (SourceError, OSError) as error:
            if retries_left <= 0:
                print("An error occured. Giving up", file=sys.stderr)
                return False
            print(
                f"An error occured. Retry in {delay:g} seconds: {error!r}. "
                f"Retries left: {retries_left}",
                file=sys.stderr,
            )
            sys.stderr.flush()
            end = time.monotonic() + delay
            while time.monotonic() < end:
                if should_stop():
                    return False
                time.sleep(min(0.2, end - time.monotonic()) if end > time.monotonic() else 0)
            retries_left -= 1
            delay = min(retry.max_delay_seconds, delay * 2)


def _worker(
    handler: Callable[[list[TileCoord]], None],
    tasks: Any,
    stop: Any,
    done: Any,
    retry: RetryOptions,
    parent_pid: int,
    failures: Any,
) -> None:
    # The parent handles SIGINT and tells us to stop after the current meta tile.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while not stop.is_set():
        try:
            item = tasks.get(timeout=0.5)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return  # the parent was killed
            continue
        if item is None:
            return
        succeeded = handle_with_retries(handler, item, retry, stop.is_set)
        if not succeeded and failures is not None and not stop.is_set():
            # reported before counting it done: wait_idle() then sees the failure
            failures.put(item)
        with done.get_lock():
            done.value += 1
        if not succeeded and failures is None:
            return


class WorkerPool:
    """``concurrency`` forked processes taking meta tiles from a bounded queue.

    With ``on_failure`` a meta tile that failed after all retries is passed to it (in
    this process) and the worker goes on; without, the worker ends (as MapProxy does).
    """

    def __init__(
        self,
        handler: Callable[[list[TileCoord]], None],
        concurrency: int,
        retry: RetryOptions,
        on_failure: Callable[[list[TileCoord]], None] | None = None,
    ) -> None:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        self._tasks = context.Queue(maxsize=max(1, concurrency) * 4)
        self._stop = context.Event()
        self._done = context.Value("q", 0)
        self._queued = 0
        self._on_failure = on_failure
        self._failures = context.Queue() if on_failure is not None else None
        self._workers = [
            context.Process(
                target=_worker,
                args=(
                    handler,
                    self._tasks,
                    self._stop,
                    self._done,
                    retry,
                    os.getpid(),
                    self._failures,
                ),
                daemon=True,
            )
            for _ in range(max(1, concurrency))
        ]
        for worker in self._workers:
            worker.start()

    def put(self, coords: list[TileCoord] | None) -> None:
        """Queue one meta tile; raises SeedAborted when all workers have ended."""
        while True:
            self.collect_failures()
            try:
                self._tasks.put(coords, timeout=0.5)
                if coords is not None:
                    self._queued += 1
                return
            except queue.Full:
                self._check_alive()

    def collect_failures(self, timeout: float = 0.0) -> None:
        """Hand failed meta tiles reported by the workers to ``on_failure``."""
        if self._failures is None or self._on_failure is None:
            return
        while True:
            try:
                if timeout:
                    coords = self._failures.get(timeout=timeout)
                else:
                    coords = self._failures.get_nowait()
            except queue.Empty:
                return
            self._on_failure(coords)

    def _check_alive(self) -> None:
        if not any(worker.is_alive() for worker in self._workers):
            raise SeedAborted("all seed workers gave up")

    def wait_idle(self) -> None:
        """Block until every queued meta tile is done (or all workers have ended)."""
        while self._done.value < self._queued:
            self.collect_failures()
            self._check_alive()
            time.sleep(0.01)
        self._drain_failures()

    def _drain_failures(self) -> None:
        # a failure is queued before the tile counts as done, but the queue's feeder
        # thread may still be sending it
        if self._failures is not None:
            self.collect_failures(timeout=0.05)

    def close(self) -> None:
        """Let the workers finish the queue, then end them."""
        for _ in self._workers:
            self.put(None)
        for worker in self._workers:
            while worker.is_alive():
                self.collect_failures()
                worker.join(0.05)
        self._drain_failures()
        if any(worker.exitcode not in (0, None) for worker in self._workers):
            raise SeedAborted("a seed worker failed")

    def stop(self) -> None:
        """Stop after the current meta tiles (interrupt)."""
        self._stop.set()
        deadline = time.monotonic() + 10
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.terminate()


def _pool(
    task: SeedTask,
    handler: Callable[[list[TileCoord]], None],
    concurrency: int,
    retry: RetryOptions,
    failed: FailedTiles | None,
) -> WorkerPool:
    on_failure = None
    if failed is not None:

        def on_failure(coords: list[TileCoord]) -> None:
            failed.add(task.cache_name, task.grid_name, coords)

    return WorkerPool(handler, concurrency, retry, on_failure)


def seed_task(
    task: SeedTask,
    progress: ProgressLog,
    concurrency: int = 2,
    dry_run: bool = False,
    skip_geoms_for_last_levels: int = 0,
    skip_uncached: bool = False,
    retry: RetryOptions | None = None,
    store: ProgressStore | None = None,
    failed: FailedTiles | None = None,
) -> None:
    """Seed ``task``; progress lines go to ``progress``, positions to ``store``.

    With ``failed``, meta tiles that fail after all retries are recorded there and
    seeding goes on (TooManyFailures at its limit); without, a failing worker ends.
    """
    retry = retry or RetryOptions()
    refresher = TileRefresher(task)
    pool: WorkerPool | None = None
    if not dry_run:
        pool = _pool(task, refresher, concurrency, retry, failed)

    def handle(coords: list[TileCoord]) -> None:
        if skip_uncached:
            coords = [coord for coord in coords if refresher.stale(coord)]
        if coords and pool is not None:
            pool.put(coords)

    def store_position(position: Position) -> None:
        if store is None:
            return
        if pool is not None:
            pool.wait_idle()
        store.add(task.id, position)
        store.write()

    resume = store.get(task.id) if store is not None else None
    if resume == "done":
        return
    progress.on_store = store_position
    try:
        meta_size = walk_meta_size(task.tile_manager)
        progress.tiles_per_meta_tile = meta_size[0] * meta_size[1]
        walker = TileWalker(
            task.grid,
            task.levels,
            # a dry run without --skip-uncached only counts: no tile lists at all
            handle if pool is not None or skip_uncached else None,
            coverage=task.coverage,
            meta_size=meta_size,
            reporter=progress,
            skip_geoms_for_last_levels=skip_geoms_for_last_levels,
            resume=resume if isinstance(resume, list) else None,
        )
        walker.walk(walk_bbox(task))
        if pool is not None:
            pool.close()
            pool = None
        progress.finish()
        if store is not None:
            store.add(task.id, "done")
            store.write()
    finally:
        progress.on_store = None
        if pool is not None:
            pool.stop()


def group_meta_tiles(coords: list[TileCoord], meta_size: tuple[int, int]) -> list[list[TileCoord]]:
    """``coords`` grouped by the meta tile they lie in, in order of first appearance."""
    meta_w, meta_h = meta_size
    groups: dict[tuple[int, int, int], list[TileCoord]] = {}
    for coord in coords:
        key = (coord.z, coord.x // meta_w, coord.y // meta_h)
        group = groups.setdefault(key, [])
        if coord not in group:
            group.append(coord)
    return list(groups.values())


def seed_tiles(
    task: SeedTask,
    coords: list[TileCoord],
    concurrency: int = 2,
    dry_run: bool = False,
    retry: RetryOptions | None = None,
    failed: FailedTiles | None = None,
) -> int:
    """Create the missing tiles of ``coords`` (``--tiles-file``); returns the meta tile count."""
    groups = group_meta_tiles(coords, walk_meta_size(task.tile_manager))
    if dry_run:
        return len(groups)
    pool: WorkerPool | None = _pool(
        task, TileRefresher(task), concurrency, retry or RetryOptions(), failed
    )
    try:
        assert pool is not None
        for group in groups:
            pool.put(group)
        pool.close()
        pool = None
    finally:
        if pool is not None:
            pool.stop()
    return len(groups)
