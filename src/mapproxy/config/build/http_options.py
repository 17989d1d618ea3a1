"""Options of the upstream HTTP client: a source's ``http`` over ``globals.http``."""

from __future__ import annotations

import logging
from typing import Any

from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.models.common import HTTPOptionsConfig
from mapproxy.config.models.globals import HTTPGlobalsConfig


def http_options(
    http_globals: HTTPGlobalsConfig, conf: HTTPOptionsConfig | None, paths: ConfigPaths
) -> dict[str, Any]:
    """HTTPClient keyword arguments: source ``http`` over ``globals.http``."""
    local = conf.model_dump(exclude_none=True) if conf else {}

    def pick(key: str, default: Any) -> Any:
        if key in local:
            return local[key]
        value = getattr(http_globals, key, None)
        return default if value is None else value

    # as in MapProxy, a source's ``headers`` replace the global ones (they are not merged)
    headers = dict(pick("headers", None) or {})
    ca_certs = pick("ssl_ca_certs", None)
    return {
        "timeout_seconds": float(pick("client_timeout", 60)),
        "headers": headers,
        "ssl_ca_certs": paths.path(ca_certs) if ca_certs else None,
        "ssl_no_cert_checks": bool(pick("ssl_no_cert_checks", False)),
        "hide_error_details": bool(pick("hide_error_details", True)),
        "method": pick("method", "AUTO"),
        "manage_cookies": bool(pick("manage_cookies", False)),
    }


def http_client(
    http_globals: HTTPGlobalsConfig,
    conf: HTTPOptionsConfig | None,
    paths: ConfigPaths,
    error_log_name: str | None = None,
    method: str | None = None,
) -> Any:
    """An HTTPClient for a source's ``http`` options; failures logged on ``error_log_name``.

    ``method`` replaces the configured ``http.method`` (tile sources always GET).
    """
    from mapproxy.http.client import HTTPClient

    error_log = logging.getLogger(error_log_name) if error_log_name else None
    options = http_options(http_globals, conf, paths)
    if method is not None:
        options["method"] = method
    return HTTPClient(**options, error_log=error_log)


def http_timeout(http_globals: HTTPGlobalsConfig) -> float:
    """``globals.http.client_timeout`` in seconds (the default lock timeout)."""
    return float(http_globals.client_timeout or 60)
