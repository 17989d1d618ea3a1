"""Configuration: load YAML, validate into typed models, build runtime objects."""

from __future__ import annotations

from mapproxy.config.loader import load_configuration_files
from mapproxy.config.validate import ProxyConfig, validate_config


def load_configuration(path: str, ignore_warnings: bool = True) -> ProxyConfig:
    """Load, merge and validate ``path``; raises ConfigurationError naming the key path."""
    loaded = load_configuration_files(path)
    config = validate_config(loaded.data, strict=not ignore_warnings)
    config.config_file = loaded.config_file
    config.config_files = loaded.config_files
    return config


__all__ = ["ProxyConfig", "load_configuration"]
