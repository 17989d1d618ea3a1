"""Validate a raw config dict into typed models, reporting every problem by key path."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mapproxy.config.models.caches import BACKEND_MODELS, BackendCommonConfig, CacheConfig
from mapproxy.config.models.globals import GlobalsConfig
from mapproxy.config.models.grids import GridConfig
from mapproxy.config.models.layers import LayerConfig
from mapproxy.config.models.services import SERVICE_MODELS
from mapproxy.config.models.sources import SOURCE_MODELS, SourceConfig
from mapproxy.errors import ConfigurationError

log = logging.getLogger("mapproxy.config")

BUILTIN_GRID_NAMES = ("GLOBAL_GEODETIC", "GLOBAL_MERCATOR", "GLOBAL_WEBMERCATOR")
TOP_LEVEL_KEYS = ("services", "layers", "caches", "sources", "grids", "globals", "parts", "base")

M = TypeVar("M", bound=BaseModel)


@dataclass
class ProxyConfig:
    """The validated configuration: one typed model per entry of every section."""

    globals: GlobalsConfig
    grids: dict[str, GridConfig]
    sources: dict[str, SourceConfig]
    caches: dict[str, CacheConfig]
    cache_backends: dict[str, BackendCommonConfig]
    layers: list[LayerConfig]
    services: dict[str, Any]
    config_file: str = ""
    config_files: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def config_dir(self) -> str:
        import os

        return os.path.dirname(self.config_file)


class _Collector:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}" if path else message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def format_path(parts: Iterable[str | int]) -> str:
    """``('caches', 'osm', 'grids', 0)`` -> ``caches.osm.grids[0]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "."


def suggest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def validate_config(raw: Mapping[str, Any], strict: bool = False) -> ProxyConfig:
    """Check ``raw`` completely; raise ConfigurationError listing every error.

    Unknown keys are warnings (logged on ``mapproxy.config``); with ``strict`` they are
    errors too.
    """
    out = _Collector()
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            out.warn(f"unknown '{key}' in .")

    globals_model = _validate_model(GlobalsConfig, raw.get("globals") or {}, ("globals",), out)
    grids = _validate_section(GridConfig, raw, "grids", out)
    sources = _validate_typed_section(raw, "sources", SOURCE_MODELS, out, default_type=None)
    caches = _validate_section(CacheConfig, raw, "caches", out)
    backends: dict[str, BackendCommonConfig] = {}
    for name, cache in caches.items():
        backend_raw = cache.cache or {}
        backend = _validate_typed_entry(
            backend_raw, ("caches", name, "cache"), BACKEND_MODELS, out, default_type="file"
        )
        if backend is not None:
            backends[name] = backend
    layers = _validate_layers(raw.get("layers"), out)
    services = _validate_services(raw.get("services"), out)

    if globals_model is None:
        globals_model = GlobalsConfig()
    config = ProxyConfig(
        globals=globals_model,
        grids=grids,
        sources=sources,
        caches=caches,
        cache_backends=backends,
        layers=layers,
        services=services,
    )
    _check_references(config, out, _raw_names(raw, "sources"), _raw_names(raw, "caches"))

    for message in out.warnings:
        log.warning(message)
    if strict and out.warnings:
        out.errors.extend(out.warnings)
    if out.errors:
        for message in out.errors:
            log.error(message)
        raise ConfigurationError("invalid configuration:\n  " + "\n  ".join(out.errors))
    config.warnings = out.warnings
    return config


def _validate_model(
    model: type[M], value: Any, path: tuple[str | int, ...], out: _Collector
) -> M | None:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        out.error(format_path(path), f"expected a mapping, got {_describe(value)}")
        return None
    try:
        result = model.model_validate(value)
    except ValidationError as error:
        _report_validation_error(error, path, out)
        return None
    _report_unknown_keys(result, path, out)
    return result


