"""Argument checks shared by the drawers and layouts: one message per mistake, said early.

A figure drawn from a wrong-shaped map or a curve whose lags and values disagree still
renders, and then misleads; these checks turn such inputs into ``ValueError``\\ s that name
the argument and what was expected.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

from ..grid import TokenGrid
from ..lags import to_numpy

__all__ = [
    "as_1d",
    "as_float_array",
    "check_curve",
    "check_grid",
    "check_map",
    "finite_values",
    "layer_labels",
    "optional_period",
    "real",
]


def real(value: Any, name: str) -> float:
    """``value`` as a float, if it is a finite real number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def as_float_array(values: Any) -> np.ndarray:
    """Float numpy array of a numpy array, sequence or torch tensor (via ``attnviz.lags``)."""
    return np.asarray(to_numpy(values), dtype=float)


def as_1d(values: Any, name: str) -> np.ndarray:
    arr = as_float_array(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def check_grid(grid: Any) -> TokenGrid:
    if not isinstance(grid, TokenGrid):
        raise ValueError(f"grid must be an attnviz.grid.TokenGrid, got {type(grid).__name__}")
    return grid


def check_map(time_map: Any, grid: TokenGrid, name: str = "time_map") -> np.ndarray:
    """A (cols, cols) float map with at least one finite value, matching ``grid``."""
    arr = as_float_array(time_map)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(
            f"{name} must be a square (query cols, key cols) array, got shape {arr.shape}"
        )
    if arr.shape != (grid.cols, grid.cols):
        raise ValueError(
            f"{name} has shape {arr.shape} but the grid has {grid.cols} columns; expected "
            f"({grid.cols}, {grid.cols})"
        )
    if not np.isfinite(arr).any():
        raise ValueError(f"{name} has no finite values")
    return arr


def check_curve(lags: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Equal-length, non-empty lags (finite) and values (NaN allowed: empty diagonals)."""
    lags = as_1d(lags, "lags")
    values = as_1d(values, "values")
    if lags.shape != values.shape:
        raise ValueError(
            f"lags and values must have the same length, got {lags.size} lags and "
            f"{values.size} values"
        )
    if lags.size == 0:
        raise ValueError("lags is empty; a lag curve needs at least one lag")
    if not np.isfinite(lags).all():
        raise ValueError("lags must be finite (values may contain NaN for empty diagonals)")
    return lags, values


def layer_labels(layer_names: Sequence[str] | None, n_layers: int) -> list[str]:
    """Row labels of a (layers, heads) grid: the given names (one per row) or "layer i"."""
    names = list(layer_names) if layer_names is not None else [f"layer {i}" for i in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"layer_names has {len(names)} entries but scores has {n_layers} rows")
    return names


def finite_values(values: Any, name: str) -> np.ndarray:
    """The finite entries of a 1-D sequence (peak lists may hold NaN for "none found")."""
    arr = as_1d(() if values is None else values, name)
    return arr[np.isfinite(arr)]


def optional_period(value: float | None, name: str) -> float | None:
    """A detected period, or None when there is none (None or NaN: "not found")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number of samples or None, got {value!r}")
    value = float(value)
    if math.isnan(value):
        return None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number of samples (or None/NaN), got {value!r}")
    return value
