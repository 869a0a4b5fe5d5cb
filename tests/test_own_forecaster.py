"""A user's own timm-ViT forecaster plugs in through the interface: the example in
docs/own_forecaster.md is executed here, its forecast is unchanged by the capture, and a planted
head (one column back) peaks at exactly one column in samples."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "own_forecaster.md"


def run_example() -> dict:
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # the documented code, as a reader runs it
    return namespace


def test_the_documented_example_runs_and_gives_lags_in_samples():
    ns = run_example()
    res, fc = ns["res"], ns["fc"]
    assert res.layer_names == ["blocks.0.attn", "blocks.1.attn"]
    assert res.grid.samples_per_col == 8.0 and res.time_maps.shape == (2, 2, 16, 16)
    np.testing.assert_allclose(res.lag_curve("blocks.0.attn", 0).lags[:3], [8.0, 16.0, 24.0])
    rows = np.nansum(res.time_maps, axis=-1) + res.prefix_mass  # every query row sums to 1
    np.testing.assert_allclose(rows, 1.0, atol=1e-5)
    plain = fc.predict(ns["series"], 32).forecast
    np.testing.assert_allclose(res.forecast.forecast, plain, atol=1e-5)  # capture changes nothing
    assert len(res.ranked_heads) == 4


def test_a_planted_head_in_the_users_model_peaks_one_column_back():
    ns = run_example()
    fc = ns["fc"]
    block, cols, rows = fc.model.blocks[0], fc.cols, fc.rows
    # Block 0 sees positions only (patch content and CLS zeroed); a token's position is its time
    # column, one-hot in the first 16 dims. Head 0's keys read that one-hot, its queries the
    # one-hot of the column before: each token attends to column c - 1 (both rows alike).
    with torch.no_grad():
        fc.model.patch_embed.proj.weight.zero_()
        fc.model.patch_embed.proj.bias.zero_()
        fc.model.cls_token.zero_()
        pos = torch.zeros_like(fc.model.pos_embed)
        for r in range(rows):
            for c in range(cols):
                pos[0, 1 + r * cols + c, c] = 4.0
        fc.model.pos_embed.copy_(pos)
        dim = fc.model.embed_dim
        head_dim = dim // fc.model.blocks[0].attn.num_heads
        shift = torch.zeros(head_dim, dim)
        for c in range(1, cols):
            shift[c - 1, c] = 1.0  # query of column c looks for the key of column c - 1
        qkv = block.attn.qkv
        qkv.weight[:head_dim] = 40.0 * shift
        qkv.weight[dim:dim + head_dim] = torch.eye(head_dim, dim)
        qkv.bias[:head_dim] = 0
        qkv.bias[dim:dim + head_dim] = 0
    res = ns["MultiHeadAttentionRollout"](fc).analyze(ns["series"], 32)
    curve = res.lag_curve("blocks.0.attn", 0)
    assert curve.lags[int(np.nanargmax(curve.values))] == res.grid.samples_per_col  # exactly one column
    tmap = res.time_map("blocks.0.attn", 0)
    off = np.diagonal(tmap, offset=-1)
    assert off.min() > 0.9, off  # each column sends > 90 % of its attention one column back
