"""Serve a MapProxy config over real HTTP on 127.0.0.1: in a thread or in a child process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from werkzeug.serving import make_server

_CHILD_SERVER = """
import sys
from werkzeug.serving import make_server
from mapproxy.wsgiapp import make_wsgi_app
server = make_server('127.0.0.1', int(sys.argv[2]), make_wsgi_app(sys.argv[1]), threaded=True)
print('ready', flush=True)
server.serve_forever()
"""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadServer:
    """Our WSGI app for ``config`` served by a threaded werkzeug server in this process."""

    def __init__(self, config: Path | str) -> None:
        from mapproxy.wsgiapp import make_wsgi_app

        self.app = make_wsgi_app(str(config))
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from mapproxy.tilemanager.background import wait_for_background_stores

        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        wait_for_background_stores()


class ProcessServer:
    """Our WSGI app for ``config`` served from a separate Python process."""

    def __init__(self, config: Path | str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_SERVER, str(config), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def __enter__(self) -> ProcessServer:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    self.process.stderr.read().decode() if self.process.stderr else ""
                )
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server process did not start")

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()


def fetch(url: str, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``; returns status, headers and body (also for HTTP errors)."""
    import urllib.error

    from mapproxy.tilemanager.background import wait_for_background_stores

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    finally:
        # a ThreadServer in this process may still store the rest of a meta tile
        wait_for_background_stores()
