"""WMTS 1.0.0 capabilities documents, prebuilt once per service (on the first request)."""

from __future__ import annotations

import re
import threading
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from mapproxy.errors import MapProxyError
from mapproxy.grid.tile_grid import TileGrid
from mapproxy.layer.base import TileLayer
from mapproxy.service.base import xml_safe
from mapproxy.service.wmts.tile_sets import WMTSLayers, matrix_identifier, scale_denominator
from mapproxy.srs import get_srs

CAPABILITIES_CONTENT_TYPE = "application/xml"
# Placeholders for request-dependent URLs (never valid in XML, so never in real data).
SERVICE_URL = "\x00SERVICE\x00"
BASE_URL = "\x00BASE\x00"

_ROOT = (
    '<Capabilities xmlns="http://www.opengis.net/wmts/1.0" '
    'xmlns:ows="http://www.opengis.net/ows/1.1" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:gml="http://www.opengis.net/gml" '
    'xsi:schemaLocation="http://www.opengis.net/wmts/1.0 '
    'http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd" '
    'version="1.0.0">\n'
)
_WORLD = (-180.0, -90.0, 180.0, 90.0)


class CapabilitiesTemplate:
    """A capabilities document with placeholders for the public URLs.

    ``rest_template`` (relative to ``/wmts``, with ``{Layer}``/``{Format}`` still in
    it) selects the RESTful flavour: ResourceURLs and a ServiceMetadataURL. The parts
    are built on the first ``render`` (large configs start faster).
    """

    def __init__(
        self,
        md: Mapping[str, Any],
        layers: WMTSLayers,
        rest_template: str | None = None,
        info_formats: Sequence[tuple[str, str]] = (),
        featureinfo_template: str | None = None,
        legend_wms_version: str | None = None,
    ) -> None:
        self._md = md
        self._layers = layers
        self._rest_template = rest_template
        self._featureinfo = _FeatureInfoParts(
            info_formats, featureinfo_template if rest_template is not None else None
        )
        self._legend_wms_version = legend_wms_version
        self._lock = threading.Lock()
        self._template: str | None = None
        self._head = ""
        self._layer_parts: list[tuple[str, str]] = []
        self._tail = ""

    @property
    def template(self) -> str:
        """The document of all layers, with placeholders (built on first use)."""
        template = self._template
        if template is None:
            with self._lock:
                template = self._template
                if template is None:
                    self._build()
                    template = self._template = self._document(None)
        return template

    def _build(self) -> None:
        md, layers, rest_template = self._md, self._layers, self._rest_template
        featureinfo, legend_wms_version = self._featureinfo, self._legend_wms_version
        encoding = "KVP" if rest_template is None else "RESTful"
        self._head = "".join(
            [
                '<?xml version="1.0"?>\n',
                _ROOT,
                _service_identification(md),
                _service_provider(md),
                _operations_metadata(encoding),
                "  <Contents>\n",
            ]
        )
        self._layer_parts = [
            (name, _layer(group, rest_template, featureinfo, legend_wms_version))
            for name, group in layers.layers_by_name.items()
        ]
        tail = [_tile_matrix_set(grid_name, grid) for grid_name, grid in layers.grids.items()]
        tail.append("  </Contents>\n")
        if rest_template is not None:
            tail.append(
                f'  <ServiceMetadataURL xlink:href="{BASE_URL}/wmts/1.0.0/WMTSCapabilities.xml"/>\n'
            )
        tail.append("</Capabilities>")
        self._tail = "".join(tail)

    def _document(self, permitted: Container[str] | None) -> str:
        layers = "".join(
            part for name, part in self._layer_parts if permitted is None or name in permitted
        )
        return self._head + layers + self._tail

    def render(
        self, service_url: str, base_url: str, permitted: Container[str] | None = None
    ) -> str:
        """The document for one request; URLs are raw (escaped here).

        ``permitted`` limits the listed layers (authorization); None lists all.
        """
        template = self.template  # builds the parts on first use
        if permitted is not None:
            template = self._document(permitted)
        return template.replace(SERVICE_URL, _attr(service_url)).replace(BASE_URL, _attr(base_url))


def _text(value: Any, default: str = "") -> str:
    return escape(xml_safe(default if value is None else str(value)))


def _attr(value: str) -> str:
    return escape(xml_safe(value), {'"': "&quot;"})


def _service_identification(md: Mapping[str, Any]) -> str:
    parts = [
        "  <ows:ServiceIdentification>\n",
        f"    <ows:Title>{_text(md.get('title'))}</ows:Title>\n",
        f"    <ows:Abstract>{_text(md.get('abstract'))}</ows:Abstract>\n",
    ]
    keywords = list(_keywords(md.get("keyword_list")))
    if keywords:
        parts.append("    <ows:Keywords>\n")
        for vocabulary, keyword in keywords:
            vocabulary_attr = f' vocabulary="{_attr(vocabulary)}"' if vocabulary else ""
            parts.append(f"        <ows:Keyword{vocabulary_attr}>{_text(keyword)}</ows:Keyword>\n")
        parts.append("    </ows:Keywords>\n")
    parts.extend(
        [
            "    <ows:ServiceType>OGC WMTS</ows:ServiceType>\n",
            "    <ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion>\n",
            f"    <ows:Fees>{_text(md.get('fees'), 'none')}</ows:Fees>\n",
            "    <ows:AccessConstraints>"
            f"{_text(md.get('access_constraints'), 'none')}</ows:AccessConstraints>\n",
            "  </ows:ServiceIdentification>\n",
        ]
    )
    return "".join(parts)


