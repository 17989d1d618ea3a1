"""Split meta images into tiles, assemble tiles into one image, inspect tile pixels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from PIL import Image

from mapproxy.image.result import ImageResult

CoordT = TypeVar("CoordT")

_ALPHA_BANDS = {"RGBA": "A", "LA": "A", "PA": "A", "RGBa": "a", "La": "a"}


def split_meta_image(
    image: Image.Image,
    tile_patterns: Iterable[tuple[CoordT, tuple[int, int]]],
    tile_size: tuple[int, int],
) -> list[tuple[CoordT, Image.Image]]:
    """Cut ``tile_size`` tiles at the (left, top) pixel offsets of ``tile_patterns``.

    ``coord`` is passed through unchanged. Parts outside ``image`` are zero filled
    (transparent for RGBA). A meta image that is exactly one tile is returned as is.
    """
    width, height = tile_size
    tiles: list[tuple[CoordT, Image.Image]] = []
    for coord, (left, top) in tile_patterns:
        if left == 0 and top == 0 and image.size == (width, height):
            tiles.append((coord, image))
        else:
            tiles.append((coord, image.crop((left, top, left + width, top + height))))
    return tiles


def assemble_tiles(
    tiles: Sequence[ImageResult | None],
    grid_size: tuple[int, int],
    tile_size: tuple[int, int],
    transparent: bool,
    bgcolor: tuple[int, ...] = (255, 255, 255),
) -> Image.Image:
    """Paste ``tiles`` (row-major, first row at the top; None = empty) into one image.

    ``grid_size`` is (columns, rows). The result is RGBA with transparent gaps when
    ``transparent``, else RGB on ``bgcolor`` (tile alpha is composited onto it).
    """
    columns, rows = grid_size
    tile_width, tile_height = tile_size
    if len(tiles) > columns * rows:
        raise ValueError(f"{len(tiles)} tiles do not fit a {columns}x{rows} grid")
    size = (columns * tile_width, rows * tile_height)
    if transparent:
        canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    else:
        canvas = Image.new("RGB", size, tuple(bgcolor[:3]))
    for index, tile in enumerate(tiles):
        if tile is None:
            continue
        row, column = divmod(index, columns)
        position = (column * tile_width, row * tile_height)
        image = tile.as_image()
        if transparent or not image.has_transparency_data:
            # Tiles do not overlap: on a transparent canvas a plain copy is exact.
            canvas.paste(image, position)
        else:
            if image.mode != "RGBA":
                image = image.convert("RGBA")
            canvas.paste(image, position, image)
    return canvas


def is_single_color(image: Image.Image) -> tuple[int, ...] | None:
    """The only colour of ``image`` as an RGB or RGBA tuple, or None for several colours."""
    colors = image.getcolors(1)
    if colors is None:
        return None
    color = colors[0][1]
    if image.mode == "RGB" or image.mode == "RGBA":
        return tuple(color)  # type: ignore[arg-type]
    # Palette, grey and other modes: let PIL map the single pixel to RGB(A).
    target = "RGBA" if image.has_transparency_data else "RGB"
    pixel = image.crop((0, 0, 1, 1)).convert(target).getpixel((0, 0))
    return tuple(pixel)  # type: ignore[arg-type]


def has_transparency(image: Image.Image) -> bool:
    """True if any pixel of ``image`` is not fully opaque."""
    if not image.has_transparency_data:
        return False
    band = _ALPHA_BANDS.get(image.mode)
    if band is not None:
        return _band_minimum(image.getchannel(band)) < 255
    if image.mode == "P" and image.palette is not None and image.palette.mode != "RGBA":
        transparency = image.info.get("transparency")
        histogram = image.histogram()
        if isinstance(transparency, int):
            return transparency < len(histogram) and histogram[transparency] > 0
        if isinstance(transparency, bytes):
            return any(
                alpha < 255 and histogram[index] > 0
                for index, alpha in enumerate(transparency[: len(histogram)])
            )
    return _band_minimum(image.convert("RGBA").getchannel("A")) < 255


def _band_minimum(band: Image.Image) -> int:
    low, _high = band.getextrema()
    return int(low)  # type: ignore[arg-type]
