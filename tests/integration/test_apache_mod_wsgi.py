"""Apache httpd: the WSGI module in mod_wsgi daemon processes, and mod_proxy in front of
gunicorn.

Debian's mod_wsgi is built against Debian's /usr/bin/python3, so the app runs in a virtualenv
of that interpreter (`python-home`) holding the project's dependencies. The venv is built
once per pyproject.toml and kept in a cache directory; the project's source is copied next
to the test configuration and put on `python-path`, so every run tests the current code.

Apache runs from a generated httpd.conf with its own ServerRoot, pid file and logs in a
temporary directory, listens on a free loopback port and loads only the modules it needs;
Debian's system service and /etc/apache2 are not used.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from . import deploy
except ImportError:
    import deploy

pytestmark = pytest.mark.integration

APACHE = "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter Debian's mod_wsgi is linked with
DAEMON_USER = "www-data"  # mod_wsgi refuses to run its daemon processes as root
VENV_BUILD_TIMEOUT = 600

# The WSGI part is what docs/deployment.md shows (paths filled in).
HTTPD_CONF = """\
ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{root}/httpd.pid"
DefaultRuntimeDir "{root}/run"
ErrorLog "{root}/error.log"
LogLevel info
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog "{root}/access.log" common
{user}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule mime_module {modules}/mod_mime.so
TypesConfig /etc/mime.types
{extra}
"""

WSGI_CONF = """\
LoadModule wsgi_module {modules}/mod_wsgi.so
WSGISocketPrefix "{root}/run/wsgi"

WSGIDaemonProcess mapproxy processes=2 threads=8 python-home={venv} python-path={src}
WSGIProcessGroup mapproxy
WSGIApplicationGroup %{{GLOBAL}}
WSGIScriptAlias /mapproxy {app_dir}/config.py

<Directory {app_dir}>
    <Files config.py>
        Require all granted
    </Files>
</Directory>
"""

PROXY_CONF = """\
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_http_module {modules}/mod_proxy_http.so
LoadModule headers_module {modules}/mod_headers.so

<Location /mapproxy/>
    ProxyPass http://127.0.0.1:{app_port}/
    ProxyPreserveHost On
    RequestHeader set X-Script-Name /mapproxy
