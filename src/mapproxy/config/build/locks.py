"""Locks from the config: tile creation lock timeouts, ``concurrent_requests`` limiters."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mapproxy.config.build.http_options import http_timeout
from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.models.common import Number
from mapproxy.config.models.globals import GlobalsConfig

if TYPE_CHECKING:
    from mapproxy.tilemanager.locking import SourceConcurrencyLimiter


def lock_timeout(globals_conf: GlobalsConfig, cache_value: Number | None = None) -> float:
    """Seconds to wait for a lock: the cache's ``lock_timeout``, else
    ``globals.cache.lock_timeout``, else ``globals.http.client_timeout`` (as MapProxy)."""
    for value in (cache_value, globals_conf.cache.lock_timeout):
        if value is not None:
            return float(value)
    return http_timeout(globals_conf.http)


def request_lock_dir(globals_conf: GlobalsConfig, paths: ConfigPaths) -> str:
    """``globals.cache.lock_dir``, else ``<base_dir>/tile_locks``."""
    if globals_conf.cache.lock_dir:
        return paths.path(globals_conf.cache.lock_dir)
    return os.path.join(paths.base_dir, "tile_locks")


def request_limiter(
    globals_conf: GlobalsConfig,
    paths: ConfigPaths,
    url: str,
    concurrent_requests: int | None,
) -> SourceConcurrencyLimiter | None:
    """The limiter for a source's requests to ``url``: the source's ``concurrent_requests``,
    else ``globals.http.concurrent_requests``; None when unlimited (0).

    All sources with the same netloc (as written in the URL) share the slots, across
    threads and processes, through lock files in the lock dir.
    """
    from mapproxy.tilemanager.locking import SourceConcurrencyLimiter

    count = concurrent_requests
    if count is None:
        count = globals_conf.http.concurrent_requests
    if not count or count < 1:
        return None
    return SourceConcurrencyLimiter(
        request_lock_dir(globals_conf, paths),
        urlsplit(url).netloc,
        count,
        timeout_seconds=lock_timeout(globals_conf),
    )
