"""A tiny plugin registry: names map to dotted ``module:attr`` paths imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from mapproxy.errors import ConfigurationError

T = TypeVar("T")

# Optional extras that back some built-in kinds: module -> pip extra.
_EXTRAS = {"rasterio": "raster", "redis": "redis", "boto3": "s3"}


class Registry(Generic[T]):
    """Built-in kinds as dotted paths plus third-party kinds from the ``mapproxy`` entry points."""

    def __init__(self, kind: str, builtins: Mapping[str, str]) -> None:
        self.kind = kind
        self._paths = dict(builtins)
        self._loaded: dict[str, T] = {}

    def names(self) -> list[str]:
        """All known names."""
        return sorted(self._paths)

    def register(self, name: str, path: str) -> None:
        """Add or replace a kind by dotted path."""
        self._paths[name] = path
        self._loaded.pop(name, None)

    def get(self, name: str) -> T:
        """The object registered as ``name``; a missing optional dependency is a config error."""
        if name in self._loaded:
            return self._loaded[name]
        path = self._paths.get(name)
        if path is None:
            path = self._from_entry_points(name)
        if path is None:
            raise ConfigurationError(f"unknown {self.kind} type '{name}'")
        module_name, _, attr = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            missing = (error.name or "").split(".")[0]
            extra = _EXTRAS.get(missing)
            hint = f": pip install 'mapproxy[{extra}]'" if extra else f" (missing module {missing})"
            raise ConfigurationError(f"{self.kind} type '{name}' needs {missing}{hint}") from None
        value: T = getattr(module, attr)
        self._loaded[name] = value
        return value

    def _from_entry_points(self, name: str) -> str | None:
        for entry in entry_points(group=f"mapproxy.{self.kind}"):
            if entry.name == name:
                return str(entry.value)
        return None


def import_object(path: str) -> Any:
    """Import ``module:attr``."""
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)
