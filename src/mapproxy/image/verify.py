"""A cheap check that encoded (cached) image bytes are complete, without decoding them."""

from __future__ import annotations

from mapproxy.image.encode import detect_format

__all__ = ["looks_complete"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def looks_complete(data: bytes | None, image_format: str | None = None) -> bool:
    """False if ``data`` is visibly cut off or broken, without decoding it.

    Walks the chunk structure of PNG and checks the end markers of JPEG, GIF and WebP.
    Data in other formats (TIFF, vector tiles, ...) is accepted, as is empty data unless
    ``image_format`` (a mime type such as ``image/png``) says it must be a raster image.
    """
    if not data:
        return not (image_format or "").startswith("image/")
    detected = detect_format(data)
    if detected == "image/png":
        return _png_complete(data)
    if detected == "image/jpeg":
        # the EOI marker (entropy-coded data never holds it; some writers pad after it)
        return b"\xff\xd9" in data[-1024:]
    if detected == "image/gif":
        return data.rstrip(b"\x00")[-1:] == b"\x3b"
    if detected == "image/webp":
        declared = int.from_bytes(data[4:8], "little") + 8
        return len(data) >= declared
    # no image is shorter than 8 bytes (e.g. a cut-off signature)
    return not (detected is None and (image_format or "").startswith("image/") and len(data) < 8)


def _png_complete(data: bytes) -> bool:
    """True if the PNG chunks fill ``data`` exactly up to (and including) IEND."""
    position = len(_PNG_SIGNATURE)
    end = len(data)
    while position + 8 <= end:
        length = int.from_bytes(data[position : position + 4], "big")
        chunk_type = data[position + 4 : position + 8]
        position += 12 + length  # length, type, data, CRC
        if position > end:
            return False
        if chunk_type == b"IEND":
            return True
    return False
