"""RasterSource: windowed, warped reads of local raster files."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from mapproxy.errors import SourceError
from mapproxy.source.base import MapQuery
from mapproxy.source.raster import RasterSource
from mapproxy.srs import get_srs

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "data" / "natural-earth-world.tif"

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
YELLOW = (255, 255, 0)
CYAN = (0, 255, 255)

# Quadrant raster: lon -90..90, lat -60..60, 0.5 degree pixels.
QUADRANT_BOUNDS = (-90.0, -60.0, 90.0, 60.0)
# Stripe raster: lon -30..30, lat 0..80, yellow north of 45 degrees, cyan south of it.
STRIPE_BOUNDS = (-30.0, 0.0, 30.0, 80.0)
STRIPE_LAT = 45.0
EARTH_RADIUS = 6378137.0


def write_rgb(path: Path, pixels: np.ndarray, bounds: tuple[float, float, float, float]) -> Path:
    """Write an RGB (height, width, 3) uint8 array as a tiled EPSG:4326 GeoTIFF."""
    height, width, _ = pixels.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:4326",
        transform=from_bounds(*bounds, width, height),
        photometric="RGB",
        tiled=True,
        blockxsize=64,
        blockysize=64,
    ) as dataset:
        dataset.write(pixels.transpose(2, 0, 1))
    return path


@pytest.fixture
def quadrant_tif(tmp_path: Path) -> Path:
    """NW red, NE green, SW blue, SE white."""
    pixels = np.zeros((240, 360, 3), dtype=np.uint8)
    pixels[:120, :180] = RED
    pixels[:120, 180:] = GREEN
    pixels[120:, :180] = BLUE
    pixels[120:, 180:] = WHITE
    return write_rgb(tmp_path / "quadrants.tif", pixels, QUADRANT_BOUNDS)


@pytest.fixture
def stripe_tif(tmp_path: Path) -> Path:
    """Yellow north of STRIPE_LAT, cyan south of it, 0.1 degree pixels."""
    pixels = np.zeros((800, 600, 3), dtype=np.uint8)
    north_rows = round((STRIPE_BOUNDS[3] - STRIPE_LAT) / 0.1)
    pixels[:north_rows] = YELLOW
    pixels[north_rows:] = CYAN
    return write_rgb(tmp_path / "stripes.tif", pixels, STRIPE_BOUNDS)


def from_bounds(
    west: float, south: float, east: float, north: float, width: int, height: int
) -> Affine:
    """Like rasterio.transform.from_bounds, without its affine deprecation warning."""
    return Affine((east - west) / width, 0.0, west, 0.0, -(north - south) / height, north)


def query(bbox: tuple[float, float, float, float], size: tuple[int, int], srs: str) -> MapQuery:
    return MapQuery(bbox=bbox, size=size, srs=get_srs(srs))


def mercator_y(lat: float) -> float:
    return EARTH_RADIUS * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def test_extent_is_file_bounds_in_file_srs(quadrant_tif: Path) -> None:
    source = RasterSource(str(quadrant_tif))
    assert source.extent is not None
    assert source.extent.srs == get_srs("EPSG:4326")
    assert source.extent.bbox == pytest.approx(QUADRANT_BOUNDS)
    assert source.supports_meta_tiles is True
    assert source.transparent is False


def test_epsg4326_query_returns_quadrant_colours(quadrant_tif: Path) -> None:
    source = RasterSource(str(quadrant_tif))
    result = source.get_map(query(QUADRANT_BOUNDS, (180, 120), "EPSG:4326"))
    image = result.as_image()
    assert image.size == (180, 120)
    assert image.mode == "RGB"
    assert image.getpixel((45, 30)) == RED
    assert image.getpixel((135, 30)) == GREEN
    assert image.getpixel((45, 90)) == BLUE
    assert image.getpixel((135, 90)) == WHITE


def test_sub_window_query_reads_only_that_area(quadrant_tif: Path) -> None:
    source = RasterSource(str(quadrant_tif), resampling="nearest")
    image = source.get_map(query((10.0, -50.0, 80.0, -5.0), (64, 64), "EPSG:4326")).as_image()
    colours = {image.getpixel((x, y)) for x in range(64) for y in range(64)}
    assert colours == {WHITE}


def test_epsg3857_query_puts_stripe_boundary_at_mercator_row(stripe_tif: Path) -> None:
    source = RasterSource(str(stripe_tif))
    south, north = 10.0, 70.0
    height = 600
    bbox = (-1_000_000.0, mercator_y(south), 1_000_000.0, mercator_y(north))
    image = source.get_map(query(bbox, (200, height), "EPSG:3857")).as_image()
    expected_row = (mercator_y(north) - mercator_y(STRIPE_LAT)) / (bbox[3] - bbox[1]) * height
    column = [image.getpixel((100, row)) for row in range(height)]
    # Yellow has red 255, cyan has red 0: the boundary is where red falls below half.
    boundary_row = next(row for row, pixel in enumerate(column) if pixel[0] < 128)
    assert abs(boundary_row - expected_row) <= 2
    # A linear (unprojected) mapping would put it about 80 rows higher.
    assert abs(boundary_row - (north - STRIPE_LAT) / (north - south) * height) > 40


def test_epsg900913_is_served_as_web_mercator(stripe_tif: Path) -> None:
    source = RasterSource(str(stripe_tif))
    bbox = (-1_000_000.0, mercator_y(10.0), 1_000_000.0, mercator_y(70.0))
    a = source.get_map(query(bbox, (64, 64), "EPSG:900913")).as_image()
    b = source.get_map(query(bbox, (64, 64), "EPSG:3857")).as_image()
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_query_partly_outside_data_is_transparent_there(quadrant_tif: Path) -> None:
    source = RasterSource(str(quadrant_tif))
    # lon -180..0, lat 0..90: data only east of -90 and south of 60.
    result = source.get_map(query((-180.0, 0.0, 0.0, 90.0), (180, 90), "EPSG:4326"))
    image = result.as_image()
    assert image.mode == "RGBA"
    assert result.transparent
    assert image.getpixel((10, 60))[3] == 0  # lon -170: west of the data
    assert image.getpixel((135, 10))[3] == 0  # lat 80: north of the data
    assert image.getpixel((135, 60)) == (*RED, 255)


def test_query_completely_outside_is_fully_transparent(quadrant_tif: Path) -> None:
    source = RasterSource(str(quadrant_tif))
    image = source.get_map(query((100.0, 70.0, 170.0, 85.0), (32, 16), "EPSG:4326")).as_image()
    assert image.mode == "RGBA"
    assert image.size == (32, 16)
    assert image.getextrema()[3] == (0, 0)


def test_transparent_source_returns_rgba_inside_data(quadrant_tif: Path) -> None:
    source = RasterSource(str(quadrant_tif), transparent=True)
    image = source.get_map(query((-80.0, 10.0, -10.0, 50.0), (16, 16), "EPSG:4326")).as_image()
    assert image.mode == "RGBA"
    assert image.getpixel((8, 8)) == (*RED, 255)


def test_nodata_pixels_are_transparent(tmp_path: Path) -> None:
    path = tmp_path / "grey.tif"
    values = np.full((1, 10, 20), 200, dtype=np.uint8)
    values[0, :, :10] = 0
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=20,
        height=10,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=from_bounds(0, 0, 20, 10, 20, 10),
        nodata=0,
    ) as dataset:
        dataset.write(values)
    source = RasterSource(str(path), resampling="nearest")
    image = source.get_map(query((0.0, 0.0, 20.0, 10.0), (20, 10), "EPSG:4326")).as_image()
    assert image.mode == "RGBA"
    assert image.getpixel((5, 5))[3] == 0
    assert image.getpixel((15, 5)) == (200, 200, 200, 255)


def test_coarse_queries_read_from_overviews(tmp_path: Path) -> None:
    path = tmp_path / "ovr.tif"
    pixels = np.zeros((512, 1024, 3), dtype=np.uint8)
    pixels[:, :512] = RED
    pixels[:, 512:] = BLUE
    write_rgb(path, pixels, (-180.0, -90.0, 180.0, 90.0))
    with rasterio.open(path, "r+") as dataset:
        dataset.build_overviews([2, 4, 8])
    source = RasterSource(str(path))
    assert source._overview_for((-180.0, -90.0, 180.0, 90.0), 1024, 512) == -1
    assert source._overview_for((-180.0, -90.0, 180.0, 90.0), 128, 64) == 2
    image = source.get_map(query((-180.0, -90.0, 180.0, 90.0), (128, 64), "EPSG:4326"))
    assert image.as_image().getpixel((10, 30)) == RED


def test_bundled_sample_world_query_is_not_uniform() -> None:
    source = RasterSource(str(SAMPLE))
    assert source.extent is not None
    assert source.extent.bbox == pytest.approx((-180.0, -90.0, 180.0, 90.0))
    result = source.get_map(query((-180.0, -90.0, 180.0, 90.0), (512, 256), "EPSG:4326"))
    image = result.as_image()
    assert image.size == (512, 256)
    assert image.mode == "RGB"
    extrema = image.getextrema()
    assert all(high - low > 50 for low, high in extrema)
    world = 20037508.342789244
    mercator = source.get_map(query((-world, -world, world, world), (256, 256), "EPSG:3857"))
    assert mercator.as_image().size == (256, 256)
    assert len(np.unique(np.asarray(mercator.as_image()).reshape(-1, 3), axis=0)) > 100


def test_missing_file_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        RasterSource(str(tmp_path / "missing.tif"))


def test_unreadable_file_raises_source_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.tif"
    path.write_text("this is not a raster")
    with pytest.raises(SourceError, match="cannot open"):
        RasterSource(str(path))


def test_unknown_resampling_raises_source_error(quadrant_tif: Path) -> None:
    with pytest.raises(SourceError, match="resampling"):
        RasterSource(str(quadrant_tif), resampling="fancy")


def test_concurrent_queries_from_eight_threads(stripe_tif: Path) -> None:
    source = RasterSource(str(stripe_tif))
    bboxes = [(-30.0 + i, 5.0 + i, 0.0 + i, 50.0 + i) for i in range(16)]
    expected = [
        np.asarray(source.get_map(query(bbox, (128, 128), "EPSG:4326")).as_image())
        for bbox in bboxes
    ]

    def render(index: int) -> np.ndarray:
        bbox = bboxes[index % len(bboxes)]
        return np.asarray(source.get_map(query(bbox, (128, 128), "EPSG:4326")).as_image())

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(render, range(64)))
    source.close()
    for index, image in enumerate(results):
        assert np.array_equal(image, expected[index % len(bboxes)])


def test_result_is_pil_image_of_query_size(quadrant_tif: Path) -> None:
    source = RasterSource(str(quadrant_tif))
    result = source.get_map(query((-50.0, -50.0, 50.0, 50.0), (300, 200), "EPSG:4326"))
    assert isinstance(result.as_image(), Image.Image)
    assert result.size == (300, 200)
