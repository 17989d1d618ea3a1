"""Cache tile pipeline options side by side with the reference MapProxy 7.0.0.

Each scenario runs one config on our app and on the reference, each in its own directory
in front of its own FakeUpstream, sends the same steps (requests, tile ageing, upstream
failures) and compares what is observable: status, pixel samples, the upstream requests
of every step (path, bbox, size; unordered) and the stored tiles.
"""

from __future__ import annotations

import io
import os
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fakes.fake_upstream import FakeUpstream, image_handler, status_handler

try:
    from .reference import ReferenceMissing, ReferenceServer, reference_python
    from .serving import ThreadServer, fetch
except ImportError:
    from reference import ReferenceMissing, ReferenceServer, reference_python
    from serving import ThreadServer, fetch

pytestmark = pytest.mark.integration

# A step is a URL to GET, or a callable(config_dir, upstream) changing the world.
Step = str | Callable[[Path, FakeUpstream], None]


@dataclass
class Observed:
    status: int
    samples: list[tuple[int, ...]]
    upstream: list[tuple[str, tuple[float, ...] | None, str | None, str | None]]


@pytest.fixture(scope="module")
def ref_python() -> Path:
    try:
        return reference_python()
    except ReferenceMissing as error:
        pytest.fail(str(error))


def samples(data: bytes) -> list[tuple[int, ...]]:
    try:
        image = Image.open(io.BytesIO(data)).convert("RGBA")
    except OSError:
        return []
    return [image.getpixel(xy) for xy in ((10, 10), (200, 10), (10, 200), (200, 200), (200, 160))]


def run(
    kind: str, base: Path, config: str, steps: Sequence[Step], ref_python: Path
) -> tuple[list[Observed], set[str]]:
    directory = base / kind
    directory.mkdir()
    with FakeUpstream(image_handler((255, 0, 0, 255))) as upstream:
        config_path = directory / "mapproxy.yaml"
        config_path.write_text(textwrap.dedent(config).replace("{url}", upstream.url))
        server: Any = (
            ThreadServer(config_path)
            if kind == "ours"
            else ReferenceServer(config_path, python=ref_python)
        )
        observed: list[Observed] = []
        with server:
            for step in steps:
                if not isinstance(step, str):
                    step(directory, upstream)
                    continue
                before = len(upstream.requests)
                status, _headers, body = fetch(server.url + step)
                requests = sorted(
                    (
                        path,
                        tuple(round(float(v), 1) for v in q["bbox"].split(","))
                        if "bbox" in q
                        else None,
                        q.get("width"),
                        q.get("height"),
                    )
                    for path, q in upstream.requests[before:]
                )
                observed.append(Observed(status, samples(body), requests))
    stored = {
        str(path.relative_to(directory / "cache_data"))
        for path in (directory / "cache_data").rglob("*.png")
    }
    return observed, stored


def compare(tmp_path: Path, config: str, steps: Sequence[Step], ref_python: Path) -> Any:
    ours, ours_stored = run("ours", tmp_path, config, steps, ref_python)
    ref, ref_stored = run("reference", tmp_path, config, steps, ref_python)
    urls = [step for step in steps if isinstance(step, str)]
    for url, mine, theirs in zip(urls, ours, ref, strict=True):
        assert mine.status == theirs.status, url
        assert mine.upstream == theirs.upstream, url
        assert len(mine.samples) == len(theirs.samples), url
        for a, b in zip(mine.samples, theirs.samples, strict=True):
            # rescaled images are resampled slightly differently (antialiasing)
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 4, (url, a, b)
    assert ours_stored == ref_stored
    return ours, ours_stored


META_CONFIG = """
services:
  wms:
    srs: ['EPSG:3857']
  wmts:
layers:
  - name: c
    title: c
    sources: [c]
  - name: t
    title: t
    sources: [t]
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [w]
    meta_size: [4, 4]
    meta_buffer: BUFFER
    minimize_meta_requests: true
  t:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [ts]
    meta_size: [2, 2]
    bulk_meta_tiles: true
sources:
  w:
    type: wms
    req:
      url: {url}/service
      layers: foo
  ts:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    url: {url}/tiles/%(z)s/%(x)s/%(y)s.png
"""

GETMAP = (
    "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&STYLES=&SRS=EPSG:3857"
    "&FORMAT=image/png&LAYERS={layer}&WIDTH={size}&HEIGHT={size}&BBOX={bbox}"
)
QUARTER = "0,0,10018754.171394622,10018754.171394622"


@pytest.mark.parametrize("buffer", [0, 80])
def test_minimize_and_bulk_meta_requests_match(tmp_path, ref_python, buffer):
    steps = [
        "/wmts/c/GLOBAL_WEBMERCATOR/4/1/1.png",
        GETMAP.format(layer="c", size=512, bbox=QUARTER),
        GETMAP.format(layer="c", size=300, bbox="-1000000,-1000000,1000000,1000000"),
        GETMAP.format(layer="c", size=1024, bbox="-5000000,-5000000,5000000,5000000"),
        "/wmts/t/GLOBAL_WEBMERCATOR/4/1/1.png",
        "/wmts/t/GLOBAL_WEBMERCATOR/4/0/0.png",
        GETMAP.format(layer="t", size=512, bbox=QUARTER),
    ]
    ours, _ = compare(tmp_path, META_CONFIG.replace("BUFFER", str(buffer)), steps, ref_python)
    assert [len(o.upstream) for o in ours] == [1, 1, 1, 1, 4, 0, 4]


