from __future__ import annotations

import multiprocessing
import os
import stat
import struct
import threading
from pathlib import Path

import pytest

from mapproxy.cache.compact import BundleV1, BundleV2, CompactCache
from mapproxy.grid.tile_grid import TileCoord

V1_DATA_START = 60 + 4 * 128 * 128
V2_DATA_START = 64 + 8 * 128 * 128


def tile_data(n: int, size: int = 100) -> bytes:
    return (f"tile-{n}-".encode() * size)[:size]


def v1_index_entry(bundlx: Path, row: int, col: int) -> int:
    raw = bundlx.read_bytes()
    start = 16 + 5 * (col * 128 + row)
    return int.from_bytes(raw[start : start + 5], "little")


def v2_index_entry(bundle: Path, row: int, col: int) -> tuple[int, int]:
    raw = bundle.read_bytes()
    (entry,) = struct.unpack_from("<Q", raw, 64 + 8 * (row * 128 + col))
    return entry & 0xFFFFFFFFFF, entry >> 40


@pytest.mark.parametrize("version", [1, 2])
def test_round_trip(tmp_path: Path, version: int) -> None:
    cache = CompactCache(str(tmp_path), version)
    coord = TileCoord(5, 2, 3)
    assert cache.load_tile(coord) is None
    assert not cache.is_cached(coord)
    cache.store_tiles({coord: b"hello"})
    tile = cache.load_tile(coord)
    assert tile is not None
    assert tile.data == b"hello"
    assert tile.timestamp is None
    assert cache.tile_timestamp(coord) is None
    assert cache.is_cached(coord)
    assert cache.load_tile(TileCoord(4, 2, 3)) is None
    assert cache.load_tile(TileCoord(5, 2, 4)) is None


def test_v1_paths_and_layout_of_z3_x5_y2(tmp_path: Path) -> None:
    cache = CompactCache(str(tmp_path), 1)
    cache.store_tiles({TileCoord(5, 2, 3): b"abc"})
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["L03/R0000C0000.bundle", "L03/R0000C0000.bundlx"]
    bundle = (tmp_path / "L03/R0000C0000.bundle").read_bytes()
    header = struct.unpack("<4IQQQ5I", bundle[:60])
    # version, records, max size, offset size, 4 bytes per tile, file size, 40, 16, rows, cols
    assert header == (3, 16384, 3, 5, 4, len(bundle), 40, 16, 0, 127, 0, 127)
    assert bundle[60:V1_DATA_START] == bytes(4 * 16384)
    assert bundle[V1_DATA_START:] == struct.pack("<I", 3) + b"abc"
    bundlx = tmp_path / "L03/R0000C0000.bundlx"
    raw = bundlx.read_bytes()
    assert len(raw) == 16 + 5 * 16384 + 16
    assert raw[:16] == struct.pack("<4I", 3, 16, 16384, 5)
    assert raw[-16:] == struct.pack("<4I", 0, 16, 16, 0)
    # column-major: the entry of row 2, column 5; empty entries point at their zero word
    assert v1_index_entry(bundlx, 2, 5) == V1_DATA_START
    assert v1_index_entry(bundlx, 5, 2) == 60 + 4 * (2 * 128 + 5)


def test_v2_paths_and_layout_of_z3_x5_y2(tmp_path: Path) -> None:
    cache = CompactCache(str(tmp_path), 2)
    cache.store_tiles({TileCoord(5, 2, 3): b"abc"})
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["L03/R0000C0000.bundle"]
    path = tmp_path / "L03/R0000C0000.bundle"
    bundle = path.read_bytes()
    header = struct.unpack("<4IQQQI4II", bundle[:64])
    assert header == (3, 16384, 3, 5, 0, len(bundle), 40, 131092, 3, 16, 16384, 5, 131072)
    assert bundle[V2_DATA_START:] == struct.pack("<I", 3) + b"abc"
    # row-major; the offset points behind the size word, empty entries are 4
    assert v2_index_entry(path, 2, 5) == (V2_DATA_START + 4, 3)
    assert v2_index_entry(path, 5, 2) == (4, 0)


