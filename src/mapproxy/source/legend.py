"""Legend graphics: GetLegendGraphic from WMS sources, static legend URLs/files, stacking."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from mapproxy.errors import SourceError
from mapproxy.http.client import HTTPClient, UpstreamHTTPError
from mapproxy.image.result import ImageResult
from mapproxy.source.wms import WMSSource, _merge_query

__all__ = [
    "LegendQuery",
    "LegendSource",
    "StaticLegendSource",
    "WMSLegendSource",
    "merge_legend_json",
    "stack_legends",
]


@dataclass(frozen=True, slots=True)
class LegendQuery:
    """What legend to fetch: ``format`` mime type and the optional map ``scale``."""

    format: str = "image/png"
    scale: float | None = None


class LegendSource(Protocol):
    """Provides legend graphics (raw bodies, one per upstream layer)."""

    def get_legends(self, query: LegendQuery) -> list[bytes]:
        """The legend bodies for ``query``; raises SourceError."""
        ...


class WMSLegendSource:
    """GetLegendGraphic requests to a WMS source, one per layer of the source."""

    def __init__(self, source: WMSSource, layers: Sequence[str] | None = None) -> None:
        self.source = source
        configured = source.params.get("layers", "")
        self.layers = list(layers) if layers else [n for n in configured.split(",") if n]

    def __repr__(self) -> str:
        return f"WMSLegendSource({self.source.url!r}, layers={self.layers!r})"

    def legend_url(self, layer: str, query: LegendQuery) -> str:
        """The upstream GetLegendGraphic URL for one layer."""
        source = self.source
        params: list[tuple[str, str]] = [
            ("request", "GetLegendGraphic"),
            ("service", "WMS"),
            ("version", source.version),
            ("layer", layer),
            ("format", query.format),
            ("sld_version", "1.1.0"),
        ]
        if source.transparent:
            params.append(("transparent", "TRUE"))
        for name, value in source.params.items():
            if name not in ("layers", "styles", "sld", "sld_body"):
                params.append((name, value))
        if query.scale is not None:
            params.append(("scale", repr(float(query.scale))))
        return _merge_query(source.url, params)

    def get_legends(self, query: LegendQuery) -> list[bytes]:
        """One legend body per layer."""
        bodies: list[bytes] = []
        for layer in self.layers:
            url = self.legend_url(layer, query)
            try:
                with self.source.request_limiter or contextlib.nullcontext():
                    bodies.append(self.source.client.open(url).body)
            except UpstreamHTTPError as error:
                raise SourceError(str(error)) from None
        return bodies


class StaticLegendSource:
    """A fixed legend: an http(s) URL (fetched with ``client``) or a local file path."""

    def __init__(
        self, url: str | None = None, path: str | None = None, client: HTTPClient | None = None
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give either url or path")
        self.url = url
        self.path = path
        self.client = client

    def __repr__(self) -> str:
        return f"StaticLegendSource({self.url or self.path!r})"

    def get_legends(self, query: LegendQuery) -> list[bytes]:
        """The legend body (whatever format was configured)."""
        if self.path is not None:
            try:
                with open(self.path, "rb") as legend_file:
                    return [legend_file.read()]
            except OSError as error:
                raise SourceError(f"legend file {self.path}: {error.strerror}") from None
        assert self.url is not None
        client = self.client or HTTPClient()
        try:
            return [client.open(self.url).body]
        except UpstreamHTTPError as error:
            raise SourceError(str(error)) from None


def stack_legends(bodies: Sequence[bytes]) -> Image.Image | None:
    """The decodable images of ``bodies`` stacked top to bottom on transparency."""
    images: list[Image.Image] = []
    for body in bodies:
        try:
            images.append(ImageResult(body).as_image().convert("RGBA"))
        except (OSError, ValueError, SyntaxError):
            continue
    if not images:
        return None
    if len(images) == 1:
        return images[0]
    width = max(image.width for image in images)
    height = sum(image.height for image in images)
    result = Image.new("RGBA", (width, height), (255, 255, 255, 0))
    top = 0
    for image in images:
        result.paste(image, (0, top))
        top += image.height
    return result


def merge_legend_json(bodies: Sequence[bytes]) -> bytes:
    """``{"Legend": [...]}`` with the ``Legend`` entries of every JSON body."""
    entries: list[Any] = []
    for body in bodies:
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("Legend"), list):
            entries.extend(parsed["Legend"])
    return json.dumps({"Legend": entries}).encode("utf-8")
