"""A real MapServer WMS on 127.0.0.1 for integration tests.

`MapServerWMS` generates deterministic test data (a world GeoTIFF in
EPSG:4326 and a few inline vector features), writes a mapfile with the WMS
server enabled and serves it through a tiny threaded HTTP server that runs
Debian's ``mapserv`` binary as a CGI program for every request.

Install the binary with ``scripts/install-system-deps.sh``.

Layers of the mapfile (WMS names):

* ``raster``  -- the GeoTIFF (RGB, 0.5 degree pixels, world extent)
* ``vector``  -- a group of ``vector_polygons`` and ``vector_lines``
* ``testmap`` -- the root layer, i.e. everything

SRS offered: EPSG:4326 EPSG:3857 EPSG:900913 EPSG:25832.
Formats: image/png (transparent with TRANSPARENT=TRUE), image/jpeg,
image/png; mode=8bit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

SRS_LIST = ("EPSG:4326", "EPSG:3857", "EPSG:900913", "EPSG:25832")
LAYERS = ("raster", "vector")
ROOT_LAYER = "testmap"

# Raster geometry: 720 x 360 pixels of 0.5 degrees covering the world.
RASTER_WIDTH = 720
RASTER_HEIGHT = 360
RASTER_RES = 0.5

# Distinct features burnt into the raster (EPSG:4326 coordinates).
WHITE_DISK = {"center": (10.0, 50.0), "radius": 5.0, "rgb": (255, 255, 255)}
# a dark ring inside the disk (radius 2.5..3.25 deg), for detail in EPSG:25832
DISK_RING = {"radii": (2.5, 3.25), "rgb": (64, 64, 64)}
MAGENTA_BOX = {"bbox": (-80.0, 35.0, -70.0, 45.0), "rgb": (255, 0, 255)}
CYAN_TRIANGLE = {
    "points": ((120.0, -40.0), (150.0, -40.0), (135.0, -20.0)),
    "rgb": (0, 255, 255),
}
GRATICULE_STEP = 30.0  # black 1px lines every 30 degrees
GRATICULE_RGB = (0, 0, 0)
AXES_RGB = (128, 0, 0)  # equator and prime meridian

# Inline vector features (EPSG:4326).
VECTOR_POLYGONS = (
    # name, kind, ring, fill rgb
    ("triangle", "polygon", ((-120, 10), (-90, 60), (-60, 10), (-120, 10)), (255, 128, 0)),
    ("square", "polygon", ((60, -60), (90, -60), (90, -30), (60, -30), (60, -60)), (0, 160, 0)),
)
VECTOR_LINES = (("zigzag", "line", ((-170, -70), (-100, -20), (-30, -70), (40, -20)), (0, 0, 255)),)

MAPSERV_CANDIDATES = ("/usr/bin/mapserv", "/usr/lib/cgi-bin/mapserv")

INSTALL_HINT = (
    "MapServer's `mapserv` binary was not found. Run `scripts/install-system-deps.sh` "
    "(as root) to install Debian's cgi-mapserver and mapserver-bin packages, "
    "or set MAPSERV_BIN to the binary."
)


class MapServerMissing(RuntimeError):
    pass


def find_mapserv() -> str:
    """Path of the mapserv binary (env MAPSERV_BIN overrides)."""
    explicit = os.environ.get("MAPSERV_BIN")
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise MapServerMissing(f"MAPSERV_BIN={explicit} is not executable. {INSTALL_HINT}")
    found = shutil.which("mapserv")
    if found:
        return found
    for cand in MAPSERV_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    raise MapServerMissing(INSTALL_HINT)


# --------------------------------------------------------------------------
# test data


def make_raster_array() -> np.ndarray:
    """The deterministic RGB test pattern, shape (3, RASTER_HEIGHT, RASTER_WIDTH), uint8."""
    cols = np.arange(RASTER_WIDTH)
    rows = np.arange(RASTER_HEIGHT)
    lon = -180.0 + (cols + 0.5) * RASTER_RES  # pixel centres
    lat = 90.0 - (rows + 0.5) * RASTER_RES
    lon2, lat2 = np.meshgrid(lon, lat)

    red = np.round((lon2 + 180.0) / 360.0 * 255.0)
    green = np.round((lat2 + 90.0) / 180.0 * 255.0)
    checker = (np.floor((lon2 + 180.0) / 30.0) + np.floor((lat2 + 90.0) / 30.0)) % 2
    blue = np.where(checker == 0, 64.0, 192.0)
    img = np.stack([red, green, blue]).astype(np.uint8)

    def paint(mask: np.ndarray, rgb: Iterable[int]) -> None:
        for band, value in enumerate(rgb):
            img[band][mask] = value

    # graticule: the pixel column/row whose left/top edge lies on a multiple of 30 deg
    col_edges = -180.0 + cols * RASTER_RES
    row_edges = 90.0 - rows * RASTER_RES
    grat_cols = np.isclose(np.mod(col_edges, GRATICULE_STEP), 0.0)
    grat_rows = np.isclose(np.mod(row_edges, GRATICULE_STEP), 0.0)
    paint(grat_cols[np.newaxis, :] | grat_rows[:, np.newaxis], GRATICULE_RGB)
    axes_cols = np.isclose(col_edges, 0.0)
    axes_rows = np.isclose(row_edges, 0.0)
    paint(axes_cols[np.newaxis, :] | axes_rows[:, np.newaxis], AXES_RGB)

    cx, cy = WHITE_DISK["center"]
    dist2 = (lon2 - cx) ** 2 + (lat2 - cy) ** 2
    paint(dist2 <= WHITE_DISK["radius"] ** 2, WHITE_DISK["rgb"])
    r_in, r_out = DISK_RING["radii"]
    paint((dist2 >= r_in**2) & (dist2 <= r_out**2), DISK_RING["rgb"])

    minx, miny, maxx, maxy = MAGENTA_BOX["bbox"]
    paint((lon2 >= minx) & (lon2 <= maxx) & (lat2 >= miny) & (lat2 <= maxy), MAGENTA_BOX["rgb"])

    (ax, ay), (bx, by), (tx, ty) = CYAN_TRIANGLE["points"]

    def side(px, py, qx, qy):
        return (qx - px) * (lat2 - py) - (qy - py) * (lon2 - px)

    s1, s2, s3 = side(ax, ay, bx, by), side(bx, by, tx, ty), side(tx, ty, ax, ay)
    inside = ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))
    paint(inside, CYAN_TRIANGLE["rgb"])
    return img


def raster_rgb_at(lon: float, lat: float, array: np.ndarray | None = None) -> tuple[int, int, int]:
    """RGB of the test raster's pixel containing (lon, lat) in EPSG:4326."""
    if array is None:
        array = make_raster_array()
    col = min(int((lon + 180.0) / RASTER_RES), RASTER_WIDTH - 1)
    row = min(int((90.0 - lat) / RASTER_RES), RASTER_HEIGHT - 1)
    return tuple(int(v) for v in array[:, row, col])  # type: ignore[return-value]


