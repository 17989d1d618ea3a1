"""``mapproxy-util autoconfig``: configs from WMS capabilities or a GeoPackage."""

from __future__ import annotations

import copy
import datetime
import optparse
import os
import sqlite3
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import yaml

from mapproxy.config.build.grids import BUILTIN_GRIDS
from mapproxy.config.loader import load_configuration_files, load_yaml_file
from mapproxy.errors import ConfigurationError, HTTPClientError
from mapproxy.script.wms_capabilities import (
    CapabilitiesError,
    WMSCapabilities,
    WMSLayerInfo,
    error_text,
    fetch_document,
    parse_capabilities,
    with_capabilities_params,
)

# GeoPackage grids get this many levels, as in the reference
GEOPACKAGE_NUM_LEVELS = 19
_EXTEND = "__extend__"
_WILDCARD = "___"


class AutoconfigError(Exception):
    """Input or overwrite files that cannot be turned into a configuration."""


class _Dumper(yaml.SafeDumper):
    """Block style, but lists of scalars inline; ``None`` as an empty value; no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(item, (dict, list)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_none(dumper: yaml.SafeDumper, data: None) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:null", "")


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(type(None), _represent_none)


def dump_yaml(data: Any) -> str:
    """``data`` as YAML in the layout the reference writes (sorted keys)."""
    text: str = yaml.dump(data, Dumper=_Dumper, default_flow_style=False)
    return text


def header(source: str, command_line: Sequence[str]) -> str:
    """The comment block written before the generated YAML."""
    wrapped = " \\\n#    ".join(textwrap.wrap(" ".join(command_line)))
    return (
        "# MapProxy configuration automatically generated from:\n"
        f"#   {source}\n"
        "#\n"
        "# NOTE: The generated configuration can be highly inefficient,\n"
        "#       especially when multiple layers and caches are requested at once.\n"
        "#       Make sure you understand the generated configuration!\n"
        "#\n"
        f"# Created on {datetime.datetime.now()} with:\n"
        f"# {wrapped}\n\n"
    )


# --- overwrites ---------------------------------------------------------------------------


def update_config(conf: dict[str, Any], overwrites: Any, path: str = "") -> dict[str, Any]:
    """Merge ``overwrites`` into ``conf`` in place and return it.

    Plain keys first (dicts merge recursively, other values replace; ``key__extend__``
    appends to a list), then ``__all__`` into every entry, then wildcard keys
    (``___suffix`` / ``prefix___``) into every matching entry.
    """
    if overwrites is None:
        return conf
    if not isinstance(overwrites, dict):
        raise AutoconfigError(f"{path or 'overwrite'}: expected a mapping of overwrites")
    wildcards = []
    for key, value in overwrites.items():
        name = str(key)
        if name == "__all__":
            continue
        if name.startswith(_WILDCARD) or name.endswith(_WILDCARD):
            wildcards.append((name, value))
            continue
        if name.endswith(_EXTEND):
            target = name[: -len(_EXTEND)]
            existing = conf.get(target)
            if existing is None:
                conf[target] = copy.deepcopy(value)
            elif isinstance(existing, list) and isinstance(value, list):
                existing.extend(copy.deepcopy(value))
            else:
                raise AutoconfigError(f"{path}{name}: can only extend a list with a list")
        elif isinstance(value, dict) and isinstance(conf.get(key), dict):
            update_config(conf[key], value, f"{path}{name}.")
        else:
            conf[key] = copy.deepcopy(value)
    if "__all__" in overwrites:
        for key in list(conf):
            _merge_entry(conf, key, overwrites["__all__"], f"{path}__all__.")
    for pattern, value in wildcards:
        for key in list(conf):
            name = str(key)
            if pattern.startswith(_WILDCARD):
                matches = name.endswith(pattern[len(_WILDCARD) :])
            else:
                matches = name.startswith(pattern[: -len(_WILDCARD)])
            if matches:
                _merge_entry(conf, key, value, f"{path}{pattern}.")
    return conf


def _merge_entry(conf: dict[str, Any], key: Any, value: Any, path: str) -> None:
    if conf[key] is None:
        conf[key] = {}
    if isinstance(conf[key], dict):
        update_config(conf[key], value, path)


def _load_overwrite(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise AutoconfigError(f"{path}: expected a mapping")
    return data


# --- WMS capabilities -----------------------------------------------------------------------


def _walk(layer: WMSLayerInfo) -> list[WMSLayerInfo]:
    found = [layer]
    for child in layer.layers:
        found += _walk(child)
    return found


def wms_source(layer: WMSLayerInfo, version: str) -> dict[str, Any]:
    """The ``wms`` source config for one named capabilities layer."""
    req: dict[str, Any] = {"url": layer.url, "layers": layer.name}
    if not layer.opaque:
        req["transparent"] = True
    source: dict[str, Any] = {
        "type": "wms",
        "req": req,
        "supported_srs": sorted(set(layer.srs)),
    }
    if layer.llbbox:
        source["coverage"] = {"srs": "EPSG:4326", "bbox": list(layer.llbbox)}
    if layer.res_hint:
        coarsest, finest = layer.res_hint
        if coarsest:
            source["min_res"] = coarsest
        if finest:
            source["max_res"] = finest
    wms_opts: dict[str, Any] = {}
    if layer.queryable:
        wms_opts["featureinfo"] = True
    if layer.legend_url:
        wms_opts["legendurl"] = layer.legend_url
    if version == "1.3.0":
        wms_opts["version"] = "1.3.0"
    if wms_opts:
        source["wms_opts"] = wms_opts
    return source


def wms_sources(capabilities: WMSCapabilities) -> dict[str, Any]:
    """One source ``<layer>_wms`` per named layer (a later layer of the same name wins)."""
    sources: dict[str, Any] = {}
    for layer in _walk(capabilities.root_layer):
        if layer.name:
            sources[f"{layer.name}_wms"] = wms_source(layer, capabilities.version)
    return sources


def _resolved_srs(grids: dict[str, Any], name: str, seen: tuple[str, ...] = ()) -> str | None:
    grid = grids.get(name) if name not in seen else None
    if grid is None and name in BUILTIN_GRIDS:
        return str(BUILTIN_GRIDS[name]["srs"])
    if not isinstance(grid, dict):
        return None
    if isinstance(grid.get("srs"), str):
        return str(grid["srs"])
    base = grid.get("base")
    return _resolved_srs(grids, base, (*seen, name)) if isinstance(base, str) else None


def grids_by_srs(grids: dict[str, Any]) -> dict[str, str]:
    """Upper-case SRS code -> name of the (last) configured grid in that SRS."""
    result = {}
    for name in grids:
        srs = _resolved_srs(grids, str(name))
        if srs is not None:
            result[srs.upper()] = str(name)
    return result


def wms_caches(sources: dict[str, Any], grids: dict[str, Any]) -> dict[str, Any]:
    """A cache per source with a grid for each supported SRS that has one (in SRS order)."""
    srs_grids = grids_by_srs(grids)
    caches: dict[str, Any] = {}
    for name, source in sources.items():
        if not isinstance(source, dict):
            continue
        matching: list[str] = []
        for srs in source.get("supported_srs") or []:
            grid = srs_grids.get(str(srs).upper())
            if grid is not None and grid not in matching:
                matching.append(grid)
        if matching:
            caches[f"{str(name)[:-4]}_cache"] = {"grids": matching, "sources": [name]}
    return caches


def wms_layer(layer: WMSLayerInfo, caches: dict[str, Any]) -> dict[str, Any]:
    """The layer tree below ``layer``; named layers use their cache if there is one."""
    entry: dict[str, Any] = {"title": layer.title}
    if layer.name:
        entry["name"] = layer.name
        cache = f"{layer.name}_cache"
        entry["sources"] = [cache if cache in caches else f"{layer.name}_wms"]
    if layer.abstract:
        entry["md"] = {"abstract": layer.abstract}
    if layer.layers:
        entry["layers"] = [wms_layer(child, caches) for child in layer.layers]
    return entry


def config_from_capabilities(
    capabilities: WMSCapabilities, grids: dict[str, Any], overwrite: dict[str, Any]
) -> dict[str, Any]:
    """The mapproxy.yaml dict; sections are overwritten before later ones are derived."""
    services = {"wms": {"md": {"title": capabilities.service_title}}}
    services = update_config(services, overwrite.pop("services", None), "services.")
    sources = update_config(wms_sources(capabilities), overwrite.pop("sources", None), "sources.")
    caches = update_config(wms_caches(sources, grids), overwrite.pop("caches", None), "caches.")
    layers = [wms_layer(capabilities.root_layer, caches)]
    return {
        "services": services,
        "sources": sources,
        "caches": caches,
        "layers": _overwrite_layers(layers, overwrite.pop("layers", None)),
    }


def _overwrite_layers(layers: list[Any], overwrite: Any) -> list[Any]:
    if overwrite is None:
        return layers
    if not isinstance(overwrite, list):
        raise AutoconfigError("layers: overwrite with a list (it replaces the generated layers)")
    return copy.deepcopy(overwrite)


# --- GeoPackage ---------------------------------------------------------------------------


def _geopackage_resolutions(
    levels: dict[int, float], bbox: list[float], tile_size: tuple[int, int]
) -> list[float]:
    resolutions: list[float] = []
    for zoom in range(GEOPACKAGE_NUM_LEVELS):
        if zoom in levels:
            resolutions.append(levels[zoom])
        elif resolutions:
            resolutions.append(resolutions[-1] / 2)
        else:
            width, height = bbox[2] - bbox[0], bbox[3] - bbox[1]
            resolutions.append(max(width / tile_size[0], height / tile_size[1]))
    return resolutions


def config_from_geopackage(filename: str, overwrite: dict[str, Any]) -> dict[str, Any]:
    """The mapproxy.yaml dict with a cache, grid and layer per tile table of ``filename``."""
    if not os.path.isfile(filename):
        raise AutoconfigError(f"{filename}: no such file")
    path = os.path.abspath(filename)
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = _geopackage_tables(connection)
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise AutoconfigError(f"{filename}: not a readable GeoPackage: {error}") from None
    grids: dict[str, Any] = {}
    caches: dict[str, Any] = {}
    layers: list[Any] = []
    for table, grid in tables:
        grid_name = f"{table}_{grid.pop('_code')}"
        grids[grid_name] = grid
        caches[f"{table}_cache"] = {
            "cache": {"type": "geopackage", "filename": path, "table_name": table},
            "grids": [grid_name],
            "sources": [],
        }
        layers.append({"name": table, "title": table, "sources": [f"{table}_cache"]})
    services = {
        "demo": None,
        "kml": {"use_grid_names": True},
        "tms": {"use_grid_names": True, "origin": "nw"},
        "wms": None,
        "wmts": None,
    }
    return {
        "services": update_config(services, overwrite.pop("services", None), "services."),
        "grids": update_config(grids, overwrite.pop("grids", None), "grids."),
        "caches": update_config(caches, overwrite.pop("caches", None), "caches."),
        "layers": _overwrite_layers(layers, overwrite.pop("layers", None)),
    }


def _geopackage_tables(connection: sqlite3.Connection) -> list[tuple[str, dict[str, Any]]]:
    rows = connection.execute(
        "SELECT c.table_name, s.organization, s.organization_coordsys_id,"
        " m.min_x, m.min_y, m.max_x, m.max_y"
        " FROM gpkg_contents c"
        " JOIN gpkg_tile_matrix_set m ON m.table_name = c.table_name"
        " JOIN gpkg_spatial_ref_sys s ON s.srs_id = m.srs_id"
        " WHERE c.data_type = 'tiles' ORDER BY c.rowid"
    ).fetchall()
    tables = []
    for table, organization, code, *bbox in rows:
        matrices = connection.execute(
            "SELECT zoom_level, tile_width, tile_height, pixel_x_size FROM gpkg_tile_matrix"
            " WHERE table_name = ? ORDER BY zoom_level",
            (table,),
        ).fetchall()
        if not matrices:
            continue  # no tile matrix: the reference skips the table too
        tile_size = (int(matrices[0][1]), int(matrices[0][2]))
        levels = {int(zoom): float(res) for zoom, _, _, res in matrices}
        grid = {
            "_code": code,
            "srs": f"{str(organization).upper()}:{code}",
            "bbox": [float(value) for value in bbox],
            "origin": "nw",
            "tile_size": list(tile_size),
            "res": _geopackage_resolutions(levels, bbox, tile_size),
        }
        tables.append((str(table), grid))
    return tables


# --- seeding ----------------------------------------------------------------------------


def seed_config(caches: dict[str, Any], overwrite: dict[str, Any]) -> dict[str, Any]:
    """seed.yaml with a seed and a cleanup task per cache and grid."""
    seeds: dict[str, Any] = {}
    cleanups: dict[str, Any] = {}
    for name, cache in caches.items():
        grids = (cache.get("grids") or []) if isinstance(cache, dict) else []
        for grid in grids:
            task = f"{name}_{grid}"
            seeds[task] = {"caches": [name], "grids": [grid]}
            cleanups[task] = {
                "caches": [name],
                "grids": [grid],
                "remove_before": {"time": "1900-01-01T00:00:00"},
            }
    conf = {
        "seeds": update_config(seeds, overwrite.pop("seeds", None), "seeds."),
        "cleanups": update_config(cleanups, overwrite.pop("cleanups", None), "cleanups."),
    }
    return update_config(conf, overwrite)


# --- command ----------------------------------------------------------------------------


def _parser() -> optparse.OptionParser:
    parser = optparse.OptionParser("%prog autoconfig [options]")
    parser.prog = "mapproxy-util"
    parser.add_option(
        "--capabilities", help="URL or filename of WMS 1.1.1/1.3.0 capabilities document"
    )
    parser.add_option("--geopackage", help="Filename of a geopackage file")
    parser.add_option(
        "--output", default="-", help="filename for created MapProxy config [default: -]"
    )
    parser.add_option("--output-seed", help="filename for created seeding config")
    parser.add_option("--base", help="base config to include in created MapProxy config")
    parser.add_option(
        "--overwrite", help="YAML file with overwrites for the created MapProxy config"
    )
    parser.add_option(
        "--overwrite-seed", help="YAML file with overwrites for the created seeding config"
    )
    parser.add_option(
        "--force", default=False, action="store_true", help="overwrite existing files"
    )
    return parser


def _read_capabilities(location: str) -> WMSCapabilities:
    if location.startswith(("http://", "https://")):
        try:
            document = fetch_document(with_capabilities_params(location))
        except HTTPClientError as error:
            raise AutoconfigError(error_text(error)) from None
    else:
        try:
            with open(location, "rb") as handle:
                document = handle.read()
        except OSError as error:
            raise AutoconfigError(f"{location}: {error.strerror}") from None
    try:
        return parse_capabilities(document)
    except CapabilitiesError as error:
        raise AutoconfigError(f"{location}: {error}") from None


def _base_grids(base: str | None) -> dict[str, Any]:
    if not base:
        return {}
    grids = load_configuration_files(base).data.get("grids") or {}
    return grids if isinstance(grids, dict) else {}


def _write(filename: str, text: str) -> None:
    if filename == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open(filename, "w", encoding="utf-8") as handle:
        handle.write(text)


def autoconfig_command(argv: Sequence[str]) -> int:
    """Run ``mapproxy-util autoconfig``; returns the exit code."""
    parser = _parser()
    options, _ = parser.parse_args(list(argv))
    if bool(options.capabilities) == bool(options.geopackage):
        parser.print_help()
        print("ERROR: --capabilities required or --geopackage required", file=sys.stderr)
        return 2
    for filename in (options.output, options.output_seed):
        if filename and filename != "-" and os.path.exists(filename) and not options.force:
            print(f"ERROR: {filename} already exists, use --force to overwrite", file=sys.stderr)
            return 1
    try:
        overwrite = _load_overwrite(options.overwrite)
        seed_overwrite = _load_overwrite(options.overwrite_seed)
        conf: dict[str, Any] = {}
        if options.base:
            conf["base"] = os.path.abspath(options.base)
        if options.capabilities:
            capabilities = _read_capabilities(options.capabilities)
            conf.update(
                config_from_capabilities(capabilities, _base_grids(options.base), overwrite)
            )
        else:
            conf.update(config_from_geopackage(options.geopackage, overwrite))
        update_config(conf, overwrite)
        seed = seed_config(conf.get("caches") or {}, seed_overwrite)
    except (AutoconfigError, ConfigurationError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    command_line = [sys.argv[0] or "mapproxy-util", "autoconfig", *argv]
    source = options.capabilities or options.geopackage
    _write(options.output, header(source, command_line) + dump_yaml(conf))
    if options.output_seed:
        _write(options.output_seed, header(source, command_line) + dump_yaml(seed))
    return 0
