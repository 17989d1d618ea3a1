"""File cache options from the config: link_single_color_images, permissions, use_grid_names.

On-disk names, link targets and modes were compared with MapProxy 7.0.0 (black box) for
the same config.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.fake_upstream import FakeUpstream, image_handler

CONFIG = """
services:
  wmts:
layers:
  - {{name: sym, title: sym, sources: [sym]}}
  - {{name: hard, title: hard, sources: [hard]}}
  - {{name: plain, title: plain, sources: [plain]}}
caches:
  sym:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wms]
    meta_size: [2, 2]
    link_single_color_images: {sym_option}
  hard:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wms]
    meta_size: [2, 2]
    link_single_color_images: hardlink
    cache:
      type: file
      directory_layout: tms
      use_grid_names: true
      directory_permissions: '750'
      file_permissions: '640'
  plain:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wms]
    meta_size: [1, 1]
    cache:
      type: file
      directory_layout: tms
sources:
  wms:
    type: wms
    req: {{url: "{url}/service", layers: x}}
globals:
  cache:
    base_dir: ./cache_data
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(image_handler((255, 0, 0, 255))) as fake:
        yield fake


@pytest.mark.parametrize("sym_option", ["true", "symlink"])
def test_single_color_tiles_are_symlinked(
    make_app, upstream, tmp_path: Path, sym_option: str
) -> None:  # type: ignore[no-untyped-def]
    client = make_app(CONFIG.format(url=upstream.url, sym_option=sym_option))
    response = client.get("/wmts/sym/GLOBAL_WEBMERCATOR/1/0/0.png")
    assert response.status_code == 200
    root = tmp_path / "cache_data/sym_EPSG3857"
    color_tile = root / "single_color_tiles/ff0000.png"
    assert color_tile.is_file() and not color_tile.is_symlink()
    for x, y in ((0, 0), (0, 1), (1, 0), (1, 1)):
        tile = root / f"01/000/000/{x:03d}/000/000/{y:03d}.png"
        assert tile.is_symlink()
        assert os.readlink(tile) == "../../../../../../single_color_tiles/ff0000.png"
    assert sorted(p.name for p in (root / "single_color_tiles").iterdir()) == ["ff0000.png"]
    assert client.get("/wmts/sym/GLOBAL_WEBMERCATOR/1/1/1.png").data == response.data
    assert len(upstream.requests) == 1


def test_single_color_tiles_are_hardlinked_with_permissions(
    make_app, upstream, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    client = make_app(CONFIG.format(url=upstream.url, sym_option="false"))
    assert client.get("/wmts/hard/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
    cache_root = tmp_path / "cache_data/hard"
    root = cache_root / "GLOBAL_WEBMERCATOR"
    color_tile = root / "single_color_tiles/ff0000.png"
    tiles = [root / f"1/{x}/{y}.png" for x in (0, 1) for y in (0, 1)]
    for tile in tiles:
        assert not tile.is_symlink()
        assert os.path.samefile(tile, color_tile)
    assert color_tile.stat().st_nlink == 5
    for path in [color_tile, *tiles]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    for directory in (cache_root, root, root / "1", root / "1/0", root / "single_color_tiles"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750


def test_without_the_option_tiles_are_plain_files(make_app, upstream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = make_app(CONFIG.format(url=upstream.url, sym_option="false"))
    assert client.get("/wmts/plain/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
    assert client.get("/wmts/sym/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
    tile = tmp_path / "cache_data/plain_EPSG3857/1/0/0.png"
    assert tile.is_file() and not tile.is_symlink()
    assert not (tmp_path / "cache_data/plain_EPSG3857/single_color_tiles").exists()
    assert not (tmp_path / "cache_data/sym_EPSG3857/single_color_tiles").exists()


def test_invalid_link_option_is_a_config_error(make_app, upstream) -> None:  # type: ignore[no-untyped-def]
    from mapproxy.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"caches\.sym\.link_single_color_images"):
        make_app(CONFIG.format(url=upstream.url, sym_option="copy"))
