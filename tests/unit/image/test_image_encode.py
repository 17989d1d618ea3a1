from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image

from mapproxy.image.encode import detect_format, encode_image
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.srs import get_srs


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def half_transparent() -> Image.Image:
    """Left half opaque red, right half fully transparent, one half-transparent green column."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 32, 64))
    image.paste((0, 255, 0, 128), (40, 0, 41, 64))
    return image


def test_png_roundtrip_keeps_transparency_when_quantized():
    data = encode_image(half_transparent(), ImageOptions(transparent=True))
    image = decode(data)
    assert image.mode == "P"
    rgba = image.convert("RGBA")
    assert rgba.getpixel((0, 0)) == (255, 0, 0, 255)
    assert rgba.getpixel((60, 0))[3] == 0
    assert rgba.getpixel((40, 10)) == (0, 255, 0, 128)


def test_png_without_quantizing_keeps_rgba():
    data = encode_image(half_transparent(), ImageOptions(transparent=True, colors=0))
    image = decode(data)
    assert image.mode == "RGBA"
    assert image.getpixel((60, 0)) == (0, 0, 0, 0)
    assert image.getpixel((0, 0)) == (255, 0, 0, 255)


def test_png_paletted_false_keeps_rgb():
    image = Image.new("RGB", (16, 16), (1, 2, 3))
    assert decode(encode_image(image, ImageOptions(paletted=False))).mode == "RGB"


def test_png_8bit_mode_gives_palette_even_without_paletted():
    image = Image.new("RGB", (16, 16), (10, 20, 30))
    options = ImageOptions(format="image/png; mode=8bit", paletted=False, colors=0)
    decoded = decode(encode_image(image, options))
    assert decoded.mode == "P"
    assert decoded.convert("RGB").getpixel((5, 5)) == (10, 20, 30)


def test_png_24bit_mode_composites_alpha_on_bgcolor():
    options = ImageOptions(format="image/png; mode=24bit", bgcolor=(0, 0, 255))
    decoded = decode(encode_image(half_transparent(), options))
    assert decoded.mode == "RGB"
    assert decoded.getpixel((0, 0)) == (255, 0, 0)
    assert decoded.getpixel((60, 0)) == (0, 0, 255)


def test_png_32bit_mode_gives_rgba():
    image = Image.new("RGB", (16, 16), (10, 20, 30))
    decoded = decode(encode_image(image, ImageOptions(format="image/png; mode=32bit")))
    assert decoded.mode == "RGBA"
    assert decoded.getpixel((0, 0)) == (10, 20, 30, 255)


def test_png_not_transparent_composites_on_bgcolor():
    options = ImageOptions(transparent=False, bgcolor=(255, 255, 255))
    rgba = decode(encode_image(half_transparent(), options)).convert("RGBA")
    assert rgba.getpixel((60, 0)) == (255, 255, 255, 255)
    assert rgba.getpixel((0, 0)) == (255, 0, 0, 255)


def test_quantized_png_keeps_exact_colours_of_few_colour_images():
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    image.paste((12, 34, 56), (0, 0, 20, 20))
    for quantizer in ("mediancut", "fastoctree"):
        decoded = decode(encode_image(image, ImageOptions(quantizer=quantizer)))
        assert decoded.mode == "P"
        rgb = decoded.convert("RGB")
        assert rgb.getpixel((0, 0)) == (12, 34, 56)
        assert rgb.getpixel((40, 40)) == (255, 255, 255)


def test_quantized_palette_is_trimmed_to_used_colours():
    data = encode_image(half_transparent(), ImageOptions(transparent=True))
    assert len(decode(data).getpalette() or []) // 3 <= 4


def test_jpeg_of_rgba_composites_on_bgcolor():
    options = ImageOptions(format="image/jpeg", bgcolor=(0, 0, 255), jpeg_quality=95)
    decoded = decode(encode_image(half_transparent(), options))
    assert decoded.mode == "RGB"
    red, green, blue = decoded.getpixel((62, 32))
    assert blue > 240 and red < 15 and green < 15
    red, green, blue = decoded.getpixel((2, 32))
    assert red > 240 and blue < 15


def test_jpeg_quality_changes_size():
    image = Image.effect_noise((64, 64), 64).convert("RGB")
    low = encode_image(image, ImageOptions(format="image/jpeg", jpeg_quality=10))
    high = encode_image(image, ImageOptions(format="image/jpeg", jpeg_quality=95))
    assert len(low) < len(high)


def test_gif_keeps_transparency():
    decoded = decode(encode_image(half_transparent(), ImageOptions(format="gif", transparent=True)))
    rgba = decoded.convert("RGBA")
    assert rgba.getpixel((0, 0)) == (255, 0, 0, 255)
    assert rgba.getpixel((60, 0))[3] == 0


def test_webp_keeps_alpha():
    options = ImageOptions(format="image/webp", transparent=True)
    decoded = decode(encode_image(half_transparent(), options))
    assert decoded.mode == "RGBA"
    assert decoded.getpixel((60, 0))[3] == 0


def test_tiff_compression_and_geotiff_tags():
    image = Image.new("RGB", (100, 50), (1, 2, 3))
    options = ImageOptions(format="image/GeoTIFF", tiff_compression="tiff_lzw")
    data = encode_image(image, options, bbox=(0.0, 0.0, 10.0, 5.0), srs=get_srs("EPSG:4326"))
    decoded = decode(data)
    assert decoded.info.get("compression") == "tiff_lzw"
    assert decoded.getpixel((0, 0)) == (1, 2, 3)
    assert decoded.tag_v2[33550] == (0.1, 0.1, 0.0)
    assert decoded.tag_v2[33922] == (0.0, 0.0, 0.0, 0.0, 5.0, 0.0)
    geo_keys = decoded.tag_v2[34735]
    assert tuple(geo_keys[-4:]) == (2048, 0, 1, 4326)


def test_geotiff_aliases_map_to_epsg_codes():
    image = Image.new("RGB", (10, 10))
    data = encode_image(
        image, ImageOptions(format="tiff"), bbox=(0.0, 0.0, 1.0, 1.0), srs=get_srs("EPSG:900913")
    )
    assert tuple(decode(data).tag_v2[34735][-4:]) == (3072, 0, 1, 3857)


def test_mixed_format_picks_png_for_transparent_and_jpeg_for_opaque():
    options = ImageOptions(format="mixed", transparent=True)
    assert detect_format(encode_image(half_transparent(), options)) == "image/png"
    opaque = Image.new("RGBA", (16, 16), (5, 5, 5, 255))
    assert detect_format(encode_image(opaque, options)) == "image/jpeg"


def test_unknown_format_raises_value_error():
    with pytest.raises(ValueError, match="unsupported image format"):
        encode_image(Image.new("RGB", (4, 4)), ImageOptions(format="image/bmpx"))


@pytest.mark.parametrize(
    ("format_name", "mime"),
    [
        ("png", "image/png"),
        ("jpeg", "image/jpeg"),
        ("gif", "image/gif"),
        ("tiff", "image/tiff"),
        ("webp", "image/webp"),
    ],
)
def test_detect_format(format_name, mime):
    data = encode_image(Image.new("RGB", (8, 8)), ImageOptions(format=format_name))
    assert detect_format(data) == mime


def test_detect_format_unknown():
    assert detect_format(b"<ServiceExceptionReport/>") is None
    assert detect_format(b"") is None


def test_image_result_as_bytes_encodes_with_options():
    result = ImageResult(Image.new("RGB", (8, 8), (255, 0, 0)))
    data = result.as_bytes(ImageOptions(format="image/jpeg"))
    assert detect_format(data) == "image/jpeg"


def gradient(size: tuple[int, int] = (256, 256)) -> Image.Image:
    """An RGB image with far more than 256 colours."""
    width, height = size
    image = Image.new("RGB", size)
    image.putdata([(x, y, (x * y) % 256) for y in range(height) for x in range(width)])
    return image


def test_png_is_written_with_mapproxy_fast_zlib_settings():
    # MapProxy 7 writes PNG tiles with zlib level 1 and run-length matching
    image = gradient()
    data = encode_image(image, ImageOptions())
    expected = io.BytesIO()
    quantized = image.quantize(256, method=Image.Quantize.FASTOCTREE)
    quantized.save(expected, "PNG", compress_level=1, compress_type=zlib.Z_RLE)
    assert data == expected.getvalue()
    rgb = gradient((64, 64))
    expected = io.BytesIO()
    rgb.save(expected, "PNG", compress_level=1, compress_type=zlib.Z_RLE)
    assert encode_image(rgb, ImageOptions(paletted=False)) == expected.getvalue()


def test_many_colour_tile_keeps_the_quantized_pixels():
    image = gradient()
    decoded = decode(encode_image(image, ImageOptions()))
    assert decoded.mode == "P"
    expected = image.quantize(256, method=Image.Quantize.FASTOCTREE).convert("RGB")
    assert decoded.convert("RGB").tobytes() == expected.tobytes()
