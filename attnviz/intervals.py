"""Intervals over samples: the bootstrap of means (over series, or over random draws) and plain
percentile ranges, one implementation for ablation, scans and reports."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "bootstrap_means", "percentile_interval"]


@dataclass(frozen=True)
class Interval:
    """Means over axis 0 with their bootstrap percentile interval, per remaining index (e.g. per
    head of a scan: arrays (layers, heads)); ``n`` rows were resampled."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: int


def bootstrap_means(values: np.ndarray, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Interval:
    """Mean over axis 0 (series) and its bootstrap percentile interval for every other index.

    Resampling is done with multinomial counts (one (resamples, series) matrix times the data),
    so memory grows with series x heads, not resamples x series x heads."""
    data = np.asarray(values, dtype=np.float64)
    n = data.shape[0]
    if n == 0:
        empty = np.full(data.shape[1:], np.nan)
        return Interval(empty, empty, empty, 0)
    flat = data.reshape(n, -1)
    finite = np.isfinite(flat)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)  # (B, n)
    sums = counts @ np.where(finite, flat, 0.0)
    weights = counts @ finite.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / weights
        mean = np.where(finite.any(0), np.nansum(np.where(finite, flat, 0.0), 0) / finite.sum(0), np.nan)
    alpha = (1.0 - level) / 2.0
    with warnings.catch_warnings():  # a padded head (no finite value in any series) stays NaN, unannounced
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(means, [100 * alpha, 100 * (1 - alpha)], axis=0) if np.isfinite(means).any() else (mean, mean)
    shape = data.shape[1:]
    return Interval(mean.reshape(shape), np.asarray(lo).reshape(shape), np.asarray(hi).reshape(shape), n)


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Central ``confidence`` interval of ``values`` (numpy's linear percentiles)."""
    tail = 50.0 * (1.0 - confidence)
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)
