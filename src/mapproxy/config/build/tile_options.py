"""Tile pipeline options of a cache: refresh, rescaling, meta tile requests."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from mapproxy.config.models.caches import CacheConfig
from mapproxy.config.models.common import TimeSpecConfig
from mapproxy.config.models.globals import CacheGlobalsConfig
from mapproxy.errors import ConfigurationError
from mapproxy.util.times import is_relative, timestamp_before

log = logging.getLogger("mapproxy.config")


def tile_pipeline_options(
    conf: CacheConfig, globals_cache: CacheGlobalsConfig, config_dir: str, path: str
) -> dict[str, Any]:
    """TileManager keyword arguments for the cache at ``path`` (``caches.<name>``)."""
    upscale = _levels(conf.upscale_tiles, f"{path}.upscale_tiles")
    downscale = _levels(conf.downscale_tiles, f"{path}.downscale_tiles")
    if upscale and downscale:
        raise ConfigurationError(f"{path}: cannot use both upscale_tiles and downscale_tiles")
    return {
        "refresh_before": refresh_before(conf.refresh_before, config_dir, f"{path}.refresh_before"),
        "upscale_tiles": upscale,
        "downscale_tiles": downscale,
        "cache_rescaled_tiles": bool(conf.cache_rescaled_tiles),
        "minimize_meta_requests": _flag(
            conf.minimize_meta_requests, globals_cache.minimize_meta_requests
        ),
        "bulk_meta_tiles": _flag(conf.bulk_meta_tiles, globals_cache.bulk_meta_tiles),
    }


def refresh_before(
    spec: TimeSpecConfig | None, config_dir: str, path: str
) -> Callable[[], float] | None:
    """A callable returning the refresh time (epoch seconds) at request time, or None.

    Relative specs are relative to each request; ``mtime`` files are read on each call,
    so touching the file refreshes the cache without a restart.
    """
    if spec is None:
        return None
    values = spec.model_dump(exclude_none=True)
    if spec.time is not None or is_relative(values):
        try:
            fixed = timestamp_before(values, time.time(), config_dir)  # checks the values
        except ConfigurationError as error:
            raise ConfigurationError(f"{path}: {error}") from None
        if spec.time is not None:
            return lambda: fixed
        return lambda: timestamp_before(values, time.time(), config_dir)

    def from_file() -> float:
        try:
            return timestamp_before(values, time.time(), config_dir)
        except ConfigurationError as error:
            # MapProxy answers 500 here; we keep serving the cached tiles.
            log.error("%s: %s", path, error)
            return 0.0

    return from_file


def _levels(value: int | None, path: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{path}: expected an integer >= 0, got {value!r}")
    return int(value)


def _flag(value: bool | None, default: bool) -> bool:
    return bool(default) if value is None else bool(value)
