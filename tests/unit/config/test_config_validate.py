"""Validation messages name the key path; unknown keys warn; references are checked."""

from __future__ import annotations

import logging

import pytest

from mapproxy.config.validate import validate_config
from mapproxy.errors import ConfigurationError

VALID = {
    "services": {"wms": None, "tms": {"use_grid_names": True}},
    "layers": [{"name": "osm", "title": "OSM", "sources": ["osm_cache"]}],
    "caches": {"osm_cache": {"grids": ["webmercator"], "sources": ["osm_wms"]}},
    "sources": {"osm_wms": {"type": "wms", "req": {"url": "http://x/wms", "layers": "a"}}},
    "grids": {"webmercator": {"base": "GLOBAL_WEBMERCATOR"}},
}


def errors_of(raw: dict) -> str:
    with pytest.raises(ConfigurationError) as info:
        validate_config(raw)
    return str(info.value)


def test_valid_config_gives_typed_models():
    config = validate_config(VALID)
    assert config.caches["osm_cache"].grids == ["webmercator"]
    assert config.sources["osm_wms"].req.url == "http://x/wms"
    assert config.services["tms"].use_grid_names is True
    assert config.globals.cache.meta_size == [4, 4]
    assert config.cache_backends["osm_cache"].type == "file"


def test_unknown_grid_names_path_and_suggests():
    raw = {**VALID, "caches": {"osm_cache": {"grids": ["webmercatr"], "sources": ["osm_wms"]}}}
    message = errors_of(raw)
    assert (
        "caches.osm_cache.grids[0]: unknown grid 'webmercatr' (did you mean 'webmercator'?)"
        in message
    )


def test_wrong_type_names_path():
    raw = {**VALID, "globals": {"cache": {"meta_buffer": "abc"}}}
    assert "globals.cache.meta_buffer: 'abc' is not valid" in errors_of(raw)


def test_missing_required_key_names_parent():
    raw = {**VALID, "sources": {"osm_wms": {"type": "wms", "req": {"layers": "a"}}}}
    assert "sources.osm_wms.req: missing required key 'url'" in errors_of(raw)


def test_unknown_source_type():
    raw = {**VALID, "sources": {"osm_wms": {"type": "wmx", "req": {"url": "u"}}}}
    assert "sources.osm_wms.type: unknown source type 'wmx' (did you mean 'wms'?)" in errors_of(raw)


def test_all_errors_are_reported_together():
    raw = {
        **VALID,
        "globals": {"cache": {"meta_buffer": "abc"}},
        "layers": [{"name": "osm", "title": "OSM", "sources": ["nope"]}],
    }
    message = errors_of(raw)
    assert "globals.cache.meta_buffer" in message
    assert "layers[0].sources[0]: unknown source or cache 'nope'" in message


def test_nested_layer_paths():
    raw = {
        **VALID,
        "layers": [{"title": "Group", "layers": [{"name": "a", "title": "A", "sources": ["x"]}]}],
    }
    assert "layers[0].layers[0].sources[0]: unknown source or cache 'x'" in errors_of(raw)


def test_unknown_keys_warn_with_path(caplog: pytest.LogCaptureFixture):
    raw = {**VALID, "caches": {"osm_cache": {**VALID["caches"]["osm_cache"], "foo": 1}}}
    with caplog.at_level(logging.WARNING, logger="mapproxy.config"):
        validate_config(raw)
    assert "unknown 'foo' in caches.osm_cache" in caplog.text


def test_unknown_keys_are_errors_in_strict_mode():
    raw = {**VALID, "caches": {"osm_cache": {**VALID["caches"]["osm_cache"], "foo": 1}}}
    validate_config(raw)  # only a warning by default
    with pytest.raises(ConfigurationError, match=r"unknown 'foo' in caches\.osm_cache"):
        validate_config(raw, strict=True)


def test_legacy_layer_dict_is_accepted():
    raw = {**VALID, "layers": {"osm": {"title": "OSM", "sources": ["osm_cache"]}}}
    config = validate_config(raw)
    assert config.layers[0].name == "osm"


def test_duplicate_layer_names_are_errors():
    raw = {
        **VALID,
        "layers": [
            {"name": "osm", "title": "A", "sources": ["osm_cache"]},
            {"name": "osm", "title": "B", "sources": ["osm_cache"]},
        ],
    }
    assert "layers[1].name: duplicate layer name 'osm'" in errors_of(raw)


def test_unknown_service_is_an_error():
    raw = {**VALID, "services": {"wsm": None}}
    assert "services: unknown service 'wsm' (did you mean 'wms'?)" in errors_of(raw)


def test_unknown_cache_backend_type():
    raw = {
        **VALID,
        "caches": {
            "osm_cache": {**VALID["caches"]["osm_cache"], "cache": {"type": "riak"}},
        },
    }
    assert "caches.osm_cache.cache.type: unknown cache type 'riak'" in errors_of(raw)
