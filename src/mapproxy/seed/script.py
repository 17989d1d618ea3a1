"""The ``mapproxy-seed`` console script: seed and clean up caches from a seed.yaml."""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import logging
import logging.config
import optparse
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from copy import copy
from typing import Any

from mapproxy.config import load_configuration
from mapproxy.config.build import ConfigBuilder
from mapproxy.errors import ConfigurationError
from mapproxy.seed.cleanup import cleanup_task
from mapproxy.seed.config import (
    CleanupTask,
    SeedConfigurationError,
    SeedingConfiguration,
    SeedTask,
    TaskBase,
    load_seed_conf,
)
from mapproxy.seed.failures import tiles_file_tasks, write_failed_tiles
from mapproxy.seed.progress import ProgressLog, ProgressStore, timestamp
from mapproxy.seed.ratelimit import RateLimits
from mapproxy.seed.seeder import (
    FailedTiles,
    RetryOptions,
    SeedAborted,
    TooManyFailures,
    seed_task,
    seed_tiles,
)
from mapproxy.util.filelock import exclusive_file_lock

DEFAULT_PROGRESS_FILE = ".mapproxy_seed_progress"
CACHE_LOCK_FILE = ".mapproxy_seed.lck"
_DURATION = re.compile(r"^(\d*\.?\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# additions to MapProxy's exit codes (0-3), see docs/compatibility.md
EXIT_TOO_MANY_FAILURES = 4  # --max-failures reached, the run was aborted
EXIT_FAILED_TILES = 5  # the run ended, but some meta tiles failed after all retries


def parse_duration(value: str) -> float:
    """Seconds of ``120s``, ``15m``, ``0.5h``, ``3d``; raises ValueError."""
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(value)
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _check_duration(option: optparse.Option, opt: str, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise optparse.OptionValueError(
            f"option {opt}: invalid duration value: {value!r}, expected (10s, 15m, 0.5h, 3d, etc)"
        ) from None


class _Option(optparse.Option):
    TYPES = (*optparse.Option.TYPES, "duration")
    TYPE_CHECKER = copy(optparse.Option.TYPE_CHECKER)
    TYPE_CHECKER["duration"] = _check_duration


def _parser() -> optparse.OptionParser:
    parser = optparse.OptionParser(
        usage="%prog [options] seed_conf", prog="mapproxy-seed", option_class=_Option
    )
    add = parser.add_option
    add(
        "-q",
        "--quiet",
        action="count",
        dest="quiet",
        default=0,
        help="reduce number of messages to stdout, repeat to disable progress output",
    )
    add("-s", "--seed-conf", dest="seed_file", default=None, help="seed configuration")
    add("-f", "--proxy-conf", dest="conf_file", default=None, help="proxy configuration")
    add(
        "-c",
        "--concurrency",
        type="int",
        dest="concurrency",
        default=2,
        help="number of parallel seed processes",
    )
    add(
        "-n",
        "--dry-run",
        action="store_true",
        dest="dry_run",
        default=False,
        help="do not seed, just print output",
    )
    add(
        "-l",
        "--skip-geoms-for-last-levels",
        type="int",
        dest="geom_levels",
        default=0,
        metavar="N",
        help="do not check for intersections between tiles and seed geometries"
        " on the last N levels",
    )
    add(
        "--skip-uncached",
        action="store_true",
        dest="skip_uncached",
        default=False,
        help="only treat tiles which are already present in the cache. This can be used"
        " with the configuration entry `refresh_before` to refresh only the existing cache.",
    )
    add(
        "--summary",
        action="store_true",
        dest="summary",
        default=False,
        help="print summary with all seeding tasks and exit. does not seed anything.",
    )
    add(
        "-i",
        "--interactive",
        action="store_true",
        dest="interactive",
        default=False,
        help="print each task description and ask if it should be seeded",
    )
    add(
        "--seed",
        action="append",
        dest="seed_names",
        metavar="task1,task2,...",
        help="seed only the named tasks. cleanup is disabled unless --cleanup is used."
        " use ALL to select all tasks",
    )
    add(
        "--cleanup",
        action="append",
        dest="cleanup_names",
        metavar="task1,task2,...",
        help="cleanup only the named tasks. seeding is disabled unless --seed is used."
        " use ALL to select all tasks",
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
    add(
        "--progress-file",
        dest="progress_file",
        default=None,
        help="filename for storing the seed progress (for --continue option)",
    )
    add(
        "--duration",
        dest="duration",
        type="duration",
        default=None,
        help="stop seeding after (120s, 15m, 4h, 0.5d, etc)",
    )
    add(
        "--reseed-file",
        dest="reseed_file",
        default=None,
        metavar="FILE",
        help="start of last re-seed",
    )
    add(
        "--reseed-interval",
        dest="reseed_interval",
        type="duration",
        default=None,
        metavar="DURATION",
        help="only start seeding if --reseed-file is older then --reseed-interval",
    )
    add("--log-config", dest="logging_conf", default=None, help="logging configuration")
    add(
        "--max-retries",
        dest="max_retries",
        type="int",
        default=100,
        metavar="N",
        help="retry a failed meta tile at most N times (default 100)",
    )
    add(
        "--retry-delay",
        dest="retry_delay",
        type="float",
        default=2.0,
        metavar="SECONDS",
        help="first retry delay, doubled after each retry up to 600 s (default 2)",
    )
    add(
        "--rate-limit",
        dest="rate_limit",
        type="float",
        default=None,
        metavar="N",
        help="send at most N requests per second to each source, over all seed processes"
        " (no burst; a source's `seed: {rate_limit: N}` in the proxy configuration"
        " also applies, the lower rate wins)",
    )
    add(
        "--max-failures",
        dest="max_failures",
        type="int",
        default=None,
        metavar="N",
        help="abort with exit code 4 once N meta tiles failed after all retries"
        " (failed meta tiles are skipped until then; exit code 5 if the run ends"
        " with failed meta tiles)",
    )
    add(
        "--failed-tiles-file",
        dest="failed_tiles_file",
        default=None,
        metavar="FILE",
        help="write the tiles of failed meta tiles to FILE, one `cache grid z x y` line"
        " per tile (also when the run is aborted); implies skipping failed meta tiles",
    )
    add(
        "--tiles-file",
        dest="tiles_file",
        default=None,
        metavar="FILE",
        help="seed the missing tiles listed in FILE (`cache grid z x y` lines, as"
        " written by --failed-tiles-file) instead of the tasks of a seed configuration",
    )
    return parser


def _setup_logging(logging_conf: str | None) -> None:
    if logging_conf:
        logging.config.fileConfig(logging_conf, {"here": "./"})
        return
    logger = logging.getLogger("mapproxy")
    logger.setLevel(logging.WARNING)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)s - %(levelname)s - %(message)s"))
    logger.addHandler(handler)


def _split_names(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    names: list[str] = []
    for value in values:
        names += [name.strip() for name in value.split(",") if name.strip()]
    return names


def _format_time(timestamp: float) -> str:
    return str(datetime.datetime.fromtimestamp(timestamp))


def format_task(task: TaskBase) -> str:
    """The summary block of a task (``--summary``, ``-i`` and before seeding)."""
    if task.is_empty_coverage:
        # as MapProxy: the block of a task without coverage geometry says only this
        return f"  {task.name}:\n    Empty coverage given for this task\n    Skipped"
    verb = "Seeding" if isinstance(task, SeedTask) else "Cleaning up"
    srs = task.grid.srs.code
    ll = ", ".join(f"{v:.5f}" for v in task.ll_bbox)
    lines = [
        f"  {task.name}:",
        f"    {verb} cache '{task.cache_name}' with grid '{task.grid_name}' in {srs}",
        f"    Limited to coverage in: {ll} (EPSG:4326)",
        f"    Levels: {task.levels}",
    ]
    if isinstance(task, SeedTask):
        if task.explicit_refresh and task.refresh_timestamp is not None:
            lines.append(
                f"    Overwriting: tiles older than {_format_time(task.refresh_timestamp)}"
            )
        else:
            lines.append("    Overwriting: all tiles")
    elif isinstance(task, CleanupTask):
        if task.remove_all:
            lines.append("    Remove: all tiles")
        else:
            lines.append(f"    Remove: tiles older than {_format_time(task.remove_timestamp)}")
    return "\n".join(lines)


def _ask(question: str) -> bool:
    while True:
        answer = input(question).strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False


@contextlib.contextmanager
def _cache_lock(task: TaskBase, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    cache_id = getattr(task.tile_manager.cache, "lock_cache_id", task.cache_name)
    digest = hashlib.md5(str(cache_id).encode("utf-8")).hexdigest()
    base, ext = os.path.splitext(os.path.abspath(CACHE_LOCK_FILE))
    with exclusive_file_lock(f"{base}-{digest}{ext}"):
        yield


def _run_with_duration(argv: Sequence[str], duration: float) -> int:
    """Run ourselves without ``--duration``; SIGINT the child when the time is up."""
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--duration":
            skip = True
            continue
        if arg.startswith("--duration="):
            continue
        args.append(arg)
    child = subprocess.Popen([sys.executable, "-m", "mapproxy.seed.script", *args])
    deadline = time.monotonic() + duration
    try:
        while child.poll() is None:
            if time.monotonic() >= deadline:
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.terminate()
                break
            time.sleep(1)
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
    return child.wait()


def _check_reseed(options: Any, progress_file: str | None) -> bool:
    """False if the reseed file is younger than the interval (no need to seed)."""
    path = options.reseed_file
    if not os.path.exists(path):
        with open(path, "w"):
            pass
        return True
    if progress_file is None or os.path.exists(progress_file):
        return True
    if options.reseed_interval is not None:
        age = time.time() - os.path.getmtime(path)
        if age < options.reseed_interval:
            print("no need for re-seeding")
            return False
    os.utime(path)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mapproxy-seed``; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    options, args = parser.parse_args(args_list)
    if options.tiles_file:
        if options.seed_file or args:
            parser.error("--tiles-file replaces the seed configuration, give only one of them")
    elif not options.seed_file:
        if len(args) != 1:
            parser.print_help()
            return 1
        options.seed_file = args[0]
    if not options.conf_file:
        parser.error("missing mapproxy configuration -f/--proxy-conf")
    if options.rate_limit is not None and options.rate_limit <= 0:
        parser.error("option --rate-limit: must be greater than 0")
    if options.max_failures is not None and options.max_failures < 1:
        parser.error("option --max-failures: must be at least 1")

    _setup_logging(options.logging_conf)
    if options.duration is not None:
        return _run_with_duration(args_list, options.duration)
    if not sys.stdout.isatty() and options.quiet == 0:
        options.quiet = 1

    progress_file = None
    if options.continue_seed or options.progress_file:
        progress_file = options.progress_file or DEFAULT_PROGRESS_FILE
    if options.reseed_file and not _check_reseed(options, progress_file):
        return 1

    failed = None
    if options.max_failures is not None or options.failed_tiles_file:
        failed = FailedTiles(options.max_failures)
    try:
        if options.tiles_file:
            return _run_tiles_file(options, failed)
        return _run(options, progress_file, failed)
    except KeyboardInterrupt:
        print("\nexiting...")
        return 2
    finally:
        if failed is not None and options.failed_tiles_file:
            write_failed_tiles(options.failed_tiles_file, failed)


def _load(options: Any) -> SeedingConfiguration | int:
    conf_file = options.conf_file
    if not os.path.exists(conf_file):
        # as in the reference: a missing file is not a configuration error
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.path.abspath(conf_file))
    try:
        proxy_config = load_configuration(conf_file)
        builder = ConfigBuilder(proxy_config, seed=True)
    except ConfigurationError as error:
        print(f"ERROR: {error}")
        return 2
    if options.tiles_file:
        seed_conf: dict[str, Any] = {}
    else:
        try:
            seed_conf = load_seed_conf(options.seed_file)
        except SeedConfigurationError as error:
            print(f"error in configuration: {error}")
            return 2
    return SeedingConfiguration(seed_conf, proxy_config, builder)


def _rate_limits(options: Any, config: SeedingConfiguration) -> RateLimits:
    per_source = {}
    for name, source in config.proxy_config.sources.items():
        seed_conf = getattr(source, "seed", None)
        if seed_conf is not None and seed_conf.rate_limit is not None:
            per_source[str(name)] = float(seed_conf.rate_limit)
    return RateLimits(options.rate_limit, per_source)


def _limit_rates(limits: RateLimits, config: SeedingConfiguration, task: TaskBase) -> None:
    refs = config.proxy_config.caches[task.cache_name].sources
    names: list[str | None] = []
    if isinstance(refs, list):
        names = [str(ref).partition(":")[0] for ref in refs]
    limits.apply(task.tile_manager, names)


def _finish_failures(failed: FailedTiles | None) -> int:
    if failed is None or not failed.meta_tiles:
        return 0
    print(
        f"{failed.meta_tiles} meta tiles ({len(failed.tiles)} tiles) failed",
        file=sys.stderr,
    )
    return EXIT_FAILED_TILES


def _selection(
    options: Any, config: SeedingConfiguration
) -> tuple[list[str] | None, list[str] | None] | int:
    seed_names = _split_names(options.seed_names)
    cleanup_names = _split_names(options.cleanup_names)
    if seed_names is not None and cleanup_names is None:
        cleanup_names = []
    if cleanup_names is not None and seed_names is None:
        seed_names = []
    result: list[list[str] | None] = []
    for kind, names, available in (
        ("seed", seed_names, config.seed_names),
        ("cleanup", cleanup_names, config.cleanup_names),
    ):
        if names is None or "ALL" in names:
            result.append(None)
            continue
        unknown = [name for name in names if name not in available]
        if unknown:
            print(f"unknown {kind} tasks: {', '.join(unknown)}")
            print(f"available {kind} tasks: {', '.join(available)}")
            return 1
        result.append(names)
    return result[0], result[1]


def _run(options: Any, progress_file: str | None, failed: FailedTiles | None) -> int:
    loaded = _load(options)
    if isinstance(loaded, int):
        return loaded
    config = loaded
    selection = _selection(options, config)
    if isinstance(selection, int):
        return selection
    seed_names, cleanup_names = selection
    try:
        seeds = config.seed_tasks(seed_names)
        cleanups = config.cleanup_tasks(cleanup_names)
    except SeedConfigurationError as error:
        print(f"error in configuration: {error}")
        return 2
    except ConfigurationError as error:
        print(f"ERROR: {error}")
        return 2

    if options.summary:
        print("========== Seeding tasks ==========")
        for seed in seeds:
            print(format_task(seed))
        print("========== Cleanup tasks ==========")
        for cleanup in cleanups:
            print(format_task(cleanup))
        return 0

    if options.interactive:
        seeds = _select(seeds, "seeding", "    Seed this task (y/n)? ")
        cleanups = _select(cleanups, "cleanup", "    Cleanup this task (y/n)? ")

    store = ProgressStore(progress_file, load=options.continue_seed) if progress_file else None
    progress = ProgressLog(
        verbose=options.quiet == 0,
        silent=options.quiet >= 2,
        interval=1.0 if options.quiet == 0 else 30.0,
    )
    retry = RetryOptions(max_retries=options.max_retries, delay_seconds=options.retry_delay)
    display = _display_path(options.conf_file)
    limits = _rate_limits(options, config)

    def run_tasks() -> None:
        if seeds:
            print("========== Seeding tasks ==========")
            print(f"Start seeding process ({_plural(len(seeds))})")
            for seed in seeds:
                print(format_task(seed))
                if _skip_empty(seed):
                    continue
                _limit_rates(limits, config, seed)
                with _cache_lock(seed, options.use_cache_lock):
                    seed_task(
                        seed,
                        progress,
                        concurrency=options.concurrency,
                        dry_run=options.dry_run,
                        skip_geoms_for_last_levels=options.geom_levels,
                        skip_uncached=options.skip_uncached,
                        retry=retry,
                        store=store,
                        failed=failed,
                    )
        if cleanups:
            print("========== Cleanup tasks ==========")
            print(f"Start cleanup process ({_plural(len(cleanups))})")
            for cleanup in cleanups:
                print(format_task(cleanup))
                if _skip_empty(cleanup):
                    continue
                with _cache_lock(cleanup, options.use_cache_lock):
                    cleanup_task(
                        cleanup,
                        progress,
                        dry_run=options.dry_run,
                        skip_geoms_for_last_levels=options.geom_levels,
                        display_path=display,
                        store=store,
                    )

    stopped = _stopped_exit_code(run_tasks)
    if stopped is not None:
        return stopped
    if store is not None:
        store.remove()
    return _finish_failures(failed)


def _run_tiles_file(options: Any, failed: FailedTiles | None) -> int:
    loaded = _load(options)
    if isinstance(loaded, int):
        return loaded
    config = loaded
    try:
        tasks = tiles_file_tasks(options.tiles_file, config)
    except SeedConfigurationError as error:
        print(f"error in configuration: {error}")
        return 2
    retry = RetryOptions(max_retries=options.max_retries, delay_seconds=options.retry_delay)
    limits = _rate_limits(options, config)
    print("========== Seeding tiles ==========")
    print(f"Start seeding process ({_plural(len(tasks))})")

    def run_tasks() -> None:
        for task, coords in tasks:
            print(f"  {task.name}:")
            print(
                f"    Seeding cache '{task.cache_name}' with grid '{task.grid_name}'"
                f" in {task.grid.srs.code}"
            )
            print(f"    Tiles: {len(coords)}")
            _limit_rates(limits, config, task)
            with _cache_lock(task, options.use_cache_lock):
                meta_tiles = seed_tiles(
                    task,
                    coords,
                    concurrency=options.concurrency,
                    dry_run=options.dry_run,
                    retry=retry,
                    failed=failed,
                )
            if options.quiet < 2:
                print(f"{timestamp()} {meta_tiles} meta tiles done")

    stopped = _stopped_exit_code(run_tasks)
    if stopped is not None:
        return stopped
    return _finish_failures(failed)


def _stopped_exit_code(run_tasks: Callable[[], None]) -> int | None:
    """Run ``run_tasks``; the exit code when Ctrl-C, too many failures or an abort stopped
    it (after saying why), None when it ran through."""
    try:
        run_tasks()
    except KeyboardInterrupt:
        print("\ninterrupted...")
        return 3
    except TooManyFailures as error:
        print(f"\n{error}", file=sys.stderr)
        return EXIT_TOO_MANY_FAILURES
    except SeedAborted as error:
        print(f"\n{error}", file=sys.stderr)
        return 1
    return None


def _select(tasks: list[Any], kind: str, question: str) -> list[Any]:
    """The tasks the user confirms (``-i``); tasks with empty coverages are asked for too."""
    print(f"========== Select {kind} tasks ==========")
    selected = []
    for task in tasks:
        print(format_task(task))
        if _ask(question):
            selected.append(task)
    return selected


def _skip_empty(task: TaskBase) -> bool:
    # format_task has printed "Empty coverage given for this task" / "Skipped"
    return task.is_empty_coverage


def _plural(count: int) -> str:
    return f"{count} task" if count == 1 else f"{count} tasks"


def _display_path(conf_file: str) -> Any:
    """Paths shown as the reference shows them: relative if the config path was."""
    if os.path.isabs(conf_file):
        return lambda path: path
    return lambda path: os.path.relpath(path)


if __name__ == "__main__":
    sys.exit(main())
