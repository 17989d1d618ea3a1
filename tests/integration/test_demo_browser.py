"""The demo page in a real browser: headless Chromium against ``mapproxy-util serve-develop``.

The server is the command README's ``./scripts/run-example.sh`` runs, on a copy of
examples/world (so its tile cache lands in a temporary directory, not in the repository).
Debian's ``chromium`` is driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``, standard library only). A plain ``--screenshot`` with
``--virtual-time-budget`` is not used: it races OpenLayers' image decoding and catches
maps with tiles still missing. Instead each viewer is captured once OpenLayers reports
``rendercomplete``; then the map area must look like the Natural Earth map (many colours,
lots of ocean blue and land colours, no blank bands) and the server's request log must
show the tile or GetMap requests answered with 200.

Never skips: without chromium the tests fail, pointing at scripts/install-system-deps.sh.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

try:
    from .serving import fetch, free_port
except ImportError:
    from serving import fetch, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "examples" / "world" / "mapproxy.yaml"
EXAMPLE_RASTER = REPO / "examples" / "data" / "natural-earth-world.tif"

INSTALL_HINT = (
    "headless browser tests need Debian's `chromium` on PATH: "
    "run scripts/install-system-deps.sh (as root or with sudo)"
)

STEP_TIMEOUT = 30.0  # seconds for one DevTools command, page load or map render
VIEWPORT = (1000, 800)

BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
    # Only our server: the web mercator viewers' OpenStreetMap background must not be
    # fetched, so the test neither depends on nor talks to the internet.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

# Thresholds for the map area of a screenshot (951x558 pixels). Observed with the bundled
# Natural Earth raster at the initial views of the WMTS (webmercator) / TMS
# (GLOBAL_GEODETIC) / WMS (EPSG:25832) viewers and after zooming the WMTS viewer in:
# distinct colours 3599 / 3732 / 118 / 3008 (the WMS image is a 256-colour PNG shown
# unscaled, tiles are scaled at fractional zoom levels), ocean 69 / 63 / 50 / 64 %,
# land 23 / 22 / 42 / 31 %, blank 0.2 % (the zoom buttons; up to 1.7 % of an edge).
MIN_COLOURS = 64
MIN_OCEAN = 0.30
MIN_LAND = 0.10
MAX_BLANK = 0.01  # pure white: where no tile or image was drawn
MAX_BLANK_EDGE = 0.05  # the same for each outer tenth (top, bottom, left, right)


# -- the server ---------------------------------------------------------------------------

_LOG_REQUEST = re.compile(
    r'"(?:\x1b\[[\d;]*m)?GET (?P<path>\S+) HTTP/[\d.]+(?:\x1b\[[\d;]*m)?" (?P<status>\d{3}) '
)


@dataclass
class DemoServer:
    """``mapproxy-util serve-develop`` in its own process group, logging into ``log``."""

    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def requests_since(self, offset: int) -> list[tuple[str, int]]:
        """(path with query, status) of every request the server logged after ``offset``."""
        with self.log.open("rb") as stream:
            stream.seek(offset)
            text = stream.read().decode("utf-8", "replace")
        return [(m["path"], int(m["status"])) for m in _LOG_REQUEST.finditer(text)]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text("utf-8", "replace")[-chars:]


def _stop_group(process: subprocess.Popen[Any]) -> None:
    """End ``process`` and everything in its process group (a session of its own)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    else:
        # the leader is gone; make sure no child of it (reloader server) is left
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """The README's example served by the real CLI from a temporary copy."""
    root = tmp_path_factory.mktemp("demo_example")
    (root / "world").mkdir()
    (root / "data").mkdir()
    shutil.copy(EXAMPLE_CONFIG, root / "world" / "mapproxy.yaml")
    shutil.copy(EXAMPLE_RASTER, root / "data" / "natural-earth-world.tif")
    cli = Path(sys.executable).with_name("mapproxy-util")
    command = [str(cli) if cli.exists() else "mapproxy-util", "serve-develop"]
    port = free_port()
    log = root / "server.log"
    with log.open("wb") as log_stream:
        process = subprocess.Popen(
            [*command, "-b", f"127.0.0.1:{port}", "mapproxy.yaml"],
            cwd=root / "world",
            stdin=subprocess.DEVNULL,
            stdout=log_stream,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    server = DemoServer(f"http://127.0.0.1:{port}", log, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"mapproxy-util serve-develop exited with {process.returncode}:\n"
                    + server.log_tail(),
                    pytrace=False,
                )
            try:
                status, _, _ = fetch(server.url + "/demo/", timeout=2)
            except OSError:
                status = 0
            if status == 200:
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    "serve-develop did not answer /demo/:\n" + server.log_tail(), pytrace=False
                )
            time.sleep(0.2)
        yield server
        # the cache was written next to the copied config, not into the repository
        assert (root / "world" / "cache_data").is_dir()
    finally:
        _stop_group(process)


