"""``bbox_srs`` entries with an explicit ``{srs, bbox}``: capabilities and GetMap clipping.

Expected values were observed on MapProxy 7.0.0 with the same configuration.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lxml import etree
from PIL import Image
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream

CONFIG = """
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857', 'EPSG:25832']
    bbox_srs:
      - srs: 'EPSG:4326'
        bbox: [5, 45, 15, 55]
      - 'EPSG:3857'
      - srs: 'EPSG:25832'
        bbox: [200000, 5000000, 800000, 6000000]
    md: {{title: t}}
layers:
  - name: cached
    title: cached
    sources: [cache]
  - name: plain
    title: plain
    sources: [up]
  - name: cov3857
    title: c
    sources: [c3857]
  - name: cov25832
    title: c
    sources: [c25832]
  - name: ext
    title: ext
    sources: [extsrc]
caches:
  cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [up]
    disable_storage: true
sources:
  up:
    type: wms
    req: {{url: '{url}/service', layers: x}}
  c3857:
    type: wms
    req: {{url: '{url}/service', layers: x, transparent: true}}
    coverage: {{bbox: [0, 5000000, 2000000, 8000000], srs: 'EPSG:3857'}}
  c25832:
    type: wms
    req: {{url: '{url}/service', layers: x, transparent: true}}
    coverage: {{bbox: [300000, 5100000, 900000, 6100000], srs: 'EPSG:25832'}}
  extsrc:
    type: wms
    req: {{url: '{url}/service', layers: x, transparent: true}}
    coverage: {{bbox: [0, 40, 20, 60], srs: 'EPSG:4326'}}
"""

M = 20037508.342789244
ROUNDTRIP_25832 = (139207.03179494292, 4992926.3088426255, 860792.9682050569, 6009717.290306829)


@pytest.fixture
def client(make_app: Callable[..., Client]) -> Iterator[Client]:
    with FakeUpstream() as upstream:
        yield make_app(CONFIG.format(url=upstream.url))


def layer_bboxes(client: Client) -> dict[str, dict[str, tuple[float, ...]]]:
    body = client.get("/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1").data
    root = etree.fromstring(body)
    result: dict[str, dict[str, tuple[float, ...]]] = {}
    for layer in root.iter("Layer"):
        name = layer.findtext("Name")
        if name is None:
            continue
        entry: dict[str, tuple[float, ...]] = {}
        ll = layer.find("LatLonBoundingBox")
        assert ll is not None
        entry["ll"] = tuple(float(ll.get(k, "")) for k in ("minx", "miny", "maxx", "maxy"))
        for bbox in layer.findall("BoundingBox"):
            values = tuple(float(bbox.get(k, "")) for k in ("minx", "miny", "maxx", "maxy"))
            entry[bbox.get("SRS", "")] = values
        result[name] = entry
    return result


def approx(values: tuple[float, ...]) -> Any:
    return pytest.approx(values, rel=1e-6, abs=1e-3)


def test_capabilities_bboxes(client: Client) -> None:
    bboxes = layer_bboxes(client)
    for name in ("cached", "plain", "cov3857", "ext"):
        assert bboxes[name]["ll"] == approx((5, 45, 15, 55))
        assert bboxes[name]["EPSG:4326"] == approx((5, 45, 15, 55))
    # a layer without extent takes the explicit bbox as is
    assert bboxes["plain"]["EPSG:25832"] == approx((200000, 5000000, 800000, 6000000))
    # with an extent: intersection in EPSG:4326, transformed back
    for name in ("cached", "cov3857", "ext"):
        assert bboxes[name]["EPSG:25832"] == approx(ROUNDTRIP_25832)
    assert bboxes["cov25832"]["ll"] == approx((5.872417939174778, 45.93692465346082, 15, 55))
    # (edge sampling of the 25832 extent differs slightly from MapProxy: ~230 m)
    assert bboxes["cov25832"]["EPSG:25832"] == pytest.approx(
        (257552.85279659217, 5087297.52453435, 855409.0148216521, 6009717.290306829), rel=1e-4
    )
    # SRS without explicit bbox: the plain extent
    assert bboxes["cached"]["EPSG:3857"] == approx((-M, -M, M, M))
    assert bboxes["cov3857"]["EPSG:3857"] == approx((0, 5000000, 2000000, 8000000))


def test_capabilities_130_axis_order(client: Client) -> None:
    body = client.get("/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0").data
    # (MapProxy prints the config's integers as "45"; this version prints "45.0")
    root = etree.fromstring(body)
    bbox = root.find(".//{http://www.opengis.net/wms}BoundingBox[@CRS='EPSG:4326']")
    assert bbox is not None
    values = tuple(float(bbox.get(k, "")) for k in ("minx", "miny", "maxx", "maxy"))
    assert values == (45, 5, 55, 15)


@pytest.mark.parametrize("layer", ["cached", "ext"])
@pytest.mark.parametrize(
    ("srs", "bbox", "painted"),
    [
        ("EPSG:4326", "4,44,16,56", (16, 16, 183, 183)),
        ("EPSG:4326", "0,40,20,60", (50, 50, 150, 150)),
        ("EPSG:4326", "-180,-90,180,90", (102, 38, 108, 50)),
        # no explicit bbox for EPSG:3857: not clipped
        ("EPSG:3857", "0,5000000,2000000,7000000", (0, 0, 200, 200)),
    ],
)
def test_get_map_clipped_to_explicit_bbox(
    client: Client, layer: str, srs: str, bbox: str, painted: tuple[int, ...]
) -> None:
    response = client.get(
        f"/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&LAYERS={layer}&STYLES="
        f"&SRS={srs}&BBOX={bbox}&WIDTH=200&HEIGHT=200&FORMAT=image/png&TRANSPARENT=true"
    )
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.data)).convert("RGBA")
    assert image.getchannel("A").getbbox() == painted
