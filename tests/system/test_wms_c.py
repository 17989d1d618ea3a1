"""WMS-C: ``tiled=true`` GetCapabilities tile sets and ``TILED=true`` GetMap of single tiles.

Expected documents, messages and headers were observed on MapProxy 7.0.0 for the same
configuration (with a debug source instead of the fake upstream).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream

M = 20037508.342789244
MERC_RES = " ".join(repr(156543.03392804097 / 2**level) for level in range(1, 20)) + " "
GEO_RES = " ".join(repr(1.40625 / 2**level) for level in range(1, 20)) + " "

CONFIG = """
globals:
  cache:
    base_dir: {base_dir}
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857', 'EPSG:25832']
    attribution:
      text: (c) attribution
layers:
  - name: grp
    title: Group
    layers:
      - name: a
        title: A
        sources: [cache_a]
      - name: b
        title: B
        sources: [cache_b]
  - name: direct
    title: Direct
    sources: [up]
  - name: multi
    title: Two caches
    sources: [cache_a, cache_b]
  - name: jpg
    title: JPEG
    sources: [cache_jpg]
caches:
  cache_a:
    grids: [GLOBAL_WEBMERCATOR, GLOBAL_GEODETIC, utm32, GLOBAL_MERCATOR]
    sources: [up]
  cache_b:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [up]
  cache_jpg:
    grids: [GLOBAL_GEODETIC, custom]
    sources: [up]
    format: image/jpeg
grids:
  utm32:
    srs: 'EPSG:25832'
    bbox: [200000, 5000000, 1000000, 6200000]
    origin: nw
    num_levels: 4
  custom:
    srs: 'EPSG:4326'
    bbox: [5, 50, 10, 55]
    res: [0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003]
    tile_size: [200, 100]
sources:
  up:
    type: wms
    req:
      url: {url}/service
      layers: base
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def client(make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path: Path) -> Client:
    return make_app(CONFIG.format(base_dir=tmp_path / "cache_data", url=upstream.url))


def capabilities(client: Client, query: str) -> Any:
    return client.get(f"/service?REQUEST=GetCapabilities&SERVICE=WMS&{query}")


def get_map(client: Client, query: str, headers: dict[str, str] | None = None) -> Any:
    base = "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&STYLES=&TILED=true&"
    return client.get(base + query, headers=headers or {})


def tile_sets(body: bytes) -> list[dict[str, str]]:
    root = etree.fromstring(body)
    result = []
    for tile_set in root.iterfind("Capability/VendorSpecificCapabilities/TileSet"):
        entry = {child.tag: child.text or "" for child in tile_set}
        bbox = tile_set.find("BoundingBox")
        assert bbox is not None
        entry["BoundingBox"] = " ".join(
            bbox.get(key, "") for key in ("SRS", "minx", "miny", "maxx", "maxy")
        )
        entry["order"] = ",".join(child.tag for child in tile_set)
        result.append(entry)
    return result


def test_tiled_capabilities_list_tile_sets(client: Client) -> None:
    response = capabilities(client, "VERSION=1.1.1&tiled=true")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/vnd.ogc.wms_xml"
    text = response.get_data(as_text=True)
    assert text.split("\n")[2:11] == [
        " [",
        " <!ELEMENT VendorSpecificCapabilities (TileSet*) >",
        " <!ELEMENT TileSet (SRS, BoundingBox?, Resolutions, Width, Height, Format, Layers*,"
        " Styles*) >",
        " <!ELEMENT Resolutions (#PCDATA) >",
        " <!ELEMENT Width (#PCDATA) >",
        " <!ELEMENT Height (#PCDATA) >",
        " <!ELEMENT Layers (#PCDATA) >",
        " <!ELEMENT Styles (#PCDATA) >",
        " ]>  <!-- end of DOCTYPE declaration -->",
    ]
    # between the Exception formats and the root layer
    assert text.index("</Exception>") < text.index("<VendorSpecificCapabilities>")
    assert text.index("</VendorSpecificCapabilities>") < text.index("<Layer>")
    sets = tile_sets(response.data)
    # the tile layers in order, one per grid SRS; `multi` (two caches) is no tile layer,
    # and the later grid of `jpg` in EPSG:4326 replaces the earlier one
    assert [(s["Layers"], s["SRS"]) for s in sets] == [
        ("a", "EPSG:3857"),
        ("a", "EPSG:4326"),
        ("a", "EPSG:25832"),
        ("a", "EPSG:900913"),
        ("b", "EPSG:3857"),
        ("jpg", "EPSG:4326"),
    ]
    assert {s["order"] for s in sets} == {
        "SRS,BoundingBox,Resolutions,Width,Height,Format,Layers,Styles"
    }
    merc, geo, utm, _, _, jpg = sets
    assert merc["BoundingBox"] == f"EPSG:3857 {-M!r} {-M!r} {M!r} {M!r}"
    # the TMS levels: the global grids leave out their first level
    assert merc["Resolutions"] == MERC_RES
    assert geo["Resolutions"] == GEO_RES
    assert geo["BoundingBox"] == "EPSG:4326 -180.0 -90.0 180.0 90.0"
    assert utm["Resolutions"] == "4687.5 2343.75 1171.875 585.9375 "
    assert utm["BoundingBox"] == "EPSG:25832 200000.0 5000000.0 1000000.0 6200000.0"
    assert (merc["Width"], merc["Height"], merc["Format"], merc["Styles"]) == (
        "256",
        "256",
        "image/png",
        "",
    )
    assert jpg == {
        "SRS": "EPSG:4326",
        "BoundingBox": "EPSG:4326 5.0 50.0 10.0 55.0",
        "Resolutions": "0.1 0.05 0.025 0.0125 0.00625 0.003 ",
        "Width": "200",
        "Height": "100",
        "Format": "image/jpeg",
        "Layers": "jpg",
        "Styles": "",
        "order": "SRS,BoundingBox,Resolutions,Width,Height,Format,Layers,Styles",
    }


