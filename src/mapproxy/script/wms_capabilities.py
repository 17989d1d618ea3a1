"""``mapproxy-util wms-capabilities``: fetch a WMS capabilities document and summarize it."""

from __future__ import annotations

import logging
import math
import optparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lxml import etree

from mapproxy.errors import HTTPClientError
from mapproxy.http.client import HTTPClient
from mapproxy.srs import UnknownSRS, get_srs

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_CAPABILITIES_TAGS = {"WMT_MS_Capabilities": "1.1.1", "WMS_Capabilities": "1.3.0"}
_QUERY_KEYS = ("service", "version", "request")
_ERRNO = re.compile(r"\[Errno -?\d+\] ")

# Errors are reported by the command itself; keep the client's own warnings quiet.
_quiet_log = logging.getLogger("mapproxy.script.wms_capabilities.http")
_quiet_log.addHandler(logging.NullHandler())
_quiet_log.propagate = False


class CapabilitiesError(Exception):
    """The answer is not a usable WMS capabilities document."""


@dataclass
class WMSLayerInfo:
    """One layer of a capabilities document; SRS and llbbox include inherited values."""

    name: str | None
    title: str
    url: str
    srs: list[str]
    llbbox: list[float] | None
    queryable: bool = False
    opaque: bool = False
    abstract: str = ""
    # (coarsest, finest) resolution from a 1.1.1 ScaleHint (diagonal pixel size)
    res_hint: tuple[float, float] | None = None
    # own BoundingBox elements in document order; x/y order (NE-axis 1.3.0 CRS: tuples)
    bbox_srs: dict[str, list[float] | tuple[float, ...]] = field(default_factory=dict)
    legend_url: str | None = None
    layers: list[WMSLayerInfo] = field(default_factory=list)


@dataclass
class WMSCapabilities:
    """A parsed capabilities document."""

    version: str
    url: str
    root_layer: WMSLayerInfo
    map_formats: list[str] = field(default_factory=list)
    featureinfo_url: str | None = None
    # Service/Title; None when the element is missing
    service_title: str | None = None


