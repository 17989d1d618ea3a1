"""Band merging caches (caches.x.sources as a band dict) and cache watermarks, end to end."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream

COLORS = {"red": (200, 10, 20), "green": (30, 150, 60), "blue": (5, 40, 90), "white": (255,) * 3}


def layer_color_handler(request: Request) -> Response:
    """A WMS answering each LAYERS value with its own solid colour."""
    args = {key.lower(): value for key, value in request.args.items()}
    size = (int(args["width"]), int(args["height"]))
    out = io.BytesIO()
    Image.new("RGB", size, COLORS[args["layers"]]).save(out, "PNG")
    return Response(out.getvalue(), content_type="image/png")


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(layer_color_handler) as fake:
        yield fake


def tile_image(response) -> Image.Image:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.data
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image


SOURCES = """
sources:
  s_red:
    type: wms
    req: {url: "URL/service", layers: red}
  s_green:
    type: wms
    req: {url: "URL/service", layers: green}
  s_blue:
    type: wms
    req: {url: "URL/service", layers: blue}
  s_white:
    type: wms
    req: {url: "URL/service", layers: white}
globals:
  cache:
    base_dir: ./cache_data
    meta_size: [1, 1]
    meta_buffer: 0
  image:
    paletted: false
"""

BAND_CONFIG = """
services:
  wmts: {}
layers:
  - {name: rgb, title: rgb, sources: [rgb_cache]}
  - {name: rgba, title: rgba, sources: [rgba_cache]}
  - {name: lum, title: lum, sources: [l_cache]}
caches:
  rgb_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources:
      r: [{source: s_red, band: 0}]
      g: [{source: s_green, band: 1, factor: 0.5}, {source: s_blue, band: 2, factor: 2}]
      b: [{source: s_red, band: 2}, {source: s_green, band: 0, factor: 0.1}]
  rgba_cache:
    grids: [GLOBAL_WEBMERCATOR]
    image: {transparent: true}
    sources:
      r: [{source: s_red, band: 0}]
      a: [{source: s_green, band: 1}]
  l_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources:
      l: [{source: s_red, band: 0, factor: 0.25}, {source: s_green, band: 1, factor: 0.5}]
"""


@pytest.fixture
def band_app(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app((BAND_CONFIG + SOURCES).replace("URL", upstream.url))


def test_rgb_band_merge_sums_weighted_bands_and_asks_each_source_once(
    band_app: Client, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Values as MapProxy 7.0.0 gives them: g = 150 * 0.5 + 90 * 2 clipped, b = 20 + 3."""
    image = tile_image(band_app.get("/wmts/rgb/GLOBAL_WEBMERCATOR/1/0/1.png"))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (200, 255, 23)
    assert image.getpixel((255, 255)) == (200, 255, 23)
    assert sorted(query["layers"] for _path, query in upstream.requests) == [
        "blue",
        "green",
        "red",
    ]
    for _path, query in upstream.requests:
        assert query["width"] == "256" and query["height"] == "256"
        assert query["srs"] == "EPSG:3857"
    stored = tmp_path / "cache_data/rgb_cache_EPSG3857/01/000/000/000/000/000/001.png"
    assert stored.is_file()
    upstream.requests.clear()
    again = band_app.get("/wmts/rgb/GLOBAL_WEBMERCATOR/1/0/1.png")
    assert again.data == stored.read_bytes()
    assert upstream.requests == []


def test_alpha_band_gives_a_transparent_tile(band_app: Client, upstream: FakeUpstream) -> None:
    image = tile_image(band_app.get("/wmts/rgba/GLOBAL_WEBMERCATOR/1/1/1.png"))
    assert image.convert("RGBA").getpixel((10, 10)) == (200, 0, 0, 150)
    assert sorted(query["layers"] for _path, query in upstream.requests) == ["green", "red"]


