"""attnviz.periods against known answers: peaks at known multiples -> their fundamental."""
from __future__ import annotations

import json

import numpy as np
import pytest

from attnmaps import grid_77, periodic_kernel, tokens_from_time
from attnviz.lags import lag_curve, time_maps_from_attention
from attnviz.periods import (
    PeriodEstimate,
    detrend_curve,
    empty_estimate,
    find_periods,
    find_periods_many,
    fundamental_from_peaks,
    refine_peak,
    refine_peaks,
)


def bumps(lags: np.ndarray, centres: list[float], width: float = 6.0) -> np.ndarray:
    """Sum of unit Gaussian bumps at ``centres`` (samples)."""
    return sum(np.exp(-0.5 * ((lags - c) / width) ** 2) for c in centres)


# ----- the harmonic sieve on given peaks ---------------------------------------------------------
def test_fundamental_from_peaks_63_126_189():
    period, harmonics, explained, hit_rate, _ = fundamental_from_peaks([63, 126, 189], step=16)
    assert period == pytest.approx(63, abs=0.5)
    assert list(harmonics) == [1, 2, 3] and explained == 1 and hit_rate == 1
    # jittered, with a spurious small peak, still ~63
    period, harmonics, *_ = fundamental_from_peaks([61, 128, 187, 95], [1, 1, 1, 0.1], step=16)
    assert period == pytest.approx(63, abs=2)
    assert list(harmonics) == [1, 2, 3, 0]
    # multiples only (no peak at the fundamental itself) keep the larger period
    assert fundamental_from_peaks([126, 252, 378], step=16)[0] == pytest.approx(126)


def test_a_missing_multiple_lowers_the_hit_rate_not_the_period():
    """Peaks at 1, 2 and 4 x 50: still 50 (3 of 4 expected multiples hit), not 100 or 25."""
    period, harmonics, explained, hit_rate, table = fundamental_from_peaks([50, 100, 200], step=10)
    assert period == pytest.approx(50)
    assert list(harmonics) == [1, 2, 4]
    assert explained == 1.0 and hit_rate == pytest.approx(3 / 4)
    # 100 explains 2 of 3 peaks (score 2/3); 25 predicts 8 multiples and finds 3 (score 3/8).
    assert table[50.0] == pytest.approx(0.75)
    assert table[100.0] == pytest.approx(2 / 3) and table[25.0] == pytest.approx(3 / 8)


def test_min_and_max_period_bound_the_fundamental():
    peaks = [40, 80, 120, 160]
    assert fundamental_from_peaks(peaks, step=8)[0] == pytest.approx(40)
    assert fundamental_from_peaks(peaks, step=8, min_period=60)[0] == pytest.approx(80)
    period, _, explained, hit_rate, _ = fundamental_from_peaks(peaks, step=8, max_period=30)
    assert period == pytest.approx(20) and explained == 1 and hit_rate == 0.5  # every other multiple
    assert np.isnan(fundamental_from_peaks(peaks, step=8, min_period=200)[0])


def test_no_usable_peak_gives_no_fundamental():
    for peaks, weights in (([], None), ([-5.0, np.nan], None), ([40.0, 80.0], [0.0, 0.0])):
        period, harmonics, explained, hit_rate, table = fundamental_from_peaks(peaks, weights, step=8)
        assert np.isnan(period) and explained == 0 and hit_rate == 0 and table == {}
        assert len(harmonics) == len(peaks) and not harmonics.any()
    with pytest.raises(ValueError, match="weights shape"):
        fundamental_from_peaks([40, 80], [1.0], step=8)


def _sieve_one_candidate_at_a_time(peaks, weights, step, min_period=None, max_period=None,
                                    tolerance=0.1, max_harmonic=6, prefer=0.05):
    """The module doc's harmonic sieve written out literally: one candidate period at a time."""
    p, w = np.asarray(peaks, float), np.asarray(weights, float)
    lo, hi, last = (2 * step if min_period is None else min_period), (max(p) if max_period is None else max_period), max(p)

    def tol(period):
        return min(max(0.5 * step, tolerance * period), 0.25 * period)

    def match(period):
        m = np.rint(p / period).astype(int)
        return np.where((m >= 1) & (np.abs(p - m * period) <= tol(period)), m, 0)

    results = []
    for cand in sorted({x / n for x in p for n in range(1, max_harmonic + 1)}):
        if not lo * (1 - 1e-9) <= cand <= hi * (1 + 1e-9) or not match(cand).any():
            continue
        m = match(cand)
        period = np.sum(w * m * p) / np.sum(w * m**2)
        if period < lo * (1 - 1e-9) or not match(period).any():
            continue
        m, t = match(period), tol(period)
        first_m = max(1, int(np.ceil((step - t) / period - 1e-9)))
        last_m = int(np.floor((last + t) / period + 1e-9))
        hits = len({x for x in m[m > 0] if first_m <= x <= last_m})
        explained, hit_rate = w[m > 0].sum() / w.sum(), min(1.0, hits / max(1, last_m - first_m + 1))
        results.append((explained * hit_rate, period, explained, hit_rate, m))
    if not results:
        return None
    best = max(r[0] for r in results)
    return min((r for r in results if r[0] >= best * (1 - prefer)), key=lambda r: r[1])


