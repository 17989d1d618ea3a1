"""Debug source: transparent images showing their own bbox, resolution and SRS."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapExtent, MapQuery

__all__ = ["DebugSource", "debug_text"]

_TEXT_COLOR = (0, 0, 0, 255)
_HALO_COLOR = (255, 255, 255, 200)
_BORDER_COLOR = (255, 0, 0, 255)


def debug_text(query: MapQuery) -> list[str]:
    """The lines drawn for ``query``: resolution, bbox corners and SRS code."""
    minx, miny, maxx, maxy = query.bbox
    res_x = (maxx - minx) / max(query.size[0], 1)
    res_y = (maxy - miny) / max(query.size[1], 1)
    digits = 8 if query.srs.is_latlong else 2
    res = f"res: {res_x:.{digits + 2}f}"
    if abs(res_x - res_y) > max(abs(res_x), abs(res_y)) * 1e-6:
        res += f" / {res_y:.{digits + 2}f}"
    return [
        res,
        f"{minx:.{digits}f}, {miny:.{digits}f}",
        f"{maxx:.{digits}f}, {maxy:.{digits}f}",
        query.srs.code,
    ]


class DebugSource:
    """Renders a bordered transparent image with the request's bbox/resolution/SRS."""

    # Each tile shows its own bbox, so tiles are rendered one by one (as MapProxy does).
    supports_meta_tiles = False
    transparent = True
    extent: MapExtent | None = None

    def __repr__(self) -> str:
        return "DebugSource()"

    def get_map(self, query: MapQuery) -> ImageResult:
        """A transparent ``query.size`` image with a 1 px border and the debug text."""
        width, height = query.size
        image = Image.new("RGBA", (width, height), (255, 255, 255, 0))
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, width - 1, height - 1), outline=_BORDER_COLOR)
        font = ImageFont.load_default()
        lines = debug_text(query)
        boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
        line_height = max(box[3] - box[1] for box in boxes) + 4
        top = (height - line_height * len(lines)) // 2
        for index, (line, box) in enumerate(zip(lines, boxes, strict=True)):
            text_width = box[2] - box[0]
            x = (width - text_width) // 2
            y = top + index * line_height
            draw.text(
                (x, y), line, font=font, fill=_TEXT_COLOR, stroke_width=1, stroke_fill=_HALO_COLOR
            )
        return ImageResult(image, format=query.format, size=query.size, transparent=True)
