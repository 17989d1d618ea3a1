"""Orchestrate the benchmark suite: servers, workloads W1-W6 A/B interleaved, the report.

Both projects serve the same rendered ``configs/mapproxy.yaml`` under gunicorn with the same
worker settings; the synthetic upstream (``upstream.py``) answers every source request.
Every process this module starts runs in its own process group and is stopped by that
group's id. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import workloads

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "performance.md"
RESULTS_START = "<!-- benchmark-results:start -->"
RESULTS_END = "<!-- benchmark-results:end -->"
W1_MAX_LEVEL = 9  # seed task w1_tiles in configs/seed.yaml
ALL_WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(message: str) -> None:
    """Progress line on stderr with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Managed:
    """A child process in its own process group, with its output in a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], cwd: Path, log_path: Path, env: dict[str, str] | None
    ) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                list(argv),
                cwd=str(cwd),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.pid = self.process.pid

    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process output."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 10 s."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Workers that outlived their master (same group) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def http_get(url: str, timeout: float = 60) -> tuple[int, str, bytes]:
    """GET ``url``: status, content type and body (also for HTTP errors)."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def wait_http(url: str, process: Managed, timeout_seconds: float = 60) -> None:
    """Wait until ``url`` answers (any HTTP status); raise if ``process`` exits first."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not process.running():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            http_get(url, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer {url}:\n{process.log_tail()}")


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces.
    return text[text.rindex(")") + 2 :].split()


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def group_members(pgid: int) -> list[int]:
    """Process ids in process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields is not None and int(fields[2]) == pgid:
                found.append(int(entry))
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (0 if it is gone)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of ``pids`` so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = _proc_stat(pid)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


class PeakRSS:
    """Samples the summed RSS of a process group in a thread; ``peak`` in bytes."""

    def __init__(self, pgid: int, interval_seconds: float = 0.1) -> None:
        self.pgid = pgid
        self.interval_seconds = interval_seconds
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = sum(rss_bytes(pid) for pid in group_members(self.pgid))
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval_seconds)


# --------------------------------------------------------------------------------------
# projects and servers


@dataclass(frozen=True)
class Project:
    """One implementation under test: its virtual environment's bin directory."""

    key: str
    label: str
    bin_dir: Path

    def tool(self, name: str) -> str:
        """Path of a console script or the interpreter in this project's environment."""
        return str(self.bin_dir / name)


def this_project() -> Project:
    """This repository's package, from the environment running the suite."""
    return Project("this", "this project", Path(sys.executable).parent)


def reference_project(venv: Path) -> Project:
    """MapProxy 7.0.0 from ``venv`` (scripts/install-reference.sh)."""
    return Project("ref", "MapProxy 7.0.0", venv / "bin")


_WSGI_MODULE = """\
from mapproxy.wsgiapp import make_wsgi_app

application = make_wsgi_app({config!r})
"""


class GunicornServer:
    """A project's app for the benchmark config under gunicorn (same settings for both)."""

    def __init__(self, project: Project, work_dir: Path, workers: int) -> None:
        self.project = project
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        module = work_dir / "bench_wsgi.py"
        if not module.exists():
            module.write_text(_WSGI_MODULE.format(config=str(work_dir / "mapproxy.yaml")))
        self.process = Managed(
            f"gunicorn ({project.label})",
            [
                project.tool("gunicorn"),
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--timeout",
                "120",
                "--log-level",
                "warning",
                "--chdir",
                str(work_dir),
                "bench_wsgi:application",
            ],
            cwd=work_dir,
            log_path=work_dir / f"gunicorn-{project.key}.log",
            env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        )
        wait_http(self.url + "/service?SERVICE=WMS&REQUEST=GetCapabilities", self.process)
        deadline = time.monotonic() + 30
        while len(self.workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.1)

    def workers(self) -> list[int]:
        """Pids of the gunicorn workers."""
        return children_of(self.process.pid)

    def cpu_seconds(self) -> float:
        """CPU time of master and workers so far."""
        return cpu_seconds([self.process.pid, *self.workers()])

    def wait_idle(self, timeout_seconds: float = 60) -> None:
        """Wait until the workers stop using CPU: requests still queued when a load run ends
        must not slow down the next run (of the other project)."""
        deadline = time.monotonic() + timeout_seconds
        used = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = self.cpu_seconds()
            if now - used < 0.02:
                return
            used = now

    def stop(self) -> None:
        """Stop master and workers."""
        self.process.stop()


_NGINX_CONF = """\
{user}worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    types {{ image/png png; }}
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{server}
}}
"""

