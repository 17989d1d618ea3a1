"""The rest of a meta tile is stored after the response, under the meta tile's lock."""

from __future__ import annotations

import logging
import sys
import threading
import types
from collections.abc import Callable

import pytest
from test_tile_manager import CountingSource, decoded_color, make_grid, make_manager, tile_color

from mapproxy.cache.file import FileCache
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.tilemanager.background import BackgroundStorer
from mapproxy.tilemanager.locking import TileLocker

META_TILES = [TileCoord(x, y, 3) for x in range(4, 8) for y in range(4, 8)]


class GatedStorer(BackgroundStorer):
    """Background storer whose jobs wait for ``release`` before they start."""

    def __init__(self, max_pending: int = 2) -> None:
        super().__init__(max_pending)
        self.release = threading.Event()
        self.started = 0

    def try_submit(self, job: Callable[[], None]) -> bool:
        def gated() -> None:
            self.release.wait(10)
            self.started += 1
            job()

        return super().try_submit(gated)


@pytest.fixture
def cache(tmp_path) -> FileCache:
    return FileCache(str(tmp_path / "cache"), "png")


@pytest.fixture
def locker(tmp_path) -> TileLocker:
    return TileLocker(str(tmp_path / "locks"), timeout_seconds=10)


def stored(cache: FileCache) -> set[TileCoord]:
    return {coord for coord in META_TILES if cache.is_cached(coord)}


def test_wanted_tile_is_stored_at_once_the_rest_in_the_background(cache, locker):
    storer = GatedStorer()
    source = CountingSource(make_grid())
    manager = make_manager(make_grid(), cache, [source], locker, background_storer=storer)
    coord = TileCoord(5, 6, 3)
    tile = manager.load_tile(coord)
    assert decoded_color(tile.data) == tile_color(coord)
    assert stored(cache) == {coord}
    assert cache.load_tile(coord).data == tile.data
    assert storer.pending == 1

    storer.release.set()
    assert storer.wait(10)
    assert stored(cache) == set(META_TILES)
    for other in META_TILES:
        assert decoded_color(cache.load_tile(other).data) == tile_color(other)
    assert len(source.queries) == 1


def test_neighbour_waits_for_the_background_store_instead_of_fetching_again(cache, locker):
    storer = GatedStorer()
    source = CountingSource(make_grid())
    manager = make_manager(make_grid(), cache, [source], locker, background_storer=storer)
    manager.load_tile(TileCoord(5, 6, 3))
    neighbour: list[bytes] = []
    thread = threading.Thread(
        target=lambda: neighbour.append(manager.load_tile(TileCoord(4, 4, 3)).data)
    )
    thread.start()
    thread.join(0.3)
    # the meta tile lock is still held by the pending store: the neighbour waits
    assert thread.is_alive() and not neighbour
    storer.release.set()
    thread.join(10)
    assert decoded_color(neighbour[0]) == tile_color(TileCoord(4, 4, 3))
    assert len(source.queries) == 1


def test_full_queue_stores_everything_before_answering(cache, locker):
    storer = BackgroundStorer(max_pending=0)
    source = CountingSource(make_grid())
    manager = make_manager(make_grid(), cache, [source], locker, background_storer=storer)
    manager.load_tile(TileCoord(5, 6, 3))
    assert stored(cache) == set(META_TILES)


def test_without_storer_everything_is_stored_before_answering(cache, locker):
    source = CountingSource(make_grid())
    manager = make_manager(make_grid(), cache, [source], locker, background_storer=None)
    manager.load_tile(TileCoord(5, 6, 3))
    assert stored(cache) == set(META_TILES)


def test_seeding_stores_the_whole_meta_tile_in_the_call(cache, locker):
    storer = GatedStorer()
    source = CountingSource(make_grid())
    manager = make_manager(make_grid(), cache, [source], locker, background_storer=storer)
    manager.create_tiles([TileCoord(5, 6, 3)])
    assert stored(cache) == set(META_TILES)
    assert storer.pending == 0


def test_failed_background_store_is_logged_and_releases_the_lock(cache, locker, caplog):
    storer = BackgroundStorer()
    source = CountingSource(make_grid())
    manager = make_manager(make_grid(), cache, [source], locker, background_storer=storer)
    real_store = cache.store_tiles
    calls = []

    def store_once_then_fail(tiles):  # type: ignore[no-untyped-def]
        calls.append(set(tiles))
        if len(calls) > 1:
            raise OSError("disk full")
        real_store(tiles)

    cache.store_tiles = store_once_then_fail  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="mapproxy.tilemanager"):
        manager.load_tile(TileCoord(5, 6, 3))
        assert storer.wait(10)
    assert "storing the rest of a meta tile failed" in caplog.text
    assert len(calls[1]) == 15
    cache.store_tiles = real_store  # type: ignore[method-assign]
    # the lock is free again: the missing neighbour is created anew
    tile = manager.load_tile(TileCoord(4, 4, 3))
    assert decoded_color(tile.data) == tile_color(TileCoord(4, 4, 3))
    assert len(source.queries) == 2


def test_uncacheable_result_encodes_and_stores_nothing_more(cache, locker):
    storer = GatedStorer()
    source = CountingSource(make_grid(), cacheable=False)
    manager = make_manager(make_grid(), cache, [source], locker, background_storer=storer)
    tile = manager.load_tile(TileCoord(5, 6, 3))
    assert decoded_color(tile.data) == tile_color(TileCoord(5, 6, 3))
    assert stored(cache) == set()
    assert storer.pending == 0


def test_storer_forgets_the_parents_queue_after_a_fork(monkeypatch):
    storer = BackgroundStorer(max_pending=1)
    release = threading.Event()
    assert storer.try_submit(lambda: release.wait(10))
    assert not storer.try_submit(lambda: None)  # full
    monkeypatch.setattr("os.getpid", lambda: -1)  # as in a forked child
    ran = threading.Event()
    assert storer.try_submit(ran.set)
    assert ran.wait(10)
    release.set()


@pytest.mark.parametrize(("has_threads", "runs"), [(0, False), (1, True)])
def test_uwsgi_without_python_threads_stores_in_the_request(monkeypatch, has_threads, runs):
    monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(has_threads=has_threads))
    storer = BackgroundStorer()
    ran = threading.Event()
    assert storer.try_submit(ran.set) is runs
    assert ran.wait(10) if runs else not ran.is_set()
