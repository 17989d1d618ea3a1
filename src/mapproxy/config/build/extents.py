"""Bboxes and extents from config values: ``bbox`` options, coverages, unions."""

from __future__ import annotations

import os
from collections.abc import Sequence

from mapproxy.config.build.coverages import load_coverage
from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.models.common import CoverageConfig
from mapproxy.coverage import Coverage
from mapproxy.source.base import LazyMapExtent, MapExtent
from mapproxy.srs import get_srs, merge_bbox

WORLD_EXTENT = MapExtent((-180.0, -90.0, 180.0, 90.0), get_srs("EPSG:4326"))


def union_extent(extents: Sequence[MapExtent]) -> MapExtent:
    """Union of extents, in EPSG:4326 (computed on first use) unless all share one SRS."""
    first = extents[0]
    if all(extent.srs == first.srs for extent in extents):
        bbox = first.bbox
        for extent in extents[1:]:
            bbox = merge_bbox(bbox, extent.bbox)
        return MapExtent(bbox, first.srs)
    return LazyMapExtent(lambda: _union_in_wgs84(extents))


def _union_in_wgs84(extents: Sequence[MapExtent]) -> MapExtent:
    wgs84 = get_srs("EPSG:4326")
    bbox = extents[0].bbox_for(wgs84)
    for extent in extents[1:]:
        bbox = merge_bbox(bbox, extent.bbox_for(wgs84))
    return MapExtent(bbox, wgs84)


def coverage_extent(
    coverage: CoverageConfig | None, path: str, paths: ConfigPaths | None = None
) -> MapExtent | None:
    """The bbox extent of the ``coverage`` of the source or cache at ``path`` (None: none).

    ``paths`` resolves coverage files (default: relative to the working directory).
    """
    if coverage is None:
        return None
    loaded = load_coverage(coverage, f"{path}.coverage", paths or ConfigPaths(os.getcwd(), "."))
    return coverage_map_extent(loaded)


def coverage_map_extent(coverage: Coverage) -> MapExtent:
    """The bbox of ``coverage`` as a MapExtent in the coverage's SRS."""
    return MapExtent(coverage.bbox, coverage.srs)
