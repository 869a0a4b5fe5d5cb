"""VisionTS' 20 layers through MultiHeadAttentionRollout: shuffled encoder order, per-layer grids.

The encoder sees only the visible token columns, in the order visionts' ``random_masking``
leaves them; ``TokenGrid.token_order`` folds such a sequence into natural columns, and the
forecaster's per-layer grids put each encoder map into the decoder's column frame (NaN where
the encoder never looked).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnviz.grid import TokenGrid
from attnviz.lags import prefix_mass_from_attention, time_maps_from_attention
from attnviz.reducers import BlockReducer, ReductionSpec, time_maps_from_probs


# ----- token order on a TokenGrid -------------------------------------------------------------------
def _shuffled(rows: int = 3, cols: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows * cols)
    plain = TokenGrid(rows=rows, cols=cols, prefix_tokens=1, history_cols=2, samples_per_col=2.0)
    shuffled = TokenGrid(rows=rows, cols=cols, prefix_tokens=1, history_cols=2, samples_per_col=2.0, token_order=order)
    probs = torch.softmax(torch.randn(2, 3, rows * cols + 1, rows * cols + 1, dtype=torch.float64), -1)
    seq = np.concatenate([[0], 1 + order])  # position j holds natural token order[j]
    return plain, shuffled, probs, probs[..., seq, :][..., seq]


def test_token_order_folds_a_shuffled_sequence_into_natural_columns():
    plain, shuffled, probs, shuffled_probs = _shuffled()
    t0, p0 = time_maps_from_probs(probs, plain)
    t1, p1 = time_maps_from_probs(shuffled_probs, shuffled)
    torch.testing.assert_close(t1, t0)
    torch.testing.assert_close(p1, p0)
    np.testing.assert_allclose(time_maps_from_attention(shuffled_probs, shuffled), time_maps_from_attention(probs, plain))
    np.testing.assert_allclose(
        prefix_mass_from_attention(shuffled_probs, shuffled), prefix_mass_from_attention(probs, plain)
    )
    reducer = BlockReducer(ReductionSpec(grid=shuffled), 2, 3, plain.seq_len, torch.device("cpu"))
    for b in range(2):
        for h in range(3):  # two query blocks, as the chunked and single-pass paths feed them
            reducer.add(b, h, 0, shuffled_probs[b, h, :5].float())
            reducer.add(b, h, 5, shuffled_probs[b, h, 5:].float())
    torch.testing.assert_close(reducer.finish()["time"], t0.float(), atol=1e-6, rtol=1e-6)
    assert shuffled.token_index(1, 2) == 1 + list(shuffled.token_order).index(1 * 4 + 2)


def test_token_order_is_checked_and_identity_is_dropped():
    with pytest.raises(ValueError, match="permutation of range\\(12\\)"):
        TokenGrid(rows=3, cols=4, prefix_tokens=1, history_cols=2, samples_per_col=1.0, token_order=[0] * 12)
    grid = TokenGrid(rows=3, cols=4, prefix_tokens=1, history_cols=2, samples_per_col=1.0, token_order=range(12))
    assert grid.token_order is None and grid.natural_positions is None
