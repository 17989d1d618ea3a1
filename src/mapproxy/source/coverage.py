"""Source coverages: skip requests outside a source's coverage, clip its results to it."""

from __future__ import annotations

from PIL import Image

from mapproxy.coverage import Coverage, apply_clip
from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapQuery
from mapproxy.srs import SRS, BBox


def source_coverage(source: object) -> Coverage | None:
    """The ``coverage`` the config builder attached to ``source``, if any."""
    coverage = getattr(source, "coverage", None)
    return coverage if isinstance(coverage, Coverage) else None


def clip_result(
    result: ImageResult, coverage: Coverage, bbox: BBox, size: tuple[int, int], srs: SRS
) -> ImageResult:
    """``result`` (an image of ``bbox``/``size``) made transparent outside ``coverage``."""
    clip = coverage.clip_for(bbox, size, srs)
    if clip.covers_all:
        return result
    image = result.as_image()
    mask = clip.mask if clip.mask is not None else Image.new("L", image.size, 0)
    # Outside pixels become transparent white, as in MapProxy.
    clipped = Image.new("RGBA", image.size, (255, 255, 255, 0))
    clipped.paste(apply_clip(image, mask), (0, 0), mask)
    clipped_result = ImageResult(clipped, size=clipped.size, transparent=True)
    clipped_result.cacheable = result.cacheable
    clipped_result.opacity = result.opacity
    return clipped_result


def get_covered_map(source: object, coverage: Coverage, query: MapQuery) -> ImageResult | None:
    """``source``'s image for ``query``, None outside ``coverage``; clipped if it says so."""
    if not coverage.intersects(query.bbox, query.srs):
        return None
    result: ImageResult = source.get_map(query)  # type: ignore[attr-defined]
    if coverage.clip:
        result = clip_result(result, coverage, query.bbox, query.size, query.srs)
    return result
