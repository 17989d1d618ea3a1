"""Layer dimensions through the whole app: capabilities, forwarded parameters, errors.

Expected values were taken from MapProxy 7.0.0 run as a black box with the same config.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream

CONFIG = """
services:
  wms:
    md: {title: T}
    versions: ['1.1.1', '1.3.0']
  wmts:
    restful: true
    kvp: true
    restful_template: >-
      /{Layer}/{TileMatrixSet}/{Time}/{Elevation}/{TileMatrix}/{TileCol}/{TileRow}.{Format}
  tms:
layers:
  - name: direct
    title: Direct
    sources: [w]
    dimensions:
      time:
        values: ['2020-01-01T00:00:00Z', '2020-01-02T00:00:00Z']
      elevation:
        values: [0, 1000, 3000]
        default: 1000
  - name: cached
    title: Cached
    sources: [c]
    dimensions:
      Time:
        values: ['2020-01-01', '2020-01-02']
        default: '2020-01-01'
      elevation:
        values: ['0', '500']
  - name: ranged
    title: Ranged
    sources: [plain]
    dimensions:
      time:
        values: ['2020-01-01T00:00:00Z/2020-01-01T03:00:00Z/PT1H']
      dim_band:
        values: ['1/5']
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [w]
    disable_storage: true
sources:
  w:
    type: wms
    forward_req_params: ['foo', 'time']
    req: {url: '{url}/svc', layers: l1}
  plain:
    type: wms
    req: {url: '{url}/plain', layers: l2}
"""

GETMAP = (
    "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&SRS=EPSG:4326&BBOX=0,0,10,10"
    "&WIDTH=100&HEIGHT=100&STYLES=&FORMAT=image/png"
)
KVP_TILE = (
    "/service?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=cached"
    "&TILEMATRIXSET=GLOBAL_WEBMERCATOR&TILEMATRIX=1&TILEROW=0&TILECOL=0&FORMAT=image/png&STYLE="
)
WMTS_NS = "{http://www.opengis.net/wmts/1.0}"
OWS_NS = "{http://www.opengis.net/ows/1.1}"
_STANDARD = {"bbox", "width", "height", "srs", "format", "request", "version", "service"}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def client(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(CONFIG.replace("{url}", upstream.url))


def extra_params(upstream: FakeUpstream) -> list[tuple[str, dict[str, str]]]:
    """Each upstream request's path and its parameters beyond the standard GetMap ones."""
    return [
        (path, {k: v for k, v in query.items() if k not in _STANDARD | {"layers", "styles"}})
        for path, query in upstream.requests
    ]


def test_wms_capabilities_dimensions(client: Client) -> None:
    for version in ("1.1.1", "1.3.0"):
        body = client.get(
            f"/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION={version}"
        ).get_data(as_text=True)
        assert (
            '<Dimension name="time" default="2020-01-02T00:00:00Z" nearestValue="0"'
            ' units="ISO8601" >2020-01-01T00:00:00Z,2020-01-02T00:00:00Z</Dimension>'
        ) in body
        assert '<Dimension name="elevation" default="1000" nearestValue="0" >0,1000,3000<' in body
        assert (
            '<Dimension name="time" default="2020-01-01" nearestValue="0" units="ISO8601" >'
            "2020-01-01,2020-01-02</Dimension>"
        ) in body
        assert '<Dimension name="elevation" default="500" nearestValue="0" >0,500<' in body
        assert (
            '<Dimension name="time" default="2020-01-01T03:00:00Z" nearestValue="0"'
            ' units="ISO8601" >2020-01-01T00:00:00Z,2020-01-01T01:00:00Z,'
            "2020-01-01T02:00:00Z,2020-01-01T03:00:00Z</Dimension>"
        ) in body
        assert '<Dimension name="dim_band" default="5" nearestValue="0" >1,5</Dimension>' in body
        assert "Extent" not in body


