"""Reductions of attention probabilities to the small views attnviz works with.

Kept apart from the hooks in :mod:`attnviz.capture` so that one piece of arithmetic serves the
exact path (the whole map at once, :func:`reduce_full`), the chunked and single-pass paths (one
block of query rows of one head, or of a group of heads, at a time: :class:`BlockReducer`) and anyone who already holds full maps.

Definitions, for probabilities ``A`` (batch, head, query, key) over ``prefix + rows x cols``
tokens in row-major order (see :class:`attnviz.grid.TokenGrid`):

* time map ``T[q, k] = 1/R * sum_r sum_r' A[tok(r, q), tok(r', k)]`` - prefix tokens excluded
  as queries and as keys; ``time_convention="mean"`` divides by another ``R``.
* prefix mass ``M[q] = 1/R * sum_r sum_{p < P} A[tok(r, q), p]``, so under the "sum"
  convention each row of ``T`` sums to ``1 - M[q]``.
* head-fused token map: mean / max / min over heads of ``A``, prefix included.

All results are float32 on the CPU; the keys of a result dict are ``full`` (B, H, S, S),
``time`` (B, H, C, C), ``prefix`` (B, H, C) and ``tokens`` (B, S, S), each only when asked.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .grid import TokenGrid

HEAD_FUSIONS: tuple[str, ...] = ("mean", "max", "min")
TIME_CONVENTIONS: tuple[str, ...] = ("sum", "mean")


# ----- the definitions, on tensors of any leading shape -------------------------------------------
def natural_patches(tokens: torch.Tensor, grid: TokenGrid, dim: int) -> torch.Tensor:
    """The patch tokens along ``dim`` (prefix dropped) in row-major order: a view, or a gather
    through ``grid.token_order`` when the sequence is shuffled."""
    patches = tokens.narrow(dim, grid.prefix_tokens, grid.patch_tokens)
    positions = grid.natural_positions
    if positions is None:
        return patches
    return patches.index_select(dim, torch.as_tensor(positions, device=tokens.device))


def key_columns(probs: torch.Tensor, grid: TokenGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query token: mass on each key column (summed over key rows) and on the prefix keys.

    ``probs`` (..., q, S) -> ``(..., q, cols)`` and ``(..., q)``.  The patch keys are split into
    (rows, cols) as a view, so no copy is made.
    """
    p = grid.prefix_tokens
    per_col = natural_patches(probs, grid, -1).unflatten(-1, (grid.rows, grid.cols)).sum(-2)
    prefix = probs[..., :p].sum(-1)
    return per_col, prefix


