"""ArcGIS compact cache (version 1 and 2): 128x128 tiles per append-only bundle file.

Layout below the cache directory: ``L<zz>/R<rrrr>C<cccc>.bundle`` where row/column are the
lowercase hex grid coordinates (y, x) of the bundle's first tile; version 1 keeps the tile
offsets in a ``.bundlx`` file next to it, version 2 in the bundle itself. Tiles are only
appended; replaced or removed tiles leave unused space until the bundle is defragmented.
The caches store no timestamps.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from mapproxy.cache.base import Tile
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.util.filelock import exclusive_file_lock
from mapproxy.util.fs import ensure_directory, write_atomic

BUNDLE_SIZE = 128
"""Tiles per bundle side."""

_RECORDS = BUNDLE_SIZE * BUNDLE_SIZE
_SIZE_PREFIX = struct.Struct("<I")

# Version 1: 60 byte bundle header, then one zero size word per tile (empty index entries
# point there), then the tiles; the .bundlx has a 16 byte header, 5 byte offsets of the
# size words (column-major), 16 byte footer.
_V1_HEADER = struct.Struct("<4IQQQ5I")
_V1_DATA_START = _V1_HEADER.size + 4 * _RECORDS
_V1_INDEX_HEADER = struct.pack("<4I", 3, 16, _RECORDS, 5)
_V1_INDEX_FOOTER = struct.pack("<4I", 0, 16, 16, 0)
_V1_ENTRY_SIZE = 5

# Version 2: 64 byte header, 8 byte index entries (row-major; 40 bit offset of the tile
# data, 24 bit size), then the tiles, each after a 4 byte size word.
_V2_HEADER = struct.Struct("<4IQQQI4II")
_V2_INDEX_SIZE = 8 * _RECORDS
_V2_DATA_START = _V2_HEADER.size + _V2_INDEX_SIZE
_V2_EMPTY_ENTRY = 4
_V2_MAX_TILE_SIZE = (1 << 24) - 1


@dataclass(frozen=True, slots=True)
class BundleUsage:
    """How much of a bundle file holds current tiles (for defragmentation)."""

    file_size: int
    unused_bytes: int
    tiles: int

    @property
    def unused_percent(self) -> float:
        """Unused bytes in percent of the file size."""
        return 100.0 * self.unused_bytes / self.file_size if self.file_size else 0.0


class Bundle:
    """One bundle (``base_path`` without extension) whose first tile is ``row0``/``col0``.

    Writers must hold ``lock()``; readers need no lock because tile data is appended
    before the index entry pointing to it is written.
    """

    version: int = 0

    def __init__(
        self,
        base_path: str,
        row0: int,
        col0: int,
        file_permissions: int | None = None,
        directory_permissions: int | None = None,
    ) -> None:
        self.base_path = base_path
        self.row0 = row0
        self.col0 = col0
        self.file_permissions = file_permissions
        self.directory_permissions = directory_permissions

    @property
    def bundle_path(self) -> str:
        """Path of the ``.bundle`` file."""
        return self.base_path + ".bundle"

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive lock for writing this bundle (lock file ``<base>.lck``)."""
        return exclusive_file_lock(self.base_path + ".lck", self.directory_permissions)

    def load(self, row: int, col: int) -> bytes | None:
        """The tile at ``row``/``col`` (relative to the bundle) or None."""
        raise NotImplementedError

    def store(self, tiles: Mapping[tuple[int, int], bytes]) -> None:
        """Append tiles keyed by (row, col) and point the index at them (hold ``lock()``)."""
        raise NotImplementedError

    def remove(self, row: int, col: int) -> None:
        """Clear the index entry of one tile (hold ``lock()``); its data stays in the file."""
        raise NotImplementedError

    def records(self) -> list[tuple[int, int, int, int]]:
        """``(row, col, data_offset, size)`` of every stored tile, in row-major order."""
        raise NotImplementedError

    def usage(self) -> BundleUsage:
        """File size and the bytes not used by current tiles."""
        file_size = os.path.getsize(self.bundle_path)
        records = self.records()
        used = sum(size + _SIZE_PREFIX.size for _, _, _, size in records)
        start = _V1_DATA_START if self.version == 1 else _V2_DATA_START
        return BundleUsage(file_size, max(0, file_size - start - used), len(records))

    def defragment(self) -> None:
        """Rewrite the bundle with only its current tiles (hold ``lock()``)."""
        raise NotImplementedError

    def _read_tiles(self) -> list[tuple[int, int, bytes]]:
        tiles = []
        with open(self.bundle_path, "rb") as f:
            for row, col, offset, size in self.records():
                f.seek(offset)
                data = f.read(size)
                if len(data) == size:
                    tiles.append((row, col, data))
        return tiles


