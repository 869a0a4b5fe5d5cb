"""attnviz.reducers against known answers: key columns, query-row folding, time maps, head fusion,
and the chunked BlockReducer equal to the whole-map reduce_full."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnmaps import HAND_TIME_MAP, SMALL_GRID, hand_tokens
from attnviz.grid import TokenGrid
from attnviz.lags import prefix_mass_from_attention, time_maps_from_attention
from attnviz.reducers import (
    BlockReducer,
    ReductionSpec,
    check_grid_fits,
    fold_query_rows,
    fuse_heads,
    key_columns,
    reduce_full,
    time_maps_from_probs,
)


def random_probs(
    batch: int, heads: int, grid: TokenGrid, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Softmax of random logits, (batch, heads, S, S) over ``grid``'s tokens."""
    shape = (batch, heads, grid.seq_len, grid.seq_len)
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return torch.softmax(logits, dim=-1)


# ----- the definitions ---------------------------------------------------------------------------
def test_key_columns_sum_key_rows_and_split_off_the_prefix():
    # One query over CLS + tokens (0,0) (0,1) (0,2) (1,0) (1,1) (1,2).
    probs = torch.tensor([[0.1, 0.2, 0.0, 0.1, 0.3, 0.05, 0.25]])
    per_col, prefix = key_columns(probs, SMALL_GRID)
    np.testing.assert_allclose(per_col.numpy(), [[0.5, 0.05, 0.35]], rtol=1e-6)
    np.testing.assert_allclose(prefix.numpy(), [0.1], rtol=1e-6)


def test_fold_query_rows_averages_rows_and_drops_prefix_queries():
    # Per query token: its own sequence index, so the fold is the mean of two known indices.
    per_query = torch.arange(SMALL_GRID.seq_len, dtype=torch.float64).reshape(1, 1, -1)
    folded = fold_query_rows(per_query, SMALL_GRID)
    # Column c holds tokens 1 + c (row 0) and 4 + c (row 1): mean 2.5 + c.
    np.testing.assert_array_equal(folded.numpy(), [[[2.5, 3.5, 4.5]]])
    trailing = fold_query_rows(per_query[..., None].expand(1, 1, -1, 2), SMALL_GRID)
    assert trailing.shape == (1, 1, 3, 2)


def test_time_maps_from_probs_by_hand():
    """The hand-built map of test_lags: the same numbers come out of the torch reduction."""
    a = torch.from_numpy(hand_tokens())[None, None]
    time_map, prefix = time_maps_from_probs(a, SMALL_GRID)
    np.testing.assert_allclose(time_map[0, 0].numpy(), HAND_TIME_MAP, atol=1e-15)
    np.testing.assert_allclose(prefix[0, 0].numpy(), [0.1, 0.1, 0.1])
    mean_map, _ = time_maps_from_probs(a, SMALL_GRID, "mean")
    np.testing.assert_allclose(mean_map[0, 0].numpy(), HAND_TIME_MAP / 2, atol=1e-15)


@pytest.mark.parametrize("convention", ["sum", "mean"])
def test_time_maps_from_probs_equal_the_numpy_definition(convention):
    grid = TokenGrid(rows=3, cols=5, prefix_tokens=2, history_cols=3, samples_per_col=2.5)
    probs = random_probs(2, 3, grid, dtype=torch.float64)
    time_map, prefix = time_maps_from_probs(probs, grid, convention)
    assert time_map.shape == (2, 3, 5, 5) and prefix.shape == (2, 3, 5)
    np.testing.assert_allclose(time_map.numpy(), time_maps_from_attention(probs.numpy(), grid, convention))
    np.testing.assert_allclose(prefix.numpy(), prefix_mass_from_attention(probs.numpy(), grid))
    if convention == "sum":
        np.testing.assert_allclose(time_map.sum(-1).numpy(), 1 - prefix.numpy(), rtol=1e-12)


