"""Axes-level drawers: each draws one view onto an ``ax`` the caller owns and returns it.

Like seaborn's ``heatmap(data, ax=...)``: plain arrays plus a
:class:`~attnviz.grid.TokenGrid` in, artists on ``ax`` out, nothing about experiments or
analysis results.  The layouts (:mod:`attnviz.plotting.layouts`) compose them into figures;
notebooks can put them into their own.  Drawers use the current rcParams: call them inside
``Theme.rc_context()`` for the attnviz look.

Heat-map coordinates are in token columns with cell ``j`` spanning ``[j, j + 1)``, so a column
coordinate ``x`` is sample ``grid.col_start_sample(x)`` (``sample_offset + x * samples_per_col``)
and the history/forecast boundary sits at ``grid.history_boundary``.  Artists carry stable ``gid``\\ s for programmatic checks:
``"time_map"``, ``"top_outline"``, ``"boundary"``, ``"lag_curve"``, ``"peaks"``,
``"peak_label"``, ``"reference_period"``, ``"reference_period_band"``, ``"detected_period"``,
``"score_grid"``, ``"best_head"``, ``"history"``, ``"truth"``, ``"forecast"``,
``"attention_bars"``, ``"query_column"``, ``"sweep_points"``, ``"sweep_missing"``,
``"identity"``, ``"resolution_band"``; axes carry gids such as ``"map_axes"``, ``"lag_axes"``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, MaxNLocator

from ..grid import TokenGrid, check_reference_periods
from .checks import as_1d, as_float_array, check_curve, check_grid, check_map, finite_values, layer_labels, optional_period
from .labels import add_peak_labels, fmt, nice_col_step, period_label
from .references import draw_period_lines, period_lines_to_draw
from .scale import ColorScale
from .theme import Theme, default_theme

__all__ = [
    "LEGEND_BESIDE_MIN_INCHES",
    "best_cell",
    "draw_lag_curve",
    "draw_lag_curves",
    "draw_period_sweep",
    "draw_score_heatmap",
    "draw_time_map",
    "outline_segments",
]

#: A lag panel at least this wide (inches) gets its legend beside it rather than inside.
LEGEND_BESIDE_MIN_INCHES = 3.5


def _samples_axis(ax: Axes, where: str, functions: Any, nbins: int, **locator: Any) -> Any:
    """A secondary axis in other units (samples <-> columns), with a round-number locator."""
    sec = ax.secondary_xaxis(where, functions=functions) if where == "top" else ax.secondary_yaxis(where, functions=functions)
    axis = sec.xaxis if where == "top" else sec.yaxis
    axis.set_major_locator(MaxNLocator(nbins=nbins, **locator))
    return sec


def outline_segments(mask: np.ndarray) -> np.ndarray:
    """Unit edges (in cell coordinates, cell (i, j) = [j, j+1) x [i, i+1)) around a boolean mask.

    Returns an array (n, 2, 2) of segments ``[[x0, y0], [x1, y1]]`` tracing the boundary between
    True and False cells (and the map edge), suitable for a ``LineCollection``.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    padded = np.pad(m, 1, constant_values=False)
    h = padded[1:, 1:-1] != padded[:-1, 1:-1]  # horizontal edges at y = i: (rows + 1, cols)
    hy, hx = np.nonzero(h)
    v = padded[1:-1, 1:] != padded[1:-1, :-1]  # vertical edges at x = j: (rows, cols + 1)
    vy, vx = np.nonzero(v)
    segs_h = np.stack([np.stack([hx, hy], 1), np.stack([hx + 1, hy], 1)], 1)
    segs_v = np.stack([np.stack([vx, vy], 1), np.stack([vx, vy + 1], 1)], 1)
    return np.concatenate([segs_h, segs_v]).astype(float).reshape(-1, 2, 2)


# ----------------------------------------------------------------------------- time map


