"""Feature info: GetFeatureInfo requests to WMS sources, documents, XSLT and merging."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mapproxy.errors import SourceError
from mapproxy.http.client import HTTPResponse, UpstreamHTTPError
from mapproxy.source.coverage import source_coverage
from mapproxy.source.wms import WMSSource, _merge_query
from mapproxy.srs import SRS, BBox

__all__ = [
    "FeatureInfoDoc",
    "FeatureInfoQuery",
    "InfoSource",
    "WMSInfoSource",
    "XSLTransformer",
    "info_type",
    "merge_docs",
    "reserialized",
]


@dataclass(frozen=True, slots=True)
class FeatureInfoQuery:
    """A feature info request: map ``bbox`` (x/y in ``srs``), ``size`` and pixel ``pos``
    (column, row from the top left); ``info_format`` None: the client asked for none."""

    bbox: BBox
    size: tuple[int, int]
    srs: SRS
    pos: tuple[int, int]
    info_format: str | None = None
    feature_count: int | None = None

    @property
    def coord(self) -> tuple[float, float]:
        """The queried point in ``srs`` (the top left corner of the pixel)."""
        minx, miny, maxx, maxy = self.bbox
        x = minx + (maxx - minx) * self.pos[0] / self.size[0]
        y = maxy - (maxy - miny) * self.pos[1] / self.size[1]
        return (x, y)


def info_type(mime_type: str | None) -> str:
    """``text``, ``html``, ``xml`` or ``json`` for an info format mime type."""
    lowered = (mime_type or "").lower()
    if "html" in lowered:
        return "html"
    if "xml" in lowered or "gml" in lowered:
        return "xml"
    if "json" in lowered:
        return "json"
    return "text"


@dataclass(frozen=True, slots=True)
class FeatureInfoDoc:
    """One feature info answer: raw ``body`` of ``info_type`` (text/html/xml/json)."""

    body: bytes
    info_type: str


class InfoSource(Protocol):
    """Answers feature info queries (a WMS source with ``featureinfo: true``)."""

    def get_feature_info(self, query: FeatureInfoQuery) -> FeatureInfoDoc | None:
        """The answer for ``query``; None outside the source's coverage."""
        ...


class XSLTransformer:
    """An XSL transformation read once from ``path``; ``out_type`` is the result's type."""

    def __init__(self, path: str, out_type: str | None = None) -> None:
        from lxml import etree

        try:
            self._xslt = etree.XSLT(etree.parse(path))
        except (OSError, etree.LxmlError) as error:
            raise SourceError(f"invalid featureinfo_xslt {path}: {error}") from None
        self.out_type = out_type

    def transform(self, doc: FeatureInfoDoc) -> FeatureInfoDoc:
        """``doc`` transformed (HTML input is parsed as HTML, anything else as XML)."""
        from lxml import etree, html

        try:
            if doc.info_type == "html":
                tree = html.document_fromstring(doc.body)
            else:
                tree = etree.fromstring(doc.body, etree.XMLParser(resolve_entities=False))
            result = self._xslt(tree)
        except (etree.LxmlError, ValueError) as error:
            raise SourceError(f"featureinfo_xslt failed: {error}") from None
        return FeatureInfoDoc(bytes(result), self.out_type or doc.info_type)


def point_in_extent(source: Any, query: FeatureInfoQuery) -> bool:
    """Whether the queried point lies in the ``extent`` of ``source`` and, as in MapProxy,
    in its ``coverage`` polygons (True without either): outside, nobody is asked."""
    extent = source.extent
    if extent is not None:
        x, y = query.coord
        if not query.srs.is_same_as(extent.srs):
            x, y = query.srs.transform_to(extent.srs, [(x, y)])[0]
        minx, miny, maxx, maxy = extent.bbox
        if not (minx <= x <= maxx and miny <= y <= maxy):
            return False
    coverage = source_coverage(source)
    return coverage is None or coverage.contains_point(*query.coord, query.srs)


def fetch_info(source: Any, url: str) -> HTTPResponse:
    """GET ``url`` with the client and request limit of ``source``; raises SourceError."""
    try:
        with source.request_limiter or contextlib.nullcontext():
            response: HTTPResponse = source.client.open(url)
    except UpstreamHTTPError as error:
        raise SourceError(str(error)) from None
    return response


