"""Loading a VisionTS for the command line (``attnviz explain --model visionts``).

Kept apart from :class:`VisionTSForecaster` so the CLI's choices (download or not, random
weights on purpose) read in one place and its errors name the flags, not Python arguments.
"""
from __future__ import annotations

from pathlib import Path

from ..vitime.checkpoint import CheckpointError
from .forecaster import VisionTSForecaster, import_visionts

__all__ = ["load_visionts"]


def load_visionts(
    periodicity: int,
    arch: str = "mae_base",
    ckpt_dir: str | Path = "./ckpt/",
    *,
    download: bool = False,
    allow_random_weights: bool = False,
    trust_checkpoint: bool = False,
    device: str | None = None,
) -> VisionTSForecaster:
    """The checkpoint of ``arch`` in ``ckpt_dir`` (fetched there by visionts' own download with
    ``download``); with none there and ``allow_random_weights``, visionts' model with random
    weights, on purpose.  Otherwise a :class:`CheckpointError` naming the flags."""
    vt = import_visionts()
    table = vt.model.MAE_ARCH
    if arch not in table:
        raise ValueError(f"--arch must be one of {sorted(table)}, got {arch!r}")
    path = Path(ckpt_dir) / table[arch][1]
    if path.is_file() or download:
        fc = VisionTSForecaster.from_pretrained(
            periodicity, arch, ckpt_dir, download=download, trust_checkpoint=trust_checkpoint,
            device=device, allow_random_weights=allow_random_weights,
        )
        fc.source = f"visionts:{arch}:{path}"
        return fc
    if not allow_random_weights:
        raise CheckpointError(
            f"no VisionTS checkpoint at {path}; pass --download to let visionts fetch "
            f"{table[arch][1]} there, or --allow-random-weights to explain random weights on purpose"
        )
    model = vt.VisionTS(arch=arch, ckpt_dir=str(ckpt_dir), load_ckpt=False)
    fc = VisionTSForecaster(model.to(device) if device else model, periodicity, allow_random_weights=True)
    fc.source = f"visionts:{arch}:random-weights"
    return fc
