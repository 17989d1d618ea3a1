"""Image options: output format, mode, transparency, quantization, resampling."""

from __future__ import annotations

from dataclasses import dataclass, replace

_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/tiff": "tiff",
    "image/geotiff": "tiff",
    "image/webp": "webp",
}


def format_mime_type(format_name: str) -> str:
    """Normalize ``png``, ``image/png; mode=8bit``, ``PNG`` ... to a base mime type."""
    text = format_name.strip()
    base = text.split(";")[0].strip().lower()
    if not base.startswith("image/"):
        base = "image/" + base
    if base in ("image/jpg",):
        base = "image/jpeg"
    if base == "image/tif":
        base = "image/tiff"
    return base


def format_extension(format_name: str) -> str:
    """File extension for a format: ``image/jpeg`` -> ``jpeg``, ``image/png`` -> ``png``."""
    mime = format_mime_type(format_name)
    return _EXTENSIONS.get(mime, mime.split("/", 1)[1].replace("+", "_"))


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """How to encode and combine images.

    ``format`` is the full requested format string (may carry ``; mode=8bit``).
    ``colors`` = 0 disables quantization; None means "use the default" (256 for PNG when
    paletted). ``bgcolor`` is RGB(A) 0-255. ``tiff_compression`` is ``raw``, ``tiff_lzw`` or
    ``jpeg`` (None: uncompressed).
    """

    format: str = "image/png"
    mode: str | None = None
    transparent: bool | None = None
    colors: int | None = None
    resampling: str = "bicubic"
    jpeg_quality: int = 90
    opacity: float | None = None
    bgcolor: tuple[int, ...] = (255, 255, 255)
    quantizer: str | None = None
    paletted: bool = True
    tiff_compression: str | None = None

    @property
    def mime_type(self) -> str:
        return format_mime_type(self.format)

    @property
    def extension(self) -> str:
        return format_extension(self.format)

    def with_format(self, format_name: str) -> ImageOptions:
        """A copy for another output format."""
        return replace(self, format=format_name)

    def updated(self, **changes: object) -> ImageOptions:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)  # type: ignore[arg-type]