class WMSInfoSource:
    """GetFeatureInfo for the layers of a WMS source.

    The map request of ``source`` (url, layers, version, supported SRS, extra params)
    becomes a GetFeatureInfo request with ``query_layers`` (default: the layers). The
    point is recomputed for the bbox/size/SRS the upstream is asked in; in an SRS the
    upstream does not support, the point is transformed into a supported one.
    ``info_format`` overrides the client's INFO_FORMAT; ``xslt`` transforms each answer.
    """

    def __init__(
        self,
        source: WMSSource,
        query_layers: str | None = None,
        info_format: str | None = None,
        xslt: XSLTransformer | None = None,
    ) -> None:
        self.source = source
        self.query_layers = query_layers or source.params.get("layers", "")
        self.info_format = info_format
        self.xslt = xslt

    def __repr__(self) -> str:
        return f"WMSInfoSource({self.source.url!r}, query_layers={self.query_layers!r})"

    def feature_info_url(self, query: FeatureInfoQuery) -> str:
        """The upstream GetFeatureInfo URL for ``query``."""
        source = self.source
        src_srs = source.source_srs(query.srs)
        bbox, size, pos = query.bbox, query.size, query.pos
        if not src_srs.is_same_as(query.srs):
            bbox, size, pos = _reprojected(query, src_srs)
        map_format = source.source_format("image/png")
        url = source.map_url(bbox, size, src_srs, map_format)
        is_130 = source.version == "1.3.0"
        params: list[tuple[str, str]] = [
            ("request", "GetFeatureInfo"),
            ("query_layers", self.query_layers),
            ("i" if is_130 else "x", str(pos[0])),
            ("j" if is_130 else "y", str(pos[1])),
        ]
        if source.version == "1.0.0":
            params[0] = ("request", "feature_info")
        info_format = self.info_format or query.info_format
        if info_format:
            params.append(("info_format", info_format))
        if query.feature_count is not None:
            params.append(("feature_count", str(query.feature_count)))
        return _merge_query(url, params)

    def get_feature_info(self, query: FeatureInfoQuery) -> FeatureInfoDoc | None:
        """Ask the upstream; raises SourceError when it fails."""
        if not point_in_extent(self.source, query):
            return None
        response = fetch_info(self.source, self.feature_info_url(query))
        # As in MapProxy, the type of the answer is what the upstream says it sent.
        kind = info_type(response.content_type or self.info_format or query.info_format)
        doc = FeatureInfoDoc(response.body, kind)
        if self.xslt is not None:
            doc = self.xslt.transform(doc)
        return doc


def _reprojected(
    query: FeatureInfoQuery, src_srs: SRS
) -> tuple[BBox, tuple[int, int], tuple[int, int]]:
    """Bbox, size and pixel of ``query`` in ``src_srs``; the width is kept."""
    bbox = query.srs.transform_bbox_to(src_srs, query.bbox)
    width = query.size[0]
    ratio = (bbox[3] - bbox[1]) / (bbox[2] - bbox[0]) if bbox[2] > bbox[0] else 1.0
    height = max(1, round(width * ratio))
    x, y = query.srs.transform_to(src_srs, [query.coord])[0]
    col = round((x - bbox[0]) / (bbox[2] - bbox[0]) * width)
    row = round((bbox[3] - y) / (bbox[3] - bbox[1]) * height)
    return bbox, (width, height), (col, row)


def reserialized(doc: FeatureInfoDoc) -> bytes:
    """One answer as MapProxy passes it on alone: XML without its declaration and JSON
    written anew by ``json.dumps``; anything else (or what does not parse) unchanged."""
    if doc.info_type == "xml":
        from lxml import etree

        try:
            root = etree.fromstring(doc.body, etree.XMLParser(resolve_entities=False))
        except (etree.LxmlError, ValueError):
            return doc.body
        return bytes(etree.tostring(root))
    if doc.info_type == "json":
        try:
            return json.dumps(json.loads(doc.body)).encode("utf-8")
        except ValueError:
            return doc.body
    return doc.body


def merge_docs(docs: Sequence[FeatureInfoDoc], kind: str) -> bytes:
    """One document from several of type ``kind``.

    XML: the children of every further root are appended to the first root; HTML:
    the body content is appended to the first body; JSON: feature collections are
    joined; text (and anything that does not parse) is joined with newlines.
    """
    if not docs:
        return b""
    if len(docs) == 1:
        return docs[0].body
    try:
        if kind == "xml":
            return _merge_xml(docs)
        if kind == "html":
            return _merge_html(docs)
        if kind == "json":
            return _merge_json(docs)
    except (ValueError, TypeError, KeyError):
        pass
    return b"\n".join(doc.body for doc in docs)


def _merge_xml(docs: Sequence[FeatureInfoDoc]) -> bytes:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, remove_blank_text=False)
    try:
        first = etree.fromstring(docs[0].body, parser)
        for doc in docs[1:]:
            other = etree.fromstring(doc.body, parser)
            first.extend(list(other))
    except etree.LxmlError as error:
        raise ValueError(str(error)) from None
    return bytes(etree.tostring(first))


def _merge_html(docs: Sequence[FeatureInfoDoc]) -> bytes:
    from lxml import etree, html

    try:
        first = html.document_fromstring(docs[0].body)
        body = first.find("body")
        if body is None:
            raise ValueError("no body")
        for doc in docs[1:]:
            other = html.document_fromstring(doc.body).find("body")
            if other is not None:
                body.extend(list(other))
    except etree.LxmlError as error:
        raise ValueError(str(error)) from None
    return bytes(html.tostring(first))


def _merge_json(docs: Sequence[FeatureInfoDoc]) -> bytes:
    parsed: list[Any] = [json.loads(doc.body) for doc in docs]
    first = parsed[0]
    if not all(isinstance(p, dict) and isinstance(p.get("features"), list) for p in parsed):
        raise ValueError("not feature collections")
    for other in parsed[1:]:
        first["features"].extend(other["features"])
    return json.dumps(first).encode("utf-8")
