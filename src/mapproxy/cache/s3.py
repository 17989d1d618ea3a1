"""S3 cache: one object per tile in a bucket, keyed like the file cache's layouts."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mapproxy.cache.base import Tile
from mapproxy.cache.file import tile_path_func
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.http.client import HTTPClient, UpstreamHTTPError

log = logging.getLogger("mapproxy.cache.s3")

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# Parallel PUTs for the tiles of one meta tile; also the connection pool size.
_MAX_STORE_WORKERS = 8


@dataclass(frozen=True, slots=True)
class S3ConnectionOptions:
    """How to reach S3: boto3 profile/region/endpoint plus bounded timeouts and retries."""

    profile_name: str | None = None
    region_name: str | None = None
    endpoint_url: str | None = None
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    max_attempts: int = 2


class S3Cache:
    """Tiles as objects ``<key_prefix>/<layout path>.<file_ext>`` in ``bucket_name``.

    One boto3 client (thread-safe) is shared by all threads of a process and created on
    first use, again after a fork. An unreachable or failing S3 is logged on
    ``mapproxy.cache.s3`` and treated as a miss (load) or skipped (store), so tiles are
    still served from the source. With ``use_http_get`` tiles are read by a plain HTTP GET
    of the object URL (public buckets); everything else goes through boto3. Timestamps are
    the objects' LastModified times.
    """

    def __init__(
        self,
        bucket_name: str,
        key_prefix: str,
        file_ext: str,
        directory_layout: str = "tms",
        connection: S3ConnectionOptions | None = None,
        access_control_list: str | None = None,
        use_http_get: bool = False,
        content_type: str | None = None,
    ) -> None:
        self.bucket_name = bucket_name
        self.key_prefix = key_prefix.strip("/")
        self.file_ext = file_ext.lstrip(".")
        self.directory_layout = directory_layout
        self.connection = connection or S3ConnectionOptions()
        self.access_control_list = access_control_list
        self.use_http_get = use_http_get
        self.content_type = content_type
        self._layout = tile_path_func(directory_layout, object_store=True)
        self._prefix = self.key_prefix + "/" if self.key_prefix else ""
        self._suffix = "." + self.file_ext
        location = f"s3://{self.connection.endpoint_url or ''}/{bucket_name}/{self.key_prefix}"
        self.lock_cache_id = hashlib.md5(location.encode("utf-8")).hexdigest()
        self._client: Any = None
        self._client_pid = 0
        self._client_lock = threading.Lock()
        self._http: HTTPClient | None = None

    def __repr__(self) -> str:
        return f"S3Cache({self.bucket_name!r}, {self.key_prefix!r}, {self.directory_layout!r})"

    def tile_key(self, coord: TileCoord) -> str:
        """Object key of ``coord`` in the bucket."""
        return self._prefix + self._layout(coord.x, coord.y, coord.z) + self._suffix

    def object_url(self, coord: TileCoord) -> str:
        """Plain HTTP URL of the tile object (for ``use_http_get``): path style below
        ``endpoint_url`` if configured, else the bucket's virtual host on AWS."""
        key = quote(self.tile_key(coord))
        endpoint = self.connection.endpoint_url
        if endpoint:
            return f"{endpoint.rstrip('/')}/{quote(self.bucket_name)}/{key}"
        region = self.connection.region_name
        host = f"s3.{region}.amazonaws.com" if region else "s3.amazonaws.com"
        return f"https://{self.bucket_name}.{host}/{key}"

    def load_tile(self, coord: TileCoord) -> Tile | None:
        """The stored tile with data and LastModified, or None if missing or S3 fails."""
        if self.use_http_get:
            return self._load_tile_http(coord)
        key = self.tile_key(coord)
        try:
            response = self.client().get_object(Bucket=self.bucket_name, Key=key)
            data = response["Body"].read()
        except (BotoCoreError, ClientError) as error:
            self._log_failure("load", key, error)
            return None
        return Tile(coord, data, _epoch_seconds(response.get("LastModified")))

    def is_cached(self, coord: TileCoord) -> bool:
        """True if an object exists for ``coord`` (False if S3 fails)."""
        return self._head(coord) is not None

    def tile_timestamp(self, coord: TileCoord) -> float | None:
        """LastModified of the tile object (epoch seconds), None if missing."""
        head = self._head(coord)
        if head is None:
            return None
        return _epoch_seconds(head.get("LastModified"))

    def store_tile(self, coord: TileCoord, data: bytes) -> None:
        """Store one encoded tile."""
        self.store_tiles({coord: data})

    def store_tiles(self, tiles: Mapping[TileCoord, bytes]) -> None:
        """Upload encoded tiles (each PUT is atomic); failures are logged, not raised."""
        items = list(tiles.items())
        if len(items) <= 1:
            for coord, data in items:
                self._put(coord, data)
            return
        with ThreadPoolExecutor(max_workers=min(_MAX_STORE_WORKERS, len(items))) as pool:
            list(pool.map(lambda item: self._put(*item), items))

    def remove_tile(self, coord: TileCoord) -> None:
        """Delete the tile object if present; failures are logged."""
        key = self.tile_key(coord)
        try:
            self.client().delete_object(Bucket=self.bucket_name, Key=key)
        except (BotoCoreError, ClientError) as error:
            self._log_failure("remove", key, error)

    def client(self) -> Any:
        """The boto3 S3 client of this process (created on first use)."""
        pid = os.getpid()
        if self._client is not None and self._client_pid == pid:
            return self._client
        with self._client_lock:
            if self._client is None or self._client_pid != pid:
                options = self.connection
                session = boto3.session.Session(
                    profile_name=options.profile_name, region_name=options.region_name
                )
                self._client = session.client(
                    "s3",
                    endpoint_url=options.endpoint_url,
                    config=Config(
                        connect_timeout=options.connect_timeout_seconds,
                        read_timeout=options.read_timeout_seconds,
                        retries={"max_attempts": options.max_attempts, "mode": "standard"},
                        max_pool_connections=_MAX_STORE_WORKERS * 2,
                    ),
                )
                self._client_pid = pid
        return self._client

    def _put(self, coord: TileCoord, data: bytes) -> None:
        key = self.tile_key(coord)
        extra: dict[str, str] = {}
        if self.content_type:
            extra["ContentType"] = self.content_type
        if self.access_control_list:
            extra["ACL"] = self.access_control_list
        try:
            self.client().put_object(Bucket=self.bucket_name, Key=key, Body=data, **extra)
        except (BotoCoreError, ClientError) as error:
            self._log_failure("store", key, error)

    def _head(self, coord: TileCoord) -> dict[str, Any] | None:
        key = self.tile_key(coord)
        try:
            head: dict[str, Any] = self.client().head_object(Bucket=self.bucket_name, Key=key)
        except (BotoCoreError, ClientError) as error:
            self._log_failure("check", key, error)
            return None
        return head

    def _load_tile_http(self, coord: TileCoord) -> Tile | None:
        if self._http is None:
            self._http = HTTPClient(
                timeout_seconds=self.connection.read_timeout_seconds,
                hide_error_details=False,
                error_log=logging.getLogger("mapproxy.cache.s3.http"),
            )
        url = self.object_url(coord)
        try:
            response = self._http.open(url)
        except UpstreamHTTPError as error:
            if error.status not in (403, 404):  # a public bucket answers 403 for missing keys
                log.error("cannot load tile from %s: %s", url, error.full_message)
            return None
        timestamp = None
        last_modified = response.headers.get("Last-Modified")
        if last_modified:
            try:
                timestamp = parsedate_to_datetime(last_modified).timestamp()
            except (TypeError, ValueError):
                timestamp = None
        return Tile(coord, response.body, timestamp)

    def _log_failure(self, action: str, key: str, error: BotoCoreError | ClientError) -> None:
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                return
        log.error("cannot %s tile s3://%s/%s: %s", action, self.bucket_name, key, error)


def _epoch_seconds(value: Any) -> float | None:
    timestamp = getattr(value, "timestamp", None)
    return float(timestamp()) if timestamp is not None else None
