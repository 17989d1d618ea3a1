"""GeoPackage tile cache: a tiles table plus the gpkg_* metadata tables of the spec.

Rows use the grid's own numbering, as MapProxy writes them (for grids with origin
``nw`` this is the GeoPackage top-left numbering). No timestamps are stored.
With ``levels`` each level lives in its own ``<z>.gpkg`` below a directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Mapping

from mapproxy.cache.base import Tile
from mapproxy.cache.mbtiles import SQLiteFile
from mapproxy.grid import TileGrid
from mapproxy.grid.tile_grid import TileCoord

GPKG_APPLICATION_ID = 0x47503130  # "GP10", as MapProxy 7 writes it

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (
        srs_name TEXT NOT NULL,
        srs_id INTEGER NOT NULL PRIMARY KEY,
        organization TEXT NOT NULL,
        organization_coordsys_id INTEGER NOT NULL,
        definition TEXT NOT NULL,
        description TEXT)""",
    """CREATE TABLE IF NOT EXISTS gpkg_contents (
        table_name TEXT NOT NULL PRIMARY KEY,
        data_type TEXT NOT NULL,
        identifier TEXT UNIQUE,
        description TEXT DEFAULT '',
        last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        min_x DOUBLE,
        min_y DOUBLE,
        max_x DOUBLE,
        max_y DOUBLE,
        srs_id INTEGER,
        CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))""",
    """CREATE TABLE IF NOT EXISTS gpkg_tile_matrix_set (
        table_name TEXT NOT NULL PRIMARY KEY,
        srs_id INTEGER NOT NULL,
        min_x DOUBLE NOT NULL,
        min_y DOUBLE NOT NULL,
        max_x DOUBLE NOT NULL,
        max_y DOUBLE NOT NULL,
        CONSTRAINT fk_gtms_table_name FOREIGN KEY (table_name)
            REFERENCES gpkg_contents(table_name),
        CONSTRAINT fk_gtms_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id))""",
    """CREATE TABLE IF NOT EXISTS gpkg_tile_matrix (
        table_name TEXT NOT NULL,
        zoom_level INTEGER NOT NULL,
        matrix_width INTEGER NOT NULL,
        matrix_height INTEGER NOT NULL,
        tile_width INTEGER NOT NULL,
        tile_height INTEGER NOT NULL,
        pixel_x_size DOUBLE NOT NULL,
        pixel_y_size DOUBLE NOT NULL,
        CONSTRAINT pk_ttm PRIMARY KEY (table_name, zoom_level),
        CONSTRAINT fk_tmm_table_name FOREIGN KEY (table_name)
            REFERENCES gpkg_contents(table_name))""",
]

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _srs_id(grid: TileGrid) -> tuple[str, int]:
    code = grid.srs.code
    organization, _, number = code.partition(":")
    if number.isdigit():
        return organization.lower(), int(number)
    return "NONE", -1


