"""Stand-in for a ``seed_only`` source outside of mapproxy-seed."""

from __future__ import annotations

from PIL import Image

from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapExtent, MapQuery


class SeedOnlySource:
    """Answers every request with a transparent image, never asking the upstream.

    The result is not cacheable, so only mapproxy-seed fills the cache from the real
    source.
    """

    supports_meta_tiles = True
    seed_only = True  # tile managers rescale (upscale/downscale_tiles) instead

    def __init__(self, extent: MapExtent | None = None) -> None:
        self.transparent = True
        self.extent = extent

    def __repr__(self) -> str:
        return "SeedOnlySource()"

    def get_map(self, query: MapQuery) -> ImageResult:
        """A transparent image of the requested size."""
        image = Image.new("RGBA", query.size, (255, 255, 255, 0))
        return ImageResult(image, size=query.size, transparent=True, cacheable=False)
