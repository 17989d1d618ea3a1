"""mapproxy-util serve-multiapp-develop: serves projects, picks up changes, survives broken ones."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_cli_serve import (
    Server,
    fetch,
    free_port,
    server_starter,
    touch_later,
    util_script,
    wait_for,
    wms_title,
)

PROJECT_YAML = """\
services:
  wms:
    md:
      title: {title}
layers:
  - name: dbg
    title: Debug layer
    sources: [dbg]
sources:
  dbg:
    type: debug
"""

CAPS = "/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1"


@pytest.fixture
def start_multiapp(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    yield from server_starter(tmp_path, "serve-multiapp-develop")


def test_serves_projects_and_picks_up_changes_without_restart(
    tmp_path: Path, start_multiapp: Callable[..., Server]
) -> None:
    projects = tmp_path / "projects"
    projects.mkdir()
    one = projects / "one.yaml"
    one.write_text(PROJECT_YAML.format(title="First"))
    server = start_multiapp("projects")

    def alive() -> None:
        assert server.process.poll() is None, server.output()

    _, index = wait_for(server.url + "/", lambda s, b: s == 200, 60, alive)
    assert f'<li><a href="{server.url}/one/">one</a></li>' in index
    _, caps = wait_for(server.url + "/one" + CAPS, lambda s, b: s == 200, 10, alive)
    assert wms_title(caps) == "First"
    assert f"{server.url}/one/service" in caps

    # an edited project is rebuilt by the app itself
    one.write_text(PROJECT_YAML.format(title="Edited"))
    wait_for(
        server.url + "/one" + CAPS, lambda s, b: wms_title(b) == "Edited", 30, touch_later(one)
    )

    # a new project is available at once
    two = projects / "two.yaml"
    two.write_text(PROJECT_YAML.format(title="Second"))
    wait_for(server.url + "/two" + CAPS, lambda s, b: wms_title(b) == "Second", 30, alive)
    assert '<a href="' + server.url + '/two/">two</a>' in fetch(server.url + "/")[1]

    # a broken project answers 500 with the error, the others keep working
    two.write_text("services: [\n")
    _, body = wait_for(server.url + "/two/", lambda s, b: s == 500, 30, touch_later(two))
    assert "'two' has a configuration error" in body
    assert "invalid YAML" in body
    assert wms_title(fetch(server.url + "/one" + CAPS)[1]) == "Edited"

    two.write_text(PROJECT_YAML.format(title="Fixed"))
    wait_for(server.url + "/two" + CAPS, lambda s, b: wms_title(b) == "Fixed", 30, touch_later(two))

    (projects / "two.yaml").unlink()
    wait_for(server.url + "/two/", lambda s, b: s == 404, 30, alive)

    assert server.process.poll() is None
    output = server.output()
    assert f"initializing project app one with {one}" in output
    assert "Traceback" not in output
    # the projects are reloaded by the app: the server process was never restarted
    assert output.count("Restarting with") == 1, output


def test_missing_directory_argument_prints_help_and_exits_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [util_script(), "serve-multiapp-develop"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "--bind" in result.stdout
    assert "ERROR: MapProxy projects directory required." in result.stderr


def test_nonexistent_directory_exits_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [util_script(), "serve-multiapp-develop", "-b", f"127.0.0.1:{free_port()}", "nothere"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "ERROR: MapProxy projects directory nothere not found" in result.stderr
    assert "not implemented" not in result.stderr


def test_help_lists_the_options(tmp_path: Path) -> None:
    result = subprocess.run(
        [util_script(), "serve-multiapp-develop", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0
    for option in ("--bind", "--debug", "--log-config"):
        assert option in result.stdout
