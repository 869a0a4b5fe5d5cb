"""Training attnviz's own small ViTime on synthetic RealTS-like series."""
from .synthetic import SyntheticSeries, SyntheticSpec
from .trainer import DEFAULT_MODEL, TrainConfig, emd_loss, export_checkpoint, train

__all__ = ["DEFAULT_MODEL", "SyntheticSeries", "SyntheticSpec", "TrainConfig", "emd_loss", "export_checkpoint", "train"]
