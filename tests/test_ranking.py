"""attnviz.ranking against known answers: the series' ACF and period, and a planted head first.

Only the contract is tested (what the docstrings promise), not how the ACF is computed.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from attnmaps import grid_77, periodic_kernel, row_normalise
from attnviz.grid import TokenGrid
from attnviz.lags import LagCurve, lag_curves
from attnviz.ranking import (
    HeadScore,
    column_smoothed_acf,
    diagonal_query_counts,
    rank_heads,
    reliable_lags,
    score_head,
    series_acf,
    series_periodicity,
)


def past_map(grid: TokenGrid, curve_of_lag) -> np.ndarray:
    """Time map whose query q sends ``curve_of_lag(lag in samples)`` to every earlier column
    (plus a small floor everywhere), rows normalised: its past lag curve follows ``curve_of_lag``."""
    q = np.arange(grid.cols)
    cols = q[:, None] - q[None, :]
    k = np.where(cols > 0, curve_of_lag(cols * grid.samples_per_col), 0.0) + 1e-3
    return row_normalise(k)


# ----- the series side ---------------------------------------------------------------------------
@pytest.mark.parametrize("period", [25, 40, 64])
def test_acf_of_a_sinusoid_peaks_first_at_its_period(period):
    x = np.sin(2 * np.pi * np.arange(500) / period)
    r = series_acf(x)
    assert r.shape == (500,) and r[0] == 1.0
    first_peak = next(k for k in range(1, 499) if r[k - 1] < r[k] >= r[k + 1])
    assert first_peak == period
    assert r[period // 2] < -0.8  # half a period: anti-correlated


def test_series_acf_matches_direct_formula():
    rng = np.random.default_rng(6)
    x = rng.normal(size=200) + np.sin(np.arange(200) / 5)
    r = series_acf(x, 50, detrend=False)
    xc = x - x.mean()
    direct = np.array([np.sum(xc[: len(x) - k] * xc[k:]) for k in range(51)]) / np.sum(xc * xc)
    np.testing.assert_allclose(r, direct, atol=1e-12)
    flat = series_acf(np.ones(10))
    assert flat[0] == 1 and np.all(flat[1:] == 0)
    sm = column_smoothed_acf(np.cos(np.arange(400) * 2 * np.pi / 100), 16.0, np.array([100.0]))
    assert sm[0] == pytest.approx(np.cos(0) * 1.0, abs=0.1)


def test_series_acf_removes_a_linear_trend_and_refuses_one_sample():
    t = np.arange(300.0)
    wave = np.sin(2 * np.pi * t / 30)
    np.testing.assert_allclose(series_acf(wave + 0.05 * t), series_acf(wave), atol=1e-3)
    assert len(series_acf(wave, max_lag=10)) == 11
    assert len(series_acf(wave[:5], max_lag=10)) == 5  # capped at n - 1
    with pytest.raises(ValueError, match="at least 2 samples"):
        series_acf([1.0])


def test_column_smoothing_is_a_triangle_one_column_wide():
    acf = np.arange(50, dtype=float)  # linear: a symmetric weight returns the centre
    np.testing.assert_allclose(column_smoothed_acf(acf, 4.0, np.array([10.0, 20.0])), [10.0, 20.0])
    # The window of 46 +- 4 runs past the last lag (49): not reliable, NaN.
    assert np.isnan(column_smoothed_acf(acf, 4.0, np.array([46.0]))[0])


@pytest.mark.parametrize("period", [57.0, 96.0, 140.0])
def test_series_periodicity_of_a_sinusoid(period):
    g = grid_77(512, 720, rows=4)
    x = np.sin(2 * np.pi * np.arange(512) / period)
    info = series_periodicity(x, g)
    assert info.period_samples == pytest.approx(period, rel=0.03)


def test_ranking_caveats_name_a_short_or_flat_history():
    """A ranking that cannot compare heads with the series must say so, not report 'score 1.0'."""
    long = grid_77(512, 720)
    sine = series_periodicity(np.sin(np.arange(512) / 10), long)
    assert sine.caveats() == [] and sine.comparable_lags >= 4 and sine.to_dict()["caveats"] == []
    for flat in (np.full(512, 3.0), 0.5 * np.arange(512) - 7):  # constant, a pure ramp
        info = series_periodicity(flat, long)
        assert info.is_flat and len(info.caveats()) == 1
        assert "no variation beyond a linear trend" in info.caveats()[0].detail
    short = grid_77(20, 720)
    info = series_periodicity(np.sin(np.arange(20) / 10), short)
    assert info.comparable_lags < 4
    (caveat,) = info.caveats()
    assert "20 samples" in caveat.detail and "fewer than the 4 needed" in caveat.detail
    assert "clarity" in caveat.short and info.to_dict()["caveats"] == [caveat.detail]
    # With no comparable lag every agreement is undefined and the score is the clarity term alone.
    c = short.cols
    lag = np.abs(np.arange(c)[:, None] - np.arange(c)[None, :]) * short.samples_per_col
    maps = row_normalise(np.exp(-lag / 40.0))[None, None]
    (head,) = rank_heads(maps, short, np.sin(np.arange(20) / 10), ["a"])
    assert np.isnan(head.agreement) and head.score == pytest.approx(0.5 + 0.5 * head.clarity)


def test_acf_curve_is_nan_beyond_the_reliable_fraction():
    g = grid_77(512, 720)
    info = series_periodicity(np.sin(np.arange(512) / 7), g, acf_fraction=0.5)
    lags, values = info.acf_curve
    np.testing.assert_allclose(lags, np.arange(1, 77) * 16.0)
    assert np.isfinite(values[lags <= 256]).all() and np.isnan(values[lags > 256]).all()
    assert info.comparable_lags == 16
    with pytest.raises(ValueError, match="acf_fraction"):
        series_periodicity(np.zeros(10), g, acf_fraction=0.0)


# ----- lags a head can be judged on ------------------------------------------------------------
def test_reliable_lags_need_a_quarter_of_the_region():
    g = grid_77(512, 720)
    np.testing.assert_array_equal(diagonal_query_counts(g, "past", "all"), np.arange(76, 0, -1))
    assert reliable_lags(g).sum() == 76 - 20 + 1  # >= ceil(77 / 4) = 20 queries on the diagonal
    hc = g.history_cols
    assert hc == 32
    history = diagonal_query_counts(g, "past", "history")
    np.testing.assert_array_equal(history[:hc], np.maximum(hc - np.arange(1, hc + 1), 0))
    assert reliable_lags(g, "past", "history").sum() == hc - 8  # >= 8 of its 32 query columns


# ----- the ranking --------------------------------------------------------------------------------
def test_planted_head_ranks_first():
    """A head whose lag curve follows the series' ACF beats a uniform and an anti-periodic head."""
    g = grid_77(512, 720)
    period = 64.0
    series = np.sin(2 * np.pi * np.arange(512) / period)
    wave = lambda lag: np.cos(2 * np.pi * lag / period)  # noqa: E731 - the ACF of the sine
    maps = np.stack(
        [
            np.full((g.cols, g.cols), 1.0 / g.cols),  # uniform
            past_map(g, lambda lag: 1.0 - 0.8 * wave(lag)),  # peaks at half periods
            past_map(g, lambda lag: 1.0 + 0.8 * wave(lag)),  # the planted head
        ]
    )[None]
    ranked = rank_heads(maps, g, series, ["L"])
    assert [s.head for s in ranked] == [2, 0, 1]
    best, uniform, anti = ranked
    assert best.score > 0.9 and best.agreement > 0.9 and best.consistency > 0.99
    assert best.period_samples == pytest.approx(period, abs=1.0)
    assert best.peaks[0] == pytest.approx(period, abs=1.0)
    assert uniform.score == 0.0 and np.isnan(uniform.period_samples) and uniform.n_peaks == 0
    assert anti.agreement < -0.9 and anti.score == 0.0


