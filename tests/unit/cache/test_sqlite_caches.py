"""MBTiles and per-level SQLite caches: round trips, layout as MapProxy 7 writes it,
concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

from mapproxy.cache.mbtiles import MBTilesCache, SQLiteLevelsCache
from mapproxy.grid.tile_grid import TileCoord

# Tiles requested through WMTS (GLOBAL_WEBMERCATOR, row 0 north) and the rows
# MapProxy 7.0.0 wrote for them (observed on the reference with a debug source).
REFERENCE_ROWS = {(0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 3), (3, 5, 2)}


def _rows(path: Path) -> set[tuple[int, int, int]]:
    with sqlite3.connect(path) as conn:
        return set(conn.execute("SELECT zoom_level, tile_column, tile_row FROM tiles"))


def test_mbtiles_round_trip(tmp_path: Path) -> None:
    cache = MBTilesCache(str(tmp_path / "sub" / "c.mbtiles"))
    coord = TileCoord(3, 2, 2)
    assert cache.load_tile(coord) is None
    assert not cache.is_cached(coord)
    assert not (tmp_path / "sub").exists()  # reading never creates the file
    cache.store_tiles({coord: b"abc"})
    tile = cache.load_tile(coord)
    assert tile is not None and tile.data == b"abc" and tile.timestamp is None
    assert cache.is_cached(coord)
    assert cache.tile_timestamp(coord) is None
    cache.store_tiles({coord: b"xyz"})
    assert cache.load_tile(coord).data == b"xyz"  # type: ignore[union-attr]
    cache.remove_tile(coord)
    assert cache.load_tile(coord) is None
    cache.remove_tile(coord)
    assert cache.lock_cache_id.startswith("mbtiles-")


def test_mbtiles_layout_matches_reference(tmp_path: Path) -> None:
    path = tmp_path / "c.mbtiles"
    cache = MBTilesCache(str(path))
    cache.store_tiles({TileCoord(x, y, z): b"t" for z, x, y in REFERENCE_ROWS})
    assert _rows(path) == REFERENCE_ROWS
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = [r[1] for r in conn.execute("PRAGMA table_info(tiles)")]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert tables == {"tiles", "metadata"}
    assert columns == ["zoom_level", "tile_column", "tile_row", "tile_data"]
    assert mode == "delete"


def test_mbtiles_wal_and_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.mbtiles"
    MBTilesCache(str(path), wal=True).store_tiles({TileCoord(0, 0, 0): b"a"})
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # A new instance reads the existing file.
    assert MBTilesCache(str(path)).load_tile(TileCoord(0, 0, 0)).data == b"a"  # type: ignore[union-attr]


def test_sqlite_levels_round_trip_and_layout(tmp_path: Path) -> None:
    cache = SQLiteLevelsCache(str(tmp_path / "c" / "GLOBAL_WEBMERCATOR"))
    before = time.time()
    cache.store_tiles({TileCoord(x, y, z): b"t%d" % z for z, x, y in REFERENCE_ROWS})
    files = sorted(p.name for p in (tmp_path / "c" / "GLOBAL_WEBMERCATOR").iterdir())
    assert files == ["0.mbtiles", "1.mbtiles", "2.mbtiles", "3.mbtiles"]
    assert _rows(tmp_path / "c" / "GLOBAL_WEBMERCATOR" / "1.mbtiles") == {(1, 0, 0), (1, 1, 0)}
    tile = cache.load_tile(TileCoord(5, 2, 3))
    assert tile is not None and tile.data == b"t3"
    assert tile.timestamp is not None and before - 2 <= tile.timestamp <= time.time() + 1
    assert cache.tile_timestamp(TileCoord(5, 2, 3)) == tile.timestamp
    with sqlite3.connect(tmp_path / "c" / "GLOBAL_WEBMERCATOR" / "3.mbtiles") as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(tiles)")]
    assert columns[-1] == "last_modified"
    cache.remove_tile(TileCoord(5, 2, 3))
    assert not cache.is_cached(TileCoord(5, 2, 3))
    assert cache.load_tile(TileCoord(0, 0, 7)) is None
    assert not (tmp_path / "c" / "GLOBAL_WEBMERCATOR" / "7.mbtiles").exists()


def test_sqlite_levels_ttl(tmp_path: Path) -> None:
    cache = SQLiteLevelsCache(str(tmp_path), ttl=60)
    coord = TileCoord(0, 0, 1)
    cache.store_tiles({coord: b"a"})
    assert cache.is_cached(coord)
    with sqlite3.connect(tmp_path / "1.mbtiles") as conn:
        conn.execute("UPDATE tiles SET last_modified = '2000-01-01 00:00:00'")
    assert cache.load_tile(coord) is None
    assert not cache.is_cached(coord)
    assert SQLiteLevelsCache(str(tmp_path)).is_cached(coord)  # ttl 0: forever


def test_threads_share_one_cache(tmp_path: Path) -> None:
    cache = MBTilesCache(str(tmp_path / "c.mbtiles"))

    def write(i: int) -> None:
        for j in range(20):
            cache.store_tiles({TileCoord(i, j, 5): b"%d" % i})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(_rows(tmp_path / "c.mbtiles")) == 6 * 20


def _write_process(kind: str, path: str, worker: int) -> None:
    cache: MBTilesCache | SQLiteLevelsCache
    cache = MBTilesCache(path) if kind == "mbtiles" else SQLiteLevelsCache(path)
    for j in range(25):
        cache.store_tiles({TileCoord(worker, j, 6): b"w", TileCoord(worker, j, 7): b"w"})


def _run_processes(kind: str, path: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_process, args=(kind, path, i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def test_concurrent_processes_lose_nothing_mbtiles(tmp_path: Path) -> None:
    path = tmp_path / "c.mbtiles"
    _run_processes("mbtiles", str(path))
    assert len(_rows(path)) == 4 * 25 * 2


def test_concurrent_processes_lose_nothing_sqlite(tmp_path: Path) -> None:
    _run_processes("sqlite", str(tmp_path))
    assert len(_rows(tmp_path / "6.mbtiles")) == 100
    assert len(_rows(tmp_path / "7.mbtiles")) == 100