def test_wms_forwards_only_forward_req_params(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get(GETMAP + "&LAYERS=direct&TIME=2020-01-01T00:00:00Z&ELEVATION=3000&FOO=bar")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "image/png"
    assert extra_params(upstream) == [("/svc", {"time": "2020-01-01T00:00:00Z", "foo": "bar"})]


def test_wms_does_not_validate_or_default_dimensions(
    client: Client, upstream: FakeUpstream
) -> None:
    # MapProxy 7.0.0 passes any value on and sends no defaults.
    assert client.get(GETMAP + "&LAYERS=direct&TIME=2021").status_code == 200
    assert client.get(GETMAP + "&LAYERS=direct").status_code == 200
    assert client.get(GETMAP + "&LAYERS=ranged&DIM_BAND=3&TIME=x").status_code == 200
    assert extra_params(upstream) == [("/svc", {"time": "2021"}), ("/svc", {}), ("/plain", {})]


def test_wms_cache_without_storage_gets_dimensions(client: Client, upstream: FakeUpstream) -> None:
    url = GETMAP.replace("EPSG:4326", "EPSG:3857").replace("0,0,10,10", "0,0,10000,10000")
    assert client.get(url + "&LAYERS=cached&TIME=2020-01-02&ELEVATION=0").status_code == 200
    assert extra_params(upstream) == [("/svc", {"time": "2020-01-02"})]
    (query,) = [q for _, q in upstream.requests]
    assert query["srs"] == "EPSG:3857"


def test_wmts_capabilities_dimensions(client: Client) -> None:
    for url in (
        "/wmts/1.0.0/WMTSCapabilities.xml",
        "/service?SERVICE=WMTS&REQUEST=GetCapabilities",
    ):
        resp = client.get(url)
        assert resp.status_code == 200
        root = ET.fromstring(resp.data)
        layers = root.findall(f"{WMTS_NS}Contents/{WMTS_NS}Layer")
        (layer,) = [lyr for lyr in layers if lyr.findtext(f"{OWS_NS}Identifier") == "cached"]
        dims = [
            (
                dim.findtext(f"{OWS_NS}Identifier"),
                dim.findtext(f"{WMTS_NS}Default"),
                [v.text for v in dim.findall(f"{WMTS_NS}Value")],
            )
            for dim in layer.findall(f"{WMTS_NS}Dimension")
        ]
        # RESTful: identifiers spelled as in the template; KVP (MapProxy 7.0.0 fails
        # with an internal error there): the dimension names.
        rest = url.startswith("/wmts")
        assert dims == [
            ("Time" if rest else "time", "2020-01-01", ["2020-01-01", "2020-01-02"]),
            ("Elevation" if rest else "elevation", "500", ["0", "500"]),
        ]
        children = [child.tag.split("}")[1] for child in layer]
        assert children.index("Format") < children.index("Dimension")
        assert children.index("Dimension") < children.index("TileMatrixSetLink")
    rest = client.get("/wmts/1.0.0/WMTSCapabilities.xml").get_data(as_text=True)
    assert (
        'template="http://localhost/wmts/cached/{TileMatrixSet}/{Time}/{Elevation}/'
        '{TileMatrix}/{TileCol}/{TileRow}.png"'
    ) in rest


def test_wmts_rest_dimensions(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get("/wmts/cached/GLOBAL_WEBMERCATOR/2020-01-02/0/1/0/0.png")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "image/png"
    resp = client.get("/wmts/cached/GLOBAL_WEBMERCATOR/default/default/1/0/0.png")
    assert resp.status_code == 200
    # Only the source's forward_req_params are sent; defaults fill missing values.
    assert extra_params(upstream) == [
        ("/svc", {"time": "2020-01-02"}),
        ("/svc", {"time": "2020-01-01"}),
    ]
    first = upstream.requests[0][1]
    assert (first["width"], first["height"], first["srs"]) == ("512", "512", "EPSG:3857")


def test_wmts_rest_invalid_dimension_value(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get("/wmts/cached/GLOBAL_WEBMERCATOR/2021/0/1/0/0.png")
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == "text/xml"
    root = ET.fromstring(resp.data)
    exception = root.find(f"{OWS_NS}Exception")
    assert exception is not None
    assert exception.get("exceptionCode") == "InvalidParameterValue"
    assert exception.findtext(f"{OWS_NS}ExceptionText") == "invalid dimension value (time=2021)."
    assert upstream.requests == []


def test_wmts_kvp_dimensions(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get(KVP_TILE + "&TIME=2020-01-02&ELEVATION=0&FOO=x")
    assert resp.status_code == 200
    assert client.get(KVP_TILE).status_code == 200
    assert extra_params(upstream) == [
        ("/svc", {"time": "2020-01-02"}),
        ("/svc", {"time": "2020-01-01"}),
    ]
    resp = client.get(KVP_TILE + "&TIME=1999")
    assert resp.status_code == 400
    assert b'exceptionCode="InvalidParameterValue"' in resp.data
    assert b"invalid dimension value (time=1999)." in resp.data
    resp = client.get(KVP_TILE + "&ELEVATION=7")
    assert b"invalid dimension value (elevation=7)." in resp.data
    assert len(upstream.requests) == 2


def test_tms_offers_dimension_layers_with_defaults(client: Client, upstream: FakeUpstream) -> None:
    assert client.get("/tms/1.0.0/cached/EPSG3857/1/0/0.png").status_code == 200
    assert extra_params(upstream) == [("/svc", {"time": "2020-01-01"})]


STORED = """
services:
  wms:
    srs: ['EPSG:3857']
  wmts:
  tms:
  kml:
layers:
  - name: cached
    title: Cached
    sources: [c]
    dimensions:
      time:
        values: ['2020-01-01', '2020-01-02']
      dim_band:
        values: ['a', 'b']
      elevation:
        values: ['0', '500']
        default: '0'
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [w]
sources:
  w:
    type: wms
    forward_req_params: ['time', 'foo', 'DIM_BAND']
    req: {url: '{url}/svc', layers: l1}
"""
WMS_3857 = (
    "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&SRS=EPSG:3857&BBOX=0,0,10000,10000"
    "&WIDTH=100&HEIGHT=100&STYLES=&FORMAT=image/png&LAYERS=cached"
)


def _dimension_dirs(root: Any) -> set[str]:
    """``name-value/...`` directory chains below ``c_EPSG3857`` (up to the level)."""
    found = set()
    for path in (root / "cache_data" / "c_EPSG3857").rglob("*.png"):
        parts = path.relative_to(root / "cache_data" / "c_EPSG3857").parts
        found.add("/".join(part for part in parts if "-" in part))
    return found


def test_stored_dimension_tiles_paths(
    make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path: Any
) -> None:
    # Paths and upstream parameters as observed on MapProxy 7.0.0 (the upstream there
    # gets the client's spelling of the names).
    client = make_app(STORED.replace("{url}", upstream.url))
    kvp = KVP_TILE.replace("TILEMATRIX=1", "TILEMATRIX=2")
    assert client.get(kvp + "&TIME=2020-01-01&DIM_BAND=b&FOO=x").status_code == 200
    assert client.get("/tms/1.0.0/cached/EPSG3857/1/0/0.png").status_code == 200
    assert (
        client.get(WMS_3857 + "&Elevation=500&TIME=2020-01-02&dim_band=a&FOO=b").status_code == 200
    )
    assert client.get(WMS_3857).status_code == 200
    assert client.get(WMS_3857 + "&TIME=1999").status_code == 200
    assert extra_params(upstream) == [
        ("/svc", {"time": "2020-01-01", "dim_band": "b"}),
        ("/svc", {"time": "2020-01-02", "dim_band": "b"}),
        ("/svc", {"time": "2020-01-02", "dim_band": "a"}),
        ("/svc", {}),
        ("/svc", {"time": "1999"}),
    ]
    assert _dimension_dirs(tmp_path) == {
        "elevation-0/time-2020-01-01/dim_band-b",
        "elevation-0/time-2020-01-02/dim_band-b",
        "Elevation-500/TIME-2020-01-02/dim_band-a",
        "",
        "TIME-1999",
    }
    # A second request is served from the dimension's directory.
    assert client.get(WMS_3857 + "&TIME=1999").status_code == 200
    assert len(upstream.requests) == 5


@pytest.mark.parametrize("value", ["../x", "a/b", ".."])
def test_path_changing_dimension_values_are_rejected(
    make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path: Any, value: str
) -> None:
    client = make_app(STORED.replace("{url}", upstream.url))
    resp = client.get(WMS_3857 + f"&TIME={value}")
    assert resp.status_code == 400
    assert b'code="InvalidDimensionValue"' in resp.data
    assert f"invalid dimension value (TIME={value}).".encode() in resp.data
    assert upstream.requests == []
    assert not (tmp_path / "cache_data" / "c_EPSG3857").exists()


@pytest.mark.parametrize(
    ("dimensions", "message"),
    [
        ("{time: {values: []}}", "layers[0].dimensions.time.values: expected a non-empty list"),
        ("{time: {valuez: [1]}}", "layers[0].dimensions.time: unknown option(s) valuez"),
        ("{time: [1, 2]}", "layers[0].dimensions.time: expected a mapping with 'values'"),
        (
            "{time: {values: ['2020-01-01/2020-01-02/P0D']}}",
            "layers[0].dimensions.time.values: invalid ISO8601 period 'P0D'",
        ),
        (
            "{time: {values: ['2020-01-02/2020-01-01/P1D']}}",
            "layers[0].dimensions.time.values: interval end lies before its start",
        ),
        (
            "{time: {values: ['x/2020-01-01/P1D']}}",
            "layers[0].dimensions.time.values: invalid ISO8601 interval 'x/2020-01-01/P1D'",
        ),
    ],
)
def test_dimension_config_errors(
    make_app: Callable[..., Client], dimensions: str, message: str
) -> None:
    from mapproxy.errors import ConfigurationError

    config = f"""
services:
  wms:
layers:
  - name: l
    title: L
    sources: [w]
    dimensions: {dimensions}
sources:
  w:
    type: wms
    req: {{url: 'http://localhost:1/svc', layers: l1}}
"""
    with pytest.raises(ConfigurationError) as info:
        make_app(config)
    assert message in str(info.value)
