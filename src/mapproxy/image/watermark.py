"""Watermarks: a semi-transparent text drawn onto each newly created tile."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from PIL import Image, ImageDraw, ImageFont

DEFAULT_COLOR = (128, 128, 128)

FONT_NAME = "DejaVuSans.ttf"  # the font MapProxy draws watermarks with

# Where distributions install DejaVu Sans (Debian/Ubuntu: fonts-dejavu-core).
SYSTEM_FONT_DIRS: tuple[str, ...] = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu-sans-fonts",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/local/share/fonts",
    "/Library/Fonts",
)

# Fonts are shared; a FreeType face must not render in two threads at once.
_font_lock = threading.Lock()


class TilePosition(Protocol):
    """Anything with the column and row of a tile (a ``TileCoord``)."""

    @property
    def x(self) -> int:
        """Column, counted from the grid origin."""
        ...

    @property
    def y(self) -> int:
        """Row, counted from the grid origin."""
        ...


def parse_color(value: str | list[int] | tuple[int, ...] | None) -> tuple[int, int, int]:
    """An RGB tuple from ``#rrggbb`` (``#rgb``) or a list of three ints; None: grey."""
    if value is None:
        return DEFAULT_COLOR
    if isinstance(value, str):
        hex_digits = value.strip().lstrip("#")
        if len(hex_digits) == 3:
            hex_digits = "".join(2 * digit for digit in hex_digits)
        if len(hex_digits) not in (6, 8):
            raise ValueError(f"invalid colour {value!r} (use #rrggbb)")
        try:
            red, green, blue = (int(hex_digits[i : i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            raise ValueError(f"invalid colour {value!r} (use #rrggbb)") from None
        return red, green, blue
    if len(value) < 3 or not all(0 <= int(v) <= 255 for v in value[:3]):
        raise ValueError(f"invalid colour {list(value)!r} (use three values 0-255)")
    return int(value[0]), int(value[1]), int(value[2])


@dataclass(frozen=True, slots=True)
class Watermark:
    """Draws ``text`` centred on tiles, blended with ``opacity`` (0-255).

    As in MapProxy, the text of every odd row (counted from the grid origin) is
    shifted by half a tile, so it straddles the tile borders; with ``spacing``
    ``wide`` only every second tile (checkerboard, x + y odd) gets a centred text.
    """

    text: str
    font_size: int = 24
    color: tuple[int, int, int] = DEFAULT_COLOR
    opacity: int = 30
    spacing: str | None = None
    # a TrueType file (MapProxy: DejaVuSans.ttf in ``image.font_dir``); None: Pillow's own
    font_path: str | None = None

    def __call__(self, coord: TilePosition, image: Image.Image) -> Image.Image:
        """``image`` with the watermark of tile ``coord`` (a new RGB(A) image)."""
        wide = self.spacing == "wide"
        if not self.text or (wide and (coord.x + coord.y) % 2 == 0):
            return image
        shifted = not wide and coord.y % 2 == 1
        return self.draw(image, shifted)

    def draw(self, image: Image.Image, shifted: bool = False) -> Image.Image:
        """``image`` with the text centred, or (``shifted``) centred on its left/right edges."""
        base = image.convert("RGBA") if image.has_transparency_data else image.convert("RGB")
        layer = Image.new("RGBA", base.size, (*self.color, 0))
        draw = ImageDraw.Draw(layer)
        font = _font(self.font_size, self.font_path)
        with _font_lock:
            left, top, right, bottom = font.getbbox(self.text)
            # Centre the glyph box; the reference places the text lower by the glyph
            # top offset as well, which keeps the same look.
            text_width = right - left
            y = (base.height - (bottom - top) + 1) // 2 + top
            fill = (*self.color, max(0, min(255, self.opacity)))
            centres = [0, base.width] if shifted else [base.width / 2]
            # whole pixels, halves away from zero: pixel-identical to the reference
            positions = [_round_half_away(centre - text_width / 2) for centre in centres]
            for position in positions:
                draw.text((position, y), self.text, font=font, fill=fill)
        # A paste with the text's alpha as mask blends the alpha channel too (towards the
        # text's alpha), unlike alpha compositing: pixel-identical to the reference.
        base.paste(layer, (0, 0), layer)
        return base


def _round_half_away(value: float) -> int:
    return int(math.floor(abs(value) + 0.5) * (1 if value >= 0 else -1))


def find_font(font_dir: str | None, system_dirs: Sequence[str] = SYSTEM_FONT_DIRS) -> str | None:
    """The path of a loadable ``DejaVuSans.ttf`` in ``font_dir``, else in the first of
    ``system_dirs`` holding one; None: draw with Pillow's built-in font.

    Meant to run once when the configuration is loaded (it reads the files).
    """
    directories = [font_dir] if font_dir else []
    for directory in [*directories, *system_dirs]:
        path = os.path.join(directory, FONT_NAME)
        if not os.path.isfile(path):
            continue
        try:
            # not truetype(): on errors it silently loads a same-named system font
            ImageFont.FreeTypeFont(path, 10)
        except OSError:
            continue  # not a usable font file; try the next place
        return path
    return None


@lru_cache(maxsize=16)
def _font(size: int, path: str | None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font at ``path`` (else Pillow's built-in scalable font) at ``size`` pixels."""
    if path is not None:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)
