"""Tile creation lockers from ``locking`` (cache) or ``globals.cache.locking``: lock files
in the tile lock dir (MapProxy's behaviour) or Redis leases shared by many instances."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.build.redis_connection import redis_connection_options
from mapproxy.config.models.caches import CacheConfig
from mapproxy.config.models.locking import LockingConfig
from mapproxy.errors import ConfigurationError
from mapproxy.util.registry import Registry

if TYPE_CHECKING:
    from mapproxy.tilemanager.locking import TileLocking

TILE_LOCKERS: Registry[Any] = Registry(
    "lock",
    {
        "file": "mapproxy.tilemanager.locking:TileLocker",
        "redis": "mapproxy.tilemanager.redis_lock:RedisTileLocker",
    },
)


class TileLockerBuilder:
    """Builds the tile locker of each cache; caches with the same Redis lock settings share
    one client, one set of in-process locks and one back-off state."""

    def __init__(self, global_locking: LockingConfig, paths: ConfigPaths) -> None:
        self._global_locking = global_locking
        self._paths = paths
        self._redis_lockers: dict[tuple[Any, ...], Any] = {}

    def locker(
        self, name: str, conf: CacheConfig, tile_lock_dir: str, timeout_seconds: float
    ) -> TileLocking:
        """The locker of cache ``name``: its ``locking``, else ``globals.cache.locking``."""
        if conf.locking is not None:
            locking, path = conf.locking, f"caches.{name}.locking"
        else:
            locking, path = self._global_locking, "globals.cache.locking"
        try:
            cls = TILE_LOCKERS.get(locking.type)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}.type: {exc}") from None
        if locking.type == "file":
            locker: TileLocking = cls(tile_lock_dir, timeout_seconds)
            return locker
        options = self.redis_options(locking, path)
        key = (options, locking.prefix, float(locking.lease_seconds))
        shared = self._redis_lockers.get(key)
        if shared is None:
            shared = self._redis_lockers[key] = cls(
                options,
                prefix=locking.prefix,
                lease_seconds=float(locking.lease_seconds),
                timeout_seconds=timeout_seconds,
            )
            return shared  # type: ignore[no-any-return]
        return shared.with_timeout(timeout_seconds)  # type: ignore[no-any-return]

    def redis_options(self, locking: LockingConfig, path: str) -> Any:
        """The ``RedisConnectionOptions`` of a ``type: redis`` locking config at ``path``."""
        url = urlsplit(locking.url)
        db_text = url.path.strip("/")
        return redis_connection_options(
            self._paths,
            path,
            host=url.hostname or "127.0.0.1",
            port=url.port or 6379,
            db=int(db_text) if db_text else 0,
            db_key="url",
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            timeout_seconds=float(locking.socket_timeout),
            ssl=url.scheme == "rediss",
            ssl_certfile=locking.ssl_certfile,
            ssl_keyfile=locking.ssl_keyfile,
            ssl_ca_certs=locking.ssl_ca_certs,
            sentinels=locking.sentinels,
            service_name=locking.service_name,
            cluster=locking.cluster,
            startup_nodes=locking.startup_nodes,
        )
