"""``on_error`` handling shared by HTTP sources: replacement images for upstream failures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image

from mapproxy.errors import ConfigurationError, SourceError
from mapproxy.image.result import ImageResult

__all__ = ["OnError", "OnErrorResponse", "StaleAuthorizingResult", "parse_color"]


class StaleAuthorizingResult(ImageResult):
    """An ``on_error`` image with ``authorize_stale: true``.

    Tile managers refreshing a stale tile serve that tile instead; everyone else
    (direct layers, tiles without a stale version) uses this image as is.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class OnErrorResponse:
    """What to return for one kind of failure: a single-colour RGBA image."""

    color: tuple[int, int, int, int]
    cacheable: bool = False
    authorize_stale: bool = False

    def image(self, size: tuple[int, int], format: str) -> ImageResult:
        """A ``size`` image of ``color``; not cacheable unless configured with ``cache: true``."""
        image = Image.new("RGBA", size, self.color)
        result_class = StaleAuthorizingResult if self.authorize_stale else ImageResult
        return result_class(
            image,
            format=format,
            size=size,
            transparent=self.color[3] < 255,
            cacheable=self.cacheable,
        )


def parse_color(value: object) -> tuple[int, int, int, int]:
    """``transparent``, ``#rrggbb``, ``#rrggbbaa`` or ``[r, g, b(, a)]`` as an RGBA tuple."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "transparent":
            return (255, 255, 255, 0)
        hex_digits = text[1:] if text.startswith("#") else text
        if len(hex_digits) in (6, 8):
            try:
                channels = [int(hex_digits[i : i + 2], 16) for i in range(0, len(hex_digits), 2)]
            except ValueError:
                channels = []
            if channels:
                if len(channels) == 3:
                    channels.append(255)
                return (channels[0], channels[1], channels[2], channels[3])
    elif isinstance(value, Sequence) and len(value) in (3, 4):
        try:
            channels = [int(v) for v in value]
        except (TypeError, ValueError):
            channels = []
        if channels and all(0 <= v <= 255 for v in channels):
            if len(channels) == 3:
                channels.append(255)
            return (channels[0], channels[1], channels[2], channels[3])
    raise ConfigurationError(
        f"invalid on_error response {value!r}: use 'transparent', '#rrggbb[aa]' or [r, g, b(, a)]"
    )


class OnError:
    """The parsed ``on_error`` option: HTTP status (int) or ``other`` -> OnErrorResponse."""

    def __init__(self, config: Mapping[object, object] | None = None) -> None:
        self.responses: dict[int | str, OnErrorResponse] = {}
        for key, entry in (config or {}).items():
            if isinstance(key, str) and key.strip().lower() == "other":
                status: int | str = "other"
            else:
                try:
                    status = int(str(key))
                except ValueError:
                    raise ConfigurationError(
                        f"invalid on_error key {key!r}: use an HTTP status code or 'other'"
                    ) from None
            if not isinstance(entry, Mapping) or "response" not in entry:
                raise ConfigurationError(f"on_error.{key}: missing 'response'")
            self.responses[status] = OnErrorResponse(
                color=parse_color(entry["response"]),
                cacheable=bool(entry.get("cache", False)),
                authorize_stale=bool(entry.get("authorize_stale", False)),
            )

    def __bool__(self) -> bool:
        return bool(self.responses)

    def response_for(self, status: int | None) -> OnErrorResponse | None:
        """The response for a failure with HTTP ``status`` (None: no/invalid response)."""
        if status is not None and status in self.responses:
            return self.responses[status]
        return self.responses.get("other")

    def handle(
        self, error: SourceError, status: int | None, size: tuple[int, int], format: str
    ) -> ImageResult:
        """The configured replacement image for ``error``, or re-raise ``error``."""
        response = self.response_for(status)
        if response is None:
            raise error
        return response.image(size, format)
