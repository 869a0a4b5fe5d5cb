"""attnviz: see what ViT-style time-series forecasters (ViTime, VisionTS) look at.

Public names are imported lazily so that ``import attnviz`` (and the CLI's ``--help``) stays
fast; torch and timm load on first use.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "TokenGrid": "attnviz.grid",
    "ViTimeForecaster": "attnviz.forecasters.vitime",
    "ViTimeConfig": "attnviz.forecasters.vitime",
    "Forecast": "attnviz.forecasters.vitime",
    "CheckpointError": "attnviz.forecasters.vitime",
    "convert_upstream": "attnviz.forecasters.vitime",
    "VisionTSForecaster": "attnviz.forecasters.visionts",
    "FoldedGrid": "attnviz.forecasters.visionts",
    "AttentionRollout": "attnviz.capture",
    "MultiHeadAttentionRollout": "attnviz.analysis",
    "AnalysisResult": "attnviz.analysis",
    "RankingCaveatWarning": "attnviz.ranking",
    "HeadAblator": "attnviz.ablation",
    "Plotter": "attnviz.plotting",
    "ReportWriter": "attnviz.report",
    "write_report": "attnviz.report",
    "load_forecaster": "attnviz.weights",
    "default_weights_path": "attnviz.weights",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'attnviz' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
