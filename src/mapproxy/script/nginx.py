"""``mapproxy-util nginx-config``: nginx serves cached tiles from file caches, the app the rest.

The generated ``map``/``upstream``/``server`` blocks go into nginx's ``http {}`` context.
Tile URLs whose file path nginx can compute from the URL alone get a location that
answers from the cache directory with ``try_files`` and falls back to MapProxy (behind
``proxy_pass``) for misses. Mappable: WMTS RESTful (default template) and ``/tiles`` for
grids numbered from the north-west resp. in the grid's own order, TMS for grids with a
south-west origin, each for file caches with the ``tc``, ``mp`` or ``tms`` layout.
Everything else (other layouts, row flips, dimensions, ``refresh_before``, other cache
types, non-image formats) is always answered by the app.
"""

from __future__ import annotations

import optparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mapproxy.errors import ConfigurationError
from mapproxy.layer.base import TileLayer
from mapproxy.service.fast_tiles import fast_cache
from mapproxy.service.tms import TileService
from mapproxy.service.wmts.service import DEFAULT_TEMPLATE, WMTSRestService
from mapproxy.wsgiapp import MapProxyApp, build_app

_LAYOUTS = ("tc", "mp", "tms")
_NUMBER = "0|[1-9][0-9]{0,8}"
_REGEX_SPECIALS = "\\$"  # regex escapes and the end anchor, literal for nginx

# (digits of the number, groups) -> path part, for the zero-padded layouts
_TC_MAP = [
    (r"~^([0-9])$", "000/000/00$1"),
    (r"~^([0-9]{2})$", "000/000/0$1"),
    (r"~^([0-9]{3})$", "000/000/$1"),
    (r"~^([0-9])([0-9]{3})$", "000/00$1/$2"),
    (r"~^([0-9]{2})([0-9]{3})$", "000/0$1/$2"),
    (r"~^([0-9]{3})([0-9]{3})$", "000/$1/$2"),
    (r"~^([0-9])([0-9]{3})([0-9]{3})$", "00$1/$2/$3"),
    (r"~^([0-9]{2})([0-9]{3})([0-9]{3})$", "0$1/$2/$3"),
    (r"~^([0-9]{3})([0-9]{3})([0-9]{3})$", "$1/$2/$3"),
]
_MP_MAP = [
    (r"~^([0-9])$", "0000/000$1"),
    (r"~^([0-9]{2})$", "0000/00$1"),
    (r"~^([0-9]{3})$", "0000/0$1"),
    (r"~^([0-9]{4})$", "0000/$1"),
    (r"~^([0-9])([0-9]{4})$", "000$1/$2"),
    (r"~^([0-9]{2})([0-9]{4})$", "00$1/$2"),
    (r"~^([0-9]{3})([0-9]{4})$", "0$1/$2"),
    (r"~^([0-9]{4})([0-9]{4})$", "$1/$2"),
]


@dataclass(frozen=True, slots=True)
class StaticRoute:
    """One tile URL pattern nginx answers from a cache directory.

    ``url_prefix`` precedes ``/{z}/{x}/{y}.{extension}``; ``levels`` maps published to
    internal levels.
    """

    url_prefix: str
    extension: str
    directory: str
    layout: str
    levels: tuple[int, ...]
    content_type: str
    cache_control: str
    layer_name: str


def static_routes(app: MapProxyApp, exclude: Iterable[str] = ()) -> list[StaticRoute]:
    """The tile routes of ``app`` nginx can serve from the file caches."""
    excluded = set(exclude)
    routes: list[StaticRoute] = []
    rest = app.handlers.get("wmts")
    if isinstance(rest, WMTSRestService) and rest.template == DEFAULT_TEMPLATE:
        for (layer_name, grid_name), tile_set in rest.layers.tile_sets.items():
            if tile_set.is_sw:  # WMTS rows count from the north
                continue
            levels = tuple(range(tile_set.layer.grid.levels))
            route = _route(
                f"/wmts/{layer_name}/{grid_name}", tile_set.layer, levels, rest.max_tile_age_seconds
            )
            if route is not None and layer_name not in excluded:
                routes.append(route)
    tms = app.handlers.get("tms")
    if isinstance(tms, TileService):
        for tms_set in tms.tile_sets():
            layer = tms_set.layer
            if layer.name in excluded:
                continue
            if tms_set.is_sw:
                route = _route(
                    f"/tms/1.0.0/{tms_set.path}",
                    layer,
                    tms_set.tms_levels,
                    tms.max_tile_age_seconds,
                )
                if route is not None:
                    routes.append(route)
            if tms.origin is None:
                route = _route(
                    f"/tiles/{tms_set.path}", layer, tms_set.tile_levels, tms.max_tile_age_seconds
                )
                if route is not None:
                    routes.append(route)
    return routes


def _route(
    url_prefix: str, layer: TileLayer, levels: tuple[int, ...], max_age_seconds: int
) -> StaticRoute | None:
    found = fast_cache(layer)
    if found is None:
        return None
    cache, _ = found
    if cache.directory_layout not in _LAYOUTS or cache.file_ext != layer.extension:
        return None
    return StaticRoute(
        url_prefix=url_prefix,
        extension=layer.extension,
        directory=cache.cache_dir,
        layout=cache.directory_layout,
        levels=levels,
        content_type=layer.format.split(";", 1)[0].strip(),
        cache_control=f"public, max-age={max_age_seconds}, s-maxage={max_age_seconds}",
        layer_name=layer.name,
    )