</Location>
"""


# --------------------------------------------------------------------------------------
# the virtualenv for mod_wsgi


def _venv_cache_root() -> Path:
    explicit = os.environ.get("MAPPROXY_TEST_APACHE_VENV_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        # The daemon processes run as www-data and must be able to read the venv; root's
        # home directory is private.
        return Path("/var/cache/mapproxy-test-apache-venv")
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "mapproxy-test-apache-venv"


def _project_dependencies() -> list[str]:
    with open(deploy.REPO_ROOT / "pyproject.toml", "rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def apache_python_home() -> Path:
    """A venv of /usr/bin/python3 with the project's dependencies, cached by their hash."""
    deploy.require_file(SYSTEM_PYTHON, "Debian's python3")
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    key = hashlib.sha256(
        (deploy.REPO_ROOT / "pyproject.toml").read_bytes() + version.encode()
    ).hexdigest()[:16]
    root = _venv_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / key
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time
        if (venv / ".complete").exists():
            return venv
        for stale in root.iterdir():  # venvs for other pyproject.toml versions
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        result = subprocess.run(
            [SYSTEM_PYTHON, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            pytest.fail(
                f"`{SYSTEM_PYTHON} -m venv` failed: {result.stderr[-2000:]}\n"
                f"{deploy.SYSTEM_DEPS_HINT}",
                pytrace=False,
            )
        result = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *_project_dependencies(),
            ],
            capture_output=True,
            text=True,
            timeout=VENV_BUILD_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, f"pip install into {venv} failed:\n{result.stderr[-4000:]}"
        (venv / ".complete").write_text(version)
    return venv


# --------------------------------------------------------------------------------------
# apache


def _daemon_user_directives() -> str:
    if os.geteuid() != 0:
        return ""  # Apache keeps running as the current user
    try:
        pwd.getpwnam(DAEMON_USER)
    except KeyError:
        pytest.fail(f"user {DAEMON_USER} is missing. {deploy.SYSTEM_DEPS_HINT}", pytrace=False)
    return f"User {DAEMON_USER}\nGroup {DAEMON_USER}"


def _give_to_daemon_user(*paths: Path) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(DAEMON_USER)
    for path in paths:
        for directory, _dirs, files in os.walk(path):
            os.chown(directory, entry.pw_uid, entry.pw_gid)
            for name in files:
                os.chown(os.path.join(directory, name), entry.pw_uid, entry.pw_gid)


def apache_server(root: Path, extra: str) -> tuple[deploy.ServerProcess, str]:
    apache = deploy.require_executable("apache2", APACHE)
    for module in ("mod_mpm_event.so", "mod_authz_core.so", "mod_mime.so"):
        deploy.require_file(MODULES / module, "Apache module")
    port = deploy.free_port()
    (root / "run").mkdir(exist_ok=True)
    conf = root / "httpd.conf"
    conf.write_text(
        HTTPD_CONF.format(
            root=root, port=port, modules=MODULES, user=_daemon_user_directives(), extra=extra
        )
    )
    url = f"http://127.0.0.1:{port}"
    server = deploy.ServerProcess(
        "apache2",
        [apache, "-f", str(conf), "-DFOREGROUND"],
        url + "/mapproxy/",
        root / "apache-stdout.log",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"},
        startup_timeout=60,
        extra_logs=[root / "error.log"],
    )
    return server, url


@pytest.fixture(scope="module")
def public_dir() -> Iterator[Path]:
    """A temporary directory other users can read (the daemon user must enter it)."""
    path = Path(tempfile.mkdtemp(prefix="mapproxy-apache-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Served:
    url: str
    root: Path
    venv: Path | None = None


@pytest.fixture(scope="module")
def mod_wsgi(public_dir: Path, mapserver_wms) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    deploy.require_file(MODULES / "mod_wsgi.so", "mod_wsgi (libapache2-mod-wsgi-py3)")
    venv = apache_python_home()
    root = public_dir / "wsgi"
    root.mkdir()
    src = root / "src"
    shutil.copytree(
        deploy.REPO_ROOT / "src" / "mapproxy",
        src / "mapproxy",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    cache_dir = root / "cache_data"
    cache_dir.mkdir()
    script = deploy.write_app(root, mapserver_wms.url, base_dir=cache_dir)
    _give_to_daemon_user(cache_dir)
    extra = WSGI_CONF.format(modules=MODULES, root=root, venv=venv, src=src, app_dir=root)
    server, url = apache_server(root, extra)
    assert script.parent == root
    with server:
        yield Served(url, root, venv)


def test_capabilities_name_apache_and_the_mount_point(mod_wsgi: Served) -> None:
    response = deploy.http_get(
        f"{mod_wsgi.url}/mapproxy/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1"
    )
    assert response.status == 200, response
    assert response.content_type == "application/vnd.ogc.wms_xml"
    assert f"{mod_wsgi.url}/mapproxy/service?" in response.text
    deploy.assert_urls_start_with(response.text, f"{mod_wsgi.url}/mapproxy/service", minimum=3)

    wmts = deploy.http_get(f"{mod_wsgi.url}/mapproxy/wmts/1.0.0/WMTSCapabilities.xml")
    assert wmts.status == 200, wmts
    deploy.assert_urls_start_with(wmts.text, f"{mod_wsgi.url}/mapproxy/wmts", minimum=2)


def test_the_app_runs_in_daemon_processes_of_the_venv(mod_wsgi: Served) -> None:
    """mod_wsgi used python-home and python-path, and loaded config.py in the daemon group."""
    for _ in range(4):
        welcome = deploy.http_get(f"{mod_wsgi.url}/mapproxy/")
        assert welcome.status == 200
        assert "Welcome to MapProxy" in welcome.text
    log = (mod_wsgi.root / "error.log").read_text()
    assert f"Python home {mod_wsgi.venv}." in log
    assert f"Adding '{mod_wsgi.root / 'src'}' to path." in log
    assert (
        f"process='mapproxy', application=''): Loading Python script file "
        f"'{mod_wsgi.root / 'config.py'}'." in log
    )
    if os.geteuid() == 0:
        uid = pwd.getpwnam(DAEMON_USER).pw_uid
        assert f"Starting process 'mapproxy' with uid={uid}," in log


def test_getmap_and_tiles_one_upstream_request_per_meta_tile(mod_wsgi: Served, mapserver) -> None:  # type: ignore[no-untyped-def]
    mapserver.delay = 0.3
    # level 2 of GLOBAL_WEBMERCATOR: 4 x 4 tiles = one meta tile of 4 x 4
    tiles = [
        f"/mapproxy/wmts/cached/GLOBAL_WEBMERCATOR/02/{x}/{y}.png"
        for x in range(4)
        for y in range(4)
    ]
    half = 20037508.342789244
    getmaps = [
        "/mapproxy/service?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS=cached&STYLES="
        f"&CRS=EPSG:3857&BBOX={-half!r},{-half!r},{half!r},{half!r}&WIDTH=1024&HEIGHT=1024"
        "&FORMAT=image/png"
    ] * 4
    paths = tiles + getmaps + tiles
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda p: deploy.http_get(mod_wsgi.url + p), paths))
    for path, response in zip(paths, responses, strict=True):
        assert response.status == 200, (path, response)
        assert response.content_type == "image/png", (path, response)
        assert response.body.startswith(b"\x89PNG")
    assert mapserver.count(request="GetMap") == 1
    # the tiles are in the cache the daemon user wrote
    assert list((mod_wsgi.root / "cache_data").glob("ms_cache_EPSG3857/02/*/*/*/*/*/*.png"))


# --------------------------------------------------------------------------------------
# mod_proxy in front of gunicorn


@pytest.fixture(scope="module")
def mod_proxy(public_dir: Path, mapserver_wms) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    for module in ("mod_proxy.so", "mod_proxy_http.so", "mod_headers.so"):
        deploy.require_file(MODULES / module, "Apache module")
    deploy.require_python_module("gunicorn")
    root = public_dir / "proxy"
    root.mkdir()
    script = deploy.write_app(root, mapserver_wms.url)
    app, app_url = deploy.gunicorn_server(
        script, ["-k", "gthread", "-w", "1", "--threads", "4"], root
    )
    extra = PROXY_CONF.format(modules=MODULES, app_port=app_url.rsplit(":", 1)[1])
    server, url = apache_server(root, extra)
    with app, server:
        yield Served(url, root)


@pytest.mark.parametrize(
    "path",
    [
        "service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0",
        "wmts/1.0.0/WMTSCapabilities.xml",
        "tms/1.0.0/",
    ],
)
def test_mod_proxy_with_script_name_header(mod_proxy: Served, path: str) -> None:
    response = deploy.http_get(f"{mod_proxy.url}/mapproxy/{path}")
    assert response.status == 200, response
    deploy.assert_urls_start_with(response.text, f"{mod_proxy.url}/mapproxy/", minimum=1)


def test_mod_proxy_tile(mod_proxy: Served) -> None:
    response = deploy.http_get(f"{mod_proxy.url}/mapproxy/tiles/cached/EPSG3857/1/0/0.png")
    assert response.status == 200, response
    assert response.content_type == "image/png"
    etag = response.headers["ETag"]
    assert (
        deploy.http_get(
            f"{mod_proxy.url}/mapproxy/tiles/cached/EPSG3857/1/0/0.png", {"If-None-Match": etag}
        ).status
        == 304
    )