def _keywords(keyword_list: Any) -> list[tuple[str | None, str]]:
    """(vocabulary, keyword) pairs from ``md.keyword_list``."""
    if not keyword_list:
        return []
    if isinstance(keyword_list, str):
        return [(None, keyword_list)]
    pairs: list[tuple[str | None, str]] = []
    for entry in keyword_list:
        if isinstance(entry, Mapping):
            vocabulary = entry.get("vocabulary")
            pairs.extend((vocabulary, str(k)) for k in entry.get("keywords") or [])
        elif isinstance(entry, str):
            pairs.append((None, entry))
    return pairs


def _service_provider(md: Mapping[str, Any]) -> str:
    contact = md.get("contact")
    if not isinstance(contact, Mapping) or not contact:
        return ""

    def field(key: str) -> str:
        return _text(contact.get(key))

    site = _attr(str(md.get("online_resource") or ""))
    return (
        "  <ows:ServiceProvider>\n"
        f"    <ows:ProviderName>{field('organization')}</ows:ProviderName>\n"
        f'    <ows:ProviderSite xlink:href="{site}"/>\n'
        "    <ows:ServiceContact>\n"
        f"      <ows:IndividualName>{field('person')}</ows:IndividualName>\n"
        f"      <ows:PositionName>{field('position')}</ows:PositionName>\n"
        "      <ows:ContactInfo>\n"
        "        <ows:Phone>\n"
        f"          <ows:Voice>{field('phone')}</ows:Voice>\n"
        f"          <ows:Facsimile>{field('fax')}</ows:Facsimile>\n"
        "        </ows:Phone>\n"
        "        <ows:Address>\n"
        f"          <ows:DeliveryPoint>{field('address')}</ows:DeliveryPoint>\n"
        f"          <ows:City>{field('city')}</ows:City>\n"
        f"          <ows:AdministrativeArea>{field('state')}</ows:AdministrativeArea>\n"
        f"          <ows:PostalCode>{field('postcode')}</ows:PostalCode>\n"
        f"          <ows:Country>{field('country')}</ows:Country>\n"
        f"          <ows:ElectronicMailAddress>{field('email')}</ows:ElectronicMailAddress>\n"
        "        </ows:Address>\n"
        "      </ows:ContactInfo>\n"
        "    </ows:ServiceContact>\n"
        "  </ows:ServiceProvider>\n"
    )


def _operations_metadata(encoding: str) -> str:
    operations = "".join(
        f'    <ows:Operation name="{name}">\n'
        "      <ows:DCP>\n"
        "        <ows:HTTP>\n"
        f'          <ows:Get xlink:href="{SERVICE_URL}">\n'
        '            <ows:Constraint name="GetEncoding">\n'
        "              <ows:AllowedValues>\n"
        f"                <ows:Value>{encoding}</ows:Value>\n"
        "              </ows:AllowedValues>\n"
        "            </ows:Constraint>\n"
        "          </ows:Get>\n"
        "        </ows:HTTP>\n"
        "      </ows:DCP>\n"
        "    </ows:Operation>\n"
        for name in ("GetCapabilities", "GetTile", "GetFeatureInfo")
    )
    return f"  <ows:OperationsMetadata>\n{operations}  </ows:OperationsMetadata>\n"


def _wgs84_bbox(layer: TileLayer) -> tuple[float, float, float, float]:
    try:
        return layer.extent.bbox_for(get_srs("EPSG:4326"))
    except MapProxyError:
        return _WORLD


@dataclass(frozen=True, slots=True)
class _FeatureInfoParts:
    """``featureinfo_formats`` (mimetype, suffix) and the RESTful template (None: KVP)."""

    formats: Sequence[tuple[str, str]]
    rest_template: str | None


def _legend_url(layer: TileLayer, rest: bool, wms_version: str | None) -> str:
    """The Style's LegendURL element (with placeholders), or ``""``."""
    legend = layer.legend
    if legend is None:
        return ""
    template = legend.rest_url if rest else legend.kvp_url
    if template is None:
        if not (legend.has_static_legend and wms_version):
            return ""
        href = (
            f"{BASE_URL}/service?service=WMS&amp;request=GetLegendGraphic&amp;"
            f"version={_attr(wms_version)}&amp;format=image%2Fpng&amp;layer={_attr(layer.name)}"
        )
    else:
        filled = template.replace("{layer_name}", layer.name)
        href = BASE_URL.join(_attr(part) for part in filled.split("{base_url}"))
    return (
        "        <LegendURL\n"
        '          format="image/png"\n'
        f'          xlink:href="{href}"\n'
        "        />\n"
    )


