"""mapproxy-util wms-capabilities against a FakeUpstream serving our own capabilities."""

from __future__ import annotations

from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, status_handler
from mapproxy.script import util

CONFIG = """\
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857']
layers:
  - name: root
    title: Root Layer
    layers:
      - name: osm
        title: OSM
        sources: [osm_wms]
sources:
  osm_wms:
    type: wms
    req:
      url: http://127.0.0.1:1/service
      layers: osm
    coverage:
      bbox: [5, 50, 10, 55]
      srs: 'EPSG:4326'
"""

NESTED_111 = b"""<?xml version="1.0"?>
<WMT_MS_Capabilities version="1.1.1"><Capability>
<Request><GetMap><Format>image/png</Format><DCPType><HTTP><Get>
<OnlineResource xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="http://wms/service?"/>
</Get></HTTP></DCPType></GetMap></Request>
<Layer><Title>Root</Title><SRS>EPSG:4326</SRS>
<LatLonBoundingBox minx="-180" miny="-90" maxx="180" maxy="90" />
<Layer queryable="1" opaque="1"><Name>group</Name><Title>Group &amp; Co</Title>
<Abstract>Some abstract</Abstract>
<Layer><Name>leaf1</Name><Title>Leaf 1</Title><ScaleHint min="0.5" max="100" />
<BoundingBox SRS="EPSG:25832" minx="1" miny="2" maxx="3" maxy="4"/>
<Style><Name>default</Name><Title>d</Title><LegendURL width="20" height="20">
<OnlineResource xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="http://x/legend.png"/>
</LegendURL></Style></Layer></Layer></Layer></Capability></WMT_MS_Capabilities>
"""


def capabilities_handler(tmp_path: Path):  # type: ignore[no-untyped-def]
    from werkzeug.test import Client

    from mapproxy.wsgiapp import make_wsgi_app

    config = tmp_path / "mapproxy.yaml"
    config.write_text(CONFIG)
    client = Client(make_wsgi_app(str(config)))

    def handle(request: Request) -> Response:
        answer = client.get("/service", query_string=request.query_string.decode())
        return Response(answer.data, status=answer.status_code, content_type="text/xml")

    return handle


def test_summary_of_our_own_wms_111(tmp_path, capsys):
    with FakeUpstream() as upstream:
        upstream.handler = capabilities_handler(tmp_path)
        code = util.main(["wms-capabilities", upstream.url + "/service?map=foo"])
    assert code == 0
    assert upstream.requests[0][0] == "/service"
    assert upstream.requests[0][1] == {
        "map": "foo",
        "service": "WMS",
        "version": "1.1.1",
        "request": "GetCapabilities",
    }
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "# Note: This is not a valid MapProxy configuration!",
        "Capabilities Document Version 1.1.1",
        "Root-Layer:",
        "  - name: osm",
    ]
    assert "    llbbox: [5.0, 50.0, 10.0, 55.0]" in lines
    assert sorted(eval(lines[6].split(": ", 1)[1])) == ["EPSG:3857", "EPSG:4326"]
    assert "    queryable: False" in lines


def test_version_130_swaps_ne_axis_bbox_to_tuple(tmp_path, capsys):
    with FakeUpstream() as upstream:
        upstream.handler = capabilities_handler(tmp_path)
        assert util.main(["wms-capabilities", "--version", "1.3.0", upstream.url + "/service"]) == 0
    assert upstream.requests[0][1]["version"] == "1.3.0"
    out = capsys.readouterr().out
    assert "Capabilities Document Version 1.3.0" in out
    assert "'EPSG:4326': (5.0, 50.0, 10.0, 55.0)" in out


def test_nested_layers_scale_hints_and_legend(capsys):
    with FakeUpstream() as upstream:
        upstream.handler = lambda request: Response(NESTED_111, content_type="text/xml")
        assert util.main(["wms-capabilities", "--host", upstream.url + "/wms"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3:17] == [
        "  - name: group",
        "    title: Group & Co",
        "    url: http://wms/service?",
        "    srs: ['EPSG:4326']",
        "    llbbox: [-180.0, -90.0, 180.0, 90.0]",
        "    queryable: True",
        "    opaque: True",
        "    abstract: Some abstract",
        "    res_hint: ",
        "    bbox_srs: {}",
        "    legend: ",
        "    layers: ",
        "      - name: leaf1",
        "        title: Leaf 1",
    ]
    assert "        res_hint: (70.71067811865476, 0.3535533905932738)" in lines
    assert "        bbox_srs: {'EPSG:25832': [1.0, 2.0, 3.0, 4.0]}" in lines
    assert "        legend: {'url': 'http://x/legend.png'}" in lines


def test_not_a_capabilities_document_exit_1(capsys):
    with FakeUpstream() as upstream:
        upstream.handler = lambda request: Response(b"<html>nope</html>", content_type="text/html")
        assert util.main(["wms-capabilities", upstream.url + "/x"]) == 1
    err = capsys.readouterr().err
    assert "Received document:" in err
    assert "b'<html>nope</html>'" in err
    assert "Not a capabilities document: Unknown start tag in capabilities: html" in err


def test_http_error_exit_1(capsys):
    with FakeUpstream() as upstream:
        upstream.handler = status_handler(404)
        url = upstream.url
        assert util.main(["wms-capabilities", url + "/missing"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f'ERROR: HTTP Error "{url}/missing?service=WMS&version=1.1.1&request=GetCapabilities": 404'
    )


def test_no_response_exit_1(capsys):
    assert util.main(["wms-capabilities", "http://127.0.0.1:1/x"]) == 1
    assert capsys.readouterr().err.strip() == (
        'ERROR: No response from URL "http://127.0.0.1:1/x?service=WMS&version=1.1.1'
        '&request=GetCapabilities": Connection refused'
    )


@pytest.mark.parametrize("args", [[], ["--version", "1.3.0"]])
def test_missing_url_prints_help_exit_2(capsys, args):
    assert util.main(["wms-capabilities", *args]) == 2
    assert "Usage: mapproxy-util wms-capabilities [options] URL" in capsys.readouterr().out