_STATIC_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        location /tiles/ {{ alias {tiles}/; }}
    }}"""


def _start_nginx(prefix: Path, port: int, workers: int, server: str) -> Managed:
    """Start nginx with ``server`` (http-context text) in its own prefix dir."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(
            user="user root;\n" if os.geteuid() == 0 else "",
            workers=workers,
            prefix=prefix,
            server=server,
        )
    )
    process = Managed(
        "nginx",
        [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        cwd=prefix,
        log_path=prefix / "stdout.log",
        env=None,
    )
    wait_http(f"http://127.0.0.1:{port}/", process)
    return process


class NginxStatic:
    """nginx serving the W1 tile files statically (the physical limit)."""

    def __init__(self, work_dir: Path, tiles: Path, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        server = _STATIC_SERVER.format(port=self.port, tiles=tiles)
        self.process = _start_nginx(work_dir / "nginx", self.port, workers, server)

    def stop(self) -> None:
        """Stop nginx (its master and workers)."""
        self.process.stop()


class NginxFront:
    """The production stack: nginx from ``mapproxy-util nginx-config`` before the app."""

    def __init__(self, work_dir: Path, app: GunicornServer, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        generated = subprocess.run(
            [
                this_project().tool("mapproxy-util"),
                "nginx-config",
                "-f",
                str(work_dir / "mapproxy.yaml"),
                "--app",
                f"127.0.0.1:{app.port}",
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.process = _start_nginx(work_dir / "nginx-front", self.port, workers, generated)

    def stop(self) -> None:
        """Stop nginx (its master and workers)."""
        self.process.stop()


class Upstream:
    """The synthetic WMS of upstream.py in its own process group."""

    def __init__(self, work_dir: Path, processes: int, memo: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.memo = memo
        memo_args = ["--memo-dir", str(work_dir / "upstream-memo")] if memo else []
        self.process = Managed(
            "upstream",
            [
                sys.executable,
                "-m",
                "benchmarks.upstream",
                "--port",
                str(self.port),
                "--processes",
                str(processes),
                *memo_args,
            ],
            cwd=REPO_ROOT,
            log_path=work_dir / "upstream.log",
            env=None,
        )
        wait_http(self.url + "/__stats", self.process)

    def getmap_count(self) -> int:
        """GetMap requests answered so far."""
        return int(json.loads(http_get(self.url + "/__stats")[2])["getmap"])

    def rendered_count(self) -> int:
        """GetMap answers rendered so far (the others came from the memo)."""
        return int(json.loads(http_get(self.url + "/__stats")[2])["rendered"])

    def prime(self, queries: Sequence[str]) -> None:
        """Render the GetMaps ``queries`` (query strings) into the memo, four at a time."""
        if not self.memo:
            return
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda query: http_get(f"{self.url}/?{query}"), queries))

    def set_latency(self, milliseconds: float) -> None:
        """Added latency per GetMap from now on."""
        http_get(f"{self.url}/__latency?ms={milliseconds}")

    def stop(self) -> None:
        """Stop all upstream processes."""
        self.process.stop()


# --------------------------------------------------------------------------------------
# results


@dataclass
class Metric:
    """One reported number per project (and nginx), with its repetitions."""

    workload: str
    name: str
    unit: str
    higher_is_better: bool
    values: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""
    show_ratio: bool = True

    def add(self, key: str, value: float) -> None:
        """Record one repetition's value for ``key`` (`this`, `ref` or `nginx`)."""
        self.values.setdefault(key, []).append(value)

    def median(self, key: str) -> float | None:
        """Median over repetitions, or None when nothing was measured."""
        values = [value for value in self.values.get(key, []) if not math.isnan(value)]
        return statistics.median(values) if values else None

    def ratio(self) -> float | None:
        """This project / reference, from the medians."""
        this, ref = self.median("this"), self.median("ref")
        if not self.show_ratio or this is None or ref is None or ref == 0:
            return None
        return this / ref

    def as_json(self) -> dict[str, Any]:
        """Plain data for results.json."""
        return {
            "workload": self.workload,
            "name": self.name,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "values": self.values,
            "medians": {key: self.median(key) for key in self.values},
            "ratio": self.ratio(),
            "note": self.note,
        }


class Results:
    """All metrics of a run, in report order."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def metric(
        self,
        workload: str,
        name: str,
        unit: str,
        higher_is_better: bool,
        show_ratio: bool = True,
    ) -> Metric:
        """The metric with this workload and name, created on first use."""
        for metric in self.metrics:
            if metric.workload == workload and metric.name == name:
                return metric
        metric = Metric(workload, name, unit, higher_is_better, show_ratio=show_ratio)
        self.metrics.append(metric)
        return metric


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    if abs(value) >= 10:
        return f"{value:.1f} {unit}".strip()
    return f"{value:.2f} {unit}".strip()


def markdown_table(results: Results) -> str:
    """The results as a Markdown table (medians, ratio this/reference)."""
    lines = [
        "| workload | metric | this project | MapProxy 7.0.0 | ratio (this/ref) "
        "| nginx static | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for metric in results.metrics:
        ratio = metric.ratio()
        better = "higher is better" if metric.higher_is_better else "lower is better"
        ratio_text = f"{ratio:.2f}x ({better})" if ratio is not None else "—"
        this_text = _format(metric.median("this"), metric.unit)
        if metric.median("this") is None and metric.note.startswith("n/a"):
            this_text = metric.note
        lines.append(
            f"| {metric.workload} | {metric.name} | {this_text} "
            f"| {_format(metric.median('ref'), metric.unit)} | {ratio_text} "
            f"| {_format(metric.median('nginx'), metric.unit)} | {metric.note} |"
        )
    return "\n".join(lines)


def write_chart(results: Results, path: Path) -> bool:
    """A horizontal bar chart of the ratios; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no chart (pip install -e '.[bench]')")
        return False
    rows: list[tuple[Metric, float]] = []
    for metric in results.metrics:
        ratio = metric.ratio()
        if ratio is not None:
            rows.append((metric, ratio))
    if not rows:
        return False
    labels = [
        f"{m.workload} {m.name} ({'↑' if m.higher_is_better else '↓'} better)" for m, _ in rows
    ]
    ratios = [ratio for _, ratio in rows]
    colours = [
        "#9e9e9e"
        if abs(ratio - 1) < 0.02
        else "#2e7d32"
        if (ratio > 1) == metric.higher_is_better
        else "#c62828"
        for metric, ratio in rows
    ]
    figure, axes = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.4))
    positions = list(range(len(rows)))[::-1]
    axes.barh(positions, ratios, color=colours)
    axes.set_yticks(positions, labels, fontsize=8)
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_xlabel("this project / MapProxy 7.0.0 (green: better, red: worse, grey: ±2 %)")
    for position, ratio in zip(positions, ratios, strict=True):
        axes.text(ratio, position, f" {ratio:.2f}x", va="center", fontsize=8)
    axes.set_xlim(0, max(max(ratios) * 1.2, 1.2))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def machine_summary() -> str:
    """CPU count, load average and Python version of this machine."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, load average before the run {load}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def write_report(
    results: Results, output: Path, settings: str, machine: str, chart_name: str
) -> None:
    """Replace the results block of ``output`` (or create the file) with this run's table."""
    chart = output.with_name(chart_name)
    has_chart = write_chart(results, chart)
    block = [
        RESULTS_START,
        f"Run of {datetime.date.today().isoformat()}: {settings}. Machine: {machine}.",
        "",
        markdown_table(results),
        "",
    ]
    if has_chart:
        block += [f"![Ratios this project / MapProxy 7.0.0]({chart.name})", ""]
    block.append(RESULTS_END)
    text = output.read_text() if output.exists() else "# Performance\n\n"
    if RESULTS_START in text and RESULTS_END in text:
        head, rest = text.split(RESULTS_START, 1)
        tail = rest.split(RESULTS_END, 1)[1]
        text = head + "\n".join(block) + tail
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(block) + "\n"
    output.write_text(text)


# --------------------------------------------------------------------------------------
# the suite


@dataclass
class Settings:
    """What the command line chose."""

    quick: bool
    reps: int
    duration_seconds: float
    workloads: tuple[str, ...]
    projects: tuple[Project, ...]
    workers: int
    connections: int
    loader: str
    work_dir: Path
    output: Path
    seed_timeout_seconds: float
    upstream_memo: bool = True

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"{'--quick, ' if self.quick else ''}{self.reps} repetition(s), "
            f"{self.duration_seconds:g} s per load run, gunicorn {self.workers} sync workers, "
            f"{self.connections} connections ({self.loader})"
        )


def order(projects: Sequence[Project], rep: int) -> list[Project]:
    """A, B in even repetitions and B, A in odd ones (interleaving)."""
    return list(projects) if rep % 2 == 0 else list(projects)[::-1]


def render_configs(work_dir: Path, upstream_url: str) -> None:
    """Write mapproxy.yaml and seed.yaml with the placeholders filled in."""
    for name in ("mapproxy.yaml", "seed.yaml"):
        text = (CONFIG_DIR / name).read_text()
        text = text.replace("@UPSTREAM_URL@", upstream_url + "/service?")
        text = text.replace("@WORK_DIR@", str(work_dir))
        (work_dir / name).write_text(text)


def run_seed(
    project: Project, work_dir: Path, task: str, timeout_seconds: float
) -> tuple[int | None, float, int, str]:
    """``mapproxy-seed -c 2 --seed task``: exit code (None on timeout), seconds, peak RSS, log."""
    seeder = project.tool("mapproxy-seed")
    log_path = work_dir / f"seed-{project.key}-{task}.log"
    log_path.unlink(missing_ok=True)
    if not os.access(seeder, os.X_OK):
        return 127, 0.0, 0, f"{seeder} not found"
    started = time.perf_counter()
    process = Managed(
        f"mapproxy-seed ({project.label})",
        [seeder, "-f", "mapproxy.yaml", "-s", "seed.yaml", "-c", "2", "--seed", task],
        cwd=work_dir,
        log_path=log_path,
        env=None,
    )
    code: int | None
    with PeakRSS(process.pid) as peak:
        try:
            code = process.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            code = None
    elapsed = time.perf_counter() - started
    process.stop()
    return code, elapsed, peak.peak, process.log_tail()


def count_files(directory: Path) -> int:
    """Number of files below ``directory``."""
    return sum(len(files) for _, _, files in os.walk(directory))


def clear_dir(directory: Path) -> None:
    """Remove ``directory`` and everything in it."""
    shutil.rmtree(directory, ignore_errors=True)


def load(
    settings: Settings,
    url: str,
    paths: Sequence[str],
    connections: int,
    server: GunicornServer | None = None,
) -> Any:
    """One fixed-duration load run with the chosen loader; then waits for ``server`` to idle."""
    result = workloads.run_load(
        url,
        paths,
        settings.duration_seconds,
        connections=connections,
        use_wrk=settings.loader == "wrk",
        scratch_dir=settings.work_dir,
    )
    if server is not None:
        server.wait_idle()
    return result


def w6_startup(settings: Settings, results: Results) -> None:
    """W6: process start to loaded app, and the first GetCapabilities, 400-layer config."""
    config_dir = settings.work_dir / "large"
    config_dir.mkdir(exist_ok=True)
    config = config_dir / "mapproxy.yaml"
    config.write_text(workloads.large_config())
    script = (
        "import json, sys, time\n"
        "from wsgiref.util import setup_testing_defaults\n"
        "from mapproxy.wsgiapp import make_wsgi_app\n"
        "app = make_wsgi_app(sys.argv[1])\n"
        "loaded = time.perf_counter()\n"
        "env = {'PATH_INFO': '/service', 'REQUEST_METHOD': 'GET',\n"
        "       'QUERY_STRING': 'SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1'}\n"
        "setup_testing_defaults(env)\n"
        "status = []\n"
        "body = b''.join(app(env, lambda s, h, e=None: status.append(s)))\n"
        "print(json.dumps({'status': status[0], 'bytes': len(body),\n"
        "                  'capabilities_s': time.perf_counter() - loaded}))\n"
    )
    load_metric = results.metric(
        "W6", "start-up, 400 layers (process start → app ready)", "s", False
    )
    # This project may build capabilities while loading: compare the sums too.
    caps_metric = results.metric(
        "W6", "start-up + first WMS GetCapabilities, 400 layers", "s", False
    )
    # pip byte-compiles an installed package; the editable checkout gets its .pyc files here
    # (PYTHONDONTWRITEBYTECODE would otherwise make every start compile the sources again).
    package_dir = Path(__file__).resolve().parent.parent / "src" / "mapproxy"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package_dir)], check=False)
    for rep in range(max(1, min(settings.reps, 3))):
        for project in order(settings.projects, rep):
            started = time.perf_counter()
            completed = subprocess.run(
                [project.tool("python"), "-c", script, str(config)],
                cwd=config_dir,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
                start_new_session=True,
            )
            total = time.perf_counter() - started
            if completed.returncode != 0:
                log(f"W6 {project.label} failed: {completed.stderr[-1500:]}")
                load_metric.note = f"{project.key} failed to load the config"
                continue
            data = json.loads(completed.stdout.strip().splitlines()[-1])
            if not str(data["status"]).startswith("200"):
                caps_metric.note = f"{project.key}: GetCapabilities {data['status']}"
            load_metric.add(project.key, total - float(data["capabilities_s"]))
            caps_metric.add(project.key, total)
            log(f"W6 {project.label}: {total:.2f} s ({data['capabilities_s']:.2f} s capabilities)")


