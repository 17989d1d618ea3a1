"""Heavy modules load only for the features that need them (RSS per server process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CONFIG = """
services:
  wms:
    srs: ['EPSG:3857', 'EPSG:4326']
  wmts:
  tms:
layers:
  - {name: osm, title: OSM, sources: [osm_cache]}
caches:
  osm_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [upstream]
    cache: {type: file, directory: ./tiles}
sources:
  upstream:
    type: wms
    req: {url: "http://127.0.0.1:9/service", layers: base}
"""

SCRIPT = """
import sys
from werkzeug.test import Client
from mapproxy.wsgiapp import make_wsgi_app
client = Client(make_wsgi_app(sys.argv[1]))
client.get("/wmts/osm/GLOBAL_WEBMERCATOR/0/0/0.png")
client.get("/service?SERVICE=WMS&REQUEST=GetCapabilities")
print(" ".join(sorted(name for name in ("numpy", "shapely", "cv2") if name in sys.modules)))
"""


def test_serving_tiles_without_coverages_loads_no_numpy_shapely_or_opencv(
    tmp_path: Path,
) -> None:
    config = tmp_path / "mapproxy.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == ""


TWO_GRIDS = """
services:
  wms:
    srs: ['EPSG:3857', 'EPSG:4326', 'EPSG:25832']
  wmts:
layers:
  - {name: merc, title: Mercator, sources: [merc_cache]}
  - {name: utm, title: UTM, sources: [utm_cache]}
caches:
  merc_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [upstream]
    cache: {type: file, directory: ./merc}
  utm_cache:
    grids: [utm]
    sources: [upstream]
    cache: {type: file, directory: ./utm}
grids:
  utm:
    srs: 'EPSG:25832'
    bbox: [280000, 5240000, 920000, 6100000]
    origin: nw
sources:
  upstream:
    type: wms
    req: {url: "http://127.0.0.1:9/service", layers: base}
"""

PROJ_SCRIPT = """
import re, sys
from werkzeug.test import Client
from mapproxy.wsgiapp import make_wsgi_app
client = Client(make_wsgi_app(sys.argv[1]))
response = client.get("/wmts/merc/GLOBAL_WEBMERCATOR/0/0/0.png")
print("hit", response.status_code, "pyproj" in sys.modules)
caps = client.get("/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1").get_data(True)
root = re.search(r"<LatLonBoundingBox ([^/]*)/>", caps).group(1)
print("caps", "pyproj" in sys.modules, root)
"""


def test_serving_cached_tiles_loads_no_proj_and_the_root_extent_comes_later(
    tmp_path: Path,
) -> None:
    """Two layers in different grids: their union (the WMS root layer's extent) needs PROJ,
    which is loaded only when the capabilities ask for it."""
    from PIL import Image

    config = tmp_path / "mapproxy.yaml"
    config.write_text(textwrap.dedent(TWO_GRIDS))
    tile = tmp_path / "merc/00/000/000/000/000/000/000.png"
    tile.parent.mkdir(parents=True)
    Image.new("RGB", (256, 256), (10, 20, 30)).save(tile)
    result = subprocess.run(
        [sys.executable, "-c", PROJ_SCRIPT, str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    hit, caps = result.stdout.strip().splitlines()
    assert hit == "hit 200 False"
    assert caps.startswith("caps True ")
    # the union of the world (mercator) and the UTM grid: the world, in lon/lat
    assert 'minx="-180' in caps and 'maxx="180' in caps