@pytest.mark.parametrize("version", [1, 2])
def test_bundle_names_use_hex_origin_of_128_tile_blocks(tmp_path: Path, version: int) -> None:
    cache = CompactCache(str(tmp_path), version)
    cache.store_tiles({TileCoord(300, 129, 12): b"a", TileCoord(4095, 2000, 12): b"b"})
    bundles = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.bundle"))
    assert bundles == ["L12/R0080C0100.bundle", "L12/R0780C0f80.bundle"]
    if version == 1:
        header = struct.unpack("<4IQQQ5I", (tmp_path / "L12/R0080C0100.bundle").read_bytes()[:60])
        assert header[-4:] == (128, 255, 256, 383)
    tile = cache.load_tile(TileCoord(4095, 2000, 12))
    assert tile is not None and tile.data == b"b"


@pytest.mark.parametrize("version", [1, 2])
def test_many_tiles_in_one_bundle(tmp_path: Path, version: int) -> None:
    cache = CompactCache(str(tmp_path), version)
    tiles = {
        TileCoord(x, y, 7): tile_data(x * 128 + y, 50 + x) for x in range(128) for y in (0, 127)
    }
    tiles.update({TileCoord(60, y, 7): tile_data(y) for y in range(128)})
    cache.store_tiles(tiles)
    assert len(list(tmp_path.rglob("*.bundle"))) == 1
    for coord, data in tiles.items():
        tile = cache.load_tile(coord)
        assert tile is not None and tile.data == data, coord
    (bundle,) = cache.bundles()
    assert bundle.usage().tiles == len(tiles)
    assert bundle.usage().unused_bytes == 0


@pytest.mark.parametrize("version", [1, 2])
def test_overwrite_appends_and_reads_the_new_tile(tmp_path: Path, version: int) -> None:
    cache = CompactCache(str(tmp_path), version)
    coord = TileCoord(1, 1, 2)
    cache.store_tiles({coord: b"old-data"})
    path = tmp_path / "L02/R0000C0000.bundle"
    size_before = path.stat().st_size
    cache.store_tiles({coord: b"new"})
    assert path.stat().st_size == size_before + 4 + 3
    tile = cache.load_tile(coord)
    assert tile is not None and tile.data == b"new"
    assert path.read_bytes()[-7:] == struct.pack("<I", 3) + b"new"
    (bundle,) = cache.bundles()
    assert bundle.usage().unused_bytes == 4 + len(b"old-data")
    if version == 1:
        # the tile count of the header does not grow on replacement; max size stays
        assert struct.unpack_from("<I", path.read_bytes(), 16)[0] == 4
        assert struct.unpack_from("<I", path.read_bytes(), 8)[0] == 8


@pytest.mark.parametrize("version", [1, 2])
def test_remove_clears_index_entry(tmp_path: Path, version: int) -> None:
    cache = CompactCache(str(tmp_path), version)
    keep, gone = TileCoord(0, 0, 1), TileCoord(1, 0, 1)
    cache.store_tiles({keep: b"keep", gone: b"gone"})
    path = tmp_path / "L01/R0000C0000.bundle"
    size = path.stat().st_size
    cache.remove_tile(gone)
    cache.remove_tile(TileCoord(1, 1, 1))  # missing tile: no error
    cache.remove_tile(TileCoord(0, 0, 5))  # missing bundle: no error
    assert not cache.is_cached(gone)
    assert cache.load_tile(gone) is None
    assert cache.is_cached(keep)
    assert path.stat().st_size == size
    if version == 1:
        assert v1_index_entry(tmp_path / "L01/R0000C0000.bundlx", 0, 1) == 0
    else:
        assert v2_index_entry(path, 0, 1) == (0, 0)
    assert not list(tmp_path.rglob("*.lck"))


