"""Axes-level drawers over the time axis (samples): the series and one query's attention.

Same contract as :mod:`attnviz.plotting.drawers`: an ``ax`` the caller owns, plain arrays plus
a :class:`~attnviz.grid.TokenGrid`, the ``ax`` back.  Bars span each token column's samples, so
a reader sees which stretch of the series a key column is.  Time is the caller's sample index
(history 0 .. L-1, forecast from L); columns are placed on it by
:meth:`~attnviz.grid.TokenGrid.col_start_sample`, so a forecaster that pads the history
(VisionTS) has its first column start before 0.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from matplotlib.axes import Axes

from ..grid import TokenGrid, check_reference_periods
from .checks import as_1d, check_grid, real
from .labels import fmt
from .references import draw_query_period_lines
from .theme import Theme, default_theme

__all__ = ["draw_attention_bars", "draw_query_column", "draw_series"]


def _boundary_line(ax: Axes, grid: TokenGrid, theme: Theme, label: str | None) -> None:
    line = ax.axvline(grid.boundary_sample, color=theme.boundary_color, ls="--", lw=1.2, label=label)
    line.set_gid("boundary")
    ax.grid(True, alpha=0.35, lw=0.6)


def draw_series(
    ax: Axes,
    history: Any,
    forecast: Any,
    grid: TokenGrid,
    *,
    truth: Any = None,
    forecast_mae: float | None = None,
    theme: Theme | None = None,
) -> Axes:
    """History and forecast over time (samples), the truth under the forecast when given.

    forecast_mae: the forecast's error against ``truth`` as the caller computed it; it goes
    into the forecast's legend entry (only together with ``truth``, which it was measured on)."""
    theme = theme or default_theme()
    grid = check_grid(grid)
    hist = as_1d(history, "history")
    fc = as_1d(forecast, "forecast") if forecast is not None else np.zeros(0)
    actual = None if truth is None else as_1d(truth, "truth")
    if actual is not None and actual.size != fc.size:
        raise ValueError(f"truth must have as many values as the forecast ({fc.size}), got {actual.size}")
    if forecast_mae is not None and actual is None:
        raise ValueError("forecast_mae was given without truth; pass the truth it was measured against")
    error = None if forecast_mae is None else real(forecast_mae, "forecast_mae")
    pal = theme.palette
    n = hist.size
    (h_line,) = ax.plot(np.arange(n), hist, color=pal[0], lw=1.2, label="history")
    h_line.set_gid("history")
    if fc.size:
        x_fc = np.arange(n, n + fc.size)
        label = "forecast"
        if actual is not None:
            (t_line,) = ax.plot(x_fc, actual, color="0.45", lw=1.0, ls=":", label="truth")
            t_line.set_gid("truth")
        if error is not None:
            label = f"forecast (MAE {fmt(error)})"
        (f_line,) = ax.plot(x_fc, fc, color=pal[1], lw=1.2, label=label)
        f_line.set_gid("forecast")
    _boundary_line(ax, grid, theme, "history | forecast")
    ax.set_ylabel("value")
    ax.set_xlim(min(0.0, grid.sample_offset), max(float(grid.col_start_sample(grid.cols)), n + fc.size))
    ax.set_gid("series_axes")
    return ax


def draw_query_column(ax: Axes, grid: TokenGrid, query_col: int, *, theme: Theme | None = None, label: bool = True) -> Any:
    """Shade the samples of one query column; returns the span."""
    theme = theme or default_theme()
    span = ax.axvspan(
        float(grid.col_start_sample(query_col)), float(grid.col_start_sample(query_col + 1)),
        color=theme.palette[3], alpha=0.18, lw=0,
        label=f"query column {query_col}" if label else None,
    )
    span.set_gid("query_column")
    return span


def draw_attention_bars(
    ax: Axes,
    attention_row: Any,
    grid: TokenGrid,
    query_col: int,
    *,
    reference_periods: Iterable[float] = (),
    theme: Theme | None = None,
) -> Axes:
    """The attention one query column sends to every key column, as bars spanning each
    column's samples (history blue, forecast orange); reference periods as lines one, two ...
    periods back from the query."""
    theme = theme or default_theme()
    grid = check_grid(grid)
    row = as_1d(attention_row, "attention_row")
    if row.size != grid.cols:
        raise ValueError(f"attention_row must have {grid.cols} values (one per key column), got {row.size}")
    if isinstance(query_col, bool) or query_col is None or not (0 <= int(query_col) < grid.cols):
        raise ValueError(f"query_col must be a column in [0, {grid.cols}), got {query_col!r}")
    q, pal = int(query_col), theme.palette
    reference = np.asarray(check_reference_periods(reference_periods, grid), dtype=float)
    past = np.arange(grid.cols) < grid.history_boundary
    bars = ax.bar(
        grid.col_start_sample(np.arange(grid.cols)), np.nan_to_num(row), width=grid.samples_per_col, align="edge",
        color=[pal[0] if p else pal[1] for p in past], alpha=0.85, edgecolor="white", linewidth=0.3,
    )
    for patch in bars.patches:
        patch.set_gid("attention_bars")
    _boundary_line(ax, grid, theme, None)
    draw_query_column(ax, grid, q, theme=theme, label=False)
    centre, start = float(grid.col_center_sample(q)), float(grid.col_start_sample(0))
    if draw_query_period_lines(ax, centre, reference, theme, lo=start):
        ax.legend(loc="upper left", fontsize="x-small")
    ax.set_ylabel(f"attention from\nquery col {q}")
    ax.set_xlabel("time (samples)")
    ax.set_ylim(bottom=0)
    ax.set_gid("attention_axes")
    return ax
