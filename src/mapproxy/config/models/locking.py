"""``globals.cache.locking`` and ``caches.<name>.locking``: where tile creation locks live.

An extension (not in MapProxy 7.0.0): ``type: file`` (default) keeps MapProxy's lock files
in ``tile_lock_dir``; ``type: redis`` takes the locks as leases in a Redis shared by all
instances, so a cluster fetches each meta tile once.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import field_validator

from mapproxy.config.models.common import ConfigModel, Number

DEFAULT_LOCK_URL = "redis://127.0.0.1:6379/0"
DEFAULT_LOCK_PREFIX = "mapproxy:lock:"


class LockingConfig(ConfigModel):
    type: Literal["file", "redis"] = "file"
    url: str = DEFAULT_LOCK_URL  # redis[s]://[[user]:password@]host[:port][/db]
    lease_seconds: Number = 30
    prefix: str = DEFAULT_LOCK_PREFIX
    socket_timeout: Number = 1  # seconds, connect and read
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_ca_certs: str | None = None
    sentinels: list[tuple[str, int]] | None = None
    service_name: str | None = None
    cluster: bool = False
    startup_nodes: list[tuple[str, int]] | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("expected redis://host:port/db or rediss://host:port/db")
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ValueError("invalid port") from None
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"database must be a number, got {db!r}")
        return value

    @field_validator("lease_seconds", "socket_timeout")
    @classmethod
    def _check_positive(cls, value: Number) -> Number:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value
