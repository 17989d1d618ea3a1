from __future__ import annotations

from PIL import Image

from mapproxy.image.result import ImageResult
from mapproxy.image.tile import assemble_tiles, has_transparency, is_single_color, split_meta_image


def gradient(size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size)
    image.putdata(
        [(x % 256, y % 256, (x * y) % 256) for y in range(size[1]) for x in range(size[0])]
    )
    return image


def test_split_cuts_tiles_at_offsets():
    meta = gradient((40, 30))
    tiles = split_meta_image(meta, [("a", (0, 0)), ("b", (10, 20))], (10, 10))
    assert [coord for coord, _tile in tiles] == ["a", "b"]
    tile_b = tiles[1][1]
    assert tile_b.size == (10, 10)
    assert tile_b.getpixel((0, 0)) == meta.getpixel((10, 20))
    assert tile_b.getpixel((9, 9)) == meta.getpixel((19, 29))


def test_split_single_tile_returns_image_itself():
    meta = gradient((10, 10))
    assert split_meta_image(meta, [((0, 0, 0), (0, 0))], (10, 10))[0][1] is meta


def test_split_then_assemble_is_identity():
    meta = gradient((30, 20))
    patterns = [((x, y), (x * 10, y * 10)) for y in range(2) for x in range(3)]
    tiles = split_meta_image(meta, patterns, (10, 10))
    assembled = assemble_tiles(
        [ImageResult(tile) for _coord, tile in tiles], (3, 2), (10, 10), transparent=False
    )
    assert assembled.size == (30, 20)
    assert assembled.tobytes() == meta.tobytes()


def test_assemble_leaves_missing_tiles_transparent_or_bgcolor():
    red = ImageResult(Image.new("RGB", (4, 4), (255, 0, 0)))
    transparent = assemble_tiles([red, None], (2, 1), (4, 4), transparent=True)
    assert transparent.getpixel((1, 1)) == (255, 0, 0, 255)
    assert transparent.getpixel((5, 1)) == (0, 0, 0, 0)
    opaque = assemble_tiles([None, red], (2, 1), (4, 4), transparent=False, bgcolor=(0, 0, 255))
    assert opaque.getpixel((1, 1)) == (0, 0, 255)
    assert opaque.getpixel((5, 1)) == (255, 0, 0)


def test_assemble_first_row_is_top():
    red = ImageResult(Image.new("RGB", (4, 4), (255, 0, 0)))
    image = assemble_tiles([red, None], (1, 2), (4, 4), transparent=True)
    assert image.getpixel((1, 1))[3] == 255
    assert image.getpixel((1, 6))[3] == 0


def test_assemble_composites_tile_alpha_on_bgcolor():
    half = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    result = assemble_tiles([ImageResult(half)], (1, 1), (4, 4), False, (0, 255, 0))
    assert result.getpixel((0, 0)) == (0, 255, 0)


def test_is_single_color():
    assert is_single_color(Image.new("RGB", (8, 8), (1, 2, 3))) == (1, 2, 3)
    assert is_single_color(Image.new("RGBA", (8, 8), (1, 2, 3, 0))) == (1, 2, 3, 0)
    assert is_single_color(gradient((8, 8))) is None
    palette = Image.new("RGB", (8, 8), (9, 8, 7)).quantize(4)
    assert is_single_color(palette) == (9, 8, 7)
    assert is_single_color(Image.new("L", (8, 8), 77)) == (77, 77, 77)


def test_has_transparency():
    assert not has_transparency(Image.new("RGB", (4, 4)))
    assert not has_transparency(Image.new("RGBA", (4, 4), (0, 0, 0, 255)))
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 255))
    image.putpixel((3, 3), (0, 0, 0, 254))
    assert has_transparency(image)
    paletted = Image.new("RGBA", (4, 4), (0, 0, 0, 0)).quantize(method=Image.Quantize.FASTOCTREE)
    assert has_transparency(paletted)


def test_has_transparency_of_palette_with_unused_transparent_index():
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 255, 255])
    image.info["transparency"] = 0
    assert not has_transparency(image)
    image.putpixel((0, 0), 0)
    assert has_transparency(image)
