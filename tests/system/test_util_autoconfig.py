"""mapproxy-util autoconfig: WMS capabilities (from our own WMS) and GeoPackages to YAML.

The expected_*.yaml fixtures were written by the reference ``mapproxy-util autoconfig`` for
fixtures/autoconfig/capabilities_111.xml with --base fixtures/autoconfig/base.yaml.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, status_handler
from mapproxy.script import util
from mapproxy.script.autoconfig import update_config
from mapproxy.seed import script as seed_script
from mapproxy.wsgiapp import make_wsgi_app

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "autoconfig"

# Our own WMS: nested groups, an unnamed group, a queryable layer with a legend.
OWN_WMS = """\
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857', 'EPSG:25832']
    md:
      title: Own WMS
layers:
  - name: root
    title: Root Layer
    layers:
      - name: group
        title: Group
        layers:
          - name: osm
            title: OSM
            sources: [osm_wms]
      - title: Unnamed group
        layers:
          - name: water
            title: Water
            sources: [water_wms]
sources:
  osm_wms:
    type: wms
    req: {url: 'http://127.0.0.1:1/service', layers: osm}
    coverage: {bbox: [5, 50, 10, 55], srs: 'EPSG:4326'}
  water_wms:
    type: wms
    wms_opts: {featureinfo: true, legendgraphic: true}
    req: {url: 'http://127.0.0.1:1/service', layers: water}
"""

BASE = """\
grids:
  utm:
    srs: 'EPSG:25832'
    bbox: [280000, 5200000, 920000, 6100000]
    origin: nw
  merc_by_base:
    base: GLOBAL_WEBMERCATOR
globals:
  cache:
    base_dir: ./cache_data
"""


def own_wms_handler(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Answer GetCapabilities with our own WMS for OWN_WMS."""
    config = tmp_path / "own_wms.yaml"
    config.write_text(OWN_WMS)
    client = Client(make_wsgi_app(str(config)))

    def handle(request: Request) -> Response:
        answer = client.get("/service", query_string=request.query_string.decode())
        return Response(answer.data, status=answer.status_code, content_type="text/xml")

    return handle


def body(text: str) -> str:
    """The YAML below the generated comment header."""
    lines = text.splitlines(keepends=True)
    assert lines[0] == "# MapProxy configuration automatically generated from:\n"
    start = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    assert lines[start] == "\n"
    return "".join(lines[start + 1 :])


def autoconfig(tmp_path: Path, *args: str) -> tuple[dict, dict | None]:  # type: ignore[type-arg]
    output, seed = tmp_path / "mapproxy.yaml", tmp_path / "seed.yaml"
    code = util.main(["autoconfig", *args, "--output", str(output), "--output-seed", str(seed)])
    assert code == 0
    return yaml.safe_load(output.read_text()), yaml.safe_load(seed.read_text())


def test_own_wms_111_sources_and_layer_tree(tmp_path):
    with FakeUpstream() as upstream:
        upstream.handler = own_wms_handler(tmp_path)
        conf, seed = autoconfig(tmp_path, "--capabilities", upstream.url + "/service?map=x")
    assert upstream.requests[0][0] == "/service"
    assert upstream.requests[0][1] == {
        "map": "x",
        "service": "WMS",
        "version": "1.1.1",
        "request": "GetCapabilities",
    }
    assert conf["services"] == {"wms": {"md": {"title": "Own WMS"}}}
    assert conf["caches"] == {}
    assert seed == {"seeds": {}, "cleanups": {}}
    assert sorted(conf["sources"]) == ["group_wms", "osm_wms", "root_wms", "water_wms"]
    assert conf["sources"]["osm_wms"] == {
        "type": "wms",
        "req": {"url": "http://localhost/service?", "layers": "osm", "transparent": True},
        "supported_srs": ["EPSG:25832", "EPSG:3857", "EPSG:4326"],
        "coverage": {"srs": "EPSG:4326", "bbox": [5.0, 50.0, 10.0, 55.0]},
    }
    water_opts = conf["sources"]["water_wms"]["wms_opts"]
    assert water_opts["featureinfo"] is True
    assert "request=GetLegendGraphic" in water_opts["legendurl"]
    assert conf["layers"] == [
        {
            "name": "root",
            "title": "Root Layer",
            "sources": ["root_wms"],
            "layers": [
                {
                    "name": "group",
                    "title": "Group",
                    "sources": ["group_wms"],
                    "layers": [{"name": "osm", "title": "OSM", "sources": ["osm_wms"]}],
                },
                {
                    "title": "Unnamed group",
                    "layers": [{"name": "water", "title": "Water", "sources": ["water_wms"]}],
                },
            ],
        }
    ]
    # the generated configuration loads
    make_wsgi_app(str(tmp_path / "mapproxy.yaml"))