@pytest.mark.parametrize("version", [1, 2])
def test_defragment_drops_unused_space(tmp_path: Path, version: int) -> None:
    cache = CompactCache(str(tmp_path), version)
    coords = [TileCoord(x, y, 4) for x in range(4) for y in range(4)]
    for n in range(3):
        cache.store_tiles({coord: tile_data(n * 100 + i, 200) for i, coord in enumerate(coords)})
    cache.remove_tile(coords[0])
    (bundle,) = cache.bundles()
    before = bundle.usage()
    assert before.unused_bytes == 2 * 16 * 204 + 204
    with bundle.lock():
        bundle.defragment()
    after = bundle.usage()
    assert after.unused_bytes == 0
    assert after.file_size == before.file_size - before.unused_bytes
    assert cache.load_tile(coords[0]) is None
    for i, coord in enumerate(coords[1:], start=1):
        tile = cache.load_tile(coord)
        assert tile is not None and tile.data == tile_data(200 + i, 200)


@pytest.mark.parametrize("version", [1, 2])
def test_permissions_are_applied(tmp_path: Path, version: int) -> None:
    cache = CompactCache(
        str(tmp_path / "c"), version, file_permissions=0o640, directory_permissions=0o750
    )
    cache.store_tiles({TileCoord(0, 0, 0): b"x"})
    assert stat.S_IMODE(os.stat(tmp_path / "c/L00").st_mode) == 0o750
    for path in (tmp_path / "c/L00").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("bundle_class", [BundleV1, BundleV2])
def test_truncated_bundle_reads_as_missing(tmp_path: Path, bundle_class: type) -> None:
    version = 1 if bundle_class is BundleV1 else 2
    cache = CompactCache(str(tmp_path), version)
    cache.store_tiles({TileCoord(0, 0, 0): b"x" * 100})
    path = tmp_path / "L00/R0000C0000.bundle"
    path.write_bytes(path.read_bytes()[:-50])
    assert cache.load_tile(TileCoord(0, 0, 0)) is None


def _write_tiles(directory: str, version: int, worker: int, count: int) -> None:
    cache = CompactCache(directory, version)
    for n in range(count):
        # every worker writes its own tiles, all in the same bundle
        cache.store_tiles({TileCoord(worker, n, 5): tile_data(worker * 1000 + n, 300 + n)})


@pytest.mark.parametrize("version", [1, 2])
def test_concurrent_writer_processes_lose_nothing(tmp_path: Path, version: int) -> None:
    context = multiprocessing.get_context("spawn")
    workers, count = 4, 25
    processes = [
        context.Process(target=_write_tiles, args=(str(tmp_path), version, w, count))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    cache = CompactCache(str(tmp_path), version)
    for w in range(workers):
        for n in range(count):
            tile = cache.load_tile(TileCoord(w, n, 5))
            assert tile is not None and tile.data == tile_data(w * 1000 + n, 300 + n)
    (bundle,) = cache.bundles()
    assert bundle.usage().unused_bytes == 0
    assert not list(tmp_path.rglob("*.lck"))


@pytest.mark.parametrize("version", [1, 2])
def test_concurrent_writer_threads_lose_nothing(tmp_path: Path, version: int) -> None:
    threads = [
        threading.Thread(target=_write_tiles, args=(str(tmp_path), version, w, 20))
        for w in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    cache = CompactCache(str(tmp_path), version)
    for w in range(4):
        for n in range(20):
            tile = cache.load_tile(TileCoord(w, n, 5))
            assert tile is not None and tile.data == tile_data(w * 1000 + n, 300 + n)


def test_invalid_version_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="version"):
        CompactCache(str(tmp_path), 3)


def test_lock_cache_id_has_compactcache_prefix(tmp_path: Path) -> None:
    assert CompactCache(str(tmp_path), 2).lock_cache_id.startswith("compactcache-")


@pytest.mark.parametrize("version", [1, 2])
def test_remove_level_deletes_its_bundles(tmp_path: Path, version: int) -> None:
    cache = CompactCache(str(tmp_path), version)
    cache.store_tiles({TileCoord(0, 0, 1): b"a", TileCoord(0, 0, 2): b"b"})
    cache.remove_level_tiles_before(2, None)
    assert not (tmp_path / "L02").exists()
    assert cache.load_tile(TileCoord(0, 0, 2)) is None
    tile = cache.load_tile(TileCoord(0, 0, 1))
    assert tile is not None and tile.data == b"a"