def _validate_section(
    model: type[M], raw: Mapping[str, Any], section: str, out: _Collector
) -> dict[str, M]:
    value = raw.get(section) or {}
    if not isinstance(value, Mapping):
        out.error(section, f"expected a mapping of names, got {_describe(value)}")
        return {}
    result: dict[str, M] = {}
    for name, entry in value.items():
        validated = _validate_model(model, entry, (section, str(name)), out)
        if validated is not None:
            result[str(name)] = validated
    return result


def _validate_typed_entry(
    value: Any,
    path: tuple[str | int, ...],
    models: Mapping[str, type[M]],
    out: _Collector,
    default_type: str | None,
) -> M | None:
    if not isinstance(value, Mapping):
        out.error(format_path(path), f"expected a mapping, got {_describe(value)}")
        return None
    kind = value.get("type", default_type)
    if kind is None:
        out.error(format_path(path), "missing 'type'")
        return None
    if kind not in models:
        section = "source" if path[0] == "sources" else "cache"
        out.error(
            format_path((*path, "type")),
            f"unknown {section} type '{kind}'{suggest(str(kind), models)}"
            f" (known: {', '.join(sorted(models))})",
        )
        return None
    data = dict(value)
    data["type"] = kind
    return _validate_model(models[kind], data, path, out)


def _validate_typed_section(
    raw: Mapping[str, Any],
    section: str,
    models: Mapping[str, type[Any]],
    out: _Collector,
    default_type: str | None,
) -> dict[str, Any]:
    value = raw.get(section) or {}
    if not isinstance(value, Mapping):
        out.error(section, f"expected a mapping of names, got {_describe(value)}")
        return {}
    result: dict[str, Any] = {}
    for name, entry in value.items():
        validated = _validate_typed_entry(entry, (section, str(name)), models, out, default_type)
        if validated is not None:
            result[str(name)] = validated
    return result


def _validate_layers(value: Any, out: _Collector) -> list[LayerConfig]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        # Legacy form: name -> layer dict (no nesting).
        entries = []
        for name, layer in value.items():
            if isinstance(layer, Mapping):
                entries.append({"name": name, **layer})
            else:
                out.error(f"layers.{name}", f"expected a mapping, got {_describe(layer)}")
        value = entries
    if not isinstance(value, list):
        out.error("layers", f"expected a list of layers, got {_describe(value)}")
        return []
    result = []
    for index, entry in enumerate(value):
        layer = _validate_model(LayerConfig, entry, ("layers", index), out)
        if layer is not None:
            result.append(layer)
    return result


def _validate_services(value: Any, out: _Collector) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        out.error("services", f"expected a mapping, got {_describe(value)}")
        return {}
    result: dict[str, Any] = {}
    for name, entry in value.items():
        model = SERVICE_MODELS.get(str(name))
        if model is None:
            out.error("services", f"unknown service '{name}'{suggest(str(name), SERVICE_MODELS)}")
            continue
        validated = _validate_model(model, entry or {}, ("services", str(name)), out)
        if validated is not None:
            result[str(name)] = validated
    return result


def _report_validation_error(
    error: ValidationError, prefix: tuple[str | int, ...], out: _Collector
) -> None:
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if not _is_union_tag(part))
        kind = item["type"]
        if kind == "missing":
            out.error(format_path(prefix + loc[:-1]), f"missing required key '{loc[-1]}'")
            continue
        path = format_path(prefix + loc)
        value = item.get("input")
        message = item["msg"]
        if kind == "extra_forbidden":
            out.error(path, "unknown option")
            continue
        if kind == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            message = f"invalid value {_describe_value(value)}, expected {expected}"
        else:
            message = f"{_describe_value(value)} is not valid: {message[0].lower()}{message[1:]}"
        out.error(path, message)


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the union member name (e.g. 'list[str]', 'str') to error locations.
    return isinstance(part, str) and (
        "[" in part or part in ("str", "int", "float", "bool", "dict", "list", "function-after")
    )


