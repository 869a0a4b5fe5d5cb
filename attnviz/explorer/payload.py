"""An AnalysisResult -> the explorer page's data: checked, then packed into typed arrays.

Everything the page draws is computed here, by the same calls a Python user makes
(``res.lag_curve``, ``res.periods``, ``res.ranked_heads``), so the page can never disagree with
``summary.json`` or the static figures.  Nothing non-finite gets through: a NaN or an infinity in
a real head's time map where its layer saw the columns, in the series, the forecast or the truth
is an error naming where it is (NaN *padding* of layers with fewer heads than the widest is not a
head and is never sent; cells a layer never saw go as a mask, see ``unseen``).

Array encoding (little-endian, base64):

* ``maps``: every real head's (cols, cols) time map, quantised per head to uint16 over its own
  [min, max] (``map_lo``, ``map_hi``): value = lo + q * (hi - lo) / 65535, so the error is at most
  (hi - lo) / 131070 -- far below what a colour scale can show, and small enough for the lag
  profile of one query column drawn from the same numbers.
* ``curves``: the lag curve of every real head, float32, lags k * samples_per_col, k = 1..cols-1;
  ``curve_valid``: uint8 per head and lag, 0 where the curve has no value (sent as 0.0).
* ``unseen``: per layer, null when it saw every column, else a uint8 (cols, cols) mask, 1 where
  the layer never saw the query or key column (``res.layer_cols``: VisionTS' encoder sees only
  the context columns).  Those cells are NaN in ``res.time_maps``; here they are quantised as 0,
  left out of ``map_lo``/``map_hi``, and the page draws them hatched as "not seen by this layer".
* ``history``, ``forecast``, ``truth``: float64 (a few thousand values at most).

Time: ``grid.sample_offset`` and ``grid.samples_per_col`` place column ``c`` at sample
``sample_offset + c * samples_per_col`` of the series, as :meth:`attnviz.grid.TokenGrid.col_start_sample`
does for the static figures (the page's ``at(c)``); ``sample_offset`` is ``-pad_left`` for VisionTS.
"""
from __future__ import annotations

import base64
import math
import numbers
import warnings
from typing import Any, Iterable

import numpy as np

from ..grid import check_reference_periods

__all__ = ["build_payload", "check_result", "seen_cols"]

