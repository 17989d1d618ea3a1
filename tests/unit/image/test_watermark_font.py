"""Finding the watermark font: ``globals.image.font_dir``, then system font directories."""

from __future__ import annotations

import shutil
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mapproxy.config.build import ConfigBuilder
from mapproxy.config.validate import validate_config
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image import watermark
from mapproxy.image.watermark import FONT_NAME, SYSTEM_FONT_DIRS, Watermark, find_font


@pytest.fixture(scope="module")
def dejavu() -> Path:
    """The installed DejaVuSans.ttf (Debian package fonts-dejavu-core)."""
    found = find_font(None)
    if found is None:
        pytest.fail(
            "DejaVuSans.ttf not found in the system font directories; "
            "run scripts/install-system-deps.sh (fonts-dejavu-core)"
        )
    return Path(found)


def font_in(directory: Path, source: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, directory / FONT_NAME))


def test_debian_font_directory_is_searched() -> None:
    assert SYSTEM_FONT_DIRS[0] == "/usr/share/fonts/truetype/dejavu"


def test_font_dir_comes_before_system_directories(tmp_path: Path, dejavu: Path) -> None:
    own = font_in(tmp_path / "own", dejavu)
    system = font_in(tmp_path / "system", dejavu)
    assert find_font(str(own.parent), [str(system.parent)]) == str(own)


def test_system_directories_are_searched_in_order(tmp_path: Path, dejavu: Path) -> None:
    (tmp_path / "empty").mkdir()
    first = font_in(tmp_path / "first", dejavu)
    font_in(tmp_path / "second", dejavu)
    dirs = [str(tmp_path / "missing"), str(tmp_path / "empty"), str(first.parent)]
    dirs.append(str(tmp_path / "second"))
    # a font_dir without the font falls through to the system directories
    assert find_font(str(tmp_path / "empty"), dirs) == str(first)
    assert find_font(None, dirs) == str(first)


def test_unreadable_font_files_are_skipped(tmp_path: Path, dejavu: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / FONT_NAME).write_bytes(b"not a font")
    good = font_in(tmp_path / "good", dejavu)
    assert find_font(str(broken), [str(good.parent)]) == str(good)


def test_no_font_anywhere_means_the_builtin_font(tmp_path: Path) -> None:
    assert find_font(str(tmp_path), [str(tmp_path / "nowhere")]) is None


WMS_SOURCE = {"type": "wms", "req": {"url": "http://127.0.0.1:9/wms", "layers": "a"}}


def build_with(tmp_path: Path, image_globals: dict[str, Any], watermark_conf: Any) -> ConfigBuilder:
    cache: dict[str, Any] = {"grids": ["GLOBAL_WEBMERCATOR", "GLOBAL_GEODETIC"], "sources": ["w"]}
    if watermark_conf is not None:
        cache["watermark"] = watermark_conf
    raw = {
        "globals": {"image": image_globals},
        "caches": {"a": cache, "b": dict(cache)},
        "sources": {"w": WMS_SOURCE},
    }
    config = validate_config(raw)
    config.config_file = str(tmp_path / "mapproxy.yaml")
    return ConfigBuilder(config)


def font_paths(build: ConfigBuilder) -> set[Any]:
    return {
        tile_filter.font_path
        for name in ("a", "b")
        for manager in build.cache(name).tile_managers
        for tile_filter in manager.tile_filters
    }


def test_config_looks_the_font_up_once(
    tmp_path: Path, dejavu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    real = watermark.find_font

    def counting(*args: Any, **kwargs: Any) -> str | None:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(watermark, "find_font", counting)
    font_in(tmp_path / "fonts", dejavu)
    build = build_with(tmp_path, {"font_dir": "fonts"}, {"text": "MapProxy"})
    # relative to the config directory; four tile managers, one lookup
    assert font_paths(build) == {str(tmp_path / "fonts" / FONT_NAME)}
    assert calls == [(str(tmp_path / "fonts"),)]


def test_config_uses_the_system_font_without_font_dir(tmp_path: Path, dejavu: Path) -> None:
    build = build_with(tmp_path, {}, {"text": "MapProxy"})
    assert font_paths(build) == {str(dejavu)}


def test_config_without_watermarks_does_not_look_for_fonts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> str | None:
        raise AssertionError("font lookup without a watermark")

    monkeypatch.setattr(watermark, "find_font", fail)
    build = build_with(tmp_path, {}, None)
    assert font_paths(build) == set()


def ink_columns(image: Any) -> list[int]:
    """Pixel columns holding (black) text on a white tile."""
    pixels = np.asarray(image.convert("L"))
    return [int(c) for c in np.flatnonzero((pixels < 250).any(axis=0))]


def gaps(columns: list[int]) -> list[tuple[int, int]]:
    return [(a, b) for a, b in pairwise(columns) if b - a > 5]


def test_dejavu_text_is_placed_like_the_reference(dejavu: Path) -> None:
    # ink columns observed on tiles watermarked by the reference MapProxy 7.0.0
    mark = Watermark("MapProxy Test", color=(0, 0, 0), opacity=255, font_path=str(dejavu))
    white = Image.new("RGB", (256, 256), (255, 255, 255))
    even = ink_columns(mark(TileCoord(0, 0, 2), white))
    assert (even[0], even[-1]) == (45, 213)
    assert gaps(even) == [(158, 166)]
    odd = ink_columns(mark(TileCoord(0, 1, 2), white))
    assert (odd[0], odd[-1]) == (0, 255)
    assert gaps(odd) == [(29, 37), (84, 173)]
