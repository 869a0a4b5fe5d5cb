"""attnviz.rollout against known answers: identity, hand-computed products, fusion, discard."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnmaps import dense_rollout, grid_300_200, shifted_identity, tokens_from_time
from attnviz.grid import TokenGrid
from attnviz.lags import time_maps_from_attention
from attnviz.rollout import (
    attention_rollout,
    discard_lowest,
    fuse_heads,
    rollout_result,
    rollout_step,
)


def softmax_maps(rng: np.random.Generator, layers: int, heads: int, s: int) -> np.ndarray:
    logits = rng.normal(size=(layers, heads, s, s)) * 2
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def step_by_hand(a: np.ndarray) -> np.ndarray:
    """0.5 A + 0.5 I, each row divided by its own sum."""
    m = 0.5 * a + 0.5 * np.eye(len(a))
    return m / m.sum(axis=1, keepdims=True)


# ----- one layer and the product -------------------------------------------------------------------
@pytest.mark.parametrize("layers", [1, 3])
def test_rollout_of_identity_attention_is_identity(layers):
    eye = np.eye(6)
    np.testing.assert_array_equal(attention_rollout([eye] * layers).numpy(), eye)


def test_rollout_row_normalisation_uses_keepdim():
    a = torch.tensor([[0.0, 3.0], [1.0, 0.0]], dtype=torch.float64)  # row sums 3 and 1
    step = rollout_step(a)
    np.testing.assert_allclose(step.sum(-1).numpy(), 1.0)
    np.testing.assert_allclose(step.numpy(), [[0.25, 0.75], [0.5, 0.5]])


def test_two_layers_multiply_later_layer_on_the_left():
    """R = A2' @ A1' with A' = rownorm(0.5 A + 0.5 I); worked out by hand for 2 tokens."""
    a1 = np.array([[0.0, 3.0], [1.0, 0.0]])  # A1' = [[0.25, 0.75], [0.5, 0.5]]
    a2 = np.array([[1.0, 0.0], [1.0, 1.0]])  # A2' = [[1, 0], [1/3, 2/3]]
    expected = np.array([[0.25, 0.75], [0.25 / 3 + 1 / 3, 0.75 / 3 + 1 / 3]])
    np.testing.assert_allclose(attention_rollout([a1, a2]).numpy(), expected, rtol=1e-15)
    np.testing.assert_allclose(expected, step_by_hand(a2) @ step_by_hand(a1), rtol=1e-15)
    assert not np.allclose(attention_rollout([a2, a1]).numpy(), expected)  # order matters


def test_three_layers_on_tokens_equal_the_formula():
    rng = np.random.default_rng(0)
    maps = [rng.uniform(size=(5, 5)) for _ in range(3)]  # rows do not sum to 1
    expected = step_by_hand(maps[2]) @ step_by_hand(maps[1]) @ step_by_hand(maps[0])
    joint = attention_rollout([torch.from_numpy(m) for m in maps]).numpy()
    np.testing.assert_allclose(joint, expected, rtol=1e-12)
    np.testing.assert_allclose(joint.sum(-1), 1.0, rtol=1e-12)


def test_rollout_keeps_a_batch_axis():
    rng = np.random.default_rng(1)
    maps = softmax_maps(rng, 2, 3, 7)  # (layers, batch, S, S)
    joint = attention_rollout(list(maps)).numpy()
    assert joint.shape == (3, 7, 7)
    for b in range(3):
        np.testing.assert_allclose(joint[b], dense_rollout([maps[0, b], maps[1, b]], 0.0, 1), atol=1e-12)


def test_rollout_refuses_no_layers_and_mixed_shapes():
    with pytest.raises(ValueError, match="at least one layer"):
        attention_rollout([])
    with pytest.raises(ValueError, match=r"layer 1: map shape \(4, 4\) differs"):
        attention_rollout([np.eye(3), np.eye(4)])
    with pytest.raises(ValueError, match=r"layer 0: fused map must have shape"):
        attention_rollout([np.ones((3, 4))])


