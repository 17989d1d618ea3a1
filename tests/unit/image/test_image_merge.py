from __future__ import annotations

import io

import pytest
from PIL import Image

from mapproxy.image.merge import merge_images
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult

SIZE = (20, 10)


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def solid(color: tuple[int, ...], **kwargs: object) -> ImageResult:
    mode = "RGBA" if len(color) == 4 else "RGB"
    return ImageResult(Image.new(mode, SIZE, color), **kwargs)  # type: ignore[arg-type]


def left_half(color: tuple[int, int, int]) -> ImageResult:
    """Opaque ``color`` on the left half, transparent on the right."""
    image = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    image.paste((*color, 255), (0, 0, SIZE[0] // 2, SIZE[1]))
    return ImageResult(image, transparent=True)


def test_top_layer_wins_where_opaque_and_bottom_shows_through():
    bottom = solid((0, 0, 255))
    top = left_half((255, 0, 0))
    merged = merge_images([bottom, top], SIZE, ImageOptions()).as_image()
    assert merged.getpixel((2, 5))[:3] == (255, 0, 0)
    assert merged.getpixel((17, 5))[:3] == (0, 0, 255)


def test_order_matters():
    a = left_half((255, 0, 0))
    b = left_half((0, 255, 0))
    options = ImageOptions(transparent=True)
    assert merge_images([a, b], SIZE, options).as_image().getpixel((2, 2)) == (0, 255, 0, 255)
    assert merge_images([b, a], SIZE, options).as_image().getpixel((2, 2)) == (255, 0, 0, 255)


def test_transparent_canvas_stays_transparent_where_nothing_is_drawn():
    result = merge_images(
        [left_half((255, 0, 0)), left_half((0, 0, 255))], SIZE, ImageOptions(transparent=True)
    )
    assert result.transparent
    image = result.as_image()
    assert image.mode == "RGBA"
    assert image.getpixel((15, 5))[3] == 0


def test_opaque_canvas_uses_bgcolor():
    options = ImageOptions(transparent=False, bgcolor=(0, 255, 0))
    result = merge_images([left_half((255, 0, 0)), left_half((255, 0, 0))], SIZE, options)
    assert not result.transparent
    assert result.as_image().getpixel((15, 5))[:3] == (0, 255, 0)


def test_opacity_blends_with_layer_below():
    bottom = solid((0, 0, 0))
    top = solid((255, 255, 255))
    merged = merge_images([bottom, top], SIZE, ImageOptions(), opacities=[None, 0.5])
    value = merged.as_image().getpixel((5, 5))
    assert all(abs(channel - 128) <= 1 for channel in value[:3])


def test_opacity_on_transparent_canvas_scales_alpha():
    merged = merge_images(
        [left_half((255, 0, 0))], SIZE, ImageOptions(transparent=True), opacities=[0.5]
    )
    red, green, blue, alpha = merged.as_image().getpixel((2, 2))
    assert (red, green, blue) == (255, 0, 0)
    assert abs(alpha - 128) <= 1


def test_opacity_scales_existing_alpha_on_opaque_canvas():
    merged = merge_images(
        [solid((0, 0, 0)), left_half((255, 255, 255))], SIZE, ImageOptions(), opacities=[1.0, 0.25]
    )
    image = merged.as_image()
    assert abs(image.getpixel((2, 2))[0] - 64) <= 1
    assert image.getpixel((17, 2))[:3] == (0, 0, 0)


def test_zero_opacity_layer_is_ignored():
    merged = merge_images(
        [solid((0, 0, 255)), solid((255, 0, 0))], SIZE, ImageOptions(), opacities=[None, 0.0]
    )
    assert merged.as_image().getpixel((0, 0))[:3] == (0, 0, 255)


def test_single_opaque_input_is_returned_untouched():
    data = png_bytes(Image.new("RGB", SIZE, (1, 2, 3)))
    result = ImageResult(data, format="image/png")
    merged = merge_images([result], SIZE, ImageOptions())
    assert merged is result
    assert merged.as_bytes() is data


def test_single_input_of_other_size_is_resized():
    result = ImageResult(Image.new("RGB", (10, 5), (1, 2, 3)))
    merged = merge_images([result], SIZE, ImageOptions())
    assert merged.as_image().size == SIZE


def test_layers_below_an_opaque_layer_are_not_decoded():
    hidden = ImageResult(b"not an image", format="image/png", size=SIZE)
    top_data = png_bytes(Image.new("RGB", SIZE, (9, 9, 9)))
    top = ImageResult(top_data, format="image/png", size=SIZE)
    merged = merge_images([hidden, top], SIZE, ImageOptions())
    assert merged.as_image().getpixel((0, 0))[:3] == (9, 9, 9)


def test_merge_is_cacheable_only_if_all_inputs_are():
    options = ImageOptions(transparent=True)
    good = left_half((255, 0, 0))
    bad = ImageResult(Image.new("RGBA", SIZE, (0, 0, 0, 0)), transparent=True, cacheable=False)
    assert merge_images([good, left_half((0, 0, 255))], SIZE, options).cacheable
    assert not merge_images([good, bad], SIZE, options).cacheable


def test_inputs_are_not_modified():
    bottom_image = Image.new("RGBA", SIZE, (0, 0, 255, 255))
    top = left_half((255, 0, 0))
    merge_images(
        [ImageResult(bottom_image), top], SIZE, ImageOptions(transparent=True), opacities=[0.5, 0.5]
    )
    assert bottom_image.getpixel((0, 0)) == (0, 0, 255, 255)
    assert top.as_image().getpixel((0, 0)) == (255, 0, 0, 255)


def test_no_inputs_give_blank_image():
    result = merge_images([], SIZE, ImageOptions(transparent=True))
    assert result.transparent
    assert result.as_image().convert("RGBA").getpixel((0, 0))[3] == 0


def test_opacities_must_match_results():
    with pytest.raises(ValueError):
        merge_images([solid((0, 0, 0))], SIZE, ImageOptions(), opacities=[0.5, 0.5])
