"""WMS capabilities documents (1.0.0, 1.1.0, 1.1.1, 1.3.0), built once per service.

Everything except the request URL is fixed at service creation, so each version is
rendered once, on its first request (large configs start faster), into a text with URL
markers; a request only replaces the markers.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from mapproxy.layer.base import ResolutionRange, TileLayer, WMSLayer
from mapproxy.layer.limit import LimitArea
from mapproxy.service.base import xml_safe
from mapproxy.service.tms import tms_levels
from mapproxy.service.wms.inspire import (
    INSPIRE_DEFAULT_STYLE,
    INSPIRE_NAMESPACES,
    INSPIRE_SCHEMA_LOCATION,
    extended_capabilities,
)
from mapproxy.service.wms.render import forced_extent_bbox
from mapproxy.service.wms.request import FormatTable
from mapproxy.source.base import MapExtent
from mapproxy.srs import SRS, BBox, bbox_intersection, get_srs, transform_errors

# NUL never survives xml_safe(), so the markers cannot clash with escaped content.
_URL_MARKER = "\x00URL\x00"  # operation URLs: the endpoint followed by "?"
_SERVICE_URL_MARKER = "\x00SERVICE\x00"  # the service OnlineResource: the bare endpoint
_LEGEND_MARKER = "\x00LEGEND{}\x00"  # width/height of the legend of the n-th legend layer
_XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
_OGC_PIXEL_SIZE_M = 0.00028
_MERCATOR_MAX_LAT = 85.0511287798066
_WGS84 = get_srs("EPSG:4326")

CAPABILITIES_CONTENT_TYPES = {
    "1.0.0": "text/xml; charset=utf-8",
    "1.1.0": "application/vnd.ogc.wms_xml",
    "1.1.1": "application/vnd.ogc.wms_xml",
    "1.3.0": "text/xml; charset=utf-8",
}

FEATUREINFO_MIME_TYPES = {
    "text": "text/plain",
    "html": "text/html",
    "xml": "application/vnd.ogc.gml",
    "json": "application/json",
}


def featureinfo_mime_type(info_type: str, version: str) -> str:
    """Mime type offered for a ``featureinfo_types`` entry in ``version``."""
    if info_type == "xml" and version == "1.3.0":
        return "text/xml"
    return FEATUREINFO_MIME_TYPES.get(info_type, info_type)


def text(value: Any) -> str:
    """Escaped element content."""
    return escape(xml_safe(str(value)))


def attr(value: Any) -> str:
    """Quoted and escaped attribute value."""
    return quoteattr(xml_safe(str(value)))


def number(value: float) -> str:
    """A coordinate or scale as text (shortest round-tripping form)."""
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class LayerBBoxes:
    """Precomputed extents of one layer: lon/lat and x/y bboxes per SRS code."""

    llbbox: BBox
    bboxes: tuple[tuple[SRS, BBox], ...]


@dataclass(frozen=True, slots=True)
class LayerView:
    """How one layer appears for one user: listed children, queryable flag, extents."""

    children: tuple[WMSLayer, ...]
    queryable: bool
    bboxes: LayerBBoxes


class CapabilitiesDocuments:
    """All capabilities documents of one WMS service."""

    def __init__(
        self,
        root: WMSLayer,
        md: Mapping[str, Any],
        srs: Sequence[SRS],
        bbox_srs: Sequence[str | Mapping[str, Any]],
        formats: FormatTable,
        max_output_pixels: int,
        versions: Iterable[str],
        featureinfo_types: Sequence[str] = ("text", "html", "xml"),
        legend_size: Callable[[str], tuple[int, int]] | None = None,
        inspire_md: Mapping[str, Any] | None = None,
        tile_layers: Sequence[TileLayer] = (),
    ) -> None:
        # WMS-C tile sets (1.1.x with tiled=true): one per layer and grid SRS; a later
        # grid in the same SRS replaces an earlier one
        wmsc: dict[tuple[str, str], TileLayer] = {}
        for tile_layer in tile_layers:
            wmsc[(tile_layer.name, tile_layer.grid.srs.code)] = tile_layer
        self._tile_layers = list(wmsc.values())
        # INSPIRE view service metadata (1.3.0 only), a plain dict of the config
        self.inspire_md = dict(inspire_md or {})
        self.root = root
        # layers with a legend get a LegendURL; its size is only known when fetched
        self.legend_size = legend_size
        self._legend_layers = [
            node.name for node in root.iter_named() if node.name and node.legend_sources
        ]
        self.md = md
        self.srs = list(srs)
        self.formats = formats
        self.max_output_pixels = max_output_pixels
        self.featureinfo_types = list(featureinfo_types)
        self._bbox_srs = self._bbox_srs_entries(bbox_srs)
        self._versions = frozenset(versions)
        # extents and documents are computed on first use (under the lock, once)
        self._lock = threading.RLock()
        self._computed_bboxes: dict[int, LayerBBoxes] | None = None
        self._documents: dict[tuple[str, bool], str] = {}

    @property
    def _layer_bboxes(self) -> dict[int, LayerBBoxes]:
        """Extents of every layer by ``id``, computed on first use."""
        computed = self._computed_bboxes
        if computed is None:
            with self._lock:
                computed = self._computed_bboxes
                if computed is None:
                    computed = {}
                    self._collect_bboxes(self.root, computed)
                    self._computed_bboxes = computed
        return computed

    def _document(self, version: str, tiled: bool) -> str:
        """The prebuilt document of ``version`` (with URL markers), built on first use."""
        key = (version, tiled)
        document = self._documents.get(key)
        if document is None:
            if version not in self._versions:
                raise KeyError(version)
            with self._lock:
                document = self._documents.get(key)
                if document is None:
                    document = _without_blank_lines(self._build(version, tiled=tiled))
                    self._documents[key] = document
        return document

    def render(
        self,
        version: str,
        url: str,
        view: Mapping[int, LayerView] | None = None,
        tiled: bool = False,
    ) -> bytes:
        """The document for ``version`` served at the endpoint ``url`` (without query).

        Operations point at ``url?``; the service OnlineResource is ``url`` itself
        unless ``md.online_resource`` is set. A ``view`` (see ``authorized_view``)
        builds a document of the layers one user may see instead of the prebuilt one.
        ``tiled`` adds the WMS-C tile sets (1.1.0/1.1.1 only).
        """
        tiled = tiled and version in _WMSC_VERSIONS
        if view is None:
            document = self._document(version, tiled)
        else:
            document = _without_blank_lines(self._build(version, view, tiled))
        quoted = escape(xml_safe(url)).replace('"', "&quot;")
        for index, name in enumerate(self._legend_layers):
            marker = _LEGEND_MARKER.format(index)
            if marker in document:
                width, height = self.legend_size(name) if self.legend_size else (1, 1)
                document = document.replace(marker, f'width="{width}" height="{height}"')
        document = document.replace(_URL_MARKER, quoted + "?")
        return document.replace(_SERVICE_URL_MARKER, quoted).encode("utf-8")

    def authorized_view(
        self,
        permits: Callable[[str, str], bool],
        limits: Callable[[str | None], Sequence[LimitArea]],
    ) -> dict[int, LayerView]:
        """The listed layers for one authorization answer, by ``id`` of each listed node.

        ``permits(name, feature)`` decides on ``map`` (listing) and ``featureinfo``
        (queryable); ``limits(name)`` gives the areas a node's extents shrink to (name
        None: the request-wide ones). A layer is listed if permitted, its parent is
        listed and its extent meets its limits; unnamed groups only with listed content.
        The root is always listed.
        """
        view: dict[int, LayerView] = {}

        def visit(node: WMSLayer, is_root: bool) -> bool:
            if not is_root and node.name is not None and not permits(node.name, "map"):
                return False
            bboxes = self._limited_bboxes(node, limits(node.name))
            if bboxes is None:
                if not is_root:
                    return False
                bboxes = self._layer_bboxes[id(node)]
            children = tuple(child for child in node.children if visit(child, False))
            if not is_root and node.name is None and not children and not node.map_layers:
                return False
            queryable = node.queryable and (node.name is None or permits(node.name, "featureinfo"))
            view[id(node)] = LayerView(children, queryable, bboxes)
            return True

        visit(self.root, True)
        return view

    def _limited_bboxes(self, layer: WMSLayer, areas: Sequence[LimitArea]) -> LayerBBoxes | None:
        """The layer's extents cut to ``areas``; None if they do not meet."""
        info = self._layer_bboxes[id(layer)]
        if not areas:
            return info
        llbbox: BBox | None = info.llbbox
        for area in areas:
            area_bbox = area.bbox_in(_WGS84)
            llbbox = bbox_intersection(llbbox, area_bbox) if llbbox and area_bbox else None
        if llbbox is None:
            return None
        bboxes: list[tuple[SRS, BBox]] = []
        for srs, bbox in info.bboxes:
            limited: BBox | None = bbox
            for area in areas:
                area_bbox = area.bbox_in(srs)
                limited = bbox_intersection(limited, area_bbox) if limited and area_bbox else None
            if limited is not None:
                bboxes.append((srs, limited))
        return LayerBBoxes(llbbox, tuple(bboxes))

    # -- precomputation -------------------------------------------------------------

    def _bbox_srs_entries(
        self, bbox_srs: Sequence[str | Mapping[str, Any]]
    ) -> list[tuple[SRS, BBox | None]]:
        offered = {s.code: s for s in self.srs}
        entries: list[tuple[SRS, BBox | None]] = []
        for entry in bbox_srs:
            forced: BBox | None = None
            if isinstance(entry, str):
                code = entry
            else:
                code = str(entry.get("srs", ""))
                raw_bbox = entry.get("bbox")
                if raw_bbox:
                    # config numbers keep their spelling (``5`` stays ``5``), as MapProxy
                    minx, miny, maxx, maxy = (
                        v if isinstance(v, int | float) else float(v) for v in raw_bbox
                    )
                    forced = (minx, miny, maxx, maxy)
            srs = offered.get(code.strip().upper())
            if srs is not None and all(srs != existing for existing, _ in entries):
                entries.append((srs, forced))
        return entries

    def _collect_bboxes(self, layer: WMSLayer, into: dict[int, LayerBBoxes]) -> None:
        into[id(layer)] = self._layer_bbox_info(layer)
        for child in layer.children:
            self._collect_bboxes(child, into)

    def _layer_bbox_info(self, layer: WMSLayer) -> LayerBBoxes:
        extent = layer.extent
        try:
            lon_lat = extent.bbox_for(get_srs("EPSG:4326"))
        except transform_errors():
            lon_lat = (-180.0, -90.0, 180.0, 90.0)
        llbbox = (
            max(-180.0, lon_lat[0]),
            max(-89.999999, lon_lat[1]),
            min(180.0, lon_lat[2]),
            min(89.999999, lon_lat[3]),
        )
        entries = list(self._bbox_srs)
        native = next((s for s in self.srs if s == extent.srs), None)
        if native is not None and all(native != s for s, _ in entries):
            entries.append((native, None))
        bboxes: list[tuple[SRS, BBox]] = []
        for srs, forced in entries:
            if forced is not None:
                bbox = forced_extent_bbox(extent, srs, forced)
                if bbox is not None:
                    bboxes.append((srs, bbox))
                    if srs.code == "EPSG:4326":
                        # an explicit EPSG:4326 bbox also cuts the geographic bbox
                        llbbox = bbox_intersection(llbbox, bbox) or llbbox
                continue
            try:
                plain: BBox = _transform_extent(extent, srs)
            except transform_errors():
                continue
            if all(math.isfinite(v) for v in plain):
                bboxes.append((srs, plain))
        return LayerBBoxes(llbbox, tuple(bboxes))

    # -- document building ----------------------------------------------------------

    def _build(
        self, version: str, view: Mapping[int, LayerView] | None = None, tiled: bool = False
    ) -> str:
        if version == "1.0.0":
            return self._build_100(view)
        if version == "1.3.0":
            return self._build_130(view)
        return self._build_111(version, view, tiled)

    def _md_text(self, key: str, default: str | None = None) -> str | None:
        value = self.md.get(key, default)
        return None if value is None else str(value)

    def _keywords(self, md: Mapping[str, Any], with_vocabulary: bool, indent: str) -> list[str]:
        keywords: list[tuple[str | None, str]] = []
        for group in md.get("keyword_list") or []:
            if isinstance(group, Mapping):
                vocabulary = group.get("vocabulary")
                values = group.get("keywords") or []
                if isinstance(values, str):
                    values = [values]
                keywords.extend((vocabulary, str(v)) for v in values)
            else:
                keywords.append((None, str(group)))
        if not keywords:
            return []
        lines = [f"{indent}<KeywordList>"]
        for vocabulary, keyword in keywords:
            vocab_attr = f" vocabulary={attr(vocabulary)}" if with_vocabulary and vocabulary else ""
            lines.append(f"{indent}  <Keyword{vocab_attr}>{text(keyword)}</Keyword>")
        lines.append(f"{indent}</KeywordList>")
        return lines

    def _contact(self) -> list[str]:
        contact = self.md.get("contact") or {}
        if not isinstance(contact, Mapping) or not contact:
            return []

        def field(key: str) -> str:
            value = contact.get(key)
            return "" if value is None else text(value)

        # As in MapProxy, a configured contact lists every element, empty ones included.
        address_type = contact.get("address_type") or "postal"
        return [
            "  <ContactInformation>",
            "    <ContactPersonPrimary>",
            f"      <ContactPerson>{field('person')}</ContactPerson>",
            f"      <ContactOrganization>{field('organization')}</ContactOrganization>",
            "    </ContactPersonPrimary>",
            f"    <ContactPosition>{field('position')}</ContactPosition>",
            "    <ContactAddress>",
            f"      <AddressType>{text(address_type)}</AddressType>",
            f"      <Address>{field('address')}</Address>",
            f"      <City>{field('city')}</City>",
            f"      <StateOrProvince>{field('state')}</StateOrProvince>",
            f"      <PostCode>{field('postcode')}</PostCode>",
            f"      <Country>{field('country')}</Country>",
            "    </ContactAddress>",
            f"    <ContactVoiceTelephone>{field('phone')}</ContactVoiceTelephone>",
            f"    <ContactFacsimileTelephone>{field('fax')}</ContactFacsimileTelephone>",
            f"    <ContactElectronicMailAddress>{field('email')}</ContactElectronicMailAddress>",
            "  </ContactInformation>",
        ]

    def _service_online_resource(self) -> str:
        online = self.md.get("online_resource")
        return text(online) if online else _SERVICE_URL_MARKER

    def _service_section(self, name: str, xlink_ns: str, with_vocabulary: bool) -> list[str]:
        lines = [
            "<Service>",
            f"  <Name>{name}</Name>",
            f"  <Title>{text(self._md_text('title') or 'MapProxy WMS')}</Title>",
        ]
        lines.append(f"  <Abstract>{text(self._md_text('abstract') or '')}</Abstract>")
        lines += self._keywords(self.md, with_vocabulary, "  ")
        lines.append(
            f'  <OnlineResource{xlink_ns} xlink:href="{self._service_online_resource()}"/>'
        )
        lines += self._contact()
        lines.append(f"  <Fees>{text(self._md_text('fees') or 'none')}</Fees>")
        access = self._md_text("access_constraints") or "none"
        lines.append(f"  <AccessConstraints>{text(access)}</AccessConstraints>")
        return lines

    def _dcp(self, xlink_ns: str, indent: str) -> list[str]:
        return [
            f"{indent}<DCPType>",
            f"{indent}  <HTTP>",
            f'{indent}    <Get><OnlineResource{xlink_ns} xlink:href="{_URL_MARKER}"/></Get>',
            f"{indent}  </HTTP>",
            f"{indent}</DCPType>",
        ]

    def _operation(self, name: str, formats: Sequence[str], xlink_ns: str) -> list[str]:
        lines = [f"    <{name}>"]
        lines += [f"      <Format>{text(fmt)}</Format>" for fmt in formats]
        lines += self._dcp(xlink_ns, "      ")
        lines.append(f"    </{name}>")
        return lines

    def _legend_style(
        self, layer: WMSLayer, indent: str, xlink_ns: str, style: str = "default"
    ) -> list[str]:
        """Style ``default`` with a LegendURL to our GetLegendGraphic (legend layers)."""
        if not layer.name or layer.name not in self._legend_layers:
            return []
        marker = _LEGEND_MARKER.format(self._legend_layers.index(layer.name))
        query = (
            f"format=image%2Fpng&amp;layer={escape(quote(layer.name, safe=''))}"
            "&amp;sld_version=1.1.0&amp;request=GetLegendGraphic&amp;service=WMS"
            "&amp;version=1.1.1&amp;styles="
        )
        return [
            f"{indent}<Style>",
            f"{indent}  <Name>{style}</Name>",
            f"{indent}  <Title>default</Title>",
            f"{indent}  <LegendURL {marker}>",
            f"{indent}    <Format>image/png</Format>",
            f'{indent}    <OnlineResource{xlink_ns} xlink:type="simple"'
            f' xlink:href="{_URL_MARKER}{query}" />',
            f"{indent}  </LegendURL>",
            f"{indent}</Style>",
        ]

    def _featureinfo_formats(self, version: str) -> list[str]:
        result: list[str] = []
        for info_type in self.featureinfo_types:
            mime = featureinfo_mime_type(info_type, version)
            if mime not in result:
                result.append(mime)
        return result

    # -- 1.1.0 / 1.1.1 --------------------------------------------------------------

    def _build_111(
        self, version: str, view: Mapping[int, LayerView] | None = None, tiled: bool = False
    ) -> str:
        xlink_ns = f" {_XLINK}"
        dtd = (
            "http://schemas.opengis.net/wms/1.1.1/WMS_MS_Capabilities.dtd"
            if version == "1.1.1"
            else "http://schemas.opengis.net/wms/1.1.0/capabilities_1_1_0.dtd"
        )
        lines = [
            '<?xml version="1.0"?>',
            f'<!DOCTYPE WMT_MS_Capabilities SYSTEM "{dtd}"',
            " [",
            *(_WMSC_DOCTYPE if tiled else [" <!ELEMENT VendorSpecificCapabilities EMPTY>"]),
            " ]>  <!-- end of DOCTYPE declaration -->",
            f'<WMT_MS_Capabilities version="{version}">',
        ]
        lines += self._service_section("OGC:WMS", xlink_ns, with_vocabulary=False)
        lines.append("</Service>")
        lines += ["<Capability>", "  <Request>"]
        lines += self._operation("GetCapabilities", ["application/vnd.ogc.wms_xml"], xlink_ns)
        lines += self._operation("GetMap", [f.name for f in self.formats.formats], xlink_ns)
        lines += self._operation("GetFeatureInfo", self._featureinfo_formats(version), xlink_ns)
        if self._legend_layers:
            formats = [f.name for f in self.formats.formats]
            lines += self._operation("GetLegendGraphic", formats, xlink_ns)
        lines += [
            "  </Request>",
            "  <Exception>",
            "    <Format>application/vnd.ogc.se_xml</Format>",
            "    <Format>application/vnd.ogc.se_inimage</Format>",
            "    <Format>application/vnd.ogc.se_blank</Format>",
            "  </Exception>",
        ]
        if tiled:
            lines += self._vendor_tile_sets(version, view)
        lines += self._layer_111(self.root, "  ", is_root=True, view=view)
        lines += ["</Capability>", "</WMT_MS_Capabilities>"]
        return "\n".join(lines)

    def _vendor_tile_sets(self, version: str, view: Mapping[int, LayerView] | None) -> list[str]:
        """WMS-C ``VendorSpecificCapabilities`` (omitted without tile sets); with a
        ``view`` only the tile sets of listed layers."""
        tile_layers = self._tile_layers
        if view is not None:
            listed = {node.name for node in self.root.iter_named() if id(node) in view}
            tile_layers = [layer for layer in tile_layers if layer.name in listed]
        if not tile_layers:
            return []
        lines = ["  <VendorSpecificCapabilities>"]
        for tile_layer in tile_layers:
            lines += _tile_set(tile_layer, version)
        lines.append("  </VendorSpecificCapabilities>")
        return lines

    def _layer_111(
        self,
        layer: WMSLayer,
        indent: str,
        is_root: bool = False,
        view: Mapping[int, LayerView] | None = None,
    ) -> list[str]:
        queryable = ' queryable="1"' if _is_queryable(layer, view) else ""
        lines = [f"{indent}<Layer{queryable}>"]
        inner = indent + "  "
        if layer.name:
            lines.append(f"{inner}<Name>{text(layer.name)}</Name>")
        lines.append(f"{inner}<Title>{text(layer.title)}</Title>")
        if layer.md.get("abstract"):
            lines.append(f"{inner}<Abstract>{text(layer.md['abstract'])}</Abstract>")
        if is_root:
            lines += [f"{inner}<SRS>{text(srs.code)}</SRS>" for srs in self.srs]
        info = self._layer_bboxes[id(layer)] if view is None else view[id(layer)].bboxes
        minx, miny, maxx, maxy = info.llbbox
        lines.append(
            f'{inner}<LatLonBoundingBox minx="{number(minx)}" miny="{number(miny)}"'
            f' maxx="{number(maxx)}" maxy="{number(maxy)}" />'
        )
        for srs, bbox in info.bboxes:
            lines.append(
                f'{inner}<BoundingBox SRS={attr(srs.code)} minx="{number(bbox[0])}"'
                f' miny="{number(bbox[1])}" maxx="{number(bbox[2])}" maxy="{number(bbox[3])}" />'
            )
        lines += _dimensions(layer, inner)
        for entry in _md_list(layer.md, "metadata"):
            kind = str(entry.get("type", ""))
            if kind not in ("TC211", "FGDC"):
                continue
            lines += [
                f"{inner}<MetadataURL type={attr(kind)}>",
                f"{inner}  <Format>{text(entry.get('format', ''))}</Format>",
                f"{inner}  <OnlineResource {_XLINK} xlink:href={attr(entry.get('url', ''))}/>",
                f"{inner}</MetadataURL>",
            ]
        lines += self._legend_style(layer, inner, f" {_XLINK}")
        lines += _scale_hint(layer.res_range, inner)
        for child in _children(layer, view):
            lines += self._layer_111(child, inner, view=view)
        lines.append(f"{indent}</Layer>")
        return lines

    # -- 1.3.0 ----------------------------------------------------------------------

    def _build_130(self, view: Mapping[int, LayerView] | None = None) -> str:
        side = math.isqrt(max(self.max_output_pixels, 0))
        lines = [
            '<?xml version="1.0"?>',
            '<WMS_Capabilities xmlns="http://www.opengis.net/wms"'
            ' xmlns:sld="http://www.opengis.net/sld"'
            ' xmlns:xlink="http://www.w3.org/1999/xlink"'
            ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            f"{INSPIRE_NAMESPACES if self.inspire_md else ''}"
            ' version="1.3.0"'
            ' xsi:schemaLocation="http://www.opengis.net/wms'
            " http://schemas.opengis.net/wms/1.3.0/capabilities_1_3_0.xsd"
            " http://www.opengis.net/sld"
            " http://schemas.opengis.net/sld/1.1.0/sld_capabilities.xsd"
            f'{INSPIRE_SCHEMA_LOCATION if self.inspire_md else ""}">',
        ]
        lines += self._service_section("WMS", "", with_vocabulary=True)
        lines += [f"  <MaxWidth>{side}</MaxWidth>", f"  <MaxHeight>{side}</MaxHeight>"]
        lines.append("</Service>")
        lines += ["<Capability>", "  <Request>"]
        lines += self._operation("GetCapabilities", ["text/xml"], "")
        lines += self._operation("GetMap", [f.name for f in self.formats.formats], "")
        lines += self._operation("GetFeatureInfo", self._featureinfo_formats("1.3.0"), "")
        if self._legend_layers:
            formats = [f.name for f in self.formats.formats]
            lines += self._operation("sld:GetLegendGraphic", formats, "")
        lines += [
            "  </Request>",
            "  <Exception>",
            "    <Format>XML</Format>",
            "    <Format>INIMAGE</Format>",
            "    <Format>BLANK</Format>",
            "  </Exception>",
        ]
        lines += extended_capabilities(self.inspire_md)
        lines += self._layer_130(self.root, "  ", is_root=True, view=view)
        lines += ["</Capability>", "</WMS_Capabilities>"]
        return "\n".join(lines)

    def _layer_130(
        self,
        layer: WMSLayer,
        indent: str,
        is_root: bool = False,
        view: Mapping[int, LayerView] | None = None,
    ) -> list[str]:
        queryable = ' queryable="1"' if _is_queryable(layer, view) else ""
        lines = [f"{indent}<Layer{queryable}>"]
        inner = indent + "  "
        md = layer.md
        if layer.name:
            lines.append(f"{inner}<Name>{text(layer.name)}</Name>")
        lines.append(f"{inner}<Title>{text(layer.title)}</Title>")
        if md.get("abstract"):
            lines.append(f"{inner}<Abstract>{text(md['abstract'])}</Abstract>")
        lines += self._keywords(md, True, inner)
        if is_root:
            lines += [f"{inner}<CRS>{text(srs.code)}</CRS>" for srs in self.srs]
        info = self._layer_bboxes[id(layer)] if view is None else view[id(layer)].bboxes
        west, south, east, north = info.llbbox
        lines += [
            f"{inner}<EX_GeographicBoundingBox>",
            f"{inner}  <westBoundLongitude>{number(west)}</westBoundLongitude>",
            f"{inner}  <eastBoundLongitude>{number(east)}</eastBoundLongitude>",
            f"{inner}  <southBoundLatitude>{number(south)}</southBoundLatitude>",
            f"{inner}  <northBoundLatitude>{number(north)}</northBoundLatitude>",
            f"{inner}</EX_GeographicBoundingBox>",
        ]
        for srs, bbox in info.bboxes:
            ordered = srs.axis_ordered(bbox)
            lines.append(
                f'{inner}<BoundingBox CRS={attr(srs.code)} minx="{number(ordered[0])}"'
                f' miny="{number(ordered[1])}" maxx="{number(ordered[2])}"'
                f' maxy="{number(ordered[3])}" />'
            )
        lines += _dimensions(layer, inner)
        lines += _attribution_130(md, inner)
        identifiers = _md_list(md, "identifier")
        for entry in identifiers:
            if entry.get("url") and entry.get("name"):
                lines += [
                    f"{inner}<AuthorityURL name={attr(entry['name'])}>",
                    f"{inner}  {_online_resource(entry['url'])}",
                    f"{inner}</AuthorityURL>",
                ]
        for entry in identifiers:
            if entry.get("name") and entry.get("value") is not None:
                lines.append(
                    f"{inner}<Identifier authority={attr(entry['name'])}>"
                    f"{text(entry['value'])}</Identifier>"
                )
        for entry in _md_list(md, "metadata"):
            lines += [
                f"{inner}<MetadataURL type={attr(entry.get('type', ''))}>",
                f"{inner}  <Format>{text(entry.get('format', ''))}</Format>",
                f"{inner}  {_online_resource(entry.get('url', ''))}",
                f"{inner}</MetadataURL>",
            ]
        for key, element in (("data", "DataURL"), ("feature_list", "FeatureListURL")):
            for entry in _md_list(md, key):
                lines += [
                    f"{inner}<{element}>",
                    f"{inner}  <Format>{text(entry.get('format', ''))}</Format>",
                    f"{inner}  {_online_resource(entry.get('url', ''))}",
                    f"{inner}</{element}>",
                ]
        style = INSPIRE_DEFAULT_STYLE if self.inspire_md else "default"
        lines += self._legend_style(layer, inner, "", style)
        lines += _scale_denominators(layer.res_range, inner)
        for child in _children(layer, view):
            lines += self._layer_130(child, inner, view=view)
        lines.append(f"{indent}</Layer>")
        return lines

    # -- 1.0.0 ----------------------------------------------------------------------

    def _build_100(self, view: Mapping[int, LayerView] | None = None) -> str:
        online = self.md.get("online_resource")
        lines = [
            '<?xml version="1.0"?>',
            '<WMT_MS_Capabilities version="1.0.0">',
            "<Service>",
            "  <Name>OGC:WMS</Name>",
            f"  <Title>{text(self._md_text('title') or 'MapProxy WMS')}</Title>",
        ]
        abstract = self._md_text("abstract")
        if abstract:
            lines.append(f"  <Abstract>{text(abstract)}</Abstract>")
        lines.append(
            f"  <OnlineResource>{text(online) if online else _URL_MARKER}</OnlineResource>"
        )
        lines.append(f"  <Fees>{text(self._md_text('fees') or 'none')}</Fees>")
        access = self._md_text("access_constraints") or "none"
        lines.append(f"  <AccessConstraints>{text(access)}</AccessConstraints>")
        lines += ["</Service>", "<Capability>", "  <Request>"]
        get = f'<DCPType><HTTP><Get onlineResource="{_URL_MARKER}"/></HTTP></DCPType>'
        map_formats = "".join(f"<{name} />" for name in self.formats.names_100())
        lines += [
            f"    <Map><Format>{map_formats}</Format>{get}</Map>",
            f"    <Capabilities><Format><WMS_XML /></Format>{get}</Capabilities>",
            "  </Request>",
            "  <Exception><Format><BLANK /><INIMAGE /><WMS_XML /></Format></Exception>",
        ]
        lines += self._layer_100(self.root, "  ", is_root=True, view=view)
        lines += ["</Capability>", "</WMT_MS_Capabilities>"]
        return "\n".join(lines)

    def _layer_100(
        self,
        layer: WMSLayer,
        indent: str,
        is_root: bool = False,
        view: Mapping[int, LayerView] | None = None,
    ) -> list[str]:
        queryable = ' queryable="1"' if _is_queryable(layer, view) else ""
        lines = [f"{indent}<Layer{queryable}>"]
        inner = indent + "  "
        if layer.name:
            lines.append(f"{inner}<Name>{text(layer.name)}</Name>")
        lines.append(f"{inner}<Title>{text(layer.title)}</Title>")
        if is_root:
            lines.append(f"{inner}<SRS>{text(' '.join(srs.code for srs in self.srs))}</SRS>")
        info = self._layer_bboxes[id(layer)] if view is None else view[id(layer)].bboxes
        minx, miny, maxx, maxy = info.llbbox
        lines.append(
            f'{inner}<LatLonBoundingBox minx="{number(minx)}" miny="{number(miny)}"'
            f' maxx="{number(maxx)}" maxy="{number(maxy)}" />'
        )
        for child in _children(layer, view):
            lines += self._layer_100(child, inner, view=view)
        lines.append(f"{indent}</Layer>")
        return lines


