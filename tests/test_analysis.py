"""Analysis on the upstream fixture's maps and analyze() end to end.

The modules' own known-answer tests live in test_lags, test_periods, test_ranking, test_rollout and
test_reducers."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from attnmaps import dense_rollout
from attnviz.analysis import (
    AnalysisResult,
    PeriodEstimate,
    RolloutResult,
    prefix_mass_from_attention,
    time_maps_from_attention,
)

HAS_CAPTURE = importlib.util.find_spec("attnviz.capture") is not None
needs_capture = pytest.mark.skipif(not HAS_CAPTURE, reason="attnviz.capture not available yet")

FIXTURE_BLOCKS = ("blocks.0.attn", "blocks.1.attn", "blocks.2.attn", "decoder_blocks.0.attn")


# ----- fixtures ----------------------------------------------------------------------------------
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


# ----- rollout of the fixture's maps --------------------------------------------------------------
def test_rollout_on_fixture_maps(analysed, reference, fixture_grid):
    fused = [reference[f"attn_{b.replace('.', '_')}"].astype(np.float64).mean(0) for b in FIXTURE_BLOCKS]
    dense = dense_rollout(fused, 0.0, 1)
    roll = analysed.rollout
    assert isinstance(roll, RolloutResult)
    assert roll.token_map.shape == (321, 321) and roll.time_map.shape == (40, 40)
    np.testing.assert_allclose(roll.token_map.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(roll.token_map, dense, atol=1e-5)
    np.testing.assert_allclose(roll.time_map, time_maps_from_attention(dense, fixture_grid), atol=1e-5)
    np.testing.assert_allclose(roll.time_map.sum(-1), 1.0 - roll.prefix_mass, atol=1e-6)
    assert roll.lag_curve().values.shape == (39,)


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
    short = analyzer.analyze(np.sin(np.arange(24) / 10), 384)  # 2.3 token columns (2 is the least)
    with pytest.warns(RankingCaveatWarning, match=r"history \(24 samples\).*fewer than the 4 needed"):
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
    np.testing.assert_allclose(roll.token_map, dense_rollout(fused, 0.9, 1), atol=1e-4)


@needs_capture
def test_analyze_layer_subset_and_mean_convention(vitime_fixture_forecaster, reference):
    from attnviz import MultiHeadAttentionRollout

    mh = MultiHeadAttentionRollout(vitime_fixture_forecaster, layers="blocks.*", time_convention="mean")
    res = mh.analyze(reference["x_0"], 720)
    assert res.layer_names == ["blocks.0.attn", "blocks.1.attn", "blocks.2.attn"]
    assert res.rollout is None
    a = reference["attn_blocks_2_attn"]
    np.testing.assert_allclose(res.time_maps[2], time_maps_from_attention(a, res.grid, "mean"), atol=1e-6)
