"""``mapproxy-util defrag-compact-cache``: rewrite compact cache bundles with unused space."""

from __future__ import annotations

import datetime
import optparse
import os
import sys
from collections.abc import Iterator

from mapproxy.cache.compact import Bundle, CompactCache
from mapproxy.config import load_configuration
from mapproxy.config.build import ConfigBuilder
from mapproxy.errors import ConfigurationError

_MB = 1024 * 1024


def _parser() -> optparse.OptionParser:
    parser = optparse.OptionParser("%prog defrag-compact [options] -f mapproxy_conf")
    parser.prog = "mapproxy-util"
    parser.add_option("-f", "--mapproxy-conf", dest="mapproxy_conf", help="MapProxy configuration.")
    parser.add_option(
        "--min-percent",
        type="float",
        default=10.0,
        help=(
            "Only defrag if fragmentation is larger (10 means at least 10% of the file "
            "does not have to be used)"
        ),
    )
    parser.add_option(
        "--min-mb",
        type="float",
        default=1.0,
        help=(
            "Only defrag if fragmentation is larger (2 means at least 2MB the file does "
            "not have to be used)"
        ),
    )
    parser.add_option(
        "-n",
        "--dry-run",
        action="store_true",
        default=False,
        help="Do not de-fragment, only print output",
    )
    parser.add_option(
        "--caches",
        dest="cache_names",
        metavar="cache1,cache2,...",
        help="only defragment the named caches",
    )
    return parser


def _log(message: str) -> None:
    now = datetime.datetime.now()
    print(f"[{now:%Y-%m-%d %H:%M:%S},{now.microsecond // 1000:03d}] {message}", flush=True)


def defrag_command(args: list[str]) -> int:
    """Run ``defrag-compact-cache`` with the arguments after the command name."""
    parser = _parser()
    options, _ = parser.parse_args(args)
    if not options.mapproxy_conf:
        parser.print_help()
        return 1
    _log(f"reading: {os.path.abspath(options.mapproxy_conf)}")
    try:
        config = load_configuration(options.mapproxy_conf)
        builder = ConfigBuilder(config)
        compact_names = [
            name
            for name in config.caches
            if getattr(config.cache_backends.get(name), "type", None) == "compact"
        ]
        names = compact_names
        if options.cache_names:
            names = [name.strip() for name in options.cache_names.split(",") if name.strip()]
            unknown = [name for name in names if name not in compact_names]
            if unknown:
                print(f"unknown caches: {', '.join(unknown)}")
                print(f"available compact caches: {', '.join(compact_names)}")
                return 1
        caches = {name: list(_compact_caches(builder, name)) for name in names}
    except ConfigurationError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    for name, stores in caches.items():
        bundles = [bundle for store in stores for bundle in store.bundles()]
        for number, bundle in enumerate(bundles, start=1):
            _defrag_bundle(name, number, len(bundles), bundle, options)
    return 0


def _compact_caches(builder: ConfigBuilder, name: str) -> Iterator[CompactCache]:
    for tile_manager in builder.cache(name).tile_managers:
        if isinstance(tile_manager.cache, CompactCache):
            yield tile_manager.cache


def _defrag_bundle(
    name: str, number: int, total: int, bundle: Bundle, options: optparse.Values
) -> None:
    with bundle.lock():
        usage = bundle.usage()
        percent = usage.unused_percent
        needed = percent >= options.min_percent and usage.unused_bytes >= options.min_mb * _MB
        action = "defragmenting" if needed else "skipping"
        _log(
            f"{name}: {number:3d}/{total} ({bundle.bundle_path}) fragmentation is "
            f"{percent:.1f}% ({usage.unused_bytes // 1024}kb) - {action}"
        )
        if needed and not options.dry_run:
            bundle.defragment()