def _report_unknown_keys(model: BaseModel, path: tuple[str | int, ...], out: _Collector) -> None:
    # models whose extra keys are meaningful (e.g. a WMS source's ``req`` parameters)
    extra = {} if getattr(type(model), "extra_keys_allowed", False) else model.model_extra or {}
    for key in extra:
        out.warn(f"unknown '{key}' in {format_path(path)}")
    for name in type(model).model_fields:
        value = getattr(model, name)
        _report_unknown_in_value(value, (*path, name), out)


def _report_unknown_in_value(value: Any, path: tuple[str | int, ...], out: _Collector) -> None:
    if isinstance(value, BaseModel):
        _report_unknown_keys(value, path, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _report_unknown_in_value(item, (*path, index), out)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, BaseModel):
                _report_unknown_keys(item, (*path, str(key)), out)


def _describe(value: Any) -> str:
    return type(value).__name__ if value is not None else "nothing"


def _describe_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def source_name(reference: str) -> str:
    """``'wms1:a,b'`` -> ``'wms1'`` (tagged source names carry layer names)."""
    return reference.split(":", 1)[0]


def _raw_names(raw: Mapping[str, Any], section: str) -> set[str]:
    value = raw.get(section)
    return {str(name) for name in value} if isinstance(value, Mapping) else set()


def _check_references(
    config: ProxyConfig, out: _Collector, source_names: set[str], cache_names: set[str]
) -> None:
    # Names of entries that failed validation still count, so one error does not cascade.
    grid_names = set(BUILTIN_GRID_NAMES) | set(config.grids)
    for name, grid in config.grids.items():
        if grid.base is not None and grid.base not in grid_names:
            out.error(
                f"grids.{name}.base",
                f"unknown base grid '{grid.base}'{suggest(grid.base, grid_names)}",
            )
    source_and_cache = source_names | cache_names
    for name, source in config.sources.items():
        source_grid = getattr(source, "grid", None)
        if source_grid is not None and source_grid not in grid_names:
            out.error(
                f"sources.{name}.grid",
                f"unknown grid '{source_grid}'{suggest(source_grid, grid_names)}",
            )
    for name, cache in config.caches.items():
        for index, grid_name in enumerate(cache.grids or []):
            if grid_name not in grid_names:
                out.error(
                    f"caches.{name}.grids[{index}]",
                    f"unknown grid '{grid_name}'{suggest(grid_name, grid_names)}",
                )
        if isinstance(cache.sources, list):
            for index, ref in enumerate(cache.sources):
                base = source_name(ref)
                if base not in source_and_cache:
                    out.error(
                        f"caches.{name}.sources[{index}]",
                        f"unknown source or cache '{base}'{suggest(base, source_and_cache)}",
                    )
                elif base == name:
                    out.error(f"caches.{name}.sources[{index}]", "a cache cannot be its own source")
    _check_layer_refs(config.layers, ("layers",), source_and_cache, cache_names, out, {})


def _check_layer_refs(
    layers: Sequence[LayerConfig],
    path: tuple[str | int, ...],
    source_and_cache: set[str],
    cache_names: set[str],
    out: _Collector,
    seen_names: dict[str, str],
) -> None:
    for index, layer in enumerate(layers):
        layer_path = (*path, index)
        if layer.name is not None:
            if layer.name in seen_names:
                out.error(
                    format_path((*layer_path, "name")),
                    f"duplicate layer name '{layer.name}' (also at {seen_names[layer.name]})",
                )
            else:
                seen_names[layer.name] = format_path(layer_path)
        for sub_index, ref in enumerate(layer.sources or []):
            base = source_name(ref)
            if base not in source_and_cache:
                out.error(
                    format_path((*layer_path, "sources", sub_index)),
                    f"unknown source or cache '{base}'{suggest(base, source_and_cache)}",
                )
        for sub_index, ref in enumerate(layer.tile_sources or []):
            if ref not in cache_names:
                out.error(
                    format_path((*layer_path, "tile_sources", sub_index)),
                    f"unknown cache '{ref}'{suggest(ref, cache_names)}",
                )
        if layer.layers:
            _check_layer_refs(
                layer.layers,
                (*layer_path, "layers"),
                source_and_cache,
                cache_names,
                out,
                seen_names,
            )
