"""Planted heads: known answers without pretrained weights, for every forecaster family.

One decoder block's q/k weights are set so that one head sends (almost) all of every patch
token's attention to the token ``shift`` columns back in the same row.  To make that hold for
any series, the decoder's content input is zeroed (``decoder_embed`` weight and bias, and
VisionTS's ``mask_token``), so decoder block 0 sees only its fixed position table.  The lag
curve of that head must then peak at exactly ``shift`` token columns, in samples of the call.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from attnviz.analysis import MultiHeadAttentionRollout


def plant_shift_head(block, positions: torch.Tensor, rows: int, cols: int, prefix: int, head: int,
                     shift: int = 1, gap: float = 30.0) -> float:
    """Set ``block.attn``'s q/k rows of ``head`` so that, on the input ``positions`` (S, D), patch
    token (r, c) attends to (r, c - shift) (columns < shift attend to themselves).

    Keys are the block's normalised input projected on its leading right-singular vectors (as
    many as the head has dimensions); queries are fitted by least squares to the key of their
    target token, so each query's largest logit is its target's.  The weights are scaled so that
    the smallest gap between a query's target logit and its next best is ``gap`` (softmax mass
    outside the target ~ S * exp(-gap)).  Returns the smallest gap before scaling (> 0).
    """
    attn = block.attn
    dim, hd = positions.shape[-1], attn.head_dim
    with torch.no_grad():
        x = block.norm1(positions).double()
        _, sing, vt = torch.linalg.svd(x[prefix:], full_matrices=False)
        rank = min(hd, int((sing > 1e-6 * sing[0]).sum()))
        to_key = vt[:rank].T  # (D, rank)
        keys = x @ to_key
        tokens = torch.arange(len(x))
        target = tokens.clone()
        for r in range(rows):
            for c in range(shift, cols):
                target[prefix + r * cols + c] = prefix + r * cols + c - shift
        x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
        to_query = torch.linalg.lstsq(x1, keys[target]).solution  # (D + 1, rank)
        logits = (x1 @ to_query) @ keys.T
        chosen = logits[tokens, target]
        others = logits.clone()
        others[tokens, target] = -torch.inf
        margin = float((chosen - others.max(dim=1).values)[prefix:].min())
        if margin <= 0:
            raise AssertionError(f"cannot plant: a query's target is not its best key (gap {margin})")
        gain = gap / margin / float(attn.scale)  # q . k * scale = gap / margin * logits
        weight, bias = attn.qkv.weight, attn.qkv.bias
        q_rows = slice(head * hd, (head + 1) * hd)
        k_rows = slice(dim + head * hd, dim + (head + 1) * hd)
        for rows_, w, b in ((q_rows, to_query[:dim].T * gain, to_query[dim] * gain), (k_rows, to_key.T, None)):
            weight[rows_] = 0.0
            bias[rows_] = 0.0
            weight[rows_][:rank] = w.to(weight.dtype)
            if b is not None:
                bias[rows_][:rank] = b.to(bias.dtype)
    return margin


def check_peak(result, layer: str, head: int, shift: int) -> None:
    """The head's past lag curve peaks at exactly ``shift`` columns, in samples, with ~all the mass."""
    grid = result.grid
    curve = result.lag_curve(layer, head)
    peak = int(np.nanargmax(curve.values))
    assert curve.lags[peak] == pytest.approx(shift * grid.samples_per_col)
    assert curve.values[peak] > 0.99
    assert np.nansum(curve.values) - curve.values[peak] < 0.01
    # every query column with a column `shift` back sends its mass there
    t = result.time_map(layer, head)
    q = np.arange(shift, grid.cols)
    assert np.all(t[q, q - shift] > 0.99)


# ----- ViTime ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [1, 3])
def test_planted_vitime_head_peaks_at_its_lag(vitime_fixture_forecaster, shift):
    fc = copy.deepcopy(vitime_fixture_forecaster)  # the session fixture stays untouched
    m = fc.model
    with torch.no_grad():
        m.decoder_embed.weight.zero_()
        m.decoder_embed.bias.zero_()
    head = 2
    plant_shift_head(m.decoder_blocks[0], m.decoder_pos_embed[0], m.grid_rows, m.grid_cols, 1, head, shift)
    x = np.sin(np.arange(512) * 2 * np.pi / 50)
    result = MultiHeadAttentionRollout(fc, layers="decoder_blocks.0.attn").analyze(x, 128)
    assert result.grid.samples_per_col == 16.0  # (512 + 128) / 40 columns
    check_peak(result, "decoder_blocks.0.attn", head, shift)


# ----- VisionTS ----------------------------------------------------------------------------------------
def planted_visionts(model, head: int, shift: int):
    vm = model.vision_model
    with torch.no_grad():
        vm.decoder_embed.weight.zero_()
        vm.decoder_embed.bias.zero_()
        vm.mask_token.zero_()
    grid_size = vm.patch_embed.grid_size[0]
    plant_shift_head(vm.decoder_blocks[0], vm.decoder_pos_embed[0], grid_size, grid_size, 1, head, shift)
    return model


def analyse_planted_visionts(model, shift: int):
    from attnviz.forecasters.visionts import VisionTSForecaster

    head = 1
    fc = VisionTSForecaster(planted_visionts(model, head, shift), 24, allow_random_weights=True)
    x = 3 + np.sin(np.arange(480) * 2 * np.pi / 24)
    # decoder layers only: encoder layers see the visible tokens in shuffled order (see report)
    result = MultiHeadAttentionRollout(fc, layers="vision_model.decoder_blocks.*").analyze(x, 96)
    # 480 samples = 20 periods on 4 visible columns: a token column is 5 periods = 120 samples,
    # so one column back in the same row is 120 samples (5 whole periods) back
    assert result.grid.samples_per_col == 120.0
    check_peak(result, "vision_model.decoder_blocks.0.attn", head, shift)
    return result


@pytest.mark.parametrize("shift", [1, 2])
def test_planted_visionts_head_peaks_at_its_lag(shift):
    pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    from attnviz.forecasters.visionts import tiny_visionts

    analyse_planted_visionts(tiny_visionts(seed=2), shift)


@pytest.mark.slow
def test_planted_visionts_mae_base_head_peaks_at_its_lag():
    vt = pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    torch.manual_seed(0)
    analyse_planted_visionts(vt.VisionTS(arch="mae_base", load_ckpt=False).eval(), 1)
