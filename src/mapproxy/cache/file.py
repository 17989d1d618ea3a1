"""File cache: one file per tile in a directory tree (tc, mp, tms, quadkey, arcgis)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
from collections.abc import Callable, Mapping

from PIL import Image, UnidentifiedImageError

from mapproxy.cache.base import Tile
from mapproxy.errors import InvalidDimensionValue
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image.tile import is_single_color
from mapproxy.util.fs import ensure_directory, temp_path_for, write_atomic

DIRECTORY_LAYOUTS = ("tc", "mp", "tms", "quadkey", "arcgis")

# Layout functions return the path relative to the cache dir, without extension.
_LayoutFunc = Callable[[int, int, int], str]


def _tc_path(x: int, y: int, z: int) -> str:
    return (
        f"{z:02d}/{x // 1000000:03d}/{x // 1000 % 1000:03d}/{x % 1000:03d}"
        f"/{y // 1000000:03d}/{y // 1000 % 1000:03d}/{y % 1000:03d}"
    )


def _mp_path(x: int, y: int, z: int) -> str:
    return f"{z:02d}/{x // 10000:04d}/{x % 10000:04d}/{y // 10000:04d}/{y % 10000:04d}"


def _tms_path(x: int, y: int, z: int) -> str:
    return f"{z}/{x}/{y}"


def _reverse_tms_path(x: int, y: int, z: int) -> str:
    return f"{y}/{x}/{z}"


def _arcgis_path(x: int, y: int, z: int) -> str:
    return f"L{z:02d}/R{y:08x}/C{x:08x}"


def quadkey(x: int, y: int, z: int) -> str:
    """Bing-style quadkey of a tile (y counted from the north)."""
    digits = []
    for level in range(z, 0, -1):
        mask = 1 << (level - 1)
        digit = 0
        if x & mask:
            digit += 1
        if y & mask:
            digit += 2
        digits.append("0123"[digit])
    return "".join(digits)


_LAYOUTS: dict[str, _LayoutFunc] = {
    "tc": _tc_path,
    "mp": _mp_path,
    "tms": _tms_path,
    "quadkey": quadkey,
    "arcgis": _arcgis_path,
}


def tile_path_func(directory_layout: str, object_store: bool = False) -> _LayoutFunc:
    """The layout function ``(x, y, z) -> relative path without extension``.

    ``reverse_tms`` (``y/x/z``) is only valid for object stores (s3, azureblob).
    """
    if directory_layout == "reverse_tms":
        if object_store:
            return _reverse_tms_path
        raise ValueError("directory_layout 'reverse_tms' is only supported by s3/azureblob caches")
    try:
        return _LAYOUTS[directory_layout]
    except KeyError:
        raise ValueError(f"unknown directory_layout {directory_layout!r}") from None


class FileCache:
    """Tiles as files below ``cache_dir``; writes are atomic (temp file + rename).

    ``file_ext`` is the extension without dot (``png``, ``jpeg``). ``lock_dir`` is the
    tile lock directory chosen by the builder (kept for it; the cache does not lock).
    ``link_single_color_images`` (True/``symlink`` or ``hardlink``) stores uniform tiles
    once under ``single_color_tiles/`` and links them. Permissions are octal ints.
    """

    def __init__(
        self,
        cache_dir: str,
        file_ext: str,
        directory_layout: str = "tc",
        lock_dir: str | None = None,
        link_single_color_images: bool | str = False,
        file_permissions: int | None = None,
        directory_permissions: int | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.file_ext = file_ext.lstrip(".")
        self.directory_layout = directory_layout
        self.lock_dir = lock_dir
        self.file_permissions = file_permissions
        self.directory_permissions = directory_permissions
        self.lock_cache_id = hashlib.md5(cache_dir.encode("utf-8")).hexdigest()
        self._layout = tile_path_func(directory_layout)
        # Precomputed so tile_path is one format call plus two concatenations.
        self._prefix = cache_dir.rstrip("/" + os.sep) + "/" if cache_dir else ""
        self._suffix = "." + self.file_ext
        self.link_mode = _link_mode(link_single_color_images)

    def __repr__(self) -> str:
        return f"FileCache({self.cache_dir!r}, {self.file_ext!r}, {self.directory_layout!r})"

    def for_dimensions(self, dimensions: Mapping[str, str]) -> FileCache:
        """A view of this cache for tiles of one set of dimension values.

        Its tiles lie below ``<name>-<value>/`` directories (predefined names such as
        ``time`` and ``elevation`` first, then ``dim_*`` names, each group sorted), and
        it has its own lock id. Raises InvalidDimensionValue for names or values that
        would leave their directory.
        """
        if not dimensions:
            return self
        view = copy.copy(self)
        view._prefix = self._prefix + dimension_path(dimensions)
        view.cache_dir = view._prefix.rstrip("/")
        view.lock_cache_id = hashlib.md5(view.cache_dir.encode("utf-8")).hexdigest()
        return view

    def tile_path(self, coord: TileCoord) -> str:
        """Absolute (or cache_dir relative) file path of ``coord``."""
        return self._prefix + self._layout(coord.x, coord.y, coord.z) + self._suffix

    def load_tile(self, coord: TileCoord) -> Tile | None:
        """The stored tile with data and file mtime, or None if missing."""
        path = self.tile_path(coord)
        try:
            with open(path, "rb") as f:
                mtime = os.fstat(f.fileno()).st_mtime
                data = f.read()
            if self.link_mode == "symlink":
                # A linked tile was created when the link was, not its shared target.
                mtime = os.lstat(path).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Tile(coord, data, mtime)

    def is_cached(self, coord: TileCoord) -> bool:
        """True if a tile file exists (a dangling link counts as missing)."""
        return os.path.exists(self.tile_path(coord))

    def tile_timestamp(self, coord: TileCoord) -> float | None:
        """Modification time of the tile file (epoch seconds) or None if missing."""
        try:
            return os.lstat(self.tile_path(coord)).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None

    def store_tile(self, coord: TileCoord, data: bytes) -> None:
        """Store one encoded tile atomically."""
        self.store_tiles({coord: data})

    def store_tiles(self, tiles: Mapping[TileCoord, bytes]) -> None:
        """Store encoded tiles; each file is replaced atomically."""
        for coord, data in tiles.items():
            path = self.tile_path(coord)
            if self.link_mode is not None:
                color_path = self._single_color_path(data)
                if color_path is not None:
                    self._link_tile(color_path, path, data)
                    continue
            write_atomic(path, data, self.file_permissions, self.directory_permissions)

    def remove_tile(self, coord: TileCoord) -> None:
        """Delete the tile file if present."""
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(self.tile_path(coord))

    def _single_color_path(self, data: bytes) -> str | None:
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError):
            return None
        color = is_single_color(image)
        if color is None:
            return None
        hex_color = "".join(f"{int(c):02x}" for c in color)
        return f"{self._prefix}single_color_tiles/{hex_color}{self._suffix}"

    def _link_tile(self, color_path: str, path: str, data: bytes) -> None:
        if not os.path.exists(color_path):
            write_atomic(color_path, data, self.file_permissions, self.directory_permissions)
        directory = os.path.dirname(path)
        ensure_directory(directory, self.directory_permissions)
        # Link under a temp name, then rename over the tile: replacing stays atomic.
        temp_path = temp_path_for(path)
        if self.link_mode == "hardlink":
            os.link(color_path, temp_path)
        else:
            os.symlink(os.path.relpath(color_path, directory), temp_path)
        os.replace(temp_path, path)


def dimension_path(dimensions: Mapping[str, str]) -> str:
    """``name-value/`` segments for ``dimensions`` (see ``FileCache.for_dimensions``)."""
    names = sorted(dimensions, key=lambda name: (name.lower().startswith("dim_"), name.lower()))
    segments = []
    for name in names:
        value = dimensions[name]
        for text in (name, value):
            if ".." in text or "/" in text or "\\" in text or "\0" in text:
                raise InvalidDimensionValue(f"invalid dimension value ({name}={value}).")
        segments.append(f"{name}-{value}/")
    return "".join(segments)


def _link_mode(option: bool | str) -> str | None:
    if os.name == "nt" or option is False or option in ("false", "False", ""):
        return None
    if option is True or option == "symlink":
        return "symlink"
    if option == "hardlink":
        return "hardlink"
    raise ValueError(f"invalid link_single_color_images value {option!r}")
