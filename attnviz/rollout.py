"""Attention rollout across layers (Abnar & Zuidema, 2020), token level and time level.

For each layer in model order (encoder blocks, then decoder blocks; at mask ratio 0 ViTime's
decoder sees the same token sequence as the encoder):

1. fuse the heads: mean, max or min over heads -> A (S, S);
2. discard: zero the lowest ``discard_ratio`` fraction of A's entries, never an entry whose key
   is a prefix (CLS) token;
3. add the residual path and renormalise: ``A' = (A + I) / 2``, then each row divided by its
   sum (``keepdim`` so row q is divided by row q's sum, not broadcast across columns);
4. multiply through: ``R_l = A'_l @ R_{l-1}``, ``R_0 = I``.

Every A' is row-stochastic, so the rollout is too (rows sum to 1).  The token-level rollout is
then mapped to a (cols, cols) time map with the same rule as single layers
(``time_maps_from_attention``) and the mass it sends to the prefix is reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .grid import TokenGrid
from .lags import (
    LagCurvesMixin,
    check_convention,
    prefix_mass_from_attention,
    time_maps_from_attention,
    to_numpy,
)
from .reducers import HEAD_FUSIONS
from .reducers import fuse_heads as fuse_head_axis


def check_fusion(head_fusion: str) -> str:
    """``head_fusion`` if it is one of ``HEAD_FUSIONS`` (None is not), else a ValueError."""
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    return head_fusion


def _as_tensor(x: Any, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def fuse_heads(attn: Any, head_fusion: str = "mean", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(..., H, S, S) -> (..., S, S): mean, max or min over the head axis."""
    check_fusion(head_fusion)
    a = _as_tensor(attn, dtype)
    if a.dim() < 3:
        raise ValueError(f"attention must have shape (..., heads, S, S), got {tuple(a.shape)}")
    return fuse_head_axis(a, head_fusion, dim=-3)


def discard_lowest(a: torch.Tensor, discard_ratio: float, prefix_tokens: int = 1) -> torch.Tensor:
    """Copy of ``a`` (..., S, S) with the lowest ``discard_ratio`` fraction of each map's entries
    zeroed; entries whose key (last axis) is a prefix token are never discarded (and do not count
    in the fraction)."""
    if not 0.0 <= float(discard_ratio) < 1.0:
        raise ValueError(f"discard_ratio must lie in [0, 1), got {discard_ratio!r}")
    out = a.clone()
    if discard_ratio == 0:
        return out
    s = a.shape[-1]
    p = int(prefix_tokens)
    body = out[..., :, p:]  # view of the non-prefix keys
    flat = body.reshape(-1, s * (s - p))
    n_drop = int(flat.shape[-1] * float(discard_ratio))
    if n_drop == 0:
        return out
    # Threshold at the n_drop-th smallest value; zero everything below it, then as many of the
    # entries equal to it (first in row-major order) as are still needed: exactly n_drop zeroed.
    thresh = torch.kthvalue(flat, n_drop, dim=-1, keepdim=True).values
    below = flat < thresh
    ties = flat == thresh
    still = n_drop - below.sum(dim=-1, keepdim=True)
    tie_rank = torch.cumsum(ties.to(torch.int64), dim=-1)
    drop = below | (ties & (tie_rank <= still))
    flat = flat.masked_fill(drop, 0.0)
    out[..., :, p:] = flat.reshape(body.shape)
    return out


def rollout_step(a: torch.Tensor, discard_ratio: float = 0.0, prefix_tokens: int = 1) -> torch.Tensor:
    """One layer's rollout factor: discard, (A + I) / 2, row-renormalise (keepdim)."""
    a = discard_lowest(a, discard_ratio, prefix_tokens)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    a = (a + eye) / 2.0
    return a / a.sum(dim=-1, keepdim=True)


def attention_rollout(
    fused_maps: Sequence[Any],
    discard_ratio: float = 0.0,
    prefix_tokens: int = 1,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Rollout of head-fused maps given in model order, each (..., S, S): returns (..., S, S)."""
    if len(fused_maps) == 0:
        raise ValueError("attention rollout needs at least one layer")
    result: torch.Tensor | None = None
    shape = None
    for i, m in enumerate(fused_maps):
        a = _as_tensor(m, dtype)
        if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"layer {i}: fused map must have shape (..., S, S), got {tuple(a.shape)}")
        if shape is not None and tuple(a.shape) != shape:
            raise ValueError(f"layer {i}: map shape {tuple(a.shape)} differs from earlier {shape}")
        shape = tuple(a.shape)
        if result is not None:
            a = a.to(result.device)
        step = rollout_step(a, discard_ratio, prefix_tokens)
        result = step if result is None else step @ result
    assert result is not None
    return result


@dataclass(frozen=True)
class RolloutResult(LagCurvesMixin):
    """Attention rollout of one call.

    token_map: (S, S) rollout over all tokens, prefix included (rows sum to 1).
    time_map: (cols, cols) time view (same rule and convention as the per-layer time maps).
    prefix_mass: (cols,) mass each query column sends to prefix tokens in the rollout.
    """

    token_map: np.ndarray
    time_map: np.ndarray
    prefix_mass: np.ndarray
    grid: TokenGrid
    layer_names: tuple
    head_fusion: str
    discard_ratio: float
    time_convention: str = "sum"

    def _lag_maps(self) -> np.ndarray:
        return self.time_map

    lag_curve = LagCurvesMixin.lag_curves  # one time map: one curve, values (K,)

    def to_dict(self, include_maps: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layer_names": list(self.layer_names),
            "head_fusion": self.head_fusion,
            "discard_ratio": float(self.discard_ratio),
            "time_convention": self.time_convention,
            "token_map_shape": list(self.token_map.shape),
            "time_map_shape": list(self.time_map.shape),
            "prefix_mass_mean": float(np.mean(self.prefix_mass)) if self.prefix_mass.size else None,
        }
        if include_maps:
            out["time_map"] = self.time_map.tolist()
            out["prefix_mass"] = self.prefix_mass.tolist()
        return out


def rollout_result(
    fused_maps: Sequence[Any],
    grid: TokenGrid,
    layer_names: Sequence[str],
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    time_convention: str = "sum",
) -> RolloutResult:
    """Rollout of (S, S) fused maps in model order, with its time view on ``grid``."""
    check_convention(time_convention)
    for name, m in zip(layer_names, fused_maps):
        if m.shape[-1] != grid.seq_len:
            raise ValueError(
                f"layer {name!r}: fused map has {m.shape[-1]} tokens but the grid has "
                f"{grid.seq_len}"
            )
    joint = to_numpy(attention_rollout(fused_maps, discard_ratio, grid.prefix_tokens))
    return RolloutResult(
        token_map=joint,
        time_map=time_maps_from_attention(joint, grid, time_convention),
        prefix_mass=prefix_mass_from_attention(joint, grid),
        grid=grid,
        layer_names=tuple(layer_names),
        head_fusion=head_fusion,
        discard_ratio=float(discard_ratio),
        time_convention=time_convention,
    )
