"""mapproxy-seed against the real MapServer WMS: exact tile sets, no upstream after seeding.

One `mapproxy-seed -c 2` run (module fixture) seeds three file caches (tc layout,
GLOBAL_WEBMERCATOR, meta tiles 2x2) from MapServer:

* ``box``: a bbox coverage in EPSG:3857 whose west edge lies on a tile edge (x = 0),
* ``tri``: a WKT triangle in EPSG:3857 (the grid SRS),
* ``ell``: a GeoJSON L shape in EPSG:4326 with slanted edges.

The expected tile sets are computed here from the grid definition (origin, resolutions)
and shapely, independently of the seeder's walker: a meta tile is seeded when it
overlaps the bbox with an area, or intersects the polygon; then all its tiles are stored.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image
from pyproj import Transformer
from shapely.geometry import Polygon, box

try:
    from .mapserver import MapServerWMS, Query
    from .reference import ReferenceMissing, reference_python
except ImportError:
    from mapserver import MapServerWMS, Query
    from reference import ReferenceMissing, reference_python

pytestmark = pytest.mark.integration

SEED_SCRIPT = str(Path(sys.executable).parent / "mapproxy-seed")

# GLOBAL_WEBMERCATOR: EPSG:3857, origin north-west, 256 px tiles, res(0) = 2 * EXTENT / 256
EXTENT = 20037508.342789244
TILE_PX = 256
META = 2  # meta_size [2, 2]
META_BUFFER = 10
LEVELS = {"box": range(3, 7), "tri": range(3, 7), "ell": range(3, 7)}

BOX = (0.0, -7000000.0, 2000000.0, -5000000.0)  # EPSG:3857, west edge on a tile edge
TRIANGLE = ((-6000000.0, -4000000.0), (-2500000.0, -3700000.0), (-4000000.0, -700000.0))
ELL_4326 = ((100.0, -30.0), (140.0, -30.0), (140.0, -15.0), (117.0, -12.0), (113.0, 18.0),
            (100.0, 18.0))  # fmt: skip

CONFIG = """
services:
  wmts:
  tms:
layers:
{layers}
caches:
{caches}
sources:
  ms_wms:
    type: wms
    req:
      url: {url}
      layers: raster
globals:
  cache:
    base_dir: {base_dir}
  http:
    client_timeout: 30
"""

SEED = """
seeds:
  box_seed:
    caches: [box]
    levels: {{from: 3, to: 6}}
    coverages: [box_cov]
  tri_seed:
    caches: [tri]
    levels: {{from: 3, to: 6}}
    coverages: [tri_cov]
  ell_seed:
    caches: [ell]
    levels: [3, 4, 5, 6]
    coverages: [ell_cov]
coverages:
  box_cov:
    bbox: [{box}]
    srs: 'EPSG:3857'
  tri_cov:
    datasource: {tri_file}
    srs: 'EPSG:3857'
  ell_cov:
    datasource: {ell_file}
    srs: 'EPSG:4326'
"""

CLEANUP = """
cleanups:
  tri_level5:
    caches: [tri]
    levels: [5]
    coverages: [tri_cov]
    remove_before: {{minutes: 0}}
  box_level6:
    caches: [box]
    levels: [6]
    remove_before: {{minutes: 0}}
coverages:
  tri_cov:
    datasource: {tri_file}
    srs: 'EPSG:3857'
