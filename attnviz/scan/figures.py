"""Figures of a whole scan, in the house style (the plotter's theme).

The per-head score grid and the detected-vs-true scatter reuse the plotter's own figures; the
two figures only a dataset has live here: the heads' mean scores with their intervals against
the null baseline, and the head-by-head similarity of lag profiles ordered by cluster.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["interval_figure", "similarity_figure"]


def _figure(plotter: Any, size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=plotter.dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def interval_figure(plotter: Any, heads: Sequence[dict[str, Any]], series: int, top: int = 20) -> Figure:
    """The ``top`` heads by mean score: mean and 95 % interval, beside the same on null series."""
    shown = [h for h in heads if np.isfinite(h["mean_score"])][:top]
    with plotter.rc_context():
        fig = _figure(plotter, (6.4, 1.2 + 0.28 * max(len(shown), 1)))
        ax = fig.subplots()
        ys = np.arange(len(shown))[::-1]
        pal = plotter.palette
        for y, h in zip(ys, shown):
            lo, hi = h["score_ci"]
            ax.plot([lo, hi], [y, y], color=pal[0], lw=2.2, solid_capstyle="round")
            ax.plot(h["mean_score"], y, "o", color=pal[0], ms=5, label="mean score, 95 % CI" if y == ys[0] else None)
            if "null_mean_score" in h:
                nlo, nhi = h["null_score_ci"]
                ax.plot([nlo, nhi], [y - 0.28, y - 0.28], color="0.55", lw=1.6)
                ax.plot(h["null_mean_score"], y - 0.28, "s", color="0.55", ms=3.5,
                        label="null (phase-randomised series), 95 % CI" if y == ys[0] else None)
                if h.get("above_null"):
                    ax.annotate("*", (hi, y), xytext=(4, -4), textcoords="offset points", color=pal[3], fontsize="medium")
        ax.set_yticks(ys, [f"{h['layer']} h{h['head']}" for h in shown], fontsize="x-small")
        ax.set_xlabel(f"periodicity score (mean over {series} series)")
        ax.set_xlim(left=0)
        ax.grid(True, axis="x", alpha=0.35, lw=0.6)
        ax.set_title(f"top {len(shown)} heads; * = interval of (score - null) above 0")
        fig.legend(loc="outside lower center", ncols=2, fontsize="x-small")
        ax.set_gid("interval_axes")
    return fig


def similarity_figure(plotter: Any, similarity: np.ndarray, order: np.ndarray, labels: Sequence[str],
                      clusters: Sequence[Sequence[int]]) -> Figure:
    """Mean correlation of heads' lag profiles across the dataset, heads ordered by the
    dendrogram so clusters form blocks (outlined)."""
    sim = similarity[np.ix_(order, order)]
    n = len(order)
    with plotter.rc_context():
        fig = _figure(plotter, (7.2, 6.4))
        ax = fig.subplots()
        import seaborn as sns

        cmap = sns.color_palette("vlag", as_cmap=True)
        image = ax.imshow(sim, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        image.set_gid("similarity")
        position = {int(head): i for i, head in enumerate(order)}
        for members in clusters:
            where = sorted(position[m] for m in members if m in position)
            if len(where) > 1 and where[-1] - where[0] + 1 == len(where):  # contiguous in leaf order
                ax.add_patch(_outline(where[0], len(where), plotter.style["outline_color"]))
        step = max(1, n // 24)
        ticks = np.arange(0, n, step)
        ax.set_xticks(ticks, [labels[order[t]] for t in ticks], rotation=90, fontsize=5.5)
        ax.set_yticks(ticks, [labels[order[t]] for t in ticks], fontsize=5.5)
        ax.set_xlabel("head (ordered by cluster)")
        ax.set_ylabel("head (ordered by cluster)")
        cbar = fig.colorbar(image, ax=ax, shrink=0.8)
        cbar.set_label("mean correlation of lag profiles across series")
        ax.set_title(f"head similarity: {sum(1 for c in clusters if len(c) > 1)} clusters outlined")
    return fig


def _outline(start: int, size: int, color: str) -> Any:
    from matplotlib.patches import Rectangle

    rect = Rectangle((start - 0.5, start - 0.5), size, size, fill=False, ec=color, lw=1.4)
    rect.set_gid("cluster")
    return rect
