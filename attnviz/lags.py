"""Token attention -> time-to-time maps -> lag curves, in real samples.

Two steps, both pure numpy so that tests and ``keep_full`` paths can use them directly:

``time_maps_from_attention``
    A token map ``A`` of shape (..., S, S) over ``prefix + rows x cols`` tokens (row-major, prefix
    first) becomes a time map ``T`` of shape (..., cols, cols).  Prefix (CLS) tokens are dropped as
    queries and keys; the mass they received is reported by ``prefix_mass_from_attention``.  With
    the default ``"sum"`` convention, for query column ``q`` and key column ``k``::

        T[q, k] = (1 / rows) * sum_{query rows r} sum_{key rows r'} A[(r, q), (r', k)]

    i.e. the mass one query column sends to one key column (value axis collapsed), averaged over
    the query tokens of that column.  Each row then sums to ``1 - prefix_mass[q]``.  ``"mean"``
    averages over both row sets (``T_mean = T_sum / rows``).

``lag_curve`` (also named ``lag_curves``)
    The mean of the k-th sub-diagonal of a time map (or of each map of a stack), k = 1 .. cols - 1,
    with lags reported in real samples of *this* call (``k * grid.samples_per_col``).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .grid import TokenGrid

DIRECTIONS = ("past", "future")
REGIONS = ("all", "history", "forecast")


class LagCurve(NamedTuple):
    """Attention as a function of lag.

    lags: lags in real samples (``k * samples_per_col`` for k = 1 .. K).
    values: mean attention mass on the k-th diagonal; NaN where the diagonal has no query in the
    chosen region.
    """

    lags: np.ndarray
    values: np.ndarray


def to_numpy(array: Any) -> np.ndarray:
    """numpy view of a numpy array or a (possibly CUDA, possibly grad-tracking) torch tensor."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):
        array = array.detach().cpu()
        if str(getattr(array, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            array = array.float()
        return array.numpy()
    return np.asarray(array)


def check_convention(convention: str) -> str:
    """``convention`` if it is one of ``reducers.TIME_CONVENTIONS``, else a ValueError naming them."""
    # Imported here, not at the top: reducers loads torch, and lags (through plotting) must not.
    from .reducers import TIME_CONVENTIONS

    if convention not in TIME_CONVENTIONS:
        raise ValueError(
            f"time convention must be one of {TIME_CONVENTIONS}, got {convention!r}"
        )
    return convention


def _split_tokens(attn: Any, grid: TokenGrid) -> np.ndarray:
    arr = to_numpy(attn).astype(np.float64, copy=False)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"attention must have shape (..., S, S), got {arr.shape}")
    if arr.shape[-1] != grid.seq_len:
        raise ValueError(
            f"attention map has {arr.shape[-1]} tokens but the grid has {grid.seq_len} "
            f"({grid.prefix_tokens} prefix + {grid.rows} rows x {grid.cols} cols); the map does "
            f"not belong to this call's grid"
        )
    return arr


def _natural(patches: np.ndarray, grid: TokenGrid, axes: tuple[int, ...]) -> np.ndarray:
    """Patch axes put in row-major order when ``grid.token_order`` shuffles the sequence."""
    positions = grid.natural_positions
    for axis in () if positions is None else axes:
        patches = np.take(patches, positions, axis=axis)
    return patches


def time_maps_from_attention(
    attn: Any, grid: TokenGrid, convention: str = "sum"
) -> np.ndarray:
    """Collapse token attention (..., S, S) to time maps (..., cols, cols); see the module doc.

    ``convention="sum"``: mean over query rows of the sum over key rows (rows sum to
    ``1 - prefix_mass``).  ``convention="mean"``: mean over both (= the sum convention / rows).
    """
    check_convention(convention)
    arr = _split_tokens(attn, grid)
    p, r, c = grid.prefix_tokens, grid.rows, grid.cols
    patch = _natural(arr[..., p:, p:], grid, (-2, -1)).reshape(arr.shape[:-2] + (r, c, r, c))
    out = patch.sum(axis=-2).mean(axis=-3)  # sum key rows, then mean query rows
    if convention == "mean":
        out = out / r
    return out


def prefix_mass_from_attention(attn: Any, grid: TokenGrid) -> np.ndarray:
    """Mass each query column sends to the prefix (CLS) tokens, mean over its query rows: (..., cols)."""
    arr = _split_tokens(attn, grid)
    p, r, c = grid.prefix_tokens, grid.rows, grid.cols
    if p == 0:
        return np.zeros(arr.shape[:-2] + (c,))
    to_prefix = _natural(arr[..., p:, :p].sum(axis=-1), grid, (-1,))  # (..., rows*cols)
    return to_prefix.reshape(arr.shape[:-2] + (r, c)).mean(axis=-2)


def region_mask(grid: TokenGrid, region: str) -> np.ndarray:
    """Boolean mask over query columns: 'history' (q < history_cols), 'forecast' or 'all'."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    cols = np.arange(grid.cols)
    if region == "history":
        return cols < grid.history_cols
    if region == "forecast":
        return cols >= grid.history_cols
    return np.ones(grid.cols, dtype=bool)


def max_lag_cols(grid: TokenGrid, max_lag: float | None) -> int:
    """Largest lag in columns for a request of ``max_lag`` samples (None: the whole grid)."""
    longest = grid.cols - 1
    if max_lag is None:
        return longest
    spc = grid.samples_per_col
    if not np.isfinite(max_lag) or max_lag > longest * spc * (1 + 1e-9):
        raise ValueError(
            f"max_lag={max_lag!r} samples is beyond the grid: lags run from {spc:g} to "
            f"{longest * spc:g} samples ({longest} columns of {spc:g} samples)"
        )
    k = int(np.floor(max_lag / spc + 1e-9))
    if k < 1:
        raise ValueError(
            f"max_lag={max_lag!r} samples is shorter than one token column ({spc:g} samples); "
            f"lags run from {spc:g} to {longest * spc:g} samples"
        )
    return k


def _diagonal_means(
    t: np.ndarray, grid: TokenGrid, direction: str, region: str, normalize: bool, kmax: int
) -> np.ndarray:
    """values (..., kmax) for a stack t (..., cols, cols); see ``lag_curve``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    mask = region_mask(grid, region)
    c = grid.cols
    # NaN cells are columns a layer never saw (VisionTS' encoder): means skip them, and chance
    # spreads a query's mass over the key columns it could see.
    seen = np.isfinite(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        chance = np.nansum(t, axis=-1) / seen.sum(axis=-1)  # a uniform spread of each query's mass
    chance[~seen.any(axis=-1)] = np.nan
    values = np.full(t.shape[:-2] + (kmax,), np.nan)
    for k in range(1, kmax + 1):
        if direction == "past":
            diag = np.diagonal(t, offset=-k, axis1=-2, axis2=-1)  # T[k + i, i], query q = k + i
            queries = np.arange(k, c)
        else:
            diag = np.diagonal(t, offset=k, axis1=-2, axis2=-1)  # T[i, i + k], query q = i
            queries = np.arange(0, c - k)
        keep = mask[queries]
        if not keep.any():
            continue
        value = _nanmean(diag[..., keep])
        if normalize:
            base = _nanmean(chance[..., queries[keep]])
            with np.errstate(divide="ignore", invalid="ignore"):
                value = np.where(base > 0, value / np.where(base > 0, base, 1.0), np.nan)
        values[..., k - 1] = value
    return values


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis skipping NaN (all NaN: NaN, without numpy's warning)."""
    count = np.isfinite(values).sum(axis=-1)
    total = np.nansum(values, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def lag_curve(
    time_map: Any,
    grid: TokenGrid,
    direction: str = "past",
    region: str = "all",
    normalize: bool = False,
    max_lag: float | None = None,
) -> LagCurve:
    """Mean attention on each diagonal of a (cols, cols) time map, or of each map of a stack
    (..., cols, cols): values have shape (K,) or (..., K).

    direction='past': values[k-1] = mean over queries q of T[q, q - k] (keys earlier than the
    query); 'future': T[q, q + k].  region picks the query columns ('history': q < history_cols,
    'forecast': q >= history_cols, 'all').  A diagonal with no query in the region gives NaN.
    NaN cells (columns a layer never saw) are skipped: a diagonal averages its seen cells.

    normalize=True divides by chance: the value each query would give if it spread its
    (non-prefix) mass uniformly over all key columns, ``rowsum(T)[q] / cols``, averaged over the
    same queries.  A uniform map then gives exactly 1 at every lag.

    max_lag (samples) truncates the curve; beyond the grid raises ValueError.
    """
    t = to_numpy(time_map).astype(np.float64, copy=False)
    c = grid.cols
    if t.ndim < 2 or t.shape[-2:] != (c, c):
        raise ValueError(
            f"time map has shape {t.shape} but this grid has {c} columns; expected ({c}, {c}) "
            f"or a stack (..., {c}, {c})"
        )
    kmax = max_lag_cols(grid, max_lag)
    values = _diagonal_means(t, grid, direction, region, normalize, kmax)
    return LagCurve(grid.lag_samples(np.arange(1, kmax + 1)), values)


lag_curves = lag_curve  # the name for stacks: one function serves one map and many


class LagCurvesMixin:
    """``lag_curves`` for a result that holds time maps on a grid.

    A subclass provides ``grid`` (its TokenGrid) and ``_lag_maps()``, its (..., cols, cols) maps.
    """

    grid: TokenGrid

    def _lag_maps(self) -> Any:
        raise NotImplementedError

    def lag_curves(
        self,
        direction: str = "past",
        region: str = "all",
        normalize: bool = False,
        max_lag: float | None = None,
    ) -> LagCurve:
        """Lag curves of every time map of this result at once (see ``lag_curve``)."""
        return lag_curve(self._lag_maps(), self.grid, direction, region, normalize, max_lag)
