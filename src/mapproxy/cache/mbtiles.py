"""SQLite tile caches: one MBTiles file (``mbtiles``) or one file per level (``sqlite``).

Rows use the grid's own numbering (``tile_row`` counted from the grid origin), as
MapProxy writes them. Each thread (and process) gets its own connection; every
``store_tiles`` call is one transaction, so concurrent writers never lose tiles.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mapproxy.cache.base import Tile
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.util.fs import ensure_directory

_TILES_SQL = """CREATE TABLE IF NOT EXISTS tiles (
    zoom_level integer,
    tile_column integer,
    tile_row integer,
    tile_data blob{extra}
)"""
_TIMESTAMP_COLUMN = ",\n    last_modified datetime DEFAULT (datetime('now','localtime'))"
_INDEX_SQL = (
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_tile on tiles (zoom_level, tile_column, tile_row)"
)
_METADATA_SQL = "CREATE TABLE IF NOT EXISTS metadata (name text, value text)"

_Init = Callable[[sqlite3.Connection], None]

log = logging.getLogger("mapproxy.cache.sqlite")


class SQLiteFile:
    """One SQLite database file with a connection per thread and process.

    ``init`` creates the schema the first time the file is written. ``timeout`` is the
    busy timeout in seconds; ``wal`` switches the journal to write-ahead logging.
    """

    def __init__(
        self,
        filename: str,
        init: _Init,
        timeout: float = 30,
        wal: bool = False,
        file_permissions: int | None = None,
        directory_permissions: int | None = None,
    ) -> None:
        self.filename = filename
        self._init = init
        self.timeout = timeout
        self.wal = wal
        self.file_permissions = file_permissions
        self.directory_permissions = directory_permissions
        self._local = threading.local()
        self._ready = False
        self._ready_lock = threading.Lock()

    def connection(self, create: bool) -> sqlite3.Connection | None:
        """This thread's connection; None if the file is missing and ``create`` is False."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        if not os.path.exists(self.filename):
            if not create:
                return None
            self._create_file()
        elif not self._ready:
            self._ensure_schema()
        conn = self._connect()
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.filename, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return conn

    def _create_file(self) -> None:
        ensure_directory(os.path.dirname(self.filename) or ".", self.directory_permissions)
        self._ensure_schema()
        if self.file_permissions is not None:
            with contextlib.suppress(OSError):
                os.chmod(self.filename, self.file_permissions)

    def _ensure_schema(self) -> None:
        with self._ready_lock:
            if self._ready:
                return
            conn = self._connect()
            try:
                if self.wal:
                    conn.execute("PRAGMA journal_mode = wal")
                with _write_transaction(conn):
                    self._init(conn)
            finally:
                conn.close()
            self._ready = True

    def fetch_one(self, sql: str, params: tuple[object, ...]) -> tuple[Any, ...] | None:
        """The first row of a query; None if the file or its table does not exist yet."""
        try:
            conn = self.connection(create=False)
            if conn is None:
                return None
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
        except sqlite3.OperationalError as exc:
            if _missing_table(exc):
                return None
            raise
        except sqlite3.DatabaseError as exc:
            self._report_broken(exc)
            return None
        return row

    def write_many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        """Run ``sql`` for every row in one write transaction (created file if needed)."""
        if not rows:
            return
        try:
            conn = self.connection(create=True)
            assert conn is not None
            with _write_transaction(conn):
                conn.executemany(sql, rows)
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            # Tiles are still served (uncached); the file needs an operator.
            self._report_broken(exc)

    def delete(self, sql: str, params: tuple[object, ...]) -> None:
        """Run a DELETE; a missing file or table means there is nothing to delete."""
        try:
            conn = self.connection(create=False)
            if conn is None:
                return
            conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if not _missing_table(exc):
                raise
        except sqlite3.DatabaseError as exc:
            self._report_broken(exc)

    def _report_broken(self, error: sqlite3.DatabaseError) -> None:
        """Log a file that is not a (complete) SQLite database; reconnect next time."""
        log.error("unable to use SQLite cache file %s: %s", self.filename, error)
        self.close()
        with self._ready_lock:
            self._ready = False

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            if getattr(self._local, "pid", None) == os.getpid():
                conn.close()


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (also KeyboardInterrupt)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _missing_table(error: sqlite3.OperationalError) -> bool:
    return "no such table" in str(error)


