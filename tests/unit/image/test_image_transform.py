from __future__ import annotations

import math

import pytest
from PIL import Image

from mapproxy.image.transform import resampling_filter, transform_image
from mapproxy.srs import get_srs

EPSG4326 = get_srs("EPSG:4326")
EPSG3857 = get_srs("EPSG:3857")
MERC_MAX = 20037508.342789244
RED = (255, 0, 0)
BLUE = (0, 0, 255)


def quadrants(size: int = 100) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    image = Image.new("RGB", (size, size))
    half = size // 2
    image.paste((255, 0, 0), (0, 0, half, half))
    image.paste((0, 255, 0), (half, 0, size, half))
    image.paste((0, 0, 255), (0, half, half, size))
    image.paste((255, 255, 255), (half, half, size, size))
    return image


def latitude_stripes() -> Image.Image:
    """World image in EPSG:4326 (1 px per degree): red where floor(lat / 10) is even."""
    image = Image.new("RGB", (360, 180))
    for row in range(180):
        lat = 90 - row - 0.5
        color = RED if math.floor(lat / 10) % 2 == 0 else BLUE
        image.paste(color, (0, row, 360, row + 1))
    return image


def mercator_row(lat: float, height: int) -> float:
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * 6378137
    return (MERC_MAX - y) / (2 * MERC_MAX) * height


def test_same_srs_identity_returns_input():
    image = quadrants()
    bbox = (0.0, 0.0, 10.0, 10.0)
    assert transform_image(image, bbox, EPSG4326, bbox, (100, 100), EPSG4326) is image


def test_same_srs_crop_keeps_pixels():
    image = quadrants()
    # Right half of the top half: source pixels x 50..100, y 0..50 (all green).
    out = transform_image(
        image, (0, 0, 100, 100), EPSG3857, (50, 50, 100, 100), (50, 50), EPSG3857, "nearest"
    )
    assert out.size == (50, 50)
    assert out.getpixel((0, 0)) == (0, 255, 0)
    assert out.getpixel((49, 49)) == (0, 255, 0)


def test_same_srs_scale_down_and_crop():
    image = quadrants()
    # Centered window of half the size scaled to 20x20: four quadrants, 10x10 px each.
    out = transform_image(image, (0, 0, 100, 100), EPSG3857, (25, 25, 75, 75), (20, 20), EPSG3857)
    assert out.getpixel((5, 5)) == (255, 0, 0)
    assert out.getpixel((15, 5)) == (0, 255, 0)
    assert out.getpixel((5, 15)) == (0, 0, 255)
    assert out.getpixel((15, 15)) == (255, 255, 255)


def test_same_srs_outside_source_is_transparent():
    image = quadrants()
    # Destination extends 50 units left of the source: left half empty.
    out = transform_image(
        image, (0, 0, 100, 100), EPSG3857, (-50, 0, 50, 100), (100, 100), EPSG3857, "bilinear"
    )
    assert out.mode == "RGBA"
    assert out.getpixel((10, 10))[3] == 0
    assert out.getpixel((10, 90))[3] == 0
    assert out.getpixel((60, 10)) == (255, 0, 0, 255)
    assert out.getpixel((60, 90)) == (0, 0, 255, 255)


def test_same_srs_scaled_and_partly_outside():
    image = quadrants()
    out = transform_image(
        image, (0, 0, 100, 100), EPSG3857, (-100, -100, 100, 100), (50, 50), EPSG3857
    )
    # The source fills the top-right quarter of the output.
    assert out.getpixel((10, 10))[3] == 0
    assert out.getpixel((30, 30))[3] == 0
    assert out.getpixel((30, 5)) == (255, 0, 0, 255)
    assert out.getpixel((45, 20)) == (255, 255, 255, 255)


def test_same_srs_completely_outside_is_empty():
    out = transform_image(
        quadrants(), (0, 0, 100, 100), EPSG3857, (200, 200, 300, 300), (10, 10), EPSG3857
    )
    assert out.getextrema()[3] == (0, 0)


