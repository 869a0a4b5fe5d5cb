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
from typing import Any, Sequence

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
    candidate_scores: tuple = field(default=(), repr=False, compare=False)  # (periods, scores) of the sieve

    @property
    def candidates(self) -> dict[float, float]:
        """Every candidate period the sieve scored and its score, both rounded to 6 decimals."""
        return _candidate_table(*self.candidate_scores) if self.candidate_scores else {}

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
    """(rows, peaks) multiple index of each row's peaks for its period (0 where none is within
    ``tol``); padding peaks at lag 0 never match."""
    m = np.rint(peaks / periods[:, None]).astype(np.int64)
    ok = (m >= 1) & (np.abs(peaks - m * periods[:, None]) <= tol[:, None])
    return np.where(ok, m, 0)


SIEVE_BLOCK = 1 << 20  # candidate x peak entries per block: bounded memory on curves with many peaks


def _sieve_block(
    cands: np.ndarray, p: np.ndarray, w: np.ndarray, total: np.ndarray, last: np.ndarray,
    step: float, tolerance: float, first: float, lo: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Score candidate periods, one per row with that row's peaks ``p`` and weights ``w`` (zero
    padded): (valid, period, explained, hit rate, multiples)."""
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
    explained = np.sum(np.where(sel, w, 0.0), axis=1) / total
    m_first = np.maximum(1, np.ceil((first - tol) / period - 1e-9)).astype(np.int64)
    m_last = np.floor((last + tol) / period + 1e-9).astype(np.int64)
    expected = np.maximum(1, m_last - m_first + 1)
    counted = np.sort(np.where(sel & (m >= m_first[:, None]) & (m <= m_last[:, None]), m, 0), axis=1)
    hits = (counted[:, 0] > 0).astype(np.int64) + np.sum(
        (counted[:, 1:] != counted[:, :-1]) & (counted[:, 1:] > 0), axis=1
    )  # distinct multiples hit
    hit_rate = np.minimum(1.0, hits / expected)
    return valid, period, explained, hit_rate, m


Sieve = tuple[float, np.ndarray, float, float, tuple]  # ..., (candidate periods, their scores)


def _candidate_table(periods: np.ndarray, scores: np.ndarray) -> dict[float, float]:
    return {round(a, 6): round(b, 6) for a, b in zip(np.asarray(periods).tolist(), np.asarray(scores).tolist())}


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
) -> Sieve:
    """Harmonic sieve (see the module doc).

    Returns (fundamental, harmonics per peak, explained fraction, hit rate, {candidate: score}).
    ``first_lag`` is the smallest lag at which a peak could have been detected (defaults to
    ``step``); ``min_period`` defaults to two steps.
    """
    options = dict(first_lag=first_lag, min_period=min_period, max_period=max_period, tolerance=tolerance,
                   max_harmonic=max_harmonic, prefer_smaller_within=prefer_smaller_within)
    period, harmonics, explained, hit_rate, scored = _sieve_sets(
        [peaks], None if weights is None else [weights], step, **options
    )[0]
    return period, harmonics, explained, hit_rate, _candidate_table(*scored) if scored else {}


def _sieve_sets(
    peak_sets: Sequence[Any], weight_sets: Sequence[Any] | None, step: float, *, first_lag: float | None,
    min_period: float | None, max_period: float | None, tolerance: float, max_harmonic: int,
    prefer_smaller_within: float = 0.05,
) -> list[Sieve]:
    """The sieve of several peak sets on one lag grid (e.g. every head of a model), all
    candidates of all sets scored together in bounded blocks; candidates as arrays."""
    sets = []
    for i, peaks in enumerate(peak_sets):
        p = np.asarray(peaks, dtype=float).reshape(-1)
        w = np.ones_like(p) if weight_sets is None else np.asarray(weight_sets[i], dtype=float).reshape(-1)
        if w.shape != p.shape:
            raise ValueError(f"weights shape {w.shape} does not match peaks shape {p.shape}")
        sets.append((p, w, np.isfinite(p) & (p > 0) & np.isfinite(w) & (w > 0)))
    out: list[Sieve] = [(float("nan"), np.zeros(len(p), dtype=int), 0.0, 0.0, ()) for p, _, _ in sets]
    width = max((int(good.sum()) for _, _, good in sets), default=0)
    if width == 0:
        return out
    P, W = np.zeros((len(sets), width)), np.zeros((len(sets), width))  # padding: lag 0, weight 0
    for i, (p, w, good) in enumerate(sets):
        P[i, : good.sum()], W[i, : good.sum()] = p[good], w[good]
    first = float(step if first_lag is None else first_lag)
    lo = float(2.0 * step if min_period is None else min_period)
    last = P.max(axis=1)
    hi = last if max_period is None else np.full(len(sets), float(max_period))
    with np.errstate(invalid="ignore", divide="ignore"):
        cands = (np.where(P > 0, P, np.nan)[:, :, None] / np.arange(1, max_harmonic + 1)).reshape(len(sets), -1)
        usable = (cands >= lo * (1 - 1e-9)) & (cands <= hi[:, None] * (1 + 1e-9))
    cands = np.sort(np.where(usable, cands, np.inf), axis=1)  # per set: ascending, distinct below
    usable = np.isfinite(cands)
    usable[:, 1:] &= cands[:, 1:] != cands[:, :-1]
    owner, column = np.nonzero(usable)  # set by set, each set's candidates ascending
    rows, totals = max(1, SIEVE_BLOCK // width), W.sum(axis=1)
    blocks = [
        _sieve_block(cands[owner[s], column[s]], P[owner[s]], W[owner[s]], totals[owner[s]],
                     last[owner[s]], step, tolerance, first, lo)
        for s in (slice(i, i + rows) for i in range(0, len(owner), rows))
    ]
    if not blocks:
        return out
    valid, period, explained, hit_rate, m = (np.concatenate(parts) for parts in zip(*blocks))
    owner, period, explained, hit_rate, m = owner[valid], period[valid], explained[valid], hit_rate[valid], m[valid]
    score = explained * hit_rate
    for i, start, stop in _segments(owner):
        s = slice(start, stop)
        near = score[s] >= score[s].max() * (1 - prefer_smaller_within)
        pick = start + int(np.argmin(np.where(near, period[s], np.inf)))  # smallest period among the near-best
        p, _, good = sets[i]
        harmonics = np.zeros(len(p), dtype=int)
        harmonics[np.flatnonzero(good)] = m[pick, : good.sum()]
        out[i] = (float(period[pick]), harmonics, float(explained[pick]), float(hit_rate[pick]), (period[s], score[s]))
    return out


def _segments(owner: np.ndarray) -> list[tuple[int, int, int]]:
    """(value, start, stop) of each run of equal values in a sorted array."""
    if not len(owner):
        return []
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    stops = np.r_[starts[1:], len(owner)]
    return [(int(owner[a]), int(a), int(b)) for a, b in zip(starts, stops)]


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
    options = dict(min_prominence=min_prominence, rel_prominence=rel_prominence, min_period=min_period,
                   max_period=max_period, tolerance=tolerance, max_harmonic=max_harmonic)
    return _estimates(lags, values[None, :], detrend_curve(lags, values, detrend)[None, :], step, detrend, **options)[0]


_ESTIMATE_DEFAULTS = {
    "min_prominence": None, "rel_prominence": 0.2, "min_period": None, "max_period": None,
    "tolerance": 0.1, "max_harmonic": 6,
}


def find_periods_many(lags: Any, values: Any, **kwargs: Any) -> list[PeriodEstimate]:
    """``find_periods`` on each row of ``values`` (rows, lags), the rows' trends fitted in one
    product and their candidate periods sieved together.

    Rows without NaN share the lags (one trend basis); a row with NaN goes through
    ``find_periods`` alone.  The estimates equal ``find_periods`` row by row (to rounding).
    """
    unknown = sorted(set(kwargs) - set(_ESTIMATE_DEFAULTS) - {"detrend"})
    if unknown:
        raise TypeError(f"find_periods_many() got unexpected keyword arguments {unknown}")
    values = np.asarray(values, dtype=float)
    lags = np.asarray(lags, dtype=float).reshape(-1)
    if values.ndim != 2 or values.shape[1] != len(lags):
        raise ValueError(f"values must have shape (rows, {len(lags)}), got {values.shape}")
    whole = np.flatnonzero(np.isfinite(values).all(axis=1))
    out: list[PeriodEstimate | None] = [None] * len(values)
    if len(whole):
        clean_lags, _, step = _clean_curve(lags, values[whole[0]])
        if len(clean_lags) == len(lags) and len(lags) >= 3:
            detrend = kwargs.get("detrend", "logpoly")
            options = {k: kwargs.get(k, v) for k, v in _ESTIMATE_DEFAULTS.items()}
            found = _estimates(lags, values[whole], detrend_curve(lags, values[whole], detrend), step, detrend, **options)
            for row, est in zip(whole, found):
                out[row] = est
    return [est if est is not None else find_periods(lags, row, **kwargs) for est, row in zip(out, values)]


def _peaks(
    original: np.ndarray, values: np.ndarray, min_prominence: float | None, rel_prominence: float, detrend: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 of the module doc: indices and prominences of the kept peaks of one curve
    (``original``) found on its residual (``values``)."""
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
    return idx, prom


