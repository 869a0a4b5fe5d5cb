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
from attnviz.planted import plant_shift_head, planted_visionts


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
