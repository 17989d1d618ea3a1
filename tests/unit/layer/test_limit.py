"""``limited_to`` areas: parsing, caching, reprojection, rasterized clips."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from PIL import Image

from mapproxy.layer.limit import (
    CLIP_ALL,
    InvalidLimit,
    LimitArea,
    apply_clip,
    clip_for,
    parse_limited_to,
)
from mapproxy.srs import get_srs

WGS84 = get_srs("EPSG:4326")
MERCATOR = get_srs("EPSG:3857")
BBOX = (0.0, 0.0, 10.0, 10.0)


def mask_of(area: LimitArea, bbox=BBOX, size=(100, 100), srs=WGS84) -> np.ndarray:  # type: ignore[no-untyped-def]
    clip = clip_for([area], bbox, size, srs)
    assert clip.mask is not None
    return np.asarray(clip.mask) > 0


def test_bbox_list_and_tuple() -> None:
    area = parse_limited_to({"geometry": [1, 2, 3, 4], "srs": "EPSG:4326"})
    assert area.geometry.bounds == (1.0, 2.0, 3.0, 4.0)
    assert area.srs == WGS84
    assert parse_limited_to({"geometry": (1, 2, 3, 4), "srs": "EPSG:4326"}).bbox_in(WGS84) == (
        1.0,
        2.0,
        3.0,
        4.0,
    )


def test_wkt_polygons_one_per_line_are_united() -> None:
    text = "POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))\n\nMULTIPOLYGON(((5 5, 6 5, 6 6, 5 5)))\n"
    area = parse_limited_to({"geometry": text, "srs": "EPSG:4326"})
    assert area.geometry.geom_type == "MultiPolygon"
    assert area.geometry.area == pytest.approx(1.5)


def test_wkt_spanning_lines_is_one_geometry() -> None:
    text = "POLYGON((0 0, 2 0,\n 2 2, 0 2, 0 0))"
    assert parse_limited_to({"geometry": text, "srs": "EPSG:4326"}).geometry.area == 4


def test_shapely_geometry_keeps_only_polygons_and_is_made_valid() -> None:
    collection = shapely.GeometryCollection(
        [shapely.box(0, 0, 1, 1), shapely.LineString([(5, 5), (6, 6)])]
    )
    area = parse_limited_to({"geometry": collection, "srs": "EPSG:4326"})
    assert area.geometry.equals(shapely.box(0, 0, 1, 1))
    bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])
    fixed = parse_limited_to({"geometry": bowtie, "srs": "EPSG:4326"}).geometry
    assert fixed.is_valid
    assert fixed.area == pytest.approx(2.0)


@pytest.mark.parametrize(
    "value",
    [
        {"geometry": [0, 0, 1, 1]},
        {"geometry": [0, 0, 1, 1], "srs": "EPSG:nonsense"},
        {"geometry": [0, 0, 1], "srs": "EPSG:4326"},
        {"geometry": [1, 1, 0, 0], "srs": "EPSG:4326"},
        {"geometry": ["a", 0, 1, 1], "srs": "EPSG:4326"},
        {"geometry": "POLYGON((0 0, 1", "srs": "EPSG:4326"},
        {"geometry": "LINESTRING(0 0, 1 1)", "srs": "EPSG:4326"},
        {"geometry": 42, "srs": "EPSG:4326"},
        "EPSG:4326",
    ],
)
def test_invalid_limits_are_rejected(value: object) -> None:
    with pytest.raises(InvalidLimit):
        parse_limited_to(value)


def test_parsed_areas_are_cached_by_content_and_geometry_identity() -> None:
    first = parse_limited_to({"geometry": [0, 0, 7, 7], "srs": "EPSG:4326"})
    assert parse_limited_to({"geometry": [0.0, 0, 7, 7], "srs": "EPSG:4326"}) is first
    assert parse_limited_to({"geometry": [0, 0, 7, 7], "srs": "EPSG:3857"}) is not first
    wkt = "POLYGON((0 0, 3 0, 3 3, 0 0))"
    assert parse_limited_to({"geometry": wkt, "srs": "EPSG:4326"}) is parse_limited_to(
        {"geometry": wkt, "srs": "EPSG:4326"}
    )
    geometry = shapely.box(0, 0, 2, 2)
    area = parse_limited_to({"geometry": geometry, "srs": "EPSG:4326"})
    assert parse_limited_to({"geometry": geometry, "srs": "EPSG:4326"}) is area
    other = parse_limited_to({"geometry": shapely.box(0, 0, 3, 3), "srs": "EPSG:4326"})
    assert other.geometry.area == 9


def test_world_area_transforms_to_web_mercator() -> None:
    area = parse_limited_to({"geometry": [-180, -90, 180, 90], "srs": "EPSG:4326"})
    minx, miny, maxx, maxy = area.bbox_in(MERCATOR) or (0, 0, 0, 0)
    assert minx == pytest.approx(-20037508.342789244)
    assert maxx == pytest.approx(20037508.342789244)
    assert np.isfinite([miny, maxy]).all()
    assert clip_for([area], (0, 0, 1e6, 1e6), (256, 256), MERCATOR) is CLIP_ALL


def test_reprojected_edges_follow_the_target_srs() -> None:
    # a lon/lat box in UTM 32N: its meridian edges converge towards the north
    area = parse_limited_to({"geometry": [6, 47, 12, 55], "srs": "EPSG:4326"})
    utm = area.geometry_in(get_srs("EPSG:25832"))
    assert len(shapely.get_coordinates(utm)) > 20
    assert utm.is_valid


def test_clip_covers_all_or_nothing_without_a_mask() -> None:
    inside = parse_limited_to({"geometry": [-1, -1, 11, 11], "srs": "EPSG:4326"})
    outside = parse_limited_to({"geometry": [20, 20, 30, 30], "srs": "EPSG:4326"})
    assert clip_for([inside], BBOX, (10, 10), WGS84).covers_all
    assert clip_for([outside], BBOX, (10, 10), WGS84).covers_nothing
    assert clip_for([inside, outside], BBOX, (10, 10), WGS84).covers_nothing
    assert clip_for([], BBOX, (10, 10), WGS84).covers_all


def test_pixels_are_inside_when_their_centres_are() -> None:
    mask = mask_of(parse_limited_to({"geometry": [5, 2.5, 7.5, 7.5], "srs": "EPSG:4326"}))
    rows, cols = np.nonzero(mask)
    assert (cols.min(), cols.max()) == (50, 74)
    assert (rows.min(), rows.max()) == (25, 74)
    assert mask.sum() == 25 * 50
    # an edge through pixel centres is not rounded outwards
    mask = mask_of(parse_limited_to({"geometry": [0.05, 0, 0.26, 10], "srs": "EPSG:4326"}))
    assert np.nonzero(mask[0])[0].tolist() == [0, 1, 2]


def test_holes_and_several_polygons() -> None:
    text = (
        "POLYGON((0 0, 5 0, 5 10, 0 10, 0 0), (1 1, 4 1, 4 4, 1 4, 1 1))\n"
        "POLYGON((5 0, 10 0, 10 5, 5 5, 5 0))"
    )
    mask = mask_of(parse_limited_to({"geometry": text, "srs": "EPSG:4326"}))
    assert mask[95, 2]  # the first polygon, outside its hole
    assert not mask[75, 25]  # inside the hole
    assert mask[75, 75]  # the touching second polygon
    assert not mask[25, 75]


def test_several_areas_intersect() -> None:
    left = parse_limited_to({"geometry": [0, 0, 5, 10], "srs": "EPSG:4326"})
    lower = parse_limited_to({"geometry": [0, 0, 10, 5], "srs": "EPSG:4326"})
    clip = clip_for([left, lower], BBOX, (100, 100), WGS84)
    assert clip.mask is not None
    mask = np.asarray(clip.mask) > 0
    assert mask.sum() == 50 * 50
    assert mask[75, 25] and not mask[25, 25] and not mask[75, 75]


def test_apply_clip_makes_outside_transparent_and_keeps_alpha() -> None:
    mask = Image.new("L", (4, 1), 0)
    mask.putpixel((0, 0), 255)
    mask.putpixel((1, 0), 255)
    rgb = Image.new("RGB", (4, 1), (10, 20, 30))
    clipped = apply_clip(rgb, mask)
    assert clipped.mode == "RGBA"
    assert [clipped.getpixel((x, 0))[3] for x in range(4)] == [255, 255, 0, 0]  # type: ignore[index]
    half = Image.new("RGBA", (4, 1), (10, 20, 30, 128))
    assert [apply_clip(half, mask).getpixel((x, 0))[3] for x in range(4)] == [128, 128, 0, 0]  # type: ignore[index]
    assert half.getpixel((3, 0))[3] == 128  # type: ignore[index]  # the input is untouched
