from __future__ import annotations

import datetime
import os

import pytest

from mapproxy.errors import ConfigurationError
from mapproxy.util.times import is_relative, timestamp_before

NOW = 1_700_000_000.0


def test_relative_amounts_are_summed_and_subtracted_from_now():
    spec = {"weeks": 1, "days": 1, "hours": 1, "minutes": 1, "seconds": 1.5}
    expected = NOW - (7 * 86400 + 86400 + 3600 + 60 + 1.5)
    assert timestamp_before(spec, NOW, "/") == expected
    assert is_relative(spec)


def test_empty_spec_is_now():
    assert timestamp_before({}, NOW, "/") == NOW


def test_iso_time_string_is_local_time():
    expected = datetime.datetime(2024, 3, 1, 12, 30).timestamp()
    assert timestamp_before({"time": "2024-03-01T12:30:00"}, NOW, "/") == expected
    assert not is_relative({"time": "2024-03-01T12:30:00"})


def test_yaml_datetime_and_date_values():
    aware = datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.UTC)
    assert timestamp_before({"time": aware}, NOW, "/") == 1709294400.0
    date = datetime.date(2024, 3, 1)
    assert timestamp_before({"time": date}, NOW, "/") == datetime.datetime(2024, 3, 1).timestamp()


def test_time_wins_over_relative_amounts():
    spec = {"time": "2024-03-01T00:00:00", "days": 3}
    assert timestamp_before(spec, NOW, "/") == datetime.datetime(2024, 3, 1).timestamp()


def test_unparsable_time_names_the_value():
    with pytest.raises(ConfigurationError, match=r"can't parse time 'yesterday'\. should be ISO"):
        timestamp_before({"time": "yesterday"}, NOW, "/")


def test_mtime_is_relative_to_base_dir(tmp_path):
    path = tmp_path / "reseed.time"
    path.touch()
    os.utime(path, (1_600_000_000.5, 1_600_000_000.5))
    assert timestamp_before({"mtime": "reseed.time"}, NOW, str(tmp_path)) == 1_600_000_000.5
    assert timestamp_before({"mtime": str(path)}, NOW, "/elsewhere") == 1_600_000_000.5


def test_missing_mtime_file_is_an_error(tmp_path):
    expected = f"can't parse last modified time from file '{tmp_path}/nope'."
    with pytest.raises(ConfigurationError) as error:
        timestamp_before({"mtime": "nope"}, NOW, str(tmp_path))
    assert str(error.value) == expected


def test_non_numeric_amount_is_an_error():
    with pytest.raises(ConfigurationError, match="days: expected a number"):
        timestamp_before({"days": "two"}, NOW, "/")
