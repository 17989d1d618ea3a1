"""Band merging: build each band of the result from weighted bands of other sources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapExtent, MapQuery, MapSource

TARGET_BANDS = ("r", "g", "b", "a", "l")


@dataclass(frozen=True, slots=True)
class BandInput:
    """``band`` (0-based) of the source at ``source_index``, multiplied by ``factor``."""

    source_index: int
    band: int
    factor: float = 1.0


def result_mode(target_bands: Sequence[str]) -> str:
    """PIL mode of the merged image: ``L`` for ``l``, ``RGBA`` with ``a``, else ``RGB``."""
    if "l" in target_bands:
        return "L"
    return "RGBA" if "a" in target_bands else "RGB"


class BandMergeSource:
    """A map source whose bands are sums of weighted source bands, clipped to 0-255.

    Each source is asked once per request, however many bands use it. Target bands
    without inputs are 0 (an unset alpha band is opaque).
    """

    def __init__(
        self,
        sources: Sequence[MapSource],
        bands: Mapping[str, Sequence[BandInput]],
        extent: MapExtent | None = None,
    ) -> None:
        unknown = set(bands) - set(TARGET_BANDS)
        if unknown:
            raise ValueError(f"unknown target bands {sorted(unknown)} (use r, g, b, a or l)")
        if "l" in bands and len(bands) > 1:
            raise ValueError("band l cannot be combined with r, g, b or a")
        self.sources = list(sources)
        self.bands = {name: list(inputs) for name, inputs in bands.items()}
        self.mode = result_mode(list(bands))
        self.extent = extent
        self.transparent = self.mode == "RGBA"
        self.supports_meta_tiles = all(source.supports_meta_tiles for source in self.sources)

    def __repr__(self) -> str:
        return f"BandMergeSource({self.mode}, {self.bands!r})"

    def get_map(self, query: MapQuery) -> ImageResult:
        """The merged image for ``query``; raises SourceError like the sources."""
        used = sorted({item.source_index for inputs in self.bands.values() for item in inputs})
        results = {index: self.sources[index].get_map(query) for index in used}
        arrays = {
            index: _band_array(result.as_image(), query.size) for index, result in results.items()
        }
        width, height = query.size
        channels = [
            self._merged_band(name, arrays, (height, width)) for name in _target_order(self.mode)
        ]
        stacked = channels[0] if len(channels) == 1 else np.stack(channels, axis=-1)
        image = Image.fromarray(stacked, self.mode)
        return ImageResult(
            image,
            size=image.size,
            transparent=self.transparent,
            cacheable=all(result.cacheable for result in results.values()),
        )

    def _merged_band(
        self, name: str, arrays: Mapping[int, np.ndarray], shape: tuple[int, int]
    ) -> np.ndarray:
        inputs = self.bands.get(name)
        if not inputs:
            return np.full(shape, 255 if name == "a" else 0, dtype=np.uint8)
        total = np.zeros(shape, dtype=np.int64)
        for item in inputs:
            source_bands = arrays[item.source_index]
            if item.band < source_bands.shape[-1]:
                # Each weighted band is cut to whole values before summing, as MapProxy does.
                weighted = np.trunc(source_bands[..., item.band] * item.factor)
                total += np.clip(weighted, 0, 255).astype(np.int64)
        return np.clip(total, 0, 255).astype(np.uint8)


def _target_order(mode: str) -> tuple[str, ...]:
    return {"L": ("l",), "RGB": ("r", "g", "b"), "RGBA": ("r", "g", "b", "a")}[mode]


def _band_array(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The image's bands as a (height, width, bands) array; grey and palette images
    count as RGB(A), as MapProxy reads them."""
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    if image.size != tuple(size):
        image = image.resize(size)
    array = np.asarray(image)
    return array[..., np.newaxis] if array.ndim == 2 else array
