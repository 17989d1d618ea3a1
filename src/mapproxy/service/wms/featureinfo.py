"""WMS GetFeatureInfo: parse, authorize, ask the layers' feature info sources, merge."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from mapproxy.errors import MapProxyError
from mapproxy.layer.base import ResolutionRange, WMSLayer
from mapproxy.service.authorize import AUTHORIZE_KEY, authorize
from mapproxy.service.base import InvalidRequest, no_cache
from mapproxy.service.featureinfo import point_in
from mapproxy.service.wms.request import GetMapParser, GetMapRequest
from mapproxy.source.featureinfo import (
    FeatureInfoDoc,
    FeatureInfoQuery,
    InfoSource,
    XSLTransformer,
    info_type,
    merge_docs,
    reserialized,
)
from mapproxy.util.lazy import lazy_module

if TYPE_CHECKING:
    import shapely
else:  # loaded on first use: shapely and numpy cost ~14 MB
    shapely = lazy_module("shapely")

log = logging.getLogger("mapproxy.service.wms")

# Content-Type of an answer by its type (``featureinfo_types``); XML depends on the version.
_ANSWER_MIMETYPES = {"html": "text/html", "json": "application/json", "text": "text/plain"}


@dataclass(frozen=True, slots=True)
class FeatureInfoRequest:
    """A validated GetFeatureInfo: the map it refers to, query layers and pixel."""

    map_request: GetMapRequest
    query_layers: tuple[str, ...]
    pos: tuple[int, int]
    info_format: str | None
    feature_count: int | None


@dataclass(frozen=True, slots=True)
class InfoItem:
    """One feature info source to ask, its owner (nearest named node) and res ranges."""

    source: InfoSource
    owner: str | None
    res_ranges: tuple[ResolutionRange, ...] = ()


def expand_info(
    node: WMSLayer, ranges: tuple[ResolutionRange, ...] = (), owner: str | None = None
) -> list[InfoItem]:
    """Feature info sources of ``node``: its own if it has content, else its children's."""
    if node.res_range is not None:
        ranges = (*ranges, node.res_range)
    owner = node.name or owner
    if node.map_layers or node.info_sources:
        return [InfoItem(source, owner, ranges) for source in node.info_sources]
    items: list[InfoItem] = []
    for child in node.children:
        items.extend(expand_info(child, ranges, owner))
    return items


def response_mimetype(kind: str, version: str) -> str:
    """The Content-Type of an answer of type ``kind`` (as in MapProxy: XML is
    ``application/vnd.ogc.gml`` up to WMS 1.1.1 and ``text/xml`` in 1.3.0)."""
    if kind == "xml":
        return "text/xml" if version == "1.3.0" else "application/vnd.ogc.gml"
    return _ANSWER_MIMETYPES.get(kind, "text/plain")


