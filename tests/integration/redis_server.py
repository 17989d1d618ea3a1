"""A real ``redis-server`` on 127.0.0.1 for integration tests.

`RedisServer` runs Debian's ``redis-server`` on a free loopback port in its own temporary
directory without persistence (``--save '' --appendonly no``), waits until it answers PING
and stops it by PID. ``stop()`` and ``start()`` may be called repeatedly (same port) to
simulate an outage. ``start_sentinel()`` runs a Redis Sentinel watching this server.

Install the binary with ``scripts/install-system-deps.sh``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

try:
    from .serving import free_port
except ImportError:
    from serving import free_port

INSTALL_HINT = (
    "redis-server was not found. Run `scripts/install-system-deps.sh` (as root) to install "
    "Debian's redis-server package, or set REDIS_SERVER_BIN to the binary."
)


class RedisServerMissing(RuntimeError):
    pass


def find_redis_server() -> str:
    """Path of the ``redis-server`` binary (env ``REDIS_SERVER_BIN`` first)."""
    candidates = [os.environ.get("REDIS_SERVER_BIN"), shutil.which("redis-server")]
    candidates.append("/usr/bin/redis-server")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RedisServerMissing(INSTALL_HINT)


def _command(host: str, port: int, command: bytes, timeout_seconds: float = 1.0) -> bytes:
    """Send one inline command and return the first reply chunk."""
    with socket.create_connection((host, port), timeout=timeout_seconds) as sock:
        sock.sendall(command + b"\r\n")
        return sock.recv(65536)


def _wait_until(check: object, timeout_seconds: float, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {timeout_seconds} s")


class _Process:
    """One redis-server process in ``directory`` (own session, stopped by PID)."""

    def __init__(self, args: list[str], directory: Path, log_name: str) -> None:
        self.args = args
        self.directory = directory
        self.log_path = directory / log_name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=str(self.directory),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


class RedisServer:
    """A redis-server on ``host``:``port`` (context manager); data lives only in memory."""

    host = "127.0.0.1"

    def __init__(self, directory: Path | str, binary: str | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.binary = binary or find_redis_server()
        self.port = free_port()
        args = [self.binary, "--port", str(self.port), "--bind", self.host]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self._server = _Process(args, self.directory, "redis.log")
        self._sentinels: list[_Process] = []

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """PID of the running server, or None when stopped."""
        process = self._server.process
        return process.pid if process is not None and process.poll() is None else None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout_seconds: float = 15) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if not self._server.exited():
            return
        self._server.start()

        def ready() -> bool:
            if self._server.exited():
                raise RuntimeError(f"redis-server exited:\n{self._server.log()}")
            return _command(self.host, self.port, b"PING").startswith(b"+PONG")

        try:
            _wait_until(ready, timeout_seconds, "redis-server")
        except BaseException:
            self._server.stop()
            raise

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) by its PID; its data is lost."""
        self._server.stop()

    def restart(self) -> None:
        """Stop and start again on the same port (empty)."""
        self.stop()
        self.start()

    def flushall(self) -> None:
        """Delete all keys."""
        _command(self.host, self.port, b"FLUSHALL")

    def start_sentinel(self, service_name: str = "mymaster", timeout_seconds: float = 15) -> int:
        """Start a Redis Sentinel monitoring this server as ``service_name``; its port."""
        port = free_port()
        conf = self.directory / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind {self.host}\ndir {self.directory}\n"
            f"sentinel monitor {service_name} {self.host} {self.port} 1\n"
        )
        sentinel = _Process(
            [self.binary, str(conf), "--sentinel"], self.directory, conf.stem + ".log"
        )
        sentinel.start()
        self._sentinels.append(sentinel)

        def ready() -> bool:
            if sentinel.exited():
                raise RuntimeError(f"redis sentinel exited:\n{sentinel.log()}")
            reply = _command(
                self.host, port, b"SENTINEL get-master-addr-by-name " + service_name.encode()
            )
            return str(self.port).encode() in reply

        _wait_until(ready, timeout_seconds, "redis sentinel")
        return port

    def close(self) -> None:
        """Stop the sentinels and the server."""
        for sentinel in self._sentinels:
            sentinel.stop()
        self._sentinels.clear()
        self.stop()
