"""Coverages: loading every kind, combinations, reprojection, expire_tiles, errors."""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path

import pytest
import shapely

from mapproxy.config.build.coverages import load_coverage
from mapproxy.config.build.extents import coverage_extent
from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.models.common import CoverageConfig
from mapproxy.coverage import (
    Coverage,
    bbox_coverage,
    geometry_coverage,
    mercator_tile_bbox,
    tiles_coverage,
)
from mapproxy.errors import ConfigurationError
from mapproxy.srs import get_srs

WGS84 = get_srs("EPSG:4326")
MERCATOR = get_srs("EPSG:3857")
TRIANGLE = "POLYGON((0 0, 10 0, 0 10, 0 0))"


@pytest.fixture
def paths(tmp_path: Path) -> ConfigPaths:
    return ConfigPaths(str(tmp_path), ".")


def load(conf: dict, paths: ConfigPaths, path: str = "sources.s.coverage") -> Coverage:  # type: ignore[type-arg]
    return load_coverage(conf, path, paths)


# --- Coverage ---------------------------------------------------------------------------


def test_polygon_intersects_checks_geometry_not_only_bbox() -> None:
    coverage = geometry_coverage(shapely.from_wkt(TRIANGLE), WGS84)
    assert coverage.bbox == (0.0, 0.0, 10.0, 10.0)
    assert not coverage.is_bbox_only
    assert coverage.intersects((4, 4, 6, 6), WGS84)
    # inside the bbox, outside the triangle
    assert not coverage.intersects((6, 6, 9, 9), WGS84)
    # touching the polygon counts (as in MapProxy), touching a plain bbox does not
    assert coverage.intersects((10, 0, 12, 2), WGS84)
    assert not coverage.intersects((11, 0, 12, 2), WGS84)
    assert coverage.contains((1, 1, 2, 2), WGS84)
    assert not coverage.contains((4, 4, 6, 6), WGS84)


def test_contains_point_checks_the_polygon_in_any_srs() -> None:
    coverage = geometry_coverage(shapely.from_wkt(TRIANGLE), WGS84)
    assert coverage.contains_point(2, 2, WGS84)
    assert coverage.contains_point(5, 5, WGS84)  # on the edge
    assert not coverage.contains_point(8, 8, WGS84)  # in the bbox, not in the triangle
    assert not coverage.contains_point(-1, 2, WGS84)
    x, y = WGS84.transform_to(MERCATOR, [(2, 2)])[0]
    assert coverage.contains_point(x, y, MERCATOR)
    x, y = WGS84.transform_to(MERCATOR, [(8, 8)])[0]
    assert not coverage.contains_point(x, y, MERCATOR)
    box = bbox_coverage((5, 45, 15, 55), WGS84)
    assert box.contains_point(5, 45, WGS84) and not box.contains_point(4.9, 50, WGS84)


def test_bbox_coverage_uses_bbox_math_and_transformed_bbox() -> None:
    coverage = bbox_coverage((5, 45, 15, 55), WGS84)
    assert coverage.is_bbox_only
    assert coverage.contains((6, 46, 7, 47), WGS84)
    assert not coverage.intersects((15, 45, 16, 46), WGS84)
    minx, _miny, maxx, _maxy = coverage.bbox_for(MERCATOR)
    assert round(minx) == 556597 and round(maxx) == 1669792
    assert coverage.intersects((600000, 5700000, 700000, 5800000), MERCATOR)
    assert not coverage.intersects((-700000, 5700000, -600000, 5800000), MERCATOR)


def test_geometry_is_reprojected_once_per_srs_and_shared() -> None:
    coverage = geometry_coverage(shapely.from_wkt(TRIANGLE), WGS84)
    results = []

    def worker() -> None:
        results.append(coverage.geometry_in(MERCATOR))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result is results[0] for result in results)
    _minx, miny, maxx, _maxy = results[0].bounds
    assert round(maxx) == 1113195 and round(miny) == 0
    # the hypotenuse is densified: its midpoint (5, 5) in mercator lies on the edge
    x, y = WGS84.transform_to(MERCATOR, [(4.9, 4.9)])[0]
    assert coverage.intersects((x - 10, y - 10, x + 10, y + 10), MERCATOR)
    x, y = WGS84.transform_to(MERCATOR, [(5.2, 5.2)])[0]
    assert not coverage.intersects((x - 10, y - 10, x + 10, y + 10), MERCATOR)