def capabilities_url(url: str, version: str) -> str:
    """``url`` with ``service=WMS&version=...&request=GetCapabilities`` (replacing any)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() not in _QUERY_KEYS]
    query += [("service", "WMS"), ("version", version), ("request", "GetCapabilities")]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def with_capabilities_params(url: str, version: str = "1.1.1") -> str:
    """``url`` plus those of SERVICE/VERSION/REQUEST it lacks (existing ones are kept)."""
    parts = urlsplit(url)
    present = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    defaults = (("service", "WMS"), ("version", version), ("request", "GetCapabilities"))
    missing = [(key, value) for key, value in defaults if key not in present]
    if not missing:
        return url
    query = parts.query
    if query and not query.endswith("&"):
        query += "&"
    query += urlencode(missing)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _children(element: Any, name: str) -> list[Any]:
    return [child for child in element if _local(child.tag) == name]


def _child(element: Any, name: str) -> Any:
    found = _children(element, name)
    return found[0] if found else None


def _text(element: Any, name: str) -> str:
    child = _child(element, name)
    return (child.text or "").strip() if child is not None else ""


def _bool_attr(element: Any, name: str) -> bool:
    return element.get(name, "0").strip().lower() in ("1", "true")


def _floats(values: Sequence[str | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def _operation_url(capability: Any, operation: str) -> str | None:
    request = _child(capability, "Request")
    if request is None:
        return None
    op = _child(request, operation)
    if op is None:
        return None
    for element in op.iter():
        if _local(element.tag) == "Get":
            resource = _child(element, "OnlineResource")
            if resource is not None:
                href: str | None = resource.get(XLINK_HREF)
                return href
    return None


def _is_axis_ne(code: str) -> bool:
    try:
        return get_srs(code).is_axis_order_ne
    except UnknownSRS:
        return False


class _LayerParser:
    def __init__(self, version: str, url: str) -> None:
        self.version = version
        self.url = url

    def parse(
        self, element: Any, parent_srs: list[str], parent_llbbox: list[float] | None
    ) -> WMSLayerInfo:
        srs_tag = "CRS" if self.version == "1.3.0" else "SRS"
        srs = list(parent_srs)
        for srs_element in _children(element, srs_tag):
            for code in (srs_element.text or "").split():
                if code not in srs:
                    srs.append(code)
        llbbox = self._llbbox(element) or parent_llbbox
        name = _text(element, "Name") or None
        layer = WMSLayerInfo(
            name=name,
            title=_text(element, "Title"),
            url=self.url,
            srs=srs,
            llbbox=llbbox,
            queryable=_bool_attr(element, "queryable"),
            opaque=_bool_attr(element, "opaque"),
            abstract=_text(element, "Abstract"),
            res_hint=self._res_hint(element),
            bbox_srs=self._bboxes(element),
            legend_url=self._legend_url(element),
        )
        layer.layers = [self.parse(child, srs, llbbox) for child in _children(element, "Layer")]
        return layer

    def _llbbox(self, element: Any) -> list[float] | None:
        if self.version == "1.3.0":
            geo = _child(element, "EX_GeographicBoundingBox")
            if geo is None:
                return None
            keys = (
                "westBoundLongitude",
                "southBoundLatitude",
                "eastBoundLongitude",
                "northBoundLatitude",
            )
            return [float(_text(geo, key)) for key in keys]
        box = _child(element, "LatLonBoundingBox")
        if box is None:
            return None
        return _floats([box.get(k) for k in ("minx", "miny", "maxx", "maxy")])

    def _bboxes(self, element: Any) -> dict[str, list[float] | tuple[float, ...]]:
        attr = "CRS" if self.version == "1.3.0" else "SRS"
        result: dict[str, list[float] | tuple[float, ...]] = {}
        for box in _children(element, "BoundingBox"):
            code = box.get(attr)
            if not code:
                continue
            values = _floats([box.get(k) for k in ("minx", "miny", "maxx", "maxy")])
            if self.version == "1.3.0" and _is_axis_ne(code):
                result[code] = (values[1], values[0], values[3], values[2])
            else:
                result[code] = values
        return result

    def _res_hint(self, element: Any) -> tuple[float, float] | None:
        hint = _child(element, "ScaleHint")
        if hint is None or self.version == "1.3.0":
            return None
        # ScaleHint values are the ground size of the pixel diagonal
        return (
            math.sqrt(float(hint.get("max")) ** 2 / 2),
            math.sqrt(float(hint.get("min")) ** 2 / 2),
        )

    @staticmethod
    def _legend_url(element: Any) -> str | None:
        for style in _children(element, "Style"):
            legend = _child(style, "LegendURL")
            if legend is not None:
                resource = _child(legend, "OnlineResource")
                if resource is not None:
                    href: str | None = resource.get(XLINK_HREF)
                    return href
        return None


def parse_capabilities(data: bytes) -> WMSCapabilities:
    """Parse a WMS 1.1.1 or 1.3.0 capabilities document; raises CapabilitiesError."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as error:
        raise CapabilitiesError(f"Could not parse the document: {error}") from None
    tag = _local(root.tag)
    if tag not in _CAPABILITIES_TAGS:
        raise CapabilitiesError(
            f"Not a capabilities document: Unknown start tag in capabilities: {tag}"
        )
    version = root.get("version") or _CAPABILITIES_TAGS[tag]
    capability = _child(root, "Capability")
    root_layer_element = _child(capability, "Layer") if capability is not None else None
    if root_layer_element is None:
        raise CapabilitiesError("Not a capabilities document: no Capability/Layer")
    url = _operation_url(capability, "GetMap") or ""
    root_layer = _LayerParser(version, url).parse(root_layer_element, [], None)
    request = _child(capability, "Request")
    get_map = _child(request, "GetMap") if request is not None else None
    formats = []
    if get_map is not None:
        formats = [(f.text or "").strip() for f in _children(get_map, "Format")]
    service = _child(root, "Service")
    title = _child(service, "Title") if service is not None else None
    return WMSCapabilities(
        version=version,
        url=url,
        root_layer=root_layer,
        map_formats=formats,
        featureinfo_url=_operation_url(capability, "GetFeatureInfo"),
        service_title=(title.text or "").strip() if title is not None else None,
    )


