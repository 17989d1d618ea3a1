"""The ``mapproxy-util`` console script: dispatch to one sub-command per module."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from mapproxy import __version__

log = logging.getLogger("mapproxy.script.util")

CommandFunc = Callable[[list[str]], "int | None"]

PROG = "mapproxy-util"


@dataclass(frozen=True)
class Command:
    """One sub-command: a ``module:function`` path (None = not implemented yet) and help."""

    target: str | None
    help: str
    func: CommandFunc | None = None


# Order as listed by ``mapproxy-util --help``.
COMMANDS: dict[str, Command] = {
    "serve-develop": Command(
        "mapproxy.script.serve:serve_develop_command", "Run MapProxy development server."
    ),
    "serve-multiapp-develop": Command(
        "mapproxy.script.serve:serve_multiapp_develop_command",
        "Run MultiMapProxy development server.",
    ),
    "create": Command("mapproxy.script.create:create_command", "Create example configurations."),
    "scales": Command(
        "mapproxy.script.scales:scales_command", "Convert between scales and resolutions."
    ),
    "wms-capabilities": Command(
        "mapproxy.script.wms_capabilities:wms_capabilities_command", "Display WMS capabilites."
    ),
    "grids": Command(
        "mapproxy.script.grids:grids_command",
        "Display detailed informations for configured grids.",
    ),
    "export": Command("mapproxy.script.export:export_command", "Export existing caches."),
    "autoconfig": Command(
        "mapproxy.script.autoconfig:autoconfig_command",
        "Create config from WMS capabilities or a Geopackage file.",
    ),
    "defrag-compact-cache": Command(
        "mapproxy.script.defrag:defrag_command", "De-fragmentate compact caches."
    ),
    "gridconf-from-ogcapitilematrixset": Command(
        "mapproxy.script.gridconf:gridconf_command",
        "Export OGC API TileMatrixSet as MapProxy grid configuration.",
    ),
    "nginx-config": Command(
        "mapproxy.script.nginx:nginx_config_command",
        "Create an nginx config serving cached tiles from file caches.",
    ),
}


def register_command(name: str, spec: dict[str, Any] | CommandFunc, help_text: str = "") -> None:
    """Add a plugin command: ``spec`` is ``{'func': f, 'help': text}`` or the function itself.

    The function is called with the arguments that follow the command name.
    """
    if isinstance(spec, dict):
        func = spec["func"]
        help_text = spec.get("help", help_text)
    else:
        func = spec
    COMMANDS[name] = Command(target=None, help=help_text, func=func)


def load_plugins() -> None:
    """Call ``plugin_entrypoint()`` of every object registered in the ``mapproxy`` group."""
    for entry in entry_points(group="mapproxy"):
        try:
            plugin = entry.load()
            hook = getattr(plugin, "plugin_entrypoint", None)
            if callable(hook):
                hook()
        except Exception as error:  # a broken plugin must not break the other commands
            log.warning("could not load plugin %s: %s", entry.name, error)


def _is_available(name: str, command: Command) -> bool:
    if command.func is not None:
        return True
    return command.target is not None


def _resolve(command: Command) -> CommandFunc:
    if command.func is not None:
        return command.func
    assert command.target is not None
    module_name, _, attr = command.target.partition(":")
    func: CommandFunc = getattr(importlib.import_module(module_name), attr)
    return func


def print_usage(out: Any = None) -> None:
    """Print the usage line and the list of commands with their help texts."""
    out = out or sys.stdout
    print(f"Usage: {PROG} COMMAND [options]", file=out)
    print("", file=out)
    print("Commands:", file=out)
    width = max(len(name) for name in COMMANDS)
    for name, command in COMMANDS.items():
        print(f"  {name.ljust(width)}  {command.help}", file=out)
    print("", file=out)
    print(f"Run '{PROG} COMMAND --help' for the options of a command.", file=out)
    out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mapproxy-util``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    load_plugins()
    if not args or args[0] in ("-h", "--help"):
        print_usage()
        return 1
    if args[0] == "--version":
        print(f"MapProxy {__version__}")
        return 1
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        print_usage()
        print(f"ERROR: unknown command {name}", file=sys.stderr)
        return 1
    if not _is_available(name, command):
        print(f"ERROR: '{name}' is not implemented yet", file=sys.stderr)
        return 2
    try:
        result = _resolve(command)(rest)
    except KeyboardInterrupt:
        print("\nexiting...", file=sys.stderr)
        return 2
    return 0 if result is None else int(result)


if __name__ == "__main__":
    sys.exit(main())
