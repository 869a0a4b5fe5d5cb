"""Text on figures: peak labels that never overlap, and the number formats every label uses.

Peak labels are placed at draw time (:class:`PeakLabels`), after layout, because whether two
labels collide depends on the final axes size; :func:`add_peak_labels` is the one entry that
creates them, keeps room above the peaks and registers the placer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib import patheffects
from matplotlib.artist import Artist
from matplotlib.axes import Axes

__all__ = [
    "MAX_LABEL_RAISE",
    "PEAK_LABEL_OFFSET",
    "PeakLabels",
    "add_peak_labels",
    "fmt",
    "label_candidates",
    "nice_col_step",
    "pct",
    "period_label",
    "reserve_label_headroom",
]

#: Points between a peak marker and its label (before any lift to avoid another label).
PEAK_LABEL_OFFSET = 7.0
#: How far (in label heights) a peak label may be lifted above its place to avoid another.
MAX_LABEL_RAISE = 2.5
#: Share of a panel's pre-layout height that survives the layout (titles, labels, colorbars).
LAYOUT_SHRINK = 0.8
#: At most this share of a lag panel is kept free above the peaks for their labels.
MAX_HEADROOM = 0.4


# ----------------------------------------------------------------------------- numbers


def fmt(x: float) -> str:
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


def period_label(x: float) -> str:
    """Detected period in samples with one decimal below 1000: 62.9, 125.0, 1156."""
    x = float(x)
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.1f}" if abs(x) < 1000 else f"{x:.0f}"


def pct(x: float) -> str:
    """Percentile/percent label without rounding away decimals: 99.99, 0.01, 5."""
    return f"{float(x):.6g}"


def nice_col_step(cols: int, target: int = 6) -> int:
    """Tick step in columns giving about ``target`` ticks, from a list of round numbers."""
    raw = max(1, cols / target)
    for step in (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256, 500):
        if step >= raw:
            return step
    return int(10 ** math.ceil(math.log10(raw)))


# ----------------------------------------------------------------------------- peak labels


class PeakLabels(Artist):
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


def reserve_label_headroom(ax: Axes, labels: list[Any]) -> None:
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


def label_candidates(xs: np.ndarray, heights: np.ndarray, limit: int = 8) -> list[tuple[float, float]]:
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


def add_peak_labels(ax: Axes, xs: np.ndarray, heights: np.ndarray, color: Any) -> list[Any]:
    """Label the chosen peaks of a lag panel (placed at draw time); returns the annotations."""
    texts = []
    for x, y in label_candidates(xs, heights):
        text = ax.annotate(
            fmt(round(x, 1)),
            (x, y),
            xytext=(0, PEAK_LABEL_OFFSET),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="x-small",
            color=color,
            # a white halo keeps a label legible where it crosses the curve or a period line
            path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")],
            zorder=6,  # above the peak markers (5): a staircase of peaks puts one under a label
        )
        text.set_gid("peak_label")
        texts.append(text)
    placer = PeakLabels(texts, base_points=PEAK_LABEL_OFFSET)
    placer.set_gid("peak_labels")
    ax.add_artist(placer)
    reserve_label_headroom(ax, texts)
    return texts
