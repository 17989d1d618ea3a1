"""mapproxy-util gridconf-from-ogcapitilematrixset against our own OGC API and fixed JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, status_handler
from mapproxy.script import util
from mapproxy.wsgiapp import make_wsgi_app

CONFIG = """\
services:
  ogcapi:
layers:
  - name: dbg
    title: Debug
    sources: [dbg_cache]
caches:
  dbg_cache:
    grids: [utm, geo_ll, GLOBAL_WEBMERCATOR]
    sources: [dbg]
sources:
  dbg:
    type: debug
grids:
  utm:
    srs: 'EPSG:25832'
    bbox: [280000, 5200000, 920000, 6100000]
    origin: nw
    tile_size: [512, 256]
    res: [1000, 500, 250]
  geo_ll:
    srs: 'EPSG:4326'
    bbox: [5, 50, 10, 55]
    origin: sw
    num_levels: 4
"""

# what the reference prints for our OGC API with CONFIG (its own OGC API prints ints for res)
EXPECTED_UTM = {
    "bbox": [280000.0, 5076000.0, 1304000.0, 6100000.0],
    "origin": "ul",
    "res": [1000.0, 500.0, 250.0],
    "srs": "EPSG:25832",
    "tile_size": [512, 256],
}
EXPECTED_GEO_LL = {
    "bbox": [5.0, 50.0, 10.0, 55.0],
    "origin": "ll",
    "res": [0.01953125, 0.009765625, 0.0048828125, 0.00244140625],
    "srs": "EPSG:4326",
    "tile_size": [256, 256],
}


def app_handler(config_path: Path, base_url: str):  # type: ignore[no-untyped-def]
    """Forward requests to our app so that its links point back to the FakeUpstream."""
    client = Client(make_wsgi_app(str(config_path)))

    def handle(request: Request) -> Response:
        answer = client.get(
            request.path, query_string=request.query_string.decode(), base_url=base_url
        )
        return Response(answer.data, status=answer.status_code, content_type=answer.content_type)

    return handle


def run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = util.main(["gridconf-from-ogcapitilematrixset", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def printed_grids(out: str) -> dict[str, Any]:
    head, _, text = out.partition("\n\n")
    assert head == "Configuration to add to mapproxy.yml:"
    grids: dict[str, Any] = yaml.safe_load(text)["grids"]
    return grids


def tile_matrices(client: Client, grid: str) -> list[dict[str, Any]]:
    """Cell size, origin and tile size per level, the matrix size at level 0.

    The printed bbox is the full level-0 matrix, so finer levels may have more columns.
    """
    data = json.loads(client.get(f"/ogcapi/tileMatrixSets/{grid}?f=json").data)
    keep = ("cellSize", "cornerOfOrigin", "pointOfOrigin", "tileWidth", "tileHeight")
    levels = [{key: matrix[key] for key in keep} for matrix in data["tileMatrices"]]
    first = data["tileMatrices"][0]
    levels[0] |= {"matrixWidth": first["matrixWidth"], "matrixHeight": first["matrixHeight"]}
    return levels


def test_own_ogcapi_sets_become_grids_that_round_trip(tmp_path, capsys):
    config = tmp_path / "mapproxy.yaml"
    config.write_text(CONFIG)
    with FakeUpstream() as upstream:
        upstream.handler = app_handler(config, upstream.url)
        code, out, err = run(capsys, "--url", upstream.url + "/ogcapi")
    assert code == 0, err
    assert err == ""
    assert [path for path, _ in upstream.requests[:3]] == [
        "/ogcapi",
        "/ogcapi/tileMatrixSets",
        "/ogcapi/tileMatrixSets/GLOBAL_GEODETIC",
    ]
    assert out.endswith("\n\n")
    grids = printed_grids(out)
    assert grids["utm"] == EXPECTED_UTM
    assert grids["geo_ll"] == EXPECTED_GEO_LL
    assert grids["WebMercatorQuad"]["origin"] == "ul"
    assert grids["GLOBAL_GEODETIC"]["bbox"] == [-180.0, -90.0, 180.0, 270.0]
    assert len(grids["GLOBAL_MERCATOR"]["res"]) == 20

    # the printed grids load and describe the same tile matrices as the input sets
    copy = yaml.safe_load(CONFIG)
    copy["grids"] = {"utm_copy": grids["utm"], "geo_copy": grids["geo_ll"]}
    copy["caches"]["dbg_cache"]["grids"] = ["utm_copy", "geo_copy"]
    (tmp_path / "copy.yaml").write_text(yaml.safe_dump(copy))
    original = Client(make_wsgi_app(str(config)))
    roundtrip = Client(make_wsgi_app(str(tmp_path / "copy.yaml")))
    assert tile_matrices(roundtrip, "utm_copy") == tile_matrices(original, "utm")
    assert tile_matrices(roundtrip, "geo_copy") == tile_matrices(original, "geo_ll")


def tms(crs: Any, *matrices: dict[str, Any]) -> dict[str, Any]:
    return {"crs": crs, "tileMatrices": list(matrices)}


def matrix(cell_size: float, **overrides: Any) -> dict[str, Any]:
    values = {
        "id": "0",
        "cellSize": cell_size,
        "cornerOfOrigin": "topLeft",
        "pointOfOrigin": [0, 100],
        "matrixWidth": 2,
        "matrixHeight": 3,
        "tileWidth": 256,
        "tileHeight": 256,
    }
    return values | overrides


EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
SETS: dict[str, Any] = {
    "bl": tms(EPSG + "3857", matrix(10.0, cornerOfOrigin="bottomLeft", pointOfOrigin=[0, 0])),
    "latlon": tms(EPSG + "4326", matrix(0.5, pointOfOrigin=[90, -180])),
    "nocorner": tms(EPSG + "3857", {k: v for k, v in matrix(1.0).items() if k != "cornerOfOrigin"}),
    "urn": tms("urn:ogc:def:crs:EPSG::31467", matrix(1.0)),
    "tilesz": tms(EPSG + "3857", matrix(10.0), matrix(5.0, tileWidth=512)),
    "origins": tms(EPSG + "3857", matrix(10.0), matrix(5.0, pointOfOrigin=[1, 100])),
    "varw": tms(EPSG + "3857", matrix(1.0, variableMatrixWidths=[{"coalesce": 2}])),
    "broken": "not json",
    "gone": 404,
}
for _name, _value in SETS.items():
    if isinstance(_value, dict):
        _value["id"] = _name


def json_api_handler(base_url: str, landing_links: bool = True):  # type: ignore[no-untyped-def]
    def handle(request: Request) -> Response:
        path = request.path
        if path == "/api":
            links = [{"rel": "self", "type": "application/json", "href": base_url + "/api"}]
            rel = "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes"
            links.append({"rel": rel, "type": "text/html", "href": base_url + "/html"})
            if landing_links:
                links.append({"rel": rel, "type": "application/json", "href": base_url + "/tms"})
            return Response(json.dumps({"links": links}), content_type="application/json")
        if path == "/tms":
            entries = [
                {
                    "id": name,
                    "links": [
                        {
                            "rel": "self",
                            "type": "application/json",
                            "href": f"{base_url}/tms/{name}",
                        }
                    ],
                }
                for name in SETS
            ]
            return Response(
                json.dumps({"tileMatrixSets": entries}), content_type="application/json"
            )
        value = SETS[path.rsplit("/", 1)[1]]
        if value == 404:
            return Response("gone", status=404)
        if isinstance(value, str):
            return Response(value, content_type="application/json")
        return Response(json.dumps(value), content_type="application/json")

    return handle


def test_unsupported_sets_are_reported_and_others_printed(capsys):
    with FakeUpstream() as upstream:
        url = upstream.url
        upstream.handler = json_api_handler(url)
        code, out, err = run(capsys, url + "/api")
    assert code == 0
    assert printed_grids(out) == {
        "bl": {
            "bbox": [0, 0, 5120.0, 7680.0],
            "origin": "ll",
            "res": [10.0],
            "srs": "EPSG:3857",
            "tile_size": [256, 256],
        },
        # EPSG:4326 is lat/lon: pointOfOrigin [90, -180] is x=-180, y=90
        "latlon": {
            "bbox": [-180, -294.0, 76.0, 90],
            "origin": "ul",
            "res": [0.5],
            "srs": "EPSG:4326",
            "tile_size": [256, 256],
        },
        # cornerOfOrigin defaults to topLeft
        "nocorner": {
            "bbox": [0, -668.0, 512.0, 100],
            "origin": "ul",
            "res": [1.0],
            "srs": "EPSG:3857",
            "tile_size": [256, 256],
        },
    }
    assert err.splitlines() == [
        f"Cannot handle {url}/tms/urn: CRS urn:ogc:def:crs:EPSG::31467 is not supported",
        f"Cannot handle {url}/tms/tilesz: "
        "Tile matrix set with varying tileWidth depending on tile matrix",
        f"Cannot handle {url}/tms/origins: "
        "Tile matrix set with varying pointOfOrigin depending on tile matrix",
        f"Cannot handle {url}/tms/varw: Tile matrix with variableMatrixWidths are not supported",
        f"Cannot handle {url}/tms/broken: invalid JSON from {url}/tms/broken: "
        "Expecting value: line 1 column 1 (char 0)",
        f'Cannot handle {url}/tms/gone: HTTP Error "{url}/tms/gone": 404',
    ]


def test_landing_page_errors_exit_1(capsys):
    with FakeUpstream() as upstream:
        url = upstream.url
        upstream.handler = json_api_handler(url, landing_links=False)
        assert run(capsys, "--url", url + "/api") == (
            1,
            "",
            "ERROR: Cannot find a link to tile matrix set definitions\n",
        )
        upstream.handler = status_handler(500)
        assert run(capsys, "--url", url + "/api") == (
            1,
            "",
            f'ERROR: HTTP Error "{url}/api": 500\n',
        )
        upstream.handler = lambda request: Response("<html>", content_type="text/html")
        code, out, err = run(capsys, "--url", url + "/api")
    assert (code, out) == (1, "")
    assert err.startswith(f"ERROR: invalid JSON from {url}/api: Expecting value")


def test_missing_url_prints_usage_and_exits_2(capsys):
    code, out, _ = run(capsys)
    assert code == 2
    assert "--url=URL" in out
