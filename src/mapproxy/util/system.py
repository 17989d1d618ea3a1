"""Environment report on the ``mapproxy.system`` logger: library versions and problems."""

from __future__ import annotations

import logging
import platform
import sys
import threading

log = logging.getLogger("mapproxy.system")

_reported = False
_proj_reported = False
_reported_lock = threading.Lock()

# Pillow features MapProxy relies on, and what is missing without them.
_PILLOW_FEATURES = (
    ("codec", "zlib", "PNG images cannot be read or written"),
    ("codec", "jpg", "JPEG images cannot be read or written"),
    (
        "feature",
        "freetype2",
        "error messages and watermarks use a small bitmap font (font_size is ignored)",
    ),
)


def log_system_info() -> None:
    """Log versions (INFO, details at DEBUG) and missing features (WARNING), once per process.

    PROJ is reported when it is first loaded (``log_proj_info``): a process serving only
    cached tiles never loads it."""
    global _reported
    with _reported_lock:
        if _reported:
            return
        _reported = True
    report_system_info()


def report_system_info() -> None:
    """Log the environment report now (``log_system_info`` does it only once)."""
    import PIL

    from mapproxy import __version__

    log.info(
        "MapProxy %s on Python %s; Pillow %s",
        __version__,
        platform.python_version(),
        PIL.__version__,
    )
    _check_pillow()
    if "pyproj" in sys.modules:
        log_proj_info()


def log_proj_info() -> None:
    """Log the PROJ and pyproj versions and check PROJ's data, once per process."""
    global _proj_reported
    with _reported_lock:
        if _proj_reported:
            return
        _proj_reported = True
    report_proj_info()


def report_proj_info() -> None:
    """Log the PROJ part of the environment report now."""
    import pyproj

    log.info("PROJ %s (pyproj %s)", pyproj.proj_version_str, pyproj.__version__)
    _check_proj_data()


def _check_proj_data() -> None:
    from pyproj.datadir import get_data_dir
    from pyproj.exceptions import DataDirError

    try:
        data_dir = get_data_dir()
    except DataDirError as error:
        log.warning("PROJ data directory not found, transformations may fail: %s", error)
        return
    log.debug("PROJ data directory: %s", data_dir)


def _check_pillow() -> None:
    from PIL import features

    available = []
    for kind, name, consequence in _PILLOW_FEATURES:
        present = features.check_codec(name) if kind == "codec" else features.check(name)
        if present:
            available.append(name)
        else:
            log.warning("Pillow has no %s support: %s", name, consequence)
    log.debug("Pillow features: %s", ", ".join(available) or "none")
