"""Feature info pieces shared by WMS and WMTS GetFeatureInfo."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mapproxy.layer.limit import LimitArea
from mapproxy.source.featureinfo import FeatureInfoDoc, FeatureInfoQuery, InfoSource
from mapproxy.util.lazy import lazy_module

if TYPE_CHECKING:
    import shapely
else:  # loaded on first use: shapely and numpy cost ~14 MB
    shapely = lazy_module("shapely")


def point_in(point: shapely.Point, areas: Sequence[LimitArea], query: FeatureInfoQuery) -> bool:
    """True if ``point`` (in the query SRS) lies in every one of ``areas``."""
    return all(area.geometry_in(query.srs).intersects(point) for area in areas)


def query_sources(sources: Iterable[InfoSource], query: FeatureInfoQuery) -> list[FeatureInfoDoc]:
    """The answers of ``sources`` for ``query``, in order; sources without one are left out.

    Raises MapProxyError (SourceError) when a source fails.
    """
    docs: list[FeatureInfoDoc] = []
    for source in sources:
        doc = source.get_feature_info(query)
        if doc is not None:
            docs.append(doc)
    return docs
