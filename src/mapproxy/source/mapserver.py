"""MapServer source: WMS requests answered by running the ``mapserv`` CGI binary locally."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from mapproxy.http.client import (
    HTTPClient,
    HTTPResponse,
    UpstreamHTTPError,
    error_message,
    request_log,
)

__all__ = ["MapServerClient", "find_mapserv_binary", "mapserver_url", "parse_cgi_output"]

log = logging.getLogger("mapproxy.source.mapserver")


def find_mapserv_binary(binary: str | None) -> str | None:
    """The absolute path of ``binary`` (default ``mapserv`` on PATH); None if not executable."""
    name = binary or "mapserv"
    if os.sep in name:
        return os.path.abspath(name) if os.access(name, os.X_OK) else None
    return shutil.which(name)


def mapserver_url(binary: str) -> str:
    """The pseudo URL WMS requests to ``binary`` are built on (``mapserver:///usr/bin/mapserv``)."""
    return "mapserver://" + quote(binary)


def parse_cgi_output(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Split CGI output into status (from a ``Status:`` header, default 200), headers, body."""
    cuts = [(raw.find(sep), len(sep)) for sep in (b"\r\n\r\n", b"\n\n")]
    found = [(pos, length) for pos, length in cuts if pos >= 0]
    if not found:
        raise ValueError("no end of CGI headers")
    pos, length = min(found)
    status = 200
    headers: dict[str, str] = {}
    for line in raw[:pos].decode("latin-1").splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            continue
        if name.strip().lower() == "status":
            status = int(value.split()[0])
        else:
            headers[name.strip()] = value.strip()
    return status, headers, raw[pos + length :]


class _Headers(dict[str, str]):
    """CGI headers with case-insensitive ``get``, as HTTPResponse consumers expect."""

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        lowered = key.lower()
        for name, value in self.items():
            if name.lower() == lowered:
                return value
        return default


class MapServerClient(HTTPClient):
    """Answers ``mapserver://<binary>?<query>`` URLs by running the binary as a CGI program.

    Stands in for the HTTP client of a WMS source: ``open`` returns the same
    HTTPResponse and raises the same UpstreamHTTPError (status None: no answer, e.g.
    a crash or a timeout, after which the process is killed). The process inherits the
    environment (``MAPSERVER_CONFIG_FILE``, ``PROJ_DATA``...) and runs in ``working_dir``.
    """

    def __init__(
        self,
        binary: str,
        working_dir: str | None = None,
        timeout_seconds: float = 60.0,
        hide_error_details: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            timeout_seconds=timeout_seconds,
            hide_error_details=hide_error_details,
            error_log=log,
        )
        self.binary = binary
        self.working_dir = working_dir or os.path.dirname(binary) or None
        self.environ = dict(environ) if environ is not None else None

    def __repr__(self) -> str:
        return f"MapServerClient({self.binary!r})"

    def cgi_environ(self, query_string: str) -> dict[str, str]:
        """The environment of one CGI call for ``query_string``."""
        env = dict(os.environ if self.environ is None else self.environ)
        env.update(
            {
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.0",
                "SERVER_SOFTWARE": "MapProxy",
                "SERVER_NAME": "localhost",
                "SERVER_PORT": "80",
                "SCRIPT_NAME": "/",
                "REQUEST_METHOD": "GET",
                "QUERY_STRING": query_string,
            }
        )
        return env

    def open(self, url: str, data: bytes | None = None, method: str | None = None) -> HTTPResponse:
        """Run the binary for the query of ``url``; raises UpstreamHTTPError on failure."""
        query_string = urlsplit(url).query
        start = time.perf_counter()
        try:
            process = subprocess.run(
                [self.binary],
                env=self.cgi_environ(query_string),
                cwd=self.working_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout_seconds,  # run() kills the process when it expires
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise self._failure(url, "timed out", None, start) from None
        except OSError as error:
            raise self._failure(url, error.strerror or str(error), None, start) from None
        if not process.stdout:
            stderr = process.stderr.decode("utf-8", "replace").strip()[:500]
            detail = f"exit status {process.returncode}" + (f": {stderr}" if stderr else "")
            raise self._failure(url, detail, None, start)
        try:
            status, headers, body = parse_cgi_output(process.stdout)
        except ValueError as error:
            raise self._failure(url, str(error), None, start) from None
        duration = time.perf_counter() - start
        if status >= 400:
            raise self._failure(url, status, status, start)
        self._log_call(url, status, len(body), duration)
        return HTTPResponse(
            status=status, headers=_Headers(headers), body=body, url=url, duration_seconds=duration
        )

    def _failure(
        self, url: str, detail: object, status: int | None, start: float
    ) -> UpstreamHTTPError:
        self._log_call(url, status, None, time.perf_counter() - start)
        reason = "MapServer Error" if status is not None else "No response from MapServer"
        full = error_message(reason, url, detail, False)
        self.error_log.warning("%s", full)
        return UpstreamHTTPError(
            error_message(reason, url, detail, self.hide_error_details), url, status, full
        )

    @staticmethod
    def _log_call(url: str, status: int | None, size: int | None, duration: float) -> None:
        if request_log.isEnabledFor(logging.INFO):
            request_log.info(
                "%s %s %s %s %s",
                "GET",
                url,
                "-" if status is None else status,
                "-" if size is None else f"{size / 1024:.1f}",
                int(duration * 1000),
            )
