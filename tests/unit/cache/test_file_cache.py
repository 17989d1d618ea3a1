from __future__ import annotations

import hashlib
import io
import os
import stat
import time

import pytest
from PIL import Image

from mapproxy.cache.file import FileCache, quadkey
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.util import fs
from mapproxy.util.fs import ensure_directory, write_atomic


def png_bytes(color: tuple[int, ...], size: tuple[int, int] = (8, 8)) -> bytes:
    image = Image.new("RGBA", size, color)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def all_files(root: str) -> list[str]:
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


# -- layouts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "coord", "expected"),
    [
        ("tc", TileCoord(1234567, 7654321, 12), "12/001/234/567/007/654/321.png"),
        ("tc", TileCoord(0, 0, 0), "00/000/000/000/000/000/000.png"),
        ("tc", TileCoord(5, 17, 3), "03/000/000/005/000/000/017.png"),
        ("mp", TileCoord(1234567, 7654321, 12), "12/0123/4567/0765/4321.png"),
        ("mp", TileCoord(3, 4, 1), "01/0000/0003/0000/0004.png"),
        ("tms", TileCoord(1234567, 7654321, 12), "12/1234567/7654321.png"),
        ("tms", TileCoord(0, 0, 0), "0/0/0.png"),
        ("arcgis", TileCoord(1234567, 7654321, 12), "L12/R0074cbb1/C0012d687.png"),
        ("arcgis", TileCoord(10, 11, 5), "L05/R0000000b/C0000000a.png"),
        ("quadkey", TileCoord(3, 5, 3), "213.png"),
        ("quadkey", TileCoord(1, 0, 1), "1.png"),
        ("quadkey", TileCoord(0, 1, 1), "2.png"),
    ],
)
def test_tile_path_per_layout(tmp_path, layout, coord, expected):
    cache = FileCache(str(tmp_path), "png", directory_layout=layout)
    assert cache.tile_path(coord) == os.path.join(str(tmp_path), expected)


def test_quadkey_matches_bing_example():
    # Bing Maps documentation: tile x=3, y=5 at level 3 has quadkey 213.
    assert quadkey(3, 5, 3) == "213"
    assert quadkey(0, 0, 0) == ""


def test_file_ext_is_used_without_dot(tmp_path):
    cache = FileCache(str(tmp_path), ".jpeg", directory_layout="tms")
    assert cache.tile_path(TileCoord(1, 2, 3)).endswith("3/1/2.jpeg")


def test_reverse_tms_is_rejected_for_file_caches(tmp_path):
    with pytest.raises(ValueError, match="reverse_tms"):
        FileCache(str(tmp_path), "png", directory_layout="reverse_tms")


def test_unknown_layout_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown directory_layout"):
        FileCache(str(tmp_path), "png", directory_layout="zxy")


def test_lock_cache_id_is_md5_of_cache_dir(tmp_path):
    cache = FileCache(str(tmp_path), "png")
    assert cache.lock_cache_id == hashlib.md5(str(tmp_path).encode()).hexdigest()


# -- load / store / remove -------------------------------------------------------


def test_store_and_load_round_trip(tmp_path):
    cache = FileCache(str(tmp_path / "c"), "png")
    coord = TileCoord(1, 2, 3)
    assert cache.load_tile(coord) is None
    assert not cache.is_cached(coord)
    before = time.time()
    cache.store_tiles({coord: b"tile-data"})
    assert cache.is_cached(coord)
    tile = cache.load_tile(coord)
    assert tile is not None
    assert tile.coord == coord
    assert tile.data == b"tile-data"
    assert tile.timestamp == pytest.approx(os.stat(cache.tile_path(coord)).st_mtime)
    assert tile.timestamp >= before - 2
    assert cache.tile_timestamp(coord) == pytest.approx(tile.timestamp)


def test_store_overwrites_existing_tile(tmp_path):
    cache = FileCache(str(tmp_path), "png")
    coord = TileCoord(0, 0, 0)
    cache.store_tiles({coord: b"old"})
    cache.store_tiles({coord: b"new"})
    assert cache.load_tile(coord).data == b"new"


def test_store_leaves_no_temp_files(tmp_path):
    cache = FileCache(str(tmp_path), "png")
    tiles = {TileCoord(x, y, 2): b"x" * (x + y) for x in range(4) for y in range(4)}
    cache.store_tiles(tiles)
    files = all_files(str(tmp_path))
    assert len(files) == 16
    assert all(name.endswith(".png") for name in files)