def test_own_wms_130_sets_source_version(tmp_path):
    with FakeUpstream() as upstream:
        upstream.handler = own_wms_handler(tmp_path)
        conf, _ = autoconfig(tmp_path, "--capabilities", upstream.url + "/service?VERSION=1.3.0")
    assert upstream.requests[0][1] == {
        "VERSION": "1.3.0",
        "service": "WMS",
        "request": "GetCapabilities",
    }
    assert all(s["wms_opts"]["version"] == "1.3.0" for s in conf["sources"].values())
    assert conf["sources"]["osm_wms"]["coverage"]["bbox"] == [5.0, 50.0, 10.0, 55.0]


def test_base_grids_give_caches_seeds_and_load(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(BASE)
    with FakeUpstream() as upstream:
        upstream.handler = own_wms_handler(tmp_path)
        conf, seed = autoconfig(
            tmp_path, "--capabilities", upstream.url + "/service", "--base", "base.yaml"
        )
    assert conf["base"] == str(tmp_path / "base.yaml")
    # grids in the order of the sorted supported SRS; merc_by_base inherits EPSG:3857
    assert conf["caches"]["osm_cache"] == {
        "grids": ["utm", "merc_by_base"],
        "sources": ["osm_wms"],
    }
    assert conf["layers"][0]["layers"][0]["layers"][0]["sources"] == ["osm_cache"]
    assert seed["seeds"]["osm_cache_utm"] == {"caches": ["osm_cache"], "grids": ["utm"]}
    assert seed["cleanups"]["osm_cache_utm"]["remove_before"] == {"time": "1900-01-01T00:00:00"}
    # both files load: the config (with its base) and the seed tasks
    make_wsgi_app(str(tmp_path / "mapproxy.yaml"))
    capsys.readouterr()
    code = seed_script.main(
        ["-f", str(tmp_path / "mapproxy.yaml"), "-s", str(tmp_path / "seed.yaml"), "--summary"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "osm_cache_utm" in out and "water_cache_utm" in out


def test_output_matches_reference_for_fixture(tmp_path, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    output, seed = tmp_path / "out.yaml", tmp_path / "seed.yaml"
    code = util.main(
        [
            "autoconfig",
            "--capabilities",
            "capabilities_111.xml",
            "--base",
            "base.yaml",
            "--output",
            str(output),
            "--output-seed",
            str(seed),
        ]
    )
    assert code == 0
    expected = (FIXTURES / "expected_mapproxy.yaml").read_text()
    expected = expected.replace("base: BASE", f"base: {FIXTURES / 'base.yaml'}")
    assert body(output.read_text()) == expected
    assert body(seed.read_text()) == (FIXTURES / "expected_seed.yaml").read_text()
    assert output.read_text().splitlines()[1] == "#   capabilities_111.xml"


def test_overwrite_merges_per_section(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "overwrite.yaml").write_text(
        """\
services:
  wms:
    md: {abstract: Added}
  demo:
sources:
  osm_wms:
    req: {format: image/png}
    coverage: {bbox: [6, 51, 7, 52]}
  __all__:
    req: {format: image/jpeg}
    http: {client_timeout: 5}
  osm___:
    supported_srs__extend__: ['EPSG:31467']
  ___wms:
    seed_only: false
  water_wms:
    supported_srs: ['EPSG:4326']
caches:
  __all__:
    meta_size: [2, 2]
globals:
  image: {paletted: false}
"""
    )
    (tmp_path / "seed_overwrite.yaml").write_text(
        "seeds:\n  __all__:\n    levels: {to: 3}\ncleanups:\n  osm_cache_utm:\n    levels: [1]\n"
    )
    with FakeUpstream() as upstream:
        upstream.handler = own_wms_handler(tmp_path)
        conf, seed = autoconfig(
            tmp_path,
            "--capabilities",
            upstream.url + "/service",
            "--base",
            str(tmp_path / "base.yaml"),
            "--overwrite",
            str(tmp_path / "overwrite.yaml"),
            "--overwrite-seed",
            str(tmp_path / "seed_overwrite.yaml"),
        )
    assert conf["services"] == {
        "wms": {"md": {"title": "Own WMS", "abstract": "Added"}},
        "demo": None,
    }
    osm = conf["sources"]["osm_wms"]
    # __all__ is applied after the plain keys, wildcards last
    assert osm["req"]["format"] == "image/jpeg"
    assert osm["coverage"] == {"srs": "EPSG:4326", "bbox": [6, 51, 7, 52]}
    assert osm["supported_srs"] == ["EPSG:25832", "EPSG:3857", "EPSG:4326", "EPSG:31467"]
    assert osm["http"] == {"client_timeout": 5}
    assert all(s["seed_only"] is False for s in conf["sources"].values())
    # caches are derived from the overwritten sources: no grid for water's only SRS
    assert "water_cache" not in conf["caches"]
    assert conf["layers"][0]["layers"][1]["layers"][0]["sources"] == ["water_wms"]
    assert conf["caches"]["osm_cache"] == {
        "grids": ["utm", "merc_by_base"],
        "sources": ["osm_wms"],
        "meta_size": [2, 2],
    }
    assert conf["globals"] == {"image": {"paletted": False}}
    assert seed["seeds"]["osm_cache_utm"]["levels"] == {"to": 3}
    assert seed["cleanups"]["osm_cache_utm"]["levels"] == [1]
    assert "levels" not in seed["cleanups"]["root_cache_utm"]
    make_wsgi_app(str(tmp_path / "mapproxy.yaml"))


def test_update_config_extend_of_non_list_is_an_error():
    with pytest.raises(Exception, match=r"req\.layers__extend__: can only extend a list"):
        update_config({"req": {"layers": "a"}}, {"req": {"layers__extend__": ["b"]}})


def test_existing_output_needs_force(tmp_path, capsys):
    caps = FIXTURES / "capabilities_111.xml"
    output = tmp_path / "mapproxy.yaml"
    output.write_text("keep")
    assert util.main(["autoconfig", "--capabilities", str(caps), "--output", str(output)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"ERROR: {output} already exists, use --force to overwrite"
    )
    assert output.read_text() == "keep"
    seed = tmp_path / "seed.yaml"
    seed.write_text("keep")
    args = ["autoconfig", "--capabilities", str(caps), "--output", str(output)]
    assert util.main([*args, "--output-seed", str(seed), "--force"]) == 0
    assert "leaf1_wms" in output.read_text()
    assert "seeds: {}" in seed.read_text()


def test_missing_input_option_prints_usage_and_exits_2(capsys):
    assert util.main(["autoconfig"]) == 2
    captured = capsys.readouterr()
    assert "--capabilities=CAPABILITIES" in captured.out
    assert "ERROR: --capabilities required or --geopackage required" in captured.err


def test_http_error_and_bad_document_exit_1(tmp_path, capsys):
    with FakeUpstream() as upstream:
        upstream.handler = status_handler(500)
        assert util.main(["autoconfig", "--capabilities", upstream.url + "/wms"]) == 1
        url = upstream.url
    err = capsys.readouterr().err.strip()
    assert err == (
        f'ERROR: HTTP Error "{url}/wms?service=WMS&version=1.1.1&request=GetCapabilities": 500'
    )
    bad = tmp_path / "bad.xml"
    bad.write_text("<html/>")
    assert util.main(["autoconfig", "--capabilities", str(bad)]) == 1
    assert "Unknown start tag in capabilities: html" in capsys.readouterr().err
    assert util.main(["autoconfig", "--capabilities", str(tmp_path / "missing.xml")]) == 1
    assert "missing.xml: No such file or directory" in capsys.readouterr().err


def make_geopackage(path: Path) -> None:
    """A GeoPackage with one EPSG:3857 tile table (levels 0-1) and one empty table."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT, srs_id INTEGER PRIMARY KEY,
            organization TEXT, organization_coordsys_id INTEGER, definition TEXT);
        CREATE TABLE gpkg_contents (table_name TEXT PRIMARY KEY, data_type TEXT,
            identifier TEXT, srs_id INTEGER);
        CREATE TABLE gpkg_tile_matrix_set (table_name TEXT PRIMARY KEY, srs_id INTEGER,
            min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE);
        CREATE TABLE gpkg_tile_matrix (table_name TEXT, zoom_level INTEGER,
            matrix_width INTEGER, matrix_height INTEGER, tile_width INTEGER,
            tile_height INTEGER, pixel_x_size DOUBLE, pixel_y_size DOUBLE);
        INSERT INTO gpkg_spatial_ref_sys VALUES ('merc', 3857, 'epsg', 3857, '');
        INSERT INTO gpkg_spatial_ref_sys VALUES ('utm', 99, 'EPSG', 25832, '');
        INSERT INTO gpkg_contents VALUES ('tiles_a', 'tiles', 'A', 3857);
        INSERT INTO gpkg_contents VALUES ('features', 'features', 'F', 3857);
        INSERT INTO gpkg_contents VALUES ('tiles_empty', 'tiles', 'E', 99);
        INSERT INTO gpkg_tile_matrix_set VALUES ('tiles_a', 3857, -1000, -1000, 1000, 1000);
        INSERT INTO gpkg_tile_matrix_set VALUES ('tiles_empty', 99, 0, 0, 10, 10);
        INSERT INTO gpkg_tile_matrix VALUES ('tiles_a', 0, 1, 1, 512, 512, 4.0, 4.0);
        INSERT INTO gpkg_tile_matrix VALUES ('tiles_a', 1, 2, 2, 512, 512, 2.0, 2.0);
        """
    )
    db.commit()
    db.close()


def test_geopackage_tables_become_grids_caches_and_layers(tmp_path):
    gpkg = tmp_path / "data.gpkg"
    make_geopackage(gpkg)
    conf, seed = autoconfig(tmp_path, "--geopackage", str(gpkg))
    assert conf["grids"] == {
        "tiles_a_3857": {
            "srs": "EPSG:3857",
            "bbox": [-1000.0, -1000.0, 1000.0, 1000.0],
            "origin": "nw",
            "tile_size": [512, 512],
            "res": [4.0 / 2**level for level in range(19)],
        }
    }
    assert conf["caches"] == {
        "tiles_a_cache": {
            "cache": {"type": "geopackage", "filename": str(gpkg), "table_name": "tiles_a"},
            "grids": ["tiles_a_3857"],
            "sources": [],
        }
    }
    assert conf["layers"] == [{"name": "tiles_a", "title": "tiles_a", "sources": ["tiles_a_cache"]}]
    assert conf["services"]["tms"] == {"use_grid_names": True, "origin": "nw"}
    assert list(seed["seeds"]) == ["tiles_a_cache_tiles_a_3857"]
    app = Client(make_wsgi_app(str(tmp_path / "mapproxy.yaml")))
    assert b"tiles_a_3857" in app.get("/tms/1.0.0/").data
