"""base: merging, env expansion and file tracking of the YAML loader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from mapproxy.config import loader
from mapproxy.config.loader import expand_env, load_configuration_files, merge_dicts
from mapproxy.errors import ConfigurationError


def test_over_scalar_wins_and_dicts_merge_recursively():
    base = {"globals": {"cache": {"base_dir": "a", "meta_size": [4, 4]}}, "x": 1}
    over = {"globals": {"cache": {"base_dir": "b"}}, "x": 2}
    merged = merge_dicts(over, base)
    assert merged == {"globals": {"cache": {"base_dir": "b", "meta_size": [4, 4]}}, "x": 2}


def test_lists_concatenate_except_replaced_keys():
    base = {"image_formats": ["a"], "bbox": [0, 0, 1, 1], "sources": ["s1"], "res": [2, 1]}
    over = {"image_formats": ["b"], "bbox": [0, 0, 2, 2], "sources": ["s2"], "res": [4]}
    merged = merge_dicts(over, base)
    assert merged["image_formats"] == ["a", "b"]
    assert merged["bbox"] == [0, 0, 2, 2]
    assert merged["sources"] == ["s2"]
    assert merged["res"] == [4]


def test_empty_list_deletes_but_sources_and_layers_have_own_rules():
    base = {"srs": ["EPSG:4326"], "sources": ["a"], "layers": [{"name": "l1", "title": "L"}]}
    merged = merge_dicts({"srs": [], "sources": [], "layers": []}, base)
    assert merged["srs"] is None
    assert merged["sources"] == []
    assert merged["layers"] == [{"name": "l1", "title": "L"}]


def test_null_keeps_base_values():
    base = {"d": {"k": 1}, "l": [1]}
    assert merge_dicts({"d": None, "l": None}, base) == base


def test_layers_merge_by_name_keeping_base_position():
    base = {"layers": [{"name": "a", "title": "A"}, {"name": "b", "title": "B"}]}
    over = {"layers": [{"name": "c", "title": "C"}, {"name": "a", "title": "A2", "md": {}}]}
    merged = merge_dicts(over, base)
    assert merged["layers"] == [
        {"name": "a", "title": "A2", "md": {}},
        {"name": "b", "title": "B"},
        {"name": "c", "title": "C"},
    ]


def test_base_files_are_loaded_relative_and_earlier_bases_win(tmp_path: Path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "one.yaml").write_text("globals: {cache: {base_dir: one}}\nx: one\n")
    (sub / "two.yaml").write_text("globals: {cache: {base_dir: two, meta_buffer: 10}}\ny: two\n")
    (tmp_path / "main.yaml").write_text("base: [sub/one.yaml, sub/two.yaml]\nx: main\n")
    loaded = load_configuration_files(str(tmp_path / "main.yaml"))
    assert loaded.data == {
        "globals": {"cache": {"base_dir": "one", "meta_buffer": 10}},
        "x": "main",
        "y": "two",
    }
    assert set(loaded.config_files) == {
        str(tmp_path / "main.yaml"),
        str(sub / "one.yaml"),
        str(sub / "two.yaml"),
    }


def test_nested_base_includes_are_tracked(tmp_path: Path):
    (tmp_path / "c.yaml").write_text("z: 1\n")
    (tmp_path / "b.yaml").write_text("base: c.yaml\ny: 1\n")
    (tmp_path / "a.yaml").write_text("base: b.yaml\nx: 1\n")
    loaded = load_configuration_files(str(tmp_path / "a.yaml"))
    assert loaded.data == {"x": 1, "y": 1, "z": 1}
    assert len(loaded.config_files) == 3


def test_circular_base_is_an_error(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigurationError, match="circular"):
        load_configuration_files(str(tmp_path / "a.yaml"))


def test_env_expansion_in_strings_only(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MP_HOST", "example.org")
    value = {"url": "http://${MP_HOST}/wms?x=$MP_HOST", "n": 5, "l": ["$MP_HOST"]}
    assert expand_env(value) == {
        "url": "http://example.org/wms?x=example.org",
        "n": 5,
        "l": ["example.org"],
    }


def test_unset_env_variable_stays_and_warns(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MP_UNSET_VAR", raising=False)
    with pytest.warns(UserWarning, match="MP_UNSET_VAR"):
        assert expand_env("a/${MP_UNSET_VAR}/b") == "a/${MP_UNSET_VAR}/b"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("services:\n\twms: {}\n")
    with pytest.raises(ConfigurationError) as info:
        load_configuration_files(str(path))
    assert "bad.yaml" in str(info.value)
    assert "line 2" in str(info.value)


def test_libyaml_parser_is_used_when_available():
    assert loader._SafeLoader is yaml.CSafeLoader


@pytest.mark.parametrize("parser", ["CSafeLoader", "SafeLoader"])
@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("services:\n  wms:\nlayers: [a, b\nx: 1\n", "line 4, column 2"),
        ("services:\n  wms: 1\n   tms: 2\n", "line 3, column 7"),
        ("a: 1\nb: *missing\n", "line 2, column 4"),
    ],
)
def test_yaml_errors_give_line_and_column_with_either_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parser: str, text: str, position: str
):
    monkeypatch.setattr(loader, "_SafeLoader", getattr(yaml, parser))
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_configuration_files(str(path))
    assert str(info.value).startswith(f"{path}: invalid YAML ({position}): ")


@pytest.mark.parametrize("parser", ["CSafeLoader", "SafeLoader"])
def test_both_parsers_read_the_same_values(monkeypatch: pytest.MonkeyPatch, parser: str):
    monkeypatch.setattr(loader, "_SafeLoader", getattr(yaml, parser))
    text = "a: [1, 2.5, '3', yes, null, 0o17, 017, 1_000]\nb: {c: 2020-01-01, d: .inf}\n"
    data = loader.load_yaml_text(text)
    assert data["a"] == [1, 2.5, "3", True, None, "0o17", 15, 1000]
    assert str(data["b"]["c"]) == "2020-01-01" and data["b"]["d"] == float("inf")
    with pytest.raises(ConfigurationError, match="python/object"):
        loader.load_yaml_text("a: !!python/object:os.system {}\n")


def test_missing_file_is_a_configuration_error(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="could not read"):
        load_configuration_files(os.path.join(tmp_path, "nope.yaml"))
