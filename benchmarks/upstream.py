"""A synthetic WMS on 127.0.0.1 for the benchmarks: a deterministic image per bbox.

Every GetMap answer is a function of BBOX, WIDTH, HEIGHT and FORMAT only: colour gradients
(one absolute, two whose period follows the resolution, so neighbouring tiles differ at every
zoom level) and dark grid lines every power-of-ten map units. Several pre-forked processes
accept on one listening socket, each with threads, so the upstream is not the bottleneck; an
optional latency is added to every GetMap (``--latency-ms``, or at run time with
``GET /__latency?ms=20``). GetMap requests are counted across processes; ``GET /__stats``
answers ``{"getmap": N, "rendered": R, "latency_ms": L}``.

With ``--memo-dir`` every answer is kept in a file per request (bbox rounded to 1/100 map
unit, size, format) and served from there when asked again: rendering and PNG-encoding a
1184x1184 meta tile costs about 33 ms of CPU, which on a 2-core machine would compete with
the proxies under test. The suite primes the memo before it measures (``rendered`` counts
the answers that had to be rendered), so the upstream costs each proxy the same and little.

Run: ``python -m benchmarks.upstream --port 18300 --processes 4 --latency-ms 20``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import io
import json
import math
import multiprocessing
import os
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from PIL import Image

MAX_SIZE = 4096


def _triangle(values: np.ndarray) -> np.ndarray:
    """A triangle wave of period 1 between 0 and 1: gradients without jumps."""
    result: np.ndarray = np.abs(2.0 * np.mod(values, 1.0) - 1.0)
    return result


def render(bbox: tuple[float, float, float, float], width: int, height: int) -> np.ndarray:
    """RGB pixels (height, width, 3) for ``bbox`` (minx, miny, maxx, maxy in map units)."""
    minx, miny, maxx, maxy = bbox
    res_x = (maxx - minx) / width
    res_y = (maxy - miny) / height
    xs = minx + (np.arange(width, dtype=np.float64) + 0.5) * res_x
    ys = maxy - (np.arange(height, dtype=np.float64) + 0.5) * res_y
    res = max(abs(res_x), abs(res_y), 1e-12)
    red = _triangle(xs / (res * 400.0)) * 255.0
    green = _triangle(ys / (res * 330.0)) * 255.0
    # The absolute gradient has a period of about the web mercator world, whatever the units.
    blue_x = _triangle(xs / 2.0e7) * 127.0
    blue_y = _triangle(ys / 2.0e7) * 127.0
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:, :, 0] = red[np.newaxis, :].astype(np.uint8)
    pixels[:, :, 1] = green[:, np.newaxis].astype(np.uint8)
    pixels[:, :, 2] = (blue_x[np.newaxis, :] + blue_y[:, np.newaxis]).astype(np.uint8)
    spacing = 10.0 ** math.ceil(math.log10(res * 64.0))  # lines 64-640 px apart
    line_x = np.abs(xs - np.round(xs / spacing) * spacing) < abs(res_x) / 2
    line_y = np.abs(ys - np.round(ys / spacing) * spacing) < abs(res_y) / 2
    pixels[:, line_x] = (30, 30, 30)
    pixels[line_y, :] = (30, 30, 30)
    return pixels


def encode(pixels: np.ndarray, image_format: str) -> tuple[bytes, str]:
    """Encode pixels as PNG (fast setting) or JPEG; returns body and content type."""
    out = io.BytesIO()
    image = Image.fromarray(pixels, "RGB")
    if "jpeg" in image_format:
        image.save(out, "JPEG", quality=90)
        return out.getvalue(), "image/jpeg"
    image.save(out, "PNG", compress_level=1)
    return out.getvalue(), "image/png"


def memo_key(bbox: tuple[float, ...], width: int, height: int, image_format: str) -> str:
    """The memo file name of a GetMap: equal for bboxes that differ below 1/100 map unit."""
    text = "|".join([image_format, str(width), str(height), *(f"{value:.2f}" for value in bbox)])
    return hashlib.sha1(text.encode()).hexdigest()


def getmap(
    query: dict[str, str], memo_dir: str | None = None, rendered: Any = None
) -> tuple[int, str, bytes]:
    """Answer one WMS request (keys upper-case); returns status, content type and body.

    With ``memo_dir`` answers are read from and written to that directory; ``rendered``
    (a shared counter) counts the answers that had to be rendered."""
    if query.get("REQUEST", "").lower() != "getmap":
        return 400, "text/plain", b"only GetMap is supported"
    try:
        bbox = tuple(float(value) for value in query["BBOX"].split(","))
        width, height = int(query["WIDTH"]), int(query["HEIGHT"])
    except (KeyError, ValueError):
        return 400, "text/plain", b"BBOX, WIDTH and HEIGHT are required"
    if len(bbox) != 4 or not (0 < width <= MAX_SIZE and 0 < height <= MAX_SIZE):
        return 400, "text/plain", b"invalid BBOX or size"
    image_format = query.get("FORMAT", "image/png").lower()
    memo_path = None
    if memo_dir is not None:
        key = memo_key(bbox, width, height, image_format)
        memo_path = os.path.join(memo_dir, key[:2], key)
        try:
            with open(memo_path, "rb") as stored:
                body = stored.read()
            return 200, "image/jpeg" if "jpeg" in image_format else "image/png", body
        except FileNotFoundError:
            pass
    pixels = render((bbox[0], bbox[1], bbox[2], bbox[3]), width, height)
    body, content_type = encode(pixels, image_format)
    if rendered is not None:
        with rendered.get_lock():
            rendered.value += 1
    if memo_path is not None:
        os.makedirs(os.path.dirname(memo_path), exist_ok=True)
        temporary = f"{memo_path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        with open(temporary, "wb") as memo_file:
            memo_file.write(body)
        os.replace(temporary, memo_path)
    return 200, content_type, body


class _Handler(BaseHTTPRequestHandler):
    """GetMap, and ``/__stats`` for the request counter."""

    protocol_version = "HTTP/1.1"
    server: _UpstreamServer

    def do_GET(self) -> None:
        """Serve a WMS GetMap or the statistics."""
        url = urlsplit(self.path)
        if url.path == "/__stats":
            self._answer(200, "application/json", self.server.stats())
            return
        if url.path == "/__latency":
            milliseconds = float(dict(parse_qsl(url.query)).get("ms", "0"))
            self.server.latency_ms.value = milliseconds
            self._answer(200, "application/json", self.server.stats())
            return
        query = {key.upper(): value for key, value in parse_qsl(url.query)}
        status, content_type, body = getmap(query, self.server.memo_dir, self.server.rendered)
        if status == 200:
            with self.server.counter.get_lock():
                self.server.counter.value += 1
            latency_ms = self.server.latency_ms.value
            if latency_ms > 0:
                time.sleep(latency_ms / 1000.0)
        self._answer(status, content_type, body)

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the benchmark would measure terminal output otherwise."""


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(
        self,
        sock: socket.socket,
        counter: Any,
        latency_ms: Any,
        rendered: Any = None,
        memo_dir: str | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.counter = counter
        self.latency_ms = latency_ms
        self.rendered = rendered
        self.memo_dir = memo_dir

    def stats(self) -> bytes:
        """The shared counters as JSON."""
        rendered = self.rendered.value if self.rendered is not None else self.counter.value
        return json.dumps(
            {
                "getmap": self.counter.value,
                "rendered": rendered,
                "latency_ms": self.latency_ms.value,
            }
        ).encode()


def serve(port: int, processes: int, latency_ms: float, memo_dir: str | None = None) -> None:
    """Listen on 127.0.0.1:``port`` with ``processes`` forked workers until SIGTERM."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    counter = multiprocessing.Value(ctypes.c_long, 0)
    shared_latency_ms = multiprocessing.Value(ctypes.c_double, latency_ms)
    rendered = multiprocessing.Value(ctypes.c_long, 0)
    children: list[int] = []
    for _ in range(max(1, processes)):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            server = _UpstreamServer(sock, counter, shared_latency_ms, rendered, memo_dir)
            try:
                server.serve_forever()
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        for child in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, 0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"upstream ready on 127.0.0.1:{port}", flush=True)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--memo-dir", help="keep answers here and serve repeated requests")
    args = parser.parse_args(argv)
    serve(args.port, args.processes, args.latency_ms, args.memo_dir)


if __name__ == "__main__":
    main()
