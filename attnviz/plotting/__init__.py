"""Publication-quality figures of time-to-time attention, in layers like seaborn.

* :mod:`.theme` -- the shared look (:data:`STYLE`), :class:`AttnvizFigure`, saving;
* :mod:`.scale` -- attention values -> colours (:class:`ColorScale`);
* :mod:`.labels` -- peak labels that never overlap, number formats;
* :mod:`.references` -- which period lines a figure may show (only the caller's reference
  periods, else a head's detected fundamental, else none);
* :mod:`.drawers`, :mod:`.series` -- axes-level drawers: ``draw_*(ax, arrays, grid, ...)``;
* :mod:`.layouts` -- figure-level layouts built from the drawers;
* :mod:`.results` -- plots of an :class:`attnviz.analysis.AnalysisResult`;
* :class:`Plotter` -- the notebook entry point holding one look for all of them.
"""

from .drawers import (
    draw_lag_curve,
    draw_lag_curves,
    draw_period_sweep,
    draw_score_heatmap,
    draw_time_map,
    outline_segments,
)
from .plotter import Plotter
from .results import head_filename
from .scale import ColorScale
from .series import draw_attention_bars, draw_query_column, draw_series
from .theme import STYLE, AttnvizFigure, Theme

__all__ = [
    "STYLE",
    "AttnvizFigure",
    "ColorScale",
    "Plotter",
    "Theme",
    "draw_attention_bars",
    "draw_lag_curve",
    "draw_lag_curves",
    "draw_period_sweep",
    "draw_query_column",
    "draw_score_heatmap",
    "draw_series",
    "draw_time_map",
    "head_filename",
    "outline_segments",
]