def _estimates(
    lags: np.ndarray,
    originals: np.ndarray,
    residuals: np.ndarray,
    step: float,
    detrend: str | None,
    *,
    min_prominence: float | None,
    rel_prominence: float,
    min_period: float | None,
    max_period: float | None,
    tolerance: float,
    max_harmonic: int,
) -> list[PeriodEstimate]:
    """Steps 1-3 of the module doc on clean curves sharing ``lags`` (rows of ``originals``) and
    their residuals: peaks curve by curve, then one sieve for all."""
    found = [_peaks(o, r, min_prominence, rel_prominence, detrend) for o, r in zip(originals, residuals)]
    peak_lags = [refine_peaks(lags, r, idx)[0] for r, (idx, _) in zip(residuals, found)]
    sieves = _sieve_sets(
        peak_lags, [prom for _, prom in found], step, first_lag=float(lags[1]), min_period=min_period,
        max_period=max_period, tolerance=tolerance, max_harmonic=max_harmonic,
    )
    out = []
    for original, peaks, (_, prom), (fundamental, harmonics, explained, hit_rate, scored) in zip(
        originals, peak_lags, found, sieves
    ):
        if not len(peaks):
            out.append(empty_estimate(step))
            continue
        out.append(PeriodEstimate(
            peaks=peaks,
            prominences=prom,
            heights=np.interp(peaks, lags, original),
            harmonics=harmonics,
            fundamental_samples=float(fundamental),
            explained=float(explained),
            hit_rate=float(hit_rate),
            score=float(explained * hit_rate if np.isfinite(fundamental) else 0.0),
            step=step,
            candidate_scores=scored,
        ))
    return out


RECOVERY_RULE = "max(one column, 8 % of the true period)"


def recovery_tolerance(true: Any, samples_per_col: float) -> np.ndarray:
    """``RECOVERY_RULE`` in samples: one column is the finest step a lag curve resolves; 8 %
    allows the drift of a long period."""
    return np.maximum(float(samples_per_col), 0.08 * np.asarray(true, dtype=float))


def period_recovered(detected: Any, true: Any, samples_per_col: float) -> np.ndarray:
    """Whether each detected period is the true one within ``RECOVERY_RULE`` (False when NaN)."""
    detected, true = np.asarray(detected, dtype=float), np.asarray(true, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(detected) & (np.abs(detected - true) <= recovery_tolerance(true, samples_per_col))
