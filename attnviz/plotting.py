"""Publication-quality figures of time-to-time attention: per-head panels, overviews, scores.

All figures share one look (:data:`STYLE`: seaborn "ticks" + "paper" context, the colour-blind
palette and the "rocket" colormap) applied through ``matplotlib.rc_context`` so that importing
this module never changes global rcParams.

Figures are plain :class:`matplotlib.figure.Figure` objects drawn on an Agg canvas and are *not*
registered with pyplot: nothing accumulates in ``plt.get_fignums()``, no GUI backend is needed,
and notebooks still display a returned figure.  :meth:`Plotter.save` writes a figure (format from
the suffix) and closes it (pyplot-managed figures handed in are closed through pyplot too).

Core methods take plain numpy arrays plus a :class:`~attnviz.grid.TokenGrid`; the ``res``-based
helpers read an analysis result with the attributes ``layer_names``, ``time_maps`` (layers,
heads, cols, cols), ``grid``, ``series``, ``forecast`` (``.forecast``/``.full``),
``lag_curve(layer, head, ...)``, ``periods(layer, head)`` and ``ranked_heads``.

Heat-map coordinates are in token columns with cell ``j`` spanning ``[j, j + 1)``, so a column
coordinate ``x`` is sample ``x * samples_per_col`` and the history/forecast boundary line sits at
``grid.history_boundary``.  Artists carry stable ``gid``\\ s for programmatic checks:
``"time_map"`` (the image), ``"top_outline"``, ``"boundary"``, ``"lag_curve"``, ``"peaks"``,
``"peak_label"`` (each label; placed at draw time, see :class:`_PeakLabels`), ``"known_period"``,
``"known_period_band"``, ``"score_grid"``, ``"best_head"``, ``"history"``, ``"forecast"``,
``"attention_bars"``, ``"query_column"``, ``"sweep_points"``, ``"identity"``, ``"resolution_band"``;
axes carry gids such as ``"map_axes"``, ``"lag_axes"``, ``"colorbar"``.
"""

from __future__ import annotations

import io
import math
import numbers
import re
import textwrap
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import matplotlib as mpl
import numpy as np
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib import patheffects
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, MaxNLocator

from .evaluation import mae
from .grid import TokenGrid

__all__ = ["STYLE", "AttnvizFigure", "Plotter", "head_filename", "outline_segments"]

#: Default look shared by every figure.  ``Plotter(style=...)`` overrides any key; ``rc`` is a
#: dict of extra rcParams applied last.
STYLE: dict[str, Any] = {
    "style": "ticks",
    "context": "paper",
    "font_scale": 1.25,
    "palette": "colorblind",
    "cmap": "rocket",
    "boundary_color": "#00b4d8",
    "outline_color": "#39ff14",
    "rc": {
        "axes.titleweight": "bold",
        "axes.titlesize": 11,
        "figure.titlesize": 12,
        "figure.titleweight": "bold",
        "legend.frameon": False,
        "image.interpolation": "nearest",
        "savefig.bbox": "tight",
        "savefig.pad_inches": 0.06,
    },
}


#: At most this many multiples of each known period are drawn on a lag curve.
MAX_MULTIPLES = 40
#: Points between a peak marker and its label (before any lift to avoid another label).
PEAK_LABEL_OFFSET = 7.0
#: How far (in label heights) a peak label may be lifted above its place to avoid another.
MAX_LABEL_RAISE = 2.5
#: A lag panel at least this wide (inches) gets its legend beside it rather than inside.
LEGEND_BESIDE_MIN_INCHES = 3.5


def head_filename(experiment: str, layer_index: int, head: int) -> str:
    """``experiment_{experiment}_layer_{layer_index}_head_{head}_correlations.png``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(experiment)).strip("_") or "run"
    return f"experiment_{safe}_layer_{int(layer_index)}_head_{int(head)}_correlations.png"


def outline_segments(mask: np.ndarray) -> np.ndarray:
    """Unit edges (in cell coordinates, cell (i, j) = [j, j+1) x [i, i+1)) around a boolean mask.

    Returns an array (n, 2, 2) of segments ``[[x0, y0], [x1, y1]]`` tracing the boundary between
    True and False cells (and the map edge), suitable for a ``LineCollection``.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    padded = np.pad(m, 1, constant_values=False)
    # horizontal edges: between row i-1 and row i at y = i
    h = padded[1:, 1:-1] != padded[:-1, 1:-1]  # (rows + 1, cols)
    hy, hx = np.nonzero(h)
    # vertical edges: between col j-1 and col j at x = j
    v = padded[1:-1, 1:] != padded[1:-1, :-1]  # (rows, cols + 1)
    vy, vx = np.nonzero(v)
    segs_h = np.stack([np.stack([hx, hy], 1), np.stack([hx + 1, hy], 1)], 1)
    segs_v = np.stack([np.stack([vx, vy], 1), np.stack([vx, vy + 1], 1)], 1)
    return np.concatenate([segs_h, segs_v]).astype(float).reshape(-1, 2, 2)


