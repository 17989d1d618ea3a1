"""A cache coverage (``cache.coverage``) limits the advertised extent of its tile layers."""

from __future__ import annotations

from lxml import etree

CONFIG = """
services:
  tms:
  wmts:
layers:
  - name: cov
    title: Cached with coverage
    sources: [c]
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    cache:
      type: file
      coverage:
        bbox: [5, 45, 15, 55]
        srs: 'EPSG:4326'
sources:
  dbg:
    type: debug
"""


def test_tms_tilemap_bbox_is_the_cache_coverage(make_app) -> None:  # type: ignore[no-untyped-def]
    client = make_app(CONFIG)
    response = client.get("/tms/1.0.0/cov/EPSG3857")
    assert response.status_code == 200
    doc = etree.fromstring(response.data)
    box = doc.find("BoundingBox")
    minx, miny = float(box.get("minx")), float(box.get("miny"))
    maxx, maxy = float(box.get("maxx")), float(box.get("maxy"))
    # 5..15 E, 45..55 N in web mercator
    assert round(minx) == 556597
    assert round(maxx) == 1669792
    assert 5_620_000 < miny < 5_630_000
    assert 7_360_000 < maxy < 7_365_000


def test_wmts_wgs84_bbox_is_the_cache_coverage(make_app) -> None:  # type: ignore[no-untyped-def]
    client = make_app(CONFIG)
    response = client.get("/wmts/1.0.0/WMTSCapabilities.xml")
    ns = {"ows": "http://www.opengis.net/ows/1.1", "w": "http://www.opengis.net/wmts/1.0"}
    doc = etree.fromstring(response.data)
    lower = doc.findtext(".//w:Layer/ows:WGS84BoundingBox/ows:LowerCorner", namespaces=ns)
    upper = doc.findtext(".//w:Layer/ows:WGS84BoundingBox/ows:UpperCorner", namespaces=ns)
    assert [round(float(v), 6) for v in lower.split()] == [5, 45]
    assert [round(float(v), 6) for v in upper.split()] == [15, 55]
