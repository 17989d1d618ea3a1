#!/usr/bin/env python3
"""Build examples/data/natural-earth-world.tif, the public-domain world raster of the example.

Source image: ``50-natural-earth-1-downsampled.png`` (720x360 px, Natural Earth I
shaded relief, plate carree -180,-90,180,90, 0.5 degree per pixel), as shipped in the
``cartopy`` wheel on PyPI under ``cartopy/data/raster/natural_earth/``. Cartopy's data
LICENSE states that the image is downsampled from Natural Earth data, which is in the
public domain (https://www.naturalearthdata.com/about/terms-of-use/).

By default the script runs ``pip download --no-deps cartopy==0.26.0`` into a temporary
directory and takes the PNG from that wheel (cartopy is not installed); pass
``--source some.png`` or ``--source cartopy-*.whl`` to use a local copy instead. The
output is a Cloud Optimized GeoTIFF in EPSG:4326: RGB, 256x256 tiles, DEFLATE with a
horizontal predictor, and average-resampled overviews. Needs rasterio, numpy, Pillow.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from PIL import Image
from rasterio.io import MemoryFile

CARTOPY_REQUIREMENT = "cartopy==0.26.0"
PNG_MEMBER = "cartopy/data/raster/natural_earth/50-natural-earth-1-downsampled.png"
PNG_SHA256 = "49c66a4db7f5a5cfd12bd344850e8c6e433ed1a4afad73f44e6e1a9aa13fa726"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "examples/data/natural-earth-world.tif"


def png_from_wheel(wheel: Path) -> bytes:
    """The Natural Earth PNG stored in a cartopy wheel."""
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(PNG_MEMBER)


def download_png() -> bytes:
    """Fetch the cartopy wheel with pip (no install) and return the PNG inside it."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                tmp,
                CARTOPY_REQUIREMENT,
            ],
            check=True,
        )
        wheels = sorted(Path(tmp).glob("cartopy-*.whl"))
        if not wheels:
            raise SystemExit("pip did not download a cartopy wheel")
        return png_from_wheel(wheels[0])


def load_source(source: Path | None) -> bytes:
    """PNG bytes from ``source`` (PNG or wheel), else downloaded; checked against the hash."""
    if source is None:
        data = download_png()
    elif source.suffix == ".whl":
        data = png_from_wheel(source)
    else:
        data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != PNG_SHA256:
        print(f"warning: source PNG sha256 {digest} differs from {PNG_SHA256}", file=sys.stderr)
    return data


def write_cog(png: bytes, output: Path) -> None:
    """Georeference the plate carree PNG to EPSG:4326 and write it as a COG."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    bands = np.asarray(image).transpose(2, 0, 1).copy()
    _, height, width = bands.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": Affine(360.0 / width, 0.0, -180.0, 0.0, -180.0 / height, 90.0),
        "photometric": "RGB",
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dataset:
            dataset.write(bands)
            dataset.update_tags(
                SOURCE="Natural Earth I shaded relief (50m, downsampled), via cartopy",
                LICENSE="Public domain (Natural Earth)",
            )
        with memfile.open() as dataset:
            # The COG driver can only copy an existing dataset; it builds the overviews.
            rasterio.shutil.copy(
                dataset,
                str(output),
                driver="COG",
                COMPRESS="DEFLATE",
                PREDICTOR="2",
                LEVEL="9",
                BLOCKSIZE="256",
                OVERVIEWS="AUTO",
                OVERVIEW_RESAMPLING="AVERAGE",
                RESAMPLING="AVERAGE",
            )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="local PNG or cartopy wheel")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    write_cog(load_source(args.source), args.output)
    with rasterio.open(args.output) as dataset:
        print(
            f"wrote {args.output} ({args.output.stat().st_size} bytes): "
            f"{dataset.width}x{dataset.height}, {dataset.crs}, bounds {tuple(dataset.bounds)}, "
            f"overviews {dataset.overviews(1)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