def test_ranking_finds_the_periodic_head():
    period = 96.0
    g = grid_77(512, 720, rows=4)
    c = g.cols
    rng = np.random.default_rng(7)
    q = np.arange(c)
    lag = np.abs(q[:, None] - q[None, :]) * g.samples_per_col
    maps = np.zeros((2, 4, c, c))
    maps[0, 0] = row_normalise(np.ones((c, c)))  # uniform
    maps[0, 1] = row_normalise(np.exp(-lag / 40.0))  # local
    maps[0, 2] = row_normalise(rng.uniform(size=(c, c)))  # noise
    maps[0, 3] = row_normalise(np.exp(-lag / 40.0) + rng.uniform(0, 0.3, size=(c, c)))  # local + noise
    maps[1, 0] = row_normalise(rng.gamma(0.5, size=(c, c)))  # spiky noise
    noisy_periodic = periodic_kernel(g, period) * (1 + 0.1 * rng.uniform(size=(c, c)))
    maps[1, 1] = row_normalise(noisy_periodic)  # the periodic head
    maps[1, 2] = row_normalise(periodic_kernel(g, 2.4 * period))  # periodic at the wrong period
    maps[1, 3] = row_normalise(np.exp(-lag / 200.0))  # broad local
    series = np.sin(2 * np.pi * np.arange(512) / period) + 0.1 * rng.normal(size=512)
    ranked = rank_heads(maps, g, series, ["a", "b"])
    assert len(ranked) == 8 and all(isinstance(s, HeadScore) for s in ranked)
    best = ranked[0]
    assert (best.layer, best.head) == ("b", 1)
    assert best.period_samples == pytest.approx(period, abs=max(8.0, 0.08 * period))
    assert best.score > ranked[1].score
    scores = [s.score for s in ranked]
    assert scores == sorted(scores, reverse=True)
    uniform = next(s for s in ranked if (s.layer, s.head) == ("a", 0))
    assert np.isnan(uniform.period_samples)
    json.dumps([s.to_dict() for s in ranked])


