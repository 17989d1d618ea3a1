"""GetFeatureInfo and GetLegendGraphic through our WMS in front of the real MapServer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pyproj import Transformer
from werkzeug.test import Client

CONFIG = """
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857']
layers:
  - {name: direct, title: Direct, sources: [ms]}
  - {name: cached, title: Cached, sources: [ms_cache]}
caches:
  ms_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [ms]
sources:
  ms:
    type: wms
    supported_srs: ['EPSG:4326']
    wms_opts: {featureinfo: true, legendgraphic: true}
    req: {url: '{url}', layers: vector}
"""

TO_MERC = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)


def gfi(layer: str, lon: float, lat: float, info_format: str) -> str:
    x, y = TO_MERC.transform(lon, lat)
    bbox = f"{x - 500000},{y - 500000},{x + 500000},{y + 500000}"
    return (
        "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetFeatureInfo&STYLES=&FORMAT=image/png"
        f"&SRS=EPSG:3857&BBOX={bbox}&WIDTH=100&HEIGHT=100&X=50&Y=50&LAYERS={layer}"
        f"&QUERY_LAYERS={layer}&INFO_FORMAT={info_format}"
    )


@pytest.fixture
def client(make_app: Callable[..., Client], mapserver: Any) -> Client:
    return make_app(CONFIG.replace("{url}", mapserver.url))


@pytest.mark.parametrize("layer", ["direct", "cached"])
@pytest.mark.parametrize(
    ("info_format", "marker"),
    [
        ("text/plain", b"triangle"),
        ("application/vnd.ogc.gml", b"triangle"),
    ],
)
def test_featureinfo_finds_the_feature(
    client: Client, mapserver: Any, layer: str, info_format: str, marker: bytes
) -> None:
    resp = client.get(gfi(layer, -90.0, 30.0, info_format))
    assert resp.status_code == 200, resp.data
    assert resp.headers["Content-Type"].startswith(info_format)
    assert marker in resp.data
    # MapServer asked directly for the same point in its own SRS finds the same feature
    status, _ctype, body = mapserver.get(
        {
            "SERVICE": "WMS",
            "VERSION": "1.1.1",
            "REQUEST": "GetFeatureInfo",
            "LAYERS": "vector",
            "QUERY_LAYERS": "vector",
            "STYLES": "",
            "SRS": "EPSG:4326",
            "BBOX": "-95,25,-85,35",
            "WIDTH": "100",
            "HEIGHT": "100",
            "X": "50",
            "Y": "50",
            "INFO_FORMAT": info_format,
            "FORMAT": "image/png",
        }
    )
    assert status == 200
    assert marker in body


def test_featureinfo_misses_outside_features(client: Client) -> None:
    resp = client.get(gfi("direct", 0.0, 0.0, "text/plain"))
    assert resp.status_code == 200
    assert b"triangle" not in resp.data and b"square" not in resp.data


def test_legend_from_mapserver(client: Client) -> None:
    resp = client.get(
        "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetLegendGraphic&LAYER=direct"
        "&FORMAT=image/png&SLD_VERSION=1.1.0"
    )
    assert resp.status_code == 200, resp.data
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.data.startswith(b"\x89PNG")