def test_tiled_capabilities_110_names_global_mercator_osgeo(client: Client) -> None:
    sets = tile_sets(capabilities(client, "VERSION=1.1.0&TILED=TRUE").data)
    assert [s["SRS"] for s in sets] == [
        "OSGEO:41001",
        "EPSG:4326",
        "EPSG:25832",
        "OSGEO:41001",
        "OSGEO:41001",
        "EPSG:4326",
    ]
    assert sets[0]["BoundingBox"].startswith("OSGEO:41001 ")


@pytest.mark.parametrize(
    "query",
    [
        "VERSION=1.1.1",
        "VERSION=1.1.1&tiled=false",
        "VERSION=1.1.1&tiled=1",
        "VERSION=1.3.0&tiled=true",
        "VERSION=1.0.0&tiled=true",
    ],
)
def test_untiled_capabilities_have_no_tile_sets(client: Client, query: str) -> None:
    text = capabilities(client, query).get_data(as_text=True)
    assert "TileSet" not in text
    if "1.1.1" in query:
        assert " <!ELEMENT VendorSpecificCapabilities EMPTY>\n ]>  <!--" in text


def test_tiled_capabilities_without_tile_layers(make_app: Callable[..., Client]) -> None:
    config = "services:\n  wms:\nlayers:\n  - {name: d, title: D, sources: [dbg]}\n"
    config += "sources:\n  dbg: {type: debug}\n"
    text = capabilities(make_app(config), "VERSION=1.1.1&tiled=true").get_data(as_text=True)
    assert "<!ELEMENT TileSet" in text
    assert "<VendorSpecificCapabilities" not in text


def test_tile_with_cache_headers_and_304(client: Client, upstream: FakeUpstream) -> None:
    query = f"LAYERS=a&SRS=EPSG:3857&BBOX=0,0,{M!r},{M!r}&WIDTH=256&HEIGHT=256&FORMAT=image/png"
    response = get_map(client, query)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Cache-control"] == "public, max-age=259200, s-maxage=259200"
    etag = response.headers["ETag"]
    assert response.headers["Last-modified"]
    assert len(upstream.requests) == 1
    # the cached tile as stored, without the attribution
    again = get_map(client, query)
    assert again.data == response.data
    assert len(upstream.requests) == 1
    cached_etag = again.headers["ETag"]
    not_modified = get_map(client, query, {"If-None-Match": cached_etag})
    assert not_modified.status_code == 304
    assert not_modified.data == b""
    assert not_modified.headers["ETag"] == cached_etag
    assert etag


def test_tile_served_within_a_tenth_pixel(client: Client) -> None:
    res = 2 * M / 512  # level 1
    for shift, ok in ((1.0, True), (res * 0.06, True), (res * 0.13, False)):
        bbox = f"{shift!r},0,{M + shift!r},{M!r}"
        response = get_map(
            client, f"LAYERS=a&SRS=EPSG:3857&BBOX={bbox}&WIDTH=256&HEIGHT=256&FORMAT=image/png"
        )
        assert ("ETag" in response.headers) is ok, shift