def test_coverage_pickles_without_caches() -> None:
    coverage = geometry_coverage(shapely.from_wkt(TRIANGLE), WGS84, clip=True)
    coverage.geometry_in(MERCATOR)
    copy = pickle.loads(pickle.dumps(coverage))
    assert copy.clip and copy.srs == WGS84 and copy.geometry.equals(coverage.geometry)


def test_clip_mask_marks_pixels_inside() -> None:
    coverage = geometry_coverage(shapely.from_wkt(TRIANGLE), WGS84)
    mask = coverage.mask_for((0, 0, 10, 10), (10, 10), WGS84)
    assert mask is not None
    assert mask.getpixel((0, 9)) == 255  # south-west corner
    assert mask.getpixel((9, 0)) == 0  # north-east corner
    assert coverage.mask_for((1, 1, 2, 2), (10, 10), WGS84) is None


def test_tiles_coverage_is_union_of_mercator_tiles() -> None:
    assert mercator_tile_bbox(0, 0, 1) == pytest.approx(
        (-20037508.342789244, 0.0, 0.0, 20037508.342789244)
    )
    coverage = tiles_coverage([(0, 0, 1), (1, 1, 1)])
    assert coverage.srs == MERCATOR
    assert coverage.geometry.area == pytest.approx(2 * 20037508.342789244**2)
    assert coverage.intersects((-100, 100, -50, 150), MERCATOR)  # north-west tile
    assert not coverage.intersects((50, 100, 100, 150), MERCATOR)  # north-east: not listed


# --- loading ----------------------------------------------------------------------------


def test_load_bbox_variants(paths: ConfigPaths) -> None:
    assert load({"bbox": [5, 45, 15, 55]}, paths).bbox == (5.0, 45.0, 15.0, 55.0)
    coverage = load({"bbox": "5,45,15,55", "bbox_srs": "EPSG:3857"}, paths)
    assert coverage.srs == MERCATOR and coverage.is_bbox_only
    assert load({"datasource": "1,2,3,4"}, paths).bbox == (1.0, 2.0, 3.0, 4.0)
    assert load({"datasource": [1, 2, 3, 4], "srs": "EPSG:3857"}, paths).srs == MERCATOR
    assert load_coverage(CoverageConfig(bbox=[1, 2, 3, 4], clip=True), "c", paths).clip


def test_load_wkt_file_relative_to_config_dir(tmp_path: Path, paths: ConfigPaths) -> None:
    (tmp_path / "area.txt").write_text(f"{TRIANGLE}\n\nPOLYGON((20 20, 21 20, 21 21, 20 20))\n")
    coverage = load({"datasource": "area.txt", "srs": "EPSG:4326"}, paths)
    assert coverage.bbox == (0.0, 0.0, 21.0, 21.0)
    assert not coverage.intersects((6, 6, 9, 9), WGS84)
    legacy = load({"polygons": "area.txt", "polygons_srs": "EPSG:3857"}, paths)
    assert legacy.srs == MERCATOR and legacy.geometry.equals(coverage.geometry)


def test_invalid_wkt_names_key_path_and_line(tmp_path: Path, paths: ConfigPaths) -> None:
    (tmp_path / "bad.wkt").write_text(f"{TRIANGLE}\nPOLYGON((0 0, 1 1\n")
    with pytest.raises(
        ConfigurationError, match=r"^sources\.s\.coverage\.datasource: invalid WKT .* line 2"
    ):
        load({"datasource": "bad.wkt"}, paths)


def test_missing_file_names_key_path(tmp_path: Path, paths: ConfigPaths) -> None:
    with pytest.raises(ConfigurationError) as error:
        load({"datasource": "nothere.geojson"}, paths)
    assert str(error.value) == (
        f"sources.s.coverage.datasource: file not found: {tmp_path / 'nothere.geojson'}"
    )
    with pytest.raises(ConfigurationError, match=r"^caches\.c\.coverage\.polygons: file not found"):
        load({"polygons": "x.txt"}, paths, "caches.c.coverage")