"""

Tile = tuple[int, int, int]  # x, y (north-west numbering), z
Meta = tuple[int, int, int]  # meta column, meta row, z
MetaTest = Callable[[tuple[float, float, float, float]], bool]


def tile_width(z: int) -> float:
    """Width of a tile at level z in metres."""
    return 2 * EXTENT / 2**z


def meta_tiles(meta: Meta, size: int = META) -> list[Tile]:
    """The tiles of a meta tile of size x size tiles (clipped to the grid)."""
    mx, my, z = meta
    n = 2**z
    return [
        (x, y, z)
        for y in range(my * size, min(my * size + size, n))
        for x in range(mx * size, min(mx * size + size, n))
    ]


def meta_bbox(meta: Meta, size: int = META) -> tuple[float, float, float, float]:
    """EPSG:3857 bbox of a meta tile without buffer (size 1: of a tile)."""
    tiles = meta_tiles(meta, size)
    w = tile_width(meta[2])
    x0, x1 = min(t[0] for t in tiles), max(t[0] for t in tiles)
    y0, y1 = min(t[1] for t in tiles), max(t[1] for t in tiles)
    return (-EXTENT + x0 * w, EXTENT - (y1 + 1) * w, -EXTENT + (x1 + 1) * w, EXTENT - y0 * w)


def expected_metas(levels: range, selects: MetaTest) -> set[Meta]:
    """All meta tiles of `levels` that `selects` accepts (brute force over the grid)."""
    found = set()
    for z in levels:
        count = math.ceil(2**z / META)
        for my in range(count):
            for mx in range(count):
                if selects(meta_bbox((mx, my, z))):
                    found.add((mx, my, z))
    return found


def overlaps_box(bbox: tuple[float, float, float, float]) -> bool:
    """Bbox coverages need an overlap with an area: touching edges do not count."""
    return bbox[0] < BOX[2] and BOX[0] < bbox[2] and bbox[1] < BOX[3] and BOX[1] < bbox[3]


def ell_in_3857(densify_degrees: float | None) -> Polygon:
    """The L shape in EPSG:3857: vertices transformed, or edges densified first."""
    ell = Polygon(ELL_4326)
    if densify_degrees is not None:
        ell = ell.segmentize(densify_degrees)
    to_3857 = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    return shapely.transform(ell, to_3857.transform, interleaved=False)


def tile_path(cache_dir: Path, tile: Tile) -> Path:
    """The tc layout: zz/xxx/xxx/xxx/yyy/yyy/yyy.png (y in the grid's nw numbering)."""
    x, y, z = tile
    xs, ys = f"{x:09d}", f"{y:09d}"
    return cache_dir.joinpath(f"{z:02d}", xs[:3], xs[3:6], xs[6:], ys[:3], ys[3:6], ys[6:] + ".png")


def cached_files(base_dir: Path, cache: str) -> set[Path]:
    """Every file below a cache's directory (GLOBAL_WEBMERCATOR is stored as EPSG3857)."""
    root = base_dir / f"{cache}_EPSG3857"
    return {p for p in root.rglob("*") if p.is_file()}


def expected_paths(base_dir: Path, cache: str, metas: set[Meta]) -> set[Path]:
    root = base_dir / f"{cache}_EPSG3857"
    return {tile_path(root, tile) for meta in metas for tile in meta_tiles(meta)}


def write_configs(directory: Path, url: str) -> tuple[Path, Path]:
    """mapproxy.yaml and seed.yaml (plus coverage files) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    names = ("box", "tri", "ell")
    layers = "".join(f"  - name: {n}\n    title: {n}\n    sources: [{n}]\n" for n in names)
    caches = "".join(
        f"  {n}:\n    grids: [GLOBAL_WEBMERCATOR]\n    sources: [ms_wms]\n"
        f"    meta_size: [{META}, {META}]\n    meta_buffer: {META_BUFFER}\n"
        "    image: {colors: 0}\n"
        "    cache:\n      type: file\n      directory_layout: tc\n"
        for n in names
    )
    config = directory / "mapproxy.yaml"
    config.write_text(
        CONFIG.format(layers=layers, caches=caches, url=url, base_dir=directory / "cache")
    )
    tri_file = directory / "triangle.wkt"
    tri_file.write_text(Polygon(TRIANGLE).wkt + "\n")
    ell_file = directory / "ell.geojson"
    ell_file.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[*ELL_4326, ELL_4326[0]]],
                        },
                    }
                ],
            }
        )
    )
    seed = directory / "seed.yaml"
    seed.write_text(
        SEED.format(box=", ".join(str(v) for v in BOX), tri_file=tri_file, ell_file=ell_file)
    )
    (directory / "cleanup.yaml").write_text(CLEANUP.format(tri_file=tri_file))
    return config, seed


def run_seed(
    script: str, config: Path, seed: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [script, "-f", str(config), "-s", str(seed), "-c", "2", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def requested_meta(query: Query) -> Meta:
    """The meta tile a GetMap request asked for; checks its BBOX and size exactly."""
    minx, miny, maxx, maxy = (float(v) for v in query["BBOX"].split(","))
    width, height = int(query["WIDTH"]), int(query["HEIGHT"])
    res = (maxx - minx) / width
    z = round(math.log2(2 * EXTENT / TILE_PX / res))
    w = tile_width(z)
    buffer = META_BUFFER * res
    # the north-west tile of the meta tile holds this point, also where the buffer was cut
    mx = math.floor((minx + buffer + w / 2 + EXTENT) / w) // META
    my = math.floor((EXTENT - (maxy - buffer - w / 2)) / w) // META
    meta = (mx, my, z)
    west, south, east, north = meta_bbox(meta)
    # the buffer is cut at the grid's edges
    buffered = (
        max(west - buffer, -EXTENT),
        max(south - buffer, -EXTENT),
        min(east + buffer, EXTENT),
        min(north + buffer, EXTENT),
    )
    got = (minx, miny, maxx, maxy)
    assert all(math.isclose(a, b, abs_tol=1e-3) for a, b in zip(buffered, got, strict=True))
    assert width == round((buffered[2] - buffered[0]) / res)
    assert height == round((buffered[3] - buffered[1]) / res)
    assert math.isclose(res, w / TILE_PX, rel_tol=1e-9)
    return meta


@dataclass
class SeedRun:
    config: Path
    base_dir: Path
    metas: dict[str, set[Meta]]
    requests: list[Query]
    stdout: str


@pytest.fixture(scope="module")
def expected() -> dict[str, set[Meta]]:
    tri = Polygon(TRIANGLE)
    ell_exact = ell_in_3857(densify_degrees=0.05)
    metas = {
        "box": expected_metas(LEVELS["box"], overlaps_box),
        "tri": expected_metas(LEVELS["tri"], lambda b: box(*b).intersects(tri)),
        "ell": expected_metas(LEVELS["ell"], lambda b: box(*b).intersects(ell_exact)),
    }
    # the L shape is chosen so that its curved edges (densified) and the straight
    # lines between transformed vertices cross the same meta tiles
    ell_vertices = ell_in_3857(densify_degrees=None)
    assert metas["ell"] == expected_metas(LEVELS["ell"], lambda b: box(*b).intersects(ell_vertices))
    # and no polygon only touches a meta tile (that edge rule is not what this test is about)
    for name, polygon in (("tri", tri), ("ell", ell_exact)):
        for meta in metas[name]:
            assert box(*meta_bbox(meta)).intersection(polygon).area > 0, (name, meta)
    return metas


@pytest.fixture(scope="module")
def seeded(
    mapserver_wms: MapServerWMS,
    tmp_path_factory: pytest.TempPathFactory,
    expected: dict[str, set[Meta]],
) -> Iterator[SeedRun]:
    config, seed = write_configs(tmp_path_factory.mktemp("seed_ours"), mapserver_wms.url)
    mapserver_wms.reset()
    proc = run_seed(SEED_SCRIPT, config, seed)
    requests = list(mapserver_wms.requests)
    mapserver_wms.reset()
    yield SeedRun(config, config.parent / "cache", expected, requests, proc.stdout)
    mapserver_wms.reset()


def test_seeding_requests_each_meta_tile_once(seeded: SeedRun) -> None:
    assert all(q["REQUEST"] == "GetMap" for q in seeded.requests)
    assert all(q["SRS"] == "EPSG:3857" and q["LAYERS"] == "raster" for q in seeded.requests)
    metas = [requested_meta(q) for q in seeded.requests]
    all_expected = seeded.metas["box"] | seeded.metas["tri"] | seeded.metas["ell"]
    assert len(metas) == len(set(metas))  # no meta tile requested twice
    assert set(metas) == all_expected
    assert {c: len(m) for c, m in seeded.metas.items()} == {"box": 11, "tri": 20, "ell": 32}
    assert len(seeded.requests) == 11 + 20 + 32
    # the final progress line of each task counts meta tiles x 4 tiles
    finals = [line for line in seeded.stdout.splitlines() if "100.00%" in line]
    assert [line.rsplit("(", 1)[1] for line in finals] == ["44 tiles)", "80 tiles)", "128 tiles)"]


def test_bbox_coverage_stores_exactly_the_expected_tiles(seeded: SeedRun) -> None:
    metas = seeded.metas["box"]
    per_level = {z: sum(1 for m in metas if m[2] == z) for z in LEVELS["box"]}
    assert per_level == {3: 1, 4: 2, 5: 2, 6: 6}  # hand-checked against the grid math
    # the west edge x = 0 is a tile edge: nothing west of it is seeded
    assert min(x for m in metas for x, _, z in meta_tiles(m) if z == 6) == 32
    files = cached_files(seeded.base_dir, "box")
    assert files == expected_paths(seeded.base_dir, "box", metas)
    assert len(files) == 44
    assert tile_path(seeded.base_dir / "box_EPSG3857", (4, 5, 3)) == (
        seeded.base_dir / "box_EPSG3857/03/000/000/004/000/000/005.png"
    )


@pytest.mark.parametrize("cache", ["tri", "ell"])
def test_polygon_coverage_stores_exactly_the_expected_tiles(seeded: SeedRun, cache: str) -> None:
    files = cached_files(seeded.base_dir, cache)
    assert files == expected_paths(seeded.base_dir, cache, seeded.metas[cache])
    # every single tile that intersects the polygon is among them
    polygon = Polygon(TRIANGLE) if cache == "tri" else ell_in_3857(densify_degrees=0.05)
    root = seeded.base_dir / f"{cache}_EPSG3857"
    for z in LEVELS[cache]:
        n = 2**z
        touched = {
            (x, y, z)
            for x in range(n)
            for y in range(n)
            if box(*meta_bbox((x, y, z), size=1)).intersects(polygon)
        }
        assert touched and {tile_path(root, t) for t in touched} <= files
    assert {
        int(p.relative_to(seeded.base_dir / f"{cache}_EPSG3857").parts[0]) for p in files
    } == set(LEVELS[cache])


def test_seeded_tiles_are_mapserver_images(seeded: SeedRun, mapserver_wms: MapServerWMS) -> None:
    files = set().union(*(cached_files(seeded.base_dir, c) for c in LEVELS))
    for path in files:
        image = Image.open(path)
        assert image.format == "PNG"
        assert image.size == (TILE_PX, TILE_PX)
        rgb = np.asarray(image.convert("RGB"))
        assert (rgb != rgb[0, 0]).any(), path  # not a single colour
    # one tile per level compared with MapServer rendering the tile bbox directly
    root = seeded.base_dir / "box_EPSG3857"
    for tile in ((4, 5, 3), (8, 10, 4), (17, 20, 5), (33, 41, 6)):
        x, y, z = tile
        w = tile_width(z)
        bbox = (-EXTENT + x * w, EXTENT - (y + 1) * w, -EXTENT + (x + 1) * w, EXTENT - y * w)
        direct = mapserver_wms.getmap(SRS="EPSG:3857", BBOX=",".join(map(repr, bbox)))
        seeded_rgb = np.asarray(Image.open(tile_path(root, tile)).convert("RGB"))
        direct_rgb = np.asarray(Image.open(io.BytesIO(direct)).convert("RGB"))
        # nearest resampling, same resolution, no colour reduction: identical pixels
        assert np.array_equal(seeded_rgb, direct_rgb), tile


def test_serving_seeded_tiles_makes_no_upstream_request(
    seeded: SeedRun, mapserver_wms: MapServerWMS
) -> None:
    from werkzeug.test import Client

    from mapproxy.wsgiapp import make_wsgi_app

    client = Client(make_wsgi_app(str(seeded.config)))
    mapserver_wms.reset()
    # any request that still reached MapServer would fail loudly
    mapserver_wms.override = lambda query: (500, "text/plain", b"no upstream requests expected")
    served = 0
    for cache, metas in seeded.metas.items():
        for meta in sorted(metas):
            for x, y, z in meta_tiles(meta):
                response = client.get(f"/wmts/{cache}/GLOBAL_WEBMERCATOR/{z}/{x}/{y}.png")
                assert response.status_code == 200, (cache, x, y, z)
                assert response.headers["Content-Type"] == "image/png"
                root = seeded.base_dir / f"{cache}_EPSG3857"
                assert response.get_data() == tile_path(root, (x, y, z)).read_bytes()
                served += 1
    assert served == sum(len(cached_files(seeded.base_dir, c)) for c in LEVELS)
    assert len(mapserver_wms.requests) == 0
    mapserver_wms.reset()


def cleanup_copy(script: str, seeded_base: Path, directory: Path, url: str) -> Path:
    """Run cleanup.yaml with `script` on a copy (mtimes kept) of a seeded cache tree."""
    config, _ = write_configs(directory, url)
    base = directory / "cache"
    shutil.copytree(seeded_base, base)
    run_seed(script, config, directory / "cleanup.yaml")
    return base


def test_cleanup_removes_exactly_one_level(
    seeded: SeedRun, mapserver_wms: MapServerWMS, tmp_path: Path
) -> None:
    mapserver_wms.reset()
    base = cleanup_copy(SEED_SCRIPT, seeded.base_dir, tmp_path, mapserver_wms.url)
    assert len(mapserver_wms.requests) == 0
    before = {c: expected_paths(base, c, seeded.metas[c]) for c in LEVELS}
    after = {c: cached_files(base, c) for c in LEVELS}

    def level_files(cache: str, z: int) -> set[Path]:
        return expected_paths(base, cache, {m for m in seeded.metas[cache] if m[2] == z})

    assert len(level_files("tri", 5)) == 20 and len(level_files("box", 6)) == 24
    assert after["tri"] == before["tri"] - level_files("tri", 5)
    assert after["box"] == before["box"] - level_files("box", 6)
    assert after["ell"] == before["ell"]


def test_reference_seeds_and_cleans_the_same_tiles(
    seeded: SeedRun, mapserver_wms: MapServerWMS, tmp_path: Path
) -> None:
    try:
        ref_script = str(reference_python().parent / "mapproxy-seed")
    except ReferenceMissing as exc:
        pytest.skip(str(exc))
    config, seed = write_configs(tmp_path / "ref", mapserver_wms.url)
    mapserver_wms.reset()
    run_seed(ref_script, config, seed)
    assert len(mapserver_wms.requests) == len(seeded.requests)
    mapserver_wms.reset()

    def tree(base: Path) -> set[tuple[Path, bool]]:
        return {(p.relative_to(base), p.is_dir()) for p in base.rglob("*")}

    assert tree(tmp_path / "ref" / "cache") == tree(seeded.base_dir)
    ref_cleaned = cleanup_copy(
        ref_script, tmp_path / "ref" / "cache", tmp_path / "ref_clean", mapserver_wms.url
    )
    our_cleaned = cleanup_copy(
        SEED_SCRIPT, seeded.base_dir, tmp_path / "our_clean", mapserver_wms.url
    )
    # same files and the same (empty) directories left behind
    assert tree(our_cleaned) == tree(ref_cleaned)