def test_vectorised_sieve_equals_the_literal_one_on_random_peak_sets():
    """All candidates are scored at once; the answer is the one-at-a-time definition's."""
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(400):
        n = int(rng.integers(1, 20))
        step = float(rng.choice([1.0, 6.5, 16.0]))
        base = rng.uniform(3, 150)
        peaks = np.abs(np.concatenate([base * rng.integers(1, 7, n // 2) + rng.normal(0, 0.3 * step, n // 2),
                                       rng.uniform(2, 900, n - n // 2)])) + 0.5
        weights = rng.uniform(0.05, 1, n)
        bounds = {"min_period": float(rng.uniform(2, 60))} if rng.random() < 0.3 else {}
        want = _sieve_one_candidate_at_a_time(peaks, weights, step, **bounds)
        period, harmonics, explained, hit_rate, _ = fundamental_from_peaks(peaks, weights, step=step, **bounds)
        if want is None:
            assert np.isnan(period)
            continue
        checked += 1
        assert period == pytest.approx(want[1], rel=1e-12)
        assert explained == pytest.approx(want[2], rel=1e-12) and hit_rate == want[3]
        np.testing.assert_array_equal(harmonics, want[4])
    assert checked > 300


def test_the_sieve_scores_many_peaks_in_bounded_blocks(monkeypatch):
    """Blocks of candidates (a long curve has thousands of peaks) give the answer of one block."""
    import attnviz.periods as periods

    rng = np.random.default_rng(3)
    peaks = np.sort(rng.uniform(5, 5000, 300)) + 0.0
    peaks[::3] = 50.0 * np.arange(1, len(peaks[::3]) + 1)
    whole = fundamental_from_peaks(peaks, step=1.0)
    monkeypatch.setattr(periods, "SIEVE_BLOCK", len(peaks) * 7)  # 7 candidates per block
    blocked = fundamental_from_peaks(peaks, step=1.0)
    assert blocked[0] == whole[0] and blocked[2:4] == whole[2:4] and blocked[4] == whole[4]
    np.testing.assert_array_equal(blocked[1], whole[1])


# ----- find_periods on curves ---------------------------------------------------------------------
@pytest.mark.parametrize("detrend", [None, "logpoly"])
def test_bumps_at_multiples_with_one_missing(detrend):
    lags = np.arange(1, 80) * 8.0
    est = find_periods(lags, bumps(lags, [40, 80, 160, 200]), detrend=detrend)
    np.testing.assert_allclose(est.peaks, [40, 80, 160, 200], atol=0.2)
    assert est.fundamental_samples == pytest.approx(40, abs=0.1)
    assert list(est.harmonics) == [1, 2, 4, 5]
    assert est.hit_rate == pytest.approx(4 / 5) and est.explained == pytest.approx(1.0)
    assert est.score == pytest.approx(0.8) and est.found and est.step == 8.0
    assert est.candidates[round(est.fundamental_samples, 6)] == pytest.approx(est.score, abs=1e-6)


def test_find_periods_on_synthetic_lag_curve():
    lags = np.arange(1, 60) * 16.0
    values = 0.05 * np.exp(-lags / 60.0)
    for centre in (63.0, 126.0, 189.0):
        values = values + 0.02 * np.exp(-0.5 * ((lags - centre) / 12.0) ** 2)
    est = find_periods(lags, values)
    assert isinstance(est, PeriodEstimate)
    assert est.fundamental_samples == pytest.approx(63, abs=4)
    assert est.n_peaks == 3
    np.testing.assert_allclose(est.peaks, [63, 126, 189], atol=5)
    np.testing.assert_array_equal(est.peaks_samples, est.peaks)  # refined below one column
    assert list(est.harmonics) == [1, 2, 3]
    json.dumps(est.to_dict())


@pytest.mark.parametrize("period", [70.0, 100.0, 150.0])
def test_period_from_attention_map_with_periodic_kernel(period):
    g = grid_77(512, 720, rows=4)
    assert g.samples_per_col == 16.0
    kernel = periodic_kernel(g, period) * 0.95
    a = tokens_from_time(kernel, g, 0.05)
    t = time_maps_from_attention(a, g)
    est = find_periods(*lag_curve(t, g, "past"))
    assert est.fundamental_samples == pytest.approx(period, rel=0.05)
    assert est.harmonics[0] == 1


def test_parabolic_refinement_is_exact_for_a_parabola():
    lags = np.arange(10) * 16.0
    values = -((lags - 71.3) ** 2)
    lag, height = refine_peak(lags, values, int(np.argmax(values)))
    assert lag == pytest.approx(71.3)
    assert height == pytest.approx(0.0, abs=1e-9)
    # An end point or a plateau stays on the grid.
    assert refine_peak(lags, values, 0) == (0.0, values[0])
    assert refine_peak(lags, np.ones(10), 4) == (64.0, 1.0)


def test_flat_and_short_curves_have_no_period():
    lags = np.arange(1, 30) * 16.0
    smooth = (np.full(29, 0.03), np.linspace(0.1, 0.0, 29), np.exp(-lags / 60), 1 / lags)
    for values in smooth:  # flat, ramp and plain decays: detrending must not invent peaks
        est = find_periods(lags, values)
        assert not est.found and np.isnan(est.fundamental_samples) and est.n_peaks == 0
    assert not find_periods(lags[:2], [1.0, 2.0]).found
    nan_curve = np.full(29, np.nan)
    assert not find_periods(lags, nan_curve).found


def test_noise_below_the_prominence_floor_has_no_period():
    """``min_prominence`` is absolute: noise that cannot reach it gives no peak and no period,
    while the same noise on bumps at multiples of 48 keeps the bumps' period."""
    lags = np.arange(1, 80) * 8.0
    noise = 0.01 * np.random.default_rng(0).normal(size=lags.size)
    floor = 1.01 * float(np.ptp(noise))  # no prominence can exceed the curve's range
    est = find_periods(lags, noise, min_prominence=floor)
    assert not est.found and est.n_peaks == 0 and est.score == 0.0
    est = find_periods(lags, noise + bumps(lags, [48, 96, 144, 192]), min_prominence=floor)
    assert est.fundamental_samples == pytest.approx(48, abs=2)
    assert list(est.harmonics) == [1, 2, 3, 4]


def test_nan_values_are_dropped_and_bad_lags_refused():
    lags = np.arange(1, 80) * 8.0
    values = bumps(lags, [40, 80, 120])
    values[[5, 30, 60]] = np.nan
    assert find_periods(lags, values, detrend=None).fundamental_samples == pytest.approx(40, abs=1)
    with pytest.raises(ValueError, match="does not match"):
        find_periods(lags, values[:-1])
    with pytest.raises(ValueError, match="strictly increasing"):
        find_periods(lags[::-1], values)


def test_detrend_removes_exactly_what_it_models():
    lags = np.arange(1, 41) * 16.0
    x = np.log(lags)
    x = (x - x.mean()) / x.std()
    cubic_in_log = 0.3 - 0.2 * x + 0.05 * x**2 - 0.01 * x**3
    np.testing.assert_allclose(detrend_curve(lags, cubic_in_log, "logpoly"), 0.0, atol=1e-12)
    line = 2.0 - 0.01 * lags
    np.testing.assert_allclose(detrend_curve(lags, line, "linear"), 0.0, atol=1e-12)
    np.testing.assert_array_equal(detrend_curve(lags, line, None), line)
    with pytest.raises(ValueError, match="detrend"):
        detrend_curve(lags, line, "quadratic")


def test_find_periods_many_equals_find_periods_row_by_row():
    """One shared trend fit for NaN-free rows, find_periods alone for a row with NaN."""
    lags = np.arange(1, 90) * 8.0
    rng = np.random.default_rng(0)
    rows = [bumps(lags, [40 * k for k in range(1, 6)]) * np.exp(-lags / 400) + 0.01 * rng.normal(size=len(lags)),
            bumps(lags, [56, 112, 168, 224]) + 0.5 * np.exp(-lags / 50),
            np.exp(-lags / 100),  # a pure decay: no period
            rng.normal(size=len(lags))]
    with_nan = rows[0].copy()
    with_nan[5:9] = np.nan
    values = np.stack(rows + [with_nan])
    for kwargs in ({}, {"detrend": None, "min_prominence": 0.05}, {"detrend": "linear", "max_harmonic": 3}):
        many = find_periods_many(lags, values, **kwargs)
        for row, est in zip(values, many):
            one = find_periods(lags, row, **kwargs)
            np.testing.assert_allclose(est.peaks, one.peaks, rtol=1e-9)
            np.testing.assert_array_equal(est.harmonics, one.harmonics)
            assert est.fundamental_samples == pytest.approx(one.fundamental_samples, rel=1e-9, nan_ok=True)
            assert est.score == pytest.approx(one.score, rel=1e-9)
    assert many[0].fundamental_samples == pytest.approx(40, abs=1) and not many[2].found
    with pytest.raises(TypeError, match="unexpected keyword"):
        find_periods_many(lags, values, prominence=0.1)
    with pytest.raises(ValueError, match="shape"):
        find_periods_many(lags, values[:, :-1])


def test_refine_peaks_equals_refine_peak_one_at_a_time():
    lags = np.arange(20) * 4.0
    values = np.sin(lags / 7.0) + 0.1 * np.cos(lags)
    idx = [0, 3, 7, 11, 19]
    many = refine_peaks(lags, values, idx)
    for i, lag, height in zip(idx, *many):
        assert (lag, height) == refine_peak(lags, values, i)


def test_empty_estimate_serialises_nan_as_none():
    est = empty_estimate(16.0)
    assert not est.found and est.n_peaks == 0 and est.score == 0.0
    d = est.to_dict()
    assert d["fundamental_samples"] is None and d["step"] == 16.0 and d["peaks"] == []
    json.dumps(d, allow_nan=False)
