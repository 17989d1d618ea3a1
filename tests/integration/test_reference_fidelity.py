"""Small fidelity cases side by side with the reference MapProxy 7.0.0.

Each case runs one config on our app and on the reference, each in its own directory in
front of its own FakeUpstream, and compares the upstream requests, stored tiles or pixels.
Skipped when the reference venv is missing.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fakes.fake_upstream import FakeUpstream, image_handler

try:
    from .reference import ReferenceMissing, ReferenceServer, reference_python
    from .serving import ThreadServer, fetch
except ImportError:
    from reference import ReferenceMissing, ReferenceServer, reference_python
    from serving import ThreadServer, fetch

pytestmark = pytest.mark.integration

E = 20037508.342789244
RES_5 = 2 * E / 256 / 32


@pytest.fixture(scope="module")
def ref_python() -> Path:
    try:
        return reference_python()
    except ReferenceMissing as error:
        pytest.skip(str(error))


def getmap(
    layer: str, bbox: tuple[float, ...], size: tuple[int, int], srs: str = "EPSG:3857"
) -> str:
    return (
        f"/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&STYLES=&LAYERS={layer}"
        f"&SRS={srs}&FORMAT=image/png&WIDTH={size[0]}&HEIGHT={size[1]}"
        f"&BBOX={','.join(repr(v) for v in bbox)}"
    )


def run(
    kind: str, base: Path, config: str, urls: list[str], ref_python: Path, color: tuple[int, ...]
) -> Any:
    """Per URL: status, upstream requests (sorted params), body; and the stored files."""
    directory = base / kind
    directory.mkdir()
    with FakeUpstream(image_handler(color)) as upstream:
        config_path = directory / "mapproxy.yaml"
        config_path.write_text(textwrap.dedent(config).replace("{url}", upstream.url))
        server: Any = (
            ThreadServer(config_path)
            if kind == "ours"
            else ReferenceServer(config_path, python=ref_python)
        )
        observed = []
        with server:
            for url in urls:
                before = len(upstream.requests)
                status, _headers, body = fetch(server.url + url)
                requests = sorted(
                    (q["bbox"], q["width"], q["height"], q["srs"])
                    for _path, q in upstream.requests[before:]
                )
                observed.append((status, requests, body))
    root = directory / "cache_data"
    stored = sorted(str(p.relative_to(root)) for p in root.rglob("*.*")) if root.exists() else []
    return observed, stored


def both(
    tmp_path: Path,
    config: str,
    urls: list[str],
    ref_python: Path,
    color: tuple[int, ...] = (255, 0, 0, 255),
) -> tuple[Any, Any]:
    return (
        run("ours", tmp_path, config, urls, ref_python, color),
        run("reference", tmp_path, config, urls, ref_python, color),
    )


CACHE_CONFIG = """
services:
  wms:
    srs: ['EPSG:3857', 'EPSG:4326']
  tms:
layers:
  - name: c
    title: c
    sources: [c]
grids:
  fits:
    srs: 'EPSG:3857'
    bbox: [-20037508.342789244, -20037508.342789244, 20037508.342789244, 20037508.342789244]
    origin: nw
    res: [100000, 50000, 25000, 12500, 6250, 3125, 1562.5]
caches:
  c:
    grids: [GRIDS]
    sources: [w]
    meta_size: [1, 1]
    meta_buffer: 0
    image: {colors: 0}
WATERMARK
sources:
  w:
    type: wms
    supported_srs: ['EPSG:3857']
    req:
      url: {url}/service
      layers: foo
      transparent: true
globals:
  cache:
    base_dir: ./cache_data
"""


def cache_config(grids: str = "GLOBAL_WEBMERCATOR", watermark: str = "") -> str:
    return CACHE_CONFIG.replace("GRIDS", grids).replace("WATERMARK", watermark)


def test_sub_pixel_overlap_needs_no_extra_tile(tmp_path, ref_python):
    urls = []
    for row, overlap_px in enumerate((0.03, 0.09, 0.2)):
        for side in range(4):
            # a fresh tile each time (three tiles apart): nothing is cached yet
            x0, y0 = -E + (1 + 3 * side) * 256 * RES_5, (-12 + 3 * row) * 256 * RES_5
            bbox = [x0, y0, x0 + 256 * RES_5, y0 + 256 * RES_5]
            bbox[side] += (-1 if side < 2 else 1) * overlap_px * RES_5
            urls.append(getmap("c", tuple(bbox), (256, 256)))
    (ours, ours_tiles), (ref, ref_tiles) = both(tmp_path, cache_config(), urls, ref_python)
    assert [len(o[1]) for o in ours] == [len(r[1]) for r in ref] == [1] * 8 + [2] * 4
    assert ours_tiles == ref_tiles


def test_last_grid_of_the_request_srs_serves_wms(tmp_path, ref_python):
    # "fits" matches the request resolution (1562.5) exactly; the last grid still wins
    urls = [
        getmap("c", (1e6, 1e6, 1.4e6, 1.4e6), (256, 256)),
        getmap("c", (-30.0, -30.0, -26.4, -26.4), (256, 256), srs="EPSG:4326"),
    ]
    config = cache_config("fits, GLOBAL_WEBMERCATOR")
    (ours, ours_tiles), (ref, ref_tiles) = both(tmp_path, config, urls, ref_python)
    assert [len(o[1]) for o in ours] == [len(r[1]) for r in ref] == [4, 6]
    for mine, theirs in zip(ours, ref, strict=True):
        for a, b in zip(mine[1], theirs[1], strict=True):
            assert [float(v) for v in a[0].split(",")] == pytest.approx(
                [float(v) for v in b[0].split(",")], abs=1e-3
            )
    assert ours_tiles == ref_tiles
    assert all(tile.startswith("c_EPSG3857/07/") for tile in ours_tiles)


DIRECT_CONFIG = """
services:
  wms:
    srs: ['EPSG:3857', 'EPSG:4326']
layers:
  - name: d
    title: d
    sources: [w]
sources:
  w:
    type: wms
    supported_srs: ['EPSG:3857']
    req:
      url: {url}/service
      layers: foo
"""


def test_reprojected_source_request_size(tmp_path, ref_python):
    urls = [
        getmap("d", (20.0, 0.0, 20.0 + 11.137, 11.137), (256, 256), srs="EPSG:4326"),
        getmap("d", (20.0, 50.0, 30.0, 52.0), (300, 200), srs="EPSG:4326"),
        getmap("d", (5.0, 47.0, 15.0, 55.0), (1000, 700), srs="EPSG:4326"),
    ]
    (ours, _), (ref, _) = both(tmp_path, DIRECT_CONFIG, urls, ref_python)
    assert [o[1] for o in ours] == [r[1] for r in ref]
    assert [o[1][0][1:3] for o in ours] == [("256", "258"), ("629", "200"), ("1000", "1275")]


WATERMARK = """    watermark: {text: 'MapProxy Test', opacity: 200, color: '#000000'}"""


def test_watermark_on_half_transparent_tile(tmp_path, ref_python):
    urls = ["/tms/1.0.0/c/EPSG3857/3/2/3.png"]
    config = cache_config(watermark=WATERMARK)
    (ours, _), (ref, _) = both(tmp_path, config, urls, ref_python, color=(0, 238, 0, 128))
    mine = Image.open(io.BytesIO(ours[0][2])).convert("RGBA")
    theirs = Image.open(io.BytesIO(ref[0][2])).convert("RGBA")
    assert mine.tobytes() == theirs.tobytes()
    assert (0, 51, 0, 184) in {color for _count, color in mine.getcolors(65536)}