def w4_seeding(settings: Settings, results: Results, upstream: Upstream | None = None) -> None:
    """W4: mapproxy-seed -c 2 over the country into an empty file cache (``upstream``: the
    memoizing upstream to prime first and to count renders of)."""
    task = "w4_quick" if settings.quick else "w4_country"
    levels = "0-7" if settings.quick else "0-11"
    rate = results.metric("W4", f"seeding levels {levels}, -c 2", "tiles/s", True)
    peak = results.metric("W4", "seeding peak RSS (all seed processes)", "MB", False)
    seed_dir = settings.work_dir / "tiles" / "seed"
    unavailable: set[str] = set()
    if upstream is not None and upstream.memo:  # an unmeasured run fills the upstream's memo
        clear_dir(seed_dir)
        code, seconds, _, _ = run_seed(
            settings.projects[0], settings.work_dir, task, settings.seed_timeout_seconds
        )
        log(f"W4: upstream primed by {settings.projects[0].label} ({code=}, {seconds:.1f} s)")
    started = time.monotonic()
    for rep in range(max(1, min(settings.reps, 2))):
        if rep > 0 and time.monotonic() - started > 150:
            log("W4: one repetition only, to keep the suite within its time budget")
            break
        for project in order(settings.projects, rep):
            if project.key in unavailable:
                continue
            clear_dir(seed_dir)
            rendered_before = upstream.rendered_count() if upstream is not None else 0
            code, seconds, peak_rss, output = run_seed(
                project, settings.work_dir, task, settings.seed_timeout_seconds
            )
            rendered = upstream.rendered_count() - rendered_before if upstream is not None else 0
            tiles = count_files(seed_dir)
            if code != 0 or tiles == 0:
                reason = "timeout" if code is None else f"exit {code}"
                log(f"W4 {project.label} failed ({reason}, {tiles} tiles):\n{output[-1500:]}")
                if project.key == "this":
                    unavailable.add(project.key)
                    rate.note = peak.note = "n/a (mapproxy-seed not available)"
                continue
            rate.add(project.key, tiles / seconds)
            peak.add(project.key, peak_rss / 1e6)
            log(
                f"W4 {project.label}: {tiles} tiles, {seconds:.1f} s, "
                f"{peak_rss / 1e6:.0f} MB; upstream rendered {rendered}"
            )


