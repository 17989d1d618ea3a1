"""ArcGIS REST source: ``export``/``exportImage`` map requests and ``identify`` feature info."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from mapproxy.http.client import HTTPClient
from mapproxy.source.featureinfo import (
    FeatureInfoDoc,
    FeatureInfoQuery,
    _reprojected,
    fetch_info,
    info_type,
    point_in_extent,
)
from mapproxy.source.wms import WMSSource, _format_number
from mapproxy.srs import SRS, BBox

__all__ = ["ArcGISInfoSource", "ArcGISSource", "arcgis_format", "sr_code"]


def arcgis_format(mime_type: str) -> str:
    """The ``format`` value for a mime type: ``image/png`` -> ``png``."""
    subtype = mime_type.split(";", 1)[0].strip()
    return subtype.split("/", 1)[1] if "/" in subtype else subtype


def sr_code(srs: SRS) -> str:
    """The spatial reference number ArcGIS expects (``EPSG:3857`` -> ``3857``)."""
    code = srs.code
    if code.upper() == "CRS:84":
        return "4326"
    return code.rsplit(":", 1)[-1]


def _req_value(value: object) -> str:
    # bools are sent as Python writes them (``True``), as the reference does
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _query_string(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name, safe='')}={quote(value, safe=',')}" for name, value in params)


class ArcGISSource(WMSSource):
    """A MapServer or ImageServer of the ArcGIS REST API (``url`` is the service endpoint).

    ``req_params`` (``req`` without ``url``: ``layers``, ``transparent``, ``dpi``,
    ``time``, anything else) are sent first, in configuration order and case.
    SRS/format fallback and reprojection work as for WMS sources.
    """

    def __init__(
        self, client: HTTPClient, url: str, req_params: Mapping[str, Any], **kwargs: Any
    ) -> None:
        transparent = str(req_params.get("transparent", "")).lower() == "true"
        super().__init__(client, url.rstrip("/"), {}, transparent=transparent, **kwargs)
        self.req_params = [(str(k), _req_value(v)) for k, v in req_params.items() if k != "url"]
        self.is_image_server = self.url.lower().endswith("/imageserver")

    def __repr__(self) -> str:
        return f"ArcGISSource({self.url!r})"

    def map_url(
        self,
        bbox: BBox,
        size: tuple[int, int],
        srs: SRS,
        format: str,
        dimensions: Mapping[str, str] | None = None,
    ) -> str:
        """The ``export`` (ImageServer: ``exportImage``) URL for an x/y ``bbox`` in ``srs``."""
        code = sr_code(srs)
        params = [
            *self.req_params,
            ("format", arcgis_format(format)),
            ("bbox", ",".join(_format_number(v) for v in bbox)),
            ("size", f"{int(size[0])},{int(size[1])}"),
            ("bboxSR", code),
            ("imageSR", code),
            ("f", "image"),
        ]
        endpoint = "exportImage" if self.is_image_server else "export"
        return f"{self.url}/{endpoint}?{_query_string(params)}"


class ArcGISInfoSource:
    """``identify`` requests for the point of a feature info query (answers are JSON)."""

    def __init__(
        self, source: ArcGISSource, tolerance: int = 5, return_geometries: bool = False
    ) -> None:
        self.source = source
        self.tolerance = int(tolerance)
        self.return_geometries = bool(return_geometries)

    def __repr__(self) -> str:
        return f"ArcGISInfoSource({self.source.url!r})"

    def identify_url(self, query: FeatureInfoQuery) -> str:
        """The upstream ``identify`` URL for ``query``."""
        source = self.source
        src_srs = source.source_srs(query.srs)
        bbox, size, pos = query.bbox, query.size, query.pos
        if not src_srs.is_same_as(query.srs):
            bbox, size, pos = _reprojected(query, src_srs)
        minx, miny, maxx, maxy = bbox
        x = minx + (maxx - minx) * pos[0] / size[0]
        y = maxy - (maxy - miny) * pos[1] / size[1]
        params = [
            *source.req_params,
            ("mapExtent", ",".join(_format_number(v) for v in bbox)),
            ("imageDisplay", f"{int(size[0])},{int(size[1])},96"),
            ("geometry", f"{x:f},{y:f}"),
            ("sr", sr_code(src_srs)),
            ("f", "json"),
            ("tolerance", str(self.tolerance)),
            ("returnGeometry", "true" if self.return_geometries else "false"),
            ("geometryType", "esriGeometryPoint"),
        ]
        return f"{source.url}/identify?{_query_string(params)}"

    def get_feature_info(self, query: FeatureInfoQuery) -> FeatureInfoDoc | None:
        """Ask the upstream; None outside the source's coverage; raises SourceError."""
        if not point_in_extent(self.source, query):
            return None
        response = fetch_info(self.source, self.identify_url(query))
        return FeatureInfoDoc(response.body, info_type(response.content_type or "json"))
