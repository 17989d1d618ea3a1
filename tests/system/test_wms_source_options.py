"""Options of ``wms`` sources, checked by the exact requests the upstream receives.

Expected parameters were compared with MapProxy 7.0.0 (black box) for the same configs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, image_handler
from mapproxy.errors import ConfigurationError

SLD = (
    '<StyledLayerDescriptor version="1.0.0">\n'
    " <NamedLayer>x &amp; y</NamedLayer>\n"
    "</StyledLayerDescriptor>\n"
)

CONFIG = """
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857', 'EPSG:31467', 'EPSG:31468']
layers:
  - {name: v100, title: l, sources: [v100]}
  - {name: v110, title: l, sources: [v110]}
  - {name: v130, title: l, sources: [v130]}
  - {name: sld, title: l, sources: [sld]}
  - {name: reproj, title: l, sources: [reproj]}
  - {name: fmt, title: l, sources: [fmt]}
  - {name: red, title: l, sources: [red]}
  - {name: blue_half, title: l, sources: [blue_half]}
  - {name: both, title: l, sources: [red, blue_half]}
  - {name: cached, title: l, sources: [both_cache]}
  - {name: white_clear, title: l, sources: [white_clear]}
  - {name: ranged, title: l, sources: [res_range]}
  - {name: scaled, title: l, sources: [scale_range]}
  - {name: forward, title: l, sources: [forward]}
caches:
  both_cache: {grids: [GLOBAL_WEBMERCATOR], sources: [red, blue_half], disable_storage: true}
sources:
  v100:
    type: wms
    wms_opts: {version: 1.0.0}
    req:
      url: "{url}/v100?map=/a/b.map&FOO=bar"
      layers: a
      transparent: true
      styles: s1
      exceptions: xml
      Custom_Key: Val
  v110:
    type: wms
    wms_opts: {version: 1.1.0}
    req: {url: "{url}/v110", layers: a}
  v130:
    type: wms
    wms_opts: {version: 1.3.0}
    req: {url: "{url}/v130", layers: 'a,b'}
  sld:
    type: wms
    req: {url: "{url}/sld", sld: "file://styles/my.sld"}
  reproj:
    type: wms
    supported_srs: ['EPSG:25832', 'EPSG:4258', 'EPSG:3857']
    req: {url: "{url}/reproj", layers: a}
  fmt:
    type: wms
    supported_formats: ['image/jpeg', 'png']
    req: {url: "{url}/fmt", layers: a}
  red:
    type: wms
    req: {url: "{url}/red", layers: a}
  blue_half:
    type: wms
    req: {url: "{url}/blue", layers: a}
    image: {opacity: 0.5}
  white_clear:
    type: wms
    req: {url: "{url}/white", layers: a}
    image: {transparent_color: '#fafafa', transparent_color_tolerance: 10}
  res_range:
    type: wms
    min_res: 10000
    max_res: 1000
    req: {url: "{url}/ranged", layers: a}
  scale_range:
    type: wms
    # as in MapProxy 7.0.0, min_scale is the fine limit (max_res) and max_scale the coarse one
    min_scale: 3571428.57  # res 1000 m/px
    max_scale: 35714285.7  # res 10000 m/px
    req: {url: "{url}/scaled", layers: a}
  forward:
    type: wms
    forward_req_params: ['TIME', 'vendor']
    req: {url: "{url}/forward", layers: a}
globals:
  srs:
    preferred_src_proj:
      'EPSG:31467': ['EPSG:3857']
