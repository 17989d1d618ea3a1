"""Upstream HTTP client: timeouts, pooled connections, headers, request logging."""

from __future__ import annotations

from mapproxy.http.client import HTTPClient, HTTPResponse, UpstreamHTTPError

__all__ = ["HTTPClient", "HTTPResponse", "UpstreamHTTPError"]
