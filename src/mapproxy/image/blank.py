"""Blank (empty) images: transparent or filled with the background colour."""

from __future__ import annotations

from functools import lru_cache

from PIL import Image

from mapproxy.image.encode import encode_image
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult


def blank_image(size: tuple[int, int], options: ImageOptions) -> ImageResult:
    """An empty image: transparent RGBA if ``options.transparent``, else ``options.bgcolor``.

    The encoded bytes are cached per (size, options), so serving empty tiles costs
    no encoding. With ``transparent`` an RGBA ``bgcolor`` (e.g. an ``on_error`` colour
    like ``#ff000080``) is used as the fill instead of fully transparent black.
    """
    data = _blank_bytes((int(size[0]), int(size[1])), options)
    return ImageResult(
        data,
        format=options.format,
        size=size,
        transparent=bool(options.transparent),
    )


def create_blank(size: tuple[int, int], options: ImageOptions) -> Image.Image:
    """A new, uncached PIL image for ``blank_image`` (callers may draw on it)."""
    bgcolor = tuple(options.bgcolor)
    if options.transparent:
        return Image.new("RGBA", size, bgcolor if len(bgcolor) == 4 else (0, 0, 0, 0))
    return Image.new("RGB", size, bgcolor[:3])


@lru_cache(maxsize=256)
def _blank_bytes(size: tuple[int, int], options: ImageOptions) -> bytes:
    return encode_image(create_blank(size, options), options)