def _quote(text: str, allowed: str = "") -> str:
    """An nginx string token in double quotes (``allowed``: specials meant literally)."""
    if any(char in text and char not in allowed for char in '"\\\n\r$'):
        raise ValueError(f"cannot quote {text!r} for nginx")
    return f'"{text}"'


def nginx_config(
    routes: Sequence[StaticRoute],
    app_address: str,
    listen: str = "80",
    server_name: str = "_",
    cors_origin: str | None = None,
) -> str:
    """nginx ``http {}`` content: maps, the app upstream and the server block."""
    out: list[str] = [
        "# Generated by mapproxy-util nginx-config: include in nginx's http {} context.",
        "# Cache hits come from the file caches; everything else goes to MapProxy.",
        "",
    ]
    layouts = {route.layout for route in routes}
    for layout, entries in (("tc", _TC_MAP), ("mp", _MP_MAP)):
        if layout not in layouts:
            continue
        for axis in ("x", "y"):
            out.append(f"map $mapproxy_{axis} $mapproxy_{layout}_{axis} {{")
            out.append('    default "";')
            out.extend(f'    "{pattern}" "{value}";' for pattern, value in entries)
            out.append("}")
    # Routes with the same level table share one map variable.
    level_maps: dict[tuple[int, tuple[int, ...]], int] = {}
    route_level_map: list[int] = []
    for route in routes:
        width = 1 if route.layout == "tms" else 2
        table = (width, route.levels)
        if table not in level_maps:
            index = level_maps[table] = len(level_maps)
            out.append(f"map $mapproxy_z $mapproxy_level{index} {{")
            out.append('    default "";')
            out.extend(
                f'    "{published}" "{internal:0{width}d}";'
                for published, internal in enumerate(route.levels)
            )
            out.append("}")
        route_level_map.append(level_maps[table])
    out += [
        "",
        "upstream mapproxy_app {",
        f"    server {app_address};",
        "}",
        "",
        "server {",
        f"    listen {listen};",
        f"    server_name {server_name};",
        "",
        "    location @mapproxy {",
        "        proxy_pass http://mapproxy_app;",
        "        proxy_set_header Host $http_host;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "    }",
        "    location / {",
        "        proxy_pass http://mapproxy_app;",
        "        proxy_set_header Host $http_host;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "    }",
    ]
    for route, index in zip(routes, route_level_map, strict=True):
        regex = (
            f"^{re.escape(route.url_prefix)}/(?<mapproxy_z>[0-9]+)/(?<mapproxy_x>{_NUMBER})"
            f"/(?<mapproxy_y>{_NUMBER})\\.{re.escape(route.extension)}$"
        )
        if route.layout == "tms":
            file_path = f"/$mapproxy_level{index}/$mapproxy_x/$mapproxy_y"
        else:
            layout = route.layout
            file_path = f"/$mapproxy_level{index}/$mapproxy_{layout}_x/$mapproxy_{layout}_y"
        out += [
            f"    # layer {route.layer_name}",
            f"    location ~ {_quote(regex, _REGEX_SPECIALS)} {{",
            f"        root {_quote(route.directory)};",
            "        types { }",
            f"        default_type {route.content_type};",
            # MapProxy answers 304 for any If-Modified-Since at or after the tile's time.
            "        if_modified_since before;",
            f"        add_header Cache-Control {_quote(route.cache_control)};",
        ]
        if cors_origin:
            out.append(f"        add_header Access-Control-Allow-Origin {_quote(cors_origin)};")
        out += [
            f'        try_files "{file_path}.{route.extension}" @mapproxy;',
            "    }",
        ]
    out.append("}")
    return "\n".join(out) + "\n"


def _parser() -> optparse.OptionParser:
    parser = optparse.OptionParser(
        "%prog nginx-config -f mapproxy.yaml [options]",
        description=(
            "Print an nginx configuration (for the http {} context) that serves cached "
            "tiles of file caches directly and passes everything else, and every miss, to "
            "MapProxy. Layers behind an authorization or decorate_img middleware must be "
            "excluded: nginx answers without asking the app."
        ),
    )
    parser.prog = "mapproxy-util"
    parser.add_option("-f", "--mapproxy-conf", dest="config", help="MapProxy configuration.")
    parser.add_option(
        "--app",
        default="127.0.0.1:8080",
        help="address of the MapProxy server (gunicorn), default %default",
    )
    parser.add_option("--listen", default="80", help="nginx listen address/port, default %default")
    parser.add_option("--server-name", default="_", help="nginx server_name, default %default")
    parser.add_option(
        "--exclude",
        action="append",
        default=[],
        metavar="LAYER",
        help="always pass this layer to the app (repeatable)",
    )
    return parser


def nginx_config_command(argv: Sequence[str]) -> int:
    """Run ``mapproxy-util nginx-config``; returns the exit code."""
    parser = _parser()
    options, args = parser.parse_args(list(argv))
    config = options.config or (args[0] if args else None)
    if not config:
        parser.print_help()
        return 2
    try:
        app = build_app(config)
    except ConfigurationError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    routes = static_routes(app, options.exclude)
    if not routes:
        print("WARNING: no tile layer can be served from the file caches", file=sys.stderr)
    try:
        text = nginx_config(
            routes, options.app, options.listen, options.server_name, app.cors_origin
        )
    except ValueError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0