def test_unknown_srs_names_key_path(paths: ConfigPaths) -> None:
    with pytest.raises(ConfigurationError, match=r"^sources\.s\.coverage\.srs: unknown srs"):
        load({"bbox": [0, 0, 1, 1], "srs": "EPSG:999999"}, paths)
    with pytest.raises(ConfigurationError, match=r"^sources\.s\.coverage\.union\[1\]\.bbox_srs:"):
        load(
            {"union": [{"bbox": [0, 0, 1, 1]}, {"bbox": [0, 0, 1, 1], "bbox_srs": "FOO:1"}]}, paths
        )


def test_empty_coverage_is_an_error(paths: ConfigPaths) -> None:
    with pytest.raises(ConfigurationError, match=r"^sources\.s\.coverage: a coverage needs"):
        load({"clip": True}, paths)


def test_load_geojson_kinds(tmp_path: Path, paths: ConfigPaths) -> None:
    polygon = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [0, 10], [0, 0]]]}
    multi = {"type": "MultiPolygon", "coordinates": [[[[20, 20], [21, 20], [21, 21], [20, 20]]]]}
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": polygon},
            {"type": "Feature", "properties": {}, "geometry": multi},
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "Point", "coordinates": [50, 50]},
            },
        ],
    }
    (tmp_path / "fc.geojson").write_text(json.dumps(collection))
    (tmp_path / "poly.json").write_text(json.dumps(polygon))
    (tmp_path / "feature.txt").write_text(json.dumps({"type": "Feature", "geometry": multi}))
    coverage = load({"datasource": "fc.geojson"}, paths)
    assert coverage.srs == WGS84 and coverage.bbox == (0.0, 0.0, 21.0, 21.0)
    assert load({"datasource": "poly.json"}, paths).geometry.equals(shapely.geometry.shape(polygon))
    assert load({"datasource": "feature.txt"}, paths).bbox == (20.0, 20.0, 21.0, 21.0)


def test_invalid_geojson_is_an_error(tmp_path: Path, paths: ConfigPaths) -> None:
    (tmp_path / "bad.geojson").write_text('{"type": "Polygon", "coordinates": ')
    with pytest.raises(
        ConfigurationError, match=r"^sources\.s\.coverage\.datasource: invalid GeoJSON"
    ):
        load({"datasource": "bad.geojson"}, paths)


