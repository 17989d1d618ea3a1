"""``mapproxy-util nginx-config`` output: which tile URLs nginx serves from which files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mapproxy.script.util import main

CONFIG = """
services:
  wmts:
  tms:
    use_grid_names: true
layers:
  - {name: tc, title: tc, sources: [tc_cache]}
  - {name: qk, title: qk, sources: [qk_cache]}
  - {name: old, title: refresh, sources: [old_cache]}
caches:
  tc_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: []
    cache: {type: file, directory: /data/tc}
  qk_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: []
    cache: {type: file, directory: /data/qk, directory_layout: quadkey}
  old_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: []
    refresh_before: {hours: 1}
    cache: {type: file, directory: /data/old}
"""


def generate(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    config = tmp_path / "mapproxy.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    assert main(["nginx-config", "-f", str(config), "--app", "127.0.0.1:9000", *args]) == 0
    return capsys.readouterr().out


def test_tc_layer_is_served_from_its_directory_for_wmts_and_tiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = generate(tmp_path, capsys)
    assert "server 127.0.0.1:9000;" in out
    assert out.count('root "/data/tc";') == 2  # WMTS and /tiles; TMS rows would flip
    assert '"^/wmts/tc/GLOBAL_WEBMERCATOR/(?<mapproxy_z>[0-9]+)/' in out
    assert '"^/tiles/tc/GLOBAL_WEBMERCATOR/(?<mapproxy_z>[0-9]+)/' in out
    assert "/tms/1.0.0/tc/" not in out
    assert 'try_files "/$mapproxy_level0/$mapproxy_tc_x/$mapproxy_tc_y.png" @mapproxy;' in out
    assert '    "~^([0-9])([0-9]{3})$" "000/00$1/$2";' in out  # x=1234 -> 000/001/234
    assert '    "7" "07";' in out  # tc levels are two digits
    assert 'add_header Cache-Control "public, max-age=259200, s-maxage=259200";' in out
    # quadkey paths and refresh_before always need the app
    assert "/data/qk" not in out
    assert "/data/old" not in out


def test_excluded_layers_always_go_to_the_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = generate(tmp_path, capsys, "--exclude", "tc")
    assert "/data/tc" not in out
    assert "proxy_pass http://mapproxy_app;" in out
