"""WMS GetLegendGraphic: the legends of a layer's sources stacked into one image."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from werkzeug.wrappers import Response

from mapproxy.errors import MapProxyError
from mapproxy.image.encode import encode_image
from mapproxy.image.options import ImageOptions
from mapproxy.layer.base import WMSLayer
from mapproxy.service.wms.request import FormatTable
from mapproxy.source.legend import LegendQuery, merge_legend_json, stack_legends

log = logging.getLogger("mapproxy.service.wms")

JSON_FORMAT = "application/json"


class LegendHandler:
    """Answers GetLegendGraphic; remembers legend sizes for the capabilities."""

    def __init__(
        self,
        layers_by_name: Mapping[str, WMSLayer],
        formats: FormatTable,
        strict: bool = False,
    ) -> None:
        self.layers_by_name = layers_by_name
        self.formats = formats
        self.strict = strict
        self._sizes: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def legend_image_bytes(self, node: WMSLayer, query: LegendQuery) -> list[bytes]:
        """All legend bodies of ``node``'s legend sources, in source order."""
        bodies: list[bytes] = []
        for source in node.legend_sources:
            bodies.extend(source.get_legends(query))
        return bodies

    def legend_size(self, name: str) -> tuple[int, int]:
        """Width and height of the layer's PNG legend (fetched once; 1x1 on errors)."""
        with self._lock:
            size = self._sizes.get(name)
        if size is not None:
            return size
        try:
            image = stack_legends(self.legend_image_bytes(self.layers_by_name[name], LegendQuery()))
        except MapProxyError as error:
            log.warning("legend of layer %s: %s", name, error)
            return (1, 1)
        size = image.size if image is not None else (1, 1)
        with self._lock:
            self._sizes[name] = size
        return size

    def handle(
        self,
        params: Mapping[str, str],
        version: str,
        error_response: Callable[..., Response],
    ) -> Response:
        """Validate and answer one GetLegendGraphic request."""
        required = ["layer", "format"]
        if self.strict:
            required.append("sld_version")
        missing = [name for name in required if name not in params]
        if missing:
            return error_response(version, f"missing parameters {missing!r}", None)
        sld_version = params.get("sld_version")
        if sld_version is not None and sld_version != "1.1.0":
            return error_response(version, f"invalid sld_version {sld_version}", None)
        name = params["layer"]
        node = self.layers_by_name.get(name)
        if node is None:
            return error_response(version, f"unknown layer: {name}", "LayerNotDefined")
        requested = params["format"].strip()
        options: ImageOptions | None = None
        if requested.lower() != JSON_FORMAT:
            image_format = self.formats.get(requested, version)
            if image_format is None:
                return error_response(
                    version, f"unsupported image format: {requested}", "InvalidFormat"
                )
            options = image_format.options
        if not node.legend_sources:
            return error_response(version, f"layer {name} has no legend graphic", None, status=404)
        scale = None
        if params.get("scale"):
            try:
                scale = float(params["scale"])
            except ValueError:
                return error_response(version, f"invalid scale {params['scale']}", None)
        query = LegendQuery(
            format=JSON_FORMAT if options is None else options.mime_type, scale=scale
        )
        try:
            bodies = self.legend_image_bytes(node, query)
        except MapProxyError as error:
            return error_response(version, str(error), None)
        if options is None:
            return Response(merge_legend_json(bodies), mimetype=JSON_FORMAT)
        image = stack_legends(bodies)
        if image is None:
            return error_response(version, f"layer {name} has no legend graphic", None, 404)
        body = encode_image(image, options.updated(transparent=True))
        return Response(body, mimetype=options.mime_type)
