"""Analysis: time maps, lag curves, periods, rollout, head ranking, and analyze() end to end."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from attnviz.analysis import (
    AnalysisResult,
    HeadScore,
    LagCurve,
    PeriodEstimate,
    RolloutResult,
    attention_rollout,
    find_periods,
    fundamental_from_peaks,
    lag_curve,
    prefix_mass_from_attention,
    rank_heads,
    time_maps_from_attention,
)
from attnviz.grid import TokenGrid
from attnviz.periods import refine_peak
from attnviz.ranking import column_smoothed_acf, series_acf, series_periodicity
from attnviz.rollout import discard_lowest, fuse_heads, rollout_step

HAS_CAPTURE = importlib.util.find_spec("attnviz.capture") is not None
needs_capture = pytest.mark.skipif(not HAS_CAPTURE, reason="attnviz.capture not available yet")

FIXTURE_BLOCKS = ("blocks.0.attn", "blocks.1.attn", "blocks.2.attn", "decoder_blocks.0.attn")


# ----- helpers ---------------------------------------------------------------------------------
def grid_300_200(rows: int = 4, cols: int = 25) -> TokenGrid:
    """300 history + 200 horizon on 25 columns: 20 samples per column (not 16)."""
    return TokenGrid.for_call(rows=rows, cols=cols, prefix_tokens=1, history_length=300, horizon=200)


def tokens_from_time(kernel: np.ndarray, grid: TokenGrid, prefix_mass: np.ndarray | float = 0.0) -> np.ndarray:
    """Token map whose query (r, q) spreads kernel[q, k] evenly over the rows of key column k and
    prefix_mass[q] over the prefix tokens; prefix queries attend uniformly.  Rows sum to 1 when
    each kernel row sums to 1 - prefix_mass."""
    r, c, p = grid.rows, grid.cols, grid.prefix_tokens
    pm = np.broadcast_to(np.asarray(prefix_mass, dtype=float), (c,))
    s = grid.seq_len
    a = np.zeros((s, s))
    a[:p] = 1.0 / s
    body = np.repeat(kernel[:, None, :], r, axis=1) / r  # (q, r', k) -> key token (r', k)
    block = np.tile(body.reshape(c, r * c), (r, 1))  # query token (row, q) -> row-major
    a[p:, p:] = block
    if p:
        a[p:, :p] = np.tile(pm, r)[:, None] / p
    return a


def row_normalise(k: np.ndarray, total: np.ndarray | float = 1.0) -> np.ndarray:
    return k / k.sum(axis=1, keepdims=True) * np.asarray(total, dtype=float).reshape(-1, 1)


def periodic_kernel(grid: TokenGrid, period: float, amp: float = 0.6, decay: float = 150.0) -> np.ndarray:
    """Time map with locality plus bumps at multiples of ``period`` samples of lag."""
    q = np.arange(grid.cols)
    lag = (q[:, None] - q[None, :]) * grid.samples_per_col
    k = np.exp(-np.abs(lag) / decay) + amp * (1 + np.cos(2 * np.pi * lag / period)) * np.exp(
        -np.abs(lag) / 1500.0
    )
    return row_normalise(k)


@pytest.fixture(scope="module")
def reference(fixture_dir):
    return dict(np.load(fixture_dir / "reference.npz"))


@pytest.fixture(scope="module")
def fixture_grid(vitime_fixture_forecaster):
    return vitime_fixture_forecaster.grid(512, 720)


@pytest.fixture(scope="module")
def analysed(vitime_fixture_forecaster, reference):
    if not HAS_CAPTURE:
        pytest.skip("attnviz.capture not available yet")
    from attnviz import MultiHeadAttentionRollout

    return MultiHeadAttentionRollout(vitime_fixture_forecaster).analyze(
        reference["x_0"], 720, rollout=True, head_fusion="mean", discard_ratio=0.0
    )


# ----- time maps -------------------------------------------------------------------------------
def test_time_maps_from_fixture_rows_sum_to_one_minus_prefix(reference, fixture_grid):
    g = fixture_grid
    assert (g.rows, g.cols, g.seq_len) == (8, 40, 321)
    for block in FIXTURE_BLOCKS:
        a = reference[f"attn_{block.replace('.', '_')}"]
        t = time_maps_from_attention(a, g)
        pm = prefix_mass_from_attention(a, g)
        assert t.shape == (4, 40, 40) and pm.shape == (4, 40)
        np.testing.assert_allclose(t.sum(-1), 1.0 - pm, atol=1e-6)
        assert np.all(pm >= 0) and np.all(pm <= 1)


def test_time_map_equals_direct_loop(reference, fixture_grid):
    g = fixture_grid
    a = reference["attn_blocks_1_attn"][2].astype(np.float64)
    r, c, p = g.rows, g.cols, g.prefix_tokens
    direct = np.zeros((c, c))
    prefix = np.zeros(c)
    for q in range(c):
        for k in range(c):
            total = 0.0
            for rq in range(r):
                for rk in range(r):
                    total += a[p + rq * c + q, p + rk * c + k]
            direct[q, k] = total / r
        prefix[q] = np.mean([a[p + rq * c + q, :p].sum() for rq in range(r)])
    np.testing.assert_allclose(time_maps_from_attention(a, g), direct, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(prefix_mass_from_attention(a, g), prefix, rtol=1e-10, atol=1e-12)
    assert g.token_index(3, 5) == p + 3 * c + 5  # the layout the loop assumes


def test_mean_convention_is_sum_over_rows(reference, fixture_grid):
    a = reference["attn_decoder_blocks_0_attn"]
    np.testing.assert_allclose(
        time_maps_from_attention(a, fixture_grid, "mean"),
        time_maps_from_attention(a, fixture_grid, "sum") / fixture_grid.rows,
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match="convention"):
        time_maps_from_attention(a, fixture_grid, "median")


def test_time_maps_accept_torch_and_reject_wrong_size(reference, fixture_grid):
    a = reference["attn_blocks_0_attn"]
    np.testing.assert_allclose(
        time_maps_from_attention(torch.from_numpy(a), fixture_grid), time_maps_from_attention(a, fixture_grid)
    )
    with pytest.raises(ValueError, match=r"321 .*|does not belong"):
        time_maps_from_attention(a[:, :300, :300], fixture_grid)
    with pytest.raises(ValueError, match=r"\(\.\.\., S, S\)"):
        time_maps_from_attention(a[:, :, :300], fixture_grid)


def test_hand_built_token_map_roundtrip():
    g = grid_300_200()
    rng = np.random.default_rng(1)
    pm = rng.uniform(0.0, 0.3, g.cols)
    kernel = row_normalise(rng.uniform(size=(g.cols, g.cols)), 1 - pm)
    a = tokens_from_time(kernel, g, pm)
    np.testing.assert_allclose(a.sum(-1), 1.0)
    np.testing.assert_allclose(time_maps_from_attention(a, g), kernel, atol=1e-12)
    np.testing.assert_allclose(prefix_mass_from_attention(a, g), pm, atol=1e-12)


# ----- lag curves ------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [1, 3, 7])
def test_shifted_identity_gives_its_lag_in_samples(shift):
    g = grid_300_200()
    assert g.samples_per_col == 20.0
    c = g.cols
    kernel = np.zeros((c, c))
    for q in range(c):
        kernel[q, q - shift if q >= shift else q] = 0.9  # early queries look at themselves
    a = tokens_from_time(kernel, g, 0.1)
    t = time_maps_from_attention(a, g)
    past = lag_curve(t, g, "past")
    assert isinstance(past, LagCurve)
    lags, values = past
    np.testing.assert_allclose(lags, np.arange(1, c) * 20.0)
    assert lags[np.nanargmax(values)] == shift * 20.0
    np.testing.assert_allclose(values[shift - 1], 0.9)
    assert np.count_nonzero(values) == 1
    future = lag_curve(t, g, "future")
    assert np.all(future.values == 0)
    # The same structure read from the key side is a future lag.
    fut = lag_curve(t.T.copy(), g, "future")
    assert fut.lags[np.nanargmax(fut.values)] == shift * 20.0


def test_uniform_map_gives_flat_curve_and_chance_one():
    g = grid_300_200()
    s = g.seq_len
    a = np.full((s, s), 1.0 / s)
    t = time_maps_from_attention(a, g)
    np.testing.assert_allclose(t, g.rows / s)
    np.testing.assert_allclose(prefix_mass_from_attention(a, g), 1.0 / s)
    for direction in ("past", "future"):
        for region in ("all", "history", "forecast"):
            raw = lag_curve(t, g, direction, region)
            norm = lag_curve(t, g, direction, region, normalize=True)
            finite = np.isfinite(raw.values)
            assert finite.any()
            np.testing.assert_allclose(raw.values[finite], g.rows / s)
            np.testing.assert_allclose(norm.values[finite], 1.0)


def test_lag_curve_equals_subdiagonal_means():
    g = grid_300_200()
    c, hc = g.cols, g.history_cols
    assert hc == 15
    rng = np.random.default_rng(2)
    t = rng.uniform(size=(c, c))
    past = lag_curve(t, g, "past").values
    future = lag_curve(t, g, "future").values
    hist = lag_curve(t, g, "past", "history").values
    fut_region = lag_curve(t, g, "future", "forecast").values
    for k in range(1, c):
        np.testing.assert_allclose(past[k - 1], np.diagonal(t, offset=-k).mean())
        np.testing.assert_allclose(future[k - 1], np.diagonal(t, offset=k).mean())
        q = np.arange(k, c)  # queries of the k-th sub-diagonal
        d = np.diagonal(t, offset=-k)[q < hc]
        if d.size:
            np.testing.assert_allclose(hist[k - 1], d.mean())
        else:
            assert np.isnan(hist[k - 1])  # empty diagonal in the region: NaN, not an error
        qf = np.arange(0, c - k)
        df = np.diagonal(t, offset=k)[qf >= hc]
        assert np.isnan(fut_region[k - 1]) if not df.size else np.isclose(fut_region[k - 1], df.mean())
    assert np.isnan(hist[hc - 1:]).all() and np.isfinite(hist[: hc - 1]).all()


def test_lag_curve_normalisation_and_errors():
    g = grid_300_200()
    rng = np.random.default_rng(3)
    t = rng.uniform(size=(g.cols, g.cols))
    norm = lag_curve(t, g, normalize=True).values
    chance = t.sum(1) / g.cols
    k = 4
    q = np.arange(k, g.cols)
    np.testing.assert_allclose(norm[k - 1], np.diagonal(t, -k).mean() / chance[q].mean())
    short = lag_curve(t, g, max_lag=100)
    np.testing.assert_allclose(short.lags, [20, 40, 60, 80, 100])
    with pytest.raises(ValueError, match=r"beyond the grid.*480"):
        lag_curve(t, g, max_lag=1000)
    with pytest.raises(ValueError, match="shorter than one token column"):
        lag_curve(t, g, max_lag=5)
    with pytest.raises(ValueError, match="direction"):
        lag_curve(t, g, direction="sideways")
    with pytest.raises(ValueError, match="region"):
        lag_curve(t, g, region="middle")
    with pytest.raises(ValueError, match=r"\(25, 25\)"):
        lag_curve(t[:10, :10], g)


# ----- periods ---------------------------------------------------------------------------------
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


def test_parabolic_refinement_is_exact_for_a_parabola():
    lags = np.arange(10) * 16.0
    values = -((lags - 71.3) ** 2)
    lag, height = refine_peak(lags, values, int(np.argmax(values)))
    assert lag == pytest.approx(71.3)
    assert height == pytest.approx(0.0, abs=1e-9)


def test_flat_and_short_curves_have_no_period():
    lags = np.arange(1, 30) * 16.0
    smooth = (np.full(29, 0.03), np.linspace(0.1, 0.0, 29), np.exp(-lags / 60), 1 / lags)
    for values in smooth:  # flat, ramp and plain decays: detrending must not invent peaks
        est = find_periods(lags, values)
        assert not est.found and np.isnan(est.fundamental_samples) and est.n_peaks == 0
    assert not find_periods(lags[:2], [1.0, 2.0]).found
    nan_curve = np.full(29, np.nan)
    assert not find_periods(lags, nan_curve).found


@pytest.mark.parametrize("period", [70.0, 100.0, 150.0])
def test_period_from_attention_map_with_periodic_kernel(period):
    g = TokenGrid.for_call(rows=4, cols=77, prefix_tokens=1, history_length=512, horizon=720)
    assert g.samples_per_col == 16.0
    kernel = periodic_kernel(g, period) * 0.95
    a = tokens_from_time(kernel, g, 0.05)
    t = time_maps_from_attention(a, g)
    est = find_periods(*lag_curve(t, g, "past"))
    assert est.fundamental_samples == pytest.approx(period, rel=0.05)
    assert est.harmonics[0] == 1


# ----- rollout ---------------------------------------------------------------------------------
def _softmax_maps(rng, layers, heads, s):
    logits = rng.normal(size=(layers, heads, s, s)) * 2
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _dense_rollout(fused, discard_ratio, prefix):
    joint = np.eye(fused[0].shape[-1])
    for a in fused:
        a = a.copy()
        if discard_ratio:
            body = a[:, prefix:].ravel()
            n = int(body.size * discard_ratio)
            order = np.argsort(body, kind="stable")[:n]
            body[order] = 0.0
            a[:, prefix:] = body.reshape(a.shape[0], -1)
        a = (a + np.eye(a.shape[0])) / 2
        a = a / a.sum(axis=1)[:, None]
        joint = a @ joint
    return joint


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.4])
def test_rollout_rows_sum_to_one_and_match_dense(fusion, discard):
    rng = np.random.default_rng(4)
    maps = _softmax_maps(rng, 3, 2, 21)
    fused = [getattr(np, {"mean": "mean", "max": "max", "min": "min"}[fusion])(m, axis=0) for m in maps]
    np.testing.assert_allclose(fuse_heads(maps[0], fusion).numpy(), fused[0])
    joint = attention_rollout([torch.from_numpy(f) for f in fused], discard, prefix_tokens=1).numpy()
    np.testing.assert_allclose(joint.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(joint, _dense_rollout(fused, discard, 1), atol=1e-12)


def test_rollout_row_normalisation_uses_keepdim():
    a = torch.tensor([[0.0, 3.0], [1.0, 0.0]], dtype=torch.float64)  # row sums 3 and 1
    step = rollout_step(a)
    np.testing.assert_allclose(step.sum(-1).numpy(), 1.0)
    np.testing.assert_allclose(step.numpy(), [[0.25, 0.75], [0.5, 0.5]])


def test_discard_never_zeroes_the_cls_column():
    rng = np.random.default_rng(5)
    s = 13
    a = rng.uniform(0.5, 1.0, size=(s, s))
    a[:, 0] = 1e-6  # CLS column is the smallest everywhere
    out = discard_lowest(torch.from_numpy(a), 0.5, prefix_tokens=1).numpy()
    np.testing.assert_array_equal(out[:, 0], a[:, 0])
    n_zero = np.count_nonzero(out[:, 1:] == 0)
    assert n_zero == int(s * (s - 1) * 0.5)
    kept = out[:, 1:][out[:, 1:] > 0]
    assert kept.min() >= np.sort(a[:, 1:].ravel())[n_zero]
    with pytest.raises(ValueError, match="discard_ratio"):
        discard_lowest(torch.from_numpy(a), 1.0)


def test_discard_with_ties_and_batches_zeroes_exactly_the_fraction():
    rng = np.random.default_rng(8)
    a = rng.integers(0, 4, size=(3, 9, 9)).astype(float)  # many ties
    out = discard_lowest(torch.from_numpy(a), 0.3, prefix_tokens=2).numpy()
    for b in range(3):
        body = a[b, :, 2:].ravel()
        n = int(body.size * 0.3)
        expect = body.copy()
        expect[np.argsort(body, kind="stable")[:n]] = 0.0
        np.testing.assert_array_equal(out[b, :, 2:].ravel(), expect)
        np.testing.assert_array_equal(out[b, :, :2], a[b, :, :2])


def test_rollout_on_fixture_maps(analysed, reference, fixture_grid):
    fused = [reference[f"attn_{b.replace('.', '_')}"].astype(np.float64).mean(0) for b in FIXTURE_BLOCKS]
    dense = _dense_rollout(fused, 0.0, 1)
    roll = analysed.rollout
    assert isinstance(roll, RolloutResult)
    assert roll.token_map.shape == (321, 321) and roll.time_map.shape == (40, 40)
    np.testing.assert_allclose(roll.token_map.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(roll.token_map, dense, atol=1e-5)
    np.testing.assert_allclose(roll.time_map, time_maps_from_attention(dense, fixture_grid), atol=1e-5)
    np.testing.assert_allclose(roll.time_map.sum(-1), 1.0 - roll.prefix_mass, atol=1e-6)
    assert roll.lag_curve().values.shape == (39,)


# ----- ranking ---------------------------------------------------------------------------------
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


@pytest.mark.parametrize("period", [57.0, 96.0, 140.0])
def test_series_periodicity_of_a_sinusoid(period):
    g = TokenGrid.for_call(rows=4, cols=77, prefix_tokens=1, history_length=512, horizon=720)
    x = np.sin(2 * np.pi * np.arange(512) / period)
    info = series_periodicity(x, g)
    assert info.period_samples == pytest.approx(period, rel=0.03)


def test_ranking_caveats_name_a_short_or_flat_history():
    """A ranking that cannot compare heads with the series must say so, not report 'score 1.0'."""
    long = TokenGrid.for_call(rows=2, cols=77, prefix_tokens=1, history_length=512, horizon=720)
    sine = series_periodicity(np.sin(np.arange(512) / 10), long)
    assert sine.caveats() == [] and sine.comparable_lags >= 4 and sine.to_dict()["caveats"] == []
    for flat in (np.full(512, 3.0), 0.5 * np.arange(512) - 7):  # constant, a pure ramp
        info = series_periodicity(flat, long)
        assert info.is_flat and len(info.caveats()) == 1
        assert "no variation beyond a linear trend" in info.caveats()[0].detail
    short = TokenGrid.for_call(rows=2, cols=77, prefix_tokens=1, history_length=20, horizon=720)
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


def test_ranking_finds_the_periodic_head():
    period = 96.0
    g = TokenGrid.for_call(rows=4, cols=77, prefix_tokens=1, history_length=512, horizon=720)
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


# ----- analyze() end to end --------------------------------------------------------------------
@needs_capture
def test_analyze_matches_reference_maps(analysed, reference, vitime_fixture_forecaster, fixture_grid):
    res = analysed
    assert isinstance(res, AnalysisResult)
    assert res.layer_names == list(FIXTURE_BLOCKS)
    assert res.time_maps.shape == (4, 4, 40, 40) and res.prefix_mass.shape == (4, 4, 40)
    assert res.grid == fixture_grid
    for i, block in enumerate(FIXTURE_BLOCKS):
        a = reference[f"attn_{block.replace('.', '_')}"]
        np.testing.assert_allclose(res.time_maps[i], time_maps_from_attention(a, res.grid), atol=1e-5)
        np.testing.assert_allclose(res.prefix_mass[i], prefix_mass_from_attention(a, res.grid), atol=1e-5)
    np.testing.assert_allclose(res.time_maps.sum(-1), 1 - res.prefix_mass, atol=1e-5)
    again = vitime_fixture_forecaster.predict(reference["x_0"], 720)
    np.testing.assert_allclose(res.forecast.full, again.full)
    assert res.forecast.grid == res.grid


@needs_capture
def test_result_views_and_json(analysed):
    res = analysed
    curve = res.lag_curve("blocks.1.attn", 2)
    np.testing.assert_allclose(curve.lags, np.arange(1, 40) * res.grid.samples_per_col)
    np.testing.assert_allclose(curve.values[4], np.diagonal(res.time_maps[1, 2], -5).mean())
    by_index = res.lag_curve(-1, 0, direction="future", region="forecast", normalize=True)
    np.testing.assert_allclose(
        by_index.values, res.lag_curve("decoder_blocks.0.attn", 0, "future", "forecast", True).values
    )
    assert isinstance(res.periods("blocks.0.attn", 0), PeriodEstimate)
    ranked = res.ranked_heads
    assert len(ranked) == 16 and ranked[0].score >= ranked[-1].score
    assert {(s.layer, s.head) for s in ranked} == {(n, h) for n in res.layer_names for h in range(4)}
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert len(text) < 50_000 and "time_maps" not in d
    assert d["layer_names"] == res.layer_names and d["rollout"]["head_fusion"] == "mean"
    full = json.loads(json.dumps(res.to_dict(include_maps=True), allow_nan=False))
    assert np.asarray(full["time_maps"]).shape == (4, 4, 40, 40)


@needs_capture
def test_ranking_warns_when_the_history_is_too_short(vitime_fixture_forecaster):
    """Python users get the caveat too (the CLI prints it as a note), once per result."""
    import warnings

    from attnviz import MultiHeadAttentionRollout, RankingCaveatWarning

    analyzer = MultiHeadAttentionRollout(vitime_fixture_forecaster)
    short = analyzer.analyze(np.sin(np.arange(20) / 10), 384)
    with pytest.warns(RankingCaveatWarning, match=r"history \(20 samples\).*fewer than the 4 needed"):
        short.ranked_heads
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short.ranked_heads  # cached: not warned again
        analyzer.analyze(np.sin(np.arange(256) / 10), 384).ranked_heads  # comparable: no warning


@needs_capture
def test_bad_requests_name_what_exists(analysed):
    res = analysed
    with pytest.raises(ValueError, match=r"unknown layer 'blocks\.9\.attn'.*blocks\.0\.attn"):
        res.lag_curve("blocks.9.attn", 0)
    with pytest.raises(ValueError, match=r"layer index 4 is out of range.*4 layers"):
        res.lag_curve(4, 0)
    with pytest.raises(ValueError, match=r"head 4 is out of range.*4 heads"):
        res.lag_curve("blocks.0.attn", 4)
    with pytest.raises(ValueError, match=r"head must be an int"):
        res.periods(0, 1.5)
    with pytest.raises(ValueError, match="beyond the grid"):
        res.lag_curve(0, 0, max_lag=5000)


@needs_capture
def test_analyze_input_errors(vitime_fixture_forecaster):
    from attnviz import MultiHeadAttentionRollout

    mh = MultiHeadAttentionRollout(vitime_fixture_forecaster)
    with pytest.raises(ValueError, match="NaN"):
        mh.analyze([1.0, np.nan, 2.0], 10)
    with pytest.raises(ValueError, match="horizon"):
        mh.analyze(np.arange(50.0), 0)
    with pytest.raises(ValueError, match="head_fusion"):
        mh.analyze(np.arange(50.0), 10, rollout=True, head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio"):
        mh.analyze(np.arange(50.0), 10, rollout=True, discard_ratio=1.5)
    with pytest.raises(ValueError, match="time convention"):
        MultiHeadAttentionRollout(vitime_fixture_forecaster, time_convention="max")
    with pytest.raises(TypeError, match="forecaster"):
        MultiHeadAttentionRollout(object())
    with pytest.raises(ValueError, match="strategy"):
        MultiHeadAttentionRollout(vitime_fixture_forecaster, strategy="fast")


@needs_capture
def test_chunked_strategy_and_discarding_rollout(vitime_fixture_forecaster, reference, analysed):
    from attnviz import MultiHeadAttentionRollout

    mh = MultiHeadAttentionRollout(vitime_fixture_forecaster, strategy="chunked")
    res = mh.analyze(reference["x_0"], 720, rollout=True, head_fusion="max", discard_ratio=0.9)
    np.testing.assert_allclose(res.time_maps, analysed.time_maps, atol=1e-5)
    roll = res.rollout
    assert roll.head_fusion == "max" and roll.discard_ratio == 0.9
    np.testing.assert_allclose(roll.token_map.sum(-1), 1.0, atol=1e-6)
    fused = [reference[f"attn_{b.replace('.', '_')}"].astype(np.float64).max(0) for b in FIXTURE_BLOCKS]
    np.testing.assert_allclose(roll.token_map, _dense_rollout(fused, 0.9, 1), atol=1e-4)


@needs_capture
def test_analyze_layer_subset_and_mean_convention(vitime_fixture_forecaster, reference):
    from attnviz import MultiHeadAttentionRollout

    mh = MultiHeadAttentionRollout(vitime_fixture_forecaster, layers="blocks.*", time_convention="mean")
    res = mh.analyze(reference["x_0"], 720)
    assert res.layer_names == ["blocks.0.attn", "blocks.1.attn", "blocks.2.attn"]
    assert res.rollout is None
    a = reference["attn_blocks_2_attn"]
    np.testing.assert_allclose(res.time_maps[2], time_maps_from_attention(a, res.grid, "mean"), atol=1e-6)
