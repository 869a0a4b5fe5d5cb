"""Period lines on lag axes, and the rule for which ones a figure may show.

A figure shows no reference that the data or the caller did not give:

* **reference periods** come only from the caller (a known period of a synthetic signal, a
  ``--known-period`` flag); green dashed lines, ±½-column bands, gid ``"reference_period"``;
* otherwise a head's lag panel may mark the **detected fundamental** of that head's own lag
  curve (the data gave it); dotted lines in another colour, gid ``"detected_period"``;
* with neither, nothing is drawn.

(``attnviz explain`` once drew "known period 62.8" on a user's electricity series: a default
nobody had given.)
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes

from .labels import fmt, period_label
from .theme import Theme

__all__ = ["MAX_MULTIPLES", "draw_period_lines", "draw_query_period_lines", "multiples_in", "period_lines_to_draw"]

#: At most this many multiples of each period are drawn on a lag axis.
MAX_MULTIPLES = 40

PeriodKind = Literal["reference", "detected"]


def period_lines_to_draw(
    reference: np.ndarray, detected: float | None
) -> tuple[np.ndarray, PeriodKind]:
    """The periods a lag panel marks and their kind: the caller's references when given
    (the title already states the detected fundamental), else the detected one, else none."""
    if reference.size:
        return reference, "reference"
    if detected is not None:
        return np.array([detected]), "detected"
    return np.zeros(0), "reference"


def multiples_in(period: float, lo: float, hi: float, limit: int = MAX_MULTIPLES) -> list[float]:
    """Non-zero multiples ``k * period`` inside [lo, hi], nearest to zero lag first."""
    k_max = int(math.floor(max(abs(lo), abs(hi)) / period + 1e-9))
    multiples = [k * period for k in range(-k_max, k_max + 1) if k != 0]
    multiples = [m for m in multiples if lo - 1e-9 <= m <= hi + 1e-9]
    return sorted(multiples, key=abs)[:limit]


def _legend_text(periods: np.ndarray, kind: PeriodKind) -> str:
    if kind == "detected":
        return f"detected fundamental {period_label(periods[0])} (and multiples)"
    listed = ", ".join(fmt(p) for p in periods)
    plural = "s" if periods.size > 1 else ""
    return f"reference period{plural} {listed} (and multiples)"


def draw_period_lines(
    ax: Axes,
    periods: np.ndarray,
    lo: float,
    hi: float,
    theme: Theme,
    *,
    kind: PeriodKind = "reference",
    band_half: float | None = None,
) -> list[Any]:
    """Vertical lines at every multiple of each period within [lo, hi]; returns the lines.

    ``band_half`` (reference lines only): half a column in samples, drawn as a band around
    each line, the resolution within which a peak matches the period."""
    lines: list[Any] = []
    if not periods.size:
        return lines
    if kind == "detected":
        color, ls, lw, gid = theme.palette[4], ":", 1.4, "detected_period"
    else:
        color, ls, lw, gid = theme.palette[2], "--", 1.1, "reference_period"
    label: str | None = _legend_text(periods, kind)
    band_label: str | None = "±½ column"
    for period in periods:
        for m in multiples_in(float(period), lo, hi):
            line = ax.axvline(
                m,
                color=color,
                ls=ls,
                lw=lw,
                alpha=0.9 if math.isclose(abs(m), period) else 0.55,
                label=label,
                zorder=2,
            )
            line.set_gid(gid)
            lines.append(line)
            label = None
            if band_half and kind == "reference":
                band = ax.axvspan(
                    m - band_half, m + band_half, color=color, alpha=0.10, lw=0, zorder=1, label=band_label
                )
                band.set_gid("reference_period_band")
                band_label = None
    return lines


def draw_query_period_lines(
    ax: Axes, centre: float, periods: np.ndarray, theme: Theme, *, lo: float = 0.0, limit: int = MAX_MULTIPLES
) -> list[Any]:
    """Lines at ``centre - k * period`` (k = 1 .. ``limit``, down to time ``lo``, the start of
    the first column): where a head attending one reference period back from the query column
    would put its attention.  At most ``limit`` lines per period, the nearest to the query."""
    lines: list[Any] = []
    if periods.size == 1:
        label: str | None = f"query − k·{fmt(periods[0])} (reference period)"
    else:
        label = f"query − k·P (reference periods {', '.join(fmt(p) for p in periods)})"
    for period in periods:
        k = 1
        while k <= limit and centre - k * period >= lo:
            line = ax.axvline(
                centre - k * period,
                color=theme.palette[2],
                ls=":",
                lw=1.0,
                label=label,
            )
            label = None
            line.set_gid("reference_period")
            lines.append(line)
            k += 1
    return lines