# -- the browser --------------------------------------------------------------------------


class BrowserError(Exception):
    """Chromium did not answer in time, crashed or reported an error."""


class Chromium:
    """Headless Chromium controlled over the DevTools protocol on file descriptors 3 and 4.

    Messages are JSON terminated by a NUL byte; commands sent with a ``sessionId`` go to
    the page attached under that session.
    """

    def __init__(self, binary: str, profile: Path) -> None:
        self.stderr_path = profile.with_name(profile.name + "-stderr.log")
        commands_r, commands_w = os.pipe()
        replies_r, replies_w = os.pipe()

        def connect_pipes() -> None:  # runs in the child between fork and exec
            # first above 10, so that neither end is overwritten by the other dup2
            read_end = fcntl.fcntl(commands_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(replies_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    binary,
                    *BROWSER_FLAGS,
                    f"--user-data-dir={profile}",
                    "--remote-debugging-pipe",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=connect_pipes,
                pass_fds=(3, 4),  # 3 and 4 are open here (at the latest our pipes took them)
                start_new_session=True,
            )
        os.close(commands_r)
        os.close(replies_w)
        self._out = commands_w
        self._in = replies_r
        self._buffer = bytearray()
        self._last_id = 0
        self.events: list[dict[str, Any]] = []

    def stderr_tail(self, chars: int = 2000) -> str:
        text = self.stderr_path.read_text("utf-8", "replace")
        lines = [line for line in text.splitlines() if "dbus" not in line]
        return "\n".join(lines)[-chars:]

    def _receive(self, deadline: float) -> dict[str, Any]:
        while (end := self._buffer.find(b"\0")) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise BrowserError("chromium closed the pipe:\n" + self.stderr_tail())
                self._buffer += chunk
        message: dict[str, Any] = json.loads(self._buffer[:end])
        del self._buffer[: end + 1]
        return message

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = STEP_TIMEOUT,
    ) -> dict[str, Any]:
        """Run one command and return its result; events arriving meanwhile are kept."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._out, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise BrowserError("chromium is gone:\n" + self.stderr_tail()) from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") != self._last_id:
                self.events.append(reply)
            elif "error" in reply:
                raise BrowserError(f"{method}: {reply['error']}")
            else:
                result: dict[str, Any] = reply["result"]
                return result

    def wait_for_event(self, method: str, session: str, timeout: float = STEP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    del self.events[index]
                    return
            self.events.append(self._receive(deadline))

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.send("Browser.close", timeout=5)
                self.process.wait(timeout=10)
        except (BrowserError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            _stop_group(self.process)
            os.close(self._out)
            os.close(self._in)


def _error_text(event: dict[str, Any]) -> str | None:
    """A JavaScript exception or console error reported by ``event``, else None."""
    params = event.get("params", {})
    if event.get("method") == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return "exception: " + str(
            details.get("exception", {}).get("description") or details.get("text")
        )
    if event.get("method") == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        args = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
        return f"console.{params['type']}: {args}"
    return None


@dataclass
class Page:
    """One browser tab."""

    browser: Chromium
    session: str
    target: str
    screenshots: Path
    errors: list[str] = field(default_factory=list)

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def _collect_errors(self) -> None:
        """Move this page's JavaScript exceptions and console errors into ``errors``."""
        keep = []
        for event in self.browser.events:
            text = _error_text(event) if event.get("sessionId") == self.session else None
            if text:
                self.errors.append(text)
            else:
                keep.append(event)
        self.browser.events[:] = keep

    def js_errors(self) -> list[str]:
        self._collect_errors()
        return self.errors

    def _forget_events(self) -> None:
        """Keep the errors, drop every other event of this page (before a new load)."""
        self._collect_errors()
        self.browser.events[:] = [
            event for event in self.browser.events if event.get("sessionId") != self.session
        ]

    def goto(self, url: str) -> None:
        self._forget_events()
        reply = self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise BrowserError(f"cannot open {url}: {reply['errorText']}")
        self.browser.wait_for_event("Page.loadEventFired", self.session)

    def click_and_wait_for_load(self, selector: str) -> None:
        self._forget_events()
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        self.browser.wait_for_event("Page.loadEventFired", self.session)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression``; a promise is awaited."""
        reply = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript failed: {text}")
        return reply["result"].get("value")

    def screenshot(self, name: str, clip: tuple[float, float, float, float]) -> Image.Image:
        """The viewport area ``clip`` (x, y, width, height in CSS pixels), also saved as PNG."""
        x, y, width, height = clip
        reply = self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "clip": {"x": x, "y": y, "width": width, "height": height, "scale": 1},
            },
        )
        data = base64.b64decode(reply["data"])
        (self.screenshots / f"{name}.png").write_bytes(data)
        image = Image.open(io.BytesIO(data))
        image.load()
        return image.convert("RGB")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    profile = tmp_path_factory.mktemp("chromium") / "profile"
    profile.mkdir()
    browser = Chromium(binary, profile)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(chromium: Chromium, tmp_path: Path) -> Iterator[Page]:
    """A fresh tab with a fixed 1000x800 viewport."""
    target = chromium.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = chromium.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    tab = Page(chromium, session, target, tmp_path)
    tab.send("Page.enable")
    tab.send("Runtime.enable")
    tab.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield tab
    finally:
        with contextlib.suppress(BrowserError):
            chromium.send("Target.closeTarget", {"targetId": target})


# -- the map ------------------------------------------------------------------------------

# Resolves once OpenLayers has drawn everything (all tiles/images loaded) and describes
# the view and where the map element is.
WAIT_FOR_MAP = """
new Promise((resolve, reject) => {
  const map = window.mapproxyDemoMap;
  if (!map) {
    reject(new Error("window.mapproxyDemoMap is missing: viewer.js did not build the map"));
    return;
  }
  const timer = setTimeout(
    () => reject(new Error("OpenLayers did not finish rendering the map")), TIMEOUT_MS);
  map.once("rendercomplete", () => {
    clearTimeout(timer);
    const view = map.getView();
    const box = map.getTargetElement().getBoundingClientRect();
    resolve({
      zoom: view.getZoom(),
      resolution: view.getResolution(),
      extent: view.calculateExtent(),
      size: map.getSize(),
      box: [box.left, box.top, box.width, box.height],
    });
  });
  map.render();
})
""".replace("TIMEOUT_MS", str(int(STEP_TIMEOUT * 1000)))

ZOOM_IN_BY_BUTTON = """
new Promise((resolve) => {
  window.mapproxyDemoMap.once("moveend", () => resolve(true));
  document.querySelector(".ol-zoom-in").click();
})
"""


def rendered_map(page: Page, name: str) -> tuple[dict[str, Any], Image.Image]:
    """Wait for the map, then screenshot its inside (without the 1px border)."""
    state = page.evaluate(WAIT_FOR_MAP)
    left, top, width, height = state["box"]
    image = page.screenshot(name, (left + 2, top + 2, width - 4, height - 4))
    return state, image


@dataclass
class MapStats:
    colours: int
    ocean: float
    land: float
    blank: float
    blank_edges: dict[str, float]

    def __str__(self) -> str:
        edges = ", ".join(f"{side} {share:.1%}" for side, share in self.blank_edges.items())
        return (
            f"{self.colours} colours, ocean {self.ocean:.1%}, land {self.land:.1%}, "
            f"blank {self.blank:.1%} (edges: {edges})"
        )


def map_stats(image: Image.Image) -> MapStats:
    """Colour statistics of a screenshot of the Natural Earth map.

    Ocean is a clear blue (blue well above red); land is green, beige or brown (green
    above blue, red not below blue); ice, grey relief and text count as neither. Blank
    is the page's pure white where nothing was drawn.
    """
    rgb = np.asarray(image, dtype=np.int16)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    ocean = (blue >= red + 30) & (blue >= green + 5)
    land = (green >= blue + 8) & (red >= blue)
    blank = (rgb >= 254).all(axis=-1)
    height, width = blank.shape
    tenth_y, tenth_x = max(1, height // 10), max(1, width // 10)
    edges = {
        "top": blank[:tenth_y],
        "bottom": blank[-tenth_y:],
        "left": blank[:, :tenth_x],
        "right": blank[:, -tenth_x:],
    }
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return MapStats(
        colours=len(np.unique(packed)),
        ocean=float(ocean.mean()),
        land=float(land.mean()),
        blank=float(blank.mean()),
        blank_edges={side: float(part.mean()) for side, part in edges.items()},
    )


def assert_real_map(image: Image.Image, where: str, page: Page) -> MapStats:
    stats = map_stats(image)
    message = f"{where} does not show the world map ({stats}); see {page.screenshots}"
    assert stats.colours >= MIN_COLOURS, message
    assert stats.ocean >= MIN_OCEAN, message
    assert stats.land >= MIN_LAND, message
    assert stats.blank <= MAX_BLANK, message
    assert max(stats.blank_edges.values()) <= MAX_BLANK_EDGE, message
    return stats


def assert_served(
    requests: list[tuple[str, int]], pattern: str, minimum: int, where: str
) -> list[str]:
    """At least ``minimum`` requests matching ``pattern``, all answered 200, and no
    other failed request (the browser's own /favicon.ico aside)."""
    matching = [(path, status) for path, status in requests if re.search(pattern, path)]
    failed = [
        (path, status)
        for path, status in requests
        if status != 200 and not path.startswith("/favicon.ico")
    ]
    assert len(matching) >= minimum, (
        f"{where}: expected at least {minimum} requests like {pattern}, server saw {requests}"
    )
    assert not failed, f"{where}: requests not answered with 200: {failed}"
    return [path for path, _ in matching]


# -- the tests ----------------------------------------------------------------------------

INDEX_SUMMARY = """
(() => {
  const links = Array.from(document.querySelectorAll("a")).map((a) => a.getAttribute("href"));
  const forms = Array.from(document.querySelectorAll("form")).map((form) => ({
    layer: form.querySelector("input[name=wms_layer]").value,
    srs: Array.from(form.querySelectorAll("select[name=srs] option")).map((o) => o.value),
    formats: Array.from(form.querySelectorAll("button[name=format]")).map((b) => b.value),
  }));
  const rows = Array.from(document.querySelectorAll("table.layers tr")).map(
    (tr) => Array.from(tr.children).map((cell) => cell.textContent.trim()));
  const headings = Array.from(document.querySelectorAll("h2")).map((h) => h.textContent);
  return {title: document.title, links, forms, rows, headings};
})()
"""


def test_demo_index_lists_layers_and_links(page: Page, demo_server: DemoServer) -> None:
    page.goto(demo_server.url + "/demo/")
    index = page.evaluate(INDEX_SUMMARY)

    assert index["title"] == "MapProxy Demo"
    assert {"WMS", "WMTS (RESTful)", "TMS"} <= set(index["headings"])
    forms = {form["layer"]: form for form in index["forms"]}
    assert set(forms) == {"world", "debug"}
    assert {"EPSG:4326", "EPSG:3857", "EPSG:25832"} <= set(forms["world"]["srs"])
    assert "image/png" in forms["world"]["formats"]
    assert ["world", "Natural Earth world (cached)"] in [row[:2] for row in index["rows"]]
    links = set(index["links"])
    assert {
        "?wmts_layer=world&grid=webmercator&format=png",
        "?tms_layer=world&grid=webmercator&format=png",
        "?tms_layer=world&grid=GLOBAL_GEODETIC&format=png",
        "../service?REQUEST=GetCapabilities&SERVICE=WMS",
        "../wmts/1.0.0/WMTSCapabilities.xml",
        "../tms/1.0.0/",
    } <= links, links
    # the debug layer has no cache: no WMTS/TMS viewer for it
    assert not [link for link in links if "_layer=debug" in link]
    assert page.js_errors() == []


def test_demo_index_wms_form_opens_viewer(page: Page, demo_server: DemoServer) -> None:
    page.goto(demo_server.url + "/demo/")
    page.evaluate(
        "document.querySelector('input[value=world]').form"
        ".querySelector('select[name=srs]').value = 'EPSG:25832'"
    )
    page.click_and_wait_for_load("input[value=world] ~ button[value='image/png']")
    location = urlsplit(page.evaluate("location.href"))
    assert location.path == "/demo/"
    assert parse_qs(location.query) == {
        "wms_layer": ["world"],
        "srs": ["EPSG:25832"],
        "format": ["image/png"],
    }
    assert page.evaluate("window.MAPPROXY_DEMO.srs") == "EPSG:25832"


VIEWERS = {
    "wmts": (
        "?wmts_layer=world&grid=webmercator&format=png",
        r"^/wmts/world/webmercator/\d+/\d+/\d+\.png$",
        8,
    ),
    "tms": (
        "?tms_layer=world&grid=GLOBAL_GEODETIC&format=png",
        r"^/tiles/world/GLOBAL_GEODETIC/\d+/\d+/\d+\.png\?origin=nw$",
        4,
    ),
    "wms": (
        "?wms_layer=world&srs=EPSG:25832&format=image/png",
        r"^/service\?(?=.*REQUEST=GetMap)(?=.*LAYERS=world)(?=.*SRS=EPSG:25832)",
        1,
    ),
}


@pytest.mark.parametrize("viewer", list(VIEWERS))
def test_viewer_shows_the_world_map(page: Page, demo_server: DemoServer, viewer: str) -> None:
    query, request_pattern, minimum = VIEWERS[viewer]
    offset = demo_server.log_offset()
    page.goto(demo_server.url + "/demo/" + query)
    _, image = rendered_map(page, viewer)

    assert_real_map(image, f"{viewer} viewer", page)
    assert_served(demo_server.requests_since(offset), request_pattern, minimum, viewer)
    assert page.js_errors() == []


def test_wmts_viewer_zooms_in(page: Page, demo_server: DemoServer) -> None:
    query, request_pattern, _ = VIEWERS["wmts"]
    page.goto(demo_server.url + "/demo/" + query)
    before, _ = rendered_map(page, "wmts-start")
    offset = demo_server.log_offset()
    assert page.evaluate(ZOOM_IN_BY_BUTTON) is True
    after, image = rendered_map(page, "wmts-zoomed")

    assert after["zoom"] == pytest.approx(before["zoom"] + 1)
    assert after["resolution"] == pytest.approx(before["resolution"] / 2)
    assert_real_map(image, "wmts viewer after zooming in", page)
    paths = assert_served(demo_server.requests_since(offset), request_pattern, 8, "zoom")
    levels = {int(path.split("/")[4]) for path in paths}
    start_level = round(before["zoom"])
    assert max(levels) > start_level, f"no tiles of a deeper level were loaded: {paths}"
    assert page.js_errors() == []
