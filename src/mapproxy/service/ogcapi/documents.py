"""OGC API JSON documents: links, collections, tile matrix sets, OpenAPI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mapproxy.grid.tile_grid import TileGrid
from mapproxy.srs import SRS, BBox

JSON = "application/json"
HTML = "text/html"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
OGC_REL = "http://www.opengis.net/def/rel/ogc/1.0/"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
WEB_MERCATOR_QUAD = "WebMercatorQuad"
WEB_MERCATOR_QUAD_URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
# OGC pixel size in metres; cellSize / this is the scale denominator (also for degrees).
_PIXEL_SIZE_METRES = 0.00028

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/" + name
    for name in ("core", "html", "json", "landing-page", "oas30")
] + [
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    *(
        "http://www.opengis.net/spec/ogcapi-maps-1/1.0/conf/" + name
        for name in (
            "core",
            "scaling",
            "spatial-subsetting",
            "crs",
            "display-resolution",
            "background",
            "collection-map",
            "collections-selection",
            "png",
            "jpeg",
            "dataset-map",
            "tilesets",
        )
    ),
    *(
        "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/" + name
        for name in ("core", "oas30", "tileset", "tilesets-list", "geodata-tilesets")
    ),
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/dataset-tilesets",
]

# (extension, mime type, label) of the map image formats
IMAGE_FORMATS = {
    "png": ("png", "image/png", "PNG"),
    "jpeg": ("jpg", "image/jpeg", "JPEG"),
}


def crs_uri(srs: SRS) -> str:
    """The OGC URI of ``srs``; geographic WGS84 in lon/lat order is CRS84."""
    code = srs.code.upper()
    if code in ("CRS:84", "OGC:CRS84"):
        return CRS84
    authority, _, number = code.partition(":")
    if authority == "EPSG" and number == "900913":
        number = "3857"
    return f"http://www.opengis.net/def/crs/{authority}/0/{number}"


def grid_crs_uri(srs: SRS) -> str:
    """The CRS URI of a tile matrix set or storage CRS (as the reference names them).

    EPSG:4326 is published as CRS84 (coordinates stay lon/lat); every other code,
    ``CRS:84`` included, as ``.../def/crs/{authority}/0/{code}``.
    """
    code = srs.code.upper()
    if code == "EPSG:4326":
        return CRS84
    authority, _, number = code.partition(":")
    if authority == "EPSG" and number == "900913":
        number = "3857"
    return f"http://www.opengis.net/def/crs/{authority}/0/{number}"


def srs_code_from_uri(value: str) -> str:
    """An SRS code for a CRS URI, ``[EPSG:n]`` safe CURIE or plain code (``EPSG:3857``)."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    lowered = text.lower()
    for prefix in ("http://www.opengis.net/def/crs/", "https://www.opengis.net/def/crs/"):
        if lowered.startswith(prefix):
            parts = text[len(prefix) :].strip("/").split("/")
            if len(parts) == 3:
                authority, _, number = parts
                if authority.upper() == "OGC" and number.upper() in ("CRS84", "CRS:84"):
                    return "CRS:84"
                return f"{authority.upper()}:{number}"
            return text
    if lowered in ("crs84", "ogc:crs84"):
        return "CRS:84"
    return text


def format_number(value: float) -> float | int:
    """Integral floats as ints (``180``), others unchanged (as the reference prints)."""
    return int(value) if float(value).is_integer() and abs(value) < 1e15 else value


def bbox_header(bbox: BBox) -> str:
    """The ``Content-Bbox`` header value."""
    return ",".join(repr(format_number(v)) for v in bbox)


def link(rel: str, mimetype: str, title: str, href: str, templated: bool = False) -> dict[str, Any]:
    """One link object."""
    result: dict[str, Any] = {"rel": rel, "type": mimetype, "title": title, "href": href}
    if templated:
        result["templated"] = True
    return result


