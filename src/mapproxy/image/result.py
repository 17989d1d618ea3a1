"""ImageResult: an image that is either encoded bytes or a PIL image, converted lazily."""

from __future__ import annotations

from PIL import Image

from mapproxy.image.decode import decode_image
from mapproxy.image.options import ImageOptions, format_mime_type


class ImageResult:
    """Image data from a source, cache or merge.

    Holding the encoded bytes lets a cached tile be served untouched; ``as_image``
    decodes on first use. ``cacheable`` is False for results that must not be stored
    (partial source errors, on_error replacement images). ``opacity`` (0.0-1.0, None = as
    is) is the source's ``image.opacity``, applied when the result is merged with others.
    """

    __slots__ = ("_bytes", "_format", "_image", "cacheable", "opacity", "size", "transparent")

    def __init__(
        self,
        source: bytes | Image.Image,
        format: str | None = None,
        size: tuple[int, int] | None = None,
        transparent: bool = False,
        cacheable: bool = True,
    ) -> None:
        if isinstance(source, bytes):
            self._bytes: bytes | None = source
            self._image: Image.Image | None = None
        else:
            self._bytes = None
            self._image = source
            size = size or source.size
        self._format = format_mime_type(format) if format else None
        self.size = size
        self.transparent = transparent
        self.cacheable = cacheable
        self.opacity: float | None = None

    @property
    def format(self) -> str | None:
        """Mime type of the encoded bytes, if known."""
        return self._format

    def as_image(self) -> Image.Image:
        """Decoded PIL image (decoded once, then kept)."""
        if self._image is None:
            assert self._bytes is not None
            image = decode_image(self._bytes)
            self._image = image
            self.size = image.size
        return self._image

    def as_bytes(self, options: ImageOptions | None = None) -> bytes:
        """Encoded bytes in ``options.format``; original bytes are reused when formats match."""
        from mapproxy.image.encode import encode_image

        if self._bytes is not None and (
            options is None or (self._format is not None and self._format == options.mime_type)
        ):
            return self._bytes
        if options is None:
            options = ImageOptions(format=self._format or "image/png")
        return encode_image(self.as_image(), options)