class AttnvizFigure(Figure):
    """A plain Figure that also renders itself in notebooks where pyplot was never imported."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


# ----------------------------------------------------------------------------- checks


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_grid(grid: Any) -> TokenGrid:
    if not isinstance(grid, TokenGrid):
        raise ValueError(f"grid must be an attnviz.grid.TokenGrid, got {type(grid).__name__}")
    return grid


def _check_map(time_map: Any, grid: TokenGrid, name: str = "time_map") -> np.ndarray:
    arr = _to_numpy(time_map)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(
            f"{name} must be a square (query cols, key cols) array, got shape {arr.shape}"
        )
    if arr.shape != (grid.cols, grid.cols):
        raise ValueError(
            f"{name} has shape {arr.shape} but the grid has {grid.cols} columns; expected "
            f"({grid.cols}, {grid.cols})"
        )
    if not np.isfinite(arr).any():
        raise ValueError(f"{name} has no finite values")
    return arr


def _check_curve(lags: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    lags = _as_1d(lags, "lags")
    values = _as_1d(values, "values")
    if lags.shape != values.shape:
        raise ValueError(
            f"lags and values must have the same length, got {lags.size} lags and "
            f"{values.size} values"
        )
    if lags.size == 0:
        raise ValueError("lags is empty; a lag curve needs at least one lag")
    if not np.isfinite(lags).all():
        raise ValueError("lags must be finite (values may contain NaN for empty diagonals)")
    return lags, values


def _check_periods(periods: Any, name: str) -> np.ndarray:
    arr = _as_1d(() if periods is None else periods, name)
    if arr.size and (not np.isfinite(arr).all() or (arr <= 0).any()):
        raise ValueError(f"{name} must be positive finite numbers (samples), got {arr.tolist()}")
    return arr


def _to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach") and hasattr(array, "cpu"):
        array = array.detach().cpu().float().numpy()
    return np.asarray(array, dtype=float)


def _fmt(x: float) -> str:
    """Compact number for labels: 16, 6.49, 62.8, 1156."""
    x = float(x)
    if not math.isfinite(x):
        return "n/a"
    if x == round(x) and abs(x) < 1e6:
        return str(int(round(x)))
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


class _PeakLabels(Artist):
    """Places peak labels when the figure is drawn, after layout, so they never overlap.

    Whether two labels collide depends on the final axes size, known only at draw time
    (constrained layout, savefig's dpi), so a fixed gap in data units either still overlaps
    or drops labels needlessly.  Drawn just before the labels (lower zorder), this artist
    measures each one with the real renderer, highest peak first: a label that would touch
    one already placed is lifted just above it (at most ``MAX_LABEL_RAISE`` label heights, and
    never out of the panel), else hidden for this draw.  The highest peak's label, placed
    first, always shows.  A label that would cross the left or right spine slides inside.
    """

    def __init__(self, labels: list[Any], base_points: float) -> None:
        super().__init__()
        self.labels = labels  # Annotation objects, highest peak first
        self.base_points = base_points
        self.set_zorder(min((t.get_zorder() for t in labels), default=3.0) - 0.01)
        self.set_in_layout(False)  # it has no extent of its own

    def draw(self, renderer: Any) -> None:
        if not self.get_visible() or not self.labels:
            return
        axes_box = self.labels[0].axes.get_window_extent(renderer)
        pixels_per_point = renderer.points_to_pixels(1.0)
        placed: list[Any] = []
        for label in self.labels:
            label.set_visible(True)
            offset = self.base_points
            label.xyann = (0.0, offset)
            box = label.get_window_extent(renderer).padded(pixels_per_point)
            # A label centred on a peak near either end would run over the spine and the
            # tick labels beyond it: slide it sideways into the panel (it still touches its peak).
            shift = max(axes_box.x0 - box.x0, 0.0) - max(box.x1 - axes_box.x1, 0.0)
            if shift:
                label.xyann = (shift / pixels_per_point, offset)
                box = label.get_window_extent(renderer).padded(pixels_per_point)
            highest = offset + MAX_LABEL_RAISE * box.height / pixels_per_point
            while True:
                blocking = [other for other in placed if box.overlaps(other)]
                if not blocking:
                    placed.append(box)
                    break
                # Lift it just above the labels in its way, if that stays near its peak and in the panel.
                offset += (max(other.y1 for other in blocking) - box.y0) / pixels_per_point + 0.5
                label.xyann = (label.xyann[0], offset)
                box = label.get_window_extent(renderer).padded(pixels_per_point)
                if offset > highest or box.y1 > axes_box.y1:
                    label.set_visible(False)
                    break
        self.stale = False


#: Share of a panel's pre-layout height that survives the layout (titles, labels, colorbars).
LAYOUT_SHRINK = 0.8
#: At most this share of a lag panel is kept free above the peaks for their labels.
MAX_HEADROOM = 0.4


def _reserve_label_headroom(ax: Any, labels: list[Any]) -> None:
    """Raise the panel's top so the peak labels have room above the highest peak.

    Peaks near the top of the data range left no room to lift a colliding label, so the
    placer hid it (the three_harmonics head showed 126 but not 62).  The room needed is one
    label height, or two when neighbouring labels would collide on one line; the panel's
    final size is only known at draw time, so it is estimated from the figure here and the
    placer still checks every label as drawn."""
    if not labels:
        return
    fontsize = float(labels[0].get_fontsize())
    label_h, char_w = 1.2 * fontsize + 2.0, 0.6 * fontsize  # points
    position = ax.get_position()
    fig_w, fig_h = ax.figure.get_size_inches()
    width_pts = position.width * fig_w * 72.0 * LAYOUT_SHRINK
    height_pts = position.height * fig_h * 72.0 * LAYOUT_SHRINK
    left, right = ax.get_xlim()
    xs = sorted(label.xy[0] for label in labels)
    gaps_pts = np.diff(xs) / abs(right - left) * width_pts  # empty for a single label: one tier
    widest = max(len(label.get_text()) for label in labels) * char_w
    tiers = 2 if np.any(gaps_pts < widest + 2.0) else 1
    share = min((PEAK_LABEL_OFFSET + tiers * label_h + 2.0) / max(height_pts, 1.0), MAX_HEADROOM)
    bottom, top = ax.get_ylim()
    peak_top = max(label.xy[1] for label in labels)
    needed_top = (peak_top - share * bottom) / (1.0 - share)
    if needed_top > top:
        ax.set_ylim(bottom, needed_top)


def _label_candidates(xs: np.ndarray, heights: np.ndarray, limit: int = 8) -> list[tuple[float, float]]:
    """Up to ``limit`` peaks to label, in placement order: the highest, then the shortest lag
    (usually the fundamental the reader looks for first, often not among the highest), then
    the rest by height.

    Every peak keeps its marker; only labels are limited (and placed at draw time)."""
    order = list(np.argsort(-np.nan_to_num(heights, nan=-np.inf), kind="stable"))
    if len(order) > 1:
        shortest = int(np.argmin(np.abs(xs)))
        if shortest != order[0]:  # the highest is placed first, always
            order.remove(shortest)
            order.insert(1, shortest)
    return [(float(xs[i]), float(heights[i])) for i in order[:limit]]


def _period_label(x: float) -> str:
    """Detected period in samples with one decimal below 1000: 62.9, 125.0, 1156."""
    x = float(x)
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.1f}" if abs(x) < 1000 else f"{x:.0f}"


def _pct(x: float) -> str:
    """Percentile/percent label without rounding away decimals: 99.99, 0.01, 5."""
    return f"{float(x):.6g}"


def _nice_col_step(cols: int, target: int = 6) -> int:
    raw = max(1, cols / target)
    for step in (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256, 500):
        if step >= raw:
            return step
    return int(10 ** math.ceil(math.log10(raw)))


# ----------------------------------------------------------------------------- plotter


def _styled(method):
    """Run a figure-making method inside the plotter's rc context."""

    @wraps(method)
    def wrapper(self: "Plotter", *args: Any, **kwargs: Any):
        with self.rc_context():
            return method(self, *args, **kwargs)

    return wrapper


class Plotter:
    """Figures of attention maps, lag curves and head scores with one consistent style.

    percentiles: (lo, hi) percentiles of each map mapped to the ends of the colour scale
        (robust clipping; values outside saturate).  ``0 <= lo < hi <= 100``.
    gamma: exponent of a ``PowerNorm`` (``gamma < 1`` lifts faint structure); must be > 0.
    log: logarithmic colour scale (``LogNorm``) instead; cannot be combined with gamma != 1.
    top_percent: cells at or above this percentile of the map get an outline
        (99.99 -> the top 0.01 %, in practice the maximum); ``None`` disables it.
        Must lie in (0, 100].
    dpi: resolution of the figures and of saved raster files.
    style: None for :data:`STYLE`, a seaborn style name ("whitegrid", ...), or a dict overriding
        keys of :data:`STYLE`.
    """

    def __init__(
        self,
        percentiles: Sequence[float] = (5, 99),
        gamma: float = 1.0,
        log: bool = False,
        top_percent: float | None = 99.99,
        dpi: float = 150,
        style: str | dict | None = None,
    ) -> None:
        try:
            lo, hi = (float(p) for p in percentiles)
        except (TypeError, ValueError):
            raise ValueError(
                f"percentiles must be a pair (lo, hi) with 0 <= lo < hi <= 100, got {percentiles!r}"
            ) from None
        if not (0 <= lo < hi <= 100):
            raise ValueError(
                f"percentiles must satisfy 0 <= lo < hi <= 100, got {tuple(percentiles)!r}"
            )
        gamma = _real(gamma, "gamma")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        if log and gamma != 1.0:
            raise ValueError(
                f"log=True cannot be combined with gamma={gamma!r}; use one of them (gamma=1 with log)"
            )
        if top_percent is not None:
            top_percent = _real(top_percent, "top_percent")
            if not 0 < top_percent <= 100:
                raise ValueError(f"top_percent must lie in (0, 100], got {top_percent!r}")
        dpi = _real(dpi, "dpi")
        if dpi <= 0:
            raise ValueError(f"dpi must be > 0, got {dpi!r}")
        self.percentiles = (lo, hi)
        self.gamma = gamma
        self.log = bool(log)
        self.top_percent = top_percent
        self.dpi = dpi
        self.style = self._merge_style(style)
        self.cmap = self._make_cmap(self.style["cmap"])
        self.palette = sns.color_palette(self.style["palette"])
        self._rc = self._build_rc()

    # ------------------------------------------------------------------ style plumbing

    @staticmethod
    def _merge_style(style: str | dict | None) -> dict[str, Any]:
        merged = {**STYLE, "rc": dict(STYLE["rc"])}
        if style is None:
            return merged
        if isinstance(style, str):
            merged["style"] = style
            return merged
        if not isinstance(style, dict):
            raise ValueError(f"style must be None, a seaborn style name or a dict, got {style!r}")
        unknown = set(style) - set(STYLE)
        if unknown:
            raise ValueError(f"unknown style keys {sorted(unknown)}; known: {sorted(STYLE)}")
        for key, value in style.items():
            if key == "rc":
                merged["rc"].update(value or {})
            else:
                merged[key] = value
        return merged

    @staticmethod
    def _make_cmap(name: Any) -> mcolors.Colormap:
        if isinstance(name, mcolors.Colormap):
            cmap = name
        else:
            try:
                cmap = sns.color_palette(name, as_cmap=True)
            except (ValueError, TypeError):
                raise ValueError(f"unknown colormap {name!r}") from None
            if not isinstance(cmap, mcolors.Colormap):
                raise ValueError(f"{name!r} is a palette, not a colormap")
        return cmap.with_extremes(bad=cmap(0.0), under=cmap(0.0), over=cmap(1.0))

    def _build_rc(self) -> dict[str, Any]:
        rc: dict[str, Any] = {}
        rc.update(sns.axes_style(self.style["style"]))
        rc.update(sns.plotting_context(self.style["context"], font_scale=self.style["font_scale"]))
        rc["axes.prop_cycle"] = mpl.cycler(color=list(self.palette))
        rc["figure.dpi"] = self.dpi
        rc["savefig.dpi"] = self.dpi
        rc.update(self.style["rc"])
        return rc

    @contextmanager
    def rc_context(self) -> Iterator[None]:
        """Context in which matplotlib uses this plotter's style (used by every method)."""
        with mpl.rc_context(self._rc):
            yield

    def _figure(self, figsize: tuple[float, float]) -> Figure:
        fig = AttnvizFigure(figsize=figsize, dpi=self.dpi, layout="constrained")
        FigureCanvasAgg(fig)
        return fig

    # ------------------------------------------------------------------ colour scale

    def color_limits(self, time_map: np.ndarray) -> tuple[float, float]:
        """(vmin, vmax) of a map: its ``percentiles`` over finite values (log: positive only)."""
        finite = np.asarray(time_map, dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size == 0:
            raise ValueError("map has no finite values")
        if self.log:
            finite = finite[finite > 0]
            if finite.size == 0:
                raise ValueError("log=True needs positive values, but the map has none")
        vmin, vmax = (float(v) for v in np.percentile(finite, self.percentiles))
        if not vmax > vmin:  # constant map (or degenerate percentiles): widen a little
            pad = max(abs(vmin), 1.0) * 1e-6
            vmin, vmax = (vmin / 10, vmax * 10) if self.log else (vmin - pad, vmax + pad)
        return vmin, vmax

    def norm(self, time_map: np.ndarray) -> mcolors.Normalize:
        """The colour normalisation used for ``time_map`` (Normalize / PowerNorm / LogNorm)."""
        vmin, vmax = self.color_limits(time_map)
        if self.log:
            return mcolors.LogNorm(vmin=vmin, vmax=vmax, clip=False)
        if self.gamma != 1.0:
            return mcolors.PowerNorm(self.gamma, vmin=vmin, vmax=vmax, clip=False)
        return mcolors.Normalize(vmin=vmin, vmax=vmax, clip=False)

    def top_mask(self, time_map: np.ndarray) -> np.ndarray | None:
        """Cells at or above the ``top_percent`` percentile (None when disabled)."""
        if self.top_percent is None:
            return None
        arr = np.asarray(time_map, dtype=float)
        finite = np.isfinite(arr)
        threshold = float(np.percentile(arr[finite], self.top_percent))
        return finite & (arr >= threshold)

    def _scale_label(self) -> str:
        lo, hi = self.percentiles
        scale = "log" if self.log else ("linear" if self.gamma == 1.0 else f"γ = {self.gamma:g}")
        return f"attention (p{_pct(lo)}–p{_pct(hi)}, {scale})"

    # ------------------------------------------------------------------ drawing blocks

    def draw_time_map(
        self,
        ax: Any,
        time_map: np.ndarray,
        grid: TokenGrid,
        *,
        secondary: bool = True,
        labels: bool = True,
        legend: bool = True,
    ) -> Any:
        """Draw a (cols, cols) time map on ``ax``; returns the AxesImage."""
        cols = grid.cols
        spc = grid.samples_per_col
        norm = self.norm(time_map)
        image = ax.imshow(
            time_map,
            cmap=self.cmap,
            norm=norm,
            extent=(0, cols, cols, 0),
            origin="upper",
            interpolation="nearest",
            aspect="equal",
        )
        image.set_gid("time_map")
        ax.set_gid("map_axes")
        ax.set_xlim(0, cols)
        ax.set_ylim(cols, 0)
        step = _nice_col_step(cols)
        ticks = np.arange(0, cols + 1, step)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.grid(False)
        boundary = float(grid.history_boundary)
        bcolor = self.style["boundary_color"]
        line_v = ax.axvline(boundary, color=bcolor, lw=1.3, ls="--", label="history | forecast")
        line_h = ax.axhline(boundary, color=bcolor, lw=1.3, ls="--")
        line_v.set_gid("boundary")
        line_h.set_gid("boundary")
        mask = self.top_mask(time_map)
        if mask is not None and mask.any():
            outline = LineCollection(
                outline_segments(mask),
                colors=self.style["outline_color"],
                linewidths=1.4,
                label=f"top {_pct(100 - self.top_percent)} % (≥ p{_pct(self.top_percent)})",
                zorder=4,
            )
            outline.set_gid("top_outline")
            ax.add_collection(outline)
        if labels:
            ax.set_xlabel("key column")
            ax.set_ylabel("query column")
        if secondary:
            to_s = (lambda c: np.asarray(c) * spc, lambda s: np.asarray(s) / spc)
            top = ax.secondary_xaxis("top", functions=to_s)
            right = ax.secondary_yaxis("right", functions=to_s)
            for sec in (top, right):
                sec.set_gid("samples_axis")
            top.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
            right.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
            if labels:
                top.set_xlabel("key time (samples)")
                right.set_ylabel("query time (samples)")
        if legend:
            ax.legend(
                loc="lower left",
                fontsize="x-small",
                frameon=True,
                framealpha=0.85,
                handlelength=1.6,
            )
        return image

    def draw_lag_curve(
        self,
        ax: Any,
        lags: np.ndarray,
        values: np.ndarray,
        grid: TokenGrid | None = None,
        *,
        peaks_samples: Iterable[float] = (),
        known_periods: Iterable[float] = (),
        annotate: bool = True,
        secondary: bool = True,
        labels: bool = True,
        legend: bool = True,
        resolution_note: bool = True,
        ylabel: str = "mean attention at lag",
    ) -> None:
        """Lag curve (x in samples) with peak markers, known periods and column resolution.

        ``resolution_note`` writes "1 column = N samples" in the panel when no column axis
        label says it; figures that state it once for all panels turn it off."""
        lags, values = _check_curve(lags, values)
        peaks = _check_periods_any(peaks_samples, "peaks_samples")
        known = _check_periods(known_periods, "known_periods")
        pal = self.palette
        ax.set_gid("lag_axes")
        (curve,) = ax.plot(
            lags, values, color=pal[0], lw=1.5, marker="o", ms=2.2, label="lag curve", zorder=3
        )
        curve.set_gid("lag_curve")
        ax.margins(y=0.09)  # before the label headroom, which reads the resulting limits
        lo, hi = float(lags.min()), float(lags.max())
        span = hi - lo if hi > lo else max(abs(hi), 1.0)
        ax.set_xlim(min(lo, 0.0) if lo >= 0 else lo - 0.02 * span, hi + 0.02 * span)
        spc = grid.samples_per_col if grid is not None else None
        half = 0.5 * spc if spc else None
        first = True
        for period in known:
            k_max = int(math.floor(max(abs(lo), abs(hi)) / period + 1e-9))
            multiples = [k * period for k in range(-k_max, k_max + 1) if k != 0]
            multiples = [m for m in multiples if lo - 1e-9 <= m <= hi + 1e-9]
            multiples = sorted(multiples, key=abs)[:MAX_MULTIPLES]
            for m in multiples:
                label = f"known period {_fmt(period)} (and multiples)" if first else None
                line = ax.axvline(
                    m,
                    color=pal[2],
                    ls="--",
                    lw=1.1,
                    alpha=0.9 if abs(m) == period else 0.55,
                    label=label,
                    zorder=2,
                )
                line.set_gid("known_period")
                if half:
                    band = ax.axvspan(
                        m - half,
                        m + half,
                        color=pal[2],
                        alpha=0.10,
                        lw=0,
                        zorder=1,
                        label="±½ column" if first else None,
                    )
                    band.set_gid("known_period_band")
                first = False
        finite = np.isfinite(values)
        if peaks.size and finite.sum() >= 1:
            heights = np.interp(peaks, lags[finite], values[finite])
            (marks,) = ax.plot(
                peaks,
                heights,
                ls="none",
                marker="v",
                ms=7,
                color=pal[3],
                mec="white",
                mew=0.6,
                label="detected peaks",
                zorder=5,
            )
            marks.set_gid("peaks")
            if annotate:
                texts = []
                for x, y in _label_candidates(peaks, heights):
                    text = ax.annotate(
                        _fmt(round(x, 1)),
                        (x, y),
                        xytext=(0, PEAK_LABEL_OFFSET),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize="x-small",
                        color=pal[3],
                        # a white halo keeps a label legible where it crosses the curve or a period line
                        path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")],
                        zorder=6,  # above the peak markers (5): a staircase of peaks puts one under a label
                    )
                    text.set_gid("peak_label")
                    texts.append(text)
                placer = _PeakLabels(texts, base_points=PEAK_LABEL_OFFSET)
                placer.set_gid("peak_labels")
                ax.add_artist(placer)
                _reserve_label_headroom(ax, texts)
        ax.grid(True, axis="both", alpha=0.35, lw=0.6)
        if labels:
            ax.set_xlabel("lag (samples)")
            ax.set_ylabel(ylabel)
        if spc:
            if resolution_note and not (secondary and labels):  # else the column axis label says it
                ax.text(
                    0.99,
                    0.98,
                    f"resolution: 1 column = {_fmt(spc)} samples",
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize="x-small",
                    color="0.3",
                )
            n_cols = (hi - min(lo, 0.0)) / spc
            if n_cols <= 120:
                ax.xaxis.set_minor_locator(
                    FixedLocator(np.arange(math.floor(lo / spc), math.ceil(hi / spc) + 1) * spc)
                )
                ax.tick_params(axis="x", which="minor", length=2.5)
            if secondary:
                sec = ax.secondary_xaxis(
                    "top", functions=(lambda s: np.asarray(s) / spc, lambda c: np.asarray(c) * spc)
                )
                sec.set_gid("columns_axis")
                sec.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
                if labels:
                    sec.set_xlabel(f"lag (columns of {_fmt(spc)} samples)")
        if legend:
            # Beside the panel, not on it: inside, it hid the very peaks it explains.  A
            # narrow panel has no room beside it (the layout would collapse): best spot inside.
            width_in = ax.get_position().width * ax.figure.get_figwidth()
            if width_in >= LEGEND_BESIDE_MIN_INCHES:
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize="x-small")
            else:
                ax.legend(loc="best", fontsize="x-small", frameon=True, framealpha=0.85, edgecolor="none")

    # ------------------------------------------------------------------ per-head figure

    @_styled
    def head_figure(
        self,
        time_map: Any,
        grid: TokenGrid,
        lags: Any,
        values: Any,
        peaks_samples: Iterable[float] = (),
        known_periods: Iterable[float] = (),
        title: str = "",
        *,
        figsize: tuple[float, float] = (11.5, 4.8),
        ylabel: str = "mean attention at lag",
    ) -> Figure:
        """LEFT: the time-time map (query x key columns); RIGHT: the lag curve in samples."""
        grid = _check_grid(grid)
        tmap = _check_map(time_map, grid)
        lags, values = _check_curve(lags, values)
        fig = self._figure(figsize)
        ax_map, ax_lag = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.15]})
        image = self.draw_time_map(ax_map, tmap, grid)
        ax_map.set_title("time–time attention (query × key)", pad=8)
        cbar = fig.colorbar(
            image, ax=ax_map, shrink=0.9, pad=0.02, extend=_extend(tmap, image.norm)
        )
        cbar.set_label(self._scale_label())
        cbar.ax.set_gid("colorbar")
        self.draw_lag_curve(
            ax_lag,
            lags,
            values,
            grid,
            peaks_samples=peaks_samples,
            known_periods=known_periods,
            ylabel=ylabel,
        )
        ax_lag.set_title("attention vs lag", pad=8)
        spc_text = f"samples_per_col = {_fmt(grid.samples_per_col)}"
        geometry = (
            f"L = {grid.history_length}, H = {grid.horizon}, {grid.cols} cols"
            if grid.history_length
            else f"{grid.cols} cols"
        )
        fig.suptitle(f"{title}\n{spc_text} ({geometry})" if title else f"{spc_text} ({geometry})")
        return fig

    def save_head(
        self,
        res: Any,
        layer: int | str,
        head: int,
        out_dir: str | Path,
        experiment: str = "three_harmonics",
        known_periods: Iterable[float] = (62.8,),
        *,
        direction: str = "past",
        region: str = "all",
        normalize: bool = False,
        figsize: tuple[float, float] = (11.5, 4.8),
    ) -> Path:
        """Render one head of ``res`` and save it as
        ``out_dir/experiment_{experiment}_layer_{layer_index}_head_{head}_correlations.png``."""
        index, name = _resolve_layer(res, layer)
        head = _resolve_head(res, head, index)
        lags, values = _curve_of(
            res.lag_curve(layer, head, direction=direction, region=region, normalize=normalize)
        )
        peaks, fundamental = _periods_of(res, layer, head, direction, region)
        grid = res.grid
        title = f"{experiment}: {name} (layer {index}), head {head}"
        if math.isfinite(fundamental):
            title += f" — fundamental ≈ {_period_label(fundamental)} samples"
        ylabel = "attention / chance" if normalize else "mean attention at lag"
        fig = self.head_figure(
            _time_maps(res)[index, head],
            grid,
            lags,
            values,
            peaks_samples=peaks,
            known_periods=known_periods,
            title=title,
            figsize=figsize,
            ylabel=ylabel,
        )
        return self.save(fig, Path(out_dir) / head_filename(experiment, index, head))

    # ------------------------------------------------------------------ layer overview

    @_styled
    def overview_figure(
        self,
        time_maps: Any,
        grid: TokenGrid,
        curves: Sequence[tuple[Any, Any]] | None = None,
        peaks: Sequence[Iterable[float]] | None = None,
        known_periods: Iterable[float] = (),
        head_titles: Sequence[str] | None = None,
        title: str = "",
        *,
        max_cols: int = 4,
        panel_size: float = 2.4,
    ) -> Figure:
        """Small multiples: one heat map per head (own percentile scale) and, when ``curves``
        is given, a mini lag curve beneath each."""
        grid = _check_grid(grid)
        maps = _to_numpy(time_maps)
        if maps.ndim != 3:
            raise ValueError(f"time_maps must have shape (heads, cols, cols), got {maps.shape}")
        heads = maps.shape[0]
        for h in range(heads):
            _check_map(maps[h], grid, name=f"time_maps[{h}]")
        if curves is not None and len(curves) != heads:
            raise ValueError(
                f"curves must have one (lags, values) per head ({heads}), got {len(curves)}"
            )
        if peaks is not None and len(peaks) != heads:
            raise ValueError(f"peaks must have one entry per head ({heads}), got {len(peaks)}")
        if head_titles is not None and len(head_titles) != heads:
            raise ValueError(f"head_titles must have {heads} entries, got {len(head_titles)}")
        known = _check_periods(known_periods, "known_periods")
        ncols = max(1, min(int(max_cols), heads))
        nblocks = math.ceil(heads / ncols)
        rows_per = 2 if curves is not None else 1
        ratios = ([1.0, 0.5] if curves is not None else [1.0]) * nblocks
        fig = self._figure((panel_size * ncols + 0.9, panel_size * sum(ratios) + 0.6))
        axes = np.atleast_2d(
            fig.subplots(
                nblocks * rows_per, ncols, gridspec_kw={"height_ratios": ratios}, squeeze=False
            )
        )
        for h in range(nblocks * ncols):
            block, c = divmod(h, ncols)
            ax_map = axes[block * rows_per, c]
            ax_lag = axes[block * rows_per + 1, c] if curves is not None else None
            if h >= heads:
                ax_map.set_axis_off()
                if ax_lag is not None:
                    ax_lag.set_axis_off()
                continue
            self.draw_time_map(ax_map, maps[h], grid, secondary=False, labels=False, legend=False)
            ax_map.tick_params(labelsize="x-small")
            ax_map.set_title(
                head_titles[h] if head_titles is not None else f"head {h}", fontsize="small"
            )
            if c == 0:
                ax_map.set_ylabel("query col", fontsize="small")
            if block == nblocks - 1 or h + ncols >= heads:
                ax_map.set_xlabel("key col", fontsize="small")
            if ax_lag is not None:
                lags, values = _check_curve(*curves[h])
                self.draw_lag_curve(
                    ax_lag,
                    lags,
                    values,
                    grid,
                    peaks_samples=() if peaks is None else peaks[h],
                    known_periods=known,
                    annotate=False,
                    secondary=False,
                    labels=False,
                    legend=False,
                    resolution_note=False,  # the suptitle states it once for all panels
                )
                ax_lag.tick_params(labelsize="x-small")
                ax_lag.set_xlabel("lag (samples)", fontsize="x-small")
        sm = mpl.cm.ScalarMappable(
            norm=mcolors.PowerNorm(self.gamma, 0, 1)
            if self.gamma != 1.0 and not self.log
            else mcolors.Normalize(0, 1),
            cmap=self.cmap,
        )
        cbar = fig.colorbar(sm, ax=axes[0::rows_per, :].ravel().tolist(), shrink=0.8, pad=0.01)
        cbar.set_ticks([0, 1])
        lo, hi = self.percentiles
        cbar.set_ticklabels([f"p{_pct(lo)}", f"p{_pct(hi)}"])
        cbar.set_label("per-head scale" + (" (log)" if self.log else ""), fontsize="small")
        cbar.ax.set_gid("colorbar")
        note = f"samples_per_col = {_fmt(grid.samples_per_col)}; dashed: history | forecast"
        if known.size:
            note += f"; dashed vertical: known period {', '.join(_fmt(p) for p in known)}"
        fig.suptitle(f"{title}\n{note}" if title else note)
        return fig

    def layer_overview(
        self,
        res: Any,
        layer: int | str,
        known_periods: Iterable[float] = (),
        *,
        lag_curves: bool = True,
        max_cols: int = 4,
        panel_size: float = 2.4,
    ) -> Figure:
        """All heads of one layer of ``res`` as small multiples (maps + mini lag curves)."""
        index, name = _resolve_layer(res, layer)
        heads = _n_heads(res, index)
        maps = _time_maps(res)[index, :heads]
        curves = peaks = None
        titles = [f"head {h}" for h in range(heads)]
        if lag_curves:
            curves = [_curve_of(res.lag_curve(layer, h)) for h in range(heads)]
            peaks, titles = [], []
            for h in range(heads):
                peaks_h, fund = _periods_of(res, layer, h)
                peaks.append(peaks_h)
                label = f"head {h}"
                if math.isfinite(fund):
                    label += f" · P≈{_period_label(fund)}"
                titles.append(label)
        return self.overview_figure(
            maps,
            res.grid,
            curves,
            peaks,
            known_periods,
            titles,
            title=f"{name} (layer {index}): all {heads} heads",
            max_cols=max_cols,
            panel_size=panel_size,
        )

    # ------------------------------------------------------------------ score grid

    @_styled
    def score_heatmap(
        self,
        scores: Any,
        layer_names: Sequence[str] | None = None,
        periods: Any = None,
        title: str = "periodicity score per head",
        *,
        best: tuple[int, int] | None = None,
        figsize: tuple[float, float] | None = None,
        annotate: bool = True,
        caveat: str = "",
    ) -> Figure:
        """(layers, heads) score matrix as an annotated heat map; NaN cells are left blank.

        periods: optional (layers, heads) detected periods (samples) printed under each score.
        best: (layer, head) cell to outline; default the highest finite score.
        caveat: a warning line under the title (``score_grid`` passes the ranking's caveats), so
        a ranking that says little cannot be mistaken for one that says much.
        """
        s = _to_numpy(scores)
        if s.ndim != 2 or 0 in s.shape:
            raise ValueError(
                f"scores must be a non-empty (layers, heads) array, got shape {s.shape}"
            )
        n_layers, n_heads = s.shape
        names = (
            list(layer_names)
            if layer_names is not None
            else [f"layer {i}" for i in range(n_layers)]
        )
        if len(names) != n_layers:
            raise ValueError(f"layer_names has {len(names)} entries but scores has {n_layers} rows")
        per = None
        if periods is not None:
            per = _to_numpy(periods)
            if per.shape != s.shape:
                raise ValueError(f"periods shape {per.shape} does not match scores shape {s.shape}")
        if figsize is None:
            longest = max(len(n) for n in names)
            figsize = (
                min(2.0 + 0.07 * longest + 0.62 * n_heads, 22),
                min(1.3 + 0.42 * n_layers, 24),
            )
        fig = self._figure(figsize)
        ax = fig.subplots()
        annot: Any = False
        if annotate:
            annot = np.empty(s.shape, dtype=object)
            for i in range(n_layers):
                for j in range(n_heads):
                    if not np.isfinite(s[i, j]):
                        annot[i, j] = ""
                        continue
                    text = f"{s[i, j]:.2f}"
                    if per is not None and np.isfinite(per[i, j]):
                        text += f"\n{_period_label(per[i, j])}"
                    annot[i, j] = text
        finite = s[np.isfinite(s)]
        vmin = float(min(0.0, finite.min())) if finite.size else 0.0
        vmax = float(max(finite.max(), vmin + 1e-12)) if finite.size else 1.0
        sns.heatmap(
            s,
            ax=ax,
            cmap=self.cmap,
            vmin=vmin,
            vmax=vmax,
            mask=~np.isfinite(s),
            annot=annot if annotate else False,
            fmt="",
            annot_kws={"fontsize": 6.5 if per is not None else 7.5},
            linewidths=0.4,
            linecolor="white",
            square=False,
            cbar_kws={"label": "periodicity score", "shrink": 0.85, "pad": 0.015},
            xticklabels=list(range(n_heads)),
            yticklabels=names,
        )
        ax.collections[0].set_gid("score_grid")
        ax.set_gid("score_axes")
        if len(fig.axes) > 1:
            fig.axes[-1].set_gid("colorbar")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.tick_params(axis="y", labelsize="small", rotation=0)
        ax.tick_params(axis="x", labelsize="small", rotation=0)
        if best is None and finite.size:
            flat = np.nanargmax(np.where(np.isfinite(s), s, -np.inf))
            best = divmod(int(flat), n_heads)
        if best is not None:
            bi, bj = best
            rect = Rectangle(
                (bj, bi),
                1,
                1,
                fill=False,
                ec=self.style["outline_color"],
                lw=2.2,
                zorder=5,
                clip_on=False,
            )
            rect.set_gid("best_head")
            ax.add_patch(rect)
            title += f" (best: {names[bi]}, head {bj})"
        subtitle = "cell: score" + (" / detected period (samples)" if per is not None else "")
        if caveat:  # wrapped to the figure: a narrow grid (few heads) must not clip it
            subtitle += "\n" + textwrap.fill(f"note: {caveat}", max(30, int(8 * fig.get_figwidth())))
        ax.set_title(f"{title}\n{subtitle}", fontsize="medium")
        return fig

    def score_grid(self, res: Any, **kwargs: Any) -> Figure:
        """Layer x head grid of periodicity scores from ``res.ranked_heads`` (best outlined)."""
        names = list(res.layer_names)
        maps = _time_maps(res)
        n_layers, n_heads = maps.shape[:2]
        scores = np.full((n_layers, n_heads), np.nan)
        periods = np.full((n_layers, n_heads), np.nan)
        best = None
        for entry in res.ranked_heads:
            i, _ = _resolve_layer(res, entry.layer)
            j = int(entry.head)
            if not (0 <= j < n_heads):
                continue
            scores[i, j] = float(entry.score)
            periods[i, j] = float(getattr(entry, "period_samples", float("nan")))
            if best is None:
                best = (i, j)
        kwargs.setdefault("best", best)
        periodicity = getattr(res, "series_periodicity", None)
        caveats = periodicity.caveats() if periodicity is not None else []
        kwargs.setdefault("caveat", "; ".join(c.short for c in caveats))
        return self.score_heatmap(scores, names, periods, **kwargs)

    # ------------------------------------------------------------------ series panel

    @_styled
    def series_figure(
        self,
        history: Any,
        forecast: Any,
        grid: TokenGrid,
        attention_row: Any = None,
        query_col: int | None = None,
        title: str = "",
        *,
        known_periods: Iterable[float] = (),
        truth: Any = None,
        figsize: tuple[float, float] = (10.0, 5.2),
    ) -> Figure:
        """History + forecast over time (samples) and, below, the attention one query column
        sends to every key column, drawn as bars spanning each column's samples.

        truth: the series' real continuation (as long as the forecast), drawn under the forecast
        so a reader can judge it; the forecast's MAE against it goes into the legend.
        """
        grid = _check_grid(grid)
        hist = _as_1d(history, "history")
        fc = _as_1d(forecast, "forecast") if forecast is not None else np.zeros(0)
        actual = None
        if truth is not None:
            actual = _as_1d(truth, "truth")
            if actual.size != fc.size:
                raise ValueError(
                    f"truth must have as many values as the forecast ({fc.size}), got {actual.size}"
                )
        spc = grid.samples_per_col
        L = hist.size
        boundary = float(grid.history_boundary) * spc
        with_attn = attention_row is not None
        fig = self._figure(figsize if with_attn else (figsize[0], figsize[1] * 0.55))
        if with_attn:
            ax, ax_att = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.3, 1.0]})
        else:
            ax, ax_att = fig.subplots(), None
        pal = self.palette
        (h_line,) = ax.plot(np.arange(L), hist, color=pal[0], lw=1.2, label="history")
        h_line.set_gid("history")
        if fc.size:
            x_fc = np.arange(L, L + fc.size)
            label = "forecast"
            if actual is not None:
                (t_line,) = ax.plot(x_fc, actual, color="0.45", lw=1.0, ls=":", label="truth")
                t_line.set_gid("truth")
                label = f"forecast (MAE {_fmt(mae(fc, actual))})"
            (f_line,) = ax.plot(x_fc, fc, color=pal[1], lw=1.2, label=label)
            f_line.set_gid("forecast")
        for a in (ax, ax_att) if with_attn else (ax,):
            line = a.axvline(
                boundary,
                color=self.style["boundary_color"],
                ls="--",
                lw=1.2,
                label="history | forecast" if a is ax else None,
            )
            line.set_gid("boundary")
            a.grid(True, alpha=0.35, lw=0.6)
        ax.set_ylabel("value")
        total = grid.cols * spc
        ax.set_xlim(0, max(total, L + fc.size))
        if with_attn:
            row = _as_1d(attention_row, "attention_row")
            if row.size != grid.cols:
                raise ValueError(
                    f"attention_row must have {grid.cols} values (one per key column), got {row.size}"
                )
            if query_col is None or not (0 <= int(query_col) < grid.cols):
                raise ValueError(
                    f"query_col must be a column in [0, {grid.cols}), got {query_col!r}"
                )
            q = int(query_col)
            starts = np.arange(grid.cols) * spc
            past = np.arange(grid.cols) < grid.history_boundary
            colors = [pal[0] if p else pal[1] for p in past]
            bars = ax_att.bar(
                starts,
                np.nan_to_num(row),
                width=spc,
                align="edge",
                color=colors,
                alpha=0.85,
                edgecolor="white",
                linewidth=0.3,
            )
            for patch in bars.patches:
                patch.set_gid("attention_bars")
            for a in (ax, ax_att):
                span = a.axvspan(
                    q * spc,
                    (q + 1) * spc,
                    color=pal[3],
                    alpha=0.18,
                    lw=0,
                    label=f"query column {q}" if a is ax else None,
                )
                span.set_gid("query_column")
            known = _check_periods(known_periods, "known_periods")
            centre = (q + 0.5) * spc
            first = True
            for period in known:
                k = 1
                while centre - k * period >= 0:
                    ln = ax_att.axvline(
                        centre - k * period,
                        color=pal[2],
                        ls=":",
                        lw=1.0,
                        label=f"query − k·{_fmt(period)}" if first else None,
                    )
                    ln.set_gid("known_period")
                    first = False
                    k += 1
            ax_att.set_ylabel(f"attention from\nquery col {q}")
            ax_att.set_xlabel("time (samples)")
            ax_att.set_ylim(bottom=0)
            if not first:
                ax_att.legend(loc="upper left", fontsize="x-small")
            ax_att.set_gid("attention_axes")
        else:
            ax.set_xlabel("time (samples)")
        ax.set_gid("series_axes")
        ax.legend(
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            fontsize="x-small",
            ncols=5,
            borderaxespad=0.2,
        )
        sub = f"samples_per_col = {_fmt(spc)}; bars span one token column each"
        fig.suptitle(f"{title}\n{sub}" if title else sub)
        return fig

    def series_panel(
        self,
        res: Any,
        forecast_col: int | None = None,
        layer: int | str | None = None,
        head: int | None = None,
        known_periods: Iterable[float] = (),
        **kwargs: Any,
    ) -> Figure:
        """History + forecast of ``res`` and the attention of one forecast query column.

        forecast_col: query column (default: middle of the forecast region).  layer/head:
        default the best-ranked head (``res.ranked_heads[0]``), else layer 0, head 0.
        Other keywords (``truth``, ``figsize``) go to :meth:`series_figure`.
        """
        grid = res.grid
        maps = _time_maps(res)
        if layer is None and head is None and getattr(res, "ranked_heads", None):
            top = res.ranked_heads[0]
            layer, head = top.layer, int(top.head)
        layer = 0 if layer is None else layer
        head = 0 if head is None else head
        index, name = _resolve_layer(res, layer)
        head = _resolve_head(res, head, index)
        if forecast_col is None:
            forecast_col = min(grid.cols - 1, grid.history_cols + max(grid.forecast_cols, 1) // 2)
        if (
            isinstance(forecast_col, bool)
            or not isinstance(forecast_col, numbers.Integral)
            or not 0 <= forecast_col < grid.cols
        ):
            raise ValueError(
                f"forecast_col must be an integer in [0, {grid.cols}), got {forecast_col!r}"
            )
        fobj = getattr(res, "forecast", None)
        fc = getattr(fobj, "forecast", None)
        if fc is None and fobj is not None:
            full = np.asarray(getattr(fobj, "full", fobj), float)
            fc = full[len(res.series) :]
        title = f"{name} (layer {index}), head {head}: query column {forecast_col}"
        return self.series_figure(
            res.series,
            fc,
            grid,
            maps[index, head][int(forecast_col)],
            int(forecast_col),
            title,
            known_periods=known_periods,
            **kwargs,
        )

    # ------------------------------------------------------------------ period sweep

    @_styled
    def period_sweep(
        self,
        true_periods: Any,
        detected_periods: Any,
        resolution_samples: Any,
        title: str = "detected vs true period",
        *,
        figsize: tuple[float, float] = (5.0, 4.6),
    ) -> Figure:
        """Scatter of detected vs true periods with y = x and a ±one-column band.

        resolution_samples: one column in samples, a scalar or one value per point.  NaN
        detections are drawn as crosses on the lower edge ("not found").
        """
        true = _as_1d(true_periods, "true_periods")
        det = _as_1d(detected_periods, "detected_periods")
        if true.shape != det.shape:
            raise ValueError(
                f"true_periods ({true.size}) and detected_periods ({det.size}) must have the same length"
            )
        if true.size == 0 or not np.isfinite(true).all():
            raise ValueError("true_periods must be non-empty and finite")
        res_arr = _as_1d(resolution_samples, "resolution_samples")
        if res_arr.size == 1:
            res_arr = np.full(true.shape, float(res_arr[0]))
        if res_arr.shape != true.shape:
            raise ValueError(
                f"resolution_samples must be a scalar or have {true.size} values, got {res_arr.size}"
            )
        if not (np.isfinite(res_arr).all() and (res_arr > 0).all()):
            raise ValueError(f"resolution_samples must be positive, got {res_arr.tolist()}")
        fig = self._figure(figsize)
        ax = fig.subplots()
        pal = self.palette
        order = np.argsort(true)
        xs = true[order]
        pad = 0.05 * (xs.max() - xs.min() if xs.max() > xs.min() else max(xs.max(), 1.0))
        x_line = np.array([xs.min() - pad, xs.max() + pad])
        band = ax.fill_between(
            xs,
            xs - res_arr[order],
            xs + res_arr[order],
            color=pal[0],
            alpha=0.15,
            lw=0,
            label="±1 column",
        )
        band.set_gid("resolution_band")
        (ident,) = ax.plot(x_line, x_line, color="0.25", lw=1.0, ls="--", label="y = x")
        ident.set_gid("identity")
        found = np.isfinite(det)
        inside = found & (np.abs(det - true) <= res_arr)
        pts_in = ax.scatter(
            true[inside],
            det[inside],
            s=26,
            color=pal[0],
            edgecolor="white",
            lw=0.5,
            zorder=4,
            label=f"within ±1 column ({int(inside.sum())}/{true.size})",
        )
        pts_in.set_gid("sweep_points")
        outside = found & ~inside
        if outside.any():
            pts_out = ax.scatter(
                true[outside],
                det[outside],
                s=28,
                marker="D",
                color=pal[3],
                edgecolor="white",
                lw=0.5,
                zorder=4,
                label=f"off by > 1 column ({int(outside.sum())})",
            )
            pts_out.set_gid("sweep_points")
        lo_y = min(x_line[0], np.nanmin(det) if found.any() else x_line[0])
        if (~found).any():
            miss = ax.scatter(
                true[~found],
                np.full((~found).sum(), lo_y),
                marker="x",
                s=30,
                color="0.35",
                zorder=4,
                label=f"not found ({int((~found).sum())})",
                clip_on=False,
            )
            miss.set_gid("sweep_missing")
        ax.set_xlabel("true period (samples)")
        ax.set_ylabel("detected period (samples)")
        ax.set_title(title)
        ax.grid(True, alpha=0.35, lw=0.6)
        ax.legend(loc="upper left", fontsize="x-small")
        ax.set_gid("sweep_axes")
        return fig

    # ------------------------------------------------------------------ overlaid lag curves

    @_styled
    def lag_curves(
        self,
        curves: Iterable[tuple[str, Any, Any]],
        known_periods: Iterable[float] = (),
        title: str = "lag curves",
        *,
        figsize: tuple[float, float] = (7.0, 4.2),
        ylabel: str = "mean attention at lag",
    ) -> Figure:
        """Several labelled lag curves (label, lags in samples, values) on one axis.

        Used to compare one head across conditions, e.g. the same signal at falling SNR.
        """
        items = [(str(label), *_check_curve(lags, values)) for label, lags, values in curves]
        if not items:
            raise ValueError("lag_curves needs at least one (label, lags, values) curve")
        known = _check_periods(known_periods, "known_periods")
        fig = self._figure(figsize)
        ax = fig.subplots()
        colors = sns.color_palette("rocket", n_colors=len(items) + 2)[1:-1]
        for (label, lags, values), color in zip(items, colors):
            (line,) = ax.plot(lags, values, color=color, lw=1.4, label=label)
            line.set_gid("lag_curve")
        hi = max(float(lags.max()) for _, lags, _ in items)
        first = True
        for period in known:
            for k in range(1, int(hi // period) + 1):
                ax.axvline(k * period, color=self.palette[2], ls="--", lw=1.0, alpha=0.7,
                           label=f"known period {_fmt(period)} (and multiples)" if first else None)
                first = False
        ax.set_xlabel("lag (samples)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.35, lw=0.6)
        ax.legend(fontsize="x-small", ncol=2)
        return fig

    # ------------------------------------------------------------------ saving

    def save(self, fig: Figure, path: str | Path, **savefig_kwargs: Any) -> Path:
        """Write ``fig`` to ``path`` (format from the suffix, parents created) and close it."""
        path = Path(path)
        if not path.suffix:
            raise ValueError(f"path {str(path)!r} has no file suffix (.png, .pdf, .svg ...)")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.rc_context():
                fig.savefig(path, dpi=savefig_kwargs.pop("dpi", self.dpi), **savefig_kwargs)
        finally:
            self.close(fig)
        return path

    @staticmethod
    def close(fig: Figure) -> None:
        """Close ``fig``: release it from pyplot when pyplot manages it."""
        manager = getattr(fig.canvas, "manager", None)
        if manager is not None:
            from matplotlib import pyplot as plt

            plt.close(fig)


# ----------------------------------------------------------------------------- res helpers


def _check_periods_any(values: Any, name: str) -> np.ndarray:
    arr = _as_1d(() if values is None else values, name)
    arr = arr[np.isfinite(arr)]
    return arr


def _extend(data: np.ndarray, norm: mcolors.Normalize) -> str:
    finite = data[np.isfinite(data)]
    below = bool((finite < norm.vmin).any())
    above = bool((finite > norm.vmax).any())
    return {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (below, above), "neither"
    )


def _time_maps(res: Any) -> np.ndarray:
    maps = _to_numpy(res.time_maps)
    if maps.ndim != 4 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(
            f"res.time_maps must have shape (layers, heads, cols, cols), got {maps.shape}"
        )
    return maps


def _resolve_layer(res: Any, layer: Any) -> tuple[int, str]:
    names = list(getattr(res, "layer_names", []))
    n_layers = _time_maps(res).shape[0] if hasattr(res, "time_maps") else len(names)
    if isinstance(layer, str):
        if layer not in names:
            raise ValueError(f"unknown layer {layer!r}; available: {', '.join(names)}")
        return names.index(layer), layer
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise ValueError(f"layer must be an index or a layer name, got {layer!r}")
    index = int(layer)
    if index < 0:
        index += n_layers
    if not 0 <= index < n_layers:
        raise ValueError(f"layer index {layer} is out of range for {n_layers} layers")
    return index, names[index] if index < len(names) else f"layer {index}"


def _n_heads(res: Any, index: int) -> int:
    """Heads of layer ``index``: ``res.heads_of`` when the result has it, else the array size."""
    n_heads = _time_maps(res).shape[1]
    heads_of = getattr(res, "heads_of", None)
    if callable(heads_of):
        n_heads = min(n_heads, int(heads_of(index)))
    return n_heads


def _periods_of(
    res: Any, layer: Any, head: int, direction: str = "past", region: str = "all"
) -> tuple[np.ndarray, float]:
    """(peak lags, fundamental) from ``res.periods``; direction/region passed when not default."""
    if direction == "past" and region == "all":
        estimate = res.periods(layer, head)
    else:
        estimate = res.periods(layer, head, direction=direction, region=region)
    peaks = getattr(estimate, "peaks_samples", None)
    if peaks is None:
        peaks = getattr(estimate, "peaks", ())
    fundamental = float(getattr(estimate, "fundamental_samples", float("nan")))
    return np.asarray(peaks, dtype=float).reshape(-1), fundamental


def _resolve_head(res: Any, head: Any, index: int | None = None) -> int:
    n_heads = _time_maps(res).shape[1] if index is None else _n_heads(res, index)
    if (
        isinstance(head, bool)
        or not isinstance(head, numbers.Integral)
        or not 0 <= int(head) < n_heads
    ):
        raise ValueError(f"head must be an integer in [0, {n_heads}), got {head!r}")
    return int(head)


def _curve_of(curve: Any) -> tuple[np.ndarray, np.ndarray]:
    lags = getattr(curve, "lags", None)
    values = getattr(curve, "values", None)
    if lags is None or values is None or callable(values):
        lags, values = curve[0], curve[1]
    return _check_curve(lags, values)