def _mbtiles_init(timestamps: bool) -> _Init:
    def init(conn: sqlite3.Connection) -> None:
        conn.execute(_TILES_SQL.format(extra=_TIMESTAMP_COLUMN if timestamps else ""))
        conn.execute(_INDEX_SQL)
        conn.execute(_METADATA_SQL)

    return init


def _local_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _parse_local_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return time.mktime(time.strptime(value[:19], "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return None


class _TilesTable:
    """Reads and writes the ``tiles`` table of one MBTiles-like file."""

    def __init__(self, db: SQLiteFile, timestamps: bool, ttl: int = 0) -> None:
        self.db = db
        self.timestamps = timestamps
        self.ttl = ttl

    def _expired(self, timestamp: float | None) -> bool:
        return bool(self.ttl) and timestamp is not None and timestamp + self.ttl < time.time()

    def load(self, coord: TileCoord, with_data: bool = True) -> Tile | None:
        columns = "tile_data" if with_data else "1"
        if self.timestamps:
            columns += ", last_modified"
        row = self.db.fetch_one(
            f"SELECT {columns} FROM tiles "
            "WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
            (coord.z, coord.x, coord.y),
        )
        if row is None:
            return None
        timestamp = _parse_local_time(row[1]) if self.timestamps else None
        if self._expired(timestamp):
            return None
        data = bytes(row[0]) if with_data and row[0] is not None else None
        return Tile(coord, data, timestamp)

    def store(self, tiles: Mapping[TileCoord, bytes]) -> None:
        if self.timestamps:
            now = _local_time(time.time())
            self.db.write_many(
                "INSERT OR REPLACE INTO tiles "
                "(zoom_level, tile_column, tile_row, tile_data, last_modified) "
                "VALUES (?, ?, ?, ?, ?)",
                [(c.z, c.x, c.y, sqlite3.Binary(d), now) for c, d in tiles.items()],
            )
        else:
            self.db.write_many(
                "INSERT OR REPLACE INTO tiles (zoom_level, tile_column, tile_row, tile_data) "
                "VALUES (?, ?, ?, ?)",
                [(c.z, c.x, c.y, sqlite3.Binary(d)) for c, d in tiles.items()],
            )

    def remove(self, coord: TileCoord) -> None:
        self.db.delete(
            "DELETE FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
            (coord.z, coord.x, coord.y),
        )

    def remove_level(self, level: int, before: float | None = None) -> None:
        """Delete the tiles of ``level`` (only those older than ``before`` if given)."""
        if before is None or not self.timestamps:
            self.db.delete("DELETE FROM tiles WHERE zoom_level = ?", (level,))
        else:
            self.db.delete(
                "DELETE FROM tiles WHERE zoom_level = ? AND last_modified < ?",
                (level, _local_time(before)),
            )


class MBTilesCache:
    """All tiles in one MBTiles file (``tiles`` + ``metadata`` tables, no timestamps)."""

    def __init__(
        self,
        filename: str,
        sqlite_timeout: float = 30,
        wal: bool = False,
        file_permissions: int | None = None,
        directory_permissions: int | None = None,
    ) -> None:
        self.filename = filename
        self.lock_cache_id = "mbtiles-" + hashlib.md5(filename.encode("utf-8")).hexdigest()
        db = SQLiteFile(
            filename,
            _mbtiles_init(timestamps=False),
            sqlite_timeout,
            wal,
            file_permissions,
            directory_permissions,
        )
        self._table = _TilesTable(db, timestamps=False)

    def __repr__(self) -> str:
        return f"MBTilesCache({self.filename!r})"

    def load_tile(self, coord: TileCoord) -> Tile | None:
        """The stored tile (without timestamp) or None."""
        return self._table.load(coord)

    def is_cached(self, coord: TileCoord) -> bool:
        """True if a row exists for ``coord``."""
        return self._table.load(coord, with_data=False) is not None

    def tile_timestamp(self, coord: TileCoord) -> float | None:
        """MBTiles stores no timestamps: always None."""
        return None

    def store_tiles(self, tiles: Mapping[TileCoord, bytes]) -> None:
        """Insert or replace the tiles in one transaction."""
        self._table.store(tiles)

    def remove_tile(self, coord: TileCoord) -> None:
        """Delete the row of ``coord`` if present."""
        self._table.remove(coord)

    def remove_level_tiles_before(self, level: int, timestamp: float | None) -> None:
        """Delete all tiles of ``level`` (no timestamps are stored: ``timestamp`` is ignored)."""
        self._table.remove_level(level)


class SQLiteLevelsCache:
    """One MBTiles-like file per level (``<directory>/<z>.mbtiles``) with timestamps.

    Tiles older than ``ttl`` seconds (0: never) count as missing.
    """

    def __init__(
        self,
        directory: str,
        sqlite_timeout: float = 30,
        wal: bool = False,
        ttl: int = 0,
        file_permissions: int | None = None,
        directory_permissions: int | None = None,
    ) -> None:
        self.directory = directory
        self.sqlite_timeout = sqlite_timeout
        self.wal = wal
        self.ttl = ttl or 0
        self.file_permissions = file_permissions
        self.directory_permissions = directory_permissions
        self.lock_cache_id = "sqlite-" + hashlib.md5(directory.encode("utf-8")).hexdigest()
        self._levels: dict[int, _TilesTable] = {}
        self._levels_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteLevelsCache({self.directory!r})"

    def level_filename(self, level: int) -> str:
        """The database file of ``level``."""
        return os.path.join(self.directory, f"{level}.mbtiles")

    def _table(self, level: int) -> _TilesTable:
        table = self._levels.get(level)
        if table is None:
            with self._levels_lock:
                table = self._levels.get(level)
                if table is None:
                    db = SQLiteFile(
                        self.level_filename(level),
                        _mbtiles_init(timestamps=True),
                        self.sqlite_timeout,
                        self.wal,
                        self.file_permissions,
                        self.directory_permissions,
                    )
                    table = _TilesTable(db, timestamps=True, ttl=self.ttl)
                    self._levels[level] = table
        return table

    def load_tile(self, coord: TileCoord) -> Tile | None:
        """The stored tile with its timestamp, or None if missing or expired."""
        return self._table(coord.z).load(coord)

    def is_cached(self, coord: TileCoord) -> bool:
        """True if an unexpired row exists for ``coord``."""
        return self._table(coord.z).load(coord, with_data=False) is not None

    def tile_timestamp(self, coord: TileCoord) -> float | None:
        """The stored timestamp (epoch seconds) or None if missing or expired."""
        tile = self._table(coord.z).load(coord, with_data=False)
        return tile.timestamp if tile is not None else None

    def store_tiles(self, tiles: Mapping[TileCoord, bytes]) -> None:
        """Store the tiles, one transaction per level."""
        by_level: dict[int, dict[TileCoord, bytes]] = {}
        for coord, data in tiles.items():
            by_level.setdefault(coord.z, {})[coord] = data
        for level, level_tiles in by_level.items():
            self._table(level).store(level_tiles)

    def remove_tile(self, coord: TileCoord) -> None:
        """Delete the row of ``coord`` if present."""
        self._table(coord.z).remove(coord)

    def remove_level_tiles_before(self, level: int, timestamp: float | None) -> None:
        """Delete the tiles of ``level`` older than ``timestamp``; None: the level file."""
        if timestamp is not None:
            self._table(level).remove_level(level, timestamp)
            return
        with self._levels_lock:
            table = self._levels.pop(level, None)
        if table is not None:
            table.db.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.level_filename(level))