_WMSC_VERSIONS = frozenset({"1.1.0", "1.1.1"})
_WMSC_DOCTYPE = [
    " <!ELEMENT VendorSpecificCapabilities (TileSet*) >",
    " <!ELEMENT TileSet (SRS, BoundingBox?, Resolutions, Width, Height, Format, Layers*,"
    " Styles*) >",
    " <!ELEMENT Resolutions (#PCDATA) >",
    " <!ELEMENT Width (#PCDATA) >",
    " <!ELEMENT Height (#PCDATA) >",
    " <!ELEMENT Layers (#PCDATA) >",
    " <!ELEMENT Styles (#PCDATA) >",
]


def _tile_set(layer: TileLayer, version: str) -> list[str]:
    """The WMS-C ``TileSet`` of one tile layer: its extent in the grid (grid srs), the
    published (TMS) resolutions, tile size and format. As in MapProxy, 1.1.0 names the
    global mercator grids ``OSGEO:41001`` (like TMS)."""
    grid = layer.grid
    srs_code = grid.srs.code
    if version == "1.1.0" and grid.tms_profile == "global-mercator":
        srs_code = "OSGEO:41001"
    try:
        bbox = layer.extent.bbox_for(grid.srs)
    except transform_errors():
        bbox = grid.bbox
    bbox = bbox_intersection(bbox, grid.bbox) or grid.bbox
    resolutions = "".join(f"{number(grid.resolution(level))} " for level in tms_levels(grid))
    width, height = grid.tile_size
    image_format = "mixed" if layer.format == "image/mixed" else layer.format
    return [
        "    <TileSet>",
        f"      <SRS>{text(srs_code)}</SRS>",
        f'      <BoundingBox SRS={attr(srs_code)} minx="{number(bbox[0])}"'
        f' miny="{number(bbox[1])}" maxx="{number(bbox[2])}" maxy="{number(bbox[3])}" />',
        f"      <Resolutions>{resolutions}</Resolutions>",
        f"      <Width>{width}</Width>",
        f"      <Height>{height}</Height>",
        f"      <Format>{text(image_format)}</Format>",
        f"      <Layers>{text(layer.name)}</Layers>",
        "      <Styles></Styles>",
        "    </TileSet>",
    ]