def test_luminance_band_gives_a_grey_tile(band_app: Client, upstream: FakeUpstream) -> None:
    image = tile_image(band_app.get("/wmts/lum/GLOBAL_WEBMERCATOR/0/0/0.png"))
    assert image.mode == "L"
    assert image.getpixel((128, 128)) == 125  # 200 * 0.25 + 150 * 0.5


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        (
            "{l: [{source: s_red, band: 0}], r: [{source: s_red, band: 0}]}",
            r"caches\.bad\.sources\.l: band l cannot be combined",
        ),
        ("{x: [{source: s_red, band: 0}]}", r"caches\.bad\.sources\.x: unknown band"),
        ("{r: [{source: nothere, band: 0}]}", r"caches\.bad\.sources\.r\[0\]\.source: unknown"),
        ("{r: [{source: s_red}]}", r"caches\.bad\.sources\.r\[0\]: expected"),
        ("{r: [{source: s_red, band: -1}]}", r"caches\.bad\.sources\.r\[0\]\.band"),
    ],
)
def test_invalid_band_configs_name_the_key(
    make_app: Callable[..., Client], bands: str, message: str
) -> None:
    from mapproxy.errors import ConfigurationError

    config = f"""
services:
  wmts: {{}}
layers:
  - {{name: bad, title: bad, sources: [bad]}}
caches:
  bad:
    grids: [GLOBAL_WEBMERCATOR]
    sources: {bands}
"""
    with pytest.raises(ConfigurationError, match=message):
        make_app((config + SOURCES).replace("URL", "http://127.0.0.1:9"))


WATERMARK_CONFIG = """
services:
  wmts: {}
layers:
  - {name: marked, title: marked, sources: [marked_cache]}
  - {name: wide, title: wide, sources: [wide_cache]}
caches:
  marked_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [s_white]
    meta_size: [2, 2]
    watermark: {text: MapProxy Test, color: '#000000', opacity: 255}
  wide_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [s_white]
    watermark: {text: MapProxy Test, spacing: wide, color: [0, 0, 255], opacity: 200}
"""


def dark_columns(image: Image.Image) -> np.ndarray:
    """Indices of pixel columns with watermark (non-white) pixels."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return np.flatnonzero((pixels < 200).any(axis=-1).any(axis=0))


@pytest.fixture
def watermark_app(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app((WATERMARK_CONFIG + SOURCES).replace("URL", upstream.url))


def test_watermark_is_drawn_on_new_tiles_before_storage(
    watermark_app: Client, upstream: FakeUpstream, tmp_path: Path
) -> None:
    even_row = watermark_app.get("/wmts/marked/GLOBAL_WEBMERCATOR/1/0/0.png")
    image = tile_image(even_row)
    columns = dark_columns(image)
    assert columns.size > 0
    assert columns.min() > 20 and columns.max() < 236  # centred
    assert image.convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    # one 2x2 meta tile request for the whole level
    assert len(upstream.requests) == 1
    stored = tmp_path / "cache_data/marked_cache_EPSG3857/01/000/000/000/000/000/000.png"
    assert stored.read_bytes() == even_row.data
    # odd rows: the text is shifted by half a tile and cut at both edges
    odd_row = tile_image(watermark_app.get("/wmts/marked/GLOBAL_WEBMERCATOR/1/0/1.png"))
    odd_columns = dark_columns(odd_row)
    assert odd_columns.min() == 0 and odd_columns.max() == 255
    assert not ((odd_columns > 100) & (odd_columns < 156)).any()
    assert len(upstream.requests) == 1


def test_wide_watermark_marks_every_second_tile(watermark_app: Client) -> None:
    plain = tile_image(watermark_app.get("/wmts/wide/GLOBAL_WEBMERCATOR/1/0/0.png"))
    assert plain.convert("RGB").getcolors() == [(256 * 256, (255, 255, 255))]
    for x, y in ((1, 0), (0, 1)):
        marked = tile_image(watermark_app.get(f"/wmts/wide/GLOBAL_WEBMERCATOR/1/{x}/{y}.png"))
        colors = {color for _count, color in marked.convert("RGB").getcolors(65536)}
        # blue at opacity 200 over white: 255 * 55 / 255 = 55 in red and green
        assert min(color[0] for color in colors) <= 56
        assert all(color[2] == 255 for color in colors)
        columns = dark_columns(marked)
        assert columns.min() > 20 and columns.max() < 236
