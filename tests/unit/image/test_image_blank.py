from __future__ import annotations

import io

from PIL import Image

from mapproxy.image.blank import blank_image
from mapproxy.image.options import ImageOptions


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGBA")


def test_transparent_blank_is_fully_transparent():
    result = blank_image((32, 16), ImageOptions(transparent=True))
    assert result.transparent
    image = decode(result.as_bytes())
    assert image.size == (32, 16)
    assert image.getextrema()[3] == (0, 0)


def test_opaque_blank_uses_bgcolor():
    result = blank_image((8, 8), ImageOptions(bgcolor=(10, 200, 30)))
    assert not result.transparent
    assert decode(result.as_bytes()).getpixel((3, 3)) == (10, 200, 30, 255)


def test_transparent_blank_with_rgba_bgcolor_uses_that_colour():
    result = blank_image((8, 8), ImageOptions(transparent=True, bgcolor=(255, 0, 0, 128)))
    assert decode(result.as_bytes()).getpixel((0, 0)) == (255, 0, 0, 128)


def test_blank_bytes_are_cached_per_size_and_options():
    options = ImageOptions(format="image/jpeg")
    first = blank_image((64, 64), options).as_bytes(options)
    second = blank_image((64, 64), ImageOptions(format="image/jpeg")).as_bytes(options)
    assert first is second
    assert blank_image((32, 64), options).as_bytes(options) is not first


def test_blank_results_are_independent_images():
    options = ImageOptions()
    assert blank_image((8, 8), options).as_image() is not blank_image((8, 8), options).as_image()