def _without_blank_lines(document: str) -> str:
    lines = [line for line in document.split("\n") if line.strip()]
    return "\n".join(lines) + "\n"


def _is_queryable(layer: WMSLayer, view: Mapping[int, LayerView] | None) -> bool:
    return layer.queryable if view is None else view[id(layer)].queryable


def _children(layer: WMSLayer, view: Mapping[int, LayerView] | None) -> Sequence[WMSLayer]:
    return layer.children if view is None else view[id(layer)].children


def _is_mercator(srs: SRS) -> bool:
    """True for (pseudo) Mercator projections, whose y grows without bound at the poles."""
    operation = srs.crs.coordinate_operation
    method = operation.method_name.lower() if operation is not None else ""
    return "mercator" in method and "transverse" not in method


def _transform_extent(extent: MapExtent, srs: SRS) -> BBox:
    """``extent`` in ``srs``; geographic extents are cut at ±85.0511° for Mercator."""
    bbox = extent.bbox
    if extent.srs.is_latlong and not srs.is_latlong and _is_mercator(srs):
        bbox = (bbox[0], max(bbox[1], -_MERCATOR_MAX_LAT), bbox[2], min(bbox[3], _MERCATOR_MAX_LAT))
        if bbox[1] >= bbox[3]:
            return extent.bbox_for(srs)
    return extent.srs.transform_bbox_to(srs, bbox)


