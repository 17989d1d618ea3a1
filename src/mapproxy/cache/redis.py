"""Redis tile cache: one string key ``<prefix>-<z>-<x>-<y>`` per tile, expiring after a TTL.

The keys and values are those MapProxy writes (raw encoded tile, ``EX default_ttl``), so
both can share one Redis. No timestamps are stored: loaded tiles carry none, and
``tile_timestamp`` estimates the creation time from the key's remaining TTL.

Redis being unreachable never fails a request: errors are logged (logger
``mapproxy.cache.redis``), reads report a miss and writes are dropped, so tiles are served
from the source. After a failure Redis is skipped for ``retry_after_seconds`` so an outage
does not add a connect timeout to every request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.sentinel

from mapproxy.cache.base import Tile
from mapproxy.grid.tile_grid import TileCoord

log = logging.getLogger("mapproxy.cache.redis")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RedisConnectionOptions:
    """How to reach Redis: a single server, a Sentinel-managed master, or a Cluster.

    Timeouts are in seconds. ``sentinels`` (host, port) pairs with ``service_name`` select
    Sentinel; ``cluster`` (optionally with ``startup_nodes``) selects Redis Cluster.
    """

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_ca_certs: str | None = None
    ssl: bool = False  # TLS without client certificates (``rediss://``)
    socket_timeout_seconds: float = 2.0
    connect_timeout_seconds: float = 2.0
    max_connections: int = 50
    sentinels: Sequence[tuple[str, int]] = field(default_factory=tuple)
    service_name: str | None = None
    cluster: bool = False
    startup_nodes: Sequence[tuple[str, int]] = field(default_factory=tuple)

    @property
    def use_ssl(self) -> bool:
        """True if any TLS option is set."""
        return bool(self.ssl or self.ssl_certfile or self.ssl_keyfile or self.ssl_ca_certs)

    def _common_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.socket_timeout_seconds,
            "socket_connect_timeout": self.connect_timeout_seconds,
        }
        if self.use_ssl:
            kwargs.update(
                ssl=True,
                ssl_certfile=self.ssl_certfile,
                ssl_keyfile=self.ssl_keyfile,
                ssl_ca_certs=self.ssl_ca_certs,
            )
        return kwargs

    def client(self) -> Any:
        """A new pooled client (``redis.Redis`` or ``redis.cluster.RedisCluster``)."""
        kwargs = self._common_kwargs()
        if self.cluster:
            nodes = self.startup_nodes or ((self.host, self.port),)
            return redis.cluster.RedisCluster(
                startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in nodes],  # type: ignore[no-untyped-call]
                max_connections=self.max_connections,
                **kwargs,
            )
        if self.sentinels:
            sentinel_kwargs = {
                "socket_timeout": self.socket_timeout_seconds,
                "socket_connect_timeout": self.connect_timeout_seconds,
            }
            sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(self.sentinels), sentinel_kwargs=sentinel_kwargs, **kwargs
            )
            return sentinel.master_for(  # type: ignore[no-untyped-call]
                self.service_name or "mymaster", db=self.db, max_connections=self.max_connections
            )
        if self.use_ssl:
            kwargs["connection_class"] = redis.SSLConnection
            del kwargs["ssl"]
        pool = redis.ConnectionPool(
            host=self.host,
            port=self.port,
            db=self.db,
            max_connections=self.max_connections,
            **kwargs,
        )
        return redis.Redis(connection_pool=pool)


class RedisCache:
    """Tiles as Redis string keys ``<prefix>-<z>-<x>-<y>`` with expiry ``default_ttl`` s.

    ``default_ttl`` 0 stores keys without expiry. ``client`` replaces the client built from
    ``options`` (tests).
    """

    def __init__(
        self,
        prefix: str,
        options: RedisConnectionOptions | None = None,
        default_ttl: int = 3600,
        retry_after_seconds: float = 2.0,
        client: Any = None,
    ) -> None:
        self.prefix = prefix
        self.options = options or RedisConnectionOptions()
        self.default_ttl = default_ttl
        self.retry_after_seconds = retry_after_seconds
        target = f"{self.options.host}:{self.options.port}/{self.options.db}/{prefix}"
        self.lock_cache_id = "redis-" + hashlib.md5(target.encode("utf-8")).hexdigest()
        self._client = client
        self._client_lock = threading.Lock()
        self._down_until = 0.0

    def __repr__(self) -> str:
        return f"RedisCache({self.prefix!r}, {self.options.host}:{self.options.port})"

    def key(self, coord: TileCoord) -> str:
        """The Redis key of ``coord`` (MapProxy's naming)."""
        return f"{self.prefix}-{coord.z}-{coord.x}-{coord.y}"

    @property
    def client(self) -> Any:
        """The pooled client, created on first use (clients are thread-safe)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self.options.client()
        return self._client

    def _call(self, action: str, operation: Callable[[Any], T], fallback: T) -> T:
        """Run ``operation(client)``; on a Redis error log it and return ``fallback``."""
        if time.monotonic() < self._down_until:
            return fallback
        try:
            return operation(self.client)
        except redis.RedisError as error:
            self._down_until = time.monotonic() + self.retry_after_seconds
            log.error(
                "unable to %s Redis cache %s:%s (%s): %s",
                action,
                self.options.host,
                self.options.port,
                self.prefix,
                error,
            )
            return fallback

    def load_tile(self, coord: TileCoord) -> Tile | None:
        """The stored tile (without timestamp) or None if missing or Redis is down."""
        data = self._call("read from", lambda c: c.get(self.key(coord)), None)
        if data is None:
            return None
        return Tile(coord, bytes(data))

    def is_cached(self, coord: TileCoord) -> bool:
        """True if the key exists (False while Redis is down)."""
        return bool(self._call("read from", lambda c: c.exists(self.key(coord)), 0))

    def tile_timestamp(self, coord: TileCoord) -> float | None:
        """Creation time estimated from the remaining TTL; None if missing or never expiring."""
        remaining = self._call("read from", lambda c: c.ttl(self.key(coord)), -2)
        return self._created_at(remaining, time.time())

    def _created_at(self, remaining_ttl: int | None, now: float) -> float | None:
        if remaining_ttl is None or remaining_ttl < 0 or not self.default_ttl:
            return None
        return now - max(0, self.default_ttl - remaining_ttl)

    def store_tiles(self, tiles: Mapping[TileCoord, bytes]) -> None:
        """Set all keys in one pipeline (dropped with a logged error if Redis is down)."""
        if not tiles:
            return

        def store(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for coord, data in tiles.items():
                pipe.set(self.key(coord), data, ex=self.default_ttl or None)
            pipe.execute()

        self._call("store tiles in", store, None)

    def remove_tile(self, coord: TileCoord) -> None:
        """Delete the key of ``coord`` if present."""
        self._call("remove a tile from", lambda c: c.delete(self.key(coord)), 0)

    def remove_level_tiles_before(self, level: int, timestamp: float | None) -> None:
        """Delete the keys of ``level`` (with ``timestamp``: those estimated older than it)."""

        def remove(client: Any) -> None:
            now = time.time()
            batch: list[str] = []
            for key in client.scan_iter(match=f"{_escape_glob(self.prefix)}-{level}-*", count=500):
                batch.append(key.decode() if isinstance(key, bytes) else key)
                if len(batch) >= 500:
                    self._remove_keys(client, batch, timestamp, now)
                    batch = []
            self._remove_keys(client, batch, timestamp, now)

        self._call("remove tiles from", remove, None)

    def _remove_keys(self, client: Any, keys: list[str], before: float | None, now: float) -> None:
        if not keys:
            return
        if before is not None:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.ttl(key)
            remaining = pipe.execute()
            keys = [
                key
                for key, ttl in zip(keys, remaining, strict=True)
                if (created := self._created_at(ttl, now)) is not None and created < before
            ]
        if keys:
            # one DEL per key: cluster keys of one batch may live on different nodes
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.delete(key)
            pipe.execute()


def _escape_glob(text: str) -> str:
    """Escape Redis glob special characters in ``text``."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
