from __future__ import annotations

import io
import math

import numpy as np
import pyproj
import pytest
from PIL import Image

from mapproxy.image import warp
from mapproxy.image.result import ImageResult
from mapproxy.image.tile import assemble_tiles
from mapproxy.image.transform import transform_image, transform_tiles
from mapproxy.srs import get_srs

pytest.importorskip("cv2")

EPSG4326 = get_srs("EPSG:4326")
EPSG3857 = get_srs("EPSG:3857")
EPSG25832 = get_srs("EPSG:25832")
MERC_MAX = 20037508.342789244
TILE = 256
# a 4x4 mosaic of z8 tiles around 9E 51N (Germany)
RES = 2 * MERC_MAX / TILE / 2**8
X0 = 9 * MERC_MAX / 180
Y0 = math.log(math.tan(math.pi / 4 + math.radians(51) / 2)) * 6378137
SRC_BBOX = (X0 - 2 * TILE * RES, Y0 - 2 * TILE * RES, X0 + 2 * TILE * RES, Y0 + 2 * TILE * RES)


def gradient_tiles(mode: str = "P") -> list[ImageResult | None]:
    """16 PNG tiles (row-major) of one smooth gradient with grid lines every 64 px."""
    ys, xs = np.mgrid[0 : 4 * TILE, 0 : 4 * TILE]
    pixels = np.dstack(((xs // 4) % 256, (ys // 4) % 256, (xs + ys) // 8 % 256)).astype(np.uint8)
    pixels[::64, :, :] = 0
    pixels[:, ::64, :] = 0
    mosaic = Image.fromarray(pixels)
    tiles: list[ImageResult | None] = []
    for row in range(4):
        for column in range(4):
            tile = mosaic.crop((column * TILE, row * TILE, (column + 1) * TILE, (row + 1) * TILE))
            if mode == "P":
                tile = tile.quantize(256, method=Image.Quantize.FASTOCTREE)
            out = io.BytesIO()
            tile.save(out, "PNG")
            tiles.append(ImageResult(out.getvalue()))
    return tiles


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    one = np.asarray(a.convert("RGBA"), dtype=np.int16)
    two = np.asarray(b.convert("RGBA"), dtype=np.int16)
    return float(np.abs(one - two).mean())


def test_source_maps_match_the_exact_transformation_at_every_pixel():
    dst_bbox = (400_000.0, 5_580_000.0, 560_000.0, 5_720_000.0)
    maps = warp.source_maps(SRC_BBOX, (1024, 1024), EPSG3857, dst_bbox, (320, 280), EPSG25832)
    assert maps is not None
    assert maps.map_x.shape == (280, 320)
    assert maps.reduce_factor == 1
    assert maps.inside
    # exact source pixel position (pixel centres at integers) of every destination pixel
    rows, columns = np.mgrid[0:280, 0:320]
    dst_x = dst_bbox[0] + (columns + 0.5) * (dst_bbox[2] - dst_bbox[0]) / 320
    dst_y = dst_bbox[3] - (rows + 0.5) * (dst_bbox[3] - dst_bbox[1]) / 280
    transformer = pyproj.Transformer.from_crs("EPSG:25832", "EPSG:3857", always_xy=True)
    src_x, src_y = transformer.transform(dst_x, dst_y)
    exact_x = (src_x - SRC_BBOX[0]) / RES - 0.5
    exact_y = (SRC_BBOX[3] - src_y) / RES - 0.5
    assert np.abs(maps.map_x - exact_x).max() < 0.6
    assert np.abs(maps.map_y - exact_y).max() < 0.6


def test_source_maps_fail_where_the_projection_does_not_reach():
    # the whole world in EPSG:4326 reaches the poles, which web mercator cannot hold
    world = (-180.0, -90.0, 180.0, 90.0)
    assert warp.source_maps(SRC_BBOX, (1024, 1024), EPSG3857, world, (256, 128), EPSG4326) is None


def test_source_maps_ask_for_reduction_when_shrinking_a_lot():
    dst_bbox = (8.0, 50.5, 10.0, 51.5)  # about 3 source pixels per destination pixel
    maps = warp.source_maps(SRC_BBOX, (1024, 1024), EPSG3857, dst_bbox, (120, 96), EPSG4326)
    assert maps is not None
    assert maps.reduce_factor == 3
    shrunk = warp.warp_tiles(
        gradient_tiles(),
        (4, 4),
        (TILE, TILE),
        SRC_BBOX,
        EPSG3857,
        dst_bbox,
        (120, 96),
        EPSG4326,
        "bilinear",
    )
    assert shrunk is not None
    assert shrunk.size == (120, 96)


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize(
    ("dst_bbox", "dst_srs"),
    [
        ((8.2, 50.3, 9.8, 51.7), EPSG4326),
        ((420_000.0, 5_600_000.0, 580_000.0, 5_700_000.0), EPSG25832),
    ],
)
def test_warp_matches_the_pillow_mesh(dst_bbox, dst_srs, resampling):
    tiles = gradient_tiles()
    warped = warp.warp_tiles(
        tiles, (4, 4), (TILE, TILE), SRC_BBOX, EPSG3857, dst_bbox, (400, 300), dst_srs, resampling
    )
    assert warped is not None
    assert warped.mode == "RGB"  # opaque tiles covering the request: no alpha band
    assert warped.size == (400, 300)
    mosaic = assemble_tiles(tiles, (4, 4), (TILE, TILE), transparent=True)
    mesh = transform_image(mosaic, SRC_BBOX, EPSG3857, dst_bbox, (400, 300), dst_srs, resampling)
    assert mean_difference(warped, mesh) < 1.5


def test_warp_leaves_areas_beyond_the_tiles_transparent():
    dst_bbox = (10.0, 50.0, 13.0, 52.0)  # reaches east of the mosaic
    warped = warp.warp_tiles(
        gradient_tiles(),
        (4, 4),
        (TILE, TILE),
        SRC_BBOX,
        EPSG3857,
        dst_bbox,
        (300, 200),
        EPSG4326,
        "bicubic",
    )
    assert warped is not None
    assert warped.mode == "RGBA"
    east_edge = (X0 + 2 * TILE * RES) / MERC_MAX * 180  # longitude of the mosaic's edge
    edge_column = (east_edge - 10.0) / 3.0 * 300
    assert warped.getpixel((int(edge_column) - 2, 100))[3] == 255
    assert warped.getpixel((int(edge_column) + 2, 100))[3] == 0


def test_missing_tiles_are_transparent_and_do_not_darken_neighbours():
    tiles = gradient_tiles("RGB")
    white = io.BytesIO()
    Image.new("RGB", (TILE, TILE), (255, 255, 255)).save(white, "PNG")
    tiles = [ImageResult(white.getvalue()) for _ in tiles]
    tiles[5] = None  # second row, second column
    dst_bbox = (8.2, 50.3, 9.8, 51.7)
    warped = warp.warp_tiles(
        tiles, (4, 4), (TILE, TILE), SRC_BBOX, EPSG3857, dst_bbox, (400, 300), EPSG4326, "bicubic"
    )
    assert warped is not None
    pixels = np.asarray(warped)
    assert pixels.shape[2] == 4
    assert (pixels[:, :, 3] == 0).any()
    visible = pixels[pixels[:, :, 3] > 0]
    # premultiplied warping: no colour from the transparent (black) gap bleeds in
    assert visible[:, :3].min() >= 254


def test_unsupported_tiles_fall_back_to_the_mesh():
    out = io.BytesIO()
    Image.new("I;16", (TILE, TILE), 1000).save(out, "PNG")
    tiles: list[ImageResult | None] = [ImageResult(out.getvalue()) for _ in range(16)]
    dst_bbox = (8.2, 50.3, 9.8, 51.7)
    assert (
        warp.warp_tiles(
            tiles,
            (4, 4),
            (TILE, TILE),
            SRC_BBOX,
            EPSG3857,
            dst_bbox,
            (40, 30),
            EPSG4326,
            "bicubic",
        )
        is None
    )
    image = transform_tiles(
        tiles, (4, 4), (TILE, TILE), SRC_BBOX, EPSG3857, dst_bbox, (40, 30), EPSG4326
    )
    assert image.size == (40, 30)
    assert image.mode in ("I", "LA", "RGBA")


def test_transform_tiles_without_opencv_uses_the_mesh(monkeypatch):
    tiles = gradient_tiles()
    dst_bbox = (8.2, 50.3, 9.8, 51.7)
    with_opencv = transform_tiles(
        tiles, (4, 4), (TILE, TILE), SRC_BBOX, EPSG3857, dst_bbox, (200, 150), EPSG4326
    )
    monkeypatch.setattr(warp, "cv2", None)
    assert not warp.is_available()
    without = transform_tiles(
        tiles, (4, 4), (TILE, TILE), SRC_BBOX, EPSG3857, dst_bbox, (200, 150), EPSG4326
    )
    assert without.size == with_opencv.size == (200, 150)
    assert mean_difference(with_opencv, without) < 1.5
