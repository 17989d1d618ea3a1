"""mapproxy-util scales: outputs checked against MapProxy 7.0.0 (run once, copied here)."""

from __future__ import annotations

import io

import pytest

from mapproxy.script import util


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = util.main(["scales", *args])
    return code, capsys.readouterr().out.splitlines()


def test_scales_to_resolutions_sorted_descending(capsys):
    assert run(capsys, "50000", "100000") == (
        0,
        [
            "       28.0000000000 #  0      100000.00000000",
            "       14.0000000000 #  1       50000.00000000",
        ],
    )


def test_levels_beyond_values_append_levels_minus_one_halvings(capsys):
    code, lines = run(capsys, "-l", "3", "1000", "700")
    assert code == 0
    assert lines == [
        "        0.2800000000 #  0        1000.00000000",
        "        0.1960000000 #  1         700.00000000",
        "        0.0980000000 #  2         350.00000000",
        "        0.0490000000 #  3         175.00000000",
    ]


def test_repeat_divides_each_round_by_ten_until_levels(capsys):
    _, lines = run(capsys, "--repeat", "-l", "5", "1000", "500")
    assert [line.split("#")[1].split()[1] for line in lines] == [
        "1000.00000000",
        "500.00000000",
        "100.00000000",
        "50.00000000",
        "10.00000000",
    ]


def test_res_to_scale_in_degrees_matches_reference_digits(capsys):
    assert run(capsys, "--res-to-scale", "--unit", "d", "0.1")[1] == [
        " 39756960.9975977167 #  0           0.10000000"
    ]
    assert run(capsys, "-l", "2", "--res-to-scale", "156543.03392804097")[1] == [
        "559082264.0287177563 #  0      156543.03392804",
        "279541132.0143588781 #  1       78271.51696402",
    ]


def test_dpi_option(capsys):
    assert run(capsys, "-d", "96", "1000")[1] == ["        0.2645833333 #  0        1000.00000000"]
    assert run(capsys, "-d", "72", "--res-to-scale", "1")[1] == [
        "     2834.6456692913 #  0           1.00000000"
    ]


def test_as_res_config_block_names_the_dpi(capsys):
    assert run(capsys, "--as-res-config", "-l", "2", "-d", "96", "123456789")[1] == [
        "    res: [",
        "         #  res            level     scale @96.0 DPI",
        "        32664.6087562500, #  0   123456789.00000000",
        "        16332.3043781250, #  1    61728394.50000000",
        "    ]",
    ]


def test_eval_accepts_arithmetic_only(capsys):
    assert run(capsys, "--eval", "--res-to-scale", "360/256")[1] == [
        "     5022.3214285714 #  0           1.40625000"
    ]
    assert util.main(["scales", "--eval", "__import__('os')"]) == 1
    assert "ERROR: cannot evaluate" in capsys.readouterr().err


def test_values_from_stdin_with_dash(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("1000\n2000\n"))
    assert run(capsys, "-") == (
        0,
        [
            "        0.5600000000 #  0        2000.00000000",
            "        0.2800000000 #  1        1000.00000000",
        ],
    )


def test_no_values_prints_help_with_exit_1(capsys):
    code, lines = run(capsys)
    assert code == 1
    assert lines[0] == "Usage: mapproxy-util scales [options] scale/resolution[, ...]"


def test_invalid_value_is_an_error_not_a_traceback(capsys):
    assert util.main(["scales", "abc"]) == 1
    assert capsys.readouterr().err.strip() == "ERROR: not a number: 'abc'"