QUANT_LEVELS = 65535


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _finite_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _vector(values: Any, what: str) -> np.ndarray:
    """A finite 1-D float64 array, or a ValueError naming ``what`` and the first bad index."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a 1-D array of numbers, got {type(values).__name__}") from None
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(
            f"{what} holds {int(bad.sum())} NaN/infinite value(s) (first at index {first}: "
            f"{arr[first]}); the explorer refuses non-finite values instead of drawing them as gaps"
        )
    return arr


def seen_cols(res: Any) -> list[int]:
    """Columns each layer saw, in layer order: ``res.layer_cols[name]`` (VisionTS' encoder sees
    only the context columns; they are the FIRST columns of the common grid) or every column."""
    names = list(getattr(res, "layer_names", []) or [])
    cols = int(np.asarray(res.time_maps).shape[-1])
    given = dict(getattr(res, "layer_cols", {}) or {})
    out = []
    for name in names:
        s = given.get(name, cols)
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or not 1 <= int(s) <= cols:
            raise ValueError(f"layer_cols[{name!r}] is {s!r}: a layer sees 1 to {cols} token columns")
        out.append(int(s))
    return out


def check_result(res: Any) -> None:
    """Refuse a result the page cannot show: no maps at all, or non-finite values in a real head
    where its layer saw the columns (cells a layer never saw are NaN by design and drawn as
    'not seen by this layer')."""
    names = list(getattr(res, "layer_names", []) or [])
    maps = np.asarray(getattr(res, "time_maps", np.zeros((0, 0, 0, 0))))
    heads = [int(res.heads_of(i)) for i in range(len(names))]
    if not names or maps.size == 0 or sum(heads) == 0:
        raise ValueError(
            f"this AnalysisResult holds no attention maps ({len(names)} layer(s), time_maps of shape "
            f"{maps.shape}); capture at least one attention layer before making an explorer"
        )
    if maps.ndim != 4 or maps.shape[0] != len(names) or maps.shape[1] < max(heads):
        raise ValueError(
            f"time_maps of shape {maps.shape} does not hold {len(names)} layers of up to "
            f"{max(heads)} heads"
        )
    for li, (name, n, s) in enumerate(zip(names, heads, seen_cols(res))):
        block = maps[li, :n, :s, :s]
        bad = ~np.isfinite(block)
        if bad.any():
            h = int(np.argmax(bad.reshape(n, -1).any(axis=1)))
            where = "" if s == maps.shape[-1] else f" in the {s} columns it saw"
            raise ValueError(
                f"time map of {name} (layer {li}) head {h} holds {int(bad[h].sum())} NaN/infinite "
                f"value(s){where}; the explorer refuses non-finite attention instead of drawing it as gaps"
            )


def _unseen_mask(cols: int, seen: int) -> np.ndarray:
    """(cols, cols) uint8, 1 where a layer that saw the first ``seen`` columns has no value."""
    idx = np.arange(cols)
    return ((idx[:, None] >= seen) | (idx[None, :] >= seen)).astype(np.uint8)


def _forecast_values(res: Any) -> np.ndarray | None:
    fobj = getattr(res, "forecast", None)
    if fobj is None:
        return None
    fc = getattr(fobj, "forecast", None)
    if fc is None:  # a bare array, or an object with only the full reconstruction
        full = np.asarray(getattr(fobj, "full", fobj), dtype=np.float64)
        fc = full[len(res.series):] if full.ndim == 1 and len(full) > len(res.series) else full
    return _vector(fc, "the forecast")


def _selected(res: Any, selected: Any, ranked: list) -> tuple[int, int]:
    if selected is None:
        if ranked:
            return res.head_index(ranked[0].layer, int(ranked[0].head))
        return res.head_index(0, 0)
    if isinstance(selected, (str, bytes)) or not isinstance(selected, Iterable) or len(tuple(selected)) != 2:
        raise ValueError(f"selected must be a (layer, head) pair, got {selected!r}")
    layer, head = tuple(selected)
    return res.head_index(layer, head)


def _colormap_lut(name: str = "rocket") -> str:
    """256 RGB entries of the colour map the static figures use (seaborn's 'rocket')."""
    import seaborn as sns

    cmap = sns.color_palette(name, as_cmap=True)
    rgb = np.round(np.asarray(cmap(np.linspace(0.0, 1.0, 256)))[:, :3] * 255).astype(np.uint8)
    return base64.b64encode(rgb.tobytes()).decode("ascii")


def build_payload(res: Any, *, title: str | None = None, reference_periods: Any = (), truth: Any = None,
                  selected: Any = None) -> dict[str, Any]:
    """Everything the page needs, as a JSON-ready dict (arrays as base64; see the module doc)."""
    check_result(res)
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title must be a string, got {type(title).__name__}")
    names = list(res.layer_names)
    heads = [int(res.heads_of(i)) for i in range(len(names))]
    grid = res.grid
    cols = int(grid.cols)
    spc = float(grid.samples_per_col)

    history = _vector(res.series, "the series (history)")
    forecast = _forecast_values(res)
    actual = None
    if truth is not None:
        actual = _vector(truth, "truth")
        expected = len(forecast) if forecast is not None else int(grid.horizon)
        if actual.size != expected:
            raise ValueError(
                f"truth must have as many values as the forecast ({expected}), got {actual.size}"
            )
    references = list(check_reference_periods(reference_periods, grid))

    from ..ranking import RankingCaveatWarning

    with warnings.catch_warnings():  # the caveats are shown in the page instead
        warnings.simplefilter("ignore", RankingCaveatWarning)
        ranked = list(res.ranked_heads)
    caveats = [c.short for c in res.series_periodicity.caveats()]
    sel = _selected(res, selected, ranked)

    maps = np.asarray(res.time_maps, dtype=np.float64)
    seen = seen_cols(res)
    quant, lo_all, hi_all, curves, periods = [], [], [], [], []
    lags = None
    for li, n in enumerate(heads):
        unseen = _unseen_mask(cols, seen[li]).astype(bool)
        for h in range(n):
            m = maps[li, h]
            lo, hi = float(m[~unseen].min()), float(m[~unseen].max())
            scale = (hi - lo) / QUANT_LEVELS if hi > lo else 1.0
            # unseen cells travel as the layer's mask (`unseen`), their quantised value is 0
            quant.append(np.round((np.where(unseen, lo, m) - lo) / scale).astype("<u2"))
            lo_all.append(lo)
            hi_all.append(hi)
            curve = res.lag_curve(li, h)
            lags = curve.lags
            values = np.asarray(curve.values, dtype=np.float64)
            curves.append(values)
            est = res.periods(li, h)
            peaks = [float(p) for p in est.peaks_samples]
            periods.append(
                {
                    "peaks": peaks,
                    "labels": [f"{p:.1f}" for p in peaks],
                    "harmonics": [int(k) for k in est.harmonics],
                    "fundamental": _finite_or_none(est.fundamental_samples),
                    "fundamental_label": (
                        f"{est.fundamental_samples:.1f}" if est.found else None
                    ),
                }
            )
    curve_arr = np.asarray(curves, dtype=np.float64)
    # a finite map gives a finite curve except where a lag has no query (or, for a layer that saw
    # only its first columns, no seen query): those go as zeros flagged 0 in `curve_valid`, one
    # byte per head and lag (the page draws no point there and ends the axis at the last valid lag)
    curve_valid = np.isfinite(curve_arr)

    from ..ranking import reliable_lags

    reliable = np.asarray(reliable_lags(grid), dtype=bool)
    ranking = []
    for rank, s in enumerate(ranked, start=1):
        li, h = res.head_index(s.layer, int(s.head))
        ranking.append(
            {
                "rank": rank,
                "layer": li,
                "head": h,
                "score": _finite_or_none(s.score),
                "period": _finite_or_none(s.period_samples),
                "agreement": _finite_or_none(s.agreement),
                "consistency": _finite_or_none(s.consistency),
                "clarity": _finite_or_none(s.clarity),
            }
        )
    return {
        "title": title,
        "layers": names,
        "heads": heads,
        "grid": {
            "cols": cols,
            "samples_per_col": spc,
            "sample_offset": float(grid.sample_offset),
            "history_boundary": float(grid.history_boundary),
            "history_cols": int(grid.history_cols),
            "history_length": int(len(history)),
            "horizon": int(grid.horizon),
            "rows": int(grid.rows),
        },
        "time_convention": str(getattr(res, "time_convention", "sum")),
        "maps": _b64(np.concatenate([q.ravel() for q in quant]), "<u2"),
        "map_lo": lo_all,
        "map_hi": hi_all,
        "lags": [float(x) for x in lags],
        "curves": _b64(np.nan_to_num(curve_arr, nan=0.0).ravel(), "<f4"),
        "curve_valid": _b64(curve_valid.astype(np.uint8).ravel(), "u1"),
        "seen_cols": seen,
        "unseen": [None if s == cols else _b64(_unseen_mask(cols, s).ravel(), "u1") for s in seen],
        "reliable": [bool(v) for v in reliable],
        "periods": periods,
        "ranking": ranking,
        "caveats": caveats,
        "history": _b64(history, "<f8"),
        "forecast": None if forecast is None else _b64(forecast, "<f8"),
        "truth": None if actual is None else _b64(actual, "<f8"),
        "reference_periods": references,
        "selected": [int(sel[0]), int(sel[1])],
        "cmap": _colormap_lut(),
    }
