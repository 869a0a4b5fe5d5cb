"""VisionTS and VisionTS++ (Chen et al., ICML 2025; ``pip install attnviz[visionts]``).

Importing this package does not import visionts; making a forecaster does.
"""
from .forecaster import VisionTSForecast, VisionTSForecaster, import_visionts, untrained_reason
from .geometry import FoldedGrid, padding_sources, resize_weights
from .tiny import tiny_visionts

__all__ = [
    "FoldedGrid",
    "VisionTSForecast",
    "VisionTSForecaster",
    "import_visionts",
    "padding_sources",
    "resize_weights",
    "tiny_visionts",
    "untrained_reason",
]
