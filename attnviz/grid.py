"""TokenGrid: the geometry of one forecast call, shared by capture, analysis and plots.

ViTime lays a series of ``history + horizon`` samples onto a fixed image width, so the number
of real samples one token column covers depends on the call, never on a constant.  Everything
downstream reads the geometry from this object instead of re-deriving it from model args.

Time axis: token column ``c`` (``c`` may be fractional: a point within a column) is sample
``sample_offset + c * samples_per_col`` of the caller's series (history at samples 0 .. L-1,
the forecast from L).  :meth:`TokenGrid.col_start_sample` is the one place that converts;
every figure and the explorer go through it.  A forecaster that pads the history before laying
it out (VisionTS pads ``pad_left`` samples on the left) has ``sample_offset = -pad_left``: its
column 0 starts before the first real sample.  Lags (differences of columns) do not depend on
the offset (:meth:`TokenGrid.lag_samples`).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping, Union

import numpy as np


@dataclass(frozen=True)
class TokenGrid:
    """Token layout of one call: ``prefix_tokens`` (CLS) then ``rows x cols`` in row-major order.

    rows: token rows along the value axis (value bins / patch height).
    cols: token columns along the time axis.
    prefix_tokens: tokens before the patch tokens (1 for ViTime's CLS).
    history_cols: token columns that hold the history (the boundary rounded to a column).
    samples_per_col: samples one token column covers in this call: (L + H) / cols for ViTime;
        for VisionTS the padded context's length over its columns (``P * periods_in /
        input_cols``, so padding counts).
    history_length: L, the caller's history length in samples.
    horizon: H, the forecast length in samples.
    history_boundary: exact history/forecast boundary in column units (may be fractional).
    sample_offset: sample of the caller's series where column 0 starts: 0 for ViTime,
        ``-pad_left`` for VisionTS (its padded context starts ``pad_left`` samples before the
        history).  See :meth:`col_start_sample`.
    token_order: None when the patch tokens come in row-major order; else, per sequence position
        after the prefix, the row-major patch index (``row * cols + col``) of the token there -- a
        permutation of ``range(rows * cols)`` (VisionTS' encoder sees its tokens shuffled).  The
        reducers and :func:`attnviz.lags.time_maps_from_attention` fold through it, so time maps
        always come out in natural column order.
    """

    rows: int
    cols: int
    prefix_tokens: int
    history_cols: int
    samples_per_col: float
    history_length: int = 0
    horizon: int = 0
    history_boundary: float | None = None
    token_order: tuple[int, ...] | None = None
    sample_offset: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"TokenGrid.{name} must be a positive integer, got {value!r}")
        if self.prefix_tokens < 0:
            raise ValueError(f"TokenGrid.prefix_tokens must be >= 0, got {self.prefix_tokens!r}")
        if not 0 <= self.history_cols <= self.cols:
            raise ValueError(
                f"TokenGrid.history_cols must lie in [0, cols={self.cols}], got {self.history_cols!r}"
            )
        if not self.samples_per_col > 0:
            raise ValueError(f"TokenGrid.samples_per_col must be > 0, got {self.samples_per_col!r}")
        if self.history_boundary is None:
            object.__setattr__(self, "history_boundary", float(self.history_cols))
        if isinstance(self.sample_offset, bool) or not isinstance(self.sample_offset, numbers.Real) or not math.isfinite(
            self.sample_offset
        ):
            raise ValueError(f"TokenGrid.sample_offset must be a finite number of samples, got {self.sample_offset!r}")
        object.__setattr__(self, "sample_offset", float(self.sample_offset))
        if self.token_order is not None:
            order = tuple(int(i) for i in np.asarray(self.token_order).reshape(-1))
            if sorted(order) != list(range(self.patch_tokens)):
                raise ValueError(
                    f"TokenGrid.token_order must be a permutation of range({self.patch_tokens}) "
                    f"(rows={self.rows} x cols={self.cols}), got {len(order)} entries"
                )
            object.__setattr__(self, "token_order", None if order == tuple(range(self.patch_tokens)) else order)

    @classmethod
    def for_call(
        cls,
        rows: int,
        cols: int,
        prefix_tokens: int,
        history_length: int,
        horizon: int,
        history_boundary: float | None = None,
    ) -> "TokenGrid":
        """Geometry of a call with ``history_length`` samples forecast ``horizon`` steps ahead."""
        total = history_length + horizon
        boundary = history_length * cols / total if history_boundary is None else history_boundary
        return cls(
            rows=int(rows),
            cols=int(cols),
            prefix_tokens=int(prefix_tokens),
            history_cols=int(min(cols, max(0, round(boundary)))),
            samples_per_col=total / cols,
            history_length=int(history_length),
            horizon=int(horizon),
            history_boundary=float(boundary),
        )

    @property
    def patch_tokens(self) -> int:
        """Number of patch (non-prefix) tokens."""
        return self.rows * self.cols

    @property
    def seq_len(self) -> int:
        """Tokens the attention sees: prefix + rows * cols."""
        return self.prefix_tokens + self.patch_tokens

    @property
    def forecast_cols(self) -> int:
        return self.cols - self.history_cols

    def token_index(self, row: int, col: int) -> int:
        """Sequence index of the patch token at (row, col), prefix included."""
        natural = row * self.cols + col
        if self.token_order is not None:
            natural = self.token_order.index(natural)
        return self.prefix_tokens + natural

    @property
    def natural_positions(self) -> np.ndarray | None:
        """Sequence position (after the prefix) of each row-major patch token; None: identity."""
        if self.token_order is None:
            return None
        return np.argsort(np.asarray(self.token_order), kind="stable")

    def lag_samples(self, lag_cols: np.ndarray | int | float) -> np.ndarray:
        """Convert lags in token columns to real samples of this call."""
        return np.asarray(lag_cols, dtype=float) * self.samples_per_col

    def col_start_sample(self, col: np.ndarray | int | float) -> np.ndarray:
        """Where token column ``col`` starts on the caller's time axis (samples):
        ``sample_offset + col * samples_per_col``.  A fractional ``col`` is a point within a
        column (``history_boundary`` gives the history/forecast boundary, ``cols`` the grid's
        end).  Negative for columns that cover only padding (VisionTS)."""
        return self.sample_offset + np.asarray(col, dtype=float) * self.samples_per_col

    def col_center_sample(self, col: np.ndarray | int | float) -> np.ndarray:
        """Centre of token column ``col`` on the caller's time axis (samples)."""
        return self.col_start_sample(np.asarray(col, dtype=float) + 0.5)

    def sample_to_col(self, sample: np.ndarray | int | float) -> np.ndarray:
        """Inverse of :meth:`col_start_sample`: the (fractional) column at time ``sample``."""
        return (np.asarray(sample, dtype=float) - self.sample_offset) / self.samples_per_col

    @property
    def boundary_sample(self) -> float:
        """The history/forecast boundary on the caller's time axis (samples; L up to rounding)."""
        return float(self.col_start_sample(self.history_boundary))

    def to_dict(self) -> dict:
        return asdict(self)


#: What ``capture(grid=...)`` accepts per layer: one grid for every layer, a mapping
#: {layer name: TokenGrid}, or a callable ``layer name -> TokenGrid`` asked when the layer's
#: forward starts (so it may depend on what the model did earlier in the same call).
GridProvider = Union[TokenGrid, Mapping[str, TokenGrid], Callable[[str], TokenGrid]]


def check_reference_periods(
    periods: Any, grid: "TokenGrid | None" = None, name: str = "reference_periods"
) -> tuple[float, ...]:
    """Reference periods (samples) as a tuple of floats; () for None.  THE check of reference
    periods: the report, the figures and the explorer all call it.

    Takes one number or an iterable of numbers (a numpy array, a tensor).  Each must be a finite
    number > 0 (bools and strings are not numbers here) and, given the call's ``grid``, at least
    one token column (``grid.samples_per_col``): attention has no finer lag, so a shorter period
    cannot show in it (and ``--known-period 0.01`` would draw ~100 000 lines).  Errors are one
    line naming the value and what is expected."""
    if periods is None:
        return ()
    if hasattr(periods, "tolist") and not isinstance(periods, (str, bytes)):
        periods = periods.tolist()  # numpy arrays and tensors, any size
    if isinstance(periods, numbers.Real):
        periods = [periods]
    if isinstance(periods, (str, bytes)) or not isinstance(periods, Iterable):
        raise ValueError(f"{name} must be numbers of samples, got {periods!r}")
    out = []
    for p in periods:
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (math.isfinite(p) and p > 0):
            raise ValueError(f"{name} must be positive finite numbers of samples, got {p!r}")
        if grid is not None and p < grid.samples_per_col * (1 - 1e-9):
            spc = grid.samples_per_col
            k = math.ceil(spc / p - 1e-9)
            raise ValueError(
                f"{name}: {p!r} samples is shorter than one token column ({spc:g} samples), the finest lag "
                f"attention shows; give periods of at least {spc:g} samples (e.g. the multiple {k} x {p:g} = {k * p:g})"
            )
        out.append(float(p))
    return tuple(out)


def check_grid_provider(provider: object) -> None:
    """ValueError unless ``provider`` is None, a TokenGrid, a mapping or a callable."""
    if provider is None or isinstance(provider, (TokenGrid, Mapping)) or callable(provider):
        return
    raise ValueError(
        "grid must be an attnviz.grid.TokenGrid, a mapping {layer: TokenGrid}, a callable "
        f"layer -> TokenGrid, or None; got {type(provider).__name__}"
    )


def layer_grid(provider: GridProvider | None, layer: str) -> TokenGrid | None:
    """The TokenGrid ``provider`` gives ``layer`` (None: no grid)."""
    if provider is None or isinstance(provider, TokenGrid):
        return provider
    if isinstance(provider, Mapping):
        if layer not in provider:
            raise ValueError(f"the grid mapping has no TokenGrid for layer {layer!r} (it has {sorted(provider)})")
        grid = provider[layer]
    else:
        grid = provider(layer)
    if not isinstance(grid, TokenGrid):
        raise ValueError(f"the grid provider gave layer {layer!r} a {type(grid).__name__}, not a TokenGrid")
    return grid
