"""Compact caches through the app and ``mapproxy-util defrag-compact-cache``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mapproxy.cache.compact import CompactCache
from mapproxy.config import load_configuration
from mapproxy.config.build import ConfigBuilder
from mapproxy.errors import ConfigurationError
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.script.defrag import defrag_command

CONFIG = """
services:
  wmts:
layers:
  - name: v1
    title: v1
    sources: [c1]
  - name: v2
    title: v2
    sources: [c2]
caches:
  c1:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    meta_size: [1, 1]
    cache:
      type: compact
      version: 1
  c2:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    meta_size: [1, 1]
    cache:
      type: compact
      version: 2
      directory: ./bundles
sources:
  dbg:
    type: debug
globals:
  cache:
    base_dir: ./cache_data
"""


def test_requests_store_tiles_in_bundles(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = make_app(CONFIG)
    served = {}
    for layer in ("v1", "v2"):
        for z, x, y in [(0, 0, 0), (3, 5, 2), (3, 7, 7)]:
            response = client.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/{z}/{x}/{y}.png")
            assert response.status_code == 200
            served[layer, z, x, y] = response.data
    v1_dir = tmp_path / "cache_data/c1/GLOBAL_WEBMERCATOR"
    assert sorted(str(p.relative_to(v1_dir)) for p in v1_dir.rglob("*.bundl*")) == [
        "L00/R0000C0000.bundle",
        "L00/R0000C0000.bundlx",
        "L03/R0000C0000.bundle",
        "L03/R0000C0000.bundlx",
    ]
    v2_dir = tmp_path / "bundles"
    assert sorted(str(p.relative_to(v2_dir)) for p in v2_dir.rglob("*.bundl*")) == [
        "L00/R0000C0000.bundle",
        "L03/R0000C0000.bundle",
    ]
    for layer, directory, version in (("v1", v1_dir, 1), ("v2", v2_dir, 2)):
        tile = CompactCache(str(directory), version).load_tile(TileCoord(5, 2, 3))
        assert tile is not None and tile.data == served[layer, 3, 5, 2]
    # served again from the bundle
    again = client.get("/wmts/v2/GLOBAL_WEBMERCATOR/3/5/2.png")
    assert again.data == served["v2", 3, 5, 2]


def _build(tmp_path: Path, backend: dict[str, object], grids: list[str] | None = None) -> None:
    caches = {"cc": {"grids": grids or ["GLOBAL_WEBMERCATOR"], "sources": [], "cache": backend}}
    config = tmp_path / "mapproxy.yaml"
    config.write_text(yaml.safe_dump({"caches": caches}))
    ConfigBuilder(load_configuration(str(config))).cache("cc")


def test_missing_version_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"caches\.cc\.cache\.version"):
        _build(tmp_path, {"type": "compact"})


def test_invalid_version_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"caches\.cc\.cache\.version"):
        _build(tmp_path, {"type": "compact", "version": 3})


def test_directory_with_several_grids_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"caches\.cc\.cache\.directory"):
        _build(
            tmp_path,
            {"type": "compact", "version": 2, "directory": "./x"},
            grids=["GLOBAL_WEBMERCATOR", "GLOBAL_GEODETIC"],
        )


DEFRAG_CONFIG = """
caches:
  c1:
    grids: [GLOBAL_WEBMERCATOR]
    sources: []
    cache:
      type: compact
      version: 1
  c2:
    grids: [GLOBAL_WEBMERCATOR]
    sources: []
    cache:
      type: compact
      version: 2
  plain:
    grids: [GLOBAL_WEBMERCATOR]
    sources: []
globals:
  cache:
    base_dir: ./cache_data
"""


def _fragmented_caches(tmp_path: Path) -> tuple[Path, dict[str, CompactCache]]:
    config = tmp_path / "mapproxy.yaml"
    config.write_text(DEFRAG_CONFIG)
    caches = {}
    for name, version in (("c1", 1), ("c2", 2)):
        cache = CompactCache(str(tmp_path / f"cache_data/{name}/GLOBAL_WEBMERCATOR"), version)
        coords = [TileCoord(x, y, 3) for x in range(8) for y in range(8)]
        for round_ in range(3):
            cache.store_tiles({c: bytes([round_, c.x, c.y]) * 300 for c in coords})
        cache.remove_tile(coords[0])
        caches[name] = cache
    return config, caches


def _bundle_size(cache: CompactCache) -> int:
    return sum(b.usage().file_size for b in cache.bundles())


def test_defrag_shrinks_fragmented_bundles_and_keeps_tiles(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config, caches = _fragmented_caches(tmp_path)
    sizes = {name: _bundle_size(cache) for name, cache in caches.items()}
    assert defrag_command(["-f", str(config), "--min-percent", "0", "--min-mb", "0"]) == 0
    out = capsys.readouterr().out
    bundle = tmp_path / "cache_data/c1/GLOBAL_WEBMERCATOR/L03/R0000C0000.bundle"
    assert re.search(
        rf"^\[[0-9-]+ [0-9:,]+\] c1:   1/1 \({re.escape(str(bundle))}\) "
        r"fragmentation is 48\.8% \(113kb\) - defragmenting$",
        out,
        re.MULTILINE,
    )
    assert "c2:   1/1" in out
    for name, cache in caches.items():
        assert _bundle_size(cache) == sizes[name] - 2 * 64 * 904 - 904
        assert cache.load_tile(TileCoord(0, 0, 3)) is None
        for x in range(8):
            for y in range(8):
                if (x, y) != (0, 0):
                    tile = cache.load_tile(TileCoord(x, y, 3))
                    assert tile is not None and tile.data == bytes([2, x, y]) * 300


def test_defrag_thresholds_and_dry_run_leave_bundles(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config, caches = _fragmented_caches(tmp_path)
    sizes = {name: _bundle_size(cache) for name, cache in caches.items()}
    # default thresholds: 10% and 1 MB; 112 kB unused is too little
    assert defrag_command(["-f", str(config)]) == 0
    assert "- skipping" in capsys.readouterr().out
    assert defrag_command(["-f", str(config), "--min-mb", "0", "-n", "--caches", "c2"]) == 0
    out = capsys.readouterr().out
    assert "c2:   1/1" in out and "- defragmenting" in out and "c1:" not in out
    assert {name: _bundle_size(cache) for name, cache in caches.items()} == sizes


def test_defrag_unknown_cache_lists_compact_caches(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config, _ = _fragmented_caches(tmp_path)
    assert defrag_command(["-f", str(config), "--caches", "plain,nope"]) == 1
    out = capsys.readouterr().out
    assert "unknown caches: plain, nope\navailable compact caches: c1, c2\n" in out


def test_defrag_without_config_prints_help(capsys) -> None:  # type: ignore[no-untyped-def]
    assert defrag_command([]) == 1
    assert "Usage: mapproxy-util defrag-compact [options] -f mapproxy_conf" in (
        capsys.readouterr().out
    )
