"""Raster file source: render map queries from a local GDAL-readable raster (GeoTIFF, COG, ...)."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from mapproxy.errors import MapProxyError, SourceError
from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.srs import SRS, BBox, bbox_intersects, get_srs

# Dataset key of the full-resolution image; overviews use their 0-based index.
_FULL_RES = -1

# Resampling names accepted in the configuration (GDAL warp kernels).
RESAMPLING_METHODS = {
    "nearest": Resampling.nearest,
    "bilinear": Resampling.bilinear,
    "cubic": Resampling.cubic,
    "cubic_spline": Resampling.cubic_spline,
    "lanczos": Resampling.lanczos,
    "average": Resampling.average,
    "mode": Resampling.mode,
}


@dataclass(frozen=True, slots=True)
class _RasterInfo:
    """What get_map needs to know about the file, read once when the source is built."""

    crs: CRS
    bounds: BBox
    res: tuple[float, float]
    overview_factors: tuple[int, ...]
    data_bands: tuple[int, ...]
    has_alpha_band: bool
    band_count: int
    palette: np.ndarray[Any, np.dtype[np.uint8]] | None


class RasterSource:
    """A map source reading windows of one raster file, warped into the query's bbox/SRS.

    ``path`` is anything rasterio opens (a file path, ``/vsicurl/...``). Areas outside
    the data, nodata pixels and pixels masked by the file's alpha band are transparent.
    ``bands`` selects 1 (grey) or 3 (RGB) 1-based band indexes; by default the file's
    RGB bands (or its single band, expanded through a colour table if present) are used.
    Values of non-8-bit rasters are clipped to 0..255. ``nodata`` overrides the file's
    nodata value. Raises SourceError when the file cannot be opened.
    """

    supports_meta_tiles = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        transparent: bool = False,
        resampling: str = "bilinear",
        extent: MapExtent | None = None,
        nodata: float | None = None,
        bands: Sequence[int] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.transparent = transparent
        if resampling not in RESAMPLING_METHODS:
            raise SourceError(
                f"raster source {self.path!r}: unknown resampling {resampling!r} "
                f"(use one of {', '.join(RESAMPLING_METHODS)})"
            )
        self.resampling = resampling
        self._resampling = RESAMPLING_METHODS[resampling]
        self.nodata = nodata
        self._local = threading.local()
        self._open_lock = threading.Lock()
        self._opened: list[rasterio.io.DatasetReader] = []
        self._info = self._read_info(bands)
        self.extent = extent if extent is not None else _extent_of(self._info)

    def __repr__(self) -> str:
        return f"RasterSource({self.path!r})"

    def check(self) -> None:
        """Raise SourceError if the file is no longer readable."""
        self._dataset(_FULL_RES)

    def close(self) -> None:
        """Close every dataset this source opened (in any thread)."""
        with self._open_lock:
            opened, self._opened = self._opened, []
        for dataset in opened:
            dataset.close()
        self._local = threading.local()

    def get_map(self, query: MapQuery) -> ImageResult:
        """Read the part of the raster covering ``query``, resampled to its size and SRS."""
        width, height = query.size
        if width <= 0 or height <= 0:
            raise SourceError(f"raster source {self.path!r}: invalid image size {query.size}")
        dst_crs = _rasterio_crs(query.srs)
        src_bbox = self._query_bbox_in_source_crs(query.bbox, dst_crs)
        if src_bbox is not None and not bbox_intersects(src_bbox, self._info.bounds):
            return self._blank(query)
        overview = self._overview_for(src_bbox, width, height)
        try:
            bands, alpha = self._warp(overview, dst_crs, query.bbox, width, height)
        except RasterioError as error:
            raise SourceError(f"raster source {self.path!r}: could not read: {error}") from error
        return self._result(query, bands, alpha)

    # -- reading -----------------------------------------------------------------

    def _read_info(self, bands: Sequence[int] | None) -> _RasterInfo:
        dataset = self._dataset(_FULL_RES)
        if dataset.crs is None:
            raise SourceError(f"raster source {self.path!r}: the file has no CRS")
        colorinterp = dataset.colorinterp
        data_bands = tuple(bands) if bands is not None else _default_bands(colorinterp)
        if len(data_bands) not in (1, 3):
            raise SourceError(f"raster source {self.path!r}: bands must list 1 or 3 band indexes")
        for index in data_bands:
            if not 1 <= index <= dataset.count:
                raise SourceError(
                    f"raster source {self.path!r}: band {index} does not exist "
                    f"(the file has {dataset.count})"
                )
        palette = None
        if len(data_bands) == 1 and colorinterp[data_bands[0] - 1] == ColorInterp.palette:
            palette = _palette_lut(dataset.colormap(data_bands[0]))
        left, bottom, right, top = dataset.bounds
        return _RasterInfo(
            crs=dataset.crs,
            bounds=(min(left, right), min(bottom, top), max(left, right), max(bottom, top)),
            res=(abs(dataset.res[0]), abs(dataset.res[1])),
            overview_factors=tuple(dataset.overviews(data_bands[0])),
            data_bands=data_bands,
            has_alpha_band=ColorInterp.alpha in colorinterp,
            band_count=dataset.count,
            palette=palette,
        )

    def _dataset(self, overview: int) -> rasterio.io.DatasetReader:
        """This thread's open dataset for ``overview`` (rasterio datasets are not thread-safe)."""
        cache: dict[int, rasterio.io.DatasetReader] | None = getattr(self._local, "datasets", None)
        if cache is None:
            cache = self._local.datasets = {}
        dataset = cache.get(overview)
        if dataset is None:
            dataset = self._open(overview)
            cache[overview] = dataset
            with self._open_lock:
                self._opened.append(dataset)
        return dataset

    def _open(self, overview: int) -> rasterio.io.DatasetReader:
        is_local = "://" not in self.path and not self.path.startswith("/vsi")
        if is_local and not os.path.exists(self.path):
            raise SourceError(f"raster source: file not found: {self.path}")
        options = {} if overview == _FULL_RES else {"overview_level": overview}
        try:
            return rasterio.open(self.path, **options)
        except RasterioError as error:
            raise SourceError(f"raster source: cannot open {self.path}: {error}") from error

    def _query_bbox_in_source_crs(self, bbox: BBox, dst_crs: CRS) -> BBox | None:
        """``bbox`` in the file's CRS, or None if it cannot be transformed."""
        if dst_crs == self._info.crs:
            return bbox
        try:
            result = transform_bounds(dst_crs, self._info.crs, *bbox, densify_pts=8)
        except (RasterioError, ValueError):
            return None
        if not all(math.isfinite(value) for value in result):
            return None
        return (result[0], result[1], result[2], result[3])

    def _overview_for(self, src_bbox: BBox | None, width: int, height: int) -> int:
        """Coarsest overview that still has at least the requested resolution."""
        if src_bbox is None or not self._info.overview_factors:
            return _FULL_RES
        res_x = (src_bbox[2] - src_bbox[0]) / width
        res_y = (src_bbox[3] - src_bbox[1]) / height
        ratio = min(res_x / self._info.res[0], res_y / self._info.res[1])
        chosen = _FULL_RES
        for index, factor in enumerate(self._info.overview_factors):
            if factor <= ratio:
                chosen = index
        return chosen

    def _warp(
        self, overview: int, dst_crs: CRS, bbox: BBox, width: int, height: int
    ) -> tuple[np.ndarray[Any, np.dtype[Any]], np.ndarray[Any, np.dtype[Any]]]:
        dataset = self._dataset(overview)
        info = self._info
        resampling = Resampling.nearest if info.palette is not None else self._resampling
        transform = _bbox_transform(bbox, width, height)
        vrt_options: dict[str, Any] = {}
        if self.nodata is not None:
            vrt_options["src_nodata"] = self.nodata
        with WarpedVRT(
            dataset,
            crs=dst_crs,
            transform=transform,
            width=width,
            height=height,
            resampling=resampling,
            add_alpha=not info.has_alpha_band,
            **vrt_options,
        ) as vrt:
            alpha_index = _alpha_index(vrt.colorinterp) or vrt.count
            data = vrt.read([*info.data_bands, alpha_index])
        return data[:-1], data[-1]

    # -- output ------------------------------------------------------------------

    def _result(
        self,
        query: MapQuery,
        bands: np.ndarray[Any, np.dtype[Any]],
        alpha: np.ndarray[Any, np.dtype[Any]],
    ) -> ImageResult:
        alpha = _to_uint8(alpha)
        if self._info.palette is not None:
            rgba = self._info.palette[bands[0].astype(np.intp) & 0xFF]
            pixels = rgba[..., :3]
            alpha = np.minimum(alpha, rgba[..., 3])
        else:
            pixels = np.moveaxis(_to_uint8(bands), 0, -1)
            if pixels.shape[-1] == 1:
                pixels = pixels[..., 0]
        with_alpha = self.transparent or query.transparent or bool((alpha < 255).any())
        if not with_alpha:
            mode = "L" if pixels.ndim == 2 else "RGB"
            return ImageResult(Image.fromarray(pixels, mode), transparent=False)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., np.newaxis], 3, axis=-1)
        rgba_pixels = np.concatenate([pixels, alpha[..., np.newaxis]], axis=-1)
        return ImageResult(
            Image.fromarray(np.ascontiguousarray(rgba_pixels), "RGBA"), transparent=True
        )

    def _blank(self, query: MapQuery) -> ImageResult:
        """A fully transparent image for queries that miss the raster."""
        return ImageResult(Image.new("RGBA", query.size, (0, 0, 0, 0)), transparent=True)


