"""Serve a config with the reference MapProxy 7.0.0 (a black box in its own venv).

`scripts/install-reference.sh` installs the reference into ``$MAPPROXY_REF_VENV``
(default ``/work/ref-venv``). `ReferenceServer` runs that venv's Python with a
threaded werkzeug server around the reference's public ``make_wsgi_app`` -- no
reloader, so the whole server is one process -- in its own process group on
127.0.0.1, and stops it by that group's id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

try:
    from .serving import free_port
except ImportError:
    from serving import free_port

REF_VERSION = "7.0.0"

INSTALL_HINT = (
    "Run scripts/install-reference.sh to install it "
    "(set MAPPROXY_REF_VENV to use another location)."
)

_SERVER_SCRIPT = """
import sys
from werkzeug.serving import make_server
from mapproxy.wsgiapp import make_wsgi_app
app = make_wsgi_app(sys.argv[1])
server = make_server('127.0.0.1', int(sys.argv[2]), app, threaded=True)
server.serve_forever()
"""

_VERSION_SCRIPT = "from importlib.metadata import version; print(version('MapProxy'))"


class ReferenceMissing(RuntimeError):
    pass


def reference_venv() -> Path:
    """The reference venv directory (env ``MAPPROXY_REF_VENV``, default /work/ref-venv)."""
    return Path(os.environ.get("MAPPROXY_REF_VENV", "/work/ref-venv"))


def reference_python() -> Path:
    """The reference venv's interpreter; raises `ReferenceMissing` unless it runs MapProxy 7.0.0."""
    python = reference_venv() / "bin" / "python"
    if not os.access(python, os.X_OK):
        raise ReferenceMissing(f"no reference MapProxy venv at {reference_venv()}. {INSTALL_HINT}")
    found = subprocess.run(
        [str(python), "-c", _VERSION_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    version = found.stdout.strip()
    if found.returncode != 0 or version != REF_VERSION:
        raise ReferenceMissing(
            f"{python} does not provide MapProxy {REF_VERSION} "
            f"(got {version or found.stderr.strip()[-300:]!r}). {INSTALL_HINT}"
        )
    return python


class ReferenceServer:
    """The reference MapProxy serving ``config`` on 127.0.0.1 (context manager).

    ``url`` is the base URL without a trailing slash; the server's output goes to
    ``serve.log`` next to the config.
    """

    def __init__(self, config: Path | str, python: Path | str | None = None) -> None:
        self.config = Path(config)
        self.python = Path(python) if python is not None else reference_python()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.config.parent / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ReferenceServer:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(self.python), "-c", _SERVER_SCRIPT, str(self.config), str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.config.parent),
                start_new_session=True,  # own process group, stopped as a whole
            )
        try:
            self._wait_ready(timeout_seconds=60)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, timeout_seconds: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"reference MapProxy exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"reference MapProxy did not start:\n{self.log()}")

    def log(self) -> str:
        """The server's output so far (last 5000 characters)."""
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
