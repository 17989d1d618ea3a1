from __future__ import annotations

from mapproxy.source.base import MapQuery
from mapproxy.source.debug import DebugSource, debug_text
from mapproxy.srs import get_srs

EPSG3857 = get_srs("EPSG:3857")


def test_debug_source_renders_transparent_image_with_border_and_text() -> None:
    query = MapQuery((0.0, 0.0, 2560.0, 2560.0), (256, 256), EPSG3857)
    result = DebugSource().get_map(query)
    assert result.transparent
    assert result.format == "image/png"
    image = result.as_image().convert("RGBA")
    assert image.size == (256, 256)
    assert image.getpixel((0, 0))[3] == 255  # border
    assert image.getpixel((255, 128))[3] == 255
    assert image.getpixel((20, 20))[3] == 0  # transparent inside
    # some text pixels are drawn in the middle
    middle = image.crop((0, 100, 256, 156))
    assert middle.getchannel("A").getextrema()[1] > 0


def test_debug_text_shows_resolution_bbox_and_srs() -> None:
    query = MapQuery((0.0, 0.0, 2560.0, 1280.0), (256, 256), EPSG3857)
    assert debug_text(query) == [
        "res: 10.0000 / 5.0000",
        "0.00, 0.00",
        "2560.00, 1280.00",
        "EPSG:3857",
    ]


def test_debug_text_for_geographic_srs() -> None:
    query = MapQuery((-180.0, -90.0, 180.0, 90.0), (360, 180), get_srs("EPSG:4326"))
    lines = debug_text(query)
    assert lines[0] == "res: 1.0000000000"
    assert lines[1] == "-180.00000000, -90.00000000"
    assert lines[3] == "EPSG:4326"


def test_debug_source_attributes() -> None:
    source = DebugSource()
    assert source.supports_meta_tiles is False
    assert source.transparent is True
    assert source.extent is None


def test_debug_source_handles_tiny_images() -> None:
    query = MapQuery((0.0, 0.0, 1.0, 1.0), (1, 1), EPSG3857, format="image/jpeg")
    result = DebugSource().get_map(query)
    assert result.as_image().size == (1, 1)
    assert result.format == "image/jpeg"