def fetch_capabilities_document(
    url: str, version: str = "1.1.1", timeout_seconds: float = 60.0
) -> bytes:
    """The capabilities document of the WMS at ``url``; raises HTTPClientError."""
    return fetch_document(capabilities_url(url, version), timeout_seconds)


def fetch_document(url: str, timeout_seconds: float = 60.0) -> bytes:
    """The body at ``url`` as is; raises HTTPClientError (status >= 400, no response)."""
    client = HTTPClient(
        timeout_seconds=timeout_seconds, hide_error_details=False, error_log=_quiet_log
    )
    return client.open(url).body


def error_text(error: Exception) -> str:
    """``error`` as one line without the ``[Errno n]`` noise of socket errors."""
    return _ERRNO.sub("", str(error))


def _value(value: Any) -> str:
    if value is None or value == "":
        return ""
    return str(value)


def layer_lines(layer: WMSLayerInfo, depth: int = 0) -> list[str]:
    """The YAML-like summary of ``layer`` and its sub-layers."""
    items: list[tuple[str, Any]] = []
    if layer.name:
        items.append(("name", layer.name))
    items += [
        ("title", layer.title),
        ("url", layer.url),
        ("srs", layer.srs),
        ("llbbox", layer.llbbox),
        ("queryable", layer.queryable),
        ("opaque", layer.opaque),
        ("abstract", layer.abstract),
        ("res_hint", layer.res_hint),
        ("bbox_srs", layer.bbox_srs),
        ("legend", {"url": layer.legend_url} if layer.legend_url else None),
    ]
    indent = "    " * depth
    lines = []
    for index, (key, value) in enumerate(items):
        prefix = f"{indent}  - " if index == 0 else f"{indent}    "
        text = _value(value) if not isinstance(value, dict) else repr(value)
        lines.append(f"{prefix}{key}: {text}")
    if layer.layers:
        lines.append(f"{indent}    layers: ")
        for child in layer.layers:
            lines += layer_lines(child, depth + 1)
    return lines


def capabilities_lines(capabilities: WMSCapabilities) -> list[str]:
    """The complete summary as printed by the command."""
    lines = [
        "# Note: This is not a valid MapProxy configuration!",
        f"Capabilities Document Version {capabilities.version}",
        "Root-Layer:",
    ]
    for layer in capabilities.root_layer.layers:
        lines += layer_lines(layer)
    return lines


def _parser() -> optparse.OptionParser:
    parser = optparse.OptionParser(
        "%prog wms-capabilities [options] URL",
        description=(
            "Read and parse WMS 1.1.1 capabilities and print out information about each "
            "layer. It does _not_ return a valid MapProxy configuration."
        ),
    )
    parser.prog = "mapproxy-util"
    parser.add_option(
        "--host", dest="capabilities_url", help="WMS Capabilites URL", metavar="CAPABILITIES_URL"
    )
    parser.add_option(
        "--version",
        dest="version",
        choices=["1.1.1", "1.3.0"],
        default="1.1.1",
        metavar="<1.1.1 or 1.3.0>",
        help="Request GetCapabilities-document in version 1.1.1 or 1.3.0",
    )
    return parser


def wms_capabilities_command(argv: Sequence[str]) -> int:
    """Run ``mapproxy-util wms-capabilities``; returns the exit code."""
    parser = _parser()
    options, args = parser.parse_args(list(argv))
    url = args[0] if args else options.capabilities_url
    if not url:
        parser.print_help()
        return 2
    if "://" not in url:
        url = "http://" + url
    try:
        document = fetch_capabilities_document(url, options.version)
    except HTTPClientError as error:
        print(f"ERROR: {error_text(error)}", file=sys.stderr)
        return 1
    try:
        capabilities = parse_capabilities(document)
    except CapabilitiesError as error:
        print("Received document:", file=sys.stderr)
        print("-" * 80, file=sys.stderr)
        print(repr(document), file=sys.stderr)
        print("-" * 80, file=sys.stderr)
        print(error, file=sys.stderr)
        return 1
    for line in capabilities_lines(capabilities):
        print(line)
    return 0