"""

COLORS = {
    "/red": (255, 0, 0, 255),
    "/blue": (0, 0, 255, 255),
    "/white": (255, 255, 255, 255),
}


def color_handler(request: Request) -> Response:
    return image_handler(COLORS.get(request.path, (10, 20, 30, 255)))(request)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(color_handler) as fake:
        yield fake


@pytest.fixture
def app(make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path) -> Client:  # type: ignore[no-untyped-def]
    (tmp_path / "styles").mkdir()
    (tmp_path / "styles" / "my.sld").write_text(SLD)
    return make_app(CONFIG.replace("{url}", upstream.url))


def getmap(
    app: Client,
    layers: str,
    srs: str = "EPSG:4326",
    bbox: str = "5,50,6,51",
    size: int = 10,
    format: str = "image/png",
    **extra: str,
) -> Response:
    query = {
        "SERVICE": "WMS",
        "REQUEST": "GetMap",
        "VERSION": "1.1.1",
        "LAYERS": layers,
        "STYLES": "",
        "SRS": srs,
        "BBOX": bbox,
        "WIDTH": str(size),
        "HEIGHT": str(size),
        "FORMAT": format,
        **extra,
    }
    response = app.get("/service", query_string=query)
    assert response.status_code == 200, response.data
    return response  # type: ignore[no-any-return]


def pixel(response: Response) -> tuple[int, ...]:
    image = Image.open(io.BytesIO(response.data)).convert("RGBA")
    return tuple(image.getpixel((0, 0)))


BBOX_PARAMS = {"bbox": "5.0,50.0,6.0,51.0", "width": "10", "height": "10"}


@pytest.mark.parametrize(
    ("format", "sent"), [("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/gif", "GIF")]
)
def test_version_100_uses_wmtver_format_names_and_keeps_extra_params(
    app: Client, upstream: FakeUpstream, format: str, sent: str
) -> None:
    response = getmap(app, "v100", format=format)
    assert response.mimetype == format
    (request,) = upstream.recorded
    assert request.path == "/v100"
    assert request.query == {
        "map": "/a/b.map",
        "FOO": "bar",
        "layers": "a",
        "transparent": "TRUE",
        "styles": "s1",
        "exceptions": "xml",
        "Custom_Key": "Val",
        "request": "map",
        "srs": "EPSG:4326",
        "format": sent,
        "wmtver": "1.0.0",
        **BBOX_PARAMS,
    }
    assert request.raw_query.startswith("map=/a/b.map&FOO=bar&")


def test_version_110(app: Client, upstream: FakeUpstream) -> None:
    getmap(app, "v110")
    assert upstream.requests == [
        (
            "/v110",
            {
                "layers": "a",
                "srs": "EPSG:4326",
                "format": "image/png",
                "request": "GetMap",
                "service": "WMS",
                "version": "1.1.0",
                "styles": "",
                **BBOX_PARAMS,
            },
        )
    ]


@pytest.mark.parametrize(
    ("srs", "bbox", "sent_bbox"),
    [
        ("EPSG:4326", "5,50,6,51", "50.0,5.0,51.0,6.0"),  # lat/lon axis order
        ("EPSG:3857", "500000,6500000,600000,6600000", "500000.0,6500000.0,600000.0,6600000.0"),
    ],
)
def test_version_130_uses_crs_and_axis_order(
    app: Client, upstream: FakeUpstream, srs: str, bbox: str, sent_bbox: str
) -> None:
    getmap(app, "v130", srs=srs, bbox=bbox)
    assert upstream.requests == [
        (
            "/v130",
            {
                "layers": "a,b",
                "bbox": sent_bbox,
                "width": "10",
                "height": "10",
                "crs": srs,
                "format": "image/png",
                "request": "GetMap",
                "service": "WMS",
                "version": "1.3.0",
                "styles": "",
            },
        )
    ]


def test_sld_file_is_posted_as_sld_body(app: Client, upstream: FakeUpstream) -> None:
    getmap(app, "sld")
    (request,) = upstream.recorded
    assert request.method == "POST"
    assert request.path == "/sld"
    assert request.query == {
        "sld_body": SLD,
        "srs": "EPSG:4326",
        "format": "image/png",
        "request": "GetMap",
        "service": "WMS",
        "version": "1.1.1",
        "styles": "",
        **BBOX_PARAMS,
    }


def test_missing_sld_file_is_a_configuration_error(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    with pytest.raises(ConfigurationError, match=r"sources\.sld\.req\.sld: cannot read SLD file"):
        make_app(CONFIG.replace("{url}", upstream.url))


@pytest.mark.parametrize(
    ("srs", "bbox", "sent_srs"),
    [
        ("EPSG:4326", "5,50,6,51", "EPSG:4258"),  # first geographic supported SRS
        ("EPSG:31468", "4500000,5500000,4510000,5510000", "EPSG:25832"),  # first projected
        ("EPSG:31467", "3500000,5500000,3510000,5510000", "EPSG:3857"),  # preferred_src_proj
        ("EPSG:3857", "500000,6500000,600000,6600000", "EPSG:3857"),  # supported as is
    ],
)
def test_supported_srs_and_preferred_src_proj(
    app: Client, upstream: FakeUpstream, srs: str, bbox: str, sent_srs: str
) -> None:
    getmap(app, "reproj", srs=srs, bbox=bbox)
    (query,) = upstream.queries
    assert query["srs"] == sent_srs
    if sent_srs == srs:
        assert query["bbox"] == ",".join(str(float(v)) for v in bbox.split(","))


def test_reprojected_bbox_matches_reference(app: Client, upstream: FakeUpstream) -> None:
    getmap(app, "reproj", srs="EPSG:31467", bbox="3500000,5500000,3510000,5510000")
    (query,) = upstream.queries
    # as sent by MapProxy 7.0.0
    sent = [float(v) for v in query["bbox"].split(",")]
    expected = [1001759.9587794481, 6383582.479751793, 1017199.1975217247, 6399065.173292659]
    assert sent == pytest.approx(expected, abs=1.0)


@pytest.mark.parametrize(
    ("format", "sent"),
    [("image/png", "image/png"), ("image/jpeg", "image/jpeg"), ("image/gif", "image/jpeg")],
)
def test_supported_formats(app: Client, upstream: FakeUpstream, format: str, sent: str) -> None:
    response = getmap(app, "fmt", format=format)
    assert response.mimetype == format
    Image.open(io.BytesIO(response.data)).verify()
    (query,) = upstream.queries
    assert query["format"] == sent


def test_opacity_applies_when_merged_with_layers_below(app: Client, upstream: FakeUpstream) -> None:
    # MapProxy 7.0.0 gives (127, 0, 127) in all three cases: blue at 0.5 over red
    for response in (
        getmap(app, "both"),
        getmap(app, "red,blue_half"),
        getmap(app, "cached", srs="EPSG:3857", bbox="0,0,100000,100000"),
    ):
        red, green, blue, alpha = pixel(response)
        assert (green, alpha) == (0, 255)
        assert red == pytest.approx(127, abs=1)
        assert blue == pytest.approx(127, abs=1)


def test_opacity_on_transparent_canvas_scales_alpha(app: Client) -> None:
    # as MapProxy 7.0.0: blue at 0.5 under a fully transparent layer
    response = getmap(app, "blue_half,white_clear", TRANSPARENT="true")
    assert pixel(response) == (0, 0, 255, 127)


def test_opacity_of_a_single_source_is_ignored(app: Client) -> None:
    assert pixel(getmap(app, "blue_half")) == (0, 0, 255, 255)
    assert pixel(getmap(app, "blue_half", TRANSPARENT="true")) == (0, 0, 255, 255)


def test_transparent_color_with_tolerance(app: Client) -> None:
    # white is within 10 of #fafafa: transparent, or the white background when not requested
    assert pixel(getmap(app, "white_clear", TRANSPARENT="true"))[3] == 0
    assert pixel(getmap(app, "white_clear")) == (255, 255, 255, 255)
    assert pixel(getmap(app, "white_clear,red", TRANSPARENT="true")) == (255, 0, 0, 255)
    assert pixel(getmap(app, "red,white_clear", TRANSPARENT="true")) == (255, 0, 0, 255)


@pytest.mark.parametrize("layer", ["ranged", "scaled"])
@pytest.mark.parametrize(
    ("size", "requested"),
    [
        (1, False),  # about 111 km/px: coarser than min_res
        (100, True),  # about 1113 m/px
        (120, False),  # about 928 m/px: finer than max_res
    ],
)
def test_res_and_scale_limits_give_blank_without_request(
    app: Client, upstream: FakeUpstream, layer: str, size: int, requested: bool
) -> None:
    response = getmap(app, layer, size=size, TRANSPARENT="true")
    if requested:
        assert len(upstream.requests) == 1
        assert pixel(response) == (10, 20, 30, 255)
    else:
        assert upstream.requests == []
        assert pixel(response)[3] == 0


def test_forward_req_params(app: Client, upstream: FakeUpstream) -> None:
    getmap(app, "forward", TIME="2020-01-01", VENDOR="v", OTHER="o")
    (query,) = upstream.queries
    assert query["time"] == "2020-01-01"
    assert query["vendor"] == "v"
    assert "other" not in query and "OTHER" not in query


TWO_COLORS = """
services:
  wms:
