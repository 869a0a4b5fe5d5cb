"""Figure-level layouts, built only from the axes-level drawers.

Each function makes one :class:`~attnviz.plotting.theme.AttnvizFigure` inside the theme's rc
context, places panels, calls drawers on them and adds what belongs to the whole figure
(colour bars, titles).  Inputs are plain arrays and a :class:`~attnviz.grid.TokenGrid`; plots
of an analysis result live in :mod:`attnviz.plotting.results`.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from functools import wraps
from typing import Any, Callable, Iterable, Sequence, TypeVar

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from ..grid import TokenGrid, check_reference_periods
from .checks import as_float_array, check_curve, check_grid, check_map, layer_labels
from .drawers import (
    best_cell,
    draw_lag_curve,
    draw_lag_curves,
    draw_period_sweep,
    draw_score_heatmap,
    draw_time_map,
)
from .labels import fmt, pct
from .scale import ColorScale, extend_of
from .series import draw_attention_bars, draw_query_column, draw_series
from .theme import Theme, default_theme, new_figure

__all__ = [
    "head_figure",
    "lag_curves_figure",
    "overview_figure",
    "period_sweep_figure",
    "score_heatmap",
    "series_figure",
]

F = TypeVar("F", bound=Callable[..., Figure])

#: A small-multiples lag panel: the curve, peak markers and period lines only; no labels,
#: legend or column axis (the figure's title states the column resolution once for all).
MINI_LAG_PANEL: dict[str, bool] = {
    "annotate": False,
    "secondary": False,
    "labels": False,
    "legend": False,
    "resolution_note": False,
}


def _themed(layout: F) -> F:
    """Run a layout inside its theme's rc context (the default theme when none is given);
    its signature shows ``theme=None`` as callers may pass."""

    @wraps(layout)
    def wrapper(*args: Any, theme: Theme | None = None, **kwargs: Any) -> Figure:
        theme = theme or default_theme()
        with theme.rc_context():
            return layout(*args, theme=theme, **kwargs)

    signature = inspect.signature(layout)
    params = [p.replace(default=None) if p.name == "theme" else p for p in signature.parameters.values()]
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _geometry_note(grid: TokenGrid) -> str:
    geometry = (
        f"L = {grid.history_length}, H = {grid.horizon}, {grid.cols} cols" if grid.history_length else f"{grid.cols} cols"
    )
    return f"samples_per_col = {fmt(grid.samples_per_col)} ({geometry})"


def _with_title(title: str, note: str) -> str:
    return f"{title}\n{note}" if title else note


@_themed
def head_figure(
    time_map: Any,
    grid: TokenGrid,
    lags: Any,
    values: Any,
    peaks_samples: Iterable[float] = (),
    reference_periods: Iterable[float] = (),
    title: str = "",
    *,
    detected_period: float | None = None,
    theme: Theme,
    scale: ColorScale | None = None,
    figsize: tuple[float, float] = (11.5, 4.8),
    ylabel: str = "mean attention at lag",
) -> Figure:
    """LEFT: the time-time map (query x key columns); RIGHT: the lag curve in samples, marking
    the caller's reference periods, else the detected fundamental (see ``draw_lag_curve``)."""
    scale = scale or ColorScale()
    grid = check_grid(grid)
    tmap = check_map(time_map, grid)
    lags, values = check_curve(lags, values)
    fig = new_figure(figsize, theme.dpi)
    ax_map, ax_lag = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.15]})
    image = draw_time_map(ax_map, tmap, grid, theme=theme, scale=scale)
    ax_map.set_title("time–time attention (query × key)", pad=8)
    cbar = fig.colorbar(image, ax=ax_map, shrink=0.9, pad=0.02, extend=extend_of(tmap, image.norm))
    cbar.set_label(scale.label())
    cbar.ax.set_gid("colorbar")
    draw_lag_curve(
        ax_lag,
        lags,
        values,
        grid,
        peaks_samples=peaks_samples,
        reference_periods=reference_periods,
        detected_period=detected_period,
        theme=theme,
        ylabel=ylabel,
    )
    ax_lag.set_title("attention vs lag", pad=8)
    fig.suptitle(_with_title(title, _geometry_note(grid)))
    return fig


@_themed
def overview_figure(
    time_maps: Any,
    grid: TokenGrid,
    curves: Sequence[tuple[Any, Any]] | None = None,
    peaks: Sequence[Iterable[float]] | None = None,
    reference_periods: Iterable[float] = (),
    head_titles: Sequence[str] | None = None,
    title: str = "",
    *,
    theme: Theme,
    scale: ColorScale | None = None,
    max_cols: int = 4,
    panel_size: float = 2.4,
) -> Figure:
    """Small multiples: one heat map per head (own percentile scale) and, when ``curves`` is
    given, a mini lag curve beneath each; period lines only for the caller's references."""
    scale = scale or ColorScale()
    grid = check_grid(grid)
    maps = as_float_array(time_maps)
    if maps.ndim != 3:
        raise ValueError(f"time_maps must have shape (heads, cols, cols), got {maps.shape}")
    heads = maps.shape[0]
    for h in range(heads):
        check_map(maps[h], grid, name=f"time_maps[{h}]")
    if curves is not None and len(curves) != heads:
        raise ValueError(f"curves must have one (lags, values) per head ({heads}), got {len(curves)}")
    if peaks is not None and len(peaks) != heads:
        raise ValueError(f"peaks must have one entry per head ({heads}), got {len(peaks)}")
    if head_titles is not None and len(head_titles) != heads:
        raise ValueError(f"head_titles must have {heads} entries, got {len(head_titles)}")
    reference = np.asarray(check_reference_periods(reference_periods, grid), dtype=float)
    ncols = max(1, min(int(max_cols), heads))
    nblocks = math.ceil(heads / ncols)
    rows_per = 2 if curves is not None else 1
    ratios = ([1.0, 0.5] if curves is not None else [1.0]) * nblocks
    fig = new_figure((panel_size * ncols + 0.9, panel_size * sum(ratios) + 0.6), theme.dpi)
    axes = np.atleast_2d(fig.subplots(nblocks * rows_per, ncols, gridspec_kw={"height_ratios": ratios}, squeeze=False))
    for h in range(nblocks * ncols):
        block, c = divmod(h, ncols)
        ax_map = axes[block * rows_per, c]
        ax_lag = axes[block * rows_per + 1, c] if curves is not None else None
        if h >= heads:
            ax_map.set_axis_off()
            if ax_lag is not None:
                ax_lag.set_axis_off()
            continue
        draw_time_map(ax_map, maps[h], grid, theme=theme, scale=scale, secondary=False, labels=False, legend=False)
        ax_map.tick_params(labelsize="x-small")
        ax_map.set_title(head_titles[h] if head_titles is not None else f"head {h}", fontsize="small")
        if c == 0:
            ax_map.set_ylabel("query col", fontsize="small")
        if block == nblocks - 1 or h + ncols >= heads:
            ax_map.set_xlabel("key col", fontsize="small")
        if ax_lag is not None and curves is not None:
            peaks_h = () if peaks is None else peaks[h]
            draw_lag_curve(
                ax_lag, *curves[h], grid, peaks_samples=peaks_h, reference_periods=reference, theme=theme, **MINI_LAG_PANEL
            )
            ax_lag.tick_params(labelsize="x-small")
            ax_lag.set_xlabel("lag (samples)", fontsize="x-small")
    mappable = mpl.cm.ScalarMappable(norm=scale.unit_norm(), cmap=theme.cmap)
    cbar = fig.colorbar(mappable, ax=axes[0::rows_per, :].ravel().tolist(), shrink=0.8, pad=0.01)
    cbar.set_ticks([0, 1])
    lo, hi = scale.percentiles
    cbar.set_ticklabels([f"p{pct(lo)}", f"p{pct(hi)}"])
    cbar.set_label("per-head scale" + (" (log)" if scale.log else ""), fontsize="small")
    cbar.ax.set_gid("colorbar")
    note = f"samples_per_col = {fmt(grid.samples_per_col)}; dashed: history | forecast"
    if reference.size:
        note += f"; dashed vertical: reference period {', '.join(fmt(p) for p in reference)}"
    fig.suptitle(_with_title(title, note))
    return fig


@_themed
def score_heatmap(
    scores: Any,
    layer_names: Sequence[str] | None = None,
    periods: Any = None,
    title: str = "periodicity score per head",
    *,
    theme: Theme,
    best: tuple[int, int] | None = None,
    figsize: tuple[float, float] | None = None,
    annotate: bool = True,
    caveat: str = "",
) -> Figure:
    """(layers, heads) score matrix as an annotated heat map; NaN cells are left blank.

    periods: optional (layers, heads) detected periods (samples) printed under each score.
    best: (layer, head) cell to outline; default the highest finite score.
    caveat: a warning line under the title, so a ranking that says little cannot be mistaken
    for one that says much.
    """
    s = as_float_array(scores)
    if s.ndim != 2 or 0 in s.shape:
        raise ValueError(f"scores must be a non-empty (layers, heads) array, got shape {s.shape}")
    n_layers, n_heads = s.shape
    names = layer_labels(layer_names, n_layers)
    if figsize is None:
        longest = max(len(n) for n in names)
        figsize = (min(2.0 + 0.07 * longest + 0.62 * n_heads, 22), min(1.3 + 0.42 * n_layers, 24))
    best = best_cell(s) if best is None else best
    fig = new_figure(figsize, theme.dpi)
    ax = fig.subplots()
    draw_score_heatmap(ax, s, names, periods, best=best, annotate=annotate, theme=theme)
    if best is not None:
        title += f" (best: {names[best[0]]}, head {best[1]})"
    subtitle = "cell: score" + (" / detected period (samples)" if periods is not None else "")
    if caveat:  # wrapped to the figure: a narrow grid (few heads) must not clip it
        subtitle += "\n" + textwrap.fill(f"note: {caveat}", max(30, int(8 * fig.get_figwidth())))
    ax.set_title(f"{title}\n{subtitle}", fontsize="medium")
    return fig


@_themed
def series_figure(
    history: Any,
    forecast: Any,
    grid: TokenGrid,
    attention_row: Any = None,
    query_col: int | None = None,
    title: str = "",
    *,
    theme: Theme,
    reference_periods: Iterable[float] = (),
    truth: Any = None,
    forecast_mae: float | None = None,
    figsize: tuple[float, float] = (10.0, 5.2),
) -> Figure:
    """History + forecast over time (samples) and, below, the attention one query column
    sends to every key column, drawn as bars spanning each column's samples.

    truth: the series' real continuation (as long as the forecast), drawn under the forecast.
    forecast_mae: the forecast's error against ``truth`` (the caller computes it), shown in
    the legend.  reference_periods: lines one, two ... periods back from the query column.
    """
    grid = check_grid(grid)
    with_attn = attention_row is not None
    fig = new_figure(figsize if with_attn else (figsize[0], figsize[1] * 0.55), theme.dpi)
    if with_attn:
        ax, ax_att = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.3, 1.0]})
    else:
        ax = fig.subplots()
    draw_series(ax, history, forecast, grid, truth=truth, forecast_mae=forecast_mae, theme=theme)
    if with_attn:
        draw_attention_bars(ax_att, attention_row, grid, query_col, reference_periods=reference_periods, theme=theme)
        draw_query_column(ax, grid, int(query_col), theme=theme)
    else:
        ax.set_xlabel("time (samples)")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize="x-small", ncols=5, borderaxespad=0.2)
    sub = f"samples_per_col = {fmt(grid.samples_per_col)}; bars span one token column each"
    fig.suptitle(_with_title(title, sub))
    return fig


@_themed
def period_sweep_figure(
    true_periods: Any,
    detected_periods: Any,
    resolution_samples: Any,
    title: str = "detected vs true period",
    *,
    theme: Theme,
    figsize: tuple[float, float] = (5.0, 4.6),
) -> Figure:
    """Scatter of detected vs true periods with y = x and a ±one-column band."""
    fig = new_figure(figsize, theme.dpi)
    ax = fig.subplots()
    draw_period_sweep(ax, true_periods, detected_periods, resolution_samples, theme=theme)
    ax.set_title(title)
    return fig


@_themed
def lag_curves_figure(
    curves: Iterable[tuple[str, Any, Any]],
    reference_periods: Iterable[float] = (),
    title: str = "lag curves",
    *,
    theme: Theme,
    figsize: tuple[float, float] = (7.0, 4.2),
    ylabel: str = "mean attention at lag",
) -> Figure:
    """Several labelled lag curves (label, lags in samples, values) on one axis."""
    fig = new_figure(figsize, theme.dpi)
    ax = fig.subplots()
    draw_lag_curves(ax, curves, reference_periods=reference_periods, theme=theme, ylabel=ylabel)
    ax.set_title(title)
    return fig