def w1_cached(
    settings: Settings,
    servers: dict[str, GunicornServer],
    nginx: NginxStatic | None,
    results: Results,
) -> None:
    """W1: cached tiles (WMTS REST and TMS) from the seeded cache; nginx static alongside."""
    tiles = workloads.seeded_tiles(W1_MAX_LEVEL)
    tile_dir = settings.work_dir / "tiles" / "bench"
    missing = [tile for tile in tiles if not (tile_dir / workloads.tc_file_path(*tile)).exists()]
    if missing:
        log(f"W1: {len(missing)} of {len(tiles)} tiles are not seeded; they will be created")
    static_paths = workloads.w1_paths("static", tiles)
    for kind in ("wmts", "tms"):
        paths = workloads.w1_paths(kind, tiles)
        _check_w1_bytes(servers, paths[0], tile_dir, tiles, kind)
        label = "WMTS REST" if kind == "wmts" else "TMS"
        rps = results.metric("W1", f"{label} cached tiles", "req/s", True)
        p50 = results.metric("W1", f"{label} p50 latency", "ms", False)
        p99 = results.metric("W1", f"{label} p99 latency", "ms", False)
        cpu = results.metric("W1", f"{label} app CPU per tile", "ms", False)
        if not settings.quick:  # warm up workers and the page cache
            for server in servers.values():
                workloads.run_load(server.url, paths, 2, settings.connections, use_wrk=False)
                server.wait_idle()
        for rep in range(settings.reps):
            for project in order(settings.projects, rep):
                server = servers[project.key]
                cpu_before = server.cpu_seconds()
                result = load(settings, server.url, paths, settings.connections, server)
                cpu_used = server.cpu_seconds() - cpu_before
                _record_load(project.key, result, rps, p50, p99)
                if result.requests:
                    cpu.add(project.key, cpu_used * 1000.0 / result.requests)
                log(f"W1 {label} {project.label}: {_describe(result)}")
            if nginx is not None and kind == "wmts":
                result = load(settings, nginx.url, static_paths, settings.connections)
                _record_load("nginx", result, rps, p50, p99)
                log(f"W1 nginx static: {_describe(result)}")
    if nginx is not None and "this" in servers:
        _w1_production_stack(settings, servers, nginx, results, tiles)