RESCALE_CONFIG = """
services:
  wmts:
layers:
  - name: u
    title: u
    sources: [u]
  - name: d
    title: d
    sources: [d]
caches:
  u:
    grids: [GLOBAL_WEBMERCATOR]
    sources: []
    upscale_tiles: 2
    cache_rescaled_tiles: STORE
  d:
    grids: [GLOBAL_WEBMERCATOR]
    sources: []
    downscale_tiles: 2
    cache_rescaled_tiles: STORE
"""


def put_tiles(directory: Path, upstream: FakeUpstream) -> None:
    def put(cache: str, z: int, x: int, y: int, color: tuple[int, ...]) -> None:
        xs, ys = f"{x:09d}", f"{y:09d}"
        path = directory / "cache_data" / f"{cache}_EPSG3857" / f"{z:02d}"
        path = path / xs[:3] / xs[3:6] / xs[6:] / ys[:3] / ys[3:6] / f"{ys[6:]}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (256, 256), color).save(path)

    put("u", 2, 1, 1, (255, 0, 0))
    put("u", 3, 3, 3, (0, 255, 0))
    put("d", 4, 2, 2, (0, 0, 255))
    put("d", 4, 3, 2, (0, 0, 255))
    for x in range(4, 8):
        for y in range(4, 8):
            put("d", 5, x, y, (255, 255, 0))


@pytest.mark.parametrize("store", ["true", "false"])
def test_upscale_and_downscale_match(tmp_path, ref_python, store):
    steps: list[Step] = [put_tiles]
    for url in (
        "u/GLOBAL_WEBMERCATOR/2/1/1",
        "u/GLOBAL_WEBMERCATOR/3/2/2",
        "u/GLOBAL_WEBMERCATOR/4/4/4",
        "u/GLOBAL_WEBMERCATOR/5/8/8",
        "u/GLOBAL_WEBMERCATOR/4/6/6",
        "d/GLOBAL_WEBMERCATOR/3/1/1",
        "d/GLOBAL_WEBMERCATOR/2/0/0",
        "d/GLOBAL_WEBMERCATOR/4/4/4",
        "d/GLOBAL_WEBMERCATOR/1/0/0",
    ):
        steps.append(f"/wmts/{url}.png")
    compare(tmp_path, RESCALE_CONFIG.replace("STORE", store), steps, ref_python)


REFRESH_CONFIG = """
services:
  wmts:
layers:
  - name: f
    title: f
    sources: [f]
  - name: s
    title: s
    sources: [s]
  - name: m
    title: m
    sources: [m]
caches:
  f:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [w]
    meta_size: [1, 1]
    meta_buffer: 0
    refresh_before: {seconds: 30}
  s:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [w2]
    meta_size: [1, 1]
    meta_buffer: 0
    refresh_before: {seconds: 30}
  m:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [w]
    meta_size: [1, 1]
    meta_buffer: 0
    refresh_before: {seconds: 30}
    cache: {type: mbtiles, filename: m.mbtiles}
sources:
  w:
    type: wms
    req:
      url: {url}/service
      layers: foo
  w2:
    type: wms
    req:
      url: {url}/service
      layers: foo
    on_error:
      500:
        response: '#00ff00'
        authorize_stale: true
      404:
        response: '#0000ff'
"""


def age_tiles(directory: Path, upstream: FakeUpstream) -> None:
    old = time.time() - 60
    for path in (directory / "cache_data").rglob("*.png"):
        os.utime(path, (old, old))


def answer(status: int | None) -> Step:
    def change(directory: Path, upstream: FakeUpstream) -> None:
        if status is None:
            upstream.handler = image_handler((0, 0, 0, 255))
        else:
            upstream.handler = status_handler(status)

    return change


def test_refresh_before_and_stale_tiles_match(tmp_path, ref_python):
    tile = "GLOBAL_WEBMERCATOR/2/1/1.png"
    steps: list[Step] = [
        f"/wmts/f/{tile}",
        f"/wmts/f/{tile}",
        f"/wmts/s/{tile}",
        f"/wmts/m/{tile}",
        f"/wmts/m/{tile}",  # no timestamps in MBTiles: always refreshed
        age_tiles,
        answer(500),
        f"/wmts/s/{tile}",  # authorize_stale
        "/wmts/s/GLOBAL_WEBMERCATOR/2/2/2.png",  # no stale tile: on_error image
        f"/wmts/f/{tile}",  # not handled by on_error: stale tile
        answer(404),
        f"/wmts/s/{tile}",  # on_error image without authorize_stale
        answer(None),
        f"/wmts/f/{tile}",  # refreshed
        f"/wmts/f/{tile}",
    ]
    ours, _ = compare(tmp_path, REFRESH_CONFIG, steps, ref_python)
    assert [len(o.upstream) for o in ours] == [1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]
