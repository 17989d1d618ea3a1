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
