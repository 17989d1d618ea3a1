"""Render message text onto images (WMS INIMAGE exceptions, debug source, error notes)."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from mapproxy.image.blank import create_blank
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult

Placement = Literal["top-left", "center", "bottom-right"]

_PADDING_PIXELS = 5
_LINE_SPACING_PIXELS = 3

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Fonts are shared; a FreeType face must not render in two threads at once.
_font_lock = threading.Lock()


def message_image(
    text: str,
    size: tuple[int, int],
    options: ImageOptions,
    *,
    color: tuple[int, ...] = (0, 0, 0),
    placement: Placement = "top-left",
    font_size: int = 12,
    halo: tuple[int, ...] | None = None,
    cacheable: bool = False,
) -> ImageResult:
    """A blank image (as ``blank_image``) with the (multi-line, wrapped) ``text`` drawn on it.

    Not cacheable unless asked for: messages mostly report errors.
    """
    image = create_blank((int(size[0]), int(size[1])), options)
    draw_message(image, text, color=color, placement=placement, font_size=font_size, halo=halo)
    return ImageResult(
        image, size=image.size, transparent=bool(options.transparent), cacheable=cacheable
    )


def draw_message(
    image: Image.Image,
    text: str,
    *,
    color: tuple[int, ...] = (0, 0, 0),
    placement: Placement = "top-left",
    font_size: int = 12,
    halo: tuple[int, ...] | None = None,
) -> None:
    """Draw ``text`` onto ``image`` in place, wrapped to the image width.

    ``color`` and ``halo`` (an outline for legibility over maps) are RGB(A); RGBA
    colours are blended. Lines that do not fit the image height are cut off.
    """
    if not text:
        return
    with _font_lock:
        _draw_locked(image, text, color, placement, font_size, halo)


def _draw_locked(
    image: Image.Image,
    text: str,
    color: tuple[int, ...],
    placement: Placement,
    font_size: int,
    halo: tuple[int, ...] | None,
) -> None:
    font = _default_font(font_size)
    max_width = max(1, image.width - 2 * _PADDING_PIXELS)
    block = "\n".join(wrap_text(text, font, max_width))
    if image.mode in ("RGB", "RGBA"):
        draw = ImageDraw.Draw(image, "RGBA")
    else:
        draw = ImageDraw.Draw(image)
        color = color[0] if image.mode in ("L", "LA", "I", "F") else color  # type: ignore[assignment]
    stroke = 1 if halo is not None else 0
    left, top, right, bottom = draw.multiline_textbbox(
        (0, 0), block, font=font, spacing=_LINE_SPACING_PIXELS, stroke_width=stroke
    )
    text_width, text_height = right - left, bottom - top
    if placement == "center":
        x = (image.width - text_width) / 2 - left
        y = (image.height - text_height) / 2 - top
        align = "center"
    elif placement == "bottom-right":
        x = image.width - _PADDING_PIXELS - text_width - left
        y = image.height - _PADDING_PIXELS - text_height - top
        align = "right"
    else:
        x, y = _PADDING_PIXELS - left, _PADDING_PIXELS - top
        align = "left"
    draw.multiline_text(
        (x, y),
        block,
        fill=color,
        font=font,
        spacing=_LINE_SPACING_PIXELS,
        align=align,
        stroke_width=stroke,
        stroke_fill=halo,
    )


def wrap_text(text: str, font: _Font, max_width: float) -> list[str]:
    """Split ``text`` into lines no wider than ``max_width`` pixels (words kept if possible)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = word
            # A single word wider than the image is broken into pieces.
            while len(line) > 1 and font.getlength(line) > max_width:
                cut = _fitting_prefix(line, font, max_width)
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return lines


def _fitting_prefix(word: str, font: _Font, max_width: float) -> int:
    """Length of the longest prefix of ``word`` that fits (at least one character)."""
    low, high = 1, len(word)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(word[:middle]) <= max_width:
            low = middle
        else:
            high = middle - 1
    return low


@lru_cache(maxsize=16)
def _default_font(size: int) -> _Font:
    """Pillow's built-in font at ``size`` pixels (bitmap fallback without FreeType)."""
    return ImageFont.load_default(size=size)
