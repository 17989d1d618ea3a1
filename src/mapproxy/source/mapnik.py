"""Mapnik source: render a Mapnik XML map file in-process (needs the ``mapnik`` package)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from PIL import Image

from mapproxy.errors import SourceError
from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapExtent, MapQuery

__all__ = ["MapnikSource", "mapnik_available"]


def mapnik_available() -> bool:
    """True if the ``mapnik`` Python bindings can be imported."""
    try:
        import mapnik  # noqa: F401
    except ImportError:
        return False
    return True


class MapnikSource:
    """Renders ``mapfile`` with Mapnik; ``layers`` (if given) are the only active ones.

    Maps are loaded once per thread (Mapnik map objects are not thread-safe); with
    ``multithreaded`` false all renderings are serialised by one lock.
    """

    supports_meta_tiles = True

    def __init__(
        self,
        mapfile: str,
        layers: Sequence[str] | None = None,
        transparent: bool = False,
        scale_factor: float | None = None,
        multithreaded: bool = False,
        extent: MapExtent | None = None,
    ) -> None:
        self.mapfile = mapfile
        self.layers = set(layers) if layers else None
        self.transparent = transparent
        self.scale_factor = scale_factor
        self.multithreaded = multithreaded
        self.extent = extent
        self._local = threading.local()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MapnikSource({self.mapfile!r})"

    def _map(self, mapnik: Any) -> Any:
        mapnik_map = getattr(self._local, "map", None)
        if mapnik_map is None:
            mapnik_map = mapnik.Map(256, 256)
            mapnik.load_map(mapnik_map, self.mapfile)
            if self.layers is not None:
                for layer in mapnik_map.layers:
                    layer.active = layer.name in self.layers
            self._local.map = mapnik_map
        return mapnik_map

    def get_map(self, query: MapQuery) -> ImageResult:
        """Render ``query``; raises SourceError when Mapnik fails."""
        import mapnik

        if self.multithreaded:
            return self._render(mapnik, query)
        with self._lock:
            return self._render(mapnik, query)

    def _render(self, mapnik: Any, query: MapQuery) -> ImageResult:
        width, height = query.size
        try:
            mapnik_map = self._map(mapnik)
            mapnik_map.resize(width, height)
            mapnik_map.srs = "+init=" + query.srs.code.lower()
            if not self.transparent:
                mapnik_map.background = mapnik.Color("black")
            mapnik_map.zoom_to_box(mapnik.Box2d(*query.bbox))
            image = mapnik.Image(width, height)
            if self.scale_factor:
                mapnik.render(mapnik_map, image, self.scale_factor)
            else:
                mapnik.render(mapnik_map, image)
            data = image.tostring()
        except Exception as error:  # Mapnik raises plain RuntimeErrors
            raise SourceError(f"mapnik failed to render {self.mapfile}: {error}") from None
        pil_image = Image.frombytes("RGBA", (width, height), data)
        return ImageResult(
            pil_image, format=query.format, size=query.size, transparent=self.transparent
        )
