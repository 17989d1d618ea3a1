"""S3Cache key names and URLs, and how the builder configures it (no S3 needed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from mapproxy.cache.s3 import S3Cache, S3ConnectionOptions
from mapproxy.config.build import ConfigBuilder, cache_storage
from mapproxy.config.validate import validate_config
from mapproxy.errors import ConfigurationError
from mapproxy.grid.tile_grid import TileCoord

COORD = TileCoord(1234567, 2345, 12)


@pytest.mark.parametrize(
    ("layout", "path"),
    [
        ("tms", "12/1234567/2345"),
        ("reverse_tms", "2345/1234567/12"),
        ("tc", "12/001/234/567/000/002/345"),
        ("mp", "12/0123/4567/0000/2345"),
        ("arcgis", "L12/R00000929/C0012d687"),
    ],
)
def test_tile_key_uses_the_file_cache_layouts(layout: str, path: str):
    cache = S3Cache("bucket", "/some/dir/", "png", directory_layout=layout)
    assert cache.tile_key(COORD) == f"some/dir/{path}.png"


def test_quadkey_key_and_empty_prefix():
    cache = S3Cache("bucket", "", "jpeg", directory_layout="quadkey")
    assert cache.tile_key(TileCoord(3, 5, 3)) == "213.jpeg"


def test_object_url_is_path_style_below_the_endpoint():
    cache = S3Cache(
        "tiles",
        "c/GLOBAL_WEBMERCATOR",
        "png",
        connection=S3ConnectionOptions(endpoint_url="http://127.0.0.1:9000/"),
    )
    url = cache.object_url(TileCoord(1, 2, 3))
    assert url == "http://127.0.0.1:9000/tiles/c/GLOBAL_WEBMERCATOR/3/1/2.png"


def test_object_url_without_endpoint_is_the_aws_virtual_host():
    regional = S3Cache("tiles", "c", "png", connection=S3ConnectionOptions(region_name="eu-west-1"))
    assert regional.object_url(TileCoord(1, 2, 3)) == (
        "https://tiles.s3.eu-west-1.amazonaws.com/c/3/1/2.png"
    )
    assert S3Cache("tiles", "c", "png").object_url(TileCoord(1, 2, 3)) == (
        "https://tiles.s3.amazonaws.com/c/3/1/2.png"
    )


def test_lock_id_differs_per_bucket_and_prefix():
    ids = {
        S3Cache("a", "x", "png").lock_cache_id,
        S3Cache("b", "x", "png").lock_cache_id,
        S3Cache("a", "y", "png").lock_cache_id,
    }
    assert len(ids) == 3


def _built_store(raw_cache: dict[str, Any], tmp_path: Path, **globals_s3: Any) -> list[S3Cache]:
    raw: dict[str, Any] = {
        "sources": {"dbg": {"type": "debug"}},
        "caches": {
            "c": {
                "grids": ["GLOBAL_WEBMERCATOR", "GLOBAL_GEODETIC"],
                "sources": ["dbg"],
                "format": "image/jpeg",
                "cache": {"type": "s3", **raw_cache},
            }
        },
    }
    if globals_s3:
        raw["globals"] = {"cache": {"s3": globals_s3}}
    config = validate_config(raw)
    config.config_file = str(tmp_path / "mapproxy.yaml")
    built = ConfigBuilder(config).cache("c")
    return [manager.cache for manager in built.tile_managers]


def test_builder_default_prefix_is_cache_and_grid_name(tmp_path: Path):
    stores = _built_store({"bucket_name": "b"}, tmp_path)
    assert [store.key_prefix for store in stores] == ["c/GLOBAL_WEBMERCATOR", "c/GLOBAL_GEODETIC"]
    assert stores[0].tile_key(TileCoord(1, 2, 3)) == "c/GLOBAL_WEBMERCATOR/3/1/2.jpeg"
    assert stores[0].content_type == "image/jpeg"
    assert stores[0].directory_layout == "tms"


def test_builder_directory_with_and_without_grid_name(tmp_path: Path):
    plain = _built_store({"bucket_name": "b", "directory": "/tiles/x/"}, tmp_path)
    assert [store.key_prefix for store in plain] == ["tiles/x", "tiles/x"]
    named = _built_store(
        {"bucket_name": "b", "directory": "tiles", "include_grid_name": True}, tmp_path
    )
    assert [store.key_prefix for store in named] == [
        "tiles/GLOBAL_WEBMERCATOR",
        "tiles/GLOBAL_GEODETIC",
    ]


def test_builder_takes_bucket_and_connection_from_globals(tmp_path: Path):
    stores = _built_store(
        {"region_name": "eu-central-1", "access_control_list": "public-read"},
        tmp_path,
        bucket_name="global-bucket",
        endpoint_url="http://127.0.0.1:1",
        profile_name="p",
        region_name="us-east-1",
    )
    store = stores[0]
    assert store.bucket_name == "global-bucket"
    assert store.connection.endpoint_url == "http://127.0.0.1:1"
    assert store.connection.profile_name == "p"
    assert store.connection.region_name == "eu-central-1"
    assert store.access_control_list == "public-read"


def test_missing_bucket_names_the_key(tmp_path: Path):
    with pytest.raises(ConfigurationError, match=r"caches\.c\.cache\.bucket_name: missing"):
        _built_store({}, tmp_path)


def test_missing_boto3_names_the_key_and_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "mapproxy.cache.s3")
    monkeypatch.setattr(cache_storage.CACHE_CLASSES, "_loaded", {})
    with pytest.raises(
        ConfigurationError, match=r"caches\.c\.cache\.type: .*pip install 'mapproxy\[s3\]'"
    ):
        _built_store({"bucket_name": "b"}, tmp_path)