def _w1_production_stack(
    settings: Settings,
    servers: dict[str, GunicornServer],
    nginx: NginxStatic,
    results: Results,
    tiles: Sequence[tuple[int, int, int]],
) -> None:
    """W1 through the generated nginx front (hits from the files, misses to this app),
    next to the reference under gunicorn and nginx serving the files statically."""
    paths = workloads.w1_paths("wmts", tiles)
    static_paths = workloads.w1_paths("static", tiles)
    label = "WMTS REST cached tiles, production stack (nginx front)"
    rps = results.metric("W1", label, "req/s", True)
    p50 = results.metric("W1", f"{label} p50 latency", "ms", False)
    p99 = results.metric("W1", f"{label} p99 latency", "ms", False)
    rps.note = "this: nginx-config front; ref: gunicorn"
    front = NginxFront(settings.work_dir, servers["this"], settings.workers)
    try:
        status, _, body = http_get(front.url + paths[0])
        if status != 200 or not body.startswith(b"\x89PNG"):
            log(f"W1 nginx front: unexpected answer {status} for {paths[0]}")
        for rep in range(settings.reps):
            for project in order(settings.projects, rep):
                if project.key == "this":
                    result = load(settings, front.url, paths, settings.connections)
                else:
                    server = servers[project.key]
                    result = load(settings, server.url, paths, settings.connections, server)
                _record_load(project.key, result, rps, p50, p99)
                log(f"W1 production stack {project.label}: {_describe(result)}")
            result = load(settings, nginx.url, static_paths, settings.connections)
            _record_load("nginx", result, rps, p50, p99)
    finally:
        front.stop()


