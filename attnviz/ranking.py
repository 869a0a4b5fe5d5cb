"""Rank attention heads by how well their lag curves follow the input's own periodicity.

Nobody should have to pick "head 7" by hand.  For every (layer, head) we take its lag curve
(``direction="past"``, ``region="all"`` by default) and compare it with the autocorrelation of the
history the model was given.

The series side (``SeriesPeriodicity``):

* ``acf``: autocorrelation of the linearly detrended history, r(0) = 1 (biased estimator).
* The column view of the ACF: a time map entry at lag k columns pools sample pairs whose distance
  spreads triangularly over ((k - 1) s, (k + 1) s), s = samples per column, so the ACF seen at
  lag k columns is the ACF averaged with that triangular weight.  ``acf_curve`` holds it at
  k = 1 .. cols - 1, NaN where it is not reliable: beyond ``acf_fraction`` (default 0.75) of the
  history length or where the window runs off the history.
* ``period``: ``find_periods`` on the same triangular smoothing of the ACF evaluated at every
  sample lag up to ``period_fraction`` of the history (sample resolution, but without the
  periods shorter than ~two columns (1.9) that no head can show), peaks of prominence >= 0.1.

The head side and the score (``rank_heads``):

* ``agreement``: Pearson correlation between the head's lag curve and ``acf_curve`` over the
  lags where the ACF is reliable, both linearly detrended in lag first (so a plain "attend
  nearby" fall-off does not count as agreement).  NaN when fewer than 4 such lags exist
  (``SeriesPeriodicity.caveats`` then says that the ranking rests on clarity alone).
* ``period_samples``: ``find_periods`` on the head's lag curve, restricted to lags whose
  diagonal holds at least max(3, 1/4 of the region's query columns) queries (long lags average
  over too few queries to be trusted).  ``clarity`` is that estimate's score (explained
  prominence x hit rate of expected multiples, 0 when no period).
* ``consistency``: exp(-0.5 (2 dP / tol)^2) with dP the gap between the head's and the series'
  periods and tol = max(half a column, 8 % of the series period) (0.61 at dP = tol / 2, 0.14 at
  dP = tol); 0 when the head has no period, 1 when the series has none (then only agreement and
  clarity count).
* ``score = max(agreement, 0) x (0.1 + 0.9 consistency) x (0.5 + 0.5 clarity)``; an undefined
  agreement counts as 1.  Heads are sorted by score, then agreement, best first.

So the top head is one whose curve correlates with the ACF *and* has clear peaks at the series'
own period and its multiples.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import fft as scipy_fft
from scipy.signal import fftconvolve

from .grid import TokenGrid
from .lags import LagCurve, lag_curves, region_mask, to_numpy
from .periods import PeriodEstimate, detrend_curve, empty_estimate, find_periods, find_periods_many


FLAT_RELATIVE = 1e-10  # detrended residual below this fraction of the series' magnitude: flat


def series_acf(series: Any, max_lag: int | None = None, detrend: bool = True) -> np.ndarray:
    """Autocorrelation r(0..max_lag) of a 1-D series (biased estimator, r(0) = 1), by FFT.

    A linear trend is removed first (``detrend=True``) so a ramp does not mask the periodicity.
    The series is divided by its largest magnitude first, so the result does not depend on its
    scale (1e-9 or 1e200 give the ACF of the unit series).  A series whose residual is below
    ``FLAT_RELATIVE`` of that magnitude (a constant, a pure ramp) gives r = 1 at lag 0 and 0
    elsewhere.  O(n log n): one FFT of the zero-padded series.
    """
    x = np.asarray(series, dtype=float).reshape(-1)
    n = len(x)
    if n < 2:
        raise ValueError(f"need at least 2 samples for an autocorrelation, got {n}")
    max_lag = n - 1 if max_lag is None else int(min(max_lag, n - 1))
    r = np.zeros(max_lag + 1)
    r[0] = 1.0
    magnitude = float(np.max(np.abs(x)))
    if magnitude == 0.0:
        return r
    x = x / magnitude  # values in [-1, 1]: no overflow in the squares below, scale-free threshold
    x = x - x.mean()
    if detrend:  # least-squares line in closed form (polyfit's Vandermonde solve is 10x slower)
        t = np.arange(n, dtype=float) - (n - 1) / 2.0
        x = x - t * (float(np.dot(t, x)) / float(np.dot(t, t)))
    if float(np.max(np.abs(x))) <= FLAT_RELATIVE:
        return r
    nfft = scipy_fft.next_fast_len(2 * n - 1, real=True)  # no wrap-around up to lag n - 1
    spec = scipy_fft.rfft(x, nfft)
    full = scipy_fft.irfft(spec.real**2 + spec.imag**2, nfft)[: max_lag + 1]
    return full / full[0]


def _triangle(samples_per_col: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets j and weights max(0, 1 - |j| / s) of the one-column pairing triangle."""
    s = float(samples_per_col)
    reach = int(np.floor(s))
    offsets = np.arange(-reach, reach + 1)
    return offsets, np.clip(1.0 - np.abs(offsets) / s, 0.0, None)


