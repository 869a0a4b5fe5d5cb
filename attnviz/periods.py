"""Period detection on a lag curve (attention vs lag, or an autocorrelation), in samples.

``find_periods(lags, values)`` works in four steps:

0. **Detrend** (``detrend="logpoly"``, the default).  Attention falls off with distance, so
   periodic bumps ride on a steep slope and may not even be local maxima.  A cubic polynomial in
   log(lag) (least squares; lower degree for short curves) follows that decay but not the
   oscillations; peaks are searched in the residual.  Because the residual of a smooth curve
   still wiggles slowly, a peak is kept only where the *original* curve is locally concave
   (negative second difference at the peak or a neighbour): a real bump is, a pure decay or
   ramp is not.  ``detrend=None`` uses the curve as is.
1. **Peaks.**  ``scipy.signal.find_peaks`` on the finite part of the curve.  A peak is kept when
   its prominence is at least ``rel_prominence`` times the largest prominence found (and above
   ``min_prominence`` when given, and above a tiny floor so that a flat curve has no peaks).
   The first and last lag can never be peaks.
2. **Sub-column refinement.**  Each peak is moved off the lag grid by fitting a parabola
   through the peak and its two neighbours (offset clipped to half a step either way).
3. **Fundamental (harmonic sieve).**  Candidate periods are every peak divided by
   n = 1 .. ``max_harmonic`` (never below ``min_period``, by default two lag steps, the
   shortest period a curve sampled every step can show).  For a candidate P, a peak is
   *explained* when it sits within ``tol(P) = min(max(step / 2, tolerance * P), P / 4)`` of an
   integer multiple m * P (m >= 1); P is then refit by least squares through the origin over
   the explained peaks (prominence weighted) and matched once more.  The candidate's score is

       explained prominence / total prominence  x  hits / expected multiples

   where *expected multiples* are the m * P that fall between the first lag that can hold a
   peak and the last peak, and *hits* the ones that do hold a peak.  The first factor rewards
   explaining the peaks, the second punishes sub-multiples (P/2 "explains" everything too, but
   predicts peaks halfway between the real ones that are not there).  The best score wins;
   among candidates within 5 % of the best the smallest P is preferred.  Peaks at 63, 126, 189
   give P ~= 63.

The result is a small dataclass, ``PeriodEstimate``, with ``fundamental_samples`` NaN when no
peak was found.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import find_peaks, peak_prominences


@dataclass(frozen=True)
class PeriodEstimate:
    """Peaks of a lag curve and the period they imply, all in samples.

    peaks: refined peak lags (ascending).  prominences: scipy prominence of each peak.
    heights: curve value at each refined peak.  harmonics: multiple of the fundamental each
    peak sits at (0 = not explained).  fundamental_samples: the inferred period (NaN if none).
    explained: prominence fraction explained by multiples of the fundamental.  hit_rate:
    fraction of the expected multiples (first usable lag .. last peak) that hold a peak.
    score: explained * hit_rate in [0, 1] (0 when no fundamental), a clarity measure.
    step: lag spacing of the curve in samples.
    """

    peaks: np.ndarray
    prominences: np.ndarray
    heights: np.ndarray
    harmonics: np.ndarray
    fundamental_samples: float
    explained: float
    hit_rate: float
    score: float
    step: float
    candidates: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def peaks_samples(self) -> np.ndarray:
        """Alias of ``peaks`` (refined peak lags in samples)."""
        return self.peaks

    @property
    def found(self) -> bool:
        return bool(np.isfinite(self.fundamental_samples))

    @property
    def n_peaks(self) -> int:
        return int(len(self.peaks))

    def to_dict(self) -> dict[str, Any]:
        return {
            "peaks": [float(p) for p in self.peaks],
            "prominences": [float(p) for p in self.prominences],
            "heights": [float(h) for h in self.heights],
            "harmonics": [int(m) for m in self.harmonics],
            "fundamental_samples": _num(self.fundamental_samples),
            "explained": _num(self.explained),
            "hit_rate": _num(self.hit_rate),
            "score": _num(self.score),
            "step": _num(self.step),
        }


def _num(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def empty_estimate(step: float = float("nan")) -> PeriodEstimate:
    nothing = np.zeros(0)
    return PeriodEstimate(
        nothing, nothing, nothing, np.zeros(0, dtype=int), float("nan"), 0.0, 0.0, 0.0, float(step)
    )


DETRENDS = (None, "none", "logpoly", "linear")


def _trend_basis(lags: np.ndarray, n: int, method: str) -> np.ndarray:
    """Orthonormal basis (n, degree + 1) of the trend ``method`` fits on ``lags``."""
    if method == "logpoly" and np.all(lags > 0):
        x = np.log(lags)
        degree = int(min(3, max(1, n // 4)))
    else:
        x = np.asarray(lags, dtype=float)
        degree = 1
    x = (x - x.mean()) / (x.std() or 1.0)
    return np.linalg.qr(np.vander(x, degree + 1))[0]


def detrend_curve(lags: np.ndarray, values: np.ndarray, method: str | None = "logpoly") -> np.ndarray:
    """Remove the slow fall-off of a lag curve: 'logpoly' (cubic in log lag), 'linear' or None.

    ``values`` is one curve (n,) or a stack of curves (rows, n) on the same lags: the least-squares
    trend is a projection onto a basis that depends on the lags only, so a stack costs one
    matrix product.
    """
    if method not in DETRENDS:
        raise ValueError(f"detrend must be one of {DETRENDS}, got {method!r}")
    values = np.asarray(values, dtype=float)
    n = values.shape[-1]
    if method in (None, "none") or n < 4:
        return values
    q = _trend_basis(np.asarray(lags, dtype=float), n, method)
    return values - (values @ q) @ q.T


def refine_peaks(lags: np.ndarray, values: np.ndarray, indices: Any) -> tuple[np.ndarray, np.ndarray]:
    """Parabolic interpolation of the peaks at ``indices``: (lags, heights) off the lag grid.

    A parabola through each peak and its two neighbours; the offset is clipped to half a step
    either way.  Peaks at either end, or where the curve is not strictly concave, keep their grid
    point.
    """
    lags, values = np.asarray(lags, dtype=float), np.asarray(values, dtype=float)
    idx = np.asarray(indices, dtype=int).reshape(-1)
    peak_lags, heights = lags[idx].copy(), values[idx].copy()
    inner = (idx > 0) & (idx < len(values) - 1)
    i = idx[inner]
    y0, y1, y2 = values[i - 1], values[i], values[i + 1]
    denom = y0 - 2.0 * y1 + y2
    concave = denom < 0
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(concave, np.clip(0.5 * (y0 - y2) / denom, -0.5, 0.5), 0.0)
    half_step = 0.5 * (lags[i + 1] - lags[i - 1])
    peak_lags[inner] = np.where(concave, lags[i] + delta * half_step, lags[i])
    heights[inner] = np.where(concave, y1 - 0.25 * (y0 - y2) * delta, y1)
    return peak_lags, heights


def refine_peak(lags: np.ndarray, values: np.ndarray, index: int) -> tuple[float, float]:
    """``refine_peaks`` for one peak: (lag, height)."""
    lag, height = refine_peaks(lags, values, [index])
    return float(lag[0]), float(height[0])


def _tol(period: np.ndarray, step: float, tolerance: float) -> np.ndarray:
    return np.minimum(np.maximum(0.5 * step, tolerance * period), 0.25 * period)


def _match(peaks: np.ndarray, periods: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """(candidates, peaks) multiple index of each peak per period (0 where none is within ``tol``)."""
    m = np.rint(peaks[None, :] / periods[:, None]).astype(np.int64)
    ok = (m >= 1) & (np.abs(peaks[None, :] - m * periods[:, None]) <= tol[:, None])
    return np.where(ok, m, 0)


SIEVE_BLOCK = 1 << 20  # candidate x peak entries per block: bounded memory on curves with many peaks


def _sieve_block(
    cands: np.ndarray, p: np.ndarray, w: np.ndarray, step: float, tolerance: float,
    first: float, lo: float, last: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Score a block of candidate periods at once: (valid, period, explained, hit rate, multiples)."""
    m = _match(p, cands, _tol(cands, step, tolerance))
    valid = m.any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        period = np.sum(w * m * p, axis=1) / np.sum(w * m**2, axis=1)  # refit through the origin
    valid &= period >= lo * (1 - 1e-9)
    period = np.where(valid, period, cands)  # rows dropped anyway; keeps the arithmetic finite
    tol = _tol(period, step, tolerance)
    m = _match(p, period, tol)
    valid &= m.any(axis=1)
    sel = m > 0
    explained = np.sum(np.where(sel, w, 0.0), axis=1) / float(w.sum())
    m_first = np.maximum(1, np.ceil((first - tol) / period - 1e-9)).astype(np.int64)
    m_last = np.floor((last + tol) / period + 1e-9).astype(np.int64)
    expected = np.maximum(1, m_last - m_first + 1)
    counted = np.sort(np.where(sel & (m >= m_first[:, None]) & (m <= m_last[:, None]), m, 0), axis=1)
    hits = (counted[:, 0] > 0).astype(np.int64) + np.sum(
        (counted[:, 1:] != counted[:, :-1]) & (counted[:, 1:] > 0), axis=1
    )  # distinct multiples hit
    hit_rate = np.minimum(1.0, hits / expected)
    return valid, period, explained, hit_rate, m


