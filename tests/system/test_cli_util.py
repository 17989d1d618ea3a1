"""mapproxy-util: command list, --version, unknown/unimplemented commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mapproxy
from mapproxy.script import util

SCRIPT_DIR = str(Path(sys.executable).parent)

HELP_TEXTS = {
    "serve-develop": "Run MapProxy development server.",
    "serve-multiapp-develop": "Run MultiMapProxy development server.",
    "create": "Create example configurations.",
    "scales": "Convert between scales and resolutions.",
    "wms-capabilities": "Display WMS capabilites.",
    "grids": "Display detailed informations for configured grids.",
    "export": "Export existing caches.",
    "autoconfig": "Create config from WMS capabilities or a Geopackage file.",
    "defrag-compact-cache": "De-fragmentate compact caches.",
    "gridconf-from-ogcapitilematrixset": (
        "Export OGC API TileMatrixSet as MapProxy grid configuration."
    ),
}


def console_script(name: str) -> str:
    """The installed console script next to the running interpreter."""
    path = shutil.which(name, path=SCRIPT_DIR)
    assert path, f"{name} is not installed in {SCRIPT_DIR}"
    return path


def run_util(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run mapproxy-util with ``args``; bounded by a timeout."""
    return subprocess.run(
        [console_script("mapproxy-util"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def command_lines(stdout: str) -> list[str]:
    """The lines after ``Commands:`` up to the next empty line."""
    lines = stdout.splitlines()
    start = lines.index("Commands:") + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


@pytest.mark.parametrize("args", [(), ("-h",), ("--help",)])
def test_no_command_or_help_prints_usage_and_command_list_with_exit_1(args: tuple[str, ...]):
    result = run_util(*args)
    assert result.returncode == 1
    assert "Usage: mapproxy-util COMMAND" in result.stdout
    lines = command_lines(result.stdout)
    width = max(len(name) for name in HELP_TEXTS)
    for name, help_text in HELP_TEXTS.items():
        assert f"  {name.ljust(width)}  {help_text}" in lines
    assert "ERROR" not in result.stderr


def test_version_prints_mapproxy_version_with_exit_1():
    result = run_util("--version")
    assert result.returncode == 1
    assert result.stdout.strip() == f"MapProxy {mapproxy.__version__}"


def test_unknown_command_prints_usage_list_and_error_with_exit_1():
    result = run_util("frobnicate")
    assert result.returncode == 1
    assert "Commands:" in result.stdout
    assert "ERROR: unknown command frobnicate" in result.stderr


def test_unimplemented_command_reports_error_with_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(util.COMMANDS, "later", util.Command(None, "Something for later."))
    assert util.main(["later", "--anything"]) == 2
    assert "ERROR: 'later' is not implemented yet" in capsys.readouterr().err


def test_unimplemented_builtin_command_from_console_script_exits_2():
    missing = [name for name, cmd in util.COMMANDS.items() if cmd.target is None]
    if not missing:
        pytest.skip("every command is implemented")
    result = run_util(missing[0])
    assert result.returncode == 2
    assert f"ERROR: '{missing[0]}' is not implemented yet" in result.stderr


def test_registered_plugin_command_is_listed_and_called(monkeypatch, capsys):
    calls: list[list[str]] = []

    def hello(args: list[str]) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(util, "COMMANDS", dict(util.COMMANDS))
    util.register_command("hello", {"func": hello, "help": "Say hello."})
    assert util.main([]) == 1
    assert any(line.endswith("  Say hello.") for line in command_lines(capsys.readouterr().out))
    assert util.main(["hello", "-x", "y"]) == 0
    assert calls == [["-x", "y"]]


def test_python_module_entry_matches_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "mapproxy.script.util", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout.strip() == f"MapProxy {mapproxy.__version__}"
