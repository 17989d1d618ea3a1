"""TileManager: serve tiles from a cache, create missing (meta) tiles from sources."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from PIL import Image

from mapproxy.cache.base import Tile, TileCache
from mapproxy.coverage import Coverage
from mapproxy.errors import (
    InvalidDimensionValue,
    NoTiles,
    SourceError,
    TileOutsideGrid,
    TransformationError,
)
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image.blank import blank_image, create_blank
from mapproxy.image.encode import encode_image
from mapproxy.image.merge import merge_images
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.image.tile import assemble_tiles, split_meta_image
from mapproxy.image.transform import transform_image
from mapproxy.image.verify import looks_complete
from mapproxy.source.base import MapExtent, MapQuery, MapSource
from mapproxy.source.coverage import clip_result, source_coverage
from mapproxy.source.on_error import StaleAuthorizingResult
from mapproxy.srs import BBox, bbox_intersects
from mapproxy.tilemanager.background import BackgroundStorer
from mapproxy.tilemanager.background import background_storer as default_background_storer
from mapproxy.tilemanager.locking import LocalTileLocker, TileLocking

if TYPE_CHECKING:
    from mapproxy.grid import MetaGrid, TileGrid

log = logging.getLogger("mapproxy.tilemanager")

_TilePatterns = Sequence[tuple[TileCoord, tuple[int, int]]]

# Changes a newly created tile before it is stored (e.g. a watermark).
TileFilter = Callable[[TileCoord, "Image.Image"], "Image.Image"]


class _CreationJob:
    """Tiles created together: one meta tile, or one single tile."""

    __slots__ = (
        "bbox",
        "cache",
        "clip_to_grid",
        "dimensions",
        "lock_coord",
        "patterns",
        "size",
        "stale",
        "wanted",
    )

    def __init__(
        self,
        lock_coord: TileCoord,
        bbox: BBox,
        size: tuple[int, int],
        patterns: _TilePatterns,
        clip_to_grid: bool = False,
    ) -> None:
        self.lock_coord = lock_coord
        self.bbox = bbox
        self.size = size
        self.patterns = patterns
        self.clip_to_grid = clip_to_grid
        self.wanted: list[TileCoord] = []
        self.dimensions: Mapping[str, str] = {}
        self.cache: TileCache | None = None
        # stored tiles older than refresh_before: served if the sources fail
        self.stale: dict[TileCoord, Tile] = {}


class _UseStaleTiles(Exception):
    """A source answered with an ``authorize_stale`` on_error image: keep the stale tiles."""


class TileManager:
    """Tiles of one cache in one grid: load from ``cache``, create from ``sources``.

    ``image_options`` is the storage format; ``request_format`` the format asked from
    sources (defaults to the storage format). ``refresh_before``, if given, returns an
    epoch time: cached tiles older than that are recreated on request; should that fail,
    the stale tiles are served. A missing tile of a level no source can serve (no
    sources, only ``seed_only`` sources, resolution out of range) is scaled from up
    to ``upscale_tiles`` coarser or ``downscale_tiles`` finer levels, and stored only
    with ``cache_rescaled_tiles``. ``minimize_meta_requests``: the tiles of one
    ``load_tiles`` call come from one source request aligned to them.
    ``bulk_meta_tiles``: sources without meta tile support are asked tile by tile for
    a whole meta tile at once (``concurrent_tile_creators`` in parallel).
    """

    def __init__(
        self,
        grid: TileGrid,
        cache: TileCache,
        sources: Sequence[MapSource],
        image_options: ImageOptions,
        request_format: str | None = None,
        meta_grid: MetaGrid | None = None,
        locker: TileLocking | None = None,
        identifier: str = "",
        disable_storage: bool = False,
        concurrent_tile_creators: int = 2,
        refresh_before: Callable[[], float] | None = None,
        tile_filters: Sequence[TileFilter] = (),
        coverage: Coverage | None = None,
        upscale_tiles: int = 0,
        downscale_tiles: int = 0,
        cache_rescaled_tiles: bool = False,
        minimize_meta_requests: bool = False,
        bulk_meta_tiles: bool = False,
        background_storer: BackgroundStorer | None = default_background_storer,
    ) -> None:
        self.grid = grid
        self.cache = cache
        self.sources = list(sources)
        self.image_options = image_options
        self.request_format = request_format or image_options.format
        self.meta_grid = meta_grid
        self.locker = locker if locker is not None else LocalTileLocker()
        self.identifier = identifier
        self.disable_storage = disable_storage
        self.concurrent_tile_creators = max(1, concurrent_tile_creators)
        self.refresh_before = refresh_before
        self.tile_filters = list(tile_filters)
        if image_options.transparent is not None:
            self.transparent = bool(image_options.transparent)
        else:
            self.transparent = any(source.transparent for source in self.sources)
        self._encode_options = image_options.updated(transparent=self.transparent)
        all_meta = all(source.supports_meta_tiles for source in self.sources)
        self._use_meta_tiles = meta_grid is not None and (all_meta or bulk_meta_tiles)
        # bulk: meta tiles fetched tile by tile, for sources without meta tile support
        self._bulk = self._use_meta_tiles and not all_meta
        self.minimize_meta_requests = minimize_meta_requests
        self.background_storer = background_storer
        if upscale_tiles and downscale_tiles:
            raise ValueError("upscale_tiles and downscale_tiles cannot be combined")
        self._rescale_levels = upscale_tiles or downscale_tiles
        self._rescale_step = -1 if upscale_tiles else 1
        self.cache_rescaled_tiles = cache_rescaled_tiles
        # as MapProxy, rescaled tiles keep their gaps transparent (if the format can)
        self._rescale_options = image_options.updated(transparent=True)
        self._rescaled_blank: bytes | None = None
        self._fetchable_levels: list[bool] = (
            [self._level_fetchable(z) for z in range(grid.levels)] if self._rescale_levels else []
        )
        self._source_extents = [(source, _extent_in(source, grid)) for source in self.sources]
        # cache coverage: tiles outside it are blank and never requested upstream
        self.coverage = coverage
        self._source_coverages = [source_coverage(source) for source in self.sources]
        for area in [coverage, *self._source_coverages]:
            if area is not None:
                area.geometry_in(grid.srs)  # transform once now, not per request
        self._tile_source = self._direct_tile_source()
        self._blank_tile: bytes | None = None

    def __repr__(self) -> str:
        return f"TileManager({self.identifier!r}, {self.cache!r})"

    # -- public API --------------------------------------------------------------

    def wrap_sources(self, wrap: Callable[[MapSource], MapSource]) -> None:
        """Replace every source by ``wrap(source)`` (mapproxy-seed's rate limits)."""
        self.sources = [wrap(source) for source in self.sources]
        self._source_extents = [(wrap(source), extent) for source, extent in self._source_extents]
        self._tile_source = self._direct_tile_source()

    def load_tile(
        self,
        coord: TileCoord,
        with_metadata: bool = False,
        dimensions: Mapping[str, str] | None = None,
    ) -> Tile:
        """The tile for ``coord``: stored bytes untouched on a hit, created on a miss.

        Timestamps are always loaded; ``with_metadata`` is accepted for compatibility.
        ``dimensions`` reach the sources; stored tiles with dimensions lie in their own
        part of the cache (``cache.for_dimensions``). Raises TileOutsideGrid,
        SourceError, LockTimeout, InvalidDimensionValue.
        """
        if not self.grid.is_valid(coord):
            raise TileOutsideGrid(f"tile {coord.x}/{coord.y}/{coord.z} is outside the grid")
        if self.disable_storage:
            return self._create([coord], force=False, dimensions=dimensions)[coord]
        cache = self._cache_for(dimensions) if dimensions else self.cache
        tile = self._load_checked(coord, cache)
        if tile is not None and (self.refresh_before is None or not self._is_stale(tile)):
            return tile
        if tile is None and self._rescale_levels and not self._fetchable_levels[coord.z]:
            return self._rescaled_or_blank(coord, cache)
        stale = {coord: tile} if tile is not None else None
        created = self._create([coord], False, dimensions=dimensions, cache=cache, stale=stale)
        return created[coord]

    def load_tiles(
        self,
        coords: Iterable[TileCoord],
        with_metadata: bool = False,
        dimensions: Mapping[str, str] | None = None,
    ) -> list[Tile]:
        """Tiles for ``coords`` in the same order; each missing meta tile is created once.

        ``dimensions`` as for ``load_tile``."""
        coords = list(coords)
        for coord in coords:
            if not self.grid.is_valid(coord):
                raise TileOutsideGrid(f"tile {coord.x}/{coord.y}/{coord.z} is outside the grid")
        found: dict[TileCoord, Tile] = {}
        missing: list[TileCoord] = []
        stale: dict[TileCoord, Tile] = {}
        cache = self._cache_for(dimensions) if dimensions else self.cache
        for coord in dict.fromkeys(coords):
            tile = None if self.disable_storage else self._load_checked(coord, cache)
            if tile is None:
                if self._rescale_levels and not self._fetchable_levels[coord.z]:
                    found[coord] = self._rescaled_or_blank(coord, cache)
                else:
                    missing.append(coord)
            elif self._is_stale(tile):
                missing.append(coord)
                stale[coord] = tile
            else:
                found[coord] = tile
        if missing:
            found.update(
                self._create(missing, force=False, dimensions=dimensions, cache=cache, stale=stale)
            )
        return [found[coord] for coord in coords]

    def create_tiles(self, coords: Iterable[TileCoord]) -> list[Tile]:
        """Render and store ``coords`` even if cached (seeding/refresh); same order."""
        coords = list(coords)
        for coord in coords:
            if not self.grid.is_valid(coord):
                raise TileOutsideGrid(f"tile {coord.x}/{coord.y}/{coord.z} is outside the grid")
        created = self._create(list(dict.fromkeys(coords)), force=True)
        return [created[coord] for coord in coords]

    def is_cached(self, coord: TileCoord) -> bool:
        """True if ``coord`` is stored (always False with disabled storage)."""
        if self.disable_storage:
            return False
        return self.cache.is_cached(coord)

    def remove_tile(self, coord: TileCoord) -> None:
        """Delete ``coord`` from the cache."""
        self.cache.remove_tile(coord)

    # -- creation ----------------------------------------------------------------

    def _cache_for(self, dimensions: Mapping[str, str]) -> TileCache:
        """The part of the cache holding tiles with ``dimensions``."""
        if self.disable_storage:
            return self.cache
        for_dimensions = getattr(self.cache, "for_dimensions", None)
        if for_dimensions is None:
            raise InvalidDimensionValue(f"cache {self.identifier} cannot store dimensions")
        view: TileCache = for_dimensions(dimensions)
        return view

    def _is_stale(self, tile: Tile) -> bool:
        if self.refresh_before is None:
            return False
        return tile.timestamp is None or tile.timestamp < self.refresh_before()

    def _create(
        self,
        coords: list[TileCoord],
        force: bool,
        dimensions: Mapping[str, str] | None = None,
        cache: TileCache | None = None,
        stale: Mapping[TileCoord, Tile] | None = None,
    ) -> dict[TileCoord, Tile]:
        jobs = self._jobs_for(coords)
        if dimensions or cache is not None or stale:
            for job in jobs:
                job.dimensions = dimensions or {}
                job.cache = cache
                if stale:
                    job.stale = {c: stale[c] for c in job.wanted if c in stale}
        if len(jobs) == 1 or self.concurrent_tile_creators == 1:
            results = [self._run_job(job, force) for job in jobs]
        else:
            workers = min(self.concurrent_tile_creators, len(jobs))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(lambda job: self._run_job(job, force), jobs))
        created: dict[TileCoord, Tile] = {}
        for result in results:
            created.update(result)
        return created

    def _jobs_for(self, coords: list[TileCoord]) -> list[_CreationJob]:
        jobs: dict[TileCoord, _CreationJob] = {}
        tile_size = self.grid.tile_size
        if (
            self.minimize_meta_requests
            and self._use_meta_tiles
            and not self._bulk
            and len(coords) > 1
            and len({coord.z for coord in coords}) == 1
        ):
            return [self._minimal_job(coords)]
        for coord in coords:
            if self._use_meta_tiles:
                assert self.meta_grid is not None
                meta = self.meta_grid.meta_tile(coord)
                job = jobs.get(meta.main_coord)
                if job is None:
                    patterns = [
                        (tile_coord, position)
                        for tile_coord, position in meta.tile_patterns
                        if tile_coord is not None and self.grid.is_valid(tile_coord)
                    ]
                    # As in MapProxy, buffered meta tiles only ask for the part
                    # inside the grid bbox (tiles of the last row or column may
                    # reach beyond it); without a buffer the whole tiles are asked for.
                    job = _CreationJob(
                        meta.main_coord,
                        meta.bbox,
                        meta.size,
                        patterns,
                        clip_to_grid=self.meta_grid.meta_buffer > 0,
                    )
                    jobs[meta.main_coord] = job
            else:
                job = jobs.get(coord)
                if job is None:
                    bbox = self.grid.tile_bbox(coord)
                    job = _CreationJob(coord, bbox, tile_size, [(coord, (0, 0))])
                    jobs[coord] = job
            job.wanted.append(coord)
        return list(jobs.values())

    def _lock(self, coord: TileCoord, cache: TileCache) -> contextlib.AbstractContextManager[Any]:
        if self.disable_storage:
            return contextlib.nullcontext()
        return self.locker.lock(cache.lock_cache_id, coord)

    def _run_job(self, job: _CreationJob, force: bool) -> dict[TileCoord, Tile]:
        cache = job.cache if job.cache is not None else self.cache
        with contextlib.ExitStack() as held:
            held.enter_context(self._lock(job.lock_coord, cache))
            if not force and not self.disable_storage:
                # Another thread or process may have created the tiles while we waited.
                cached = self._load_cached(job.wanted, cache)
                if cached is not None:
                    return cached
            storing = not self.disable_storage and self._may_store()
            # Serving a miss: only the wanted tiles are encoded now, the rest of the meta
            # tile afterwards (in the background when the storer has room).
            defer = storing and not force and self.background_storer is not None
            try:
                encoded, rest, cacheable = self._render_tiles(job, storing, defer)
            except _UseStaleTiles:
                return dict(job.stale)
            except SourceError as error:
                # As MapProxy: a stale tile is better than an error.
                if not job.stale or len(job.stale) != len(job.wanted):
                    raise
                log.warning("serving stale tiles of %s: %s", self.identifier, error)
                return dict(job.stale)
            created_at = time.time()
            timestamps: dict[TileCoord, float | None] = {}
            if cacheable and storing:
                cache.store_tiles(encoded)
                # Later requests get the stored timestamp (a file's mtime); the response
                # for the new tile must carry the same one, or its ETag never validates.
                timestamps = {coord: cache.tile_timestamp(coord) for coord in job.wanted}
                if rest:
                    self._store_rest(rest, cache, held.pop_all())
        return {
            coord: Tile(coord, encoded[coord], timestamps.get(coord) or created_at, cacheable)
            for coord in job.wanted
        }

    def _store_rest(
        self,
        rest: list[tuple[TileCoord, Image.Image]],
        cache: TileCache,
        lock: contextlib.ExitStack,
    ) -> None:
        """Encode and store the tiles nobody asked for yet, then release ``lock``."""

        def store() -> None:
            with lock:
                cache.store_tiles({coord: self._finish_tile(coord, image) for coord, image in rest})

        storer = self.background_storer
        if storer is None or not storer.try_submit(store):
            store()

    def _finish_tile(self, coord: TileCoord, image: Image.Image) -> bytes:
        for tile_filter in self.tile_filters:
            image = tile_filter(coord, image)
        return encode_image(image, self._encode_options)

    def _may_store(self) -> bool:
        # A cache without sources is read-only: never store placeholder tiles in it.
        return bool(self.sources)

    def _load_cached(
        self, coords: list[TileCoord], cache: TileCache
    ) -> dict[TileCoord, Tile] | None:
        tiles = {}
        for coord in coords:
            tile = self._load_checked(coord, cache)
            if tile is None or self._is_stale(tile):
                return None
            tiles[coord] = tile
        return tiles

    def _load_checked(self, coord: TileCoord, cache: TileCache) -> Tile | None:
        """The stored tile, or None if missing or visibly corrupt (cut off by another
        tool or a full disk): such a tile is logged and created anew like a missing one."""
        tile = cache.load_tile(coord)
        if tile is None or looks_complete(tile.data, self.image_options.mime_type):
            return tile
        module = type(cache).__module__
        logger = logging.getLogger(
            module if module.startswith("mapproxy.cache") else "mapproxy.cache"
        )
        logger.error(
            "corrupt tile %s/%s/%s in cache %s (%d bytes); creating it again",
            coord.z,
            coord.x,
            coord.y,
            self.identifier or repr(cache),
            tile.size,
        )
        return None

    def _render_tiles(
        self, job: _CreationJob, storing: bool = True, defer: bool = False
    ) -> tuple[dict[TileCoord, bytes], list[tuple[TileCoord, Image.Image]], bool]:
        """Encoded tiles of ``job``, the split but not yet encoded rest, and whether they
        may be stored. Without ``storing`` only the wanted tiles are encoded; with
        ``defer`` the others are returned unencoded (if they may be stored)."""
        if self._bulk and len(job.patterns) > 1:
            bulk_tiles, bulk_cacheable = self._render_bulk(job)
            return bulk_tiles, [], bulk_cacheable
        if self._tile_source is not None and len(job.patterns) == 1:
            result = self._query_tile_source(job.patterns[0][0], job.bbox)
        else:
            result = self._query_sources(job.bbox, job.size, job.clip_to_grid, job.dimensions)
        if job.stale and isinstance(result, StaleAuthorizingResult):
            raise _UseStaleTiles()
        if result is None:
            blank = self._blank_tile_data()
            return {coord: blank for coord, _ in job.patterns}, [], True
        if len(job.patterns) == 1 and job.size == self.grid.tile_size and not self.tile_filters:
            # A single tile needs no split; bytes in the storage format pass untouched.
            coord = job.patterns[0][0]
            return {coord: result.as_bytes(self._encode_options)}, [], result.cacheable
        parts = split_meta_image(result.as_image(), job.patterns, self.grid.tile_size)
        wanted = set(job.wanted)
        keep_rest = storing and result.cacheable
        encoded: dict[TileCoord, bytes] = {}
        rest: list[tuple[TileCoord, Image.Image]] = []
        for coord, image in parts:
            if coord in wanted or (keep_rest and not defer):
                encoded[coord] = self._finish_tile(coord, image)
            elif keep_rest:
                rest.append((coord, image))
        return encoded, rest, result.cacheable

    def _query_sources(
        self,
        bbox: BBox,
        size: tuple[int, int],
        clip_to_grid: bool = False,
        dimensions: Mapping[str, str] | None = None,
    ) -> ImageResult | None:
        """The sources' image of ``bbox``; with ``clip_to_grid`` only the part inside
        the grid bbox is requested and the rest stays empty (transparent or bgcolor)."""
        request_bbox, request_size, offset = bbox, size, (0, 0)
        if clip_to_grid:
            clipped = _clip_to_grid(bbox, size, self.grid.bbox)
            if clipped is None:
                return None
            request_bbox, request_size, offset = clipped
        query = MapQuery(
            request_bbox,
            request_size,
            self.grid.srs,
            self.request_format,
            self.transparent,
            dimensions=dict(dimensions or {}),
        )
        if self.coverage is not None and not self.coverage.intersects(request_bbox, self.grid.srs):
            return None
        results = []
        for (source, extent), coverage in zip(
            self._source_extents, self._source_coverages, strict=True
        ):
            if extent is not None and not bbox_intersects(extent, request_bbox):
                continue
            if coverage is None:
                results.append(source.get_map(query))
            elif coverage.intersects(request_bbox, self.grid.srs):
                result = source.get_map(query)
                if coverage.clip:
                    result = clip_result(result, coverage, request_bbox, request_size, query.srs)
                results.append(result)
        if not results:
            return None
        if len(results) == 1:
            result = results[0]
        else:
            result = merge_images(results, request_size, self._encode_options)
            if not all(result.cacheable for result in results):
                result.cacheable = False
        stale_authorized = any(isinstance(r, StaleAuthorizingResult) for r in results)
        if request_size != size or offset != (0, 0):
            result = _place(result, size, offset, self._encode_options)
        if stale_authorized and not isinstance(result, StaleAuthorizingResult):
            # keep the marker through merging and placing
            result = StaleAuthorizingResult(
                result.as_image(),
                size=size,
                transparent=result.transparent,
                cacheable=result.cacheable,
            )
        return result

    def _query_tile_source(self, coord: TileCoord, bbox: BBox) -> ImageResult | None:
        source, extent = self._source_extents[0]
        if extent is not None and not bbox_intersects(extent, bbox):
            return None
        coverage = self._source_coverages[0]
        for area in (self.coverage, coverage):
            if area is not None and not area.intersects(bbox, self.grid.srs):
                return None
        result = source.get_tile(coord)  # type: ignore[attr-defined]
        if result is None:
            return None
        if isinstance(result, bytes):
            result = ImageResult(result, format=self.request_format, transparent=self.transparent)
        assert isinstance(result, ImageResult)
        if coverage is not None and coverage.clip:
            result = clip_result(result, coverage, bbox, self.grid.tile_size, self.grid.srs)
        return result

    def _render_bulk(self, job: _CreationJob) -> tuple[dict[TileCoord, bytes], bool]:
        """All tiles of a meta tile, each from its own source request (in parallel)."""
        coords = [coord for coord, _ in job.patterns]
        tile_size = self.grid.tile_size

        def render(coord: TileCoord) -> ImageResult | None:
            bbox = self.grid.tile_bbox(coord)
            if self._tile_source is not None:
                return self._query_tile_source(coord, bbox)
            return self._query_sources(bbox, tile_size, dimensions=job.dimensions)

        workers = min(self.concurrent_tile_creators, len(coords))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(render, coords))
        else:
            results = [render(coord) for coord in coords]
        if job.stale and any(isinstance(r, StaleAuthorizingResult) for r in results):
            raise _UseStaleTiles()
        encoded: dict[TileCoord, bytes] = {}
        cacheable = True
        for coord, result in zip(coords, results, strict=True):
            if result is None:
                encoded[coord] = self._blank_tile_data()
                continue
            cacheable = cacheable and result.cacheable
            if self.tile_filters:
                image = result.as_image()
                for tile_filter in self.tile_filters:
                    image = tile_filter(coord, image)
                encoded[coord] = encode_image(image, self._encode_options)
            else:
                encoded[coord] = result.as_bytes(self._encode_options)
        return encoded, cacheable

    def _minimal_job(self, coords: list[TileCoord]) -> _CreationJob:
        """One job for ``coords``: a source request for the smallest tile block holding them."""
        assert self.meta_grid is not None
        meta = self.meta_grid.minimal_meta_tile(coords)
        job = _CreationJob(
            # lock as the first tile's meta tile: requests for it wait for us
            self.meta_grid.main_tile(coords[0]),
            meta.bbox,
            meta.size,
            meta.tile_patterns,
            clip_to_grid=self.meta_grid.meta_buffer > 0,
        )
        job.wanted.extend(coords)
        return job

    # -- rescaling ---------------------------------------------------------------

    def _level_fetchable(self, level: int) -> bool:
        """Whether any source may create tiles of ``level`` on request."""
        res = self.grid.resolutions[level]
        bbox = self.grid.bbox
        width = max(1, round((bbox[2] - bbox[0]) / res))
        height = max(1, round((bbox[3] - bbox[1]) / res))
        query = MapQuery(bbox, (width, height), self.grid.srs)
        for source in self.sources:
            if getattr(source, "seed_only", False):
                continue
            res_in_range = getattr(source, "res_in_range", None)
            if res_in_range is not None and not res_in_range(query):
                continue
            return True
        return False

    def _rescaled_or_blank(self, coord: TileCoord, cache: TileCache) -> Tile:
        tile = self._rescaled_tile(coord, self._rescale_levels, cache)
        if tile is not None:
            return tile
        # as MapProxy: a tile found nowhere is transparent and not stored
        if self._rescaled_blank is None:
            blank = Image.new("RGBA", self.grid.tile_size, (255, 255, 255, 0))
            self._rescaled_blank = encode_image(blank, self._rescale_options)
        return Tile(coord, self._rescaled_blank, time.time(), cacheable=False)

    def _rescaled_tile(self, coord: TileCoord, levels: int, cache: TileCache) -> Tile | None:
        """``coord`` scaled from the next level towards the rescale direction, whose
        missing tiles are rescaled in turn (``levels`` deep); None if nothing is cached."""
        source_level = coord.z + self._rescale_step
        if not 0 <= source_level < self.grid.levels:
            return None
        bbox = self.grid.tile_bbox(coord)
        try:
            affected = self.grid.affected_level_tiles(bbox, source_level)
        except (NoTiles, TileOutsideGrid):
            return None
        images: list[ImageResult | None] = []
        for source_coord in affected.tiles:
            tile = None
            if source_coord is not None:
                tile = self._load_checked(source_coord, cache)
                if tile is None and levels > 1:
                    tile = self._rescaled_tile(source_coord, levels - 1, cache)
            if tile is None or tile.data is None:
                images.append(None)
            else:
                images.append(ImageResult(tile.data))
        if not any(image is not None for image in images):
            return None
        tile_size = self.grid.tile_size
        assembled = assemble_tiles(images, affected.grid_size, tile_size, transparent=True)
        image = transform_image(
            assembled,
            affected.bbox,
            self.grid.srs,
            bbox,
            tile_size,
            self.grid.srs,
            resampling=self.image_options.resampling,
        )
        data = encode_image(image, self._rescale_options)
        timestamp = None
        if self.cache_rescaled_tiles and not self.disable_storage:
            cache.store_tiles({coord: data})
            timestamp = cache.tile_timestamp(coord)
        return Tile(coord, data, timestamp or time.time())

    def _direct_tile_source(self) -> MapSource | None:
        """The single tile source in our own grid whose tiles can be fetched 1:1."""
        if len(self.sources) != 1 or (self._use_meta_tiles and not self._bulk):
            return None
        source = self.sources[0]
        if not callable(getattr(source, "get_tile", None)):
            return None
        source_grid = getattr(source, "grid", None)
        if source_grid is None or not (source_grid is self.grid or source_grid == self.grid):
            return None
        return source

    def _blank_tile_data(self) -> bytes:
        if self._blank_tile is None:
            blank = blank_image(self.grid.tile_size, self._encode_options)
            self._blank_tile = blank.as_bytes(self._encode_options)
        return self._blank_tile