def test_checks_name_what_is_wrong():
    probs = random_probs(1, 1, SMALL_GRID)
    with pytest.raises(ValueError, match="time_convention must be one of"):
        time_maps_from_probs(probs, SMALL_GRID, "median")
    with pytest.raises(ValueError, match=r"grid has seq_len 7 .* but the maps has sequence length 6"):
        check_grid_fits(SMALL_GRID, 6, "the maps")
    with pytest.raises(ValueError, match="head_fusion"):
        ReductionSpec(head_fusion="median")
    with pytest.raises(ValueError, match="TokenGrid"):
        ReductionSpec(grid=(2, 3))


def test_fuse_heads_mean_max_min_by_hand():
    heads = torch.tensor([[[[0.2, 0.8], [0.6, 0.4]], [[0.6, 0.4], [0.0, 1.0]]]])  # (B=1, H=2, 2, 2)
    np.testing.assert_allclose(fuse_heads(heads, "mean")[0].numpy(), [[0.4, 0.6], [0.3, 0.7]], rtol=1e-6)
    np.testing.assert_allclose(fuse_heads(heads, "max")[0].numpy(), [[0.6, 0.8], [0.6, 1.0]])
    np.testing.assert_allclose(fuse_heads(heads, "min")[0].numpy(), [[0.2, 0.4], [0.0, 0.4]])
    np.testing.assert_allclose(fuse_heads(heads[0], "max", dim=0).numpy(), [[0.6, 0.8], [0.6, 1.0]])
    with pytest.raises(ValueError, match="head_fusion"):
        fuse_heads(heads, "median")


# ----- reduce_full and BlockReducer ----------------------------------------------------------------
def test_reduce_full_returns_only_what_was_asked():
    probs = random_probs(2, 3, SMALL_GRID)
    assert not ReductionSpec().wants_anything and reduce_full(ReductionSpec(), probs) == {}
    out = reduce_full(ReductionSpec(grid=SMALL_GRID), probs)
    assert set(out) == {"time", "prefix"} and out["time"].shape == (2, 3, 3, 3)
    borrowed = reduce_full(ReductionSpec(keep_full=True), probs, borrowed=True)["full"]
    assert torch.equal(borrowed, probs)
    assert borrowed.data_ptr() == probs.data_ptr()  # the model's own softmax: kept by reference
    tokens = reduce_full(ReductionSpec(head_fusion="max"), probs)["tokens"]
    assert torch.equal(tokens, probs.amax(1))


def test_reduce_full_copies_a_map_it_does_not_borrow():
    probs = random_probs(1, 2, SMALL_GRID)
    full = reduce_full(ReductionSpec(keep_full=True), probs)["full"]
    expected = probs.clone()
    probs.mul_(0.5)  # what an in-place dropout does to the softmax after the hook
    assert torch.equal(full, expected)
    borrowed = reduce_full(ReductionSpec(keep_full=True), probs, borrowed=True)["full"]
    assert borrowed.data_ptr() == probs.data_ptr()  # borrowed: kept by reference, no copy


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("block", [1, 3, 7])
def test_block_reducer_over_blocks_equals_reduce_full(fusion, block):
    grid = TokenGrid(rows=3, cols=4, prefix_tokens=1, history_cols=2, samples_per_col=3.0)
    probs = random_probs(2, 3, grid, seed=block)
    spec = ReductionSpec(keep_full=True, grid=grid, head_fusion=fusion, time_convention="mean")
    batch, heads, seq = probs.shape[:3]
    reducer = BlockReducer(spec, batch, heads, seq, torch.device("cpu"))
    scratch = torch.empty(block, seq)
    for b in range(batch):
        for q0 in range(0, seq, block):
            q1 = min(q0 + block, seq)
            for h in range(heads):  # heads in order within one block of query rows
                rows = scratch[: q1 - q0]
                rows.copy_(probs[b, h, q0:q1])
                reducer.add(b, h, q0, rows)
                rows.fill_(-1.0)  # the reducer must not keep the scratch buffer
    got, want = reducer.finish(), reduce_full(spec, probs)
    assert set(got) == set(want) == {"full", "time", "prefix", "tokens"}
    for key in want:
        assert got[key].dtype == torch.float32 and got[key].device.type == "cpu"
        torch.testing.assert_close(got[key], want[key], rtol=1e-6, atol=1e-7)
