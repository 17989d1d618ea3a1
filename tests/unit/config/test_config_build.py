"""ConfigBuilder: grids, caches, sources and layers built from validated models."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from mapproxy.config.build import ConfigBuilder
from mapproxy.config.validate import validate_config
from mapproxy.errors import ConfigurationError

WMS_SOURCE = {"type": "wms", "req": {"url": "http://127.0.0.1:9/wms", "layers": "a,b"}}


def builder(raw: dict[str, Any], config_dir: Path) -> ConfigBuilder:
    config = validate_config(raw)
    config.config_file = str(config_dir / "mapproxy.yaml")
    return ConfigBuilder(config)


def test_builtin_grids_have_the_reference_definitions(tmp_path: Path):
    build = builder({}, tmp_path)
    geodetic = build.grid("GLOBAL_GEODETIC")
    assert geodetic.srs.code == "EPSG:4326"
    assert geodetic.bbox == (-180, -90, 180, 90)
    assert geodetic.origin == "sw"
    assert geodetic.resolutions[0] == 1.40625
    assert geodetic.resolutions[-1] == pytest.approx(2.682209014892578e-06)
    assert len(geodetic.resolutions) == 20
    mercator = build.grid("GLOBAL_MERCATOR")
    assert mercator.srs.code == "EPSG:900913"
    assert mercator.origin == "sw"
    assert mercator.resolutions[0] == pytest.approx(156543.03392804097)
    assert mercator.resolutions[-1] == pytest.approx(0.29858214173896974)
    webmercator = build.grid("GLOBAL_WEBMERCATOR")
    assert webmercator.srs.code == "EPSG:3857"
    assert webmercator.origin == "nw"
    assert webmercator.resolutions == mercator.resolutions


def test_grid_base_inherits_and_overrides(tmp_path: Path):
    raw = {
        "grids": {"wm": {"base": "GLOBAL_WEBMERCATOR", "num_levels": 5, "tile_size": [512, 512]}}
    }
    grid = builder(raw, tmp_path).grid("wm")
    assert grid.name == "wm"
    assert grid.origin == "nw"
    assert grid.tile_size == (512, 512)
    assert len(grid.resolutions) == 5
    assert grid.resolutions[0] == pytest.approx(2 * 20037508.342789244 / 512)


def test_custom_grid_with_bbox_srs_and_explicit_res(tmp_path: Path):
    raw = {
        "grids": {
            "utm": {
                "srs": "EPSG:25832",
                "bbox": [5, 47, 15, 55],
                "bbox_srs": "EPSG:4326",
                "res": [1000, 500, 250],
                "origin": "nw",
            }
        }
    }
    grid = builder(raw, tmp_path).grid("utm")
    assert grid.resolutions == (1000, 500, 250)
    minx, miny, maxx, maxy = grid.bbox
    assert 150000 < minx < 250000
    assert 5_200_000 < miny < 5_300_000
    assert 800000 < maxx < 1_000_000
    assert 6_050_000 < maxy < 6_150_000


def test_grid_without_origin_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    raw = {"grids": {"g": {"srs": "EPSG:4326", "bbox": [0, 0, 10, 10]}}}
    with caplog.at_level(logging.WARNING, logger="mapproxy.config"):
        grid = builder(raw, tmp_path).grid("g")
    assert grid.origin == "sw"
    assert "grid g does not have an origin" in caplog.text


def test_grid_without_default_bbox_is_an_error(tmp_path: Path):
    raw = {"grids": {"g": {"srs": "EPSG:25832", "origin": "nw"}}}
    with pytest.raises(ConfigurationError, match=r"grids\.g: missing 'bbox'"):
        builder(raw, tmp_path).grid("g")


def test_grid_with_unknown_srs_names_the_key(tmp_path: Path):
    raw = {"grids": {"g": {"srs": "EPSG:999999", "bbox": [0, 0, 1, 1], "origin": "nw"}}}
    with pytest.raises(ConfigurationError, match=r"grids\.g\.srs: unknown srs"):
        builder(raw, tmp_path).grid("g")


def test_file_cache_directory_names_follow_mapproxy(tmp_path: Path):
    raw = {
        "caches": {
            "osm": {"grids": ["GLOBAL_WEBMERCATOR", "GLOBAL_MERCATOR"], "sources": ["wms"]},
            "named": {
                "grids": ["GLOBAL_WEBMERCATOR"],
                "sources": ["wms"],
                "cache": {"type": "file", "use_grid_names": True, "directory_layout": "tms"},
            },
            "fixed": {
                "grids": ["GLOBAL_GEODETIC"],
                "sources": ["wms"],
                "cache": {"directory": "/srv/tiles"},
            },
        },
        "sources": {"wms": WMS_SOURCE},
        "globals": {"cache": {"base_dir": "data"}},
    }
    build = builder(raw, tmp_path)
    dirs = [tm.cache.cache_dir for tm in build.cache("osm").tile_managers]
    assert dirs == [
        str(tmp_path / "data" / "osm_EPSG3857"),
        str(tmp_path / "data" / "osm_EPSG900913"),
    ]
    named = build.cache("named").tile_managers[0].cache
    # checked on MapProxy 7.0.0: <cache_dir>/<cachename>/<gridname>
    assert named.cache_dir == str(tmp_path / "data" / "named" / "GLOBAL_WEBMERCATOR")
    assert named.tile_path(_coord(1, 2, 3)).endswith(os.path.join("3", "1", "2.png"))
    assert build.cache("fixed").tile_managers[0].cache.cache_dir == "/srv/tiles"


def _coord(x: int, y: int, z: int) -> Any:
    from mapproxy.grid import TileCoord

    return TileCoord(x, y, z)


def test_tile_lock_dir_defaults_and_overrides(tmp_path: Path):
    raw = {
        "caches": {
            "a": {"grids": ["GLOBAL_WEBMERCATOR"], "sources": ["wms"]},
            "b": {
                "grids": ["GLOBAL_WEBMERCATOR"],
                "sources": ["wms"],
                "cache": {"tile_lock_dir": "locks_b"},
            },
        },
        "sources": {"wms": WMS_SOURCE},
    }
    build = builder(raw, tmp_path)
    assert build.cache("a").tile_managers[0].locker.lock_dir == str(
        tmp_path / "cache_data" / "tile_locks"
    )
    assert build.cache("b").tile_managers[0].locker.lock_dir == str(tmp_path / "locks_b")


def test_cache_format_and_named_image_formats(tmp_path: Path):
    raw = {
        "caches": {
            "jpeg": {"grids": ["GLOBAL_WEBMERCATOR"], "sources": ["wms"], "format": "image/jpeg"},
            "png8": {"grids": ["GLOBAL_WEBMERCATOR"], "sources": ["wms"], "format": "custom"},
        },
        "sources": {"wms": WMS_SOURCE},
        "globals": {
            "image": {
                "formats": {
                    "custom": {"format": "image/png", "mode": "P", "colors": 32},
                },
                "jpeg_quality": 75,
            }
        },
    }
    build = builder(raw, tmp_path)
    jpeg = build.cache("jpeg")
    assert jpeg.image_options.mime_type == "image/jpeg"
    assert jpeg.image_options.jpeg_quality == 75
    assert jpeg.tile_managers[0].cache.tile_path(_coord(0, 0, 0)).endswith(".jpeg")
    custom = build.cache("png8").image_options
    assert (custom.mime_type, custom.mode, custom.colors) == ("image/png", "P", 32)


def test_tagged_wms_source_overrides_layers(tmp_path: Path):
    raw = {
        "sources": {"wms": WMS_SOURCE},
        "layers": [{"name": "l", "title": "L", "sources": ["wms:b"]}],
    }
    root, _ = builder(raw, tmp_path).build_layers()
    assert root is not None
    source = root.map_layers[0].source
    assert "layers=b&" in source.get_map_url(_query())


def _query() -> Any:
    from mapproxy.source.base import MapQuery
    from mapproxy.srs import get_srs

    return MapQuery((0, 0, 10, 10), (100, 100), get_srs("EPSG:4326"))


def test_tagged_layers_must_be_subset_of_req_layers(tmp_path: Path):
    raw = {
        "sources": {"wms": WMS_SOURCE},
        "layers": [{"name": "l", "title": "L", "sources": ["wms:c"]}],
    }
    with pytest.raises(ConfigurationError, match=r"layers\[0\]\.sources\[0\]: layers c"):
        builder(raw, tmp_path).build_layers()


def test_tile_source_cannot_be_used_uncached(tmp_path: Path):
    raw = {
        "sources": {"t": {"type": "tile", "url": "http://127.0.0.1:9/%(z)s/%(x)s/%(y)s.png"}},
        "layers": [{"name": "l", "title": "L", "sources": ["t"]}],
    }
    with pytest.raises(ConfigurationError, match="does not support un-tiled access"):
        builder(raw, tmp_path).build_layers()


def test_several_top_layers_get_an_unnamed_root_titled_by_wms_md(tmp_path: Path):
    raw = {
        "services": {"wms": {"md": {"title": "My WMS"}}},
        "sources": {"wms": WMS_SOURCE, "d": {"type": "debug"}},
        "layers": [
            {"name": "a", "title": "A", "sources": ["wms"]},
            {"name": "b", "title": "B", "sources": ["d"]},
        ],
    }
    root, _ = builder(raw, tmp_path).build_layers()
    assert root is not None
    assert root.name is None
    assert root.title == "My WMS"
    assert [child.name for child in root.children] == ["a", "b"]


def test_tile_layers_only_for_named_single_cache_layers(tmp_path: Path):
    raw = {
        "sources": {"wms": WMS_SOURCE},
        "caches": {
            "c1": {"grids": ["GLOBAL_WEBMERCATOR", "GLOBAL_GEODETIC"], "sources": ["wms"]},
            "c2": {"grids": ["GLOBAL_WEBMERCATOR"], "sources": ["wms"]},
        },
        "layers": [
            {"name": "one", "title": "One", "sources": ["c1"]},
            {"name": "two", "title": "Two", "sources": ["c1", "c2"]},
            {"name": "direct", "title": "Direct", "sources": ["wms"]},
            {"name": "tiles", "title": "T", "sources": ["wms"], "tile_sources": ["c2"]},
            {"title": "unnamed", "sources": ["c2"]},
        ],
    }
    _, tile_layers = builder(raw, tmp_path).build_layers()
    assert [(tl.name, tl.grid_name) for tl in tile_layers] == [
        ("one", "GLOBAL_WEBMERCATOR"),
        ("one", "GLOBAL_GEODETIC"),
        ("tiles", "GLOBAL_WEBMERCATOR"),
    ]


def test_circular_cache_sources_are_an_error(tmp_path: Path):
    raw = {
        "caches": {
            "a": {"grids": ["GLOBAL_WEBMERCATOR"], "sources": ["b"]},
            "b": {"grids": ["GLOBAL_WEBMERCATOR"], "sources": ["a"]},
        },
    }
    with pytest.raises(ConfigurationError, match="circular cache sources"):
        builder(raw, tmp_path).cache("a")


def test_unsupported_backend_is_a_clear_error(tmp_path: Path):
    raw = {
        "sources": {"wms": WMS_SOURCE},
        "caches": {
            "c": {"grids": ["GLOBAL_WEBMERCATOR"], "sources": ["wms"], "cache": {"type": "couchdb"}}
        },
    }
    with pytest.raises(ConfigurationError, match=r"caches\.c\.cache\.type: cache type 'couchdb'"):
        builder(raw, tmp_path).cache("c")


def test_raster_source_missing_file_names_the_key(tmp_path: Path):
    raw = {"sources": {"r": {"type": "raster", "filename": "nope.tif"}}}
    with pytest.raises(ConfigurationError, match=r"sources\.r\.filename: file not found"):
        builder(raw, tmp_path).source("r")


def test_http_options_merge_globals_and_source(tmp_path: Path):
    raw = {
        "sources": {
            "wms": {**WMS_SOURCE, "http": {"client_timeout": 5, "headers": {"X-B": "2"}}},
            "other": {**WMS_SOURCE, "http": {"client_timeout": 5}},
        },
        "globals": {"http": {"client_timeout": 30, "headers": {"X-A": "1"}}},
    }
    build = builder(raw, tmp_path)
    options = build.http_options(build.config.sources["wms"].http)
    assert options["timeout_seconds"] == 5
    # source headers replace the global headers as a whole, as in MapProxy
    assert options["headers"] == {"X-B": "2"}
    assert options["hide_error_details"] is True
    assert build.http_options(build.config.sources["other"].http)["headers"] == {"X-A": "1"}
