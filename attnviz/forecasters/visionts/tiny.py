"""A small VisionTS with random weights, built by visionts' own constructor (tests, planted demos).

visionts picks its MAE from ``visionts.model.MAE_ARCH``; :func:`tiny_visionts` registers a small
MAE there for the duration of the constructor call only.  The image geometry (224 x 224 pixels,
16 x 16 patches, 14 x 14 tokens + CLS) is that of the released ``mae_base``, so every geometry
code path is the real one; only the widths and depths are small (a forecast takes milliseconds).
"""
from __future__ import annotations

import contextlib
from functools import partial
from typing import Any, Iterator

import torch
from torch import nn

from .forecaster import import_visionts

__all__ = ["TINY_ARCH", "tiny_visionts"]

#: Name the small MAE is registered under while a model is built.
TINY_ARCH = "attnviz_tiny"


def _tiny_mae(**kwargs: Any) -> nn.Module:
    models_mae = import_visionts().models_mae
    return models_mae.MaskedAutoencoderViT(
        img_size=224,
        patch_size=16,
        embed_dim=64,
        depth=2,
        num_heads=4,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4,  # head_dim 32, as in mae_base's decoder
        mlp_ratio=2,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        **kwargs,
    )


@contextlib.contextmanager
def _registered(name: str) -> Iterator[None]:
    table = import_visionts().model.MAE_ARCH
    previous = table.get(name)
    table[name] = [_tiny_mae, f"{name}.pth"]
    try:
        yield
    finally:
        if previous is None:
            del table[name]
        else:
            table[name] = previous


def tiny_visionts(seed: int = 0, variant: str = "visionts", **kwargs: Any) -> nn.Module:
    """A ``visionts.VisionTS`` (or ``VisionTSpp`` with ``variant="visiontspp"``) with a small
    random MAE (2 + 2 blocks; decoder 128 wide, 4 heads).  ``kwargs`` go to the constructor."""
    vt = import_visionts()
    cls = {"visionts": vt.VisionTS, "visiontspp": vt.VisionTSpp}.get(variant)
    if cls is None:
        raise ValueError(f"variant must be 'visionts' or 'visiontspp', got {variant!r}")
    with _registered(TINY_ARCH), torch.random.fork_rng(devices=[]):  # leaves the global RNG alone
        torch.manual_seed(seed)
        return cls(arch=TINY_ARCH, load_ckpt=False, **kwargs).eval()