def _bbox_transform(bbox: BBox, width: int, height: int) -> Affine:
    """Pixel-to-map transform of a north-up image of ``width`` x ``height`` covering ``bbox``."""
    minx, miny, maxx, maxy = bbox
    return Affine((maxx - minx) / width, 0.0, minx, 0.0, -(maxy - miny) / height, maxy)


def _default_bands(colorinterp: Sequence[ColorInterp]) -> tuple[int, ...]:
    """1-based indexes of the RGB bands, else the first band."""
    rgb = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(colour in colorinterp for colour in rgb):
        return tuple(list(colorinterp).index(colour) + 1 for colour in rgb)
    data = [i + 1 for i, colour in enumerate(colorinterp) if colour != ColorInterp.alpha]
    if len(data) >= 3 and ColorInterp.palette not in colorinterp:
        return tuple(data[:3])
    return (data[0],) if data else (1,)


def _alpha_index(colorinterp: Sequence[ColorInterp]) -> int | None:
    for index, colour in enumerate(colorinterp):
        if colour == ColorInterp.alpha:
            return index + 1
    return None


def _palette_lut(colormap: dict[int, tuple[int, ...]]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A 256x4 RGBA lookup table from a GDAL colour table."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for value, colour in colormap.items():
        if 0 <= value < 256:
            lut[value, : len(colour)] = colour[:4]
            if len(colour) < 4:
                lut[value, 3] = 255
    return lut


def _to_uint8(array: np.ndarray[Any, np.dtype[Any]]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Pixel values as 8 bit; other types are clipped to 0..255, NaN becomes 0."""
    if array.dtype != np.uint8:
        array = np.clip(np.nan_to_num(array), 0, 255)
    return array.astype(np.uint8, copy=False)


def _extent_of(info: _RasterInfo) -> MapExtent | None:
    """The file's bounds as a MapExtent in its own CRS (None if the CRS has no code)."""
    code = _srs_code(info.crs)
    if code is None:
        return None
    try:
        srs = get_srs(code)
    except MapProxyError:
        return None
    return MapExtent(info.bounds, srs)


def _srs_code(crs: CRS) -> str | None:
    epsg = crs.to_epsg()
    if epsg is not None:
        return f"EPSG:{epsg}"
    authority = crs.to_authority()
    if authority is not None:
        return f"{authority[0]}:{authority[1]}"
    return None


@lru_cache(maxsize=256)
def _rasterio_crs(srs: SRS) -> CRS:
    """The rasterio CRS of a MapProxy SRS (x/y axis order, EPSG:900913 -> EPSG:3857)."""
    epsg = srs.crs.to_epsg()
    if epsg is not None:
        return CRS.from_epsg(epsg)
    authority = srs.crs.to_authority()
    if authority is not None:
        try:
            return CRS.from_user_input(f"{authority[0]}:{authority[1]}")
        except RasterioError:
            pass
    return CRS.from_wkt(srs.crs.to_wkt())
