"""How attention values map to colours: robust per-map limits, optional gamma or log.

Attention maps are dominated by a few cells (the diagonal, the CLS column's leftovers); a
min-max scale paints everything else black.  :class:`ColorScale` clips each map at its own
percentiles and can lift faint structure (``gamma < 1``) or spread decades (``log``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colors as mcolors

from .checks import real
from .labels import pct

__all__ = ["ColorScale", "extend_of"]


@dataclass(frozen=True)
class ColorScale:
    """Percentile clipping plus a linear, power (gamma) or log norm, and the top-cell outline.

    percentiles: (lo, hi) percentiles of each map mapped to the ends of the colour scale
        (values outside saturate).  ``0 <= lo < hi <= 100``.
    gamma: exponent of a ``PowerNorm`` (``gamma < 1`` lifts faint structure); must be > 0.
    log: logarithmic colour scale (``LogNorm``) instead; cannot be combined with gamma != 1.
    top_percent: cells at or above this percentile of the map get an outline
        (99.99 -> the top 0.01 %, in practice the maximum); ``None`` disables it.
    """

    percentiles: tuple[float, float] = (5.0, 99.0)
    gamma: float = 1.0
    log: bool = False
    top_percent: float | None = 99.99

    def __post_init__(self) -> None:
        """Check every setting once, here, so no figure is drawn with a nonsensical scale."""
        try:
            lo, hi = (float(p) for p in self.percentiles)
        except (TypeError, ValueError):
            raise ValueError(
                f"percentiles must be a pair (lo, hi) with 0 <= lo < hi <= 100, got {self.percentiles!r}"
            ) from None
        if not (0 <= lo < hi <= 100):
            raise ValueError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {tuple(self.percentiles)!r}")
        gamma = real(self.gamma, "gamma")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        if self.log and gamma != 1.0:
            raise ValueError(
                f"log=True cannot be combined with gamma={gamma!r}; use one of them (gamma=1 with log)"
            )
        top = self.top_percent
        if top is not None:
            top = real(top, "top_percent")
            if not 0 < top <= 100:
                raise ValueError(f"top_percent must lie in (0, 100], got {top!r}")
        for name, value in (("percentiles", (lo, hi)), ("gamma", gamma), ("log", bool(self.log)), ("top_percent", top)):
            object.__setattr__(self, name, value)  # normalised: floats, a tuple, a bool

    def limits(self, time_map: Any) -> tuple[float, float]:
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

    def norm(self, time_map: Any) -> mcolors.Normalize:
        """The colour normalisation of ``time_map`` (Normalize / PowerNorm / LogNorm)."""
        vmin, vmax = self.limits(time_map)
        if self.log:
            return mcolors.LogNorm(vmin=vmin, vmax=vmax, clip=False)
        if self.gamma != 1.0:
            return mcolors.PowerNorm(self.gamma, vmin=vmin, vmax=vmax, clip=False)
        return mcolors.Normalize(vmin=vmin, vmax=vmax, clip=False)

    def unit_norm(self) -> mcolors.Normalize:
        """The norm's shape on [0, 1]: a shared colour bar for maps on their own scales."""
        if self.gamma != 1.0 and not self.log:
            return mcolors.PowerNorm(self.gamma, 0, 1)
        return mcolors.Normalize(0, 1)

    def top_mask(self, time_map: Any) -> np.ndarray | None:
        """Cells at or above the ``top_percent`` percentile (None when disabled)."""
        if self.top_percent is None:
            return None
        arr = np.asarray(time_map, dtype=float)
        finite = np.isfinite(arr)
        threshold = float(np.percentile(arr[finite], self.top_percent))
        return finite & (arr >= threshold)

    def top_label(self) -> str:
        """Legend text of the top-cell outline: "top 0.01 % (≥ p99.99)"."""
        top = 100.0 if self.top_percent is None else self.top_percent
        return f"top {pct(100 - top)} % (≥ p{pct(top)})"

    def label(self) -> str:
        """Colour-bar label naming the clipping and the norm."""
        lo, hi = self.percentiles
        kind = "log" if self.log else ("linear" if self.gamma == 1.0 else f"γ = {self.gamma:g}")
        return f"attention (p{pct(lo)}–p{pct(hi)}, {kind})"


def extend_of(data: np.ndarray, norm: mcolors.Normalize) -> str:
    """Colour-bar ``extend`` that shows which ends of ``data`` the norm clipped."""
    finite = data[np.isfinite(data)]
    below = bool((finite < norm.vmin).any())
    above = bool((finite > norm.vmax).any())
    return {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (below, above), "neither"
    )
