"""SRS: codes, axis order, transformations and shared transformers."""

from __future__ import annotations

import pytest

from mapproxy import srs as srs_module
from mapproxy.errors import TransformationError
from mapproxy.srs import (
    SRS,
    UnknownSRS,
    bbox_contains,
    bbox_intersection,
    bbox_intersects,
    get_srs,
    normalize_srs_code,
)


@pytest.mark.parametrize(
    ("code", "north_east"),
    [
        ("EPSG:4326", True),
        ("EPSG:4258", True),
        ("EPSG:31467", True),
        ("CRS:84", False),
        ("EPSG:3857", False),
        ("EPSG:900913", False),
        ("EPSG:25832", False),
        ("EPSG:2056", False),  # Swiss LV95: east/north in PROJ
        ("EPSG:3035", True),  # ETRS89-LAEA: northing first in the EPSG definition
    ],
)
def test_axis_order(code: str, north_east: bool) -> None:
    assert get_srs(code).is_axis_order_ne is north_east


def test_geographic_and_projected() -> None:
    assert get_srs("EPSG:4326").is_latlong
    assert get_srs("CRS:84").is_latlong
    assert not get_srs("EPSG:3857").is_latlong


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("epsg:4326", "EPSG:4326"),
        (" EPSG:3857 ", "EPSG:3857"),
        ("urn:ogc:def:crs:EPSG::4326", "EPSG:4326"),
        ("urn:ogc:def:crs:EPSG:6.3:25832", "EPSG:25832"),
        ("http://www.opengis.net/def/crs/EPSG/0/3857", "EPSG:3857"),
        ("crs:84", "CRS:84"),
    ],
)
def test_code_normalization(text: str, code: str) -> None:
    assert normalize_srs_code(text) == code


@pytest.mark.parametrize("code", ["EPSG:999999", "FOO:1", "", "EPSG:abc", "EPSG:4326\x00"])
def test_unknown_codes_raise_unknown_srs(code: str) -> None:
    with pytest.raises(UnknownSRS):
        get_srs(code)


def test_get_srs_is_shared() -> None:
    assert get_srs("EPSG:4326") is get_srs("EPSG:4326")


def test_900913_and_3857_are_the_same_space() -> None:
    a, b = get_srs("EPSG:900913"), get_srs("EPSG:3857")
    assert a != b
    assert a.is_same_as(b)
    assert a.transform_to(b, [(1000.0, 2000.0)]) == [(1000.0, 2000.0)]


def test_transform_is_x_y_regardless_of_axis_order() -> None:
    wgs84, mercator = get_srs("EPSG:4326"), get_srs("EPSG:3857")
    ((x, y),) = wgs84.transform_to(mercator, [(10.0, 50.0)])
    assert x == pytest.approx(1113194.9079, abs=0.01)
    assert y == pytest.approx(6446275.8410, abs=0.01)
    ((lon, lat),) = mercator.transform_to(wgs84, [(x, y)])
    assert (lon, lat) == (pytest.approx(10.0), pytest.approx(50.0))


def test_transformers_are_created_once() -> None:
    wgs84, utm = get_srs("EPSG:4326"), get_srs("EPSG:25832")
    wgs84.transform_to(utm, [(9.0, 50.0)])
    first = wgs84._transformer_to(utm)
    wgs84.transform_to(utm, [(9.5, 50.5)])
    assert wgs84._transformer_to(utm) is first


def test_transform_bbox_covers_curved_edges() -> None:
    bbox = get_srs("EPSG:25832").transform_bbox_to(
        get_srs("EPSG:4326"), (300000, 5200000, 900000, 6100000)
    )
    minx, miny, maxx, maxy = bbox
    # the northern edge bulges north in geographic coordinates
    assert (
        maxy > get_srs("EPSG:25832").transform_to(get_srs("EPSG:4326"), [(300000, 6100000)])[0][1]
    )
    assert minx < 6.5 < 14 < maxx
    # the southern edge sags: its middle lies south of its corners
    corner_lat = get_srs("EPSG:25832").transform_to(get_srs("EPSG:4326"), [(300000, 5200000)])
    assert miny <= corner_lat[0][1]


def test_geographic_to_mercator_bbox_stops_at_mercator_latitudes() -> None:
    minx, miny, maxx, maxy = get_srs("EPSG:4326").transform_bbox_to(
        get_srs("EPSG:3857"), (-180, -90, 180, 90)
    )
    assert minx == pytest.approx(-20037508.342789244)
    assert maxx == pytest.approx(20037508.342789244)
    assert 19_900_000 < maxy < 20_100_000
    assert miny == pytest.approx(-maxy)


def test_user_bbox_in_utm_is_not_clipped_to_the_zone() -> None:
    minx, _, maxx, _ = get_srs("EPSG:4326").transform_bbox_to(
        get_srs("EPSG:25832"), (5, 47, 15, 55)
    )
    assert minx < 250000
    assert maxx > 900000


def test_failed_transformation_raises() -> None:
    with pytest.raises(TransformationError):
        get_srs("EPSG:4326").transform_to(get_srs("EPSG:3857"), [(0.0, 91.0)])


def test_axis_ordered_bbox() -> None:
    assert get_srs("EPSG:4326").axis_ordered((1, 2, 3, 4)) == (2, 1, 4, 3)
    assert get_srs("EPSG:3857").axis_ordered((1, 2, 3, 4)) == (1, 2, 3, 4)


def test_bbox_helpers() -> None:
    assert bbox_intersects((0, 0, 10, 10), (5, 5, 15, 15))
    assert not bbox_intersects((0, 0, 10, 10), (10, 0, 20, 10))
    assert bbox_intersection((0, 0, 10, 10), (5, 5, 15, 15)) == (5, 5, 10, 10)
    assert bbox_intersection((0, 0, 1, 1), (2, 2, 3, 3)) is None
    assert bbox_contains((0, 0, 10, 10), (1, 1, 9, 9))
    assert not bbox_contains((0, 0, 10, 10), (1, 1, 11, 9))


@pytest.mark.parametrize("code", sorted(srs_module._WELL_KNOWN))
def test_well_known_codes_match_proj(code: str) -> None:
    """The table that lets common codes load without PROJ says what PROJ says."""
    import pyproj

    srs = SRS(code)
    crs = pyproj.CRS.from_user_input(srs_module._ALIASES.get(code, code))
    assert srs.is_latlong == bool(crs.is_geographic)
    assert srs.is_axis_order_ne == srs_module._axis_order_is_north_east(code, crs)
    assert srs.crs == crs


def test_valid_area_is_read_from_proj_on_first_use() -> None:
    utm = SRS("EPSG:25832")
    assert utm._valid_lonlat_bbox is srs_module._UNSET
    west, south, east, north = utm.valid_lonlat_bbox  # type: ignore[misc]
    assert 5.0 < west < 7.0 and 11.0 < east < 13.0 and south > 30.0 and north > 60.0
    assert SRS("EPSG:4326").valid_lonlat_bbox is None
    assert utm.clip_to_valid_area((0.0, 40.0, 20.0, 50.0))[0] == west


def test_unknown_codes_fail_at_construction() -> None:
    with pytest.raises(UnknownSRS):
        SRS("EPSG:999999")
