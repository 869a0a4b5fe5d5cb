"""Settings of a training run and the bundled model's architecture.

Kept free of torch so that ``attnviz train --help`` can show the same defaults the Python API
uses without paying for the import.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .synthetic import SyntheticSpec

# The model `attnviz train` builds: the released model's time geometry (77 token columns of 32
# image columns, so 512 + 720 samples give 16 samples per column) with a short value axis of 2
# token rows (64 bins in 32-bin patches), 8 heads per block, 1.5 M parameters.  The bundled
# model started as this one and was later deepened with --depth / --decoder-depth (its JSON
# config and the README's stage list say to what).
DEFAULT_MODEL: dict[str, Any] = {
    "h": 64,
    "maxScal": 3.5,
    "size": [1024, 0, 1440],
    "patch_size": [32, 32],
    "embed_dim": 128,
    "depth": 4,
    "num_heads": 8,
    "decoder_embed_dim": 128,
    "decoder_depth": 2,
    "decoder_num_heads": 8,
    "modelSize": None,
    "dNorm": 1,
}


@dataclass
class TrainConfig:
    """One training run: optimiser, curriculum, data mix and model (the generator's fields
    default to ``SyntheticSpec``'s).  Saved with every checkpoint, so a run can be resumed."""

    out_dir: str = "runs/default"
    steps: int = 20000
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.05
    warmup: int = 300
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    history_weight: float = 0.2
    random_split_prob: float = 0.7
    split_range: tuple[float, float] = (0.2, 0.7)
    curriculum_threshold: float = 3.0  # running EMD (bins) on periodic series to advance
    curriculum_rate: float = 1.0 / 5000  # difficulty gained per step while below threshold
    start_difficulty: float = 0.0
    max_difficulty: float = 1.0
    checkpoint_every: int = 250
    eval_every: int = 500
    eval_cases: int = 24
    threads: int | None = None
    easy_jitter: float = SyntheticSpec.easy_jitter
    jitter_ramp: float = SyntheticSpec.jitter_ramp
    easy_period_cols: tuple[int, ...] = SyntheticSpec.easy_period_cols
    easy_fraction: float = SyntheticSpec.easy_fraction
    other_family_fraction: float = SyntheticSpec.other_family_fraction
    init_from: str | None = None  # start from these weights (fresh optimiser and curriculum)
    max_memory_gb: float | None = None  # estimated step memory limit (None: $ATTNVIZ_MAX_MEMORY_GB or 4)
    model: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MODEL))

    def __post_init__(self) -> None:
        if self.start_difficulty > self.max_difficulty:
            raise ValueError(
                f"start_difficulty {self.start_difficulty} is above max_difficulty {self.max_difficulty}"
            )
        self.synthetic_spec(SyntheticSpec.col_width)  # refuses an impossible batch mix now, not mid-run

    def synthetic_spec(self, col_width: int) -> SyntheticSpec:
        """The generator's ranges for a model whose patches are ``col_width`` image columns wide."""
        return SyntheticSpec(
            col_width=col_width,
            easy_jitter=self.easy_jitter,
            jitter_ramp=self.jitter_ramp,
            easy_period_cols=tuple(self.easy_period_cols),
            easy_fraction=self.easy_fraction,
            other_family_fraction=self.other_family_fraction,
        )
