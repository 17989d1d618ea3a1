"""WMTS 1.0.0: KVP and RESTful tile services with shared capabilities."""

from __future__ import annotations

from mapproxy.service.wmts.service import WMTSRestService, WMTSService

__all__ = ["WMTSRestService", "WMTSService"]
