"""Training attnviz's own small ViTime on synthetic RealTS-like series.

Names are imported lazily so that ``attnviz train --help`` does not pay for torch.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "SyntheticSeries": ".synthetic",
    "SyntheticSpec": ".synthetic",
    "DEFAULT_MODEL": ".config",
    "TrainConfig": ".config",
    "emd_loss": ".trainer",
    "export_checkpoint": ".trainer",
    "train": ".trainer",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'attnviz.training' has no attribute {name!r}")
    return getattr(import_module(_LAZY[name], __name__), name)