def _check_w1_bytes(
    servers: dict[str, GunicornServer],
    path: str,
    tile_dir: Path,
    tiles: Sequence[tuple[int, int, int]],
    kind: str,
) -> None:
    """Warn when a server answers the first W1 tile with other bytes than the cache file."""
    stored = tile_dir / workloads.tc_file_path(*workloads.w1_tiles(kind, tiles)[0])
    for server in servers.values():
        status, content_type, body = http_get(server.url + path)
        if status != 200 or not content_type.startswith("image/png"):
            log(f"W1 {kind} {server.project.label}: {path} -> {status} {content_type}")
        elif stored.exists() and stored.read_bytes() != body:
            log(f"W1 {kind} {server.project.label}: {path} differs from the stored file")


def _record_load(key: str, result: Any, rps: Metric, p50: Metric, p99: Metric) -> None:
    rps.add(key, result.requests_per_second)
    p50.add(key, result.p50_ms)
    p99.add(key, result.p99_ms)
    if result.errors:
        rps.note = f"errors: {key} {result.errors}"


def _describe(result: Any) -> str:
    return (
        f"{result.requests_per_second:.0f} req/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, {result.requests} requests, {result.errors} errors "
        f"({result.tool})"
    )


def w5_rss(settings: Settings, servers: dict[str, GunicornServer], results: Results) -> None:
    """W5: mean RSS per gunicorn worker (after W1 when it ran)."""
    metric = results.metric("W5", "RSS per gunicorn worker", "MB", False)
    for project in settings.projects:
        workers = servers[project.key].workers()
        if workers:
            metric.add(project.key, statistics.mean(rss_bytes(pid) for pid in workers) / 1e6)


def w2_misses(
    settings: Settings, servers: dict[str, GunicornServer], upstream: Upstream, results: Results
) -> None:
    """W2: random z10-12 tiles from an empty cache, 20 ms upstream latency."""
    rps = results.metric("W2", "cache misses (20 ms upstream)", "req/s", True)
    p99 = results.metric("W2", "cache misses p99 latency", "ms", False)
    per_tile = results.metric("W2", "upstream requests per tile (one client)", "", False)
    miss_dir = settings.work_dir / "tiles" / "miss"
    offsets = workloads.start_offsets(settings.loader, settings.connections)
    # More requests than the faster project answers in one run (about 90/s), per thread.
    primed_per_offset = max(40, round(100 * settings.duration_seconds / len(offsets)))
    try:
        for rep in range(settings.reps):
            paths = workloads.w2_paths(seed=100 + rep)
            upstream.set_latency(0)
            upstream.prime(workloads.w2_meta_queries(paths, offsets, primed_per_offset))
            upstream.set_latency(20)
            for project in order(settings.projects, rep):
                clear_dir(miss_dir)
                server = servers[project.key]
                rendered_before = upstream.rendered_count()
                result = load(settings, server.url, paths, settings.connections, server)
                rps.add(project.key, result.requests_per_second)
                p99.add(project.key, result.p99_ms)
                if result.errors:
                    rps.note = f"errors: {project.key} {result.errors}"
                rendered = upstream.rendered_count() - rendered_before
                log(f"W2 {project.label}: {_describe(result)}; upstream rendered {rendered}")
        # Counted with one client: under load, requests still queued when wrk stops reach
        # the upstream without being counted as answered tiles.
        sample = workloads.w2_paths(seed=99, count=10 if settings.quick else 40)
        for project in settings.projects:
            clear_dir(miss_dir)
            before = upstream.getmap_count()
            for path in sample:
                http_get(servers[project.key].url + path)
            per_tile.add(project.key, (upstream.getmap_count() - before) / len(sample))
    finally:
        upstream.set_latency(0)