def _read_at(path: str, offset: int, size: int) -> bytes | None:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return data if len(data) == size else None


class BundleV1(Bundle):
    """Compact cache version 1: ``.bundle`` with tiles and ``.bundlx`` with offsets."""

    version = 1

    @property
    def index_path(self) -> str:
        """Path of the ``.bundlx`` index file."""
        return self.base_path + ".bundlx"

    @staticmethod
    def _index(row: int, col: int) -> int:
        return col * BUNDLE_SIZE + row

    def _header(self, max_size: int, tile_bytes: int, file_size: int) -> bytes:
        return _V1_HEADER.pack(
            3,
            _RECORDS,
            max_size,
            5,
            tile_bytes,
            file_size,
            40,
            16,
            self.row0,
            self.row0 + BUNDLE_SIZE - 1,
            self.col0,
            self.col0 + BUNDLE_SIZE - 1,
        )

    def _empty_index(self) -> bytearray:
        entries = bytearray(_V1_ENTRY_SIZE * _RECORDS)
        for index in range(_RECORDS):
            offset = _V1_HEADER.size + 4 * index
            entries[index * 5 : index * 5 + 5] = offset.to_bytes(5, "little")
        return entries

    def _write_files(self, data: bytes, entries: bytes) -> None:
        write_atomic(self.bundle_path, data, self.file_permissions, self.directory_permissions)
        write_atomic(
            self.index_path,
            _V1_INDEX_HEADER + entries + _V1_INDEX_FOOTER,
            self.file_permissions,
            self.directory_permissions,
        )

    def _create(self) -> None:
        if os.path.exists(self.bundle_path) and os.path.exists(self.index_path):
            return
        ensure_directory(os.path.dirname(self.bundle_path), self.directory_permissions)
        empty = self._header(0, 0, _V1_DATA_START) + bytes(4 * _RECORDS)
        self._write_files(empty, bytes(self._empty_index()))

    def _offset(self, row: int, col: int) -> int | None:
        raw = _read_at(
            self.index_path,
            len(_V1_INDEX_HEADER) + _V1_ENTRY_SIZE * self._index(row, col),
            _V1_ENTRY_SIZE,
        )
        if raw is None:
            return None
        offset = int.from_bytes(raw, "little")
        # 0: removed; below the data start: the zero size word of an empty entry.
        return offset if offset >= _V1_DATA_START else None

    def load(self, row: int, col: int) -> bytes | None:
        """The tile at ``row``/``col`` (relative to the bundle) or None."""
        offset = self._offset(row, col)
        if offset is None:
            return None
        prefix = _read_at(self.bundle_path, offset, _SIZE_PREFIX.size)
        if prefix is None:
            return None
        (size,) = _SIZE_PREFIX.unpack(prefix)
        if size == 0:
            return None
        return _read_at(self.bundle_path, offset + _SIZE_PREFIX.size, size)

    def store(self, tiles: Mapping[tuple[int, int], bytes]) -> None:
        """Append tiles keyed by (row, col) and point the index at them (hold ``lock()``)."""
        self._create()
        with open(self.bundle_path, "r+b") as bundle, open(self.index_path, "r+b") as index:
            header = list(_V1_HEADER.unpack(bundle.read(_V1_HEADER.size)))
            offset = bundle.seek(0, os.SEEK_END)
            records = bytearray()
            entries: list[tuple[int, int]] = []
            for (row, col), data in tiles.items():
                entries.append((self._index(row, col), offset + len(records)))
                records += _SIZE_PREFIX.pack(len(data)) + data
                header[2] = max(header[2], len(data))
            bundle.write(records)
            bundle.flush()
            for position, tile_offset in entries:
                index.seek(len(_V1_INDEX_HEADER) + _V1_ENTRY_SIZE * position)
                old = int.from_bytes(index.read(_V1_ENTRY_SIZE), "little")
                if old < _V1_DATA_START:
                    header[4] += 4  # the header counts 4 bytes per stored tile
                index.seek(len(_V1_INDEX_HEADER) + _V1_ENTRY_SIZE * position)
                index.write(tile_offset.to_bytes(_V1_ENTRY_SIZE, "little"))
            header[5] = offset + len(records)
            bundle.seek(0)
            bundle.write(_V1_HEADER.pack(*header))

    def remove(self, row: int, col: int) -> None:
        """Clear the index entry of one tile (hold ``lock()``); its data stays in the file."""
        if self._offset(row, col) is None:
            return
        with open(self.index_path, "r+b") as index:
            index.seek(len(_V1_INDEX_HEADER) + _V1_ENTRY_SIZE * self._index(row, col))
            index.write(bytes(_V1_ENTRY_SIZE))

    def records(self) -> list[tuple[int, int, int, int]]:
        """``(row, col, data_offset, size)`` of every stored tile, in row-major order."""
        try:
            with open(self.index_path, "rb") as f:
                raw = f.read()
            with open(self.bundle_path, "rb") as bundle:
                found = []
                for row in range(BUNDLE_SIZE):
                    for col in range(BUNDLE_SIZE):
                        start = len(_V1_INDEX_HEADER) + _V1_ENTRY_SIZE * self._index(row, col)
                        offset = int.from_bytes(raw[start : start + _V1_ENTRY_SIZE], "little")
                        if offset < _V1_DATA_START:
                            continue
                        bundle.seek(offset)
                        prefix = bundle.read(_SIZE_PREFIX.size)
                        if len(prefix) < _SIZE_PREFIX.size:
                            continue
                        (size,) = _SIZE_PREFIX.unpack(prefix)
                        if size:
                            found.append((row, col, offset + _SIZE_PREFIX.size, size))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return found

    def defragment(self) -> None:
        """Rewrite the bundle with only its current tiles (hold ``lock()``)."""
        tiles = self._read_tiles()
        records = bytearray()
        entries = self._empty_index()
        max_size = 0
        for row, col, data in tiles:
            position = self._index(row, col)
            offset = _V1_DATA_START + len(records)
            entries[position * 5 : position * 5 + 5] = offset.to_bytes(5, "little")
            records += _SIZE_PREFIX.pack(len(data)) + data
            max_size = max(max_size, len(data))
        header = self._header(max_size, 4 * len(tiles), _V1_DATA_START + len(records))
        self._write_files(header + bytes(4 * _RECORDS) + records, bytes(entries))


