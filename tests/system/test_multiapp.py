"""MultiMapProxy: index page, routing to instances, lazy creation, reloading, path safety, LRU."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from werkzeug.test import Client, EnvironBuilder
from werkzeug.wrappers import Request

import mapproxy.multiapp
import mapproxy.wsgiapp
from mapproxy import __version__
from mapproxy.multiapp import MultiMapProxy, app_factory, is_valid_instance_name, make_wsgi_app

VARY = "X-Script-Name, X-Forwarded-Host, X-Forwarded-Proto"

INSTANCE = """\
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

WITH_BASE = """\
base: [{base}]
services:
  wms:
    md:
      title: {title}
sources:
  dbg:
    type: debug
"""

BASE_LAYERS = """\
layers:
  - name: {layer}
    title: Layer from the base file
    sources: [dbg]
"""

BROKEN_YAML = "services: [\n"
CAPS = {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.1.1"}
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


def write(path: Path, text: str) -> None:
    """Write ``path`` with an mtime clearly newer than before (1 s granularity can't hide it)."""
    previous = path.stat().st_mtime if path.exists() else time.time() - 100
    path.write_text(text)
    os.utime(path, (previous + 10, previous + 10))


def bump_mtime(path: Path) -> None:
    """Move the mtime of ``path`` forward without changing its content."""
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 10))


@pytest.fixture
def projects(tmp_path: Path) -> Path:
    directory = tmp_path / "projects"
    directory.mkdir()
    write(directory / "one.yaml", INSTANCE.format(title="Project one"))
    write(directory / "two.yaml", INSTANCE.format(title="Project two"))
    return directory


@pytest.fixture
def multi(projects: Path) -> MultiMapProxy:
    app = make_wsgi_app(str(projects))
    assert isinstance(app, MultiMapProxy)
    return app


@pytest.fixture
def client(multi: MultiMapProxy) -> Client:
    return Client(multi)


