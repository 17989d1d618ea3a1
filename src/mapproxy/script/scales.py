"""``mapproxy-util scales``: convert scale denominators to resolutions and back."""

from __future__ import annotations

import ast
import operator
import optparse
import sys
from collections.abc import Callable
from typing import TextIO

from mapproxy.grid.resolutions import UNIT_FACTOR_DEGREES

# DPI of the OGC 0.28 mm pixel (about 90.71). The conversions are written as they are
# (inch as 2.54 cm / 100, the literal 0.00028) to give the reference's last digits.
OGC_DPI = 2.54 / (0.00028 * 100)
NAMED_DPIS = {"OGC": OGC_DPI}

_BINARY_OPERATORS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY_OPERATORS: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class ScalesError(Exception):
    """A value or option that cannot be used; printed after ``ERROR:``."""


def _parser() -> optparse.OptionParser:
    parser = optparse.OptionParser("%prog scales [options] scale/resolution[, ...]")
    parser.prog = "mapproxy-util"
    parser.add_option(
        "-l",
        "--levels",
        default=1,
        type="int",
        metavar="1",
        help="number of resolutions/scales to calculate",
    )
    parser.add_option(
        "-d", "--dpi", default=None, help="DPI to convert scales (use OGC for .28mm based DPI)"
    )
    parser.add_option(
        "--unit", default="m", metavar="m", help="use resolutions in meter (m) or degrees (d)"
    )
    parser.add_option(
        "--eval",
        default=False,
        action="store_true",
        help="evaluate args as Python expression. For example: 360/256",
    )
    parser.add_option(
        "--repeat",
        default=False,
        action="store_true",
        help=(
            "repeat all values, each time /10. For example: 1000 500 250 results in "
            "1000 500 250 100 50 25 10..."
        ),
    )
    parser.add_option(
        "--res-to-scale",
        default=False,
        action="store_true",
        help="convert resolutions to scale",
    )
    parser.add_option(
        "--as-res-config",
        default=False,
        action="store_true",
        help="output as resolution list for MapProxy grid configuration",
    )
    return parser


def evaluate(expression: str) -> float:
    """The value of an arithmetic expression such as ``360/256`` or ``2**3``."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
        return _evaluate_node(tree.body)
    except (SyntaxError, ArithmeticError, ValueError, TypeError) as error:
        raise ScalesError(f"cannot evaluate {expression!r}: {error}") from None


def _evaluate_node(node: ast.expr) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise ValueError("not a number")
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPERATORS:
        left, right = _evaluate_node(node.left), _evaluate_node(node.right)
        return float(_BINARY_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPERATORS:
        return float(_UNARY_OPERATORS[type(node.op)](_evaluate_node(node.operand)))
    raise ValueError("only numbers and + - * / // % ** are allowed")


def parse_value(text: str, use_eval: bool) -> float:
    """One input value: a float, or an arithmetic expression with ``--eval``."""
    if use_eval:
        return evaluate(text)
    try:
        return float(text)
    except ValueError:
        raise ScalesError(f"not a number: {text!r}") from None


def values_from_stream(stream: TextIO, use_eval: bool) -> list[float]:
    """One value per non-empty line of ``stream``."""
    return [parse_value(line, use_eval) for line in stream if line.strip()]


def expand_values(values: list[float], levels: int, repeat: bool) -> list[float]:
    """The values to print: sorted descending, then extended as the reference does.

    With ``repeat`` the sorted values are repeated, each round divided by 10, until
    ``levels`` values exist. Otherwise, when ``levels`` exceeds the number of values,
    ``levels - 1`` halvings of the smallest value are appended.
    """
    values = sorted(values, reverse=True)
    if not values:
        return values
    if repeat:
        base = list(values)
        divisor = 10.0
        while len(values) < levels:
            for value in base:
                if len(values) >= levels:
                    break
                values.append(value / divisor)
            divisor *= 10
        return values
    if levels > len(values):
        last = values[-1]
        for _ in range(levels - 1):
            last /= 2
            values.append(last)
    return values


def scale_to_res(scale: float, dpi: float, unit_factor: float) -> float:
    """Resolution (in units per pixel) of a scale denominator."""
    return scale * _metres_per_pixel(dpi) / unit_factor


def res_to_scale(res: float, dpi: float, unit_factor: float) -> float:
    """Scale denominator of a resolution (in units per pixel)."""
    return res / _metres_per_pixel(dpi) * unit_factor


def _metres_per_pixel(dpi: float) -> float:
    return 2.54 / dpi / 100


def format_lines(
    values: list[float],
    dpi: float,
    unit_factor: float,
    res_to_scale_mode: bool,
    as_res_config: bool,
) -> list[str]:
    """Output lines: converted value, level, input value per line."""
    convert = res_to_scale if res_to_scale_mode else scale_to_res
    lines: list[str] = []
    if as_res_config:
        lines.append("    res: [")
        lines.append(f"         #  res            level     scale @{dpi:.1f} DPI")
    for level, value in enumerate(values):
        converted = convert(value, dpi, unit_factor)
        if as_res_config:
            lines.append(f"    {converted:20.10f}, # {level:2d} {value:20.8f}")
        else:
            lines.append(f"{converted:20.10f} # {level:2d} {value:20.8f}")
    if as_res_config:
        lines.append("    ]")
    return lines


def _dpi(value: str | None) -> float:
    if value is None:
        return OGC_DPI
    if value in NAMED_DPIS:
        return NAMED_DPIS[value]
    try:
        return float(value)
    except ValueError:
        raise ScalesError(f"invalid DPI {value!r} (a number or OGC)") from None


def scales_command(argv: list[str]) -> int:
    """Run ``mapproxy-util scales``; returns the exit code."""
    parser = _parser()
    options, args = parser.parse_args(argv)
    if not args:
        parser.print_help()
        return 1
    try:
        dpi = _dpi(options.dpi)
        if args == ["-"]:
            values = values_from_stream(sys.stdin, options.eval)
        else:
            values = [parse_value(arg, options.eval) for arg in args]
        unit_factor = UNIT_FACTOR_DEGREES if options.unit == "d" else 1.0
        values = expand_values(values, options.levels, options.repeat)
        lines = format_lines(values, dpi, unit_factor, options.res_to_scale, options.as_res_config)
    except (ScalesError, ZeroDivisionError, OverflowError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0
