"""Watermark text on tiles: placement per tile row, spacing, colour blending."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image.watermark import DEFAULT_COLOR, Watermark, parse_color

WHITE = (255, 255, 255)


def changed_box(image: Image.Image, background: tuple[int, ...] = WHITE) -> tuple[int, ...] | None:
    """Bounding box (left, top, right, bottom) of pixels differing from ``background``."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    diff = np.abs(pixels - np.array(background[:3])).max(axis=-1) > 10
    if not diff.any():
        return None
    rows = np.flatnonzero(diff.any(axis=1))
    cols = np.flatnonzero(diff.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def white_tile() -> Image.Image:
    return Image.new("RGB", (256, 256), WHITE)


def test_text_is_centred_on_even_rows() -> None:
    marked = Watermark("MapProxy Test", opacity=200)(TileCoord(3, 2, 4), white_tile())
    box = changed_box(marked)
    assert box is not None
    left, top, right, bottom = box
    assert abs(left - (256 - right)) <= 3  # horizontally centred
    assert 110 < top < 145 and 128 < bottom < 165  # on (just below) the middle line
    assert 14 <= bottom - top <= 30  # one line of 24 px text


def test_text_straddles_the_tile_borders_on_odd_rows() -> None:
    """Odd rows get the text shifted by half a tile: halves at both edges, none in the middle."""
    marked = Watermark("MapProxy Test", opacity=200)(TileCoord(3, 1, 4), white_tile())
    box = changed_box(marked)
    assert box is not None
    assert box[0] == 0 and box[2] == 256
    middle = marked.crop((100, 0, 156, 256))
    assert changed_box(middle) is None


def test_wide_spacing_marks_only_every_second_tile_and_never_shifts() -> None:
    mark = Watermark("MapProxy Test", spacing="wide")
    tile = white_tile()
    assert mark(TileCoord(0, 0, 2), tile) is tile
    assert mark(TileCoord(1, 1, 2), tile) is tile
    for coord in (TileCoord(1, 0, 2), TileCoord(0, 1, 2)):
        box = changed_box(mark(coord, white_tile()))
        assert box is not None
        assert box[0] > 20 and box[2] < 236  # centred, not cut at the edges


def test_colour_is_blended_with_the_opacity() -> None:
    marked = Watermark("MMMM", color=(0, 0, 255), opacity=200)(TileCoord(0, 0, 0), white_tile())
    colors = {color for _count, color in marked.getcolors(65536)}
    # full glyph pixels: 255 * 55/255 + 0 * 200/255 = 55 (+-1 rounding)
    core = min(colors, key=lambda color: color[0])
    assert abs(core[0] - 55) <= 1 and abs(core[1] - 55) <= 1 and core[2] == 255


def test_default_look_is_faint_grey() -> None:
    marked = Watermark("MMMM")(TileCoord(0, 0, 0), white_tile())
    darkest = min(color[0] for _count, color in marked.getcolors(65536))
    # grey 128 at opacity 30 over white: 255 - (255 - 128) * 30 / 255 = 240
    assert abs(darkest - 240) <= 1


def test_transparent_tiles_get_the_text_blended_as_by_the_reference() -> None:
    # MapProxy 7.0.0 pastes the text with its own alpha as mask: every channel, alpha
    # too, moves towards the text colour (alpha: the opacity) by opacity/255
    tile = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    marked = Watermark("MMMM", color=(255, 0, 0), opacity=100)(TileCoord(0, 0, 0), tile)
    assert marked.mode == "RGBA"
    assert marked.getpixel((0, 0)) == (0, 0, 0, 0)
    core = max((color for _count, color in marked.getcolors(65536)), key=lambda c: c[3])
    assert core == (100, 0, 0, 39)  # as the reference's tile


def test_half_transparent_tiles_blend_alpha_towards_the_text() -> None:
    tile = Image.new("RGBA", (256, 256), (0, 238, 0, 128))
    marked = Watermark("MMMM", color=(0, 0, 0), opacity=200)(TileCoord(0, 0, 0), tile)
    assert marked.getpixel((0, 0)) == (0, 238, 0, 128)
    core = min((color for _count, color in marked.getcolors(65536)), key=lambda c: c[1])
    # the reference's tile: (0, 51, 0, 184); alpha compositing would give (0, 29, 0, 228)
    assert core == (0, 51, 0, 184)


def test_paletted_tiles_are_marked() -> None:
    tile = white_tile().convert("P")
    marked = Watermark("MMMM", color=(0, 0, 0), opacity=255)(TileCoord(0, 0, 0), tile)
    assert marked.mode == "RGB"
    assert changed_box(marked) is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_COLOR),
        ("#ff8000", (255, 128, 0)),
        ("#f80", (255, 136, 0)),
        ([10, 20, 30], (10, 20, 30)),
    ],
)
def test_parse_color(value: object, expected: tuple[int, int, int]) -> None:
    assert parse_color(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["#12", "#gggggg", [1, 2], [1, 2, 300]])
def test_parse_color_rejects_invalid_values(value: object) -> None:
    with pytest.raises(ValueError):
        parse_color(value)  # type: ignore[arg-type]
