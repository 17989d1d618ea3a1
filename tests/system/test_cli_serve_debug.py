"""mapproxy-util serve-develop --debug: unhandled errors show werkzeug's debugger.

The unhandled (non-MapProxyError) exception is provoked from outside: the file cache
directory is an existing regular file, so creating the tile lock raises
NotADirectoryError, which no layer of MapProxy turns into a domain error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from test_cli_serve import Server, fetch, start_server, wait_for

__all__ = ["start_server"]  # the fixture is used by name

CONFIG_YAML = """\
services:
  tms:
layers:
  - name: dbg
    title: Debug
    sources: [c]
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    cache:
      type: file
      directory: {directory}
sources:
  dbg:
    type: debug
"""

TILE = "/tiles/dbg/EPSG3857/0/0/0.png"


def broken_cache_config(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where the cache directory should be\n")
    (tmp_path / "mapproxy.yaml").write_text(CONFIG_YAML.format(directory=blocker))


def start_and_wait(start_server: Callable[..., Server], *args: str) -> Server:
    server = start_server(*args)

    def alive() -> None:
        assert server.process.poll() is None, server.output()

    wait_for(server.url + "/", lambda s, b: s == 200, 60, alive)
    return server


def test_debug_mode_shows_interactive_debugger_for_unhandled_errors(
    tmp_path: Path, start_server: Callable[..., Server]
):
    broken_cache_config(tmp_path)
    server = start_and_wait(start_server, "--debug", "mapproxy.yaml")
    status, body = fetch(server.url + TILE)
    assert status == 500
    assert "Traceback" in body
    assert "NotADirectoryError" in body
    # markers of werkzeug's interactive debugger page (console enabled)
    assert "werkzeug" in body.lower()
    assert "EVALEX = true" in body
    assert 'class="traceback"' in body
    assert "console" in body.lower()


def test_without_debug_unhandled_errors_give_internal_error(
    tmp_path: Path, start_server: Callable[..., Server]
):
    broken_cache_config(tmp_path)
    server = start_and_wait(start_server, "mapproxy.yaml")
    assert fetch(server.url + TILE) == (500, "internal error")
    assert "NotADirectoryError" in server.output()