@pytest.fixture
def init_log(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The ``initializing project app`` messages logged so far."""
    caplog.set_level(logging.INFO, logger="mapproxy.multiapp")

    def messages() -> list[str]:
        return [
            record.getMessage()
            for record in caplog.records
            if record.name == "mapproxy.multiapp"
            and record.getMessage().startswith("initializing project app")
        ]

    return messages


def capabilities(client: Client, path: str = "/one/service", **kw: Any) -> etree._Element:
    response = client.get(path, query_string=CAPS, **kw)
    assert response.status_code == 200, response.text[:500]
    return etree.fromstring(response.data)


def title(client: Client, name: str) -> str:
    return str(capabilities(client, f"/{name}/service").findtext("Service/Title"))


def online_resources(root: etree._Element) -> set[str]:
    """All OnlineResource URLs of a WMS 1.1.1 capabilities document, without trailing ``?``."""
    return {str(element.get(XLINK_HREF)).rstrip("?") for element in root.iter("OnlineResource")}


def call_raw(app: Any, path_info: str, script_name: str = "") -> tuple[str, bytes]:
    """Call the app with an exact (already decoded, WSGI latin-1) PATH_INFO."""
    environ = EnvironBuilder(path="/").get_environ()
    environ["PATH_INFO"] = path_info
    environ["SCRIPT_NAME"] = script_name
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)

    body = b"".join(app(environ, start_response))
    return statuses[0], body


# --- index page -----------------------------------------------------------------------------


def test_index_lists_yaml_files_sorted_with_exact_html(projects: Path) -> None:
    write(projects / "Alpha.yaml", INSTANCE.format(title="A"))
    write(projects / "Upper.YAML", INSTANCE.format(title="U"))  # listed, like MapProxy
    write(projects / ".hidden.yaml", INSTANCE.format(title="H"))  # never served: not listed
    write(projects / "notes.txt", "no project")
    (projects / "directory.yaml").mkdir()
    response = Client(make_wsgi_app(str(projects))).get("/")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html"
    assert response.headers["Vary"] == VARY
    assert "Access-Control-Allow-Origin" not in response.headers
    items = "\n".join(
        f'<li><a href="http://localhost/{name}/">{name}</a></li>'
        for name in ["Alpha", "Upper", "one", "two"]
    )
    assert response.text == (
        f"<html><body><h1>Welcome to MapProxy {__version__}</h1>"
        f"<h2>available instances:</h2><ul>{items}</ul></body></html>"
    )


def test_index_without_listing_shows_only_the_welcome(projects: Path) -> None:
    response = Client(make_wsgi_app(str(projects), allow_listing=False)).get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html"
    assert response.text == f"<html><body><h1>Welcome to MapProxy {__version__}</h1></body></html>"


def test_index_of_empty_directory(tmp_path: Path) -> None:
    response = Client(make_wsgi_app(str(tmp_path))).get("/")
    assert response.text.endswith("<h2>available instances:</h2><ul></ul></body></html>")


def test_index_links_include_script_name_and_proxy_prefix(multi: MultiMapProxy) -> None:
    status, body = call_raw(multi, "/", script_name="/mount")
    assert status.startswith("200")
    assert b'<li><a href="http://localhost/mount/one/">one</a></li>' in body

    response = Client(multi).get(
        "/", headers={"X-Script-Name": "/prefix", "X-Forwarded-Host": "maps.example.org"}
    )
    assert '<a href="http://maps.example.org/prefix/two/">two</a>' in response.text


def test_index_escapes_unusual_names(projects: Path) -> None:
    write(projects / "a&b <c>.yaml", INSTANCE.format(title="odd"))
    response = Client(make_wsgi_app(str(projects))).get("/")
    assert '<a href="http://localhost/a%26b%20%3Cc%3E/">a&amp;b &lt;c&gt;</a>' in response.text


# --- routing ------------------------------------------------------------------------------------


def test_unknown_instance_is_404_plain_text(client: Client) -> None:
    response = client.get("/three/service", query_string=CAPS)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == "not found"
    assert "Access-Control-Allow-Origin" not in response.headers


def test_each_instance_serves_its_own_configuration(client: Client) -> None:
    assert title(client, "one") == "Project one"
    assert title(client, "two") == "Project two"
    root_page = client.get("/one/")
    assert root_page.status_code == 200
    assert "Welcome to MapProxy" in root_page.text
    assert client.get("/one").status_code == 200  # PATH_INFO "" inside the instance


def test_capabilities_urls_contain_the_instance_name(client: Client, multi: MultiMapProxy) -> None:
    assert online_resources(capabilities(client)) == {"http://localhost/one/service"}
    proxied = capabilities(client, headers={"X-Script-Name": "/prefix"})
    assert online_resources(proxied) == {"http://localhost/prefix/one/service"}
    # the prefix may also still be part of the path
    proxied = capabilities(client, "/prefix/one/service", headers={"X-Script-Name": "/prefix"})
    assert online_resources(proxied) == {"http://localhost/prefix/one/service"}

    environ = EnvironBuilder(path="/one/service", query_string=CAPS).get_environ()
    environ["SCRIPT_NAME"] = "/mount/"
    response = Client(multi).open(environ)
    assert online_resources(etree.fromstring(response.data)) == {
        "http://localhost/mount/one/service"
    }


def test_instance_sees_its_name_and_shifted_paths(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    def record(request: Request) -> Request:
        seen.append(dict(request.environ))
        return request

    monkeypatch.setattr(mapproxy.wsgiapp, "_request_interceptors", [])
    mapproxy.wsgiapp.register_request_interceptor(record)
    client.get("/two/service", query_string=CAPS, headers={"X-Script-Name": "/prefix"})
    client.get("/one/tms/1.0.0/")

    assert [env["mapproxy.instance_name"] for env in seen] == ["two", "one"]
    assert [env["SCRIPT_NAME"] for env in seen] == ["/prefix/two", "/one"]
    assert [env["PATH_INFO"] for env in seen] == ["/service", "/tms/1.0.0/"]
    assert "HTTP_X_SCRIPT_NAME" not in seen[0]  # applied once, by the multiapp


def test_non_ascii_instance_name(projects: Path) -> None:
    write(projects / "städte.yaml", INSTANCE.format(title="Städte"))
    client = Client(make_wsgi_app(str(projects)))
    assert title(client, "st%C3%A4dte") == "Städte"
    assert '<a href="http://localhost/st%C3%A4dte/">städte</a>' in client.get("/").text
    assert client.get("/st%E4dte/").status_code == 404  # not UTF-8


# --- path safety --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/../outside/",
        "/%2e%2e/outside/",
        "/./one/",
        "/.hidden/",
        "/a%00b/",
        "/a%01b/",
        "/..%2foutside/",
    ],
)
def test_names_that_could_escape_the_directory_are_404(
    projects: Path, path: str, init_log: Callable[[], list[str]]
) -> None:
    write(projects.parent / "outside.yaml", INSTANCE.format(title="Outside"))
    write(projects / ".hidden.yaml", INSTANCE.format(title="Hidden"))
    write(projects / "a\x01b.yaml", INSTANCE.format(title="Control"))
    write(projects / "a.yaml", INSTANCE.format(title="A"))
    response = Client(make_wsgi_app(str(projects))).get(path)
    assert response.status_code == 404
    assert response.text == "not found"
    assert init_log() == []


@pytest.mark.parametrize("path_info", ["/../outside/", "/..", "/.hidden/", "/a\x00b/", "/a\\b/"])
def test_raw_path_info_cannot_escape_the_directory(
    projects: Path, path_info: str, init_log: Callable[[], list[str]]
) -> None:
    write(projects.parent / "outside.yaml", INSTANCE.format(title="Outside"))
    write(projects / ".hidden.yaml", INSTANCE.format(title="Hidden"))
    status, body = call_raw(make_wsgi_app(str(projects)), path_info)
    assert (status[:3], body) == ("404", b"not found")
    assert init_log() == []


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("one", True),
        ("städte", True),
        ("a.b", True),
        ("a b", True),
        ("", False),
        (".", False),
        ("..", False),
        (".hidden", False),
        ("a..b", False),
        ("a/b", False),
        ("a\\b", False),
        ("a\x00b", False),
        ("a\nb", False),
    ],
)
def test_is_valid_instance_name(name: str, valid: bool) -> None:
    assert is_valid_instance_name(name) is valid


# --- lazy creation, reloading -------------------------------------------------------------------


def test_instances_are_built_lazily_once(
    projects: Path, client: Client, multi: MultiMapProxy, init_log: Callable[[], list[str]]
) -> None:
    write(projects / "broken.yaml", BROKEN_YAML)
    assert client.get("/").status_code == 200
    assert init_log() == []
    assert list(multi.apps) == []

    for _ in range(3):
        assert title(client, "one") == "Project one"
    assert init_log() == [f"initializing project app one with {projects / 'one.yaml'}"]
    assert list(multi.apps) == ["one"]
    built = multi.apps["one"].app
    title(client, "one")
    assert multi.apps["one"].app is built


def test_concurrent_first_requests_build_the_instance_once(
    client: Client, multi: MultiMapProxy, init_log: Callable[[], list[str]]
) -> None:
    def request(_: int) -> int:
        return Client(multi).get("/one/service", query_string=CAPS).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(request, range(16))) == [200] * 16
    assert len(init_log()) == 1


def test_built_instances_keep_serving_while_another_one_is_built(
    client: Client, multi: MultiMapProxy
) -> None:
    assert title(client, "one") == "Project one"
    statuses: list[int] = []
    with multi._build_lock:  # as if a slow build of some instance were running
        thread = threading.Thread(
            target=lambda: statuses.append(Client(multi).get("/one/").status_code)
        )
        thread.start()
        thread.join(timeout=10)
        alive = thread.is_alive()
    thread.join(timeout=10)
    assert not alive
    assert statuses == [200]


def test_changed_config_file_is_rebuilt_on_next_request(
    projects: Path, client: Client, init_log: Callable[[], list[str]]
) -> None:
    assert title(client, "one") == "Project one"
    write(projects / "one.yaml", INSTANCE.format(title="Changed"))
    assert title(client, "one") == "Changed"
    assert title(client, "two") == "Project two"
    assert len(init_log()) == 3

    bump_mtime(projects / "one.yaml")  # a touch alone rebuilds as well
    assert title(client, "one") == "Changed"
    assert len(init_log()) == 4


def test_changed_base_file_is_rebuilt(projects: Path, client: Client, multi: MultiMapProxy) -> None:
    base = projects.parent / "shared.yaml"
    write(base, BASE_LAYERS.format(layer="first"))
    write(projects / "three.yaml", WITH_BASE.format(base="../shared.yaml", title="Three"))
    layers = capabilities(client, "/three/service").xpath("//Layer/Name/text()")
    assert layers == ["first"]
    assert set(multi.apps["three"].watched_files) == {str(projects / "three.yaml"), str(base)}

    write(base, BASE_LAYERS.format(layer="second"))
    assert capabilities(client, "/three/service").xpath("//Layer/Name/text()") == ["second"]


def test_new_file_is_served_without_restart(projects: Path, client: Client) -> None:
    assert client.get("/three/").status_code == 404
    write(projects / "three.yaml", INSTANCE.format(title="Three"))
    assert title(client, "three") == "Three"
    assert '<a href="http://localhost/three/">three</a>' in client.get("/").text


def test_removed_file_is_404_and_dropped(
    projects: Path, client: Client, multi: MultiMapProxy
) -> None:
    assert title(client, "two") == "Project two"
    (projects / "two.yaml").unlink()
    response = client.get("/two/service", query_string=CAPS)
    assert response.status_code == 404
    assert response.text == "not found"
    assert "two" not in multi.apps
    assert ">two<" not in client.get("/").text


def test_removed_base_file_makes_the_instance_fail(projects: Path, client: Client) -> None:
    base = projects / "base.inc"
    write(base, BASE_LAYERS.format(layer="first"))
    write(projects / "three.yaml", WITH_BASE.format(base="base.inc", title="Three"))
    assert title(client, "three") == "Three"
    base.unlink()
    assert client.get("/three/").status_code == 500


# --- broken configurations ----------------------------------------------------------------------


def test_broken_instance_answers_500_and_others_keep_working(
    projects: Path, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    write(projects / "broken.yaml", BROKEN_YAML)
    caplog.set_level(logging.INFO)
    response = client.get("/broken/service", query_string=CAPS)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == (
        "MapProxy instance 'broken' has a configuration error; the server log has the details.\n"
    )
    assert str(projects) not in response.text  # no paths for the public
    errors = [
        r for r in caplog.records if r.name == "mapproxy.config" and r.levelname == "CRITICAL"
    ]
    assert len(errors) == 1
    assert "broken" in errors[0].getMessage()
    assert "invalid YAML" in errors[0].getMessage()
    assert title(client, "one") == "Project one"


def test_failed_build_is_not_retried_until_the_file_changes(
    projects: Path, client: Client, init_log: Callable[[], list[str]]
) -> None:
    write(projects / "broken.yaml", BROKEN_YAML)
    for _ in range(3):
        assert client.get("/broken/").status_code == 500
    assert len(init_log()) == 1

    write(projects / "broken.yaml", INSTANCE.format(title="Fixed"))
    assert title(client, "broken") == "Fixed"
    assert len(init_log()) == 2


def test_broken_edit_of_a_running_instance_answers_500_until_fixed(
    projects: Path, client: Client
) -> None:
    assert title(client, "one") == "Project one"
    write(projects / "one.yaml", INSTANCE.format(title="Broken").replace("debug", "nonsense"))
    response = client.get("/one/service", query_string=CAPS)
    assert response.status_code == 500
    assert "'one' has a configuration error" in response.text
    assert title(client, "two") == "Project two"

    write(projects / "one.yaml", INSTANCE.format(title="Fixed"))
    assert title(client, "one") == "Fixed"


def test_fix_in_a_base_file_is_picked_up_by_the_retry(
    projects: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = projects / "base.inc"
    write(base, "layers: [\n")
    write(projects / "three.yaml", WITH_BASE.format(base="base.inc", title="Three"))
    assert client.get("/three/").status_code == 500

    write(base, BASE_LAYERS.format(layer="first"))
    # the base file was never read successfully, so only the periodic retry notices it
    assert client.get("/three/").status_code == 500
    monkeypatch.setattr(mapproxy.multiapp, "FAILED_RETRY_SECONDS", 0.0)
    assert title(client, "three") == "Three"


def test_config_errors_are_shown_when_asked(projects: Path) -> None:
    write(projects / "broken.yaml", BROKEN_YAML)
    client = Client(make_wsgi_app(str(projects), show_config_errors=True))
    response = client.get("/broken/")
    assert response.status_code == 500
    assert response.text.startswith("MapProxy instance 'broken' has a configuration error:\n\n")
    assert "invalid YAML (line 2" in response.text


def test_debug_wraps_the_app_in_the_debugger_and_shows_config_errors(projects: Path) -> None:
    from werkzeug.debug import DebuggedApplication

    write(projects / "broken.yaml", BROKEN_YAML)
    app = make_wsgi_app(str(projects), debug=True)
    assert isinstance(app, DebuggedApplication)
    assert "invalid YAML" in Client(app).get("/broken/").text


# --- LRU ------------------------------------------------------------------------------------------


def test_cached_instances_are_bounded_lru(
    projects: Path, monkeypatch: pytest.MonkeyPatch, init_log: Callable[[], list[str]]
) -> None:
    assert mapproxy.multiapp.MAX_CACHED_APPS == 100
    monkeypatch.setattr(mapproxy.multiapp, "MAX_CACHED_APPS", 2)
    write(projects / "three.yaml", INSTANCE.format(title="Project three"))
    multi = make_wsgi_app(str(projects))
    client = Client(multi)

    title(client, "one")
    title(client, "two")
    title(client, "one")  # now "two" is the least recently used
    title(client, "three")
    assert list(multi.apps) == ["one", "three"]
    assert len(init_log()) == 3

    assert title(client, "two") == "Project two"  # evicted: built again
    assert list(multi.apps) == ["three", "two"]
    assert len(init_log()) == 4


# --- PasteDeploy factory ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "listing"),
    [
        ("1", True),
        ("true", True),
        ("True", True),
        ("yes", True),
        ("on", True),
        (True, True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
        ("", False),
        ("maybe", False),
        (False, False),
    ],
)
def test_app_factory_parses_allow_listing(projects: Path, value: Any, listing: bool) -> None:
    app = app_factory({"here": str(projects)}, str(projects), allow_listing=value, other="x")
    assert ("available instances" in Client(app).get("/").text) is listing


def test_app_factory_defaults_to_no_listing(projects: Path) -> None:
    app = app_factory({}, str(projects))
    assert isinstance(app, MultiMapProxy)
    assert "available instances" not in Client(app).get("/").text
    assert title(Client(app), "one") == "Project one"


def test_make_wsgi_app_makes_the_directory_absolute(
    projects: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(projects.parent)
    app = make_wsgi_app("projects")
    assert app.config_dir == str(projects)
    monkeypatch.chdir(projects)
    assert title(Client(app), "one") == "Project one"


def test_authorize_callback_sees_the_instance_and_can_refuse_per_instance(tmp_path: Path) -> None:
    (tmp_path / "open.yaml").write_text(INSTANCE.format(title="Open"))
    (tmp_path / "closed.yaml").write_text(INSTANCE.format(title="Closed"))
    calls: list[tuple[str, str, list[str]]] = []

    def authorize(service: str, layers: list[str], environ: dict[str, Any], **kw: Any) -> dict:
        instance = environ["mapproxy.instance_name"]
        calls.append((instance, service, list(layers)))
        return {"authorized": "none" if instance == "closed" else "full"}

    multiapp = make_wsgi_app(str(tmp_path), allow_listing=True)

    def with_auth(environ: dict[str, Any], start_response: Any) -> Any:
        environ["mapproxy.authorize"] = authorize
        return multiapp(environ, start_response)

    client = Client(with_auth)
    getmap = {
        "SERVICE": "WMS",
        "REQUEST": "GetMap",
        "VERSION": "1.1.1",
        "LAYERS": "dbg",
        "STYLES": "",
        "SRS": "EPSG:4326",
        "BBOX": "0,0,10,10",
        "WIDTH": "64",
        "HEIGHT": "64",
        "FORMAT": "image/png",
    }
    response = client.get("/open/service", query_string=getmap)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    response = client.get("/closed/service", query_string=getmap)
    assert response.status_code == 403
    assert b"ServiceException" in response.data
    assert calls == [("open", "wms.map", ["dbg"]), ("closed", "wms.map", ["dbg"])]