def _layer(
    group: list[TileLayer],
    rest_template: str | None,
    featureinfo: _FeatureInfoParts | None = None,
    legend_wms_version: str | None = None,
) -> str:
    first = group[0]
    minx, miny, maxx, maxy = (repr(float(v)) for v in _wgs84_bbox(first))
    image_format = f"image/{first.extension}"
    parts = [
        "    <Layer>\n",
        f"      <ows:Title>{_text(first.title)}</ows:Title>\n",
        "      <ows:Abstract></ows:Abstract>\n",
        "      <ows:WGS84BoundingBox>\n",
        f"        <ows:LowerCorner>{minx} {miny}</ows:LowerCorner>\n",
        f"        <ows:UpperCorner>{maxx} {maxy}</ows:UpperCorner>\n",
        "      </ows:WGS84BoundingBox>\n",
        f"      <ows:Identifier>{_text(first.name)}</ows:Identifier>\n",
        '      <Style isDefault="true">\n',
        "        <ows:Identifier>default</ows:Identifier>\n",
        _legend_url(first, rest_template is not None, legend_wms_version),
        "      </Style>\n",
        f"      <Format>{_text(image_format)}</Format>\n",
    ]
    info_formats = featureinfo.formats if featureinfo is not None and first.queryable else ()
    parts.extend(
        f"      <InfoFormat>{_text(mimetype)}</InfoFormat>\n" for mimetype, _ in info_formats
    )
    parts += _dimensions(first, rest_template)
    for layer in group:
        parts.append(
            "      <TileMatrixSetLink>\n"
            f"        <TileMatrixSet>{_text(layer.grid_name)}</TileMatrixSet>\n"
            "      </TileMatrixSetLink>\n"
        )
    if rest_template is not None:
        url = rest_template.replace("{Layer}", first.name).replace("{Format}", first.extension)
        parts.append(
            f'      <ResourceURL format="{_attr(image_format)}" resourceType="tile"\n'
            f'        template="{BASE_URL}/wmts{_attr(url)}"/>\n'
        )
    if featureinfo is not None and featureinfo.rest_template is not None:
        layer_template = featureinfo.rest_template.replace("{Layer}", first.name)
        for mimetype, suffix in info_formats:
            url = layer_template.replace("{InfoFormat}", suffix)
            parts.append(
                f'      <ResourceURL format="{_attr(mimetype)}" resourceType="FeatureInfo"'
                f' template="{BASE_URL}/wmts{_attr(url)}"/>\n'
            )
    parts.append("    </Layer>\n")
    return "".join(parts)


def _dimensions(layer: TileLayer, rest_template: str | None) -> list[str]:
    """``Dimension`` elements; the identifier is spelled as in the RESTful template."""
    spelled = {name.lower(): name for name in re.findall(r"\{(\w+)\}", rest_template or "")}
    parts = []
    for name, dimension in layer.dimensions.items():
        parts.append(
            "      <Dimension>\n"
            f"        <ows:Identifier>{_text(spelled.get(name, name))}</ows:Identifier>\n"
            f"        <Default>{_text(dimension.default)}</Default>\n"
        )
        parts.extend(f"        <Value>{_text(value)}</Value>\n" for value in dimension.values)
        parts.append("      </Dimension>\n")
    return parts


def _tile_matrix_set(grid_name: str, grid: TileGrid) -> str:
    is_geographic = grid.srs.is_latlong
    minx, _, _, maxy = grid.bbox
    corner = (maxy, minx) if grid.srs.is_axis_order_ne else (minx, maxy)
    top_left = f"{float(corner[0])!r} {float(corner[1])!r}"
    tile_width, tile_height = grid.tile_size
    parts = [
        "    <TileMatrixSet>\n",
        f"      <ows:Identifier>{_text(grid_name)}</ows:Identifier>\n",
        f"      <ows:SupportedCRS>urn:ogc:def:crs:{_text(grid.srs.code)}</ows:SupportedCRS>\n",
    ]
    for level in range(grid.levels):
        cols, rows = grid.grid_size(level)
        parts.append(
            "      <TileMatrix>\n"
            f"        <ows:Identifier>{matrix_identifier(level)}</ows:Identifier>\n"
            "        <ScaleDenominator>"
            f"{scale_denominator(grid.resolution(level), is_geographic)}</ScaleDenominator>\n"
            f"        <TopLeftCorner>{top_left}</TopLeftCorner>\n"
            f"        <TileWidth>{tile_width}</TileWidth>\n"
            f"        <TileHeight>{tile_height}</TileHeight>\n"
            f"        <MatrixWidth>{cols}</MatrixWidth>\n"
            f"        <MatrixHeight>{rows}</MatrixHeight>\n"
            "      </TileMatrix>\n"
        )
    parts.append("    </TileMatrixSet>\n")
    return "".join(parts)