def json_html_links(href: str, json_title: str, html_title: str) -> list[dict[str, Any]]:
    """The ``self`` (JSON) and ``alternate`` (HTML) links of a document at ``href``."""
    return [
        link("self", JSON, json_title, f"{href}?f=json"),
        link("alternate", HTML, html_title, f"{href}?f=html"),
    ]


@dataclass(frozen=True, slots=True)
class TileMatrixSet:
    """A grid published as an OGC tile matrix set under ``id``."""

    id: str
    grid: TileGrid

    @property
    def crs(self) -> str:
        return grid_crs_uri(self.grid.srs)

    @property
    def is_web_mercator_quad(self) -> bool:
        return self.id == WEB_MERCATOR_QUAD


def tile_matrix_set_document(tms: TileMatrixSet) -> dict[str, Any]:
    """The full tile matrix set definition (levels in the grid's own row order)."""
    grid = tms.grid
    minx, miny, _maxx, maxy = grid.bbox
    is_nw = grid.origin == "nw"
    # a north/east CRS (other than EPSG:4326, published as CRS84) gives points as y/x
    swap = tms.crs != CRS84 and grid.srs.is_axis_order_ne
    document: dict[str, Any] = {"id": tms.id, "title": tms.id, "crs": tms.crs}
    if tms.is_web_mercator_quad:
        document["uri"] = WEB_MERCATOR_QUAD_URI
        document["wellKnownScaleSet"] = (
            "http://www.opengis.net/def/wkss/OGC/1.0/GoogleMapsCompatible"
        )
    matrices = []
    for level in range(grid.levels):
        res = grid.resolution(level)
        cols, rows = grid.grid_size(level)
        origin = [minx, maxy] if is_nw else [minx, miny]
        matrices.append(
            {
                "id": str(level),
                "cellSize": res,
                "scaleDenominator": res / _PIXEL_SIZE_METRES,
                "cornerOfOrigin": "topLeft" if is_nw else "bottomLeft",
                "pointOfOrigin": origin[::-1] if swap else origin,
                "matrixWidth": cols,
                "matrixHeight": rows,
                "tileWidth": grid.tile_size[0],
                "tileHeight": grid.tile_size[1],
            }
        )
    document["tileMatrices"] = matrices
    return document


def tileset_document(
    base: str,
    tms: TileMatrixSet,
    tiles_href: str,
    label: str,
    formats: Sequence[str],
    subject: str | None = None,
) -> dict[str, Any]:
    """One map tileset (``tiles_href`` is ``.../map/tiles``).

    ``label`` names the data in the title, ``subject`` (default: ``label``) in the links.
    """
    document: dict[str, Any] = {"title": f"{label} with {tms.id} tile matrix set"}
    subject = label if subject is None else subject
    if tms.is_web_mercator_quad:
        document["tileMatrixSetURI"] = WEB_MERCATOR_QUAD_URI
    document["dataType"] = "map"
    document["crs"] = tms.crs
    scheme = f"{base}/tileMatrixSets/{tms.id}"
    links = [
        link(OGC_REL + "tiling-scheme", JSON, f"{tms.id} definition (as JSON)", f"{scheme}?f=json"),
        link(OGC_REL + "tiling-scheme", HTML, f"{tms.id} definition (as HTML)", f"{scheme}?f=html"),
        link("self", JSON, f"{tms.id} map tileset for {subject} (as JSON)",
             f"{tiles_href}/{tms.id}?f=json"),
        link("alternate", HTML, f"{tms.id} map tileset for {subject} (as HTML)",
             f"{tiles_href}/{tms.id}?f=html"),
    ]  # fmt: skip
    for name in formats:
        ext, mimetype, label = IMAGE_FORMATS[name]
        links.append(
            link(
                "item",
                mimetype,
                f"{tms.id} map tiles for {subject} (as {label})",
                f"{tiles_href}/{tms.id}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}.{ext}",
                templated=True,
            )
        )
    document["links"] = links
    return document


