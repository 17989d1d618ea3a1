"""Where a cache stores its tiles: the storage backend and the tile lock directory."""

from __future__ import annotations

import os
from typing import Any

from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.build.redis_connection import redis_connection_options
from mapproxy.config.models.caches import (
    BackendCommonConfig,
    CacheConfig,
    CompactBackendConfig,
    FileBackendConfig,
    GeoPackageBackendConfig,
    MBTilesBackendConfig,
    RedisBackendConfig,
    S3BackendConfig,
    SQLiteBackendConfig,
)
from mapproxy.config.models.globals import CacheGlobalsConfig
from mapproxy.errors import ConfigurationError
from mapproxy.grid import TileGrid
from mapproxy.image.options import ImageOptions, format_extension
from mapproxy.util.registry import Registry, import_object

CACHE_CLASSES: Registry[Any] = Registry(
    "cache",
    {
        "file": "mapproxy.cache.file:FileCache",
        "mbtiles": "mapproxy.cache.mbtiles:MBTilesCache",
        "sqlite": "mapproxy.cache.mbtiles:SQLiteLevelsCache",
        "geopackage": "mapproxy.cache.geopackage:GeoPackageCache",
        "compact": "mapproxy.cache.compact:CompactCache",
        "redis": "mapproxy.cache.redis:RedisCache",
        "s3": "mapproxy.cache.s3:S3Cache",
    },
)


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
        """The tile store of cache ``name`` for ``grid``, by ``cache.type``."""
        if isinstance(backend, MBTilesBackendConfig | SQLiteBackendConfig):
            return self._sqlite_backend(name, conf, backend, grid)
        if isinstance(backend, GeoPackageBackendConfig):
            return self._geopackage_backend(name, conf, backend, grid)
        if isinstance(backend, CompactBackendConfig):
            return self._compact_backend(name, conf, backend, grid)
        if isinstance(backend, RedisBackendConfig):
            return self._redis_backend(name, backend, grid)
        if isinstance(backend, S3BackendConfig):
            return self._s3_backend(name, backend, grid, image_options)
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
            if backend.use_grid_names:
                cache_dir = os.path.join(root, name, str(grid.name))
            else:
                cache_dir = os.path.join(root, f"{name}_{cache_grid_id(grid)}")
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

    def _cache_root(self, conf: CacheConfig) -> str:
        return self._paths.path(conf.cache_dir) if conf.cache_dir else self._paths.base_dir

    def _sqlite_backend(
        self,
        name: str,
        conf: CacheConfig,
        backend: MBTilesBackendConfig | SQLiteBackendConfig,
        grid: TileGrid,
    ) -> Any:
        timeout = backend.sqlite_timeout
        if timeout is None:
            timeout = self._globals.sqlite_timeout
        permissions = {
            "file_permissions": _octal(backend.file_permissions or self._globals.file_permissions),
            "directory_permissions": _octal(
                backend.directory_permissions or self._globals.directory_permissions
            ),
        }
        wal = bool(backend.sqlite_wal)
        if isinstance(backend, MBTilesBackendConfig):
            filename = backend.filename or f"{name}.mbtiles"
            if filename.startswith("./") or os.path.isabs(filename):
                path = self._paths.path(filename)
            else:
                path = os.path.join(self._cache_root(conf), filename)
            return CACHE_CLASSES.get("mbtiles")(path, float(timeout), wal, **permissions)
        if backend.directory:
            directory = self._paths.path(backend.directory)
        else:
            directory = os.path.join(self._cache_root(conf), name)
        directory = os.path.join(directory, str(grid.name))
        return CACHE_CLASSES.get("sqlite")(
            directory, float(timeout), wal, backend.ttl or 0, **permissions
        )

    def _geopackage_backend(
        self, name: str, conf: CacheConfig, backend: GeoPackageBackendConfig, grid: TileGrid
    ) -> Any:
        table_name = backend.table_name or f"{name}_{grid.name}"
        if backend.levels:
            root = backend.directory
            if root:
                path = os.path.join(self._paths.path(root), str(grid.name))
            else:
                path = os.path.join(self._cache_root(conf), name, str(grid.name))
        else:
            filename = backend.filename or f"{name}.gpkg"
            if filename.startswith("./") or os.path.isabs(filename):
                path = self._paths.path(filename)
            else:
                path = os.path.join(self._cache_root(conf), filename)
        try:
            return CACHE_CLASSES.get("geopackage")(
                path,
                table_name,
                grid,
                levels=backend.levels,
                sqlite_timeout=float(self._globals.sqlite_timeout),
                file_permissions=_octal(backend.file_permissions or self._globals.file_permissions),
                directory_permissions=_octal(
                    backend.directory_permissions or self._globals.directory_permissions
                ),
            )
        except ValueError as exc:
            raise ConfigurationError(f"caches.{name}.cache: {exc}") from None

    def _compact_backend(
        self, name: str, conf: CacheConfig, backend: CompactBackendConfig, grid: TileGrid
    ) -> Any:
        if backend.version is None:
            raise ConfigurationError(
                f"caches.{name}.cache.version: missing required key 'version' (1 or 2)"
            )
        if backend.directory:
            if conf.grids and len(conf.grids) > 1:
                raise ConfigurationError(
                    f"caches.{name}.cache.directory: using single directory for cache "
                    "with multiple grids"
                )
            directory = self._paths.path(backend.directory)
        else:
            directory = os.path.join(self._cache_root(conf), name, str(grid.name))
        return CACHE_CLASSES.get("compact")(
            directory,
            backend.version,
            file_permissions=_octal(backend.file_permissions or self._globals.file_permissions),
            directory_permissions=_octal(
                backend.directory_permissions or self._globals.directory_permissions
            ),
        )

    def _s3_backend(
        self, name: str, backend: S3BackendConfig, grid: TileGrid, image_options: ImageOptions
    ) -> Any:
        defaults = self._globals.s3 or {}
        bucket_name = backend.bucket_name or defaults.get("bucket_name")
        if not bucket_name:
            raise ConfigurationError(
                f"caches.{name}.cache.bucket_name: missing required key 'bucket_name' "
                "(or set globals.cache.s3.bucket_name)"
            )
        if backend.directory:
            prefix = backend.directory.strip("/")
            if backend.include_grid_name:
                prefix = f"{prefix}/{grid.name}"
        else:
            prefix = f"{name}/{grid.name}"
        try:
            cls = CACHE_CLASSES.get("s3")
        except ConfigurationError as exc:
            raise ConfigurationError(f"caches.{name}.cache.type: {exc}") from None
        connection = import_object("mapproxy.cache.s3:S3ConnectionOptions")(
            profile_name=backend.profile_name or defaults.get("profile_name"),
            region_name=backend.region_name or defaults.get("region_name"),
            endpoint_url=backend.endpoint_url or defaults.get("endpoint_url"),
        )
        return cls(
            str(bucket_name),
            prefix,
            format_extension(image_options.format),
            directory_layout=backend.directory_layout,
            connection=connection,
            access_control_list=backend.access_control_list,
            use_http_get=backend.use_http_get,
            content_type=image_options.mime_type,
        )

    def _redis_backend(self, name: str, backend: RedisBackendConfig, grid: TileGrid) -> Any:
        path = f"caches.{name}.cache"
        try:
            cls = CACHE_CLASSES.get("redis")
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}.type: {exc}") from None
        options = redis_connection_options(
            self._paths,
            path,
            host=backend.host,
            port=backend.port,
            db=backend.db,
            db_key="db",
            username=backend.username,
            password=backend.password,
            timeout_seconds=(
                float(backend.socket_timeout) if backend.socket_timeout is not None else 2.0
            ),
            ssl_certfile=backend.ssl_certfile,
            ssl_keyfile=backend.ssl_keyfile,
            ssl_ca_certs=backend.ssl_ca_certs,
            sentinels=backend.sentinels,
            service_name=backend.service_name,
            cluster=backend.cluster,
            startup_nodes=backend.startup_nodes,
        )
        prefix = backend.prefix if backend.prefix is not None else f"{name}_{grid.name}"
        return cls(prefix, options, default_ttl=backend.default_ttl)

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
