"""Base exceptions shared by every package."""

from __future__ import annotations


class MapProxyError(Exception):
    """Base for all domain errors; the message is safe to show to users."""


class ConfigurationError(MapProxyError):
    """The configuration cannot be loaded or built; the message names the key path."""


ConfigError = ConfigurationError


class SourceError(MapProxyError):
    """An upstream source failed (down, timeout, error document, not an image)."""


class HTTPClientError(SourceError):
    """An HTTP request to an upstream failed."""


class TileOutsideGrid(MapProxyError):
    """The requested tile coordinate is outside the grid."""


class NoTiles(MapProxyError):
    """A request does not intersect any tile of the grid at any usable level."""


class LockTimeout(MapProxyError):
    """A tile or source lock could not be acquired in time."""


class TransformationError(MapProxyError):
    """Coordinates could not be transformed between two SRS."""


class InvalidDimensionValue(MapProxyError):
    """A dimension name or value cannot be used (e.g. it would change a cache path)."""
