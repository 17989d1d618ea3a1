"""``caches`` section and the storage backends under ``cache:``."""

from __future__ import annotations

from typing import Any, Literal

from mapproxy.config.models.common import (
    ConfigModel,
    CoverageConfig,
    ImageOptionsConfig,
    Number,
    TimeSpecConfig,
)
from mapproxy.config.models.locking import LockingConfig


class BackendCommonConfig(ConfigModel):
    tile_lock_dir: str | None = None
    coverage: CoverageConfig | None = None
    directory_permissions: str | None = None
    file_permissions: str | None = None


class FileBackendConfig(BackendCommonConfig):
    type: Literal["file"] = "file"
    directory_layout: Literal["tc", "mp", "tms", "reverse_tms", "quadkey", "arcgis"] = "tc"
    directory: str | None = None
    use_grid_names: bool = False


class MBTilesBackendConfig(BackendCommonConfig):
    type: Literal["mbtiles"]
    filename: str | None = None
    sqlite_timeout: Number | None = None
    sqlite_wal: bool | None = None


class SQLiteBackendConfig(BackendCommonConfig):
    type: Literal["sqlite"]
    directory: str | None = None
    sqlite_timeout: Number | None = None
    sqlite_wal: bool | None = None
    ttl: int | None = None


class GeoPackageBackendConfig(BackendCommonConfig):
    type: Literal["geopackage"]
    filename: str | None = None
    table_name: str | None = None
    levels: bool = False
    directory: str | None = None


class RedisBackendConfig(BackendCommonConfig):
    type: Literal["redis"]
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    prefix: str | None = None
    default_ttl: int = 3600
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_ca_certs: str | None = None
    # additions (not in MapProxy 7.0.0): timeouts in seconds, Sentinel and Cluster
    socket_timeout: Number | None = None
    sentinels: list[tuple[str, int]] | None = None
    service_name: str | None = None
    cluster: bool = False
    startup_nodes: list[tuple[str, int]] | None = None


class S3BackendConfig(BackendCommonConfig):
    type: Literal["s3"]
    bucket_name: str | None = None
    profile_name: str | None = None
    region_name: str | None = None
    endpoint_url: str | None = None
    access_control_list: str | None = None
    directory: str | None = None
    directory_layout: Literal["tms", "reverse_tms", "tc", "mp", "quadkey", "arcgis"] = "tms"
    use_http_get: bool = False
    include_grid_name: bool = False


class AzureBlobBackendConfig(BackendCommonConfig):
    type: Literal["azureblob"]
    container_name: str | None = None
    connection_string: str | None = None
    directory: str | None = None
    directory_layout: str = "tms"


class CouchDBBackendConfig(BackendCommonConfig):
    type: Literal["couchdb"]
    url: str | None = None
    db_name: str | None = None
    tile_id: str | None = None
    tile_metadata: dict[str, Any] | None = None


class CompactBackendConfig(BackendCommonConfig):
    type: Literal["compact"]
    version: Literal[1, 2] | None = None  # required; the builder names the key when missing
    directory: str | None = None


BACKEND_MODELS: dict[str, type[BackendCommonConfig]] = {
    "file": FileBackendConfig,
    "mbtiles": MBTilesBackendConfig,
    "sqlite": SQLiteBackendConfig,
    "geopackage": GeoPackageBackendConfig,
    "redis": RedisBackendConfig,
    "s3": S3BackendConfig,
    "azureblob": AzureBlobBackendConfig,
    "couchdb": CouchDBBackendConfig,
    "compact": CompactBackendConfig,
}


class WatermarkConfig(ConfigModel):
    text: str
    font_size: int | None = None
    color: list[int] | str | None = None
    opacity: int | None = None
    spacing: str | None = None


class CacheConfig(ConfigModel):
    sources: list[str] | dict[str, Any]
    grids: list[str] | None = None
    format: str | None = None
    request_format: str | None = None
    image: ImageOptionsConfig | None = None
    meta_size: list[int] | None = None
    meta_buffer: int | None = None
    bulk_meta_tiles: bool | None = None
    minimize_meta_requests: bool | None = None
    link_single_color_images: bool | Literal["symlink", "hardlink"] | None = None
    disable_storage: bool = False
    cache_dir: str | None = None
    cache: dict[str, Any] | None = None
    use_direct_from_level: int | None = None
    use_direct_from_res: Number | None = None
    upscale_tiles: int | None = None
    downscale_tiles: int | None = None
    refresh_before: TimeSpecConfig | None = None
    watermark: WatermarkConfig | None = None
    concurrent_tile_creators: int | None = None
    cache_rescaled_tiles: bool | None = None
    tile_lock_dir: str | None = None
    lock_timeout: Number | None = None  # seconds; default: globals.cache.lock_timeout
    locking: LockingConfig | None = None  # extension; replaces globals.cache.locking
    coverage: CoverageConfig | None = None
    wms_source: dict[str, Any] | None = None
