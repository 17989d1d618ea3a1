"""seed.yaml: load, validate and expand into one task per (task, grid, cache)."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mapproxy.config.build import BuiltCache, ConfigBuilder
from mapproxy.config.build.coverages import load_coverage
from mapproxy.config.loader import expand_env, load_yaml_file
from mapproxy.config.validate import ProxyConfig
from mapproxy.coverage import Coverage, union_coverage
from mapproxy.errors import ConfigurationError, TransformationError
from mapproxy.grid import TileGrid
from mapproxy.srs import BBox, get_srs
from mapproxy.util import times

log = logging.getLogger("mapproxy.seed.config")

# Backends that store no creation time: refresh means re-create, cleanup means remove all.
NO_TIMESTAMP_BACKENDS = frozenset({"mbtiles", "geopackage", "compact"})

_TOP_KEYS = ("seeds", "cleanups", "coverages")
_COMMON_TASK_KEYS: dict[str, tuple[type, ...]] = {
    "caches": (list,),
    "grids": (list,),
    "levels": (list, dict),
    "resolutions": (list, dict),
    "coverages": (list,),
}
_SEED_KEYS = {**_COMMON_TASK_KEYS, "refresh_before": (dict,)}
_CLEANUP_KEYS = {**_COMMON_TASK_KEYS, "remove_before": (dict,), "remove_all": (bool,)}
_TIME_SPEC_KEYS = ("time", "mtime", "weeks", "days", "hours", "minutes", "seconds")


class SeedConfigurationError(ConfigurationError):
    """seed.yaml cannot be used; printed as ``error in configuration: <message>``."""


def load_task_coverage(
    confs: Sequence[Mapping[str, Any]], names: Sequence[str], builder: ConfigBuilder
) -> Coverage:
    """The union of the named coverages (paths relative to the mapproxy.yaml directory)."""
    coverages = []
    for name, conf in zip(names, confs, strict=True):
        try:
            coverages.append(load_coverage(conf, f"coverages.{name}", builder.paths))
        except ConfigurationError as error:
            raise SeedConfigurationError(str(error)) from None
    return coverages[0] if len(coverages) == 1 else union_coverage(coverages)


def timestamp_before(spec: Mapping[str, Any], now: float, base_dir: str) -> float:
    """Epoch seconds for a ``refresh_before``/``remove_before`` spec.

    Relative specs are cut to whole seconds, as the reference shows them."""
    try:
        value = times.timestamp_before(spec, now, base_dir)
    except ConfigurationError as error:
        raise SeedConfigurationError(str(error)) from None
    return float(math.floor(value)) if times.is_relative(spec) else value


# -- validation ------------------------------------------------------------------


class _Checker:
    def __init__(self) -> None:
        self.failed = False

    def type_error(self, value: Any, path: str, types: Sequence[type]) -> None:
        names = ", ".join(t.__name__ for t in types)
        if len(types) == 1:
            log.warning("%r in %s not of type %s", value, path, names)
        else:
            log.warning("%r in %s not of any type %s", value, path, names)
        self.failed = True

    def check_task(self, task: Any, path: str, keys: Mapping[str, tuple[type, ...]]) -> None:
        if not isinstance(task, dict):
            self.type_error(task, path, (dict,))
            return
        if "caches" not in task:
            log.warning("missing 'caches', not in %s", path)
            self.failed = True
        for key, value in task.items():
            types = keys.get(key)
            if types is None:
                log.warning("unknown '%s' in %s", key, path)
                continue
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                self.type_error(value, f"{path}.{key}", types)
                continue
            if isinstance(value, dict) and key in ("levels", "resolutions"):
                for sub, item in value.items():
                    if sub not in ("from", "to"):
                        log.warning("unknown '%s' in %s.%s", sub, path, key)
                    elif not isinstance(item, int | float) or isinstance(item, bool):
                        self.type_error(item, f"{path}.{key}.{sub}", (float,))
            elif isinstance(value, dict):
                for sub in value:
                    if sub not in _TIME_SPEC_KEYS:
                        log.warning("unknown '%s' in %s.%s", sub, path, key)


def validate_seed_conf(data: Any) -> dict[str, Any]:
    """Check the structure of a parsed seed.yaml; warnings are logged."""
    if not isinstance(data, dict):
        raise SeedConfigurationError("configuration not a YAML dictionary")
    if "views" in data:
        # The reference raises a bare Exception here (traceback, exit code 1).
        raise Exception(
            "The old seeding config style is no longer supported. "
            "Please refer to the documentation."
        )
    checker = _Checker()
    for key in data:
        if key not in _TOP_KEYS:
            log.warning("unknown '%s' in .", key)
    for section, keys in (("seeds", _SEED_KEYS), ("cleanups", _CLEANUP_KEYS)):
        tasks = data.get(section)
        if tasks is None:
            continue
        if not isinstance(tasks, dict):
            checker.type_error(tasks, section, (dict,))
            continue
        for name, task in tasks.items():
            checker.check_task(task, f"{section}.{name}", keys)
    coverages = data.get("coverages")
    if coverages is not None and not isinstance(coverages, dict):
        checker.type_error(coverages, "coverages", (dict,))
    if checker.failed:
        raise SeedConfigurationError("invalid configuration")
    return data


def load_seed_conf(path: str) -> dict[str, Any]:
    """Parse and validate seed.yaml at ``path`` (``$ENV`` expanded)."""
    try:
        data = load_yaml_file(path)
    except ConfigurationError as error:
        if "must be a mapping" in str(error):
            raise SeedConfigurationError("configuration not a YAML dictionary") from None
        raise SeedConfigurationError(str(error)) from None
    return validate_seed_conf(expand_env(data))


# -- tasks -----------------------------------------------------------------------


@dataclass
class TaskBase:
    """One configured task applied to one cache in one grid."""

    name: str
    cache_name: str
    grid_name: str
    cache: BuiltCache
    tile_manager: Any
    grid: TileGrid
    levels: list[int]
    coverage: Coverage | None
    # the coverage bbox (or grid extent) in EPSG:4326, for summaries
    ll_bbox: BBox
    backend_type: str
    # upscale/downscale caches: the per-level tasks, in seeding order (see split_levels)
    seed_only_levels: list[list[int]] = field(default_factory=list)

    @property
    def id(self) -> tuple[str, str, str, tuple[int, ...]]:
        """Identity for the progress file: task, cache, grid, levels."""
        return (self.name, self.cache_name, self.grid_name, tuple(self.levels))

    @property
    def supports_timestamps(self) -> bool:
        """False for caches that store no creation time (mbtiles, geopackage, compact)."""
        return self.backend_type not in NO_TIMESTAMP_BACKENDS

    @property
    def is_empty_coverage(self) -> bool:
        """True if the coverage has no geometry at all."""
        return self.coverage is not None and self.coverage.is_empty


@dataclass
class SeedTask(TaskBase):
    """A seed task: create missing tiles, re-create those older than ``refresh_timestamp``."""

    refresh_timestamp: float | None = None
    # True when the task itself configured refresh_before (shown in the summary)
    explicit_refresh: bool = False


@dataclass
class CleanupTask(TaskBase):
    """A cleanup task: remove tiles older than ``remove_timestamp`` (or all)."""

    remove_timestamp: float = 0.0
    remove_all: bool = False


@dataclass
class SeedingConfiguration:
    """The validated seed.yaml bound to a built MapProxy configuration."""

    conf: dict[str, Any]
    proxy_config: ProxyConfig
    builder: ConfigBuilder
    loaded_at: float = field(default_factory=time.time)
    _coverages: dict[str, Coverage] = field(default_factory=dict)

    @property
    def seed_names(self) -> list[str]:
        """Seed task names in configuration order."""
        return [str(n) for n in (self.conf.get("seeds") or {})]

    @property
    def cleanup_names(self) -> list[str]:
        """Cleanup task names in configuration order."""
        return [str(n) for n in (self.conf.get("cleanups") or {})]

    def seed_tasks(self, names: Sequence[str] | None = None) -> list[SeedTask]:
        """Expanded seed tasks (all, or ``names`` in their order), grids outer, caches inner."""
        tasks: list[SeedTask] = []
        for name, conf in _in_order(self.conf.get("seeds") or {}, names):
            tasks += split_levels(self._expand(name, conf, self._seed_task))
        return tasks

    def expand_seed_task(self, name: str, conf: Mapping[str, Any]) -> list[SeedTask]:
        """Seed tasks of one task configuration that is not part of seed.yaml."""
        tasks: list[SeedTask] = self._expand(name, conf, self._seed_task)
        return tasks

    def cleanup_tasks(self, names: Sequence[str] | None = None) -> list[CleanupTask]:
        """Expanded cleanup tasks (all, or ``names`` in their order), grids outer, caches inner."""
        tasks: list[CleanupTask] = []
        for name, conf in _in_order(self.conf.get("cleanups") or {}, names):
            tasks += self._expand(name, conf, self._cleanup_task)
        return tasks

    def _expand(self, name: str, conf: Mapping[str, Any], make: Callable[..., Any]) -> list[Any]:
        cache_names = [str(c) for c in conf.get("caches") or []]
        caches: dict[str, BuiltCache] = {}
        for cache_name in cache_names:
            if cache_name not in self.proxy_config.caches:
                available = ",".join(self.proxy_config.caches)
                raise SeedConfigurationError(
                    f"cache {cache_name} not found. available caches: {available}"
                )
            if self.proxy_config.caches[cache_name].disable_storage:
                raise SeedConfigurationError(
                    f"can't seed cache {cache_name} (disable_storage: true)"
                )
            caches[cache_name] = self.builder.cache(cache_name)
        grid_names = conf.get("grids")
        cache_grids = {
            cache_name: {str(tm.grid.name): tm for tm in built.tile_managers}
            for cache_name, built in caches.items()
        }
        if grid_names is None:
            grid_names = []
            for cache_name in cache_names[:1]:
                grid_names = [
                    g
                    for g in cache_grids[cache_name]
                    if all(g in cg for cg in cache_grids.values())
                ]
        else:
            grid_names = [str(g) for g in grid_names]
            for grid_name in grid_names:
                if not all(grid_name in cg for cg in cache_grids.values()):
                    raise SeedConfigurationError(f"{grid_name} not defined for caches")
        coverage = self._task_coverage(conf.get("coverages"))
        tasks = []
        for grid_name in grid_names:
            for cache_name in cache_names:
                tile_manager = cache_grids[cache_name][grid_name]
                grid = tile_manager.grid
                levels = _levels(grid, conf)
                tasks.append(
                    make(
                        name,
                        conf,
                        cache_name=cache_name,
                        grid_name=grid_name,
                        cache=caches[cache_name],
                        tile_manager=tile_manager,
                        grid=grid,
                        levels=levels,
                        coverage=coverage,
                        ll_bbox=_ll_bbox(coverage, grid),
                        backend_type=self._backend_type(cache_name),
                    )
                )
        return tasks

    def _backend_type(self, cache_name: str) -> str:
        backend = self.proxy_config.cache_backends.get(cache_name)
        return str(getattr(backend, "type", "file")) if backend is not None else "file"

    def _seed_task(self, name: str, conf: Mapping[str, Any], **kwargs: Any) -> SeedTask:
        task = SeedTask(name, **kwargs)
        spec = conf.get("refresh_before")
        if spec is not None:
            task.refresh_timestamp = self._timestamp(spec)
            task.explicit_refresh = True
        else:
            cache_spec = self.proxy_config.caches[task.cache_name].refresh_before
            if cache_spec is not None:
                task.refresh_timestamp = self._timestamp(cache_spec.model_dump(exclude_none=True))
        upscale = self.proxy_config.caches[task.cache_name].upscale_tiles
        downscale = self.proxy_config.caches[task.cache_name].downscale_tiles
        if upscale:
            task.seed_only_levels = [[level] for level in task.levels]
        elif downscale:
            task.seed_only_levels = [[level] for level in reversed(task.levels)]
        return task

    def _cleanup_task(self, name: str, conf: Mapping[str, Any], **kwargs: Any) -> CleanupTask:
        task = CleanupTask(name, **kwargs)
        spec = conf.get("remove_before")
        task.remove_all = bool(conf.get("remove_all", False))
        if not task.supports_timestamps:
            if spec is not None:
                raise SeedConfigurationError(
                    f"cleanup does not support remove_before for '{name}' because cache "
                    f"'{task.cache_name}' does not support timestamps"
                )
            task.remove_all = True
        if spec is not None:
            task.remove_timestamp = self._timestamp(spec)
        else:
            task.remove_timestamp = self.loaded_at
        return task

    def _timestamp(self, spec: Mapping[str, Any]) -> float:
        return timestamp_before(spec, self.loaded_at, self.proxy_config.config_dir)

    def _task_coverage(self, names: Sequence[str] | None) -> Coverage | None:
        if not names:
            return None
        confs = self.conf.get("coverages") or {}
        for cov_name in names:
            if cov_name not in confs:
                available = ",".join(str(n) for n in confs)
                raise SeedConfigurationError(
                    f"coverage {cov_name} not found. available coverages: {available}"
                )
        key = ",".join(str(n) for n in names)
        if key not in self._coverages:
            self._coverages[key] = load_task_coverage(
                [confs[n] for n in names], [str(n) for n in names], self.builder
            )
        return self._coverages[key]


def _in_order(confs: Mapping[Any, Any], names: Sequence[str] | None) -> list[tuple[str, Any]]:
    """All task configurations in file order, or those of ``names`` in the order given."""
    by_name = {str(name): conf for name, conf in confs.items()}
    if names is None:
        return list(by_name.items())
    return [(name, by_name[name]) for name in dict.fromkeys(names) if name in by_name]


def split_levels(tasks: Sequence[SeedTask]) -> list[SeedTask]:
    """Upscale/downscale tasks as one task per level, in their seeding order.

    A level is created from the tiles of the level before it, as in MapProxy, which
    lists and seeds them as tasks of their own (``Levels: [n]``).
    """
    result: list[SeedTask] = []
    for task in tasks:
        if not task.seed_only_levels:
            result.append(task)
            continue
        for levels in task.seed_only_levels:
            result.append(dataclasses.replace(task, levels=levels, seed_only_levels=[levels]))
    return result


def _levels(grid: TileGrid, conf: Mapping[str, Any]) -> list[int]:
    """Selected levels: ``levels`` (list or from/to), ``resolutions``, else all."""
    last = grid.levels - 1
    levels = conf.get("levels")
    resolutions = conf.get("resolutions")
    if levels is None and resolutions is not None:
        if isinstance(resolutions, dict):
            levels = {
                key: grid.closest_level(float(value))
                for key, value in resolutions.items()
                if key in ("from", "to")
            }
        else:
            levels = [grid.closest_level(float(res)) for res in resolutions]
    if levels is None:
        return list(range(grid.levels))
    if isinstance(levels, dict):
        start = max(0, int(levels.get("from", 0)))
        stop = min(last, int(levels.get("to", last)))
        return list(range(start, stop + 1))
    return sorted({int(level) for level in levels if 0 <= int(level) <= last})


def _ll_bbox(coverage: Coverage | None, grid: TileGrid) -> BBox:
    """The coverage bbox (else the grid bbox) in EPSG:4326."""
    wgs84 = get_srs("EPSG:4326")
    try:
        if coverage is not None:
            return coverage.bbox_for(wgs84)
        return grid.srs.transform_bbox_to(wgs84, grid.bbox)
    except TransformationError:
        return (-180.0, -90.0, 180.0, 90.0)


def walk_bbox(task: TaskBase) -> BBox:
    """Where the pyramid walk starts: the coverage bbox in the grid SRS, cut to the grid."""
    grid = task.grid
    if task.coverage is None:
        return grid.bbox
    try:
        bbox = task.coverage.bbox_for(grid.srs)
    except TransformationError:
        return grid.bbox
    return (
        max(bbox[0], grid.bbox[0]),
        max(bbox[1], grid.bbox[1]),
        min(bbox[2], grid.bbox[2]),
        min(bbox[3], grid.bbox[3]),
    )