def _clip_to_grid(
    bbox: BBox, size: tuple[int, int], grid_bbox: BBox
) -> tuple[BBox, tuple[int, int], tuple[int, int]] | None:
    """The part of ``bbox`` inside ``grid_bbox``: bbox, pixel size and (left, top) offset.

    Sizes and offsets are rounded to whole pixels; None if nothing is left.
    """
    minx, miny, maxx, maxy = bbox
    clipped = (
        max(minx, grid_bbox[0]),
        max(miny, grid_bbox[1]),
        min(maxx, grid_bbox[2]),
        min(maxy, grid_bbox[3]),
    )
    res_x = (maxx - minx) / size[0]
    res_y = (maxy - miny) / size[1]
    width = round((clipped[2] - clipped[0]) / res_x)
    height = round((clipped[3] - clipped[1]) / res_y)
    if width < 1 or height < 1:
        return None
    offset = (round((clipped[0] - minx) / res_x), round((maxy - clipped[3]) / res_y))
    if (width, height) == tuple(size) and offset == (0, 0):
        return bbox, size, offset  # inside the grid, up to float noise
    return clipped, (width, height), offset


def _place(
    result: ImageResult, size: tuple[int, int], offset: tuple[int, int], options: ImageOptions
) -> ImageResult:
    """``result`` pasted at ``offset`` on an empty (transparent or bgcolor) canvas of ``size``."""
    canvas = create_blank(size, options)
    image = result.as_image()
    if canvas.mode == "RGBA" or not image.has_transparency_data:
        canvas.paste(image.convert(canvas.mode), offset)
    else:
        rgba = image.convert("RGBA")
        canvas.paste(rgba, offset, rgba)
    return ImageResult(
        canvas, size=size, transparent=bool(options.transparent), cacheable=result.cacheable
    )


def _extent_in(source: MapSource, grid: TileGrid) -> BBox | None:
    """Source extent as a bbox in the grid SRS, or None for "everywhere"."""
    extent: MapExtent | None = getattr(source, "extent", None)
    if extent is None:
        return None
    try:
        return extent.bbox_for(grid.srs)
    except TransformationError:
        log.warning("cannot transform extent of %r to %s; using it everywhere", source, grid.srs)
        return None
