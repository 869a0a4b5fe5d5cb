"""argparse value types shared by the ``attnviz`` commands (standard library only: fast --help)."""
from __future__ import annotations

import argparse
import math
from typing import Callable, TypeVar

T = TypeVar("T")


def _checked(text: str, convert: Callable[[str], T], accept: Callable[[T], bool], expected: str) -> T:
    """``convert(text)`` if it works and ``accept`` likes it, else an argparse error naming both."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _checked(text, int, lambda v: v > 0, "a positive integer")


def non_negative_int(text: str) -> int:
    return _checked(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _checked(text, float, lambda v: v > 0 and math.isfinite(v), "a positive finite number")


def unit_float(text: str) -> float:
    """A number in [0, 1] (fractions, curriculum positions)."""
    return _checked(text, float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def open_unit_float(text: str) -> float:
    """A number strictly between 0 and 1 (confidence levels)."""
    return _checked(text, float, lambda v: 0.0 < v < 1.0, "a number strictly between 0 and 1")


def column_list(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers, e.g. ``1,2,4``."""
    return _checked(
        text,
        lambda t: tuple(int(part) for part in t.split(",")),
        lambda v: bool(v) and min(v) > 0,
        "comma-separated positive integers",
    )