@pytest.mark.parametrize(
    ("query", "message"),
    [
        # format first, then size, then bbox
        (
            "LAYERS=a&SRS=EPSG:3857&BBOX=0,0,{M},{M}&WIDTH=512&HEIGHT=512&FORMAT=image/jpeg",
            "Invalid request: invalid tile format, use png",
        ),
        (
            "LAYERS=a&SRS=EPSG:3857&BBOX=0,0,{M},{M}&WIDTH=512&HEIGHT=512&FORMAT=image/png",
            "Invalid request: invalid tile size (use 256x256)",
        ),
        (
            "LAYERS=jpg&SRS=EPSG:4326&BBOX=0,0,90,90&WIDTH=256&HEIGHT=256&FORMAT=image/jpeg",
            "Invalid request: invalid tile size (use 200x100)",
        ),
        (
            "LAYERS=a&SRS=EPSG:4326&BBOX=0,0,180,90&WIDTH=256&HEIGHT=256&FORMAT=image/png",
            "Request too large or invalid BBOX. (not a single tile)",
        ),
        (
            "LAYERS=a&SRS=EPSG:3857&BBOX=1,1,1000,1000&WIDTH=256&HEIGHT=256&FORMAT=image/png",
            "Request too large or invalid BBOX. (not a single tile)",
        ),
        # no grid of `b` in EPSG:4326
        (
            "LAYERS=b&SRS=EPSG:4326&BBOX=0,0,90,90&WIDTH=256&HEIGHT=256&FORMAT=image/png",
            "Request too large or invalid BBOX. (not a single tile)",
        ),
        # several layers: each cache must match a single tile
        (
            "LAYERS=a,b&SRS=EPSG:4326&BBOX=0,0,90,90&WIDTH=256&HEIGHT=256&FORMAT=image/png",
            "Request too large or invalid BBOX. (not a single tile)",
        ),
        (
            "LAYERS=grp&SRS=EPSG:3857&BBOX=0,0,{M},{H}&WIDTH=256&HEIGHT=256&FORMAT=image/png",
            "Request too large or invalid BBOX. (not a single tile)",
        ),
    ],
)
def test_tiled_errors(client: Client, query: str, message: str) -> None:
    response = get_map(client, query.format(M=repr(M), H=repr(M / 2)))
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/vnd.ogc.se_xml"
    root = etree.fromstring(response.data)
    exception = root.find("ServiceException")
    assert exception is not None
    assert exception.text == message
    assert exception.get("code") is None
    assert "ETag" not in response.headers


def test_tiled_error_130(client: Client) -> None:
    response = client.get(
        "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.3.0&STYLES=&TILED=true&LAYERS=a"
        f"&CRS=EPSG:3857&BBOX=0,0,{M!r},{M!r}&WIDTH=512&HEIGHT=512&FORMAT=image/png"
    )
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert b"Invalid request: invalid tile size (use 256x256)" in response.data


@pytest.mark.parametrize(
    "query",
    [
        # 1.3.0 in lat/lon axis order
        "VERSION=1.3.0&LAYERS=a&CRS=EPSG:4326&BBOX=0,0,90,90&FORMAT=image/png",
        "VERSION=1.1.1&LAYERS=jpg&SRS=EPSG:4326&BBOX=5,50,25,60&FORMAT=image/jpeg",
        # several layers, a group, an uncached layer: rendered as usual (no tile headers)
        "VERSION=1.1.1&LAYERS=a,b&SRS=EPSG:3857&BBOX=0,0,{M},{M}&FORMAT=image/png",
        "VERSION=1.1.1&LAYERS=grp&SRS=EPSG:3857&BBOX=0,0,{M},{M}&FORMAT=image/png",
        "VERSION=1.1.1&LAYERS=direct&SRS=EPSG:3857&BBOX=0,0,{M},{H}&FORMAT=image/png",
        "VERSION=1.1.1&LAYERS=multi&SRS=EPSG:3857&BBOX=0,0,{M},{M}&FORMAT=image/png",
    ],
)
def test_tiled_requests_served(client: Client, query: str) -> None:
    size = "WIDTH=256&HEIGHT=256" if "jpg" not in query else "WIDTH=200&HEIGHT=100"
    response = client.get(
        "/service?SERVICE=WMS&REQUEST=GetMap&STYLES=&TILED=true&"
        f"{size}&{query.format(M=repr(M), H=repr(M / 2))}"
    )
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"].startswith("image/")
    single_layer = "LAYERS=a&" in query or "LAYERS=jpg&" in query
    assert ("ETag" in response.headers) is single_layer


def test_untiled_request_gets_attribution(client: Client) -> None:
    query = f"LAYERS=a&SRS=EPSG:3857&BBOX=0,0,{M!r},{M!r}&WIDTH=256&HEIGHT=256&FORMAT=image/png"
    tiled = get_map(client, query)
    untiled = client.get(f"/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&STYLES=&{query}")
    assert "ETag" not in untiled.headers
    assert untiled.data != tiled.data