def write_raster(path: Path) -> np.ndarray:
    import rasterio
    from rasterio.transform import Affine

    data = make_raster_array()
    profile = {
        "driver": "GTiff",
        "width": RASTER_WIDTH,
        "height": RASTER_HEIGHT,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": Affine(RASTER_RES, 0.0, -180.0, 0.0, -RASTER_RES, 90.0),
        "photometric": "RGB",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


def _points(coords: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{x:g} {y:g}" for x, y in coords)


def _rgb(rgb: Iterable[int]) -> str:
    return " ".join(str(v) for v in rgb)


def _feature_block(name: str, kind: str, coords) -> str:
    return (
        "      FEATURE\n"
        f"        POINTS {_points(coords)} END\n"
        f'        ITEMS "{name};{kind}"\n'
        "      END\n"
    )


def _classes(features) -> str:
    out = []
    for name, _kind, _coords, rgb in features:
        out.append(
            "      CLASS\n"
            f'        NAME "{name}"\n'
            f'        EXPRESSION ("[name]" = "{name}")\n'
            "        STYLE\n"
            f"          COLOR {_rgb(rgb)}\n"
            "          OUTLINECOLOR 0 0 0\n"
            "          WIDTH 2\n"
            "        END\n"
            "      END\n"
        )
    return "".join(out)


def render_mapfile(raster_path: Path, online_resource: str, data_dir: Path) -> str:
    srs = " ".join(SRS_LIST)
    polygons = "".join(_feature_block(n, k, c) for n, k, c, _ in VECTOR_POLYGONS)
    lines = "".join(_feature_block(n, k, c) for n, k, c, _ in VECTOR_LINES)
    return f"""MAP
  NAME "{ROOT_LAYER}"
  STATUS ON
  EXTENT -180 -90 180 90
  SIZE 400 200
  UNITS DD
  IMAGECOLOR 255 255 255
  SHAPEPATH "{data_dir}"
  PROJECTION
    "init=epsg:4326"
  END

  OUTPUTFORMAT
    NAME "png"
    DRIVER AGG/PNG
    MIMETYPE "image/png"
    IMAGEMODE RGB
    EXTENSION "png"
    TRANSPARENT OFF
  END
  OUTPUTFORMAT
    NAME "png8"
    DRIVER AGG/PNG8
    MIMETYPE "image/png; mode=8bit"
    IMAGEMODE RGB
    EXTENSION "png"
    FORMATOPTION "QUANTIZE_FORCE=on"
    FORMATOPTION "QUANTIZE_COLORS=256"
  END
  OUTPUTFORMAT
    NAME "jpeg"
    DRIVER AGG/JPEG
    MIMETYPE "image/jpeg"
    IMAGEMODE RGB
    EXTENSION "jpg"
    FORMATOPTION "QUALITY=90"
  END
  IMAGETYPE "png"

  WEB
    METADATA
      "wms_title" "MapServer test WMS"
      "wms_abstract" "Deterministic test data for integration tests"
      "wms_onlineresource" "{online_resource}"
      "wms_srs" "{srs}"
      "wms_enable_request" "*"
      "wms_getmap_formatlist" "image/png,image/jpeg,image/png; mode=8bit"
      "wms_feature_info_mime_type" "text/html"
    END
  END

  LAYER
    NAME "raster"
    TYPE RASTER
    STATUS ON
    DATA "{raster_path}"
    PROJECTION
      "init=epsg:4326"
    END
    METADATA
      "wms_title" "Raster test pattern"
      "wms_srs" "{srs}"
      "wms_include_items" "all"
      "gml_include_items" "all"
    END
    TEMPLATE "query"
    PROCESSING "RESAMPLE=NEAREST"
  END

  LAYER
    NAME "vector_polygons"
    GROUP "vector"
    TYPE POLYGON
    STATUS ON
    PROJECTION
      "init=epsg:4326"
    END
    PROCESSING "ITEMS=name,kind"
    METADATA
      "wms_title" "Vector polygons"
      "wms_group_title" "Vector features"
      "wms_srs" "{srs}"
      "wms_include_items" "all"
      "gml_include_items" "all"
    END
    TEMPLATE "query"
{polygons}{_classes(VECTOR_POLYGONS)}  END

  LAYER
    NAME "vector_lines"
    GROUP "vector"
    TYPE LINE
    STATUS ON
    PROJECTION
      "init=epsg:4326"
    END
    PROCESSING "ITEMS=name,kind"
    METADATA
      "wms_title" "Vector lines"
      "wms_group_title" "Vector features"
      "wms_srs" "{srs}"
      "wms_include_items" "all"
      "gml_include_items" "all"
    END
    TEMPLATE "query"
{lines}{_classes(VECTOR_LINES)}  END
END
"""


MAPSERVER_CONFIG = """CONFIG
  ENV
    MS_ERRORFILE "stderr"
  END
END
"""


# --------------------------------------------------------------------------
# CGI


class Query(dict):
    """Query parameters of one request; lookups also match keys case-insensitively."""

    def _find(self, key: str) -> str | None:
        if dict.__contains__(self, key):
            return key
        lower = key.lower()
        for k in self:
            if k.lower() == lower:
                return k
        return None

    def __getitem__(self, key: str) -> str:
        found = self._find(key)
        if found is None:
            raise KeyError(key)
        return dict.__getitem__(self, found)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._find(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        found = self._find(key)
        return default if found is None else dict.__getitem__(self, found)


def parse_query(qs: str) -> Query:
    return Query(urllib.parse.parse_qsl(qs, keep_blank_values=True))


def parse_cgi_output(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Split CGI output into (status, headers, body)."""
    cut_crlf = raw.find(b"\r\n\r\n")
    cut_lf = raw.find(b"\n\n")
    cuts = [(c, 4) for c in (cut_crlf,) if c >= 0] + [(c, 2) for c in (cut_lf,) if c >= 0]
    if not cuts:
        return 502, {"Content-Type": "text/plain"}, b"malformed CGI output: " + raw[:500]
    pos, sep_len = min(cuts)
    head, body = raw[:pos], raw[pos + sep_len :]
    status = 200
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        if not line.strip() or ":" not in line:
            continue
        name, value = line.split(":", 1)
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers[name] = value
    return status, headers, body


class MapServerWMS:
    """MapServer WMS served over HTTP on 127.0.0.1 (see module docstring).

    Attributes: url, mapfile, data_dir, raster_path, raster (numpy array),
    requests (list of `Query` dicts, one per HTTP request received).
    """

    def __init__(self, workdir: Path | str, mapserv: str | None = None, timeout: float = 60.0):
        self.workdir = Path(workdir)
        self.mapserv = mapserv or find_mapserv()
        self.timeout = timeout
        self.data_dir = self.workdir / "data"
        self.raster_path = self.data_dir / "world.tif"
        self.mapfile = self.workdir / "test.map"
        self.config_file = self.workdir / "mapserver.conf"
        self.raster: np.ndarray | None = None
        self.requests: list[Query] = []
        # (method, path with query, body) of each request, parallel to .requests
        self.raw_requests: list[tuple[str, str, bytes]] = []
        # Test hooks: seconds to sleep before answering, and a callable
        # (query) -> (status, content_type, body) | None to answer instead of mapserv.
        self.delay: float = 0.0
        self.override: Callable[[Query], tuple[int, str, bytes] | None] | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> MapServerWMS:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.raster = write_raster(self.raster_path)
        self.config_file.write_text(MAPSERVER_CONFIG)

        server = ThreadingHTTPServer((self.host, 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self.mapfile.write_text(render_mapfile(self.raster_path, self.url + "?", self.data_dir))

        self._thread = threading.Thread(
            target=server.serve_forever, name="mapserver-wms", kwargs={"poll_interval": 0.1}
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> MapServerWMS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request log ---------------------------------------------------------

    def reset(self) -> None:
        """Forget logged requests and clear the delay/override hooks."""
        with self._lock:
            self.requests.clear()
            self.raw_requests.clear()
        self.delay = 0.0
        self.override = None

    def _record(self, method: str, path: str, query: Query, body: bytes) -> None:
        with self._lock:
            self.requests.append(query)
            self.raw_requests.append((method, path, body))

    def count(self, **match: str) -> int:
        """Number of logged requests whose params equal `match` (keys case-insensitive,
        values compared case-insensitively), e.g. ``count(request="GetMap")``."""
        with self._lock:
            reqs = list(self.requests)
        return sum(
            1
            for q in reqs
            if all(str(q.get(k, "")).lower() == str(v).lower() for k, v in match.items())
        )

    # -- running mapserv -----------------------------------------------------

    def cgi_env(
        self,
        method: str,
        query_string: str,
        content_type: str | None = None,
        content_length: int | None = None,
    ) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "MAPSERVER_CONFIG_FILE": str(self.config_file),
            "MS_MAPFILE": str(self.mapfile),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": "mapserver-test-fixture",
            "SERVER_NAME": self.host,
            "SERVER_PORT": str(self.port),
            "HTTP_HOST": f"{self.host}:{self.port}",
            "SCRIPT_NAME": "/",
            "PATH_INFO": "",
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": method,
            "QUERY_STRING": query_string,
        }
        for name in ("PROJ_DATA", "PROJ_LIB", "GDAL_DATA"):
            if name in os.environ:
                env[name] = os.environ[name]
        if content_type is not None:
            env["CONTENT_TYPE"] = content_type
        if content_length is not None:
            env["CONTENT_LENGTH"] = str(content_length)
        return env

    def run_cgi(
        self,
        method: str = "GET",
        query_string: str = "",
        body: bytes = b"",
        content_type: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Run mapserv once as CGI; returns (status, headers, body). Not logged."""
        env = self.cgi_env(
            method,
            query_string,
            content_type=content_type if method == "POST" else None,
            content_length=len(body) if method == "POST" else None,
        )
        try:
            proc = subprocess.run(
                [self.mapserv],
                input=body,
                env=env,
                cwd=str(self.workdir),
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return 504, {"Content-Type": "text/plain"}, b"mapserv timed out"
        if not proc.stdout:
            msg = b"mapserv failed (exit %d): " % proc.returncode + proc.stderr[:2000]
            return 502, {"Content-Type": "text/plain"}, msg
        return parse_cgi_output(proc.stdout)

    # -- helpers for tests ---------------------------------------------------

    def raster_rgb(self, lon: float, lat: float) -> tuple[int, int, int]:
        """Expected RGB of the test raster at (lon, lat), EPSG:4326."""
        return raster_rgb_at(lon, lat, self.raster)

    def getmap(self, params: Mapping[str, Any] | None = None, **kw: Any) -> bytes:
        """Render a GetMap directly with mapserv (bypassing HTTP, not logged).

        Defaults: WMS 1.1.1, LAYERS=raster, SRS=EPSG:4326, world BBOX,
        256x256, image/png. Raises RuntimeError unless an image comes back.
        """
        query: dict[str, str] = {
            "SERVICE": "WMS",
            "VERSION": "1.1.1",
            "REQUEST": "GetMap",
            "LAYERS": "raster",
            "STYLES": "",
            "SRS": "EPSG:4326",
            "BBOX": "-180,-90,180,90",
            "WIDTH": "256",
            "HEIGHT": "256",
            "FORMAT": "image/png",
        }
        given = {**(params or {}), **kw}
        upper = {k.upper(): k for k in query}
        for key, value in given.items():
            if isinstance(value, list | tuple):
                value = ",".join(str(v) for v in value)
            query.pop(upper.get(key.upper(), key), None)
            query[key] = str(value)
        if query.get("VERSION") == "1.3.0" and "SRS" in query and "CRS" not in query:
            query["CRS"] = query.pop("SRS")
        status, headers, body = self.run_cgi("GET", urllib.parse.urlencode(query))
        ctype = headers.get("Content-Type", "")
        if status != 200 or not ctype.startswith("image/"):
            raise RuntimeError(f"MapServer GetMap failed ({status}, {ctype}): {body[:1000]!r}")
        return body

    def get(self, params: Mapping[str, Any] | str, timeout: float = 60.0) -> tuple[int, str, bytes]:
        """GET through the HTTP server (logged); returns (status, content_type, body)."""
        qs = params if isinstance(params, str) else urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(self.url + "?" + qs, timeout=timeout) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read()


def _make_handler(wms: MapServerWMS) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "MapServerTestFixture/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self, method: str) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            body = b""
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            query = parse_query(parsed.query)
            ctype_in = self.headers.get("Content-Type")
            if (
                method == "POST"
                and ctype_in
                and ctype_in.startswith("application/x-www-form-urlencoded")
            ):
                query.update(parse_query(body.decode("latin-1")))
            wms._record(method, self.path, query, body)

            if wms.delay:
                time.sleep(wms.delay)
            answer = wms.override(query) if wms.override is not None else None
            if answer is not None:
                status, ctype = answer[0], answer[1]
                headers = {"Content-Type": ctype}
                out = answer[2]
            else:
                status, headers, out = wms.run_cgi(
                    "GET" if method == "HEAD" else method,
                    parsed.query,
                    body=body,
                    content_type=ctype_in,
                )
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(out)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_HEAD(self) -> None:
            self._handle("HEAD")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler
