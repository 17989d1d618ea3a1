"""The ``s3`` cache against a real S3-protocol server (moto's standalone server on 127.0.0.1).

Credentials are dummies set in the environment per test; ~/.aws is never read (the
config and credentials file variables point into tmp_path). The reference MapProxy
7.0.0 writes into the same server to compare object keys and to read each other's tiles.
"""

from __future__ import annotations

import io
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream, image_handler, png_bytes

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from mapproxy.cache.s3 import S3Cache, S3ConnectionOptions  # noqa: E402
from mapproxy.grid.tile_grid import TileCoord  # noqa: E402

try:
    from .reference import ReferenceMissing, ReferenceServer, reference_python
    from .serving import free_port
except ImportError:
    from reference import ReferenceMissing, ReferenceServer, reference_python
    from serving import free_port

pytestmark = pytest.mark.integration

PNG_BLUE = png_bytes(color=(0, 0, 255, 255))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1 (stopped after the module)."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def dummy_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials; no profile files are read."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A boto3 client of the moto server."""
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh, empty bucket."""
    name = f"tiles-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(image_handler()) as server:
        yield server


def keys(s3: Any, bucket: str) -> list[str]:
    """All object keys in ``bucket``, sorted."""
    listing = s3.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def config(
    endpoint: str,
    bucket: str,
    source_url: str,
    cache_options: str = "",
    meta_size: str = "[2, 2]",
) -> str:
    """One WMTS/TMS layer ``l`` on cache ``c`` (s3, GLOBAL_WEBMERCATOR) from a WMS source."""
    return f"""
services:
  wmts:
  tms:
    use_grid_names: true
layers:
  - name: l
    title: l
    sources: [c]
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wms]
    meta_size: {meta_size}
    meta_buffer: 0
    cache:
      type: s3
      endpoint_url: {endpoint}
{cache_options}
sources:
  wms:
    type: wms
    req:
      url: {source_url}/service
      layers: base
globals:
  cache:
    base_dir: ./cache_data
    s3:
      bucket_name: {bucket}
"""


def test_round_trip_of_tiles_and_timestamps(s3_endpoint: str, s3: Any, bucket: str) -> None:
    cache = S3Cache(
        bucket,
        "rt/grid",
        "png",
        connection=S3ConnectionOptions(endpoint_url=s3_endpoint),
        content_type="image/png",
    )
    tiles = {TileCoord(x, 1, 2): png_bytes(color=(x, 0, 0, 255)) for x in range(4)}
    assert cache.load_tile(TileCoord(0, 1, 2)) is None
    assert not cache.is_cached(TileCoord(0, 1, 2))
    cache.store_tiles(tiles)
    assert keys(s3, bucket) == [f"rt/grid/2/{x}/1.png" for x in range(4)]
    for coord, data in tiles.items():
        tile = cache.load_tile(coord)
        assert tile is not None and tile.data == data
        head = s3.head_object(Bucket=bucket, Key=cache.tile_key(coord))
        assert tile.timestamp == head["LastModified"].timestamp()
        assert cache.tile_timestamp(coord) == tile.timestamp
        assert head["ContentType"] == "image/png"
        assert cache.is_cached(coord)
    cache.remove_tile(TileCoord(0, 1, 2))
    cache.remove_tile(TileCoord(0, 1, 2))  # removing a missing tile is fine
    assert cache.load_tile(TileCoord(0, 1, 2)) is None
    assert keys(s3, bucket) == [f"rt/grid/2/{x}/1.png" for x in range(1, 4)]


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ("", "c/GLOBAL_WEBMERCATOR/3/1/2.png"),
        ("      directory: /base/dir/", "base/dir/3/1/2.png"),
        ("      directory: d\n      include_grid_name: true", "d/GLOBAL_WEBMERCATOR/3/1/2.png"),
        ("      directory: d\n      directory_layout: reverse_tms", "d/2/1/3.png"),
        ("      directory: d\n      directory_layout: tc", "d/03/000/000/001/000/000/002.png"),
        ("      directory: d\n      directory_layout: mp", "d/03/0000/0001/0000/0002.png"),
        ("      directory: d\n      directory_layout: quadkey", "d/021.png"),
        ("      directory: d\n      directory_layout: arcgis", "d/L03/R00000002/C00000001.png"),
    ],
)
def test_wmts_tile_is_stored_under_the_layout_key(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    s3_endpoint: str,
    s3: Any,
    bucket: str,
    options: str,
    key: str,
) -> None:
    app = make_app(config(s3_endpoint, bucket, upstream.url, options, meta_size="[1, 1]"))
    response = app.get("/wmts/l/GLOBAL_WEBMERCATOR/3/1/2.png")
    assert response.status_code == 200
    assert keys(s3, bucket) == [key]
    stored = s3.get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == response.data
    assert stored["ContentType"] == "image/png"
    assert len(upstream.requests) == 1


