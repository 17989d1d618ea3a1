"""mapproxy-util create: base-config, wsgi-app and log-ini templates, errors, --force."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mapproxy.config import load_configuration

SCRIPT_DIR = str(Path(sys.executable).parent)
BASE_CONFIG_FILES = ["mapproxy.yaml", "seed.yaml", "full_example.yaml", "full_seed_example.yaml"]

TINY_CONFIG = """\
services:
  wms:
    md:
      title: Tiny
layers:
  - name: dbg
    title: Debug
    sources: [dbg]
sources:
  dbg:
    type: debug
"""


def run_create(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mapproxy-util create`` with ``args`` in ``cwd``."""
    util = shutil.which("mapproxy-util", path=SCRIPT_DIR)
    assert util
    return subprocess.run(
        [util, "create", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_list_templates_exits_1(tmp_path: Path):
    result = run_create("-l", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert lines[0] == "Available templates:"
    assert {"base-config", "wsgi-app", "log-ini"} <= set(lines[1:])


def test_base_config_creates_missing_directory_with_four_files(tmp_path: Path):
    result = run_create("-t", "base-config", "new/conf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    dest = tmp_path / "new" / "conf"
    assert sorted(path.name for path in dest.iterdir()) == sorted(BASE_CONFIG_FILES)
    for name in BASE_CONFIG_FILES:
        assert isinstance(yaml.safe_load((dest / name).read_text()), dict), name


def test_base_config_mapproxy_yaml_has_documented_content_and_loads(tmp_path: Path):
    assert run_create("-t", "base-config", ".", cwd=tmp_path).returncode == 0
    conf = yaml.safe_load((tmp_path / "mapproxy.yaml").read_text())
    services = conf["services"]
    assert {"demo", "tms", "kml", "wmts", "wms"} <= set(services)
    assert services["tms"] == {"use_grid_names": True, "origin": "nw"}
    assert services["kml"] == {"use_grid_names": True}
    assert {"title", "abstract"} <= set(services["wms"]["md"])
    assert [layer["name"] for layer in conf["layers"]] == ["osm"]
    assert conf["layers"][0]["sources"] == ["osm_cache"]
    assert conf["caches"]["osm_cache"]["grids"] == ["webmercator"]
    assert conf["caches"]["osm_cache"]["sources"] == ["osm_wms"]
    assert conf["grids"]["webmercator"]["base"] == "GLOBAL_WEBMERCATOR"
    assert conf["sources"]["osm_wms"]["type"] == "wms"
    config = load_configuration(str(tmp_path / "mapproxy.yaml"), ignore_warnings=False)
    assert str(tmp_path / "mapproxy.yaml") in config.config_files


def test_base_config_full_example_passes_validation(tmp_path: Path):
    assert run_create("-t", "base-config", ".", cwd=tmp_path).returncode == 0
    load_configuration(str(tmp_path / "full_example.yaml"))


def test_base_config_seed_yaml_has_one_seed_and_one_cleanup(tmp_path: Path):
    assert run_create("-t", "base-config", ".", cwd=tmp_path).returncode == 0
    seed = yaml.safe_load((tmp_path / "seed.yaml").read_text())
    (task,) = seed["seeds"].values()
    assert task["caches"] == ["osm_cache"]
    assert task["levels"] == {"to": 10}
    assert "time" in task["refresh_before"]
    (cleanup,) = seed["cleanups"].values()
    assert cleanup["remove_before"] == {"days": 14}
    assert cleanup["levels"] == {"from": 11}
    full = yaml.safe_load((tmp_path / "full_seed_example.yaml").read_text())
    assert {"seeds", "cleanups", "coverages"} <= set(full)


def test_base_config_refuses_to_overwrite_without_force(tmp_path: Path):
    assert run_create("-t", "base-config", "conf", cwd=tmp_path).returncode == 0
    (tmp_path / "conf" / "mapproxy.yaml").write_text("# mine\n")
    result = run_create("-t", "base-config", "conf", cwd=tmp_path)
    assert result.returncode == 1
    assert "ERROR: conf/mapproxy.yaml already exists, use --force" in result.stderr
    assert (tmp_path / "conf" / "mapproxy.yaml").read_text() == "# mine\n"
    result = run_create("-t", "base-config", "--force", "conf", cwd=tmp_path)
    assert result.returncode == 0
    assert "services:" in (tmp_path / "conf" / "mapproxy.yaml").read_text()


def test_wsgi_app_appends_py_and_uses_absolute_config_path(tmp_path: Path):
    (tmp_path / "mapproxy.yaml").write_text(TINY_CONFIG)
    result = run_create("-t", "wsgi-app", "-f", "mapproxy.yaml", "config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    app_file = tmp_path / "config.py"
    assert f"writing MapProxy app to {Path('config.py')}" in result.stdout
    source = app_file.read_text()
    compile(source, str(app_file), "exec")
    assert "from mapproxy.wsgiapp import make_wsgi_app" in source
    assert f"application = make_wsgi_app(r'{tmp_path / 'mapproxy.yaml'}')" in source
    assert "# from logging.config import fileConfig" in source
    assert f"{tmp_path / 'log.ini'}" in source


def test_wsgi_app_module_builds_the_application(tmp_path: Path):
    (tmp_path / "mapproxy.yaml").write_text(TINY_CONFIG)
    result = run_create("-t", "wsgi-app", "-f", "mapproxy.yaml", "app.py", cwd=tmp_path)
    assert result.returncode == 0
    check = textwrap.dedent("""
        import runpy, sys
        from werkzeug.test import Client
        module = runpy.run_path(sys.argv[1])
        response = Client(module["application"]).get("/")
        print(response.status_code)
    """)
    result = subprocess.run(
        [sys.executable, "-c", check, str(tmp_path / "app.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200"


def test_wsgi_app_keeps_given_extension(tmp_path: Path):
    result = run_create("-t", "wsgi-app", "-f", "x.yaml", "app.wsgi", cwd=tmp_path)
    assert result.returncode == 0
    assert (tmp_path / "app.wsgi").exists()
    assert not (tmp_path / "app.wsgi.py").exists()


def test_wsgi_app_requires_mapproxy_conf_option(tmp_path: Path):
    result = run_create("-t", "wsgi-app", "app.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "--mapproxy-conf" in result.stdout  # the help text
    assert "ERROR: template requires --mapproxy-conf option" in result.stderr
    assert not (tmp_path / "app.py").exists()


def test_wsgi_app_refuses_to_overwrite_without_force(tmp_path: Path):
    (tmp_path / "app.py").write_text("# mine\n")
    result = run_create("-t", "wsgi-app", "-f", "m.yaml", "app", cwd=tmp_path)
    assert result.returncode == 1
    assert "ERROR: app.py already exists, use --force" in result.stderr
    assert (tmp_path / "app.py").read_text() == "# mine\n"
    result = run_create("-t", "wsgi-app", "-f", "m.yaml", "--force", "app", cwd=tmp_path)
    assert result.returncode == 0
    assert "make_wsgi_app" in (tmp_path / "app.py").read_text()


def test_log_ini_configures_mapproxy_and_source_request_loggers(tmp_path: Path):
    result = run_create("-t", "log-ini", "log.ini", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check = textwrap.dedent("""
        import logging, logging.config, os, sys
        path = sys.argv[1]
        logging.config.fileConfig(path, defaults={"here": os.path.dirname(path)})
        requests = logging.getLogger("mapproxy.source.request")
        assert requests.level == logging.INFO and not requests.propagate
        assert [type(h).__name__ for h in requests.handlers] == ["FileHandler"]
        assert logging.getLogger().level == logging.INFO
        requests.info("GET http://example.org/wms 200 1.0 12")
        logging.getLogger("mapproxy.config").warning("hello config")
        logging.shutdown()
    """)
    result = subprocess.run(
        [sys.executable, "-c", check, str(tmp_path / "log.ini")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    request_log = (tmp_path / "source-requests.log").read_text()
    assert request_log.startswith("[")
    assert "] GET http://example.org/wms 200 1.0 12" in request_log
    main_log = (tmp_path / "mapproxy.log").read_text()
    assert " - WARNING - mapproxy.config - hello config" in main_log
    assert "GET http://example.org" not in main_log


def test_log_ini_refuses_to_overwrite_without_force(tmp_path: Path):
    (tmp_path / "log.ini").write_text("x")
    result = run_create("-t", "log-ini", "log.ini", cwd=tmp_path)
    assert result.returncode == 1
    assert "ERROR: log.ini already exists, use --force" in result.stderr
    assert run_create("-t", "log-ini", "--force", "log.ini", cwd=tmp_path).returncode == 0
    assert "[loggers]" in (tmp_path / "log.ini").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-t", "nonsense", "x"), "ERROR: unknown template nonsense"),
        (("-t", "log-ini"), "ERROR: template requires destination argument"),
        (("-t", "base-config"), "ERROR: template requires destination argument"),
    ],
)
def test_usage_errors_exit_1(tmp_path: Path, args: tuple[str, ...], message: str):
    result = run_create(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []
