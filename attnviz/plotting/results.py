"""Plots of an :class:`attnviz.analysis.AnalysisResult`: one head, one layer, the ranking, the series.

Every layer/head argument goes through the result's own lookup (``layer_index``,
``layer_name``, ``head_index``, ``heads_of``), so a figure names layers and reports bad
indices exactly as the rest of attnviz does; the data comes from the result's own views
(``time_map``, ``lag_curve``, ``periods``, ``ranked_heads``), so a figure shows what the
analysis computed and nothing else.  Reference periods are drawn only when the caller passes
them (see :mod:`attnviz.plotting.references`).
"""

from __future__ import annotations

import math
import numbers
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
from matplotlib.figure import Figure

from .labels import period_label
from .layouts import head_figure, overview_figure, score_heatmap, series_figure
from .scale import ColorScale
from .theme import Theme, check_folder, default_theme, save_figure

if TYPE_CHECKING:
    from ..analysis import AnalysisResult

__all__ = ["head_filename", "head_panel", "layer_overview", "save_head", "score_grid", "series_panel"]


def head_filename(experiment: str, layer_index: int, head: int) -> str:
    """``experiment_{experiment}_layer_{layer_index}_head_{head}_correlations.png``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(experiment)).strip("_") or "run"
    return f"experiment_{safe}_layer_{int(layer_index)}_head_{int(head)}_correlations.png"


def _checked(res: Any) -> AnalysisResult:
    """``res`` if it is an AnalysisResult (the plots read its lookups, nothing duck-typed)."""
    from ..analysis import AnalysisResult

    if not isinstance(res, AnalysisResult):
        raise TypeError(f"res must be an attnviz.analysis.AnalysisResult, got {type(res).__name__}")
    return res


def head_panel(
    res: AnalysisResult,
    layer: int | str,
    head: int,
    reference_periods: Iterable[float] = (),
    *,
    experiment: str = "",
    direction: str = "past",
    region: str = "all",
    normalize: bool = False,
    theme: Theme | None = None,
    scale: ColorScale | None = None,
    figsize: tuple[float, float] = (11.5, 4.8),
) -> Figure:
    """One head of ``res``: its time map and its lag curve with the detected peaks.

    The lag panel marks ``reference_periods`` when given, else the head's detected
    fundamental (``res.periods(...).fundamental_samples``) and its multiples."""
    res = _checked(res)
    li, h = res.head_index(layer, head)
    name = res.layer_name(li)
    curve = res.lag_curve(li, h, direction=direction, region=region, normalize=normalize)
    estimate = res.periods(li, h, direction=direction, region=region)
    fundamental = float(estimate.fundamental_samples)
    title = f"{name} (layer {li}), head {h}"
    if experiment:
        title = f"{experiment}: {title}"
    if math.isfinite(fundamental):
        title += f" — fundamental ≈ {period_label(fundamental)} samples"
    return head_figure(
        res.time_map(li, h),
        res.grid,
        curve.lags,
        curve.values,
        estimate.peaks,
        reference_periods,
        title,
        detected_period=fundamental,
        theme=theme,
        scale=scale,
        figsize=figsize,
        ylabel="attention / chance" if normalize else "mean attention at lag",
    )


def save_head(
    res: AnalysisResult,
    layer: int | str,
    head: int,
    out_dir: str | Path,
    experiment: str = "run",
    reference_periods: Iterable[float] = (),
    *,
    theme: Theme | None = None,
    **panel_options: Any,
) -> Path:
    """Render :func:`head_panel` into the existing folder ``out_dir`` as
    ``experiment_{experiment}_layer_{layer_index}_head_{head}_correlations.png``.

    panel_options: ``direction``, ``region``, ``normalize``, ``scale``, ``figsize`` of
    :func:`head_panel`."""
    li, h = _checked(res).head_index(layer, head)
    folder = check_folder(out_dir)  # before drawing: a wrong folder fails fast
    fig = head_panel(res, li, h, reference_periods, experiment=experiment, theme=theme, **panel_options)
    return save_figure(fig, folder / head_filename(experiment, li, h), theme or default_theme())


def layer_overview(
    res: AnalysisResult,
    layer: int | str,
    reference_periods: Iterable[float] = (),
    *,
    lag_curves: bool = True,
    max_cols: int = 4,
    panel_size: float = 2.4,
    theme: Theme | None = None,
    scale: ColorScale | None = None,
) -> Figure:
    """All heads of one layer of ``res`` as small multiples (maps + mini lag curves with the
    detected peaks; each head's detected fundamental in its title)."""
    res = _checked(res)
    li = res.layer_index(layer)
    name = res.layer_name(li)
    heads = res.heads_of(li)
    maps = np.stack([res.time_map(li, h) for h in range(heads)])
    curves = peaks = None
    titles = [f"head {h}" for h in range(heads)]
    if lag_curves:
        estimates = [res.periods(li, h) for h in range(heads)]
        curves = [tuple(res.lag_curve(li, h)) for h in range(heads)]
        peaks = [e.peaks for e in estimates]
        titles = [
            f"head {h} · P≈{period_label(e.fundamental_samples)}" if e.found else f"head {h}"
            for h, e in enumerate(estimates)
        ]
    return overview_figure(
        maps,
        res.grid,
        curves,
        peaks,
        reference_periods,
        titles,
        title=f"{name} (layer {li}): all {heads} heads",
        theme=theme,
        scale=scale,
        max_cols=max_cols,
        panel_size=panel_size,
    )


def score_grid(res: AnalysisResult, **kwargs: Any) -> Figure:
    """Layer x head grid of ``res.ranked_heads`` scores (best outlined, detected periods under
    the scores, the ranking's caveats under the title).  Keywords go to ``score_heatmap``."""
    res = _checked(res)
    names = list(res.layer_names)
    width = max(res.heads_of(li) for li in range(len(names)))
    scores = np.full((len(names), width), np.nan)
    periods = np.full((len(names), width), np.nan)
    ranked = res.ranked_heads
    for entry in ranked:
        li, h = res.head_index(entry.layer, entry.head)
        scores[li, h] = entry.score
        periods[li, h] = entry.period_samples
    if ranked:
        kwargs.setdefault("best", res.head_index(ranked[0].layer, ranked[0].head))
    kwargs.setdefault("caveat", "; ".join(c.short for c in res.series_periodicity.caveats()))
    return score_heatmap(scores, names, periods, **kwargs)


def series_panel(
    res: AnalysisResult,
    forecast_col: int | None = None,
    layer: int | str | None = None,
    head: int | None = None,
    reference_periods: Iterable[float] = (),
    *,
    truth: Any = None,
    forecast_mae: float | None = None,
    theme: Theme | None = None,
    figsize: tuple[float, float] = (10.0, 5.2),
) -> Figure:
    """History + forecast of ``res`` and the attention of one forecast query column.

    forecast_col: query column (default: middle of the forecast region).  layer/head: default
    the best-ranked head when neither is given, else layer 0 / head 0 for the missing one.
    truth, forecast_mae: the real continuation and the forecast's error on it (the caller
    computes it), see ``series_figure``.
    """
    res = _checked(res)
    grid = res.grid
    if layer is None and head is None and res.ranked_heads:
        layer, head = res.ranked_heads[0].layer, res.ranked_heads[0].head
    li, h = res.head_index(0 if layer is None else layer, 0 if head is None else head)
    if forecast_col is None:
        forecast_col = min(grid.cols - 1, grid.history_cols + max(grid.forecast_cols, 1) // 2)
    if isinstance(forecast_col, bool) or not isinstance(forecast_col, numbers.Integral) or not 0 <= forecast_col < grid.cols:
        raise ValueError(f"forecast_col must be an integer in [0, {grid.cols}), got {forecast_col!r}")
    col = int(forecast_col)
    return series_figure(
        res.series,
        res.forecast.forecast,
        grid,
        res.time_map(li, h)[col],
        col,
        f"{res.layer_name(li)} (layer {li}), head {h}: query column {col}",
        reference_periods=reference_periods,
        truth=truth,
        forecast_mae=forecast_mae,
        theme=theme,
        figsize=figsize,
    )
