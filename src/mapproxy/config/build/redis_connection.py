"""Redis connection options shared by the ``redis`` cache and ``type: redis`` locking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mapproxy.config.build.paths import ConfigPaths
from mapproxy.errors import ConfigurationError
from mapproxy.util.registry import import_object

Nodes = Sequence[Sequence[Any]] | None


def redis_connection_options(
    paths: ConfigPaths,
    path: str,
    *,
    host: str,
    port: int,
    db: int,
    db_key: str,
    username: str | None,
    password: str | None,
    timeout_seconds: float,
    ssl: bool = False,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_ca_certs: str | None = None,
    sentinels: Nodes = None,
    service_name: str | None = None,
    cluster: bool = False,
    startup_nodes: Nodes = None,
) -> Any:
    """``RedisConnectionOptions`` for the config at ``path``; topology errors name the key
    (``db_key`` is where the db number was given: ``db`` or ``url``)."""
    if sentinels and cluster:
        raise ConfigurationError(f"{path}.sentinels: cannot be combined with cluster: true")
    if startup_nodes and not cluster:
        raise ConfigurationError(f"{path}.startup_nodes: needs cluster: true")
    if cluster and db:
        raise ConfigurationError(f"{path}.{db_key}: Redis Cluster only has db 0")
    return import_object("mapproxy.cache.redis:RedisConnectionOptions")(
        host=host,
        port=port,
        db=db,
        username=username,
        password=password,
        ssl=ssl,
        socket_timeout_seconds=timeout_seconds,
        connect_timeout_seconds=timeout_seconds,
        sentinels=tuple(tuple(node) for node in sentinels or ()),
        service_name=service_name,
        cluster=cluster,
        startup_nodes=tuple(tuple(node) for node in startup_nodes or ()),
        ssl_certfile=paths.path(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=paths.path(ssl_keyfile) if ssl_keyfile else None,
        ssl_ca_certs=paths.path(ssl_ca_certs) if ssl_ca_certs else None,
    )
