"""Coverages from config values: bbox, WKT, GeoJSON, OGR datasources, tile lists, combinations."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.models.common import BBoxValue, CoverageConfig
from mapproxy.coverage import (
    Coverage,
    NotPolygonal,
    bbox_coverage,
    difference_coverage,
    geometry_coverage,
    intersection_coverage,
    polygons_of,
    tiles_coverage,
    union_coverage,
)
from mapproxy.errors import ConfigurationError
from mapproxy.srs import SRS, BBox, UnknownSRS, get_srs
from mapproxy.util.lazy import lazy_module

if TYPE_CHECKING:
    import shapely
    from shapely.geometry.base import BaseGeometry
else:  # loaded with the first coverage: shapely and numpy cost ~14 MB
    shapely = lazy_module("shapely")

log = logging.getLogger("mapproxy.config")

DEFAULT_SRS = "EPSG:4326"

# Files with these suffixes are always read with OGR (binary or multi-file formats).
_OGR_SUFFIXES = frozenset(
    {".shp", ".gpkg", ".sqlite", ".db", ".gml", ".kml", ".gdb", ".tab", ".fgb", ".csv", ".zip"}
)
_GEOJSON_SUFFIXES = frozenset({".geojson", ".json"})
_TILE_LINE = re.compile(r"^\s*(\d+)/(\d+)/(\d+)\s*$")
_NUMBER = r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*"
_BBOX_STRING = re.compile(rf"^{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}$")


def load_coverage(
    conf: CoverageConfig | Mapping[str, Any], path: str, paths: ConfigPaths
) -> Coverage:
    """The coverage configured at key ``path`` (e.g. ``sources.wms1.coverage``).

    Relative file names are resolved against the config directory. Raises
    ConfigurationError naming the key path.
    """
    if not isinstance(conf, CoverageConfig):
        if not isinstance(conf, Mapping):
            raise ConfigurationError(f"{path}: expected a mapping, got {conf!r}")
        try:
            conf = CoverageConfig.model_validate(dict(conf))
        except ValidationError as error:
            first = error.errors()[0]
            location = ".".join(str(part) for part in first["loc"])
            raise ConfigurationError(f"{path}.{location}: {first['msg']}") from None
    clip = bool(conf.clip)
    for key in ("union", "intersection", "difference"):
        parts: list[CoverageConfig] | None = getattr(conf, key)
        if parts is None:
            continue
        if not parts:
            raise ConfigurationError(f"{path}.{key}: needs at least one coverage")
        coverages = [
            load_coverage(part, f"{path}.{key}[{index}]", paths) for index, part in enumerate(parts)
        ]
        if key == "union":
            return union_coverage(coverages, clip)
        if key == "intersection":
            return intersection_coverage(coverages, clip)
        return difference_coverage(coverages, clip)
    if conf.expire_tiles is not None:
        return _expire_tiles(conf.expire_tiles, f"{path}.expire_tiles", paths, clip)
    if conf.bbox is not None:
        srs = _srs(conf, path) or get_srs(DEFAULT_SRS)
        return bbox_coverage(parse_bbox(conf.bbox, f"{path}.bbox"), srs, clip)
    datasource: BBoxValue | None = conf.datasource
    key = "datasource"
    if datasource is None and conf.ogr_datasource is not None:
        datasource, key = conf.ogr_datasource, "ogr_datasource"
    if datasource is None and conf.polygons is not None:
        datasource, key = conf.polygons, "polygons"
    if datasource is None:
        raise ConfigurationError(
            f"{path}: a coverage needs one of bbox, datasource, polygons, ogr_datasource, "
            "expire_tiles, union, intersection or difference"
        )
    if isinstance(datasource, list) or _BBOX_STRING.match(datasource):
        srs = _srs(conf, path) or get_srs(DEFAULT_SRS)
        return bbox_coverage(parse_bbox(datasource, f"{path}.{key}"), srs, clip)
    where = conf.where if conf.where is not None else conf.ogr_where
    geometry, native_srs = _read_datasource(datasource, where, key, f"{path}.{key}", paths)
    srs = _srs(conf, path) or native_srs or get_srs(DEFAULT_SRS)
    try:
        return geometry_coverage(geometry, srs, clip)
    except NotPolygonal as error:
        raise ConfigurationError(f"{path}.{key}: {error}") from None


# --- plain values -------------------------------------------------------------------------


def _srs(conf: CoverageConfig, path: str) -> SRS | None:
    for key in ("srs", "bbox_srs", "polygons_srs", "ogr_srs"):
        code: str | None = getattr(conf, key)
        if code is None:
            continue
        try:
            return get_srs(str(code))
        except UnknownSRS as error:
            raise ConfigurationError(f"{path}.{key}: {error}") from None
    return None


def parse_bbox(value: BBoxValue, path: str) -> BBox:
    """A bbox from a list or ``"minx,miny,maxx,maxy"`` string; checks order and length."""
    parts: list[Any] = value.replace(" ", "").split(",") if isinstance(value, str) else list(value)
    try:
        numbers = [float(part) for part in parts]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{path}: expected four numbers, got {value!r}") from None
    if len(numbers) != 4:
        raise ConfigurationError(f"{path}: expected four numbers, got {value!r}")
    if numbers[0] >= numbers[2] or numbers[1] >= numbers[3]:
        raise ConfigurationError(f"{path}: minx/miny must be smaller than maxx/maxy: {value!r}")
    return (numbers[0], numbers[1], numbers[2], numbers[3])


# --- datasources --------------------------------------------------------------------------


def _read_datasource(
    value: str, where: str | None, key: str, path: str, paths: ConfigPaths
) -> tuple[BaseGeometry, SRS | None]:
    """Geometry (and the datasource's own SRS, if it names one) of a file or OGR source."""
    filename = paths.path(value)
    if not os.path.exists(filename):
        if _is_connection_string(value) and key != "polygons":
            return _read_ogr(value, where, path)
        raise ConfigurationError(f"{path}: file not found: {filename}")
    if key == "polygons":
        return _read_wkt(filename, path), None
    suffix = os.path.splitext(filename)[1].lower()
    if where is not None or key == "ogr_datasource" or os.path.isdir(filename):
        return _read_ogr(filename, where, path)
    if suffix in _OGR_SUFFIXES:
        return _read_ogr(filename, where, path)
    text = _read_text(filename)
    if text is None:
        return _read_ogr(filename, where, path)
    if suffix in _GEOJSON_SUFFIXES or text.lstrip().startswith("{"):
        return _read_geojson(text, filename, path)
    return _read_wkt(filename, path, text), None


def _is_connection_string(value: str) -> bool:
    # "PG:dbname=...", "WFS:http://...", "/vsicurl/..." are OGR sources, not files.
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9_]+:", value)) or value.startswith("/vsi")