def _write_gpkg(filename: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    import numpy as np

    geometries = [
        shapely.from_wkt(TRIANGLE),
        shapely.box(20, 20, 21, 21),
        shapely.box(30, 30, 31, 31),
    ]
    pyogrio.raw.write(
        str(filename),
        geometry=shapely.to_wkb(geometries),
        field_data=[np.array(["tri", "sq", "other"], dtype=object)],
        fields=["name"],
        geometry_type="Polygon",
        crs="EPSG:4326",
        driver="GPKG",
    )


def test_load_ogr_datasource_with_where(tmp_path: Path, paths: ConfigPaths) -> None:
    _write_gpkg(tmp_path / "areas.gpkg")
    everything = load({"datasource": "areas.gpkg"}, paths)
    assert everything.srs == WGS84  # the datasource's own CRS
    assert everything.bbox == (0.0, 0.0, 31.0, 31.0)
    some = load({"datasource": "areas.gpkg", "where": "name IN ('tri', 'sq')"}, paths)
    assert some.bbox == (0.0, 0.0, 21.0, 21.0)
    legacy = load({"ogr_datasource": "areas.gpkg", "ogr_where": "name = 'sq'"}, paths)
    assert legacy.bbox == (20.0, 20.0, 21.0, 21.0)
    sql = load(
        {"datasource": "areas.gpkg", "where": "SELECT * FROM areas WHERE name = 'other'"}, paths
    )
    assert sql.bbox == (30.0, 30.0, 31.0, 31.0)


def test_where_forces_ogr_for_geojson(tmp_path: Path, paths: ConfigPaths) -> None:
    pytest.importorskip("pyogrio")
    features = [
        {
            "type": "Feature",
            "properties": {"name": name},
            "geometry": shapely.geometry.mapping(geometry),
        }
        for name, geometry in [("a", shapely.box(0, 0, 1, 1)), ("b", shapely.box(5, 5, 6, 6))]
    ]
    (tmp_path / "fc.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features})
    )
    assert load({"datasource": "fc.geojson", "where": "name = 'b'"}, paths).bbox == (
        5.0,
        5.0,
        6.0,
        6.0,
    )


def test_bad_ogr_where_names_key_path(tmp_path: Path, paths: ConfigPaths) -> None:
    _write_gpkg(tmp_path / "areas.gpkg")
    with pytest.raises(ConfigurationError, match=r"^sources\.s\.coverage\.datasource: "):
        load({"datasource": "areas.gpkg", "where": "nosuchfield = 1"}, paths)


def test_missing_pyogrio_names_the_extra(
    tmp_path: Path, paths: ConfigPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    (tmp_path / "areas.gpkg").write_bytes(b"\x00\x01binary")
    monkeypatch.setitem(sys.modules, "pyogrio", None)
    with pytest.raises(ConfigurationError, match=r"mapproxy\[ogr\]"):
        load({"datasource": "areas.gpkg"}, paths)


def test_union_intersection_difference_with_mixed_srs(paths: ConfigPaths) -> None:
    half = 20037508.342789244 / 2
    union = load(
        {"union": [{"bbox": [0, 0, 10, 10]}, {"bbox": [-half, 0, 0, half], "srs": "EPSG:3857"}]},
        paths,
    )
    assert union.srs == WGS84
    assert union.bbox == pytest.approx((-90.0, 0.0, 10.0, 66.51326), abs=1e-4)
    intersection = load(
        {"intersection": [{"bbox": [0, 0, 10, 10]}, {"bbox": [5, 5, 20, 20]}], "clip": True}, paths
    )
    assert intersection.bbox == (5.0, 5.0, 10.0, 10.0) and intersection.clip
    difference = load(
        {
            "difference": [
                {"bbox": [0, 0, 10, 10]},
                {"union": [{"bbox": [0, 0, 5, 10]}, {"bbox": [0, 0, 10, 5]}]},
            ]
        },
        paths,
    )
    assert difference.bbox == (5.0, 5.0, 10.0, 10.0)
    assert not difference.intersects((0, 0, 4, 4), WGS84)


def test_load_expire_tiles_file_and_directory(tmp_path: Path, paths: ConfigPaths) -> None:
    (tmp_path / "tiles").mkdir()
    (tmp_path / "tiles" / "sub").mkdir()
    (tmp_path / "tiles" / "a.txt").write_text("1/0/0\n")
    (tmp_path / "tiles" / "sub" / "b.txt").write_text("2/3/3\n\n")
    coverage = load({"expire_tiles": "tiles"}, paths)
    assert coverage.srs == MERCATOR
    assert coverage.bbox == pytest.approx(
        (-20037508.342789244, -20037508.342789244, 20037508.342789244, 20037508.342789244)
    )
    assert coverage.intersects((-200, 100, -100, 200), MERCATOR)
    assert not coverage.intersects((100, 100, 200, 200), MERCATOR)
    single = load({"expire_tiles": "tiles/a.txt"}, paths)
    assert single.bbox == pytest.approx((-20037508.342789244, 0, 0, 20037508.342789244))
    (tmp_path / "bad.txt").write_text("1/0/0\nfoo\n")
    with pytest.raises(ConfigurationError, match=r"^c\.expire_tiles: invalid tile .* line 2"):
        load({"expire_tiles": "bad.txt"}, paths, "c")


def test_coverage_extent_is_a_thin_wrapper(tmp_path: Path) -> None:
    (tmp_path / "area.txt").write_text(TRIANGLE)
    extent = coverage_extent(
        CoverageConfig(datasource="area.txt", srs="EPSG:3857"),
        "sources.s",
        ConfigPaths(str(tmp_path), "."),
    )
    assert extent is not None
    assert extent.bbox == (0.0, 0.0, 10.0, 10.0) and extent.srs == MERCATOR
