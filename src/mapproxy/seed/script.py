"""The ``mapproxy-seed`` console script (seeding itself is not implemented yet)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mapproxy-seed",
        usage="%(prog)s [options] seed_conf",
        description="Pre-create (seed) and remove (clean up) tiles of MapProxy caches.",
    )
    add = parser.add_argument
    add("-s", "--seed-conf", dest="seed_file", metavar="FILE", help="seed configuration")
    add("-f", "--proxy-conf", dest="conf_file", metavar="FILE", help="MapProxy configuration")
    add(
        "-c",
        "--concurrency",
        type=int,
        default=2,
        metavar="N",
        help="number of parallel seed processes",
    )
    add(
        "-n", "--dry-run", action="store_true", default=False, help="do not seed, just print output"
    )
    add(
        "-l",
        "--skip-geoms-for-last-levels",
        type=int,
        default=0,
        metavar="N",
        help="do not check for intersections between tiles and seed geometries"
        " on the last N levels",
    )
    add(
        "--skip-uncached",
        action="store_true",
        default=False,
        help="only treat tiles that are already cached",
    )
    add(
        "--summary",
        action="store_true",
        default=False,
        help="print summary with all seeding tasks and exit",
    )
    add(
        "-i",
        "--interactive",
        action="store_true",
        default=False,
        help="print each task description and ask if it should be seeded",
    )
    add(
        "--seed",
        action="append",
        dest="seed_only_names",
        metavar="task1,task2,...",
        help="only seed the listed seed tasks",
    )
    add(
        "--cleanup",
        action="append",
        dest="cleanup_only_names",
        metavar="task1,task2,...",
        help="only cleanup the listed cleanup tasks",
    )
    add(
        "--use-cache-lock",
        action="store_true",
        default=False,
        help="use locking to prevent multiple mapproxy-seed calls to seed the same cache",
    )
    add(
        "--continue",
        dest="continue_seed",
        action="store_true",
        default=False,
        help="continue an aborted seed progress",
    )
    add("--progress-file", metavar="FILE", help="filename for storing the seed progress")
    add("--duration", metavar="D", help="stop seeding after this duration (e.g. 15m, 2h)")
    add("--reseed-file", metavar="FILE", help="start of the last re-seed")
    add("--reseed-interval", metavar="D", help="only start seeding if the reseed file is older")
    add("--log-config", dest="logging_conf", metavar="FILE", help="logging configuration")
    add("-q", "--quiet", action="count", default=0, help="reduce the output")
    add("seed_conf", nargs="?", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mapproxy-seed``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    _parser().parse_known_args(args)
    print("ERROR: mapproxy-seed is not implemented yet in this version", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
