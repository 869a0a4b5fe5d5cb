"""The look every attnviz figure shares, and the figure objects that carry it.

:data:`STYLE` (seaborn "ticks" + "paper" context, the colour-blind palette, the "rocket"
colormap) is applied through ``matplotlib.rc_context`` (:meth:`Theme.rc_context`), so importing
attnviz never changes global rcParams.

Figures are :class:`AttnvizFigure` objects on an Agg canvas and are *not* registered with
pyplot: nothing accumulates in ``plt.get_fignums()``, no GUI backend is needed, and notebooks
still display a returned figure.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import matplotlib as mpl
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .checks import real

__all__ = [
    "STYLE",
    "AttnvizFigure",
    "Theme",
    "check_folder",
    "close_figure",
    "default_theme",
    "make_cmap",
    "merge_style",
    "new_figure",
    "save_figure",
]

#: Default look shared by every figure.  ``Theme.from_style(...)`` / ``Plotter(style=...)``
#: override any key; ``rc`` is a dict of extra rcParams applied last.
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


class AttnvizFigure(Figure):
    """A plain Figure that also renders itself in notebooks where pyplot was never imported."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


def merge_style(style: str | dict | None) -> dict[str, Any]:
    """:data:`STYLE` with ``style`` applied: a seaborn style name or a dict of known keys."""
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


def make_cmap(name: Any) -> mcolors.Colormap:
    """A colormap by name (seaborn or matplotlib) whose NaN/under/over colours are its ends,
    so clipped cells and empty cells read as the extremes rather than as white holes."""
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


@dataclass(frozen=True)
class Theme:
    """Resolved look: the merged style, its colormap and palette, the rcParams and the dpi.

    Drawers read colours from it; layouts also enter :meth:`rc_context` and make figures
    at its dpi.  Build one with :meth:`from_style`.
    """

    style: dict[str, Any]
    cmap: mcolors.Colormap
    palette: list[tuple[float, float, float]]
    dpi: float
    rc: dict[str, Any] = field(repr=False)

    @classmethod
    def from_style(cls, style: str | dict | None = None, dpi: float = 150) -> "Theme":
        dpi = real(dpi, "dpi")
        if dpi <= 0:
            raise ValueError(f"dpi must be > 0, got {dpi!r}")
        merged = merge_style(style)
        palette = list(sns.color_palette(merged["palette"]))
        rc: dict[str, Any] = {}
        rc.update(sns.axes_style(merged["style"]))
        rc.update(sns.plotting_context(merged["context"], font_scale=merged["font_scale"]))
        rc["axes.prop_cycle"] = mpl.cycler(color=palette)
        rc["figure.dpi"] = dpi
        rc["savefig.dpi"] = dpi
        rc.update(merged["rc"])
        return cls(merged, make_cmap(merged["cmap"]), palette, dpi, rc)

    @property
    def boundary_color(self) -> Any:
        return self.style["boundary_color"]

    @property
    def outline_color(self) -> Any:
        return self.style["outline_color"]

    @contextmanager
    def rc_context(self) -> Iterator[None]:
        """Context in which matplotlib uses this theme (entered by every layout)."""
        with mpl.rc_context(self.rc):
            yield


@lru_cache(maxsize=1)
def default_theme() -> Theme:
    """:data:`STYLE` at 150 dpi: what a drawer uses when the caller passes no theme."""
    return Theme.from_style()


def new_figure(figsize: tuple[float, float], dpi: float) -> AttnvizFigure:
    """A constrained-layout figure on its own Agg canvas, unknown to pyplot."""
    fig = AttnvizFigure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def close_figure(fig: Figure) -> None:
    """Release ``fig`` from pyplot when pyplot manages it (ours need nothing)."""
    manager = getattr(fig.canvas, "manager", None)
    if manager is not None:
        from matplotlib import pyplot as plt

        plt.close(fig)


def check_folder(folder: str | Path) -> Path:
    """``folder`` if it exists: figures go into folders the report writer made, never new ones."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder {str(folder)!r} does not exist; create it before saving figures into it")
    return folder


def save_figure(fig: Figure, path: str | Path, theme: Theme, **savefig_kwargs: Any) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) and close it.

    The folder must exist (:func:`check_folder`): creating folders is the report writer's
    job, and a mistyped path silently growing a new tree hid where figures went."""
    path = Path(path)
    if not path.suffix:
        raise ValueError(f"path {str(path)!r} has no file suffix (.png, .pdf, .svg ...)")
    try:
        check_folder(path.parent)
        with theme.rc_context():
            fig.savefig(path, dpi=savefig_kwargs.pop("dpi", theme.dpi), **savefig_kwargs)
    finally:
        close_figure(fig)
    return path
