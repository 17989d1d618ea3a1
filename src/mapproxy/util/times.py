"""Time specs of ``refresh_before``/``remove_before``: absolute time, file mtime, relative."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any

from mapproxy.errors import ConfigurationError

_RELATIVE_SECONDS = {
    "weeks": 7 * 24 * 3600.0,
    "days": 24 * 3600.0,
    "hours": 3600.0,
    "minutes": 60.0,
    "seconds": 1.0,
}


def timestamp_before(spec: Mapping[str, Any], now: float, base_dir: str) -> float:
    """The Unix timestamp a time spec stands for.

    ``time`` (ISO string or YAML timestamp; naive times are local time) wins over
    ``mtime`` (file path, relative to ``base_dir``); otherwise the sum of ``weeks``,
    ``days``, ``hours``, ``minutes`` and ``seconds`` is subtracted from ``now``.
    Raises ``ConfigurationError`` (without key path; callers prefix it).
    """
    if spec.get("time") is not None:
        return parse_time(spec["time"])
    if spec.get("mtime") is not None:
        return file_mtime(str(spec["mtime"]), base_dir)
    return now - relative_seconds(spec)


def is_relative(spec: Mapping[str, Any]) -> bool:
    """Whether the spec depends on "now" (no ``time`` and no ``mtime``)."""
    return spec.get("time") is None and spec.get("mtime") is None


def relative_seconds(spec: Mapping[str, Any]) -> float:
    """The summed relative amounts of a spec in seconds (missing keys count 0)."""
    total = 0.0
    for key, factor in _RELATIVE_SECONDS.items():
        value = spec.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"{key}: expected a number, got {value!r}")
        total += float(value) * factor
    return total


def parse_time(value: Any) -> float:
    """Unix timestamp of an ISO date/time string or a YAML datetime/date."""
    parsed: datetime.datetime | None = None
    if isinstance(value, datetime.datetime):
        parsed = value
    elif isinstance(value, datetime.date):
        parsed = datetime.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
    if parsed is None:
        raise ConfigurationError(f"can't parse time '{value}'. should be ISO time string")
    # datetime.timestamp() treats naive values as local time.
    return parsed.timestamp()


def file_mtime(path: str, base_dir: str) -> float:
    """Modification time of ``path`` (relative paths are relative to ``base_dir``)."""
    full_path = os.path.join(base_dir, path)
    try:
        return os.path.getmtime(full_path)
    except OSError:
        raise ConfigurationError(
            f"can't parse last modified time from file '{full_path}'."
        ) from None
