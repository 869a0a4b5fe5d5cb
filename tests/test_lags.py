"""attnviz.lags against known answers: token map -> time map -> lag curve, lags in samples."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from attnmaps import (
    HAND_TIME_MAP,
    SMALL_GRID,
    grid_77,
    grid_300_200,
    hand_tokens,
    row_normalise,
    shifted_identity,
    tokens_from_time,
)
from attnviz.grid import TokenGrid
from attnviz.lags import (
    LagCurve,
    LagCurvesMixin,
    lag_curve,
    lag_curves,
    max_lag_cols,
    prefix_mass_from_attention,
    region_mask,
    time_maps_from_attention,
    to_numpy,
)


# ----- token map -> time map ------------------------------------------------------------------
def test_hand_made_token_map_gives_its_time_map_and_prefix_mass():
    grid, a, expected = SMALL_GRID, hand_tokens(), HAND_TIME_MAP
    np.testing.assert_allclose(time_maps_from_attention(a, grid), expected, atol=1e-15)
    np.testing.assert_allclose(time_maps_from_attention(a, grid, "mean"), expected / 2, atol=1e-15)
    np.testing.assert_allclose(prefix_mass_from_attention(a, grid), [0.1, 0.1, 0.1])
    # The "sum" convention: each row of the time map holds 1 - the mass sent to the prefix.
    np.testing.assert_allclose(time_maps_from_attention(a, grid).sum(-1), 1 - 0.1)


def test_time_maps_keep_leading_axes_and_accept_torch():
    grid, a = SMALL_GRID, hand_tokens()
    stack = np.stack([a, 2 * a])[None]  # (1, 2, S, S)
    t = time_maps_from_attention(torch.from_numpy(stack), grid)
    assert t.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(t[0, 1], 2 * time_maps_from_attention(a, grid))
    assert prefix_mass_from_attention(stack, grid).shape == (1, 2, 3)


def test_no_prefix_tokens_means_no_prefix_mass():
    grid = TokenGrid(rows=3, cols=4, prefix_tokens=0, history_cols=2, samples_per_col=5.0)
    s = grid.seq_len
    a = np.full((s, s), 1.0 / s)
    np.testing.assert_array_equal(prefix_mass_from_attention(a, grid), np.zeros(4))
    np.testing.assert_allclose(time_maps_from_attention(a, grid).sum(-1), 1.0)


def test_hand_built_token_map_roundtrip():
    g = grid_300_200()
    rng = np.random.default_rng(1)
    pm = rng.uniform(0.0, 0.3, g.cols)
    kernel = row_normalise(rng.uniform(size=(g.cols, g.cols)), 1 - pm)
    a = tokens_from_time(kernel, g, pm)
    np.testing.assert_allclose(a.sum(-1), 1.0)
    np.testing.assert_allclose(time_maps_from_attention(a, g), kernel, atol=1e-12)
    np.testing.assert_allclose(prefix_mass_from_attention(a, g), pm, atol=1e-12)


def test_lags_loads_without_torch():
    """lags is numpy only (plotting and the training report import it): torch loads on first use."""
    code = "import sys, attnviz.lags; assert 'torch' not in sys.modules, 'attnviz.lags imported torch'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_to_numpy_reads_half_precision_tensors():
    t = torch.tensor([[0.5, 0.25]], dtype=torch.bfloat16, requires_grad=True)
    out = to_numpy(t)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.5, 0.25]])


# ----- lag curves ------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [1, 3, 7])
def test_shifted_identity_gives_its_lag_in_samples(shift):
    g = grid_300_200()
    assert g.samples_per_col == 20.0
    c = g.cols
    a = tokens_from_time(shifted_identity(c, shift, 0.9), g, 0.1)
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


@pytest.mark.parametrize("shift", [1, 5, 12])
def test_shifted_identity_on_a_fractional_column_width(shift):
    """500 samples on 77 columns: the peak sits at shift * 500/77 samples, not at a whole number."""
    g = grid_77(300, 200)
    spc = 500 / 77
    assert g.samples_per_col == pytest.approx(spc, rel=1e-15)
    curve = lag_curve(shifted_identity(g.cols, shift), g)
    np.testing.assert_allclose(curve.lags, np.arange(1, 77) * spc, rtol=1e-14)
    assert curve.lags[np.argmax(curve.values)] == pytest.approx(shift * spc, rel=1e-14)
    assert curve.values[shift - 1] == 1.0 and np.count_nonzero(curve.values) == 1


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


def test_region_picks_query_columns_on_each_side_of_the_boundary():
    """History queries look back 2 columns, forecast queries 5: each region sees only its own lag."""
    g = grid_300_200()
    hc = g.history_cols
    t = shifted_identity(g.cols, 2)
    t[hc:] = shifted_identity(g.cols, 5)[hc:]
    hist = lag_curve(t, g, region="history").values
    fore = lag_curve(t, g, region="forecast").values
    assert np.nanargmax(hist) == 2 - 1 and np.nanargmax(fore) == 5 - 1
    assert hist[2 - 1] == 1.0 and fore[5 - 1] == 1.0
    np.testing.assert_array_equal(region_mask(g, "history"), np.arange(g.cols) < hc)
    np.testing.assert_array_equal(region_mask(g, "forecast"), np.arange(g.cols) >= hc)
    assert region_mask(g, "all").all()


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


def test_normalised_curve_ignores_the_prefix_share():
    """Chance is each query's own (non-prefix) mass spread evenly: scaling a map changes nothing."""
    g = grid_300_200()
    t = row_normalise(np.random.default_rng(4).uniform(size=(g.cols, g.cols)))
    np.testing.assert_allclose(
        lag_curve(0.3 * t, g, normalize=True).values, lag_curve(t, g, normalize=True).values
    )
    zero = lag_curve(np.zeros((g.cols, g.cols)), g, normalize=True).values
    assert np.isnan(zero).all()  # no mass at all: chance is 0, the ratio is undefined