def fold_query_rows(per_query: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Average over query rows: ``(B, H, S, ...)`` per query token -> ``(B, H, cols, ...)``.

    Prefix queries are dropped; the ``rows`` query rows of each column are averaged (in natural
    order when ``grid.token_order`` shuffles the sequence).
    """
    return natural_patches(per_query, grid, 2).unflatten(2, (grid.rows, grid.cols)).mean(2)


def time_maps_from_key_columns(
    per_col: torch.Tensor, prefix: torch.Tensor, grid: TokenGrid, time_convention: str = "sum"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query key-column mass (B, H, S, C) and prefix mass (B, H, S) -> time maps, prefix mass."""
    time_map = fold_query_rows(per_col, grid)
    if time_convention == "mean":
        time_map = time_map / grid.rows
    return time_map, fold_query_rows(prefix, grid)


def time_maps_from_probs(
    probs: torch.Tensor, grid: TokenGrid, time_convention: str = "sum"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full ``(B, H, S, S)`` probabilities -> time maps ``(B, H, C, C)``, prefix mass ``(B, H, C)``."""
    check_time_convention(time_convention)
    check_grid_fits(grid, probs.shape[-1], "the probabilities")
    return time_maps_from_key_columns(*key_columns(probs, grid), grid, time_convention)


def fuse_heads(probs: torch.Tensor, how: str, dim: int = 1) -> torch.Tensor:
    """Mean, max or min over the head axis (prefix tokens included)."""
    if how == "mean":
        return probs.mean(dim)
    if how == "max":
        return probs.amax(dim)
    if how == "min":
        return probs.amin(dim)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS} or None, got {how!r}")


# ----- checks -------------------------------------------------------------------------------------
def check_time_convention(time_convention: str) -> None:
    if time_convention not in TIME_CONVENTIONS:
        raise ValueError(f"time_convention must be one of {TIME_CONVENTIONS}, got {time_convention!r}")


def check_grid_fits(grid: TokenGrid, seq_len: int, where: str) -> None:
    """ValueError naming both lengths when ``grid`` does not describe a ``seq_len`` sequence."""
    if grid.seq_len != seq_len:
        raise ValueError(
            f"grid has seq_len {grid.seq_len} ({grid.prefix_tokens} prefix + {grid.rows} rows x "
            f"{grid.cols} cols) but {where} has sequence length {seq_len}"
        )


@dataclass(frozen=True)
class ReductionSpec:
    """What to keep of each attention map: the full map, time maps, a head-fused token map."""

    keep_full: bool = False
    grid: TokenGrid | None = None
    head_fusion: str | None = None
    time_convention: str = "sum"

    def __post_init__(self) -> None:
        check_time_convention(self.time_convention)
        if self.head_fusion is not None and self.head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS} or None, got {self.head_fusion!r}")
        if self.grid is not None and not isinstance(self.grid, TokenGrid):
            raise ValueError(
                f"grid must be an attnviz.grid.TokenGrid or None, got {type(self.grid).__name__}"
            )

    @property
    def wants_anything(self) -> bool:
        """False when the capture only counts calls (nothing to compute per map)."""
        return self.keep_full or self.grid is not None or self.head_fusion is not None


# ----- the two ways of feeding probabilities in ----------------------------------------------------
def reduce_full(spec: ReductionSpec, probs: torch.Tensor, borrowed: bool = False) -> dict[str, torch.Tensor]:
    """Reduce a whole (B, H, S, S) map at once (the exact path).

    ``borrowed=True`` says nobody will overwrite ``probs`` (the model's own softmax), so
    ``keep_full`` keeps it by reference instead of copying it.
    """
    probs = probs.detach()
    out: dict[str, torch.Tensor] = {}
    if spec.keep_full:
        full = to_cpu_f32(probs)
        # a CPU float32 map comes back as a view of the caller's memory: copy it unless borrowed
        out["full"] = full.clone() if not borrowed and full.data_ptr() == probs.data_ptr() else full
    if spec.grid is not None:
        time_map, prefix = time_maps_from_probs(probs, spec.grid, spec.time_convention)
        out["time"], out["prefix"] = to_cpu_f32(time_map), to_cpu_f32(prefix)
    if spec.head_fusion is not None:
        out["tokens"] = to_cpu_f32(fuse_heads(probs, spec.head_fusion))
    return out


class BlockReducer:
    """Reduction state of one forward call, filled one (batch, head, query block) at a time.

    Blocks of different (batch, query rows) may be added from different threads: each writes
    only its own slices of preallocated outputs.  Within one (batch, query rows) the heads must
    arrive in order 0..H-1 from one thread, one at a time or in groups (head fusion accumulates
    across them).  Memory is O(B*H*S*cols) for time maps and O(B*S*S) for a fused token map; the
    (B, H, S, S) map is held only with ``keep_full``.
    """

    def __init__(
        self, spec: ReductionSpec, batch: int, heads: int, seq_len: int, device: torch.device
    ) -> None:
        self.spec = spec
        self.shape = (batch, heads, seq_len)
        f32 = dict(dtype=torch.float32, device=device)
        grid = spec.grid
        self._full = torch.empty(batch, heads, seq_len, seq_len, **f32) if spec.keep_full else None
        self._per_col = torch.empty(batch, heads, seq_len, grid.cols, **f32) if grid else None
        self._prefix = torch.empty(batch, heads, seq_len, **f32) if grid else None
        self._fused = torch.empty(batch, seq_len, seq_len, **f32) if spec.head_fusion else None
        # One head's targets, made once: a block then costs a few torch calls, not dozens.
        self._head_targets = [[self._targets(b, h, 1) for h in range(heads)] for b in range(batch)]

    def _targets(self, b: int, h: int, g: int) -> tuple[torch.Tensor | None, ...]:
        """Full map, per-column mass and prefix mass of batch ``b``, heads ``h .. h + g``
        ((S, ...) for one head, (g, S, ...) for several), None where not asked for."""
        heads = h if g == 1 else slice(h, h + g)
        return tuple(None if t is None else t[b, heads] for t in (self._full, self._per_col, self._prefix))

    @property
    def columns_only(self) -> bool:
        """True when this call wants nothing but time maps and prefix mass of a row-major grid:
        then a block's reductions may be written straight into :meth:`column_targets`."""
        grid = self.spec.grid
        return grid is not None and grid.token_order is None and self._full is None and self._fused is None

    def column_targets(self, b: int, h: int, q0: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Where head ``h``'s query rows ``q0 .. q0 + n`` keep their key-column mass (n, cols) and
        prefix mass (n,): contiguous views for a kernel that computes them itself."""
        _, per_col, prefix = self._head_targets[b][h]
        return per_col.narrow(0, q0, n), prefix.narrow(0, q0, n)

    def add(self, b: int, h: int, q0: int, probs: torch.Tensor) -> None:
        """Fold the probabilities of heads ``h ..`` and query rows ``q0 .. q0 + n``.

        ``probs`` is (n, S) for head ``h`` alone or (g, n, S) for heads ``h .. h + g``; it may be
        a scratch buffer: only reductions or copies of it are kept.
        """
        one_head = probs.dim() == 2
        n = probs.shape[-2]
        full, per_col, prefix = self._head_targets[b][h] if one_head else self._targets(b, h, probs.shape[0])
        if full is not None:
            full.narrow(-2, q0, n).copy_(probs)
        grid = self.spec.grid
        if grid is not None:
            columns = natural_patches(probs, grid, -1).unflatten(-1, (grid.rows, grid.cols))
            torch.sum(columns, -2, out=per_col.narrow(-2, q0, n))
            torch.sum(probs[..., : grid.prefix_tokens], -1, out=prefix.narrow(-1, q0, n))
        if self._fused is not None:
            self._fuse(self._fused[b].narrow(0, q0, n), h, probs.unsqueeze(0) if one_head else probs)

    def _fuse(self, acc: torch.Tensor, h: int, probs: torch.Tensor) -> None:
        """Fold heads ``h .. h + g`` into the running head fusion ``acc`` (heads arrive in order;
        "mean" accumulates the sum and :meth:`finish` divides)."""
        how = self.spec.head_fusion
        if probs.shape[0] == 1:
            one = probs[0]
        elif how == "mean":
            one = probs.sum(0)
        else:
            one = fuse_heads(probs, how, dim=0)
        if h == 0:
            acc.copy_(one)
        elif how == "mean":
            acc.add_(one)
        elif how == "max":
            torch.maximum(acc, one, out=acc)
        else:
            torch.minimum(acc, one, out=acc)

    def finish(self) -> dict[str, torch.Tensor]:
        """Small CPU float32 results of this call."""
        out: dict[str, torch.Tensor] = {}
        if self._full is not None:
            out["full"] = to_cpu_f32(self._full)
        if self.spec.grid is not None:
            time_map, prefix = time_maps_from_key_columns(
                self._per_col, self._prefix, self.spec.grid, self.spec.time_convention
            )
            out["time"], out["prefix"] = to_cpu_f32(time_map), to_cpu_f32(prefix)
        if self._fused is not None:
            if self.spec.head_fusion == "mean":
                self._fused.div_(self.shape[1])
            out["tokens"] = to_cpu_f32(self._fused)
        return out


def to_cpu_f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float32)
