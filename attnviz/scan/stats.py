"""Dataset-level statistics of a scan: phase-randomised null series, a per-head test against the
null corrected for testing every head, and head clusters from the similarity of their lag
profiles (the bootstrap intervals are :mod:`attnviz.intervals`').

All randomness is seeded per purpose (and per series for surrogates), so a scan split over
ranks or resumed from shards gives the same numbers as one uninterrupted run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MIN_SERIES_FOR_VERDICT", "above_null_test", "benjamini_hochberg", "head_clusters", "lag_profile_correlation",
    "phase_surrogate", "real_heads",
]

MIN_SERIES_FOR_VERDICT = 10  # fewer series: intervals are printed, but no verdict is drawn from them


def real_heads(num_heads: list[int], width: int) -> np.ndarray:
    """Flat (layers * width,) mask of the heads that exist (layers with fewer heads are padded)."""
    return (np.arange(width)[None, :] < np.asarray(num_heads)[:, None]).reshape(-1)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of the finite entries; NaN stays NaN.

    Rejecting every q <= alpha keeps the expected share of false discoveries among the rejected
    at most alpha (independent or positively dependent tests)."""
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p.reshape(-1)))
    if finite.size:
        flat = p.reshape(-1)[finite]
        order = np.argsort(flat)
        ranked = flat[order] * finite.size / np.arange(1, finite.size + 1)
        adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
        out = np.empty(finite.size)
        out[order] = np.minimum(adjusted, 1.0)
        q.reshape(-1)[finite] = out
    return q


def above_null_test(differences: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-sided paired t-test per head that the mean of score - null score over series is > 0.

    differences: (series, ...) with NaN where a series has no value for a head.  Returns
    (p-values, Benjamini-Hochberg q-values over all heads, series counts), shaped like one
    series.  A head whose differences are all equal gets p = 0 when they are positive, else 1.
    """
    from scipy.stats import t as student_t

    d = np.asarray(differences, dtype=np.float64)
    finite = np.isfinite(d)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, d, 0.0).sum(axis=0) / n
        var = np.where(finite, (d - mean) ** 2, 0.0).sum(axis=0) / (n - 1)
        t = mean / np.sqrt(var / n)
        p = np.where(var > 0, student_t.sf(t, np.maximum(n - 1, 1)), np.where(mean > 0, 0.0, 1.0))
    p = np.where(n >= 2, p, np.nan)
    return p, benjamini_hochberg(p), n


def phase_surrogate(series: np.ndarray, seed: int) -> np.ndarray:
    """A series with the same amplitude spectrum (so the same autocorrelation) and mean, but
    random Fourier phases: any period structure a head "finds" in it is chance."""
    x = np.asarray(series, dtype=np.float64)
    mean = x.mean()
    spectrum = np.fft.rfft(x - mean)
    rng = np.random.default_rng(seed)
    phases = np.exp(2j * np.pi * rng.random(spectrum.size))
    phases[0] = 1.0
    if x.size % 2 == 0:
        phases[-1] = 1.0 if rng.random() < 0.5 else -1.0  # the Nyquist bin stays real
    return np.fft.irfft(np.abs(spectrum) * phases, n=x.size) + mean


def lag_profile_correlation(curves: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise Pearson correlation of heads' lag curves for one series.

    curves: (heads, lags) with NaN where a lag is undefined; real: (heads,) bool (padding is
    not a head). Returns (corr, valid) of shape (heads, heads); ``valid`` is False where a
    head's curve is flat or absent (its correlation is undefined, counted as missing)."""
    c = np.where(np.isfinite(curves), curves, np.nan)
    keep = np.isfinite(c[real]).all(axis=0)  # lags defined for every real head (padding is all NaN)
    c = c[:, keep]
    c = c - c.mean(axis=1, keepdims=True) if c.size else c
    norm = np.linalg.norm(c, axis=1) if c.size else np.zeros(len(curves))
    ok = real & (norm > 1e-12) & np.isfinite(norm)
    z = np.where(ok[:, None], c / np.where(ok, norm, 1.0)[:, None], 0.0)
    corr = np.clip(z @ z.T, -1.0, 1.0)
    valid = ok[:, None] & ok[None, :]
    return np.where(valid, corr, 0.0), valid


@dataclass(frozen=True)
class HeadCluster:
    """Heads whose lag profiles move together across the dataset."""

    members: list[int]  # flat head indices (layer * heads + head)
    mean_similarity: float


def head_clusters(similarity: np.ndarray, real: np.ndarray, threshold: float = 0.5) -> tuple[list[HeadCluster], np.ndarray]:
    """Average-linkage clusters of heads with mean similarity >= ``threshold`` (distance 1 - r).

    Returns the clusters (largest first) and the leaf order of the dendrogram over real heads
    (for a figure that puts alike heads side by side)."""
    from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
    from scipy.spatial.distance import squareform

    index = np.flatnonzero(real)
    if index.size < 2:
        return [HeadCluster(index.tolist(), 1.0)] if index.size else [], index
    sim = np.nan_to_num(similarity[np.ix_(index, index)], nan=0.0)
    sim = (sim + sim.T) / 2
    dist = np.clip(1.0 - sim, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    tree = linkage(squareform(dist, checks=False), method="average")
    labels = fcluster(tree, t=1.0 - threshold, criterion="distance")
    clusters = []
    for label in np.unique(labels):
        members = index[labels == label]
        block = sim[np.ix_(labels == label, labels == label)]
        mean = float((block.sum() - np.trace(block)) / max(block.size - len(members), 1)) if len(members) > 1 else 1.0
        clusters.append(HeadCluster(sorted(members.tolist()), mean))
    clusters.sort(key=lambda c: (-len(c.members), -c.mean_similarity))
    return clusters, index[leaves_list(tree)]
