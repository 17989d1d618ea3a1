"""The WSGI application: dispatch, root page, errors, CORS/Vary headers, make_wsgi_app."""

from __future__ import annotations

import io
import logging
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree
from werkzeug.test import Client

from mapproxy import __version__
from mapproxy.errors import ConfigurationError
from mapproxy.wsgiapp import make_wsgi_app

VARY = "X-Script-Name, X-Forwarded-Host, X-Forwarded-Proto"

ALL_SERVICES = """
services:
  demo:
  wms:
    md: {title: All services}
  wmts:
  tms:
layers:
  - name: dbg
    title: Debug
    sources: [dbg_cache]
caches:
  dbg_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    disable_storage: true
sources:
  dbg: {type: debug}
"""

ONLY_WMS = """
services:
  wms:
    md: {title: Only WMS}
layers:
  - name: dbg
    title: Debug
    sources: [dbg]
sources:
  dbg: {type: debug}
"""

WMS_CAPS = {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.1.1"}


@pytest.fixture
def app(make_app: Callable[..., Client]) -> Client:
    return make_app(ALL_SERVICES)


def with_globals(config: str, globals_yaml: str) -> str:
    return config + textwrap.dedent(globals_yaml)


# --- root page and dispatch --------------------------------------------------------


def test_root_page_welcomes_and_links_the_demo(app: Client) -> None:
    response = app.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.text == (
        f"<html><body><h1>Welcome to MapProxy {__version__}</h1>"
        '<p>See all configured layers and services at: <a href="http://localhost/demo/">demo</a>'
    )


def test_root_page_without_demo_has_no_demo_link(make_app: Callable[..., Client]) -> None:
    response = make_app(ONLY_WMS).get("/")
    assert response.status_code == 200
    assert response.text == f"<html><body><h1>Welcome to MapProxy {__version__}</h1>"
    assert "demo" not in response.text


def test_empty_path_is_the_root_page(app: Client) -> None:
    response = app.get("")
    assert response.status_code == 200
    assert "Welcome to MapProxy" in response.text


@pytest.mark.parametrize("path", ["/unknown", "/services", "/favicon.ico", "/wmts2/x", "/Demo/"])
def test_unknown_first_segment_is_not_found(app: Client, path: str) -> None:
    response = app.get(path)
    assert response.status_code == 404
    assert response.mimetype == "text/plain"
    assert response.text == "not found"


@pytest.mark.parametrize(
    ("path", "query", "content_type"),
    [
        ("/service", WMS_CAPS, "application/vnd.ogc.wms_xml"),
        ("/ows", WMS_CAPS, "application/vnd.ogc.wms_xml"),
        ("/wms", WMS_CAPS, "application/vnd.ogc.wms_xml"),
        ("/service", {"SERVICE": "WMTS", "REQUEST": "GetCapabilities"}, "application/xml"),
        ("/wmts/1.0.0/WMTSCapabilities.xml", {}, "application/xml"),
        ("/tms/1.0.0/", {}, "text/xml"),
        ("/tiles/dbg/EPSG3857/0/0/0.png", {}, "image/png"),
        ("/demo/", {}, "text/html"),
    ],
)
def test_enabled_services_answer_on_their_urls(
    app: Client, path: str, query: dict[str, str], content_type: str
) -> None:
    response = app.get(path, query_string=query)
    assert response.status_code == 200
    assert response.mimetype == content_type


@pytest.mark.parametrize(
    "path",
    [
        "/tms/1.0.0/",
        "/tiles/dbg/EPSG3857/0/0/0.png",
        "/wmts/1.0.0/WMTSCapabilities.xml",
        "/wmts/dbg/GLOBAL_WEBMERCATOR/0/0/0.png",
        "/demo/",
    ],
)
def test_disabled_services_are_not_found(make_app: Callable[..., Client], path: str) -> None:
    response = make_app(ONLY_WMS).get(path)
    assert response.status_code == 404
    assert response.text == "not found"


def test_service_and_ows_exist_without_wms(make_app: Callable[..., Client]) -> None:
    client = make_app(ALL_SERVICES.replace("  wms:\n    md: {title: All services}\n", ""))
    assert client.get("/wms", query_string=WMS_CAPS).status_code == 404
    for path in ("/service", "/ows"):
        response = client.get(path, query_string=WMS_CAPS)
        assert response.status_code == 400
        root = etree.fromstring(response.data)
        exception = root.find("{http://www.opengis.net/ows/1.1}Exception")
        assert exception is not None
        assert exception.get("exceptionCode") == "InvalidParameterValue"
        assert exception.get("locator") == "service"
        wmts = client.get(path, query_string={"SERVICE": "WMTS", "REQUEST": "GetCapabilities"})
        assert wmts.status_code == 200


def test_wms_only_serves_wms_on_all_ows_urls(make_app: Callable[..., Client]) -> None:
    client = make_app(ONLY_WMS)
    for path in ("/service", "/ows", "/wms"):
        response = client.get(path, query_string=WMS_CAPS)
        assert response.status_code == 200
        root = etree.fromstring(response.data)
        assert root.findtext("Service/Title") == "Only WMS"


# --- internal errors ---------------------------------------------------------------


def raise_boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom from a handler")


def test_exception_in_a_service_gives_internal_error_and_is_logged(
    app: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(app.app.handlers["tms"], "handle", raise_boom)  # type: ignore[attr-defined]
    errors = io.StringIO()
    with caplog.at_level(logging.ERROR, logger="mapproxy.wsgiapp"):
        response = app.get("/tms/1.0.0/", query_string="a=1", errors_stream=errors)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == "internal error"
    assert response.headers["Access-control-allow-origin"] == "*"
    records = [r for r in caplog.records if r.name == "mapproxy.wsgiapp"]
    assert len(records) == 1
    assert records[0].getMessage() == "fatal error in tms for /tms/1.0.0/?a=1"
    assert records[0].exc_info is not None
    assert "RuntimeError: boom from a handler" in caplog.text
    assert "RuntimeError: boom from a handler" in errors.getvalue()


def test_other_services_keep_working_after_an_internal_error(
    app: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.app.handlers["wmts"], "handle", raise_boom)  # type: ignore[attr-defined]
    assert app.get("/wmts/1.0.0/WMTSCapabilities.xml").status_code == 500
    assert app.get("/tms/1.0.0/").status_code == 200
    assert app.get("/wms", query_string=WMS_CAPS).status_code == 200


def test_debug_mode_does_not_hide_exceptions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mapproxy.yaml"
    config.write_text(textwrap.dedent(ALL_SERVICES))
    wrapped = make_wsgi_app(str(config), debug=True)
    assert wrapped.config_files == {str(config): os.path.getmtime(config)}
    inner = wrapped.app
    assert inner.debug is True
    monkeypatch.setattr(inner.handlers["tms"], "handle", raise_boom)
    with pytest.raises(RuntimeError, match="boom from a handler"):
        Client(inner).get("/tms/1.0.0/")
    # werkzeug's debugger turns the propagated exception into its traceback page
    response = Client(wrapped).get("/tms/1.0.0/")
    assert response.status_code == 500
    assert "boom from a handler" in response.text
    assert response.text != "internal error"


# --- CORS and Vary ----------------------------------------------------------------


def error_responses(client: Client) -> dict[str, object]:
    return {
        "not found": client.get("/nothing"),
        "wms exception": client.get(
            "/service", query_string={"SERVICE": "WMS", "REQUEST": "GetMap", "VERSION": "1.1.1"}
        ),
        "ows missing service": client.get("/service"),
        "tms unknown layer": client.get("/tms/1.0.0/nope/EPSG3857/0/0/0.png"),
        "wmts unknown layer": client.get("/wmts/nope/GLOBAL_WEBMERCATOR/0/0/0.png"),
    }


def test_cors_header_on_every_response_by_default(app: Client) -> None:
    responses = {
        "root": app.get("/"),
        "capabilities": app.get("/service", query_string=WMS_CAPS),
        "tile": app.get("/wmts/dbg/GLOBAL_WEBMERCATOR/1/0/0.png"),
        "demo": app.get("/demo/"),
        "static": app.get("/demo/static/demo.css"),
        **error_responses(app),
    }
    for name, response in responses.items():
        assert response.headers.get("Access-control-allow-origin") == "*", name  # type: ignore[attr-defined]
    assert responses["tile"].status_code == 200  # type: ignore[attr-defined]
    assert responses["not found"].status_code == 404  # type: ignore[attr-defined]
    assert responses["wms exception"].status_code == 500  # type: ignore[attr-defined]


def test_empty_access_control_allow_origin_disables_cors(
    make_app: Callable[..., Client],
) -> None:
    client = make_app(
        with_globals(ALL_SERVICES, "globals:\n  http:\n    access_control_allow_origin: ''\n")
    )
    responses = {
        "root": client.get("/"),
        "capabilities": client.get("/service", query_string=WMS_CAPS),
        "tile": client.get("/wmts/dbg/GLOBAL_WEBMERCATOR/1/0/0.png"),
        **error_responses(client),
    }
    for name, response in responses.items():
        assert "Access-control-allow-origin" not in response.headers, name  # type: ignore[attr-defined]


def test_custom_access_control_allow_origin(make_app: Callable[..., Client]) -> None:
    origin = "https://maps.example.org"
    client = make_app(
        with_globals(
            ALL_SERVICES, f"globals:\n  http:\n    access_control_allow_origin: '{origin}'\n"
        )
    )
    responses = {
        "root": client.get("/"),
        "tile": client.get("/tms/1.0.0/dbg/EPSG3857/0/0/0.png"),
        **error_responses(client),
    }
    for name, response in responses.items():
        assert response.headers.get("Access-control-allow-origin") == origin, name  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/service", WMS_CAPS),
        ("/service", {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.3.0"}),
        ("/wmts/1.0.0/WMTSCapabilities.xml", {}),
        ("/tms/1.0.0/", {}),
        ("/tms/1.0.0/nope/EPSG3857/0/0/0.png", {}),
        ("/service", {}),
        ("/nothing", {}),
        ("/", {}),
        ("/demo/", {}),
    ],
)
def test_text_and_xml_responses_vary_on_proxy_headers(
    app: Client, path: str, query: dict[str, str]
) -> None:
    response = app.get(path, query_string=query)
    assert response.mimetype.startswith(("text/", "application/"))
    assert response.headers["Vary"] == VARY


def test_images_do_not_vary(app: Client) -> None:
    response = app.get("/wmts/dbg/GLOBAL_WEBMERCATOR/1/0/0.png")
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert "Vary" not in response.headers


# --- make_wsgi_app ----------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_broken_config_raises_configuration_error_naming_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write(
        tmp_path / "mapproxy.yaml",
        ALL_SERVICES.replace("grids: [GLOBAL_WEBMERCATOR]", "grids: [webmercatr]"),
    )
    with (
        caplog.at_level(logging.CRITICAL, logger="mapproxy.config"),
        pytest.raises(ConfigurationError) as raised,
    ):
        make_wsgi_app(str(config))
    assert "caches.dbg_cache.grids[0]" in str(raised.value)
    assert "webmercatr" in str(raised.value)
    fatal = [r for r in caplog.records if r.name == "mapproxy.config" and r.levelno >= 50]
    assert fatal and "caches.dbg_cache.grids[0]" in fatal[0].getMessage()


def test_layer_with_unknown_source_names_the_layer(tmp_path: Path) -> None:
    config = write(tmp_path / "mapproxy.yaml", ONLY_WMS.replace("sources: [dbg]", "sources: [x]"))
    with pytest.raises(ConfigurationError, match=r"layers\[0\]"):
        make_wsgi_app(str(config))


def test_unknown_keys_are_warnings_unless_warnings_are_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write(
        tmp_path / "mapproxy.yaml",
        ONLY_WMS.replace(
            "    md: {title: Only WMS}", "    md: {title: Only WMS}\n    bogus_key: 1"
        ),
    )
    with caplog.at_level(logging.WARNING, logger="mapproxy.config"):
        app = make_wsgi_app(str(config))
    assert Client(app).get("/service", query_string=WMS_CAPS).status_code == 200
    assert "bogus_key" in caplog.text
    with pytest.raises(ConfigurationError, match=r"bogus_key.*services\.wms"):
        make_wsgi_app(str(config), ignore_config_warnings=False)


def test_config_files_lists_main_and_nested_base_files(tmp_path: Path) -> None:
    inner = write(tmp_path / "inner.yaml", "globals:\n  image:\n    paletted: false\n")
    (tmp_path / "conf.d").mkdir()
    outer = write(
        tmp_path / "conf.d" / "outer.yaml",
        "base: ../inner.yaml\nsources:\n  dbg: {type: debug}\n",
    )
    main = write(
        tmp_path / "mapproxy.yaml",
        "base: [conf.d/outer.yaml]\n" + ONLY_WMS.split("sources:\n  dbg")[0],
    )
    os.utime(inner, (1_700_000_000, 1_700_000_000.5))
    app = make_wsgi_app(str(main))
    assert app.config_files == {
        str(main): os.path.getmtime(main),
        str(outer): os.path.getmtime(outer),
        str(inner): 1_700_000_000.5,
    }
    assert all(os.path.isabs(path) for path in app.config_files)
    assert Client(app).get("/service", query_string=WMS_CAPS).status_code == 200


def test_make_wsgi_app_defaults_to_mapproxy_yaml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "mapproxy.yaml", ONLY_WMS)
    monkeypatch.chdir(tmp_path)
    app = make_wsgi_app()
    assert list(app.config_files) == [str(tmp_path / "mapproxy.yaml")]


def test_repeated_layers_parameters_are_joined(make_app):  # type: ignore[no-untyped-def]
    client = make_app(
        """
        services:
          wms:
        layers:
          - name: a
            title: A
            sources: [dbg]
          - name: b
            title: B
            sources: [dbg]
        sources:
          dbg:
            type: debug
        """
    )
    response = client.get(
        "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&LAYERS=a&LAYERS=nope&STYLES="
        "&SRS=EPSG:4326&BBOX=0,0,10,10&WIDTH=10&HEIGHT=10&FORMAT=image/png&WIDTH=20"
    )
    assert b"unknown layer: nope" in response.data
    response = client.get(
        "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&LAYERS=a&LAYERS=b&STYLES="
        "&SRS=EPSG:4326&BBOX=0,0,10,10&WIDTH=10&HEIGHT=10&FORMAT=image/png&WIDTH=20"
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(response.data)).size == (10, 10)
