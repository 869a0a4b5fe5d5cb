"""Planted heads: known answers without pretrained weights.

:func:`plant_shift_head` sets one head's q/k so that on a position-only input every patch token
attends to the token ``shift`` columns back in its row; its lag curve must then peak at exactly
``shift`` token columns, in samples of the call, for any forecaster family. The tests use it for
ViTime and VisionTS; ``python -m attnviz.planted OUT.png`` draws the README's planted VisionTS
figure (random weights, labelled as planted).
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

__all__ = ["plant_shift_head", "planted_visionts"]


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


def planted_visionts(model: Any, head: int, shift: int) -> Any:
    """A visionts model whose decoder block 0 sees positions only, with ``head`` planted."""
    vm = model.vision_model
    with torch.no_grad():
        vm.decoder_embed.weight.zero_()
        vm.decoder_embed.bias.zero_()
        vm.mask_token.zero_()
    grid_size = vm.patch_embed.grid_size[0]
    plant_shift_head(vm.decoder_blocks[0], vm.decoder_pos_embed[0], grid_size, grid_size, 1, head, shift)
    return model


def main(argv: list[str] | None = None) -> int:
    """Draw the planted VisionTS head (tiny model, P = 24, 480 + 96 samples) to the given PNG."""
    from pathlib import Path

    from .analysis import MultiHeadAttentionRollout
    from .forecasters.visionts import VisionTSForecaster, tiny_visionts
    from .plotting import Plotter

    out = Path((argv if argv is not None else sys.argv[1:])[0])
    fc = VisionTSForecaster(planted_visionts(tiny_visionts(seed=2), head=1, shift=1), 24, allow_random_weights=True)
    x = 3 + np.sin(np.arange(480) * 2 * np.pi / 24)
    res = MultiHeadAttentionRollout(fc, layers="vision_model.decoder_blocks.*").analyze(x, 96)
    plotter = Plotter()
    fig = plotter.head_panel(res, "vision_model.decoder_blocks.0.attn", 1, experiment="PLANTED VisionTS head (random weights)")
    plotter.save(fig, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
