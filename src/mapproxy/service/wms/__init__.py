"""WMS 1.0.0-1.3.0: GetCapabilities and GetMap over the published layer tree."""

from __future__ import annotations

from mapproxy.service.wms.service import WMSService

__all__ = ["WMSService"]
