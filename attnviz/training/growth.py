"""Deepening a trained ViTime without changing what it computes.

A small model that has stopped improving can be given more transformer blocks and trained on,
instead of starting a deeper one from scratch (which would have to climb off the
mean-forecast plateau again).  New blocks are inserted between the trained ones with their two
residual output projections (``attn.proj`` and ``mlp.fc2``) set to zero: each new block then
adds nothing to the residual stream, so the deepened model's forecast is exactly the trained
one's, while the zeroed projections still receive gradients and start learning at once.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Mapping

import torch

from ..forecasters.vitime import ViTimeConfig

# (the config's depth of a stack, the state-dict prefix of its blocks)
_STACKS = (("enc_depth", "blocks"), ("dec_depth", "decoder_blocks"))
_RESIDUAL_OUTPUTS = ("attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias")


def can_deepen(source: ViTimeConfig, target: ViTimeConfig) -> bool:
    """True when ``target`` is ``source`` with at least as many encoder and decoder blocks."""
    if source.enc_depth > target.enc_depth or source.dec_depth > target.dec_depth:
        return False
    same_depths = replace(source, depth=target.enc_depth, decoder_depth=target.dec_depth)
    pinned = replace(target, depth=target.enc_depth, decoder_depth=target.dec_depth)
    return same_depths.to_dict() == pinned.to_dict()


def block_positions(source_depth: int, target_depth: int) -> list[int]:
    """Where the trained blocks go in the deeper stack, spread evenly (order kept).

    4 -> 8 gives [0, 2, 4, 6]: a new block after every trained one.
    """
    if not 1 <= source_depth <= target_depth:
        raise ValueError(f"cannot spread {source_depth} blocks over {target_depth}")
    return [i * target_depth // source_depth for i in range(source_depth)]


def deepen_state(
    state: Mapping[str, torch.Tensor],
    source: ViTimeConfig,
    target: ViTimeConfig,
    fresh: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The trained ``state`` laid out for the deeper ``target``; new blocks start as identities.

    ``fresh`` is a freshly initialised ``target`` model's state: it supplies the new blocks'
    norms and the query/key/value and first MLP layers (random, as in any new block).
    """
    if not can_deepen(source, target):
        raise ValueError(
            f"cannot deepen {source.describe()} into {target.describe()}: only more encoder or "
            "decoder blocks, everything else equal, can be added"
        )
    out = dict(fresh)
    moved: dict[str, dict[int, int]] = {}
    for depth_name, prefix in _STACKS:
        positions = block_positions(getattr(source, depth_name), getattr(target, depth_name))
        moved[prefix] = dict(enumerate(positions))
        new = set(range(getattr(target, depth_name))) - set(positions)
        for index in new:
            for suffix in _RESIDUAL_OUTPUTS:
                out[f"{prefix}.{index}.{suffix}"] = torch.zeros_like(fresh[f"{prefix}.{index}.{suffix}"])
    pattern = re.compile(rf"^({'|'.join(prefix for _, prefix in _STACKS)})\.(\d+)\.(.+)$")
    for key, value in state.items():
        match = pattern.match(key)
        if match:
            prefix, index, rest = match.group(1), int(match.group(2)), match.group(3)
            key = f"{prefix}.{moved[prefix][index]}.{rest}"
        if key not in out or out[key].shape != value.shape:
            raise ValueError(f"trained weight {key} {tuple(value.shape)} has no place in {target.describe()}")
        out[key] = value.clone()
    return out