def column_smoothed_acf(acf: np.ndarray, samples_per_col: float, centers: np.ndarray) -> np.ndarray:
    """ACF averaged with the triangular weight of a one-column pairing around each centre lag.

    For a few arbitrary centres (the column lags); ``sample_smoothed_acf`` does every integer
    lag at once.  NaN where the window runs past the last lag of ``acf``.
    """
    s = float(samples_per_col)
    out = np.full(len(centers), np.nan)
    top = len(acf) - 1
    for i, c in enumerate(np.asarray(centers, dtype=float)):
        lo, hi = int(np.ceil(c - s)), int(np.floor(c + s))
        if hi > top:
            continue
        taus = np.arange(lo, hi + 1)
        w = 1.0 - np.abs(taus - c) / s
        w = np.clip(w, 0.0, None)
        r = acf[np.abs(taus)]  # the ACF is even
        if w.sum() > 0:
            out[i] = float(np.sum(w * r) / w.sum())
    return out


def sample_smoothed_acf(acf: np.ndarray, samples_per_col: float, top: int) -> np.ndarray:
    """``column_smoothed_acf`` at every integer lag 1 .. ``top``, as one FFT convolution.

    At an integer centre the triangle's weights are the same for every lag, so the smoothing is
    a convolution of the even extension of the ACF with one kernel: O(n log n) instead of the
    O(n s) of a window per lag (s = samples per column, thousands for a long series).
    """
    offsets, w = _triangle(samples_per_col)
    reach = int(offsets[-1])
    top = int(top)
    if top < 1:
        return np.zeros(0)
    if top + reach > len(acf) - 1:
        raise ValueError(
            f"smoothing up to lag {top} needs the ACF to lag {top + reach}, it has {len(acf) - 1}"
        )
    extended = np.concatenate([acf[reach:0:-1], acf[: top + reach + 1]])  # lags -reach .. top+reach
    if reach < 64:  # a short kernel: the direct sum is exact and as fast
        smooth = np.convolve(extended, w, mode="valid")
    else:
        smooth = fftconvolve(extended, w, mode="valid")
    return smooth[1:] / w.sum()  # valid output i is the centre lag i; lag 0 dropped


MIN_AGREEMENT_LAGS = 4  # fewer comparable lags leave a head's agreement with the ACF undefined


class RankingCaveatWarning(UserWarning):
    """Issued when a head ranking is computed against a history it cannot be compared with."""


@dataclass(frozen=True)
class RankingCaveat:
    """A reason the head ranking says little about this series: ``short`` for a figure, ``detail`` for logs."""

    short: str
    detail: str