def mean_pixel_difference(first: bytes, second: bytes) -> float:
    """Mean absolute difference of two images' RGBA samples (0-255)."""
    import numpy as np
    from PIL import Image

    one = np.asarray(Image.open(io.BytesIO(first)).convert("RGBA"), dtype=np.int16)
    two = np.asarray(Image.open(io.BytesIO(second)).convert("RGBA"), dtype=np.int16)
    if one.shape != two.shape:
        return math.inf
    return float(np.abs(one - two).mean())


def w3_getmap(settings: Settings, servers: dict[str, GunicornServer], results: Results) -> None:
    """W3: 512x512 GetMap in EPSG:4326 and EPSG:25832 from the EPSG:3857 cache."""
    for srs in ("EPSG:4326", "EPSG:25832"):
        paths = workloads.w3_paths(srs)
        rps = results.metric("W3", f"GetMap 512² {srs}", "req/s", True)
        p99 = results.metric("W3", f"GetMap 512² {srs} p99 latency", "ms", False)
        diff = results.metric(
            "W3", f"GetMap {srs} mean pixel difference to reference", "", False, show_ratio=False
        )
        images: dict[str, list[bytes]] = {}
        for project in settings.projects:  # warm-up: fills missing cache tiles, collects images
            images[project.key] = []
            for path in paths:
                status, content_type, body = http_get(servers[project.key].url + path)
                if status != 200 or not content_type.startswith("image/"):
                    log(f"W3 {project.label}: {status} {content_type} {body[:300]!r}")
                    body = b""
                images[project.key].append(body)
        if "this" in images and "ref" in images:
            differences = [
                mean_pixel_difference(mine, theirs)
                for mine, theirs in zip(images["this"], images["ref"], strict=True)
                if mine and theirs
            ]
            if differences:
                diff.add("this", statistics.mean(differences))
        for rep in range(settings.reps):
            for project in order(settings.projects, rep):
                server = servers[project.key]
                result = load(settings, server.url, paths, settings.connections, server)
                rps.add(project.key, result.requests_per_second)
                p99.add(project.key, result.p99_ms)
                if result.errors:
                    rps.note = f"errors: {project.key} {result.errors}"
                log(f"W3 {srs} {project.label}: {_describe(result)}")


def run_suite(settings: Settings) -> Results:
    """Run the chosen workloads; returns the results (also saved as results.json)."""
    results = Results()
    selected = set(settings.workloads)
    started = time.monotonic()
    work_dir = settings.work_dir
    if "W6" in selected:
        log("W6: start-up with a 400-layer config")
        w6_startup(settings, results)
    upstream = Upstream(work_dir, processes=4, memo=settings.upstream_memo)
    servers: dict[str, GunicornServer] = {}
    nginx: NginxStatic | None = None
    try:
        render_configs(work_dir, upstream.url)
        if "W4" in selected:
            log("W4: seeding")
            w4_seeding(settings, results, upstream)
        if selected & {"W1", "W3"}:
            _seed_w1_cache(settings)
        if selected & {"W1", "W2", "W3", "W5"}:
            for project in settings.projects:
                servers[project.key] = GunicornServer(project, work_dir, settings.workers)
        if "W1" in selected:
            if shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK):
                nginx = NginxStatic(work_dir, work_dir / "tiles" / "bench", settings.workers)
            log("W1: cached tiles")
            w1_cached(settings, servers, nginx, results)
        if "W5" in selected:
            w5_rss(settings, servers, results)
        if "W2" in selected:
            log("W2: cache misses")
            w2_misses(settings, servers, upstream, results)
        if "W3" in selected:
            log("W3: GetMap with reprojection")
            w3_getmap(settings, servers, results)
    finally:
        for server in servers.values():
            server.stop()
        if nginx is not None:
            nginx.stop()
        upstream.stop()
    log(f"suite finished in {time.monotonic() - started:.0f} s")
    (work_dir / "results.json").write_text(
        json.dumps([metric.as_json() for metric in results.metrics], indent=2)
    )
    return results