def test_access_control_list_is_set_on_stored_tiles(
    make_app: Callable[..., Client], upstream: FakeUpstream, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    app = make_app(
        config(s3_endpoint, bucket, upstream.url, "      access_control_list: public-read")
    )
    assert app.get("/wmts/l/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
    stored = keys(s3, bucket)
    assert stored == [f"c/GLOBAL_WEBMERCATOR/1/{x}/{y}.png" for x in (0, 1) for y in (0, 1)]
    for key in stored:
        grants = s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
        public = [g for g in grants if g["Grantee"].get("URI", "").endswith("/global/AllUsers")]
        assert [g["Permission"] for g in public] == ["READ"]
    app_private = make_app(config(s3_endpoint, bucket, upstream.url, "      directory: p"))
    assert app_private.get("/wmts/l/GLOBAL_WEBMERCATOR/0/0/0.png").status_code == 200
    grants = s3.get_object_acl(Bucket=bucket, Key="p/0/0/0.png")["Grants"]
    assert all("URI" not in g["Grantee"] for g in grants)


def test_tiles_are_served_from_s3_through_wmts_and_tms(
    make_app: Callable[..., Client], upstream: FakeUpstream, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    app = make_app(config(s3_endpoint, bucket, upstream.url))
    first = app.get("/wmts/l/GLOBAL_WEBMERCATOR/2/1/1.png")
    assert first.status_code == 200
    assert len(upstream.requests) == 1  # one 2x2 meta tile
    assert len(keys(s3, bucket)) == 4
    # The other tiles of the meta tile come from S3, through both services.
    assert app.get("/wmts/l/GLOBAL_WEBMERCATOR/2/0/0.png").status_code == 200
    # TMS levels are one lower for this grid and count y from the south
    tms = app.get("/tms/1.0.0/l/GLOBAL_WEBMERCATOR/1/1/2.png")
    assert tms.status_code == 200
    assert tms.data == first.data
    assert len(upstream.requests) == 1
    # A tile put into the bucket by someone else is served as stored, with its LastModified.
    s3.put_object(Bucket=bucket, Key="c/GLOBAL_WEBMERCATOR/3/5/6.png", Body=PNG_BLUE)
    head = s3.head_object(Bucket=bucket, Key="c/GLOBAL_WEBMERCATOR/3/5/6.png")
    response = app.get("/wmts/l/GLOBAL_WEBMERCATOR/3/5/6.png")
    assert response.data == PNG_BLUE
    assert response.last_modified == head["LastModified"]
    assert len(upstream.requests) == 1


def test_s3_outage_serves_tiles_from_the_source_and_logs(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    app = make_app(config(closed, "tiles", upstream.url, meta_size="[1, 1]"))
    with caplog.at_level(logging.ERROR, logger="mapproxy.cache.s3"):
        for _ in range(2):
            response = app.get("/wmts/l/GLOBAL_WEBMERCATOR/3/1/2.png")
            assert response.status_code == 200
            assert Image.open(io.BytesIO(response.data)).getpixel((0, 0))[:3] == (255, 0, 0)
    # not stored, so the second request went to the source again
    assert len(upstream.requests) == 2
    errors = [r for r in caplog.records if r.name == "mapproxy.cache.s3"]
    assert any(
        "cannot store tile s3://tiles/c/GLOBAL_WEBMERCATOR/3/1/2.png" in r.getMessage()
        for r in errors
    )
    assert any("cannot load tile" in r.getMessage() for r in errors)


def test_use_http_get_reads_tiles_by_plain_http(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    s3_endpoint: str,
    s3: Any,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s3.put_object(Bucket=bucket, Key="pub/3/1/2.png", Body=PNG_BLUE, ACL="public-read")
    options = "      directory: pub\n      use_http_get: true"
    app = make_app(config(s3_endpoint, bucket, upstream.url, options, meta_size="[1, 1]"))
    with caplog.at_level(logging.INFO, logger="mapproxy.source.request"):
        response = app.get("/wmts/l/GLOBAL_WEBMERCATOR/3/1/2.png")
    assert response.status_code == 200
    assert response.data == PNG_BLUE
    assert f"{s3_endpoint}/{bucket}/pub/3/1/2.png" in caplog.text
    assert upstream.requests == []
    # A missing object is a miss: created from the source and stored through boto3.
    missing = app.get("/wmts/l/GLOBAL_WEBMERCATOR/3/0/0.png")
    assert missing.status_code == 200
    assert len(upstream.requests) == 1
    assert keys(s3, bucket) == ["pub/3/0/0.png", "pub/3/1/2.png"]


# -- black-box comparison with the reference MapProxy 7.0.0 ------------------------------

REF_LAYOUTS = [
    ("tms", ""),
    ("reverse", "      directory: rev\n      directory_layout: reverse_tms"),
    ("gridname", "      directory: gn\n      include_grid_name: true"),
]
REF_TILES = ["2/1/1", "2/2/3", "3/5/6"]


@pytest.fixture(scope="module")
def ref_python() -> Path:
    try:
        return reference_python()
    except ReferenceMissing as exc:
        pytest.skip(str(exc))


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize(("label", "options"), REF_LAYOUTS, ids=[n for n, _ in REF_LAYOUTS])
def test_keys_and_tiles_are_shared_with_the_reference(
    ref_python: Path,
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    s3_endpoint: str,
    s3: Any,
    tmp_path: Path,
    label: str,
    options: str,
) -> None:
    ref_bucket, our_bucket = f"ref-{label}", f"ours-{label}"
    for name in (ref_bucket, our_bucket):
        s3.create_bucket(Bucket=name)
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    ref_config = ref_dir / "mapproxy.yaml"
    ref_config.write_text(config(s3_endpoint, ref_bucket, upstream.url, options))
    ref_tiles: dict[str, bytes] = {}
    with ReferenceServer(ref_config, python=ref_python) as ref:
        for tile in REF_TILES:
            status, data = _get(f"{ref.url}/wmts/l/GLOBAL_WEBMERCATOR/{tile}.png")
            assert status == 200, ref.log()
            ref_tiles[tile] = data
    ours = make_app(config(s3_endpoint, our_bucket, upstream.url, options))
    for tile in REF_TILES:
        assert ours.get(f"/wmts/l/GLOBAL_WEBMERCATOR/{tile}.png").status_code == 200
    ref_keys = keys(s3, ref_bucket)
    assert len(ref_keys) == 12  # three 2x2 meta tiles
    assert keys(s3, our_bucket) == ref_keys

    # Each serves the other's bucket; the source is unreachable, so a 200 proves a hit.
    dead_source = f"http://127.0.0.1:{free_port()}"
    ours_on_ref = make_app(config(s3_endpoint, ref_bucket, dead_source, options))
    for tile, data in ref_tiles.items():
        response = ours_on_ref.get(f"/wmts/l/GLOBAL_WEBMERCATOR/{tile}.png")
        assert response.status_code == 200
        assert response.data == data
    for key in ref_keys:  # every stored tile replaced by a marker the reference must return
        s3.put_object(Bucket=our_bucket, Key=key, Body=PNG_BLUE)
    ref_config.write_text(config(s3_endpoint, our_bucket, dead_source, options))
    with ReferenceServer(ref_config, python=ref_python) as ref:
        for tile in REF_TILES:
            status, data = _get(f"{ref.url}/wmts/l/GLOBAL_WEBMERCATOR/{tile}.png")
            assert (status, data) == (200, PNG_BLUE), ref.log()
