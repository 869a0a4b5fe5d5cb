"""Input checks shared by the forecaster, the analysis and the CLI.

Every check raises ValueError/TypeError that names the offending value and what was expected,
so users never see a traceback from deep inside numpy or torch.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def as_series(series: Any, name: str = "series") -> np.ndarray:
    """Return a finite 1-D float64 copy of ``series`` (list, 1-D array, (T, 1) array, pandas)."""
    if isinstance(series, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of numbers, got a {type(series).__name__}")
    values = getattr(series, "to_numpy", None)
    raw = values() if callable(values) else series
    try:
        arr = np.asarray(raw)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as a numeric array: {exc}") from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        try:
            arr = arr.astype(np.float64)
        except (ValueError, TypeError):
            raise ValueError(
                f"{name} must contain only numbers, got dtype {arr.dtype} "
                f"(first values: {np.ravel(arr)[:3].tolist()})"
            ) from None
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real-valued, got complex values")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (or a single column of shape (T, 1)), got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty; need at least 2 samples")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} has {arr.shape[0]} sample; need at least 2")
    arr = arr.astype(np.float64, copy=True)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or infinite value(s) (first at index {first}: "
            f"{arr[first]}); clean or interpolate them first"
        )
    return arr


def as_horizon(horizon: Any, name: str = "horizon") -> int:
    """Return ``horizon`` as a positive int; bools, floats with fractions and strings are refused."""
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Real):
        raise ValueError(f"{name} must be a positive integer, got {horizon!r}")
    if isinstance(horizon, numbers.Integral):
        value = int(horizon)
    elif float(horizon).is_integer():
        value = int(horizon)
    else:
        raise ValueError(f"{name} must be a positive integer, got {horizon!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {horizon!r}")
    return value
