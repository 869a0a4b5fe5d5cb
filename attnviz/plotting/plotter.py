"""``Plotter``: the notebook entry point, one object holding a theme and a colour scale.

Every method delegates to the layers below (:mod:`.drawers`, :mod:`.layouts`,
:mod:`.results`, :mod:`.theme`) with this plotter's look, so a notebook sets its style once
and every figure follows.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from . import drawers, layouts, results
from .scale import ColorScale
from .theme import Theme, close_figure, save_figure

T = TypeVar("T")

__all__ = ["Plotter"]


def _with_look(function: Callable[..., T], scale: bool = True) -> Callable[..., T]:
    """A Plotter method calling ``function`` with the plotter's theme (and colour scale).

    Its signature is the function's without ``theme``/``scale``, so ``help()`` and editors
    show the arguments a notebook passes."""
    filled = ("theme", "scale") if scale else ("theme",)

    @wraps(function)
    def method(self: "Plotter", *args: Any, **kwargs: Any) -> T:
        look = {name: getattr(self, name) for name in filled}
        return function(*args, **look, **kwargs)

    signature = inspect.signature(function)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    kept = [p for name, p in signature.parameters.items() if name not in filled]
    method.__signature__ = signature.replace(parameters=[self_param, *kept])  # type: ignore[attr-defined]
    return method


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
    style: None for :data:`~attnviz.plotting.theme.STYLE`, a seaborn style name
        ("whitegrid", ...), or a dict overriding keys of it.

    Reference periods (``reference_periods=``) are drawn only when given; without them a
    head's lag panel marks its detected fundamental instead.
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
        self.scale = ColorScale(tuple(percentiles), gamma, log, top_percent)
        self.theme = Theme.from_style(style, dpi)

    # ------------------------------------------------------------------ look

    @property
    def percentiles(self) -> tuple[float, float]:
        return self.scale.percentiles

    @property
    def gamma(self) -> float:
        return self.scale.gamma

    @property
    def log(self) -> bool:
        return self.scale.log

    @property
    def top_percent(self) -> float | None:
        return self.scale.top_percent

    @property
    def dpi(self) -> float:
        return self.theme.dpi

    @property
    def style(self) -> dict[str, Any]:
        return self.theme.style

    @property
    def cmap(self) -> mcolors.Colormap:
        return self.theme.cmap

    @property
    def palette(self) -> list[tuple[float, float, float]]:
        return self.theme.palette

    @contextmanager
    def rc_context(self) -> Iterator[None]:
        """Context in which matplotlib uses this plotter's style (used by every method)."""
        with self.theme.rc_context():
            yield

    def color_limits(self, time_map: Any) -> tuple[float, float]:
        """(vmin, vmax) of a map: its ``percentiles`` over finite values (log: positive only)."""
        return self.scale.limits(time_map)

    def norm(self, time_map: Any) -> mcolors.Normalize:
        """The colour normalisation used for ``time_map`` (Normalize / PowerNorm / LogNorm)."""
        return self.scale.norm(time_map)

    def top_mask(self, time_map: Any) -> np.ndarray | None:
        """Cells at or above the ``top_percent`` percentile (None when disabled)."""
        return self.scale.top_mask(time_map)

    # ------------------------------------------------------------------ drawers and figures
    # Each is the module function of the same name with this plotter's theme (and colour
    # scale) filled in; ``help(plotter.head_figure)`` shows that function's signature.

    draw_time_map = _with_look(drawers.draw_time_map)
    draw_lag_curve = _with_look(drawers.draw_lag_curve, scale=False)
    head_figure = _with_look(layouts.head_figure)
    overview_figure = _with_look(layouts.overview_figure)
    score_heatmap = _with_look(layouts.score_heatmap, scale=False)
    series_figure = _with_look(layouts.series_figure, scale=False)
    period_sweep = _with_look(layouts.period_sweep_figure, scale=False)
    lag_curves = _with_look(layouts.lag_curves_figure, scale=False)
    head_panel = _with_look(results.head_panel)
    save_head = _with_look(results.save_head)
    layer_overview = _with_look(results.layer_overview)
    score_grid = _with_look(results.score_grid, scale=False)
    series_panel = _with_look(results.series_panel, scale=False)

    # ------------------------------------------------------------------ saving

    def save(self, fig: Figure, path: str | Path, **savefig_kwargs: Any) -> Path:
        """Write ``fig`` into an existing folder (format from the suffix) and close it."""
        return save_figure(fig, path, self.theme, **savefig_kwargs)

    @staticmethod
    def close(fig: Figure) -> None:
        """Close ``fig``: release it from pyplot when pyplot manages it."""
        close_figure(fig)