def _md_list(md: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """A list-of-dicts metadata entry (a single dict is accepted as a one-item list)."""
    value = md.get(key)
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, Mapping)]
    return []


def _online_resource(url: Any) -> str:
    return f"<OnlineResource xlink:href={attr(url)}/>"


def _attribution_130(md: Mapping[str, Any], indent: str) -> list[str]:
    attribution = md.get("attribution")
    if not isinstance(attribution, Mapping) or not attribution:
        return []
    lines = [f"{indent}<Attribution>"]
    if attribution.get("title"):
        lines.append(f"{indent}  <Title>{text(attribution['title'])}</Title>")
    if attribution.get("url"):
        lines.append(f"{indent}  {_online_resource(attribution['url'])}")
    logo = attribution.get("logo")
    if isinstance(logo, Mapping) and logo.get("url"):
        size_attrs = "".join(
            f" {key}={attr(logo[key])}" for key in ("width", "height") if logo.get(key)
        )
        lines += [
            f"{indent}  <LogoURL{size_attrs}>",
            f"{indent}    <Format>{text(logo.get('format', ''))}</Format>",
            f"{indent}    {_online_resource(logo['url'])}",
            f"{indent}  </LogoURL>",
        ]
    lines.append(f"{indent}</Attribution>")
    return lines