def _read_text(filename: str) -> str | None:
    try:
        with open(filename, encoding="utf-8") as file:
            return file.read()
    except UnicodeDecodeError:
        return None
    except OSError as error:
        raise ConfigurationError(f"cannot read {filename}: {error}") from None


def _read_wkt(filename: str, path: str, text: str | None = None) -> BaseGeometry:
    if text is None:
        text = _read_text(filename)
        if text is None:
            raise ConfigurationError(f"{path}: {filename} is not a WKT text file")
    polygons: list[BaseGeometry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            geometry = shapely.from_wkt(line)
        except shapely.errors.GEOSException as error:
            raise ConfigurationError(
                f"{path}: invalid WKT in {filename} line {number}: {error}"
            ) from None
        found = polygons_of(geometry)
        if not found and not geometry.is_empty:
            log.warning(
                "%s: skipping %s in %s line %d (not a polygon)",
                path,
                geometry.geom_type,
                filename,
                number,
            )
        polygons.extend(found)
    if not polygons:
        raise ConfigurationError(f"{path}: no polygons in {filename}")
    return shapely.union_all(polygons)


def _read_geojson(text: str, filename: str, path: str) -> tuple[BaseGeometry, SRS | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{path}: invalid GeoJSON in {filename}: {error}") from None
    polygons: list[BaseGeometry] = []
    try:
        for geometry in _geojson_geometries(data):
            found = polygons_of(shapely.geometry.shape(geometry))
            if not found:
                log.warning(
                    "%s: skipping %s in %s (not a polygon)",
                    path,
                    geometry.get("type"),
                    filename,
                )
            polygons.extend(found)
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as error:
        raise ConfigurationError(f"{path}: invalid GeoJSON in {filename}: {error}") from None
    if not polygons:
        raise ConfigurationError(f"{path}: no polygons in {filename}")
    return shapely.union_all(polygons), None


def _geojson_geometries(data: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(data, Mapping):
        raise ValueError("expected a GeoJSON object")
    kind = data.get("type")
    if kind == "FeatureCollection":
        for feature in data["features"]:
            yield from _geojson_geometries(feature)
    elif kind == "Feature":
        if data.get("geometry") is not None:
            yield from _geojson_geometries(data["geometry"])
    elif kind == "GeometryCollection":
        for geometry in data["geometries"]:
            yield from _geojson_geometries(geometry)
    elif isinstance(kind, str):
        yield data
    else:
        raise ValueError("missing 'type'")


def _read_ogr(source: str, where: str | None, path: str) -> tuple[BaseGeometry, SRS | None]:
    try:
        import pyogrio
        import pyogrio.errors
    except ImportError:
        raise ConfigurationError(
            f"{path}: reading OGR datasources needs pyogrio: pip install 'mapproxy[ogr]'"
        ) from None
    # Without a filter, skip the attributes; with one, OGR drivers such as the
    # shapefile one need the filtered fields to be read.
    kwargs: dict[str, Any] = {"read_geometry": True}
    if where is None:
        kwargs["columns"] = []
    else:
        if where.lstrip().lower().startswith("select"):
            kwargs["sql"] = where
        else:
            kwargs["where"] = where
    ogr_errors = (
        pyogrio.errors.DataSourceError,
        pyogrio.errors.DataLayerError,
        pyogrio.errors.FieldError,
        pyogrio.errors.GeometryError,
        pyogrio.errors.FeatureError,
    )
    try:
        meta, _fids, wkb, _fields = pyogrio.raw.read(source, **kwargs)
    except ogr_errors as error:
        raise ConfigurationError(f"{path}: cannot read {source}: {error}") from None
    polygons: list[BaseGeometry] = []
    if wkb is not None:
        for geometry in shapely.from_wkb(wkb):
            if geometry is not None:
                polygons.extend(polygons_of(geometry))
    if not polygons:
        raise ConfigurationError(f"{path}: no polygons in {source}")
    native: SRS | None = None
    crs = meta.get("crs")
    if crs:
        try:
            native = get_srs(str(crs))
        except UnknownSRS:
            log.warning("%s: unknown CRS %r of %s; give srs", path, crs, source)
    return shapely.union_all(polygons), native


# --- expire tiles -------------------------------------------------------------------------


def _expire_tiles(value: str, path: str, paths: ConfigPaths, clip: bool) -> Coverage:
    """Union of the ``z/x/y`` tiles listed in a file or in all files below a directory."""
    location = paths.path(value)
    if os.path.isdir(location):
        files = sorted(
            os.path.join(root, name) for root, _dirs, names in os.walk(location) for name in names
        )
    elif os.path.isfile(location):
        files = [location]
    else:
        raise ConfigurationError(f"{path}: file or directory not found: {location}")
    tiles: list[tuple[int, int, int]] = []
    for filename in files:
        text = _read_text(filename)
        if text is None:
            raise ConfigurationError(f"{path}: {filename} is not a text file")
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            match = _TILE_LINE.match(line)
            if match is None:
                raise ConfigurationError(
                    f"{path}: invalid tile in {filename} line {number}: {line.strip()!r} "
                    "(expected z/x/y)"
                )
            z, x, y = (int(group) for group in match.groups())
            if x >= 2**z or y >= 2**z:
                raise ConfigurationError(
                    f"{path}: tile {z}/{x}/{y} in {filename} line {number} is outside the grid"
                )
            tiles.append((x, y, z))
    return tiles_coverage(tiles, clip)
