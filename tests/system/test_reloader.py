"""make_wsgi_app(..., reloader=True): config changes are picked up on the next request."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from werkzeug.test import Client

import mapproxy.wsgiapp
from mapproxy.errors import ConfigurationError
from mapproxy.wsgiapp import make_wsgi_app

BASE = """\
globals:
  image:
    paletted: false
layers:
  - name: {layer}
    title: Layer from the base file
    sources: [dbg]
"""

MAIN = """\
base: [base.yaml]
services:
  wms:
    md:
      title: {title}
sources:
  dbg:
    type: debug
"""

CAPS = {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.1.1"}


def rewrite(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a clearly newer mtime.

    The mtime moves 10 s forward, so 1-second mtime granularity cannot hide the change; the
    rename keeps concurrent readers from seeing a half-written file.
    """
    previous = path.stat().st_mtime if path.exists() else time.time()
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    os.utime(temp, (previous + 10, previous + 10))
    os.replace(temp, path)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE.format(layer="first"))
    main = tmp_path / "mapproxy.yaml"
    main.write_text(MAIN.format(title="Title one"))
    return main


def capabilities(client: Client) -> tuple[str, list[str]]:
    """WMS title and named layers of the app's current capabilities."""
    response = client.get("/service", query_string=CAPS)
    assert response.status_code == 200
    root = etree.fromstring(response.data)
    names = [str(name) for name in root.xpath("//Layer/Name/text()")]
    return str(root.findtext("Service/Title")), names


def test_reloader_wrapper_exposes_the_current_app(config: Path) -> None:
    app = make_wsgi_app(str(config), reloader=True)
    assert not hasattr(app, "config_files")
    assert set(app.app.config_files) == {str(config), str(config.parent / "base.yaml")}


def test_change_of_main_config_is_picked_up(config: Path) -> None:
    app = make_wsgi_app(str(config), reloader=True)
    client = Client(app)
    assert capabilities(client) == ("Title one", ["first"])
    first_app = app.app

    rewrite(config, MAIN.format(title="Title two"))
    assert capabilities(client) == ("Title two", ["first"])
    assert app.app is not first_app
    assert app.app.config_files[str(config)] == os.path.getmtime(config)


def test_unchanged_config_is_not_rebuilt(config: Path) -> None:
    app = make_wsgi_app(str(config), reloader=True)
    client = Client(app)
    current = app.app
    for _ in range(3):
        capabilities(client)
    assert app.app is current


def test_change_of_base_include_is_picked_up(config: Path) -> None:
    app = make_wsgi_app(str(config), reloader=True)
    client = Client(app)
    assert capabilities(client) == ("Title one", ["first"])

    rewrite(config.parent / "base.yaml", BASE.format(layer="second"))
    assert capabilities(client) == ("Title one", ["second"])


def test_new_base_include_is_watched_after_reload(config: Path) -> None:
    extra = config.parent / "extra.yaml"
    extra.write_text("services:\n  tms:\n")
    app = make_wsgi_app(str(config), reloader=True)
    client = Client(app)
    assert client.get("/tms/1.0.0/").status_code == 404

    rewrite(
        config, MAIN.format(title="Title one").replace("[base.yaml]", "[base.yaml, extra.yaml]")
    )
    assert client.get("/tms/1.0.0/").status_code == 200
    assert str(extra) in app.app.config_files

    rewrite(extra, "services:\n  tms:\n  wmts:\n")
    assert client.get("/wmts/1.0.0/WMTSCapabilities.xml").status_code == 200


def test_broken_config_keeps_the_old_app_until_fixed(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_wsgi_app(str(config), reloader=True)
    client = Client(app)
    assert capabilities(client) == ("Title one", ["first"])
    old_app = app.app

    broken = MAIN.format(title="Broken").replace("type: debug", "type: debug\n    bogus: [")
    rewrite(config, broken)
    with caplog.at_level(logging.ERROR, logger="mapproxy.config"):
        assert capabilities(client) == ("Title one", ["first"])
    assert app.app is old_app
    errors = [r for r in caplog.records if r.name == "mapproxy.config" and r.levelno >= 40]
    assert len(errors) == 1

    # still broken: the old app keeps answering and the rebuild is tried again
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="mapproxy.config"):
        assert capabilities(client) == ("Title one", ["first"])
    assert [r for r in caplog.records if r.name == "mapproxy.config" and r.levelno >= 40]

    rewrite(config, MAIN.format(title="Fixed"))
    assert capabilities(client) == ("Fixed", ["first"])
    assert app.app is not old_app


def test_invalid_reference_in_new_config_keeps_the_old_app(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_wsgi_app(str(config), reloader=True)
    client = Client(app)
    rewrite(config.parent / "base.yaml", BASE.format(layer="first").replace("[dbg]", "[nope]"))
    with caplog.at_level(logging.ERROR, logger="mapproxy.config"):
        assert capabilities(client) == ("Title one", ["first"])
    assert "nope" in caplog.text

    rewrite(config.parent / "base.yaml", BASE.format(layer="third"))
    assert capabilities(client) == ("Title one", ["third"])


def test_removed_base_file_keeps_the_old_app(config: Path) -> None:
    app = make_wsgi_app(str(config), reloader=True)
    client = Client(app)
    (config.parent / "base.yaml").unlink()
    assert capabilities(client) == ("Title one", ["first"])
    rewrite(config.parent / "base.yaml", BASE.format(layer="back"))
    assert capabilities(client) == ("Title one", ["back"])


def test_reloads_ignore_config_warnings(config: Path) -> None:
    with_warning = MAIN.format(title="Warned").replace("    md:", "    unknown_option: 1\n    md:")
    strict = config.parent / "strict.yaml"
    strict.write_text(with_warning)
    with pytest.raises(ConfigurationError, match="unknown_option"):
        make_wsgi_app(str(strict), ignore_config_warnings=False)

    app = make_wsgi_app(str(config), reloader=True, ignore_config_warnings=False)
    client = Client(app)
    rewrite(config, with_warning)
    assert capabilities(client) == ("Warned", ["first"])


def test_concurrent_requests_during_a_reload_all_succeed(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_wsgi_app(str(config), reloader=True)
    real_build = mapproxy.wsgiapp.build_app
    builds: list[float] = []

    def slow_build(*args: Any, **kwargs: Any) -> Any:
        builds.append(time.monotonic())
        time.sleep(0.3)  # keep the reload in progress while the other threads arrive
        return real_build(*args, **kwargs)

    monkeypatch.setattr(mapproxy.wsgiapp, "build_app", slow_build)
    rewrite(config, MAIN.format(title="Reloaded"))

    start = threading.Barrier(8)

    def request(_: int) -> tuple[str, list[str]]:
        start.wait()
        return capabilities(Client(app))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(request, range(8)))

    assert len(builds) == 1
    assert results == [("Reloaded", ["first"])] * 8


def test_requests_keep_succeeding_while_the_config_changes_repeatedly(config: Path) -> None:
    app = make_wsgi_app(str(config), reloader=True)
    stop = threading.Event()
    failures: list[str] = []
    titles: set[str] = set()

    def hammer() -> None:
        client = Client(app)
        while not stop.is_set():
            response = client.get("/service", query_string=CAPS)
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:200]}")
                continue
            titles.add(str(etree.fromstring(response.data).findtext("Service/Title")))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for number in range(5):
            rewrite(config, MAIN.format(title=f"Version {number}"))
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert failures == []
    assert capabilities(Client(app))[0] == "Version 4"
    assert titles, "no request was answered while the config changed"