def draw_time_map(
    ax: Axes,
    time_map: Any,
    grid: TokenGrid,
    *,
    theme: Theme | None = None,
    scale: ColorScale | None = None,
    secondary: bool = True,
    labels: bool = True,
    legend: bool = True,
) -> AxesImage:
    """A (cols, cols) time map as a heat map (query rows x key columns); returns the image.

    Draws the history/forecast boundary on both axes, outlines the top cells and, with
    ``secondary``, adds axes in samples on the top and right."""
    theme = theme or default_theme()
    scale = scale or ColorScale()
    grid = check_grid(grid)
    tmap = check_map(time_map, grid)
    cols = grid.cols
    image = ax.imshow(
        tmap,
        cmap=theme.cmap,
        norm=scale.norm(tmap),
        extent=(0, cols, cols, 0),
        origin="upper",
        interpolation="nearest",
        aspect="equal",
    )
    image.set_gid("time_map")
    ax.set_gid("map_axes")
    ax.set_xlim(0, cols)
    ax.set_ylim(cols, 0)
    ticks = np.arange(0, cols + 1, nice_col_step(cols))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.grid(False)
    boundary = float(grid.history_boundary)
    line_v = ax.axvline(boundary, color=theme.boundary_color, lw=1.3, ls="--", label="history | forecast")
    line_h = ax.axhline(boundary, color=theme.boundary_color, lw=1.3, ls="--")
    line_v.set_gid("boundary")
    line_h.set_gid("boundary")
    mask = scale.top_mask(tmap)
    if mask is not None and mask.any():
        outline = LineCollection(
            outline_segments(mask), colors=theme.outline_color, linewidths=1.4, label=scale.top_label(), zorder=4
        )
        outline.set_gid("top_outline")
        ax.add_collection(outline)
    unseen = ~np.isfinite(tmap)
    if unseen.any():  # columns this layer never saw (VisionTS' encoder): hatched, not blank
        rows_, cols_ = np.nonzero(unseen)
        hatch = PatchCollection(
            [Rectangle((c, r), 1, 1) for r, c in zip(rows_, cols_)], facecolor="none",
            edgecolor=theme.boundary_color, hatch="///", linewidth=0, zorder=3,
        )
        hatch.set_gid("unseen")
        ax.add_collection(hatch)
        ax.add_patch(Rectangle((0, 0), 0, 0, facecolor="none", edgecolor=theme.boundary_color, hatch="///",
                               label="not seen by this layer"))  # the legend's entry
    if labels:
        ax.set_xlabel("key column")
        ax.set_ylabel("query column")
    if secondary:
        to_samples = (grid.col_start_sample, grid.sample_to_col)
        top = _samples_axis(ax, "top", to_samples, 5, steps=[1, 2, 2.5, 5, 10])
        right = _samples_axis(ax, "right", to_samples, 5, steps=[1, 2, 2.5, 5, 10])
        top.set_gid("samples_axis")
        right.set_gid("samples_axis")
        if labels:
            top.set_xlabel("key time (samples)")
            right.set_ylabel("query time (samples)")
    if legend:
        ax.legend(loc="lower left", fontsize="x-small", frameon=True, framealpha=0.85, handlelength=1.6)
    return image


# ----------------------------------------------------------------------------- lag curve


def draw_lag_curve(
    ax: Axes,
    lags: Any,
    values: Any,
    grid: TokenGrid | None = None,
    *,
    peaks_samples: Iterable[float] = (),
    reference_periods: Iterable[float] = (),
    detected_period: float | None = None,
    theme: Theme | None = None,
    annotate: bool = True,
    secondary: bool = True,
    labels: bool = True,
    legend: bool = True,
    resolution_note: bool = True,
    ylabel: str = "mean attention at lag",
) -> Axes:
    """Lag curve (x in samples) with peak markers, period lines and the column resolution.

    Period lines follow :func:`~attnviz.plotting.references.period_lines_to_draw`: the
    caller's ``reference_periods`` when given, else ``detected_period`` (the head's detected
    fundamental; None/NaN draws nothing).  ``resolution_note`` writes "1 column = N samples"
    in the panel when no column axis label says it; figures that state it once for all panels
    turn it off."""
    theme = theme or default_theme()
    lags, values = check_curve(lags, values)
    peaks = finite_values(peaks_samples, "peaks_samples")
    reference = np.asarray(check_reference_periods(reference_periods, grid), dtype=float)
    detected = optional_period(detected_period, "detected_period")
    pal = theme.palette
    ax.set_gid("lag_axes")
    (curve,) = ax.plot(lags, values, color=pal[0], lw=1.5, marker="o", ms=2.2, label="lag curve", zorder=3)
    curve.set_gid("lag_curve")
    ax.margins(y=0.09)  # before the label headroom, which reads the resulting limits
    lo, hi = float(lags.min()), float(lags.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    ax.set_xlim(min(lo, 0.0) if lo >= 0 else lo - 0.02 * span, hi + 0.02 * span)
    spc = grid.samples_per_col if grid is not None else None
    periods, kind = period_lines_to_draw(reference, detected)
    draw_period_lines(ax, periods, lo, hi, theme, kind=kind, band_half=0.5 * spc if spc else None)
    finite = np.isfinite(values)
    if peaks.size and finite.any():
        heights = np.interp(peaks, lags[finite], values[finite])
        (marks,) = ax.plot(
            peaks, heights, ls="none", marker="v", ms=7, color=pal[3], mec="white", mew=0.6,
            label="detected peaks", zorder=5,
        )
        marks.set_gid("peaks")
        if annotate:
            add_peak_labels(ax, peaks, heights, pal[3])
    ax.grid(True, axis="both", alpha=0.35, lw=0.6)
    if labels:
        ax.set_xlabel("lag (samples)")
        ax.set_ylabel(ylabel)
    if spc:
        _column_marks(ax, lo, hi, spc, note=resolution_note and not (secondary and labels), secondary=secondary, labels=labels)
    if legend:
        # Beside the panel, not on it: inside, it hid the very peaks it explains.  A
        # narrow panel has no room beside it (the layout would collapse): best spot inside.
        width_in = ax.get_position().width * ax.figure.get_figwidth()
        if width_in >= LEGEND_BESIDE_MIN_INCHES:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize="x-small")
        else:
            ax.legend(loc="best", fontsize="x-small", frameon=True, framealpha=0.85, edgecolor="none")
    return ax


