"""Cleanup: remove old (or all) tiles, per level on storage or by walking the coverage."""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

from mapproxy.grid.tile_grid import TileCoord
from mapproxy.seed.config import CleanupTask, walk_bbox
from mapproxy.seed.progress import ProgressLog, ProgressStore
from mapproxy.seed.walker import Position, TileWalker, walk_meta_size

_LEVEL_DIRS = {
    "tc": "{:02d}",
    "mp": "{:02d}",
    "tms": "{}",
    "arcgis": "L{:02d}",
}


def level_directory(cache: Any, level: int) -> str | None:
    """The directory holding all tiles of ``level`` of a file cache, else None."""
    pattern = _LEVEL_DIRS.get(getattr(cache, "directory_layout", ""))
    cache_dir = getattr(cache, "cache_dir", None)
    if pattern is None or cache_dir is None or type(cache).__name__ != "FileCache":
        return None
    return os.path.join(cache_dir, pattern.format(level))


def remove_old_files(directory: str, before: float | None) -> None:
    """Remove files older than ``before`` (all if None) and directories left empty."""
    if before is None:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for root, dirs, files in os.walk(directory, topdown=False):
        for name in files:
            path = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                # a linked single-colour tile counts with the link's own time
                if os.lstat(path).st_mtime < before:
                    os.unlink(path)
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, name))
    with contextlib.suppress(OSError):
        os.rmdir(directory)


class TileRemover:
    """Removes the tiles of one meta tile that are older than the task's timestamp."""

    def __init__(self, task: CleanupTask, dry_run: bool = False) -> None:
        self.task = task
        self.cache = task.tile_manager.cache
        self.dry_run = dry_run

    def __call__(self, coords: list[TileCoord]) -> None:
        if self.dry_run:
            return
        for coord in coords:
            if not self.task.remove_all:
                stamp = self.cache.tile_timestamp(coord)
                if stamp is None or stamp >= self.task.remove_timestamp:
                    continue
            self.cache.remove_tile(coord)


def cleanup_task(
    task: CleanupTask,
    progress: ProgressLog,
    dry_run: bool = False,
    skip_geoms_for_last_levels: int = 0,
    display_path: Any = None,
    store: ProgressStore | None = None,
) -> None:
    """Run ``task``: per level on storage when it covers the whole grid, else by walking."""
    before = None if task.remove_all else task.remove_timestamp
    cache = task.tile_manager.cache
    show = display_path or (lambda path: path)
    if task.coverage is None:
        if level_directory(cache, 0) is not None:
            for level in task.levels:
                directory = level_directory(cache, level)
                assert directory is not None
                progress.message(f"removing old tiles in {show(directory)}")
                if not dry_run:
                    remove_old_files(directory, before)
            return
        if hasattr(cache, "remove_level_tiles_before"):
            for level in task.levels:
                progress.message(f"removing old tiles for level {level}")
                if not dry_run:
                    cache.remove_level_tiles_before(level, before)
            return

    def store_position(position: Position) -> None:
        if store is not None:
            store.add(task.id, position)
            store.write()

    resume = store.get(task.id) if store is not None else None
    if resume == "done":
        return
    meta_size = walk_meta_size(task.tile_manager)
    progress.tiles_per_meta_tile = meta_size[0] * meta_size[1]
    progress.on_store = store_position
    try:
        walker = TileWalker(
            task.grid,
            task.levels,
            TileRemover(task, dry_run),
            coverage=task.coverage,
            meta_size=meta_size,
            reporter=progress,
            skip_geoms_for_last_levels=skip_geoms_for_last_levels,
            resume=resume if isinstance(resume, list) else None,
        )
        walker.walk(walk_bbox(task))
        progress.finish()
    finally:
        progress.on_store = None
    if store is not None:
        store.add(task.id, "done")
        store.write()