class FeatureInfoHandler:
    """Answers GetFeatureInfo for one layer tree."""

    def __init__(
        self,
        layers_by_name: Mapping[str, WMSLayer],
        parser: GetMapParser,
        strict: bool = False,
        xslt_paths: Mapping[str, str] | None = None,
    ) -> None:
        self.layers_by_name = layers_by_name
        self.parser = parser
        self.strict = strict
        self.xslt = {kind: XSLTransformer(path, kind) for kind, path in (xslt_paths or {}).items()}

    def parse(self, params: Mapping[str, str], version: str) -> FeatureInfoRequest:
        """A validated request; raises InvalidRequest."""
        if not self.strict:
            defaults = {"format": "image/png", "styles": ""}
            params = {**defaults, **params}
        map_request = self.parser.parse(params, version)
        pos_names = ("i", "j") if version == "1.3.0" else ("x", "y")
        required = ["query_layers", *pos_names]
        if self.strict:
            required.append("info_format")
        missing = [name for name in required if name not in params]
        if missing:
            raise InvalidRequest(f"missing parameters {missing!r}")
        pos = _pixel(params[pos_names[0]], params[pos_names[1]])
        width, height = map_request.size
        if pos is None or not (0 <= pos[0] < width and 0 <= pos[1] < height):
            raise InvalidRequest(
                f"invalid point {pos_names[0].upper()}={params[pos_names[0]]},"
                f" {pos_names[1].upper()}={params[pos_names[1]]}",
                code="InvalidPoint",
            )
        query_layers = tuple(name for name in params["query_layers"].split(",") if name)
        for name in query_layers:
            node = self.layers_by_name.get(name)
            if node is None:
                raise InvalidRequest(f"unknown layer: {name}", code="LayerNotDefined")
            if not node.queryable:
                raise InvalidRequest(f"layer {name} is not queryable", code="LayerNotQueryable")
        feature_count = None
        if params.get("feature_count"):
            try:
                feature_count = int(params["feature_count"])
            except ValueError:
                raise InvalidRequest(f"invalid feature_count {params['feature_count']}") from None
        return FeatureInfoRequest(
            map_request,
            query_layers,
            pos,
            params.get("info_format") or None,
            feature_count,
        )

    def items(self, request: FeatureInfoRequest) -> list[InfoItem]:
        """The sources to ask, in query layer order."""
        items: list[InfoItem] = []
        for name in request.query_layers:
            items.extend(expand_info(self.layers_by_name[name]))
        return items

    def handle(
        self,
        params: Mapping[str, str],
        version: str,
        environ: Mapping[str, Any] | None,
        error_response: Callable[..., Response],
    ) -> Response:
        """Validate, authorize, query and answer; errors via ``error_response``."""
        try:
            request = self.parse(params, version)
        except InvalidRequest as error:
            return error_response(version, error.message, error.code)
        items = self.items(request)
        map_request = request.map_request
        query = FeatureInfoQuery(
            bbox=map_request.bbox,
            size=map_request.size,
            srs=map_request.srs,
            pos=request.pos,
            info_format=request.info_format,
            feature_count=request.feature_count,
        )
        callback = environ.get(AUTHORIZE_KEY) if environ is not None else None
        if callback is not None:
            assert environ is not None
            owners = list(dict.fromkeys(item.owner for item in items if item.owner))
            auth = authorize(
                callback,
                environ,
                "wms.featureinfo",
                owners,
                (map_request.srs.code, map_request.bbox),
            )
            denial = auth.denial
            if denial is not None:
                return error_response(version, denial[1], None, status=denial[0])
            if not auth.is_full:
                for name in request.query_layers:
                    if name in owners and not auth.permits(name, "featureinfo"):
                        return error_response(version, "forbidden", None, status=403)
                point = shapely.Point(query.coord)
                items = [
                    item
                    for item in items
                    if item.owner is not None
                    and auth.permits(item.owner, "featureinfo")
                    and point_in(point, auth.map_limits(item.owner), query)
                ]
        docs: list[FeatureInfoDoc] = []
        try:
            for item in items:
                if not all(
                    r.contains(query.bbox[2] - query.bbox[0], query.size[0], query.srs)
                    for r in item.res_ranges
                ):
                    continue
                doc = item.source.get_feature_info(query)
                if doc is not None:
                    docs.append(doc)
            # The answer has the type of the upstream answers (text if they differ).
            kinds = {doc.info_type for doc in docs}
            if not kinds:
                kind = info_type(request.info_format)
            else:
                kind = kinds.pop() if len(kinds) == 1 else "text"
            body = reserialized(docs[0]) if len(docs) == 1 else merge_docs(docs, kind)
            transformer = self.xslt.get(kind)
            if docs and transformer is not None:
                body = transformer.transform(FeatureInfoDoc(body, kind)).body
        except MapProxyError as error:
            log.warning("GetFeatureInfo failed: %s", error)
            return error_response(version, str(error), None)
        return no_cache(Response(body, mimetype=response_mimetype(kind, version)))


def _pixel(x_value: str, y_value: str) -> tuple[int, int] | None:
    try:
        x, y = float(x_value), float(y_value)
    except ValueError:
        return None
    if not (math.isfinite(x) and math.isfinite(y)):
        return None
    return (int(x), int(y))