def test_remove_tile(tmp_path):
    cache = FileCache(str(tmp_path), "png")
    coord = TileCoord(1, 1, 1)
    cache.store_tiles({coord: b"data"})
    cache.remove_tile(coord)
    assert not cache.is_cached(coord)
    cache.remove_tile(coord)  # missing is fine


def test_permissions_are_applied(tmp_path):
    cache = FileCache(
        str(tmp_path / "c"), "png", file_permissions=0o640, directory_permissions=0o750
    )
    coord = TileCoord(1, 2, 3)
    cache.store_tiles({coord: b"data"})
    path = cache.tile_path(coord)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(tmp_path / "c").st_mode) == 0o750


def test_default_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(str(tmp_path / "f"), b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o644


# -- atomic write ----------------------------------------------------------------


def test_write_atomic_creates_parent_dirs(tmp_path):
    target = tmp_path / "a" / "b" / "c.bin"
    write_atomic(str(target), b"payload")
    assert target.read_bytes() == b"payload"
    assert os.listdir(target.parent) == ["c.bin"]


def test_crash_while_writing_leaves_no_partial_tile(tmp_path, monkeypatch):
    cache = FileCache(str(tmp_path), "png")
    coord = TileCoord(1, 2, 3)
    real_write = os.write

    def failing_write(fd, data):
        real_write(fd, bytes(data[:3]))
        raise OSError("disk full")

    monkeypatch.setattr(fs.os, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        cache.store_tiles({coord: b"complete tile data"})
    monkeypatch.undo()
    assert cache.load_tile(coord) is None
    assert all_files(str(tmp_path)) == []


def test_crash_while_replacing_keeps_old_tile(tmp_path, monkeypatch):
    cache = FileCache(str(tmp_path), "png")
    coord = TileCoord(1, 2, 3)
    cache.store_tiles({coord: b"old tile"})

    def failing_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(fs.os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        cache.store_tiles({coord: b"new tile"})
    monkeypatch.undo()
    assert cache.load_tile(coord).data == b"old tile"
    assert len(all_files(str(tmp_path))) == 1


def test_ensure_directory_is_idempotent(tmp_path):
    target = str(tmp_path / "x" / "y")
    ensure_directory(target, 0o755)
    ensure_directory(target, 0o755)
    ensure_directory(target)
    assert os.path.isdir(target)


# -- single colour tiles ---------------------------------------------------------


def test_link_single_color_images(tmp_path):
    pytest.importorskip("mapproxy.image.tile")
    cache = FileCache(str(tmp_path), "png", link_single_color_images=True)
    red = png_bytes((255, 0, 0, 255))
    mixed = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    mixed.putpixel((3, 3), (0, 0, 255, 255))
    buf = io.BytesIO()
    mixed.save(buf, "PNG")
    cache.store_tiles({TileCoord(0, 0, 1): red, TileCoord(1, 0, 1): red})
    cache.store_tiles({TileCoord(0, 1, 1): buf.getvalue()})

    color_file = os.path.join(str(tmp_path), "single_color_tiles", "ff0000ff.png")
    assert os.path.isfile(color_file)
    for coord in (TileCoord(0, 0, 1), TileCoord(1, 0, 1)):
        path = cache.tile_path(coord)
        assert os.path.islink(path)
        assert os.path.realpath(path) == os.path.realpath(color_file)
        assert not os.path.isabs(os.readlink(path))
        assert cache.load_tile(coord).data == red
    assert not os.path.islink(cache.tile_path(TileCoord(0, 1, 1)))
    assert not any(name.endswith(".tmp") for name in all_files(str(tmp_path)))


def test_link_single_color_images_hardlink(tmp_path):
    pytest.importorskip("mapproxy.image.tile")
    cache = FileCache(str(tmp_path), "png", link_single_color_images="hardlink")
    blue = png_bytes((0, 0, 255, 255))
    cache.store_tiles({TileCoord(0, 0, 1): blue, TileCoord(1, 1, 1): blue})
    path = cache.tile_path(TileCoord(0, 0, 1))
    assert not os.path.islink(path)
    assert os.stat(path).st_nlink == 3
