"""A map tile cache and web map proxy, compatible with MapProxy 7 configurations."""

__version__ = "7.0.0"