class BundleV2(Bundle):
    """Compact cache version 2: header, index and tiles in one ``.bundle`` file."""

    version = 2

    @staticmethod
    def _entry_offset(row: int, col: int) -> int:
        return _V2_HEADER.size + 8 * (row * BUNDLE_SIZE + col)

    @staticmethod
    def _header(max_size: int, file_size: int) -> bytes:
        return _V2_HEADER.pack(
            3, _RECORDS, max_size, 5, 0, file_size, 40, _V2_INDEX_SIZE + 20, 3, 16, _RECORDS, 5,
            _V2_INDEX_SIZE,
        )  # fmt: skip

    def _create(self) -> None:
        if os.path.exists(self.bundle_path):
            return
        index = struct.pack("<Q", _V2_EMPTY_ENTRY) * _RECORDS
        write_atomic(
            self.bundle_path,
            self._header(0, _V2_DATA_START) + index,
            self.file_permissions,
            self.directory_permissions,
        )

    def _entry(self, row: int, col: int) -> tuple[int, int] | None:
        raw = _read_at(self.bundle_path, self._entry_offset(row, col), 8)
        if raw is None:
            return None
        (entry,) = struct.unpack("<Q", raw)
        size = entry >> 40
        return (entry & 0xFFFFFFFFFF, size) if size else None

    def load(self, row: int, col: int) -> bytes | None:
        """The tile at ``row``/``col`` (relative to the bundle) or None."""
        entry = self._entry(row, col)
        if entry is None:
            return None
        return _read_at(self.bundle_path, *entry)

    def store(self, tiles: Mapping[tuple[int, int], bytes]) -> None:
        """Append tiles keyed by (row, col) and point the index at them (hold ``lock()``)."""
        for data in tiles.values():
            if len(data) > _V2_MAX_TILE_SIZE:
                raise ValueError(f"tile of {len(data)} bytes is too large for a compact cache")
        self._create()
        with open(self.bundle_path, "r+b") as bundle:
            header = list(_V2_HEADER.unpack(bundle.read(_V2_HEADER.size)))
            offset = bundle.seek(0, os.SEEK_END)
            records = bytearray()
            entries: list[tuple[int, int]] = []
            for (row, col), data in tiles.items():
                data_offset = offset + len(records) + _SIZE_PREFIX.size
                entries.append((self._entry_offset(row, col), data_offset | len(data) << 40))
                records += _SIZE_PREFIX.pack(len(data)) + data
                header[2] = max(header[2], len(data))
            bundle.write(records)
            bundle.flush()
            for position, entry in entries:
                bundle.seek(position)
                bundle.write(struct.pack("<Q", entry))
            header[5] = offset + len(records)
            bundle.seek(0)
            bundle.write(_V2_HEADER.pack(*header))

    def remove(self, row: int, col: int) -> None:
        """Clear the index entry of one tile (hold ``lock()``); its data stays in the file."""
        if self._entry(row, col) is None:
            return
        with open(self.bundle_path, "r+b") as bundle:
            bundle.seek(self._entry_offset(row, col))
            bundle.write(bytes(8))

    def records(self) -> list[tuple[int, int, int, int]]:
        """``(row, col, data_offset, size)`` of every stored tile, in row-major order."""
        raw = _read_at(self.bundle_path, _V2_HEADER.size, _V2_INDEX_SIZE)
        if raw is None:
            return []
        found = []
        for position, (entry,) in enumerate(struct.iter_unpack("<Q", raw)):
            size = entry >> 40
            if size:
                row, col = divmod(position, BUNDLE_SIZE)
                found.append((row, col, entry & 0xFFFFFFFFFF, size))
        return found

    def defragment(self) -> None:
        """Rewrite the bundle with only its current tiles (hold ``lock()``)."""
        tiles = self._read_tiles()
        index = bytearray(struct.pack("<Q", _V2_EMPTY_ENTRY) * _RECORDS)
        records = bytearray()
        max_size = 0
        for row, col, data in tiles:
            data_offset = _V2_DATA_START + len(records) + _SIZE_PREFIX.size
            position = self._entry_offset(row, col) - _V2_HEADER.size
            index[position : position + 8] = struct.pack("<Q", data_offset | len(data) << 40)
            records += _SIZE_PREFIX.pack(len(data)) + data
            max_size = max(max_size, len(data))
        header = self._header(max_size, _V2_DATA_START + len(records))
        write_atomic(
            self.bundle_path,
            header + index + records,
            self.file_permissions,
            self.directory_permissions,
        )


