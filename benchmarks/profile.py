"""Profile one workload of this project in-process with cProfile (no gunicorn, no wrk).

``python -m benchmarks.profile W1|W2|W3|W6 [--requests N] [--top N]`` starts the synthetic
upstream, builds the app from the benchmark config, warms the cache, then runs N requests
of the workload through werkzeug's test client under cProfile and prints the functions with
the most own time and the most cumulative time. For the whole server stack use py-spy
(``bench`` extra): ``py-spy record -o w1.svg --pid <gunicorn worker pid>`` while the suite runs.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks import run, workloads


def request_paths(workload: str) -> list[str]:
    """The request list of a workload (W3: both SRS)."""
    if workload == "W1":
        return workloads.w1_paths("wmts", workloads.seeded_tiles(7))
    if workload == "W2":
        return workloads.w2_paths(seed=7, count=200)
    if workload == "W3":
        return workloads.w3_paths("EPSG:4326") + workloads.w3_paths("EPSG:25832")
    raise ValueError(workload)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("workload", choices=("W1", "W2", "W3", "W6"))
    parser.add_argument("--requests", type=int, default=0, help="default: W1 3000, else 40")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only functions whose path matches")
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="mapproxy-profile-"))
    profiler = cProfile.Profile()
    try:
        if args.workload == "W6":
            config = work_dir / "large.yaml"
            config.write_text(workloads.large_config())
            from mapproxy.wsgiapp import make_wsgi_app

            profiler.runcall(make_wsgi_app, str(config))
        else:
            _profile_requests(args, work_dir, profiler)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    stats = pstats.Stats(profiler)
    restrictions: list[str | int] = [args.match] if args.match else []
    stats.sort_stats("tottime").print_stats(*restrictions, args.top)
    stats.sort_stats("cumulative").print_stats(*restrictions, args.top)
    return 0


def _profile_requests(args: argparse.Namespace, work_dir: Path, profiler: cProfile.Profile) -> None:
    from werkzeug.test import Client

    from mapproxy.wsgiapp import make_wsgi_app

    upstream = run.Upstream(work_dir, processes=2)
    try:
        run.render_configs(work_dir, upstream.url)
        client = Client(make_wsgi_app(str(work_dir / "mapproxy.yaml")))
        paths = request_paths(args.workload)
        count = args.requests or (3000 if args.workload == "W1" else 40)
        if args.workload != "W2":  # warm the cache: profile hits, not upstream fetches
            for path in paths[:count]:
                client.get(path)
        else:
            upstream.set_latency(20)
        started = time.perf_counter()
        profiler.enable()
        for index in range(count):
            response = client.get(paths[index % len(paths)])
            if response.status_code != 200:
                print(f"{paths[index % len(paths)]}: {response.status_code}")
        profiler.disable()
        elapsed = time.perf_counter() - started
        print(f"{count} requests in {elapsed:.2f} s ({count / elapsed:.0f}/s with profiling)")
    finally:
        upstream.stop()


if __name__ == "__main__":
    raise SystemExit(main())
