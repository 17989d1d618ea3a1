"""OGC API (Common, Maps, Tiles) service."""

from mapproxy.service.ogcapi.service import OGCAPIOptions, OGCAPIService

__all__ = ["OGCAPIOptions", "OGCAPIService"]