def test_ranking_all_heads_at_once_equals_scoring_each_head_alone():
    """rank_heads scores the stack of curves together; each head's numbers are score_head's."""
    g = grid_77(512, 720, rows=4)
    rng = np.random.default_rng(11)
    maps = np.stack([row_normalise(periodic_kernel(g, p) * (1 + 0.2 * rng.uniform(size=(g.cols, g.cols))))
                     for p in (64.0, 96.0, 150.0, 40.0)]).reshape(2, 2, g.cols, g.cols)
    maps[1, 1, 40:, :] = np.nan  # a head whose later queries are unseen: its curve has NaN lags
    series = np.sin(2 * np.pi * np.arange(512) / 96.0) + 0.1 * rng.normal(size=512)
    info = series_periodicity(series, g)
    curves = lag_curves(maps, g)
    reliable = reliable_lags(g)
    for s in rank_heads(maps, g, series, ["a", "b"]):
        curve = LagCurve(curves.lags, curves.values[s.layer_index, s.head])
        score, agreement, consistency, clarity, est = score_head(curve, info, g.samples_per_col, reliable)
        assert s.score == pytest.approx(score, rel=1e-9, abs=1e-12)
        assert s.agreement == pytest.approx(agreement, rel=1e-9, abs=1e-12)
        assert (s.consistency, s.clarity) == pytest.approx((consistency, clarity), rel=1e-9, abs=1e-12)
        assert s.period_samples == pytest.approx(est.fundamental_samples, rel=1e-9, nan_ok=True)
    assert np.isnan(curves.values[1, 1]).any()


def test_padded_heads_are_skipped_and_ties_keep_model_order():
    g = grid_77(512, 720)
    uniform = np.full((g.cols, g.cols), 1.0 / g.cols)
    maps = np.full((2, 2, g.cols, g.cols), np.nan)
    maps[0, 0] = maps[0, 1] = maps[1, 0] = uniform  # layer "b" has one real head
    ranked = rank_heads(maps, g, np.sin(np.arange(512) / 9), ["a", "b"], num_heads=[2, 1])
    assert [(s.layer, s.head, s.layer_index) for s in ranked] == [("a", 0, 0), ("a", 1, 0), ("b", 0, 1)]
    assert all(s.score == 0.0 for s in ranked)


def test_rank_heads_refuses_maps_that_do_not_fit():
    g = grid_77(512, 720)
    with pytest.raises(ValueError, match=r"\(layers, heads, 77, 77\)"):
        rank_heads(np.zeros((2, 77, 77)), g, np.zeros(512))
    with pytest.raises(ValueError, match="1 layer names for 2 layers"):
        rank_heads(np.zeros((2, 1, 77, 77)), g, np.zeros(512), ["a"])
