"""Read MapProxy YAML files: ``$ENV`` expansion and ``base:`` includes merged as MapProxy does."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from mapproxy.errors import ConfigurationError

log = logging.getLogger("mapproxy.config")

# Keys whose list values replace the base value instead of being concatenated.
_REPLACED_LIST_KEYS = frozenset(
    {"bbox", "tile_size", "max_output_pixels", "sources", "grids", "res"}
)

# libyaml's parser is about ten times faster than PyYAML's pure-Python one (and is what
# MapProxy uses, so syntax error messages read the same); the fallback keeps it optional.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_ENV_PATTERN = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass
class LoadedConfig:
    """The merged raw config dict plus every file it was read from (path -> mtime)."""

    data: dict[str, Any]
    config_file: str
    config_files: dict[str, float] = field(default_factory=dict)

    @property
    def config_dir(self) -> str:
        return os.path.dirname(self.config_file)


def load_yaml_file(path: str) -> dict[str, Any]:
    """Parse one YAML file into a dict; syntax errors become ConfigurationError."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ConfigurationError(
            f"could not read configuration file {path}: {error.strerror}"
        ) from None
    return load_yaml_text(text, source=path)


def load_yaml_text(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse YAML text into a dict (empty documents give ``{}``)."""
    try:
        data = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigurationError(f"{source}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: the configuration must be a mapping of sections")
    return data


def expand_env(value: Any) -> Any:
    """Expand ``$NAME``/``${NAME}`` in every string, recursively; unset names stay as text."""
    if isinstance(value, str):
        if "$" not in value:
            return value
        return _ENV_PATTERN.sub(_env_replacement, value)
    if isinstance(value, list):
        return [expand_env(item) for item in value]
    if isinstance(value, dict):
        return {key: expand_env(item) for key, item in value.items()}
    return value


def _env_replacement(match: re.Match[str]) -> str:
    name = match.group(1) or match.group(2)
    if name in os.environ:
        return os.environ[name]
    warnings.warn(
        f"Environment variable '{name}' is not set. The placeholder is kept unchanged.",
        UserWarning,
        stacklevel=2,
    )
    return match.group(0)


def merge_dicts(over: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``over`` following MapProxy's ``base:`` merge rules."""
    result = dict(base)
    for key, over_value in over.items():
        if key not in result:
            result[key] = over_value
            continue
        base_value = result[key]
        if isinstance(base_value, dict):
            if over_value is None:
                continue
            if isinstance(over_value, dict):
                result[key] = merge_dicts(over_value, base_value)
            else:
                result[key] = over_value
        elif isinstance(base_value, list):
            if over_value is None:
                continue
            if key in _REPLACED_LIST_KEYS:
                result[key] = over_value
            elif key == "layers":
                result[key] = _merge_layers(over_value, base_value)
            elif over_value == []:
                result[key] = None
            elif isinstance(over_value, list):
                result[key] = base_value + over_value
            else:
                result[key] = over_value
        else:
            result[key] = over_value
    return result


def _merge_layers(over: Any, base: list[Any]) -> Any:
    if not isinstance(over, list):
        return over
    if not over:
        return base
    merged = list(base)
    positions = {
        layer.get("name"): index
        for index, layer in enumerate(merged)
        if isinstance(layer, dict) and layer.get("name") is not None
    }
    for layer in over:
        name = layer.get("name") if isinstance(layer, dict) else None
        if name is not None and name in positions:
            index = positions[name]
            merged[index] = merge_dicts(layer, merged[index])
        else:
            merged.append(layer)
    return merged


def load_configuration_files(path: str) -> LoadedConfig:
    """Load ``path`` with its ``base:`` includes and env expansion."""
    config_file = os.path.abspath(path)
    files: dict[str, float] = {}
    data = _load_with_bases(config_file, files, stack=())
    data = expand_env(data)
    return LoadedConfig(data=data, config_file=config_file, config_files=files)


def _load_with_bases(path: str, files: dict[str, float], stack: tuple[str, ...]) -> dict[str, Any]:
    if path in stack:
        raise ConfigurationError(f"circular base include of {path}")
    log.info("reading: %s", path)
    current = load_yaml_file(path)
    try:
        files[path] = os.path.getmtime(path)
    except OSError:
        files[path] = 0.0
    bases = current.pop("base", None)
    if bases:
        if isinstance(bases, str):
            bases = [bases]
        if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
            raise ConfigurationError(f"{path}: 'base' must be a file name or a list of names")
        directory = os.path.dirname(path)
        imported: dict[str, Any] = {}
        for base in bases:
            base_path = os.path.abspath(os.path.join(directory, expand_env(base)))
            base_data = _load_with_bases(base_path, files, (*stack, path))
            imported = merge_dicts(imported, base_data)
        current = merge_dicts(current, imported)
    return current
