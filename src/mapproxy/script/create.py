"""``mapproxy-util create``: write example configurations, a WSGI module or a log.ini."""

from __future__ import annotations

import argparse
import os
import string
import sys
from collections.abc import Callable
from importlib import resources

TEMPLATE_PACKAGE = "mapproxy.script"
TEMPLATE_DIR = "templates"

# base-config: target file name -> template file name
BASE_CONFIG_FILES = {
    "mapproxy.yaml": "mapproxy.yaml",
    "seed.yaml": "seed.yaml",
    "full_example.yaml": "full_example.yaml",
    "full_seed_example.yaml": "full_seed_example.yaml",
}


def template_text(name: str) -> str:
    """The text of the packaged template file ``name``."""
    template = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_DIR, name)
    return template.read_text(encoding="utf-8")


def python_string(value: str) -> str:
    """A Python literal for ``value``: a raw string where possible (readable Windows paths)."""
    if "'" not in value and "\n" not in value and not value.endswith("\\"):
        return f"r'{value}'"
    return repr(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mapproxy-util create",
        usage="%(prog)s [options] [-l] -t TEMPLATE [-f mapproxy.yaml] [--force] DEST",
        description="Create example configurations.",
    )
    parser.add_argument(
        "-l",
        "--list-templates",
        action="store_true",
        default=False,
        help="list all available configuration templates",
    )
    parser.add_argument(
        "-t", "--template", dest="template", help="create a configuration with this template"
    )
    parser.add_argument(
        "-f",
        "--mapproxy-conf",
        dest="mapproxy_conf",
        metavar="MAPPROXY_CONF",
        help="the MapProxy configuration to use for the wsgi-app template",
    )
    parser.add_argument(
        "--force", action="store_true", default=False, help="overwrite existing files"
    )
    parser.add_argument("dest", nargs="?", metavar="DEST", help="destination file or directory")
    return parser


class CreateError(Exception):
    """A user error; the message is printed after ``ERROR:``."""

    def __init__(self, message: str, show_help: bool = False) -> None:
        super().__init__(message)
        self.show_help = show_help


def _check_targets(paths: list[str], force: bool) -> None:
    if force:
        return
    for path in paths:
        if os.path.exists(path):
            raise CreateError(f"{path} already exists, use --force")


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def create_base_config(dest: str, options: argparse.Namespace) -> None:
    """Write mapproxy.yaml, seed.yaml and the two full examples into directory ``dest``."""
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise CreateError(f"{dest} is not a directory")
    targets = {os.path.join(dest, name): tpl for name, tpl in BASE_CONFIG_FILES.items()}
    _check_targets(list(targets), options.force)
    os.makedirs(dest, exist_ok=True)
    for path, tpl in targets.items():
        print(f"writing {path}")
        _write(path, template_text(tpl))


def create_wsgi_app(dest: str, options: argparse.Namespace) -> None:
    """Write a WSGI module that builds the app for the ``-f`` configuration."""
    if not options.mapproxy_conf:
        raise CreateError("template requires --mapproxy-conf option", show_help=True)
    if not os.path.splitext(dest)[1]:
        dest += ".py"
    conf = os.path.abspath(options.mapproxy_conf)
    log_ini = os.path.join(os.path.dirname(conf), "log.ini")
    text = string.Template(template_text("wsgi_app.txt")).substitute(
        mapproxy_conf=python_string(conf), log_ini=python_string(log_ini)
    )
    _check_targets([dest], options.force)
    print(f"writing MapProxy app to {dest}")
    _write(dest, text)


def create_log_ini(dest: str, options: argparse.Namespace) -> None:
    """Write an example logging configuration for ``logging.config.fileConfig``."""
    _check_targets([dest], options.force)
    print(f"writing logging configuration to {dest}")
    _write(dest, template_text("log.ini"))


TEMPLATES: dict[str, Callable[[str, argparse.Namespace], None]] = {
    "base-config": create_base_config,
    "wsgi-app": create_wsgi_app,
    "log-ini": create_log_ini,
}


def create_command(argv: list[str]) -> int:
    """Run ``mapproxy-util create``; returns the exit code."""
    parser = _parser()
    options = parser.parse_args(argv)
    if options.list_templates:
        print("Available templates:")
        for name in TEMPLATES:
            print(f"  {name}")
        return 1
    try:
        if not options.template:
            raise CreateError("no template given (use -t TEMPLATE, -l lists them)", show_help=True)
        create = TEMPLATES.get(options.template)
        if create is None:
            raise CreateError(f"unknown template {options.template}")
        if not options.dest:
            raise CreateError("template requires destination argument")
        create(options.dest, options)
    except CreateError as error:
        if error.show_help:
            parser.print_help()
        sys.stdout.flush()
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0