layers:
  - {name: l, title: l, sources: [s]}
sources:
  s:
    type: wms
    supported_srs: ['EPSG:3857']
    req: {url: "{url}/stripes", layers: a}
    IMAGE
globals:
  image: {resampling_method: GLOBAL}
"""


def stripes_handler(request: Request) -> Response:
    """A red and blue checkerboard of 1 px squares."""
    width = int(request.args["width"])
    height = int(request.args["height"])
    image = Image.new("RGB", (width, height), (255, 0, 0))
    for x in range(width):
        for y in range(x % 2, height, 2):
            image.putpixel((x, y), (0, 0, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return Response(out.getvalue(), content_type="image/png")


@pytest.mark.parametrize(
    ("image_line", "global_method", "only_two_colors"),
    [
        ("", "nearest", True),
        ("", "bicubic", False),
        ("image: {resampling_method: nearest}", "bicubic", True),
        ("image: {resampling_method: bilinear}", "nearest", False),
    ],
)
def test_resampling_method_of_reprojected_images(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    image_line: str,
    global_method: str,
    only_two_colors: bool,
) -> None:
    upstream.handler = stripes_handler
    text = TWO_COLORS.replace("{url}", upstream.url).replace("IMAGE", image_line)
    app = make_app(text.replace("GLOBAL", global_method))
    response = getmap(app, "l", bbox="5,50,6,51", size=101)
    colors = Image.open(io.BytesIO(response.data)).convert("RGB").getcolors(1 << 16)
    assert colors is not None
    assert ({color for _, color in colors} <= {(255, 0, 0), (0, 0, 255)}) is only_two_colors


def test_unknown_encoding_option_is_a_configuration_error(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    text = TWO_COLORS.replace("{url}", upstream.url).replace("GLOBAL", "nearest")
    text = text.replace("IMAGE", "image: {encoding_options: {jpeg_quality: 80, foo: 1}}")
    with pytest.raises(ConfigurationError, match=r"sources\.s\.image\.encoding_options\.foo"):
        make_app(text)


def test_merge_method_is_deprecated_and_ignored(
    make_app: Callable[..., Client], upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    text = TWO_COLORS.replace("{url}", upstream.url).replace("GLOBAL", "nearest")
    with caplog.at_level(logging.WARNING, logger="mapproxy.config"):
        app = make_app(text.replace("IMAGE", "image: {merge_method: composite}"))
    assert "sources.s.image.merge_method is deprecated and ignored" in caplog.text
    assert "unknown 'merge_method'" not in caplog.text
    getmap(app, "l")


def test_extra_req_keys_are_no_unknown_options(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    (tmp_path / "styles").mkdir()
    (tmp_path / "styles" / "my.sld").write_text(SLD)
    with caplog.at_level(logging.WARNING, logger="mapproxy.config"):
        make_app(CONFIG.replace("{url}", upstream.url))
    assert "unknown" not in caplog.text
