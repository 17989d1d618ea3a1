"""Paths in the configuration, resolved against the directory of the main config file."""

from __future__ import annotations

import os


class ConfigPaths:
    """Resolves configured paths; knows the default cache directory (``globals.cache.base_dir``)."""

    def __init__(self, config_dir: str, base_dir: str) -> None:
        self.config_dir = config_dir
        self.base_dir = self.path(base_dir)

    def path(self, value: str) -> str:
        """``value`` resolved against the directory of the main config file."""
        return os.path.normpath(os.path.join(self.config_dir, os.path.expanduser(value)))