_BUNDLE_CLASSES: dict[int, type[Bundle]] = {1: BundleV1, 2: BundleV2}


class CompactCache:
    """Tiles in ArcGIS compact cache bundles below ``cache_dir`` (``version`` 1 or 2).

    Permissions are octal ints applied to created files and directories.
    """

    def __init__(
        self,
        cache_dir: str,
        version: int,
        file_permissions: int | None = None,
        directory_permissions: int | None = None,
    ) -> None:
        if version not in _BUNDLE_CLASSES:
            raise ValueError(f"unsupported compact cache version {version!r} (1 or 2)")
        self.cache_dir = cache_dir
        self.version = version
        self.file_permissions = file_permissions
        self.directory_permissions = directory_permissions
        self.lock_cache_id = "compactcache-" + hashlib.md5(cache_dir.encode("utf-8")).hexdigest()
        self._bundle_class = _BUNDLE_CLASSES[version]

    def __repr__(self) -> str:
        return f"CompactCache({self.cache_dir!r}, version={self.version})"

    def bundle_for(self, coord: TileCoord) -> tuple[Bundle, int, int]:
        """The bundle holding ``coord`` and the tile's row and column inside it."""
        row0 = coord.y - coord.y % BUNDLE_SIZE
        col0 = coord.x - coord.x % BUNDLE_SIZE
        base = os.path.join(self.cache_dir, f"L{coord.z:02d}", f"R{row0:04x}C{col0:04x}")
        bundle = self._bundle_class(
            base, row0, col0, self.file_permissions, self.directory_permissions
        )
        return bundle, coord.y - row0, coord.x - col0

    def load_tile(self, coord: TileCoord) -> Tile | None:
        """The stored tile (without timestamp) or None."""
        bundle, row, col = self.bundle_for(coord)
        data = bundle.load(row, col)
        return Tile(coord, data) if data is not None else None

    def is_cached(self, coord: TileCoord) -> bool:
        """True if the bundle's index has an entry for ``coord``."""
        bundle, row, col = self.bundle_for(coord)
        return bundle.load(row, col) is not None

    def tile_timestamp(self, coord: TileCoord) -> float | None:
        """Compact caches store no timestamps: always None."""
        return None

    def store_tile(self, coord: TileCoord, data: bytes) -> None:
        """Store one encoded tile."""
        self.store_tiles({coord: data})

    def store_tiles(self, tiles: Mapping[TileCoord, bytes]) -> None:
        """Append tiles to their bundles, one locked write per bundle."""
        grouped: dict[str, tuple[Bundle, dict[tuple[int, int], bytes]]] = {}
        for coord, data in tiles.items():
            bundle, row, col = self.bundle_for(coord)
            grouped.setdefault(bundle.base_path, (bundle, {}))[1][row, col] = data
        for bundle, bundle_tiles in grouped.values():
            ensure_directory(os.path.dirname(bundle.base_path), self.directory_permissions)
            with bundle.lock():
                bundle.store(bundle_tiles)

    def remove_tile(self, coord: TileCoord) -> None:
        """Clear the tile's index entry (the bundle keeps its bytes until defragmented)."""
        bundle, row, col = self.bundle_for(coord)
        if not os.path.exists(bundle.bundle_path):
            return
        with bundle.lock():
            bundle.remove(row, col)

    def remove_level_tiles_before(self, level: int, timestamp: float | None) -> None:
        """Delete the bundles of ``level`` (no timestamps are stored: ``timestamp`` is ignored)."""
        shutil.rmtree(os.path.join(self.cache_dir, f"L{level:02d}"), ignore_errors=True)

    def bundles(self) -> Iterator[Bundle]:
        """Every bundle of the cache, sorted by path."""
        pattern = os.path.join(glob.escape(self.cache_dir), "L[0-9]*", "R*C*.bundle")
        for path in sorted(glob.glob(pattern)):
            name = os.path.basename(path)[: -len(".bundle")]
            row_hex, _, col_hex = name[1:].partition("C")
            try:
                row0, col0 = int(row_hex, 16), int(col_hex, 16)
            except ValueError:
                continue
            yield self._bundle_class(
                path[: -len(".bundle")],
                row0,
                col0,
                self.file_permissions,
                self.directory_permissions,
            )
