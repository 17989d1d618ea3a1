"""``mapproxy-util nginx-config``: nginx answers cache hits from the files, the app the rest.

gunicorn runs the app, nginx the generated configuration; hits through nginx must carry
the app's body, Content-Type and caching headers (nginx's own ETag aside), misses and
layers nginx cannot map must reach the app.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fakes.fake_upstream import FakeUpstream

try:
    from . import deploy
except ImportError:
    import deploy

pytestmark = pytest.mark.integration

CONFIG = """
services:
  wmts:
  tms:
    use_grid_names: true
layers:
  - {{name: tc, title: tc, sources: [tc_cache]}}
  - {{name: flat, title: tms layout, sources: [flat_cache]}}
  - {{name: mp, title: mp layout, sources: [mp_cache]}}
  - {{name: qk, title: quadkey, sources: [qk_cache]}}
caches:
  tc_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [up]
    cache: {{type: file, directory: {tiles}/tc}}
  flat_cache:
    grids: [GLOBAL_MERCATOR]
    sources: [up]
    cache: {{type: file, directory: {tiles}/flat, directory_layout: tms}}
  mp_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [up]
    cache: {{type: file, directory: {tiles}/mp, directory_layout: mp}}
  qk_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [up]
    cache: {{type: file, directory: {tiles}/qk, directory_layout: quadkey}}
sources:
  up:
    type: wms
    req: {{url: "{url}/service", layers: base}}
globals:
  cache:
    meta_size: [1, 1]
    meta_buffer: 0
"""

NGINX_CONF = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-client-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    include {tmp}/mapproxy-nginx.conf;
}}
"""

STATIC = [
    "/wmts/tc/GLOBAL_WEBMERCATOR/3/4/2.png",
    "/wmts/tc/GLOBAL_WEBMERCATOR/0/0/0.png",
    "/tiles/tc/GLOBAL_WEBMERCATOR/3/5/2.png",
    "/wmts/mp/GLOBAL_WEBMERCATOR/4/9/5.png",
    "/tms/1.0.0/flat/GLOBAL_MERCATOR/2/3/1.png",
    "/tiles/flat/GLOBAL_MERCATOR/3/2/1.png",
]
# cached, but nginx cannot compute the file name (row flip, quadkey layout)
APP_ONLY = ["/tms/1.0.0/tc/GLOBAL_WEBMERCATOR/2/4/5.png", "/wmts/qk/GLOBAL_WEBMERCATOR/3/4/2.png"]


@dataclass
class Front:
    app_url: str
    url: str
    upstream: FakeUpstream


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    nginx = deploy.require_executable("nginx", "/usr/sbin/nginx")
    deploy.require_python_module("gunicorn")
    tmp = tmp_path_factory.mktemp("nginx-front")
    with FakeUpstream() as upstream:
        config = tmp / "mapproxy.yaml"
        config.write_text(CONFIG.format(tiles=tmp / "tiles", url=upstream.url))
        (tmp / "config.py").write_text(
            "from mapproxy.wsgiapp import make_wsgi_app\n"
            f"application = make_wsgi_app({str(config)!r})\n"
        )
        app, app_url = deploy.gunicorn_server(tmp / "config.py", ["-w", "1"], tmp)
        port = deploy.free_port()
        result = subprocess.run(
            [
                deploy.venv_script("mapproxy-util"),
                "nginx-config",
                "-f",
                str(config),
                "--listen",
                f"127.0.0.1:{port}",
                "--app",
                app_url.removeprefix("http://"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        (tmp / "mapproxy-nginx.conf").write_text(result.stdout)
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=deploy.nginx_user_line(), tmp=tmp))
        url = f"http://127.0.0.1:{port}"
        proxy = deploy.nginx_server(nginx, tmp, conf, url + "/tms/1.0.0/")
        with app, proxy:
            yield Front(app_url, url, upstream)


def is_static(response: deploy.Response) -> bool:
    """nginx's own ETag is quoted "mtime-size"; the app's is an unquoted MD5."""
    return response.headers.get("ETag", "").startswith('"')


@pytest.mark.parametrize("path", STATIC)
def test_hits_come_from_nginx_with_the_app_headers(front: Front, path: str) -> None:
    first = deploy.http_get(front.url + path)  # a miss: nginx hands it to the app
    assert first.status == 200
    assert not is_static(first)
    count = len(front.upstream.requests)
    through_nginx = deploy.http_get(front.url + path)
    direct = deploy.http_get(front.app_url + path)
    assert is_static(through_nginx)
    assert len(front.upstream.requests) == count
    assert through_nginx.status == direct.status == 200
    assert through_nginx.body == direct.body
    for name in ("Content-Type", "Content-Length", "Cache-Control", "Last-Modified"):
        assert through_nginx.headers[name] == direct.headers[name], name
    assert through_nginx.headers["Access-Control-Allow-Origin"] == "*"
    since = {"If-Modified-Since": direct.headers["Last-Modified"]}
    assert deploy.http_get(front.url + path, headers=since).status == 304


@pytest.mark.parametrize("path", APP_ONLY)
def test_unmappable_tiles_always_come_from_the_app(front: Front, path: str) -> None:
    deploy.http_get(front.url + path)
    again = deploy.http_get(front.url + path)
    direct = deploy.http_get(front.app_url + path)
    assert again.status == 200
    assert not is_static(again)
    assert again.body == direct.body
    assert again.headers["ETag"] == direct.headers["ETag"]


def test_other_requests_reach_the_app(front: Front) -> None:
    response = deploy.http_get(front.url + "/wmts/1.0.0/WMTSCapabilities.xml")
    assert response.status == 200
    assert b"<Capabilities" in response.body
    outside = deploy.http_get(front.url + "/wmts/tc/GLOBAL_WEBMERCATOR/99/0/0.png")
    assert outside.status == 400
