"""Figures of a whole scan, in the house style (the plotter's theme).

The per-head score grid and the detected-vs-true scatter reuse the plotter's own figures; the
two figures only a dataset has live here: the heads' mean scores with their intervals against
the null baseline, the head-by-head similarity of lag profiles ordered by cluster, and (with
``--ablate``) each series' error change when its top-K heads vs K random heads are ablated.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["ablation_figure", "interval_figure", "similarity_figure"]


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
        marked = any("null_mean_score" in h for h in shown)
        ax.set_title(f"top {len(shown)} heads" + ("; * = above the null (paired t-test, BH q < 0.05)" if marked else ""))
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


def ablation_figure(plotter: Any, topk: np.ndarray, random: np.ndarray, stats: dict[str, Any]) -> Figure:
    """Left: each series' ΔMAE with its top-K heads ablated against with K random heads (above
    the diagonal: top-K hurt more; symmetric-log axes, linear within the median |ΔMAE|, since a
    few series change by far more than most).  Right: the mean ΔMAE of top-K, of random heads and
    of their paired difference, each with its 95 % bootstrap interval over series."""
    ok = np.isfinite(topk) & np.isfinite(random)
    top, rand = np.asarray(topk, float)[ok], np.asarray(random, float)[ok]
    k, pal = stats["k"], plotter.palette
    rows = [(f"top-{k} heads", stats["topk_delta_mae"], pal[0]), (f"{k} random heads", stats["random_delta_mae"], "0.4"),
            (f"top-{k} - random\n(paired per series)", stats["difference"], pal[3])]
    with plotter.rc_context():
        fig = _figure(plotter, (11.5, 5.0))
        ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.1]})
        both = np.concatenate([top, rand, [0.0]])
        linear = float(np.median(np.abs(both[both != 0]))) if np.any(both != 0) else 1.0
        lo, hi = min(1.4 * float(both.min()), -linear), max(1.4 * float(both.max()), linear)  # room on symlog axes
        ax.plot([lo, hi], [lo, hi], ls="--", color="0.5", lw=1, label="equal harm")
        ax.axhline(0, color="0.75", lw=0.6)
        ax.axvline(0, color="0.75", lw=0.6)
        ax.scatter(rand, top, s=16, color=pal[0], alpha=0.6, lw=0, label="one series", gid="series")
        for set_scale, set_lim in ((ax.set_xscale, ax.set_xlim), (ax.set_yscale, ax.set_ylim)):
            set_scale("symlog", linthresh=linear)
            set_lim(lo, hi)
        ax.set_xlabel(f"ΔMAE, {k} random heads ablated")
        ax.set_ylabel(f"ΔMAE, top-{k} heads ablated")
        ax.set_title(f"each series (above the line: top-{k} hurt more)\nsymlog axes, linear within ±{linear:.2g}",
                     fontsize="medium")
        ax.legend(loc="upper left", fontsize="x-small")
        for y, (label, entry, color) in zip([2, 1, 0], rows):
            bx.plot(entry["ci"], [y, y], color=color, lw=3, solid_capstyle="round")
            bx.plot(entry["mean"], y, "D", color=color, ms=7, gid="mean")
            bx.annotate(f"{entry['mean']:+.3g}  [{entry['ci'][0]:+.3g}, {entry['ci'][1]:+.3g}]", (entry["mean"], y),
                        xytext=(0, 9), textcoords="offset points", ha="center", fontsize="small", color=color)
        bx.axvline(0, color="0.3", lw=0.8)
        bx.set_yticks([2, 1, 0], [r[0] for r in rows], fontsize="small")
        bx.set_ylim(-0.6, 2.6)
        bx.margins(x=0.15)
        bx.set_xlabel("mean ΔMAE = MAE(ablated) - MAE(unablated), vs the truth")
        bx.grid(True, axis="x", alpha=0.35, lw=0.6)
        share = stats["share_topk_hurts_more"]
        bx.set_title(f"means with 95 % bootstrap intervals over {stats['series']} series\ntop-{k} hurt more in "
                     f"{share['count']} series ({share['share']:.0%}, interval {share['ci'][0]:.0%}-{share['ci'][1]:.0%})",
                     fontsize="medium")
        fig.suptitle(f"{stats['mode']}-ablation of each series' top-{k} heads vs {k} random heads")
    return fig
