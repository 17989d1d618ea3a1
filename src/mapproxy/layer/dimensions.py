"""Layer dimensions (``time``, ``elevation``, ``dim_*``): configured values and defaults.

A dimension lists its allowed values; the default is the configured ``default`` or the
last value. A single value with ``/`` is a range: for names containing ``time`` an
ISO8601 interval ``start/end[/period]`` (bounded intervals with a period are expanded
into every step from start until one reaches the end; without a period only start and
end are listed), otherwise the parts between the slashes are the values (``1/5`` ->
``1``, ``5``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from mapproxy.errors import ConfigurationError

# More values than this from one ISO8601 interval is a configuration error.
MAX_INTERVAL_VALUES = 10_000

_PERIOD_RE = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


@dataclass(frozen=True, slots=True)
class Dimension:
    """One dimension of a layer: lower-cased ``name``, allowed ``values``, ``default``."""

    name: str
    values: tuple[str, ...]
    default: str

    @property
    def is_time(self) -> bool:
        return "time" in self.name

    def resolve(self, value: str | None) -> str | None:
        """The value to use for a requested ``value`` (None or ``default``: the default);
        None if the value is not allowed."""
        if value is None or value == "default":
            return self.default
        return value if value in self.values else None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_dimensions(raw: Mapping[str, Any] | None, path: str) -> dict[str, Dimension]:
    """``dimensions`` of a layer config (``path`` is its key path for errors)."""
    result: dict[str, Dimension] = {}
    for key, conf in (raw or {}).items():
        name = str(key).lower()
        key_path = f"{path}.{key}"
        if not isinstance(conf, Mapping):
            raise ConfigurationError(f"{key_path}: expected a mapping with 'values'")
        unknown = sorted(str(k) for k in conf if k not in ("values", "default"))
        if unknown:
            raise ConfigurationError(f"{key_path}: unknown option(s) {', '.join(unknown)}")
        raw_values = conf.get("values")
        if isinstance(raw_values, str | int | float) and not isinstance(raw_values, bool):
            raw_values = [raw_values]
        if not isinstance(raw_values, list) or not raw_values:
            raise ConfigurationError(f"{key_path}.values: expected a non-empty list")
        if any(isinstance(v, Mapping | list) or v is None for v in raw_values):
            raise ConfigurationError(f"{key_path}.values: expected strings or numbers")
        values = [_text(v) for v in raw_values]
        if len(values) == 1 and "/" in values[0]:
            values = _range_values(name, values[0], f"{key_path}.values")
        default = conf.get("default")
        result[name] = Dimension(
            name=name,
            values=tuple(values),
            default=_text(default) if default is not None else values[-1],
        )
    return result


def _range_values(name: str, text: str, path: str) -> list[str]:
    parts = text.split("/")
    if "time" not in name:
        return [part.strip() for part in parts if part.strip()]
    if len(parts) not in (2, 3):
        raise ConfigurationError(f"{path}: invalid ISO8601 interval {text!r}")
    start_text, end_text = parts[0].strip(), parts[1].strip()
    if len(parts) == 2:
        return [start_text, end_text]
    period = _parse_period(parts[2].strip())
    if period is None:
        raise ConfigurationError(f"{path}: invalid ISO8601 period {parts[2]!r}")
    start = _parse_time(start_text)
    end = _parse_time(end_text)
    if start is None or end is None:
        raise ConfigurationError(f"{path}: invalid ISO8601 interval {text!r}")
    if (start.tzinfo is None) != (end.tzinfo is None):
        raise ConfigurationError(f"{path}: start and end need the same time zone style")
    if end < start:
        raise ConfigurationError(f"{path}: interval end lies before its start")
    date_only = "T" not in start_text and period[1] % timedelta(days=1) == timedelta(0)
    values: list[str] = []
    index = 0
    # As in MapProxy, the steps go on until one reaches the end: an end that is no
    # step is passed by the last value.
    while True:
        current = _add_period(start, period, index)
        values.append(_format_time(current, start_text, date_only))
        if current >= end:
            break
        if len(values) >= MAX_INTERVAL_VALUES:
            raise ConfigurationError(f"{path}: interval has more than {MAX_INTERVAL_VALUES} values")
        index += 1
    return values


def _parse_period(text: str) -> tuple[int, timedelta] | None:
    """(months, rest) of an ISO8601 period; None if invalid or empty."""
    match = _PERIOD_RE.match(text)
    if match is None or not any(match.groupdict().values()):
        return None
    groups = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    months = int(groups["years"]) * 12 + int(groups["months"])
    rest = timedelta(
        weeks=groups["weeks"],
        days=groups["days"],
        hours=groups["hours"],
        minutes=groups["minutes"],
        seconds=groups["seconds"],
    )
    if months == 0 and rest <= timedelta(0):
        return None
    return months, rest


def _parse_time(text: str) -> datetime | None:
    try:
        if "T" not in text:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value


def _add_period(start: datetime, period: tuple[int, timedelta], count: int) -> datetime:
    months, rest = period
    result = start
    if months:
        total = start.month - 1 + months * count
        year, month = start.year + total // 12, total % 12 + 1
        day = min(start.day, _days_in_month(year, month))
        result = result.replace(year=year, month=month, day=day)
    return result + rest * count


def _days_in_month(year: int, month: int) -> int:
    following = date(year + month // 12, month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


def _format_time(value: datetime, start_text: str, date_only: bool) -> str:
    """``value`` in the style of the interval start (date only, ``Z`` or an offset)."""
    if date_only:
        return value.date().isoformat()
    text = value.replace(tzinfo=None).isoformat()
    if value.tzinfo is None:
        return text
    if start_text.endswith("Z"):
        return text + "Z"
    offset = value.strftime("%z")
    return text + offset[:3] + ":" + offset[3:]


__all__ = ["MAX_INTERVAL_VALUES", "Dimension", "parse_dimensions"]