def _column_marks(ax: Axes, lo: float, hi: float, spc: float, *, note: bool, secondary: bool, labels: bool) -> None:
    """Show a lag panel's column resolution: minor ticks per column, a column axis or a note."""
    if note:
        ax.text(
            0.99, 0.98, f"resolution: 1 column = {fmt(spc)} samples", transform=ax.transAxes,
            ha="right", va="top", fontsize="x-small", color="0.3",
        )
    if (hi - min(lo, 0.0)) / spc <= 120:
        ax.xaxis.set_minor_locator(FixedLocator(np.arange(math.floor(lo / spc), math.ceil(hi / spc) + 1) * spc))
        ax.tick_params(axis="x", which="minor", length=2.5)
    if secondary:
        sec = _samples_axis(ax, "top", (lambda s: np.asarray(s) / spc, lambda c: np.asarray(c) * spc), 6, integer=True)
        sec.set_gid("columns_axis")
        if labels:
            sec.set_xlabel(f"lag (columns of {fmt(spc)} samples)")


def draw_lag_curves(
    ax: Axes,
    curves: Iterable[tuple[str, Any, Any]],
    *,
    reference_periods: Iterable[float] = (),
    theme: Theme | None = None,
    ylabel: str = "mean attention at lag",
) -> Axes:
    """Several labelled lag curves (label, lags in samples, values) overlaid on one axis, e.g.
    one head across conditions (the same signal at falling SNR)."""
    theme = theme or default_theme()
    items = [(str(label), *check_curve(lags, values)) for label, lags, values in curves]
    if not items:
        raise ValueError("lag_curves needs at least one (label, lags, values) curve")
    reference = np.asarray(check_reference_periods(reference_periods), dtype=float)
    colors = sns.color_palette("rocket", n_colors=len(items) + 2)[1:-1]
    for (label, lags, values), color in zip(items, colors):
        (line,) = ax.plot(lags, values, color=color, lw=1.4, label=label)
        line.set_gid("lag_curve")
    hi = max(float(lags.max()) for _, lags, _ in items)
    draw_period_lines(ax, reference, 0.0, hi, theme)
    ax.set_xlabel("lag (samples)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.35, lw=0.6)
    ax.legend(fontsize="x-small", ncol=2)
    return ax


# ----------------------------------------------------------------------------- score grid


def best_cell(scores: np.ndarray) -> tuple[int, int] | None:
    """(row, col) of the highest finite score, None when there is none."""
    if not np.isfinite(scores).any():
        return None
    flat = np.nanargmax(np.where(np.isfinite(scores), scores, -np.inf))
    return divmod(int(flat), scores.shape[1])


def draw_score_heatmap(
    ax: Axes,
    scores: Any,
    layer_names: Sequence[str] | None = None,
    periods: Any = None,
    *,
    best: tuple[int, int] | None = None,
    annotate: bool = True,
    theme: Theme | None = None,
) -> Axes:
    """(layers, heads) scores as an annotated heat map with its colour bar; NaN cells blank.

    periods: optional (layers, heads) detected periods (samples) printed under each score.
    best: the (layer, head) cell to outline; default the highest finite score."""
    theme = theme or default_theme()
    s = as_float_array(scores)
    if s.ndim != 2 or 0 in s.shape:
        raise ValueError(f"scores must be a non-empty (layers, heads) array, got shape {s.shape}")
    n_layers, n_heads = s.shape
    names = layer_labels(layer_names, n_layers)
    per = None
    if periods is not None:
        per = as_float_array(periods)
        if per.shape != s.shape:
            raise ValueError(f"periods shape {per.shape} does not match scores shape {s.shape}")
    annot = np.full(s.shape, "", dtype=object)
    for i, j in zip(*np.nonzero(np.isfinite(s))):
        annot[i, j] = f"{s[i, j]:.2f}"
        if per is not None and np.isfinite(per[i, j]):
            annot[i, j] += f"\n{period_label(per[i, j])}"
    finite = s[np.isfinite(s)]
    vmin = float(min(0.0, finite.min())) if finite.size else 0.0
    vmax = float(max(finite.max(), vmin + 1e-12)) if finite.size else 1.0
    n_axes = len(ax.figure.axes)
    sns.heatmap(
        s, ax=ax, cmap=theme.cmap, vmin=vmin, vmax=vmax, mask=~np.isfinite(s),
        annot=annot if annotate else False, fmt="", annot_kws={"fontsize": 6.5 if per is not None else 7.5},
        linewidths=0.4, linecolor="white", square=False,
        cbar_kws={"label": "periodicity score", "shrink": 0.85, "pad": 0.015},
        xticklabels=list(range(n_heads)), yticklabels=names,
    )
    ax.collections[0].set_gid("score_grid")
    ax.set_gid("score_axes")
    if len(ax.figure.axes) > n_axes:
        ax.figure.axes[-1].set_gid("colorbar")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.tick_params(axis="y", labelsize="small", rotation=0)
    ax.tick_params(axis="x", labelsize="small", rotation=0)
    best = best_cell(s) if best is None else best
    if best is not None:
        rect = Rectangle(
            (best[1], best[0]), 1, 1, fill=False, ec=theme.outline_color, lw=2.2, zorder=5, clip_on=False
        )
        rect.set_gid("best_head")
        ax.add_patch(rect)
    return ax


# ----------------------------------------------------------------------------- period sweep


def draw_period_sweep(ax: Axes, true_periods: Any, detected_periods: Any, resolution_samples: Any, *, theme: Theme | None = None) -> Axes:
    """Detected vs true periods with y = x and a ±one-column band.

    resolution_samples: one column in samples, a scalar or one value per point.  NaN
    detections are drawn as crosses on the lower edge ("not found")."""
    theme = theme or default_theme()
    true = as_1d(true_periods, "true_periods")
    det = as_1d(detected_periods, "detected_periods")
    if true.shape != det.shape:
        raise ValueError(f"true_periods ({true.size}) and detected_periods ({det.size}) must have the same length")
    if true.size == 0 or not np.isfinite(true).all():
        raise ValueError("true_periods must be non-empty and finite")
    res_arr = as_1d(resolution_samples, "resolution_samples")
    if res_arr.size == 1:
        res_arr = np.full(true.shape, float(res_arr[0]))
    if res_arr.shape != true.shape:
        raise ValueError(f"resolution_samples must be a scalar or have {true.size} values, got {res_arr.size}")
    if not (np.isfinite(res_arr).all() and (res_arr > 0).all()):
        raise ValueError(f"resolution_samples must be positive, got {res_arr.tolist()}")
    pal = theme.palette
    order = np.argsort(true)
    xs = true[order]
    pad = 0.05 * (xs.max() - xs.min() if xs.max() > xs.min() else max(xs.max(), 1.0))
    x_line = np.array([xs.min() - pad, xs.max() + pad])
    band = ax.fill_between(xs, xs - res_arr[order], xs + res_arr[order], color=pal[0], alpha=0.15, lw=0, label="±1 column")
    band.set_gid("resolution_band")
    (ident,) = ax.plot(x_line, x_line, color="0.25", lw=1.0, ls="--", label="y = x")
    ident.set_gid("identity")
    found = np.isfinite(det)
    inside = found & (np.abs(det - true) <= res_arr)
    outside = found & ~inside
    groups = [(inside, "o", pal[0], 26, f"within ±1 column ({int(inside.sum())}/{true.size})")]
    if outside.any():
        groups.append((outside, "D", pal[3], 28, f"off by > 1 column ({int(outside.sum())})"))
    for which, marker, color, size, label in groups:
        points = ax.scatter(
            true[which], det[which], s=size, marker=marker, color=color, edgecolor="white", lw=0.5, zorder=4, label=label
        )
        points.set_gid("sweep_points")
    if (~found).any():
        lo_y = min(x_line[0], np.nanmin(det) if found.any() else x_line[0])
        miss = ax.scatter(
            true[~found], np.full((~found).sum(), lo_y), marker="x", s=30, color="0.35", zorder=4,
            label=f"not found ({int((~found).sum())})", clip_on=False,
        )
        miss.set_gid("sweep_missing")
    ax.set_xlabel("true period (samples)")
    ax.set_ylabel("detected period (samples)")
    ax.grid(True, alpha=0.35, lw=0.6)
    ax.legend(loc="upper left", fontsize="x-small")
    ax.set_gid("sweep_axes")
    return ax