def fundamental_from_peaks(
    peaks: Any,
    weights: Any = None,
    *,
    step: float,
    first_lag: float | None = None,
    min_period: float | None = None,
    max_period: float | None = None,
    tolerance: float = 0.1,
    max_harmonic: int = 6,
    prefer_smaller_within: float = 0.05,
) -> tuple[float, np.ndarray, float, float, dict]:
    """Harmonic sieve (see the module doc), all candidates scored at once.

    Returns (fundamental, harmonics per peak, explained fraction, hit rate, {candidate: score}).
    ``first_lag`` is the smallest lag at which a peak could have been detected (defaults to
    ``step``); ``min_period`` defaults to two steps.
    """
    peaks = np.asarray(peaks, dtype=float).reshape(-1)
    w = np.ones_like(peaks) if weights is None else np.asarray(weights, dtype=float).reshape(-1)
    if w.shape != peaks.shape:
        raise ValueError(f"weights shape {w.shape} does not match peaks shape {peaks.shape}")
    nothing = (float("nan"), np.zeros(len(peaks), dtype=int), 0.0, 0.0, {})
    good = np.isfinite(peaks) & (peaks > 0) & np.isfinite(w) & (w > 0)
    if not good.any():
        return nothing
    p, w = peaks[good], w[good]
    first = float(step if first_lag is None else first_lag)
    lo = float(2.0 * step if min_period is None else min_period)
    hi = float(np.max(p) if max_period is None else max_period)
    last = float(np.max(p))
    cands = np.unique(p[:, None] / np.arange(1, max_harmonic + 1)[None, :])  # sorted, distinct
    cands = cands[(cands >= lo * (1 - 1e-9)) & (cands <= hi * (1 + 1e-9))]
    rows = max(1, SIEVE_BLOCK // len(p))
    blocks = [
        _sieve_block(cands[i : i + rows], p, w, step, tolerance, first, lo, last)
        for i in range(0, len(cands), rows)
    ]
    if not blocks:
        return nothing
    valid, period, explained, hit_rate, m = (np.concatenate(parts) for parts in zip(*blocks))
    if not valid.any():
        return nothing
    period, explained, hit_rate, m = period[valid], explained[valid], hit_rate[valid], m[valid]
    score = explained * hit_rate
    near = score >= score.max() * (1 - prefer_smaller_within)
    pick = int(np.argmin(np.where(near, period, np.inf)))  # the smallest period among the near-best
    harmonics = np.zeros(len(peaks), dtype=int)
    harmonics[np.flatnonzero(good)] = m[pick]
    table = {round(a, 6): round(b, 6) for a, b in zip(period.tolist(), score.tolist())}
    return float(period[pick]), harmonics, float(explained[pick]), float(hit_rate[pick]), table


def _may_reach_prominence(values: np.ndarray, peaks: np.ndarray, least: float) -> np.ndarray:
    """Mask of ``peaks`` whose prominence can be >= ``least``, found in O(n) without computing it.

    A curve whose steps are at most L cannot fall by ``least`` and climb back above a peak within
    2 least / L samples, so a peak with a higher sample that close has a smaller prominence.
    Skipping those peaks keeps every peak with prominence >= ``least`` (and so the largest
    prominence whenever one passes), and spares scipy's per-peak scan to the next higher sample:
    O(peaks x n) on a long curve with many small ripples (0.8 million lags of a 1M-sample ACF).
    """
    steps = np.abs(np.diff(values))
    largest_step = float(steps.max()) if len(steps) else 0.0
    if not len(peaks) or largest_step == 0.0:
        return np.zeros(len(peaks), dtype=bool)
    reach = 2.0 * least / largest_step * (1 - 1e-9)  # shrunk a hair: rounding must not drop a peak
    radius = int(min(np.floor(reach), len(values)))
    if radius < 1:
        return np.ones(len(peaks), dtype=bool)
    local_max = maximum_filter1d(values, size=2 * radius + 1, mode="nearest")
    return values[peaks] >= local_max[peaks]


def _clean_curve(lags: Any, values: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """The finite part of one curve and its lag step; checks shapes and increasing lags."""
    lags = np.asarray(lags, dtype=float).reshape(-1)
    values = np.asarray(values, dtype=float).reshape(-1)
    if lags.shape != values.shape:
        raise ValueError(f"lags shape {lags.shape} does not match values shape {values.shape}")
    finite = np.isfinite(lags) & np.isfinite(values)
    lags, values = lags[finite], values[finite]
    if len(lags) >= 2 and np.any(np.diff(lags) <= 0):
        raise ValueError("lags must be strictly increasing")
    step = float(np.median(np.diff(lags))) if len(lags) >= 2 else float("nan")
    return lags, values, step


def find_periods(
    lags: Any,
    values: Any,
    *,
    min_prominence: float | None = None,
    rel_prominence: float = 0.2,
    min_period: float | None = None,
    max_period: float | None = None,
    tolerance: float = 0.1,
    max_harmonic: int = 6,
    detrend: str | None = "logpoly",
) -> PeriodEstimate:
    """Peaks, sub-step refined peak lags and the fundamental period of a lag curve (samples).

    lags must be increasing and (nearly) evenly spaced; NaN values are dropped.  See the module
    docstring for the method.  ``min_prominence`` is absolute (curve units); ``rel_prominence``
    is relative to the largest prominence found (both on the detrended curve).  Reported
    ``heights`` are values of the original curve at the refined peak lags.
    """
    lags, values, step = _clean_curve(lags, values)
    if len(lags) < 3:
        return empty_estimate(step)
    return _estimate(
        lags, values, detrend_curve(lags, values, detrend), step, min_prominence, rel_prominence,
        min_period, max_period, tolerance, max_harmonic, detrend,
    )


_ESTIMATE_DEFAULTS = {
    "min_prominence": None, "rel_prominence": 0.2, "min_period": None, "max_period": None,
    "tolerance": 0.1, "max_harmonic": 6,
}


def find_periods_many(lags: Any, values: Any, **kwargs: Any) -> list[PeriodEstimate]:
    """``find_periods`` on each row of ``values`` (rows, lags), detrending the rows in one product.

    Rows without NaN share one trend fit (a basis of the lags); a row with NaN goes through
    ``find_periods`` alone.  The estimates equal ``find_periods`` row by row (to rounding).
    """
    unknown = sorted(set(kwargs) - set(_ESTIMATE_DEFAULTS) - {"detrend"})
    if unknown:
        raise TypeError(f"find_periods_many() got unexpected keyword arguments {unknown}")
    values = np.asarray(values, dtype=float)
    lags = np.asarray(lags, dtype=float).reshape(-1)
    if values.ndim != 2 or values.shape[1] != len(lags):
        raise ValueError(f"values must have shape (rows, {len(lags)}), got {values.shape}")
    whole = np.isfinite(values).all(axis=1)
    out: list[PeriodEstimate | None] = [None] * len(values)
    if whole.any():
        clean_lags, _, step = _clean_curve(lags, values[np.flatnonzero(whole)[0]])
        if len(clean_lags) == len(lags) and len(lags) >= 3:
            detrend = kwargs.get("detrend", "logpoly")
            options = {k: kwargs.get(k, v) for k, v in _ESTIMATE_DEFAULTS.items()}
            residuals = detrend_curve(lags, values[whole], detrend)
            for row, residual in zip(np.flatnonzero(whole), residuals):
                out[row] = _estimate(lags, values[row], residual, step, detrend=detrend, **options)
    return [est if est is not None else find_periods(lags, row, **kwargs) for est, row in zip(out, values)]


def _estimate(
    lags: np.ndarray,
    original: np.ndarray,
    values: np.ndarray,
    step: float,
    min_prominence: float | None,
    rel_prominence: float,
    min_period: float | None,
    max_period: float | None,
    tolerance: float,
    max_harmonic: int,
    detrend: str | None,
) -> PeriodEstimate:
    """Steps 1-3 of the module doc on one clean curve (``original``) and its residual (``values``)."""
    if min_prominence is not None and min_prominence > 0:
        idx = find_peaks(values)[0]
        idx = idx[_may_reach_prominence(values, idx, float(min_prominence))]
        prom = peak_prominences(values, idx)[0] if len(idx) else np.zeros(0)
    else:
        idx, props = find_peaks(values, prominence=0.0)
        prom = np.asarray(props.get("prominences", np.zeros(0)), dtype=float)
    if len(idx):
        floor = 1e-9 * max(float(np.max(np.abs(values))), 1e-300)
        keep = prom > floor
        if keep.any():
            keep &= prom >= rel_prominence * prom[keep].max()
        if min_prominence is not None:
            keep &= prom >= min_prominence
        idx, prom = idx[keep], prom[keep]
    if len(idx) and detrend not in (None, "none"):
        # Detrending leaves slow wiggles on smooth curves (a pure decay, a ramp); a real bump is
        # locally concave in the *original* curve, so keep only peaks where it is.
        curvature = np.zeros_like(original)
        curvature[1:-1] = -(original[:-2] - 2.0 * original[1:-1] + original[2:])
        floor = 1e-9 * max(float(np.max(np.abs(original))), 1e-300)
        near = np.maximum(curvature[idx], np.maximum(curvature[idx - 1], curvature[idx + 1]))
        keep = near > floor
        idx, prom = idx[keep], prom[keep]
    if not len(idx):
        return empty_estimate(step)
    peak_lags = refine_peaks(lags, values, idx)[0]
    heights = np.interp(peak_lags, lags, original)
    fundamental, harmonics, explained, hit_rate, table = fundamental_from_peaks(
        peak_lags,
        prom,
        step=step,
        first_lag=float(lags[1]),
        min_period=min_period,
        max_period=max_period,
        tolerance=tolerance,
        max_harmonic=max_harmonic,
    )
    score = explained * hit_rate if np.isfinite(fundamental) else 0.0
    return PeriodEstimate(
        peaks=peak_lags,
        prominences=prom,
        heights=heights,
        harmonics=harmonics,
        fundamental_samples=float(fundamental),
        explained=float(explained),
        hit_rate=float(hit_rate),
        score=float(score),
        step=step,
        candidates=table,
    )