def openapi_document(
    base: str, md: Mapping[str, Any], version: str, max_pixels: int, has_dataset: bool
) -> dict[str, Any]:
    """A minimal OpenAPI 3.0 description of the routes this service answers."""
    ident = md.get("identification") or {}
    info: dict[str, Any] = {
        "version": version,
        "title": str(ident.get("title") or "MapProxy OGC API"),
        "description": str(ident.get("description") or ""),
    }
    license_md = md.get("license")
    if isinstance(license_md, Mapping) and license_md.get("name"):
        info["license"] = {k: str(v) for k, v in license_md.items() if k in ("name", "url")}
    info["x-OGC-limits"] = {"maps": {"maxPixels": max_pixels}}
    f_param = {"$ref": "#/components/parameters/f"}
    map_params = [f_param] + [
        {"$ref": f"#/components/parameters/{name}"}
        for name in ("bbox", "bbox-crs", "crs", "width", "height", "transparent", "bgcolor")
    ]
    tile_params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("tileMatrixSetId", "tileMatrix", "tileRow", "tileCol")
    ]
    collection_param = {
        "name": "collectionId",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }

    def op(summary: str, operation_id: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "operationId": operation_id,
                "parameters": params,
                "responses": {"200": {"description": summary}},
            }
        }

    paths: dict[str, Any] = {
        "/": op("Landing page", "getLandingPage", [f_param]),
        "/conformance": op("Conformance declaration", "getConformance", [f_param]),
        "/api": op("API definition", "getAPI", [f_param]),
        "/collections": op("Collections", "getCollections", [f_param]),
        "/collections/{collectionId}": op(
            "Collection", "getCollection", [collection_param, f_param]
        ),
        "/collections/{collectionId}/map": op(
            "Collection map", "getCollectionMap", [collection_param, *map_params]
        ),
        "/tileMatrixSets": op("Tile matrix sets", "getTileMatrixSets", [f_param]),
        "/tileMatrixSets/{tileMatrixSetId}": op(
            "Tile matrix set", "getTileMatrixSet", [tile_params[0], f_param]
        ),
        "/collections/{collectionId}/map/tiles": op(
            "Collection map tilesets", "getCollectionMapTilesets", [collection_param, f_param]
        ),
        "/collections/{collectionId}/map/tiles/{tileMatrixSetId}": op(
            "Collection map tileset",
            "getCollectionMapTileset",
            [collection_param, tile_params[0], f_param],
        ),
        "/collections/{collectionId}/map/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/"
        "{tileCol}": op(
            "Collection map tile", "getCollectionMapTile", [collection_param, *tile_params]
        ),
    }
    if has_dataset:
        paths["/map"] = op("Dataset map", "getDatasetMap", map_params)
        paths["/map/tiles"] = op("Dataset map tilesets", "getDatasetMapTilesets", [f_param])
        paths["/map/tiles/{tileMatrixSetId}"] = op(
            "Dataset map tileset", "getDatasetMapTileset", [tile_params[0], f_param]
        )
        paths["/map/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}"] = op(
            "Dataset map tile", "getDatasetMapTile", tile_params
        )

    def query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema}

    parameters = {
        "f": query("f", {"type": "string", "enum": ["json", "html", "png", "jpeg"]}),
        "bbox": query("bbox", {"type": "array", "items": {"type": "number"}}),
        "bbox-crs": query("bbox-crs", {"type": "string", "format": "uri"}),
        "crs": query("crs", {"type": "string", "format": "uri"}),
        "width": query("width", {"type": "integer", "minimum": 1}),
        "height": query("height", {"type": "integer", "minimum": 1}),
        "transparent": query("transparent", {"type": "boolean"}),
        "bgcolor": query("bgcolor", {"type": "string"}),
    }
    return {
        "openapi": "3.0.2",
        "info": info,
        "servers": [{"url": base, "description": info["description"]}],
        "paths": paths,
        "components": {"parameters": parameters},
    }