def _seed_w1_cache(settings: Settings) -> None:
    """Fill the W1/W3 cache (levels 0-9 over the country), with the reference's seeder first."""
    tile_dir = settings.work_dir / "tiles" / "bench"
    if tile_dir.exists() and count_files(tile_dir) > 0:
        return
    for project in sorted(settings.projects, key=lambda project: project.key != "ref"):
        code, seconds, _, output = run_seed(
            project, settings.work_dir, "w1_tiles", settings.seed_timeout_seconds
        )
        if code == 0 and count_files(tile_dir) > 0:
            log(f"W1 cache seeded by {project.label} in {seconds:.1f} s")
            return
        log(f"seeding the W1 cache with {project.label} failed:\n{output[-1500:]}")
        clear_dir(tile_dir)
    log("W1 cache not seeded: the first requests fill it")


# --------------------------------------------------------------------------------------
# command line


# Tile caches usually live on a data disk, not in /tmp: on the machine of the recorded runs
# creating a file took about 660 µs under /tmp and 20-120 µs under /var/tmp (same disk).
WORK_PARENT = "/var/tmp" if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK) else None


def parse_args(argv: Sequence[str] | None) -> Settings:
    """Command line to settings."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark this project against MapProxy 7.0.0 (docs/performance.md).",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds per workload")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument("--duration", type=float, help="seconds per load run (10, quick 2)")
    parser.add_argument(
        "--only", default=",".join(ALL_WORKLOADS), help="comma-separated workloads, e.g. W1,W3"
    )
    parser.add_argument(
        "--projects",
        choices=("both", "this", "ref"),
        default="both",
        help="which implementations to measure (ratios need both)",
    )
    parser.add_argument(
        "--ref-venv",
        type=Path,
        default=Path(os.environ.get("MAPPROXY_REF_VENV", "/work/ref-venv")),
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument(
        "--loader",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    parser.add_argument(
        "--work-dir", type=Path, help="scratch directory (default: a new dir in /var/tmp)"
    )
    parser.add_argument(
        "--no-upstream-memo",
        action="store_true",
        help="render every upstream GetMap anew (the upstream then competes for the CPU)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="Markdown file for the results block (default docs/performance.md; "
        "--quick: results.md in the work directory)",
    )
    args = parser.parse_args(argv)
    only = tuple(name.strip().upper() for name in args.only.split(",") if name.strip())
    unknown = sorted(set(only) - set(ALL_WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads: {', '.join(unknown)}")
    projects: list[Project] = []
    if args.projects in ("both", "this"):
        projects.append(this_project())
    if args.projects in ("both", "ref"):
        reference = reference_project(args.ref_venv)
        if not (reference.bin_dir / "gunicorn").exists():
            parser.error(
                f"no reference MapProxy with gunicorn in {args.ref_venv}: "
                "run scripts/install-reference.sh (or benchmarks/run.sh)"
            )
        projects.append(reference)
    loader = args.loader
    if loader == "auto":
        loader = "wrk" if shutil.which("wrk") else "python"
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="mapproxy-bench-", dir=WORK_PARENT))
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o755)  # nginx workers read the tiles
    output = args.output or (work_dir / "results.md" if args.quick else DEFAULT_OUTPUT)
    return Settings(
        quick=args.quick,
        reps=args.reps or (1 if args.quick else 3),
        duration_seconds=args.duration or (2.0 if args.quick else 10.0),
        workloads=only,
        projects=tuple(projects),
        workers=args.workers,
        connections=args.connections,
        loader=loader,
        work_dir=work_dir.resolve(),
        output=output.resolve(),
        seed_timeout_seconds=60.0 if args.quick else 300.0,
        upstream_memo=not args.no_upstream_memo,
    )


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite, print the table, write the report."""
    settings = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every server started.
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_signal)
    machine = machine_summary()
    log(f"work directory {settings.work_dir}; {settings.describe()}")
    try:
        results = run_suite(settings)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    table = markdown_table(results)
    print(table)
    write_report(
        results,
        settings.output,
        settings.describe(),
        machine,
        chart_name=settings.output.stem + ".png",
    )
    log(f"report written to {settings.output}")
    return 0
