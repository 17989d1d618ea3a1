"""``globals`` section."""

from __future__ import annotations

from typing import Any, Literal

from mapproxy.config.models.common import (
    ConfigModel,
    HTTPOptionsConfig,
    ImageOptionsConfig,
    Number,
)
from mapproxy.config.models.locking import LockingConfig


class CacheGlobalsConfig(ConfigModel):
    base_dir: str = "./cache_data"
    lock_dir: str | None = None
    tile_lock_dir: str | None = None
    lock_timeout: Number | None = None  # seconds; default: http.client_timeout
    meta_size: list[int] = [4, 4]
    meta_buffer: int = 80
    bulk_meta_tiles: bool = False
    minimize_meta_requests: bool = False
    concurrent_tile_creators: int = 2
    max_tile_limit: int = 500
    link_single_color_images: bool | Literal["symlink", "hardlink"] = False
    directory_permissions: str | None = None
    file_permissions: str | None = None
    sqlite_timeout: Number = 30
    s3: dict[str, Any] | None = None
    azureblob: dict[str, Any] | None = None
    locking: LockingConfig = LockingConfig()  # extension: tile locks in Redis


class ImageGlobalsConfig(ConfigModel):
    resampling_method: Literal["nearest", "bilinear", "bicubic"] = "bicubic"
    paletted: bool = True
    stretch_factor: Number = 1.15
    max_shrink_factor: Number = 4.0
    jpeg_quality: int = 90
    formats: dict[str, ImageOptionsConfig] = {}
    font_dir: str | None = None


class GridGlobalsConfig(ConfigModel):
    tile_size: list[int] = [256, 256]


class SRSGlobalsConfig(ConfigModel):
    axis_order_ne: list[str] | None = None
    axis_order_en: list[str] | None = None
    proj_data_dir: str | None = None
    preferred_src_proj: dict[str, list[str]] | None = None


class HTTPGlobalsConfig(HTTPOptionsConfig):
    concurrent_requests: int = 0
    access_control_allow_origin: str | None = "*"


class TilesGlobalsConfig(ConfigModel):
    expires_hours: Number = 72


class MapserverGlobalsConfig(ConfigModel):
    binary: str | None = None
    working_dir: str | None = None


class GlobalsConfig(ConfigModel):
    cache: CacheGlobalsConfig = CacheGlobalsConfig()
    image: ImageGlobalsConfig = ImageGlobalsConfig()
    grid: GridGlobalsConfig = GridGlobalsConfig()
    srs: SRSGlobalsConfig = SRSGlobalsConfig()
    http: HTTPGlobalsConfig = HTTPGlobalsConfig()
    tiles: TilesGlobalsConfig = TilesGlobalsConfig()
    mapserver: MapserverGlobalsConfig = MapserverGlobalsConfig()
    renderd: dict[str, Any] | None = None
    background: dict[str, Any] | None = None