@dataclass(frozen=True)
class SeriesPeriodicity:
    """The history's own periodicity on this call's lag grid (see the module doc)."""

    acf: np.ndarray
    acf_curve: LagCurve
    period: PeriodEstimate
    acf_fraction: float
    period_fraction: float

    @property
    def period_samples(self) -> float:
        return self.period.fundamental_samples

    @property
    def comparable_lags(self) -> int:
        """Column lags where the ACF is reliable, i.e. where a head's curve can be compared."""
        return int(np.isfinite(np.asarray(self.acf_curve.values, dtype=float)).sum())

    @property
    def is_flat(self) -> bool:
        """True when the history has no variation beyond a linear trend (its ACF is 0 off lag 0)."""
        return bool(np.all(self.acf[1:] == 0.0))

    def caveats(self) -> list[RankingCaveat]:
        """Why a ranking against this history may say little; empty when it can be trusted.

        A history too short for ``MIN_AGREEMENT_LAGS`` comparable lags leaves every agreement
        undefined (heads are then ordered by their own peaks' clarity alone); a flat history
        makes every agreement 0.
        """
        n, lags = len(self.acf), self.comparable_lags
        if lags < MIN_AGREEMENT_LAGS:
            return [
                RankingCaveat(
                    "history too short to rank against: scores = clarity of each head's own peaks",
                    f"the history ({n} samples) gives {lags} column lag(s) on which to compare heads with "
                    f"its autocorrelation, fewer than the {MIN_AGREEMENT_LAGS} needed: heads are ranked by "
                    "the clarity of their own lag peaks alone; give a longer history (or a shorter "
                    "horizon) to rank them against the series",
                )
            ]
        if self.is_flat:
            return [
                RankingCaveat(
                    "flat history: no head can agree with it, so every score is 0",
                    f"the history ({n} samples) has no variation beyond a linear trend: no head can agree "
                    "with its autocorrelation, every score is 0 and the order of heads means nothing",
                )
            ]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {
            "period_samples": _num(self.period_samples),
            "period": self.period.to_dict(),
            "acf_fraction": self.acf_fraction,
            "period_fraction": self.period_fraction,
            "comparable_lags": self.comparable_lags,
            "caveats": [c.detail for c in self.caveats()],
        }


def series_periodicity(
    series: Any, grid: TokenGrid, acf_fraction: float = 0.75, period_fraction: float = 0.8
) -> SeriesPeriodicity:
    """ACF of the history, its column view on ``grid`` and its period (see the module doc)."""
    if not 0 < acf_fraction <= 1 or not 0 < period_fraction <= 1:
        raise ValueError(
            f"acf_fraction and period_fraction must lie in (0, 1], got {acf_fraction!r}, "
            f"{period_fraction!r}"
        )
    x = np.asarray(series, dtype=float).reshape(-1)
    n = len(x)
    acf = series_acf(x)
    s = grid.samples_per_col
    lags = grid.lag_samples(np.arange(1, grid.cols))
    curve = column_smoothed_acf(acf, s, lags)
    curve[lags > acf_fraction * n + 1e-9] = np.nan
    # Sample-resolution view of the same smoothing, for the period.
    top = int(np.floor(min(period_fraction * n, n - 1 - s)))
    if top >= 3:
        taus = np.arange(1, top + 1, dtype=float)
        smooth = sample_smoothed_acf(acf, s, top)
        period = find_periods(
            taus, smooth, min_prominence=0.1, min_period=1.9 * s, detrend=None
        )
    else:
        period = empty_estimate(1.0)
    return SeriesPeriodicity(acf, LagCurve(lags, curve), period, acf_fraction, period_fraction)


