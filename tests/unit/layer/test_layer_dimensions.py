"""Parsing layer ``dimensions``: value lists, ranges, ISO8601 intervals, defaults."""

from __future__ import annotations

import pytest

from mapproxy.errors import ConfigurationError
from mapproxy.layer.dimensions import MAX_INTERVAL_VALUES, Dimension, parse_dimensions


def parse(raw: dict[str, object]) -> dict[str, Dimension]:
    return parse_dimensions(raw, "layers[0].dimensions")


def test_values_default_and_lower_cased_names() -> None:
    dims = parse(
        {"Elevation": {"values": [0, 1000, 2.5]}, "dim_x": {"values": ["a"], "default": 3}}
    )
    assert dims == {
        "elevation": Dimension("elevation", ("0", "1000", "2.5"), "2.5"),
        "dim_x": Dimension("dim_x", ("a",), "3"),
    }
    assert not dims["elevation"].is_time


def test_single_string_values() -> None:
    assert parse({"dim_band": {"values": "1/5/7"}})["dim_band"].values == ("1", "5", "7")
    assert parse({"elevation": {"values": "100"}})["elevation"].values == ("100",)


def test_time_interval_with_period() -> None:
    dim = parse({"time": {"values": ["2020-01-01T00:00:00Z/2020-01-01T01:00:00Z/PT20M"]}})["time"]
    assert dim.values == (
        "2020-01-01T00:00:00Z",
        "2020-01-01T00:20:00Z",
        "2020-01-01T00:40:00Z",
        "2020-01-01T01:00:00Z",
    )
    assert dim.default == "2020-01-01T01:00:00Z"
    assert dim.is_time


def test_time_interval_months_dates_and_offsets() -> None:
    months = parse({"time": {"values": "2020-01-31/2020-04-30/P1M"}})["time"].values
    assert months == ("2020-01-31", "2020-02-29", "2020-03-31", "2020-04-30")
    days = parse({"start_time": {"values": "2020-01-01/2020-01-15/P1W"}})["start_time"].values
    assert days == ("2020-01-01", "2020-01-08", "2020-01-15")
    offset = parse({"time": {"values": "2020-01-01T00:00:00+02:00/2020-01-01T01:00:00+02:00/PT1H"}})
    assert offset["time"].values == ("2020-01-01T00:00:00+02:00", "2020-01-01T01:00:00+02:00")
    # As in MapProxy 7.0.0 the last step passes an end that is no step.
    hours = parse({"time": {"values": "2020-01-01T00:00:00/2020-01-01T05:00:00/PT2H"}})
    assert hours["time"].values == (
        "2020-01-01T00:00:00",
        "2020-01-01T02:00:00",
        "2020-01-01T04:00:00",
        "2020-01-01T06:00:00",
    )


def test_time_interval_without_period_lists_start_and_end() -> None:
    dim = parse({"time": {"values": "2020-01-01/2021-01-01"}})["time"]
    assert dim.values == ("2020-01-01", "2021-01-01")


def test_resolve() -> None:
    dim = Dimension("time", ("a", "b"), "b")
    assert dim.resolve(None) == "b"
    assert dim.resolve("default") == "b"
    assert dim.resolve("a") == "a"
    assert dim.resolve("c") is None


def test_too_many_interval_values() -> None:
    with pytest.raises(ConfigurationError, match=f"more than {MAX_INTERVAL_VALUES} values"):
        parse({"time": {"values": "2020-01-01T00:00:00Z/2021-01-01T00:00:00Z/PT1M"}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"time": {"values": None}}, "time.values: expected a non-empty list"),
        ({"time": {"values": [[1]]}}, "time.values: expected strings or numbers"),
        ({"time": {"values": "a/b/c/d"}}, "invalid ISO8601 interval 'a/b/c/d'"),
        ({"time": {"values": "2020-01-01/2020-02-01/1D"}}, "invalid ISO8601 period '1D'"),
        (
            {"time": {"values": "2020-01-01T00:00:00Z/2020-01-02T00:00:00/PT1H"}},
            "same time zone style",
        ),
    ],
)
def test_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^layers\[0\]\.dimensions\.") as info:
        parse(raw)
    assert message in str(info.value)