# ----- head fusion -----------------------------------------------------------------------------
def test_head_fusion_mean_max_min_by_hand():
    heads = np.array([[[0.2, 0.8], [0.6, 0.4]], [[0.6, 0.4], [0.0, 1.0]]])  # (H=2, 2, 2)
    np.testing.assert_allclose(fuse_heads(heads, "mean").numpy(), [[0.4, 0.6], [0.3, 0.7]])
    np.testing.assert_allclose(fuse_heads(heads, "max").numpy(), [[0.6, 0.8], [0.6, 1.0]])
    np.testing.assert_allclose(fuse_heads(heads, "min").numpy(), [[0.2, 0.4], [0.0, 0.4]])
    batched = fuse_heads(torch.from_numpy(np.stack([heads, heads[::-1]])), "max")
    assert batched.shape == (2, 2, 2) and batched.dtype == torch.float64
    with pytest.raises(ValueError, match="head_fusion"):
        fuse_heads(heads, "median")
    with pytest.raises(ValueError, match=r"\(\.\.\., heads, S, S\)"):
        fuse_heads(heads[0], "mean")


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.4])
def test_rollout_rows_sum_to_one_and_match_dense(fusion, discard):
    rng = np.random.default_rng(4)
    maps = softmax_maps(rng, 3, 2, 21)
    fused = [getattr(np, {"mean": "mean", "max": "max", "min": "min"}[fusion])(m, axis=0) for m in maps]
    np.testing.assert_allclose(fuse_heads(maps[0], fusion).numpy(), fused[0])
    joint = attention_rollout([torch.from_numpy(f) for f in fused], discard, prefix_tokens=1).numpy()
    np.testing.assert_allclose(joint.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(joint, dense_rollout(fused, discard, 1), atol=1e-12)


# ----- discarding ------------------------------------------------------------------------------
def test_discard_by_hand_keeps_the_prefix_key():
    a = torch.tensor([[0.05, 0.5, 0.1], [0.01, 0.3, 0.2], [0.02, 0.4, 0.6]], dtype=torch.float64)
    out = discard_lowest(a, 0.5, prefix_tokens=1).numpy()
    # 6 non-prefix entries, the 3 lowest (0.1, 0.2, 0.3) go; the tiny CLS column stays.
    np.testing.assert_array_equal(out, [[0.05, 0.5, 0.0], [0.01, 0.0, 0.0], [0.02, 0.4, 0.6]])
    np.testing.assert_array_equal(discard_lowest(a, 0.0).numpy(), a.numpy())
    everything = discard_lowest(a, 0.5, prefix_tokens=0).numpy()
    assert np.count_nonzero(everything == 0) == 4  # int(9 * 0.5), CLS column included now


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


# ----- the time view -------------------------------------------------------------------------------
def test_rollout_result_of_a_shifted_identity_keeps_its_lag():
    """One layer that looks one column back: after (A + I) / 2 half the mass stays, half moves."""
    g = grid_300_200()
    a = tokens_from_time(shifted_identity(g.cols, 1), g)
    res = rollout_result([a], g, ["blocks.0.attn"], discard_ratio=0.0)
    np.testing.assert_allclose(res.token_map, step_by_hand(a), atol=1e-15)
    np.testing.assert_allclose(res.time_map, time_maps_from_attention(res.token_map, g), atol=1e-15)
    np.testing.assert_allclose(res.prefix_mass, 0.0, atol=1e-15)
    curve = res.lag_curve()
    assert curve.lags[np.argmax(curve.values)] == 20.0
    np.testing.assert_array_equal(res.lag_curves(max_lag=60).values, curve.values[:3])
    assert curve.values[0] == pytest.approx(0.5) and np.count_nonzero(curve.values) == 1
    d = res.to_dict(include_maps=True)
    assert d["layer_names"] == ["blocks.0.attn"] and d["time_map_shape"] == [g.cols, g.cols]
    json.dumps(d, allow_nan=False)


def test_rollout_result_refuses_a_map_of_another_grid():
    g = TokenGrid(rows=2, cols=3, prefix_tokens=1, history_cols=2, samples_per_col=4.0)
    with pytest.raises(ValueError, match=r"layer 'x': fused map has 5 tokens but the grid has 7"):
        rollout_result([np.eye(5)], g, ["x"])
    with pytest.raises(ValueError, match="convention"):
        rollout_result([np.eye(7)], g, ["x"], time_convention="median")