def test_max_lag_counts_whole_columns_of_the_call():
    g = grid_77(300, 200)
    spc = g.samples_per_col
    assert max_lag_cols(g, None) == 76
    assert max_lag_cols(g, 3 * spc) == 3  # exactly three columns, despite rounding
    assert max_lag_cols(g, 3.9 * spc) == 3
    assert max_lag_cols(g, 76 * spc) == 76
    curve = lag_curve(shifted_identity(g.cols, 2), g, max_lag=3.5 * spc)
    np.testing.assert_allclose(curve.lags, np.arange(1, 4) * spc)
    np.testing.assert_array_equal(curve.values, [0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="beyond the grid"):
        max_lag_cols(g, float("inf"))


def test_lag_curves_of_a_stack_equal_one_curve_per_map():
    g = grid_300_200()
    maps = np.random.default_rng(5).uniform(size=(2, 3, g.cols, g.cols))
    stacked = lag_curves(maps, g, "future", "forecast", True, 200)
    assert stacked.values.shape == (2, 3, 10)
    for i in range(2):
        for h in range(3):
            one = lag_curve(maps[i, h], g, "future", "forecast", True, 200)
            np.testing.assert_array_equal(stacked.lags, one.lags)
            np.testing.assert_allclose(stacked.values[i, h], one.values, equal_nan=True)
    with pytest.raises(ValueError, match=r"\(\.\.\., 25, 25\)"):
        lag_curves(maps[..., :24], g)


def test_a_result_with_time_maps_gets_lag_curves():
    """LagCurvesMixin: a result naming its grid and maps answers lag_curves() with lag_curve's options."""
    g = grid_300_200()

    class Result(LagCurvesMixin):
        def __init__(self, maps: np.ndarray) -> None:
            self.grid, self.maps = g, maps

        def _lag_maps(self) -> np.ndarray:
            return self.maps

    maps = np.stack([shifted_identity(g.cols, 2), shifted_identity(g.cols, 4)])
    curves = Result(maps).lag_curves(max_lag=100)
    np.testing.assert_allclose(curves.lags, [20, 40, 60, 80, 100])
    np.testing.assert_array_equal(curves.values, [[0, 1, 0, 0, 0], [0, 0, 0, 1, 0]])
    future = Result(maps).lag_curves("future", "history", True)
    np.testing.assert_allclose(future.values, lag_curve(maps, g, "future", "history", True).values)