def test_reprojection_puts_stripes_at_mercator_positions():
    out = transform_image(
        latitude_stripes(),
        (-180, -90, 180, 90),
        EPSG4326,
        (-MERC_MAX, -MERC_MAX, MERC_MAX, MERC_MAX),
        (512, 512),
        EPSG3857,
        "nearest",
    )
    assert out.size == (512, 512)
    for lat in (-70, -40, -20, 0, 10, 30, 60, 80):
        boundary = mercator_row(lat, 512)
        # Rows above the boundary are the stripe north of it.
        north = RED if math.floor(lat / 10) % 2 == 0 else BLUE
        south = BLUE if north == RED else RED
        for x in (5, 256, 500):
            assert out.getpixel((x, math.floor(boundary) - 2))[:3] == north, (lat, x)
            assert out.getpixel((x, math.ceil(boundary) + 1))[:3] == south, (lat, x)


def test_reprojection_outside_mercator_area_is_transparent_and_does_not_raise():
    mercator_world = Image.new("RGB", (256, 256), RED)
    out = transform_image(
        mercator_world,
        (-MERC_MAX, -MERC_MAX, MERC_MAX, MERC_MAX),
        EPSG3857,
        (-180, -90, 180, 90),
        (360, 180),
        EPSG4326,
    )
    assert out.mode == "RGBA"
    assert out.getpixel((180, 1))[3] == 0  # lat 88.5: beyond mercator's 85.05 limit
    assert out.getpixel((180, 178))[3] == 0
    assert out.getpixel((180, 90)) == (255, 0, 0, 255)
    assert out.getpixel((10, 10)) == (255, 0, 0, 255)  # lat 79.5


def test_reprojection_with_failing_points_leaves_gaps_transparent():
    # A geographic world image into a transverse mercator far beyond its valid zone:
    # some destination points cannot be transformed at all.
    utm = get_srs("EPSG:32632")
    source = Image.new("RGB", (360, 180), BLUE)
    out = transform_image(
        source, (-180, -90, 180, 90), EPSG4326, (-3e7, -1e7, 3e7, 1e7), (300, 100), utm
    )
    assert out.size == (300, 100)
    assert out.mode == "RGBA"
    back = transform_image(
        source.convert("RGBA"),
        (-180, -90, 180, 90),
        EPSG4326,
        (-180, -90, 180, 90),
        (90, 45),
        EPSG4326,
    )
    assert back.getpixel((0, 0)) == (0, 0, 255, 255)
    utm_image = Image.new("RGB", (200, 200), RED)
    geographic = transform_image(
        utm_image, (-5e6, -1e7, 6e6, 1e7), utm, (-180, -90, 180, 90), (360, 180), EPSG4326
    )
    assert geographic.mode == "RGBA"
    assert geographic.getpixel((0, 90))[3] == 0  # lon -180: 189 degrees from the zone
    assert geographic.getpixel((189, 90)) == (255, 0, 0, 255)  # near 9 degrees east


def test_reprojection_keeps_alpha_of_source():
    source = Image.new("RGBA", (90, 90), (0, 0, 0, 0))
    source.paste((255, 0, 0, 255), (0, 0, 45, 90))
    out = transform_image(
        source, (0, 0, 10, 10), EPSG4326, (100000, 100000, 1000000, 1000000), (64, 64), EPSG3857
    )
    assert out.mode == "RGBA"
    assert out.getpixel((5, 32)) == (255, 0, 0, 255)
    assert out.getpixel((60, 32))[3] == 0


def test_palette_source_is_converted():
    source = Image.new("RGB", (32, 32), RED).quantize(2)
    out = transform_image(
        source, (0, 0, 10, 10), EPSG4326, (100000, 100000, 1000000, 1000000), (16, 16), EPSG3857
    )
    assert out.getpixel((8, 8))[:3] == RED


def test_large_downscale_uses_reduction():
    source = Image.new("RGB", (2048, 2048), BLUE)
    source.paste(RED, (0, 0, 1024, 2048))
    out = transform_image(
        source, (0, 0, 20, 20), EPSG4326, (0, 0, 2226389.8, 2273030.9), (128, 128), EPSG3857
    )
    assert out.getpixel((10, 64))[:3] == RED
    assert out.getpixel((120, 64))[:3] == BLUE


def test_resampling_names():
    assert resampling_filter("Nearest") == Image.Resampling.NEAREST
    assert resampling_filter("bilinear") == Image.Resampling.BILINEAR
    assert resampling_filter("bicubic") == Image.Resampling.BICUBIC
    with pytest.raises(ValueError):
        resampling_filter("lanczos5")
