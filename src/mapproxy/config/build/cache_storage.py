"""Where a cache stores its tiles: the storage backend and the tile lock directory."""

from __future__ import annotations

import os
from typing import Any

from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.models.caches import BackendCommonConfig, CacheConfig, FileBackendConfig
from mapproxy.config.models.globals import CacheGlobalsConfig
from mapproxy.errors import ConfigurationError
from mapproxy.grid import TileGrid
from mapproxy.image.options import ImageOptions, format_extension
from mapproxy.util.registry import Registry

CACHE_CLASSES: Registry[Any] = Registry("cache", {"file": "mapproxy.cache.file:FileCache"})


class CacheStorageBuilder:
    """Builds the storage backend (``cache:``) of a cache for one grid."""

    def __init__(self, paths: ConfigPaths, cache_globals: CacheGlobalsConfig) -> None:
        self._paths = paths
        self._globals = cache_globals

    def backend(
        self,
        name: str,
        conf: CacheConfig,
        backend: BackendCommonConfig,
        grid: TileGrid,
        image_options: ImageOptions,
    ) -> Any:
        """The tile store of cache ``name`` for ``grid``; only file caches are supported."""
        if not isinstance(backend, FileBackendConfig):
            raise ConfigurationError(
                f"caches.{name}.cache.type: cache type '{backend.type}' "  # type: ignore[attr-defined]
                "is not supported by this version yet"
            )
        cls = CACHE_CLASSES.get("file")
        if backend.directory:
            cache_dir = self._paths.path(backend.directory)
        else:
            root = self._paths.path(conf.cache_dir) if conf.cache_dir else self._paths.base_dir
            cache_dir = os.path.join(root, f"{name}_{cache_grid_id(grid, backend.use_grid_names)}")
        link = conf.link_single_color_images
        if link is None:
            link = self._globals.link_single_color_images
        return cls(
            cache_dir,
            format_extension(image_options.format),
            directory_layout=backend.directory_layout,
            link_single_color_images=link,
            file_permissions=_octal(backend.file_permissions or self._globals.file_permissions),
            directory_permissions=_octal(
                backend.directory_permissions or self._globals.directory_permissions
            ),
        )

    def tile_lock_dir(self, conf: CacheConfig, backend: BackendCommonConfig) -> str:
        """The directory of the meta tile locks: configured, else ``tile_locks`` in the cache."""
        explicit = backend.tile_lock_dir or conf.tile_lock_dir or self._globals.tile_lock_dir
        if explicit:
            return self._paths.path(explicit)
        cache_root = getattr(backend, "directory", None) or conf.cache_dir
        if cache_root:
            return os.path.join(self._paths.path(cache_root), "tile_locks")
        return os.path.join(self._paths.base_dir, "tile_locks")


def cache_grid_id(grid: TileGrid, use_grid_names: bool = False) -> str:
    """Directory suffix of a file cache: the SRS without colon (``EPSG3857``), as MapProxy
    names them, or the grid name with ``use_grid_names``."""
    if use_grid_names:
        return str(grid.name)
    return grid.srs.srs_code_no_colon


def _octal(value: str | None) -> int | None:
    return int(value, 8) if value else None