@dataclass(frozen=True)
class HeadScore:
    """How well one head's lag curve follows the series' periodicity (see the module doc).

    layer: layer name.  head: head index.  score: ranking score (higher is better, NaN never
    happens for a head with a finite curve).  period_samples: the fundamental detected on the
    head's lag curve (NaN if none).  agreement: detrended Pearson correlation with the ACF.
    consistency: period match with the series (0..1).  clarity: period-estimate score (0..1).
    """

    layer: str
    head: int
    score: float
    period_samples: float
    agreement: float = float("nan")
    consistency: float = float("nan")
    clarity: float = 0.0
    layer_index: int = -1
    n_peaks: int = 0
    peaks: tuple = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = _num(value)
        out["peaks"] = [float(p) for p in self.peaks]
        return out


def _num(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` (rows, n) with ``b`` (n,); 0 for a flat row."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean()
    da, db = np.sqrt(np.sum(a * a, axis=1)), float(np.sqrt(np.sum(b * b)))
    flat = da <= 1e-15 * np.maximum(1.0, np.abs(a).max(axis=1, initial=0.0))
    if db == 0:
        return np.zeros(len(a))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(np.sum(a * b, axis=1) / (da * db), -1.0, 1.0)
    return np.where(flat, 0.0, r)


def head_agreements(lags: np.ndarray, values: np.ndarray, acf_values: np.ndarray) -> np.ndarray:
    """Agreement of each lag curve (rows of ``values``) with the ACF's column view (module doc).

    Both sides are linearly detrended over the lags where both are finite; NaN where fewer than
    ``MIN_AGREEMENT_LAGS`` such lags exist.  Curves finite wherever the ACF is (the usual case)
    are detrended together in one product.
    """
    lags, acf_values = np.asarray(lags, dtype=float), np.asarray(acf_values, dtype=float)
    values = np.asarray(values, dtype=float).reshape(-1, len(lags))
    out = np.full(len(values), np.nan)
    acf_ok = np.isfinite(acf_values)
    ok = np.isfinite(values) & acf_ok
    whole = ok.sum(axis=1) == acf_ok.sum()
    groups = [(np.flatnonzero(whole), acf_ok)] + [(np.array([i]), ok[i]) for i in np.flatnonzero(~whole)]
    for rows, mask in groups:
        if len(rows) and mask.sum() >= MIN_AGREEMENT_LAGS:
            a = detrend_curve(lags[mask], values[rows][:, mask], "linear")
            b = detrend_curve(lags[mask], acf_values[mask], "linear")
            out[rows] = _pearson_rows(a, b)
    return out


def diagonal_query_counts(grid: TokenGrid, direction: str, region: str) -> np.ndarray:
    """How many query columns of ``region`` each lag k = 1 .. cols - 1 averages over."""
    mask = region_mask(grid, region)
    c = grid.cols
    counts = np.zeros(max(c - 1, 0), dtype=int)
    for k in range(1, c):
        q = np.arange(k, c) if direction == "past" else np.arange(0, c - k)
        counts[k - 1] = int(mask[q].sum())
    return counts


def reliable_lags(grid: TokenGrid, direction: str = "past", region: str = "all") -> np.ndarray:
    """Mask over lags k = 1 .. cols - 1 whose diagonal has >= max(3, region/4) queries."""
    counts = diagonal_query_counts(grid, direction, region)
    need = max(3, int(np.ceil(0.25 * region_mask(grid, region).sum())))
    return counts >= need


def head_period(
    curve: LagCurve, reliable: np.ndarray | None = None, **period_kwargs: Any
) -> PeriodEstimate:
    """``find_periods`` on the reliable part of a head's lag curve."""
    lags, values = np.asarray(curve.lags), np.asarray(curve.values)
    if reliable is not None:
        lags, values = lags[reliable], values[reliable]
    return find_periods(lags, values, **period_kwargs)


def score_head(
    curve: LagCurve,
    series: SeriesPeriodicity,
    samples_per_col: float,
    reliable: np.ndarray | None = None,
    **period_kwargs: Any,
) -> tuple[float, float, float, float, PeriodEstimate]:
    """(score, agreement, consistency, clarity, head period) of one lag curve."""
    agreement = float(head_agreements(curve.lags, curve.values, series.acf_curve.values)[0])
    est = head_period(curve, reliable, **period_kwargs)
    return (*_combine(agreement, est, series.period_samples, samples_per_col), est)


def _combine(
    agreement: float, est: PeriodEstimate, p_series: float, samples_per_col: float
) -> tuple[float, float, float, float]:
    """(score, agreement, consistency, clarity) from a head's agreement and period estimate."""
    clarity = float(est.score)
    if not np.isfinite(p_series):
        consistency = 1.0
    elif not est.found:
        consistency = 0.0
    else:
        tol = max(0.5 * samples_per_col, 0.08 * p_series)
        gap = (est.fundamental_samples - p_series) / (0.5 * tol)
        consistency = float(np.exp(-0.5 * gap**2))
    gate = max(agreement, 0.0) if np.isfinite(agreement) else 1.0
    score = gate * (0.1 + 0.9 * consistency) * (0.5 + 0.5 * clarity)
    return float(score), float(agreement), float(consistency), clarity


def rank_heads(
    time_maps: Any,
    grid: TokenGrid,
    series: Any,
    layer_names: Sequence[str] | None = None,
    num_heads: Sequence[int] | None = None,
    *,
    direction: str = "past",
    region: str = "all",
    acf_fraction: float = 0.75,
    period_fraction: float = 0.8,
    periodicity: SeriesPeriodicity | None = None,
    **period_kwargs: Any,
) -> list[HeadScore]:
    """Score every (layer, head) of ``time_maps`` (layers, heads, cols, cols); best first.

    ``series`` is the history the maps were computed from.  ``num_heads`` gives the real head
    count per layer when layers were padded (NaN) to a common head count.  See the module doc
    for the score.
    """
    maps = to_numpy(time_maps).astype(np.float64, copy=False)
    if maps.ndim != 4 or maps.shape[-2:] != (grid.cols, grid.cols):
        raise ValueError(
            f"time maps must have shape (layers, heads, {grid.cols}, {grid.cols}), got {maps.shape}"
        )
    n_layers, n_heads = maps.shape[:2]
    names = list(layer_names) if layer_names is not None else [str(i) for i in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers of time maps")
    heads = list(num_heads) if num_heads is not None else [n_heads] * n_layers
    info = periodicity or series_periodicity(series, grid, acf_fraction, period_fraction)
    reliable = reliable_lags(grid, direction, region)
    all_curves = lag_curves(maps, grid, direction=direction, region=region)
    pairs = [(li, h) for li in range(n_layers) for h in range(int(heads[li]))]
    values = np.stack([all_curves.values[li, h] for li, h in pairs]) if pairs else np.zeros((0, grid.cols - 1))
    agreements = head_agreements(all_curves.lags, values, info.acf_curve.values)
    estimates = find_periods_many(np.asarray(all_curves.lags)[reliable], values[:, reliable], **period_kwargs)
    scores: list[HeadScore] = []
    for (li, h), agreement, est in zip(pairs, agreements, estimates):
        score, agreement, consistency, clarity = _combine(agreement, est, info.period_samples, grid.samples_per_col)
        scores.append(
            HeadScore(
                layer=names[li],
                head=h,
                score=score,
                period_samples=float(est.fundamental_samples),
                agreement=agreement,
                consistency=consistency,
                clarity=clarity,
                layer_index=li,
                n_peaks=est.n_peaks,
                peaks=tuple(est.peaks.tolist()),
            )
        )

    def key(s: HeadScore) -> tuple:
        sc = s.score if np.isfinite(s.score) else -np.inf
        ag = s.agreement if np.isfinite(s.agreement) else -np.inf
        return (-sc, -ag, s.layer_index, s.head)

    return sorted(scores, key=key)