def _init_for(
    grid: TileGrid, table_name: str, levels: list[int]
) -> Callable[[sqlite3.Connection], None]:
    organization, srs_id = _srs_id(grid)

    def init(conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA application_id = {GPKG_APPLICATION_ID}")
        for sql in _SCHEMA:
            conn.execute(sql)
        srs_rows = [
            ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", None),
            ("Undefined geographic SRS", 0, "NONE", 0, "undefined", None),
        ]
        if srs_id > 0:
            srs_rows.append(
                (
                    grid.srs.crs.name,
                    srs_id,
                    organization,
                    srs_id,
                    grid.srs.crs.to_wkt("WKT1_GDAL"),
                    None,
                )
            )
        conn.executemany(
            "INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", srs_rows
        )
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS [{table_name}] (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                zoom_level INTEGER NOT NULL,
                tile_column INTEGER NOT NULL,
                tile_row INTEGER NOT NULL,
                tile_data BLOB NOT NULL,
                UNIQUE (zoom_level, tile_column, tile_row))"""
        )
        minx, miny, maxx, maxy = grid.bbox
        conn.execute(
            "INSERT OR IGNORE INTO gpkg_contents "
            "(table_name, data_type, identifier, description, min_x, min_y, max_x, max_y, srs_id)"
            " VALUES (?, 'tiles', ?, 'Created with Mapproxy.', ?, ?, ?, ?, ?)",
            (table_name, table_name, minx, miny, maxx, maxy, srs_id),
        )
        conn.execute(
            "INSERT OR IGNORE INTO gpkg_tile_matrix_set VALUES (?, ?, ?, ?, ?, ?)",
            (table_name, srs_id, minx, miny, maxx, maxy),
        )
        tile_w, tile_h = grid.tile_size
        conn.executemany(
            "INSERT OR IGNORE INTO gpkg_tile_matrix VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    table_name,
                    level,
                    grid.grid_sizes[level][0],
                    grid.grid_sizes[level][1],
                    tile_w,
                    tile_h,
                    grid.resolutions[level],
                    grid.resolutions[level],
                )
                for level in levels
            ],
        )

    return init


class _GeoPackageFile:
    def __init__(self, db: SQLiteFile, table_name: str) -> None:
        self.db = db
        self.table = table_name

    def load(self, coord: TileCoord, with_data: bool = True) -> Tile | None:
        column = "tile_data" if with_data else "1"
        row = self.db.fetch_one(
            f"SELECT {column} FROM [{self.table}] "
            "WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
            (coord.z, coord.x, coord.y),
        )
        if row is None:
            return None
        return Tile(coord, bytes(row[0]) if with_data else None, None)

    def store(self, tiles: Mapping[TileCoord, bytes]) -> None:
        self.db.write_many(
            f"INSERT OR REPLACE INTO [{self.table}] "
            "(zoom_level, tile_column, tile_row, tile_data) VALUES (?, ?, ?, ?)",
            [(c.z, c.x, c.y, sqlite3.Binary(d)) for c, d in tiles.items()],
        )

    def remove(self, coord: TileCoord) -> None:
        self.db.delete(
            f"DELETE FROM [{self.table}] WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
            (coord.z, coord.x, coord.y),
        )

    def remove_level(self, level: int) -> None:
        self.db.delete(f"DELETE FROM [{self.table}] WHERE zoom_level = ?", (level,))


class GeoPackageCache:
    """Tiles of ``grid`` in table ``table_name`` of one GeoPackage (or one per level).

    With ``levels`` ``path`` is a directory holding ``<z>.gpkg`` files, else the file.
    """

    def __init__(
        self,
        path: str,
        table_name: str,
        grid: TileGrid,
        levels: bool = False,
        sqlite_timeout: float = 30,
        wal: bool = False,
        file_permissions: int | None = None,
        directory_permissions: int | None = None,
    ) -> None:
        if not _TABLE_NAME.match(table_name):
            raise ValueError(f"invalid geopackage table_name {table_name!r}")
        self.path = path
        self.table_name = table_name
        self.grid = grid
        self.levels = levels
        self._options = (sqlite_timeout, wal, file_permissions, directory_permissions)
        self.lock_cache_id = "gpkg-" + hashlib.md5(path.encode("utf-8")).hexdigest()
        self._files: dict[int | None, _GeoPackageFile] = {}
        self._files_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GeoPackageCache({self.path!r}, {self.table_name!r})"

    def _file(self, level: int) -> _GeoPackageFile:
        key = level if self.levels else None
        gpkg = self._files.get(key)
        if gpkg is None:
            with self._files_lock:
                gpkg = self._files.get(key)
                if gpkg is None:
                    if self.levels:
                        filename = os.path.join(self.path, f"{level}.gpkg")
                        matrix_levels = [level]
                    else:
                        filename = self.path
                        matrix_levels = list(range(len(self.grid.resolutions)))
                    init = _init_for(self.grid, self.table_name, matrix_levels)
                    db = SQLiteFile(filename, init, *self._options)
                    gpkg = _GeoPackageFile(db, self.table_name)
                    self._files[key] = gpkg
        return gpkg

    def load_tile(self, coord: TileCoord) -> Tile | None:
        """The stored tile (without timestamp) or None."""
        return self._file(coord.z).load(coord)

    def is_cached(self, coord: TileCoord) -> bool:
        """True if a row exists for ``coord``."""
        return self._file(coord.z).load(coord, with_data=False) is not None

    def tile_timestamp(self, coord: TileCoord) -> float | None:
        """GeoPackage caches store no timestamps: always None."""
        return None

    def store_tiles(self, tiles: Mapping[TileCoord, bytes]) -> None:
        """Insert or replace the tiles, one transaction per file."""
        by_file: dict[int, dict[TileCoord, bytes]] = {}
        for coord, data in tiles.items():
            by_file.setdefault(coord.z if self.levels else 0, {})[coord] = data
        for key, file_tiles in by_file.items():
            self._file(key).store(file_tiles)

    def remove_tile(self, coord: TileCoord) -> None:
        """Delete the row of ``coord`` if present."""
        self._file(coord.z).remove(coord)

    def remove_level_tiles_before(self, level: int, timestamp: float | None) -> None:
        """Delete all tiles of ``level`` (no timestamps are stored: ``timestamp`` is ignored)."""
        self._file(level).remove_level(level)