def _scale_hint(res_range: ResolutionRange | None, indent: str) -> list[str]:
    """1.1.x ScaleHint: diagonal pixel size (res * sqrt 2) of the finest and coarsest res."""
    if res_range is None or (res_range.min_res is None and res_range.max_res is None):
        return []
    attrs = ""
    if res_range.max_res is not None:
        attrs += f' min="{number(res_range.max_res * math.sqrt(2))}"'
    if res_range.min_res is not None:
        attrs += f' max="{number(res_range.min_res * math.sqrt(2))}"'
    return [f"{indent}<ScaleHint{attrs} />"]


def _scale_denominators(res_range: ResolutionRange | None, indent: str) -> list[str]:
    """1.3.0 Min/MaxScaleDenominator from the finest/coarsest res (OGC 0.28 mm pixels)."""
    if res_range is None:
        return []
    lines: list[str] = []
    if res_range.max_res is not None:
        scale = number(res_range.max_res / _OGC_PIXEL_SIZE_M)
        lines.append(f"{indent}<MinScaleDenominator>{scale}</MinScaleDenominator>")
    if res_range.min_res is not None:
        scale = number(res_range.min_res / _OGC_PIXEL_SIZE_M)
        lines.append(f"{indent}<MaxScaleDenominator>{scale}</MaxScaleDenominator>")
    return lines


def _dimensions(layer: WMSLayer, indent: str) -> list[str]:
    """``Dimension`` elements (1.1.1 and 1.3.0 alike, as MapProxy writes them)."""
    lines = []
    for dimension in layer.dimensions.values():
        units = ' units="ISO8601"' if dimension.is_time else ""
        lines.append(
            f"{indent}<Dimension name={attr(dimension.name)} default={attr(dimension.default)}"
            f' nearestValue="0"{units} >{text(",".join(dimension.values))}</Dimension>'
        )
    return lines
