"""One call, all the views: time maps, lag curves, periods, head ranking, rollout.

``MultiHeadAttentionRollout(forecaster).analyze(series, horizon)`` runs ``forecaster.predict``
once under one attention capture (``attnviz.capture.AttentionRollout``) and returns an
``AnalysisResult`` holding

* ``time_maps`` (layers, heads, cols, cols) and ``prefix_mass`` (layers, heads, cols) -- see
  ``attnviz.lags`` for the token -> time rule (prefix/CLS dropped, its mass reported);
* the ``Forecast`` of that same run and the ``TokenGrid`` of that call;
* lag curves in real samples (``lag_curve``), periods (``periods``), the head ranking
  (``ranked_heads``, see ``attnviz.ranking``) and, with ``rollout=True``, the attention rollout
  across layers (``attnviz.rollout``).

Layers with fewer heads than the widest layer are padded with NaN in the stacked arrays;
``num_heads`` gives the real count per layer.

THE forecaster interface (everything downstream reads only this):

* ``.model``: the torch module holding the timm ``Attention`` layers;
* ``.predict(series, horizon)`` -> a forecast with ``.forecast`` (the values) and ``.grid`` (the
  :class:`~attnviz.grid.TokenGrid` of the call: the common column frame of the result);
* ``.grid(length, horizon)``: that TokenGrid before the call;
* optional ``.layer_grids(length, horizon)``: per-layer grids for layers whose token sequence
  differs (anything ``capture(grid=...)`` accepts: a mapping or a callable ``layer -> TokenGrid``,
  asked when the layer starts, so a token order known only during the call can be used).  A
  layer grid with ``token_order`` is folded in natural order; one with fewer columns describes
  the FIRST columns of the common grid (same ``samples_per_col``) and its maps are placed there,
  NaN in the columns that layer never saw (VisionTS' encoder sees only the context columns).
  ``AnalysisResult.layer_cols`` says how many columns each layer saw.
"""
from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence

import numpy as np

from .grid import TokenGrid
from .jsonutil import to_jsonable
from .lags import (
    LagCurve,
    LagCurvesMixin,
    check_convention,
    lag_curve,
    lag_curves,
    prefix_mass_from_attention,
    time_maps_from_attention,
    to_numpy,
)
from .periods import PeriodEstimate, find_periods, fundamental_from_peaks
from .ranking import (
    HeadScore,
    RankingCaveatWarning,
    SeriesPeriodicity,
    head_period,
    rank_heads,
    reliable_lags,
    series_periodicity,
)
from .rollout import RolloutResult, attention_rollout, check_fusion, rollout_result
from .validation import as_horizon, as_series

__all__ = [
    "AnalysisResult",
    "HeadScore",
    "LagCurve",
    "MultiHeadAttentionRollout",
    "PeriodEstimate",
    "RolloutResult",
    "SeriesPeriodicity",
    "attention_rollout",
    "find_periods",
    "fundamental_from_peaks",
    "lag_curve",
    "lag_curves",
    "prefix_mass_from_attention",
    "rank_heads",
    "time_maps_from_attention",
]


@dataclass(frozen=True, eq=False)
class AnalysisResult(LagCurvesMixin):
    """Everything one ``analyze`` call saw.  See the module doc.

    layer_names: captured layers in model order.  time_maps: (layers, heads, cols, cols).
    prefix_mass: (layers, heads, cols).  grid: TokenGrid of the call.  forecast: the Forecast
    of the same run.  num_heads: {layer: heads}.  series: the history (float64).
    time_convention: 'sum' or 'mean'.  rollout: RolloutResult or None.  strategies: capture
    strategy per layer.
    """

    layer_names: list
    time_maps: np.ndarray
    prefix_mass: np.ndarray
    grid: TokenGrid
    forecast: Any
    num_heads: dict
    series: np.ndarray
    time_convention: str = "sum"
    rollout: RolloutResult | None = None
    strategies: dict = field(default_factory=dict)
    #: {layer: columns it saw} for layers whose grid has fewer columns than ``grid`` (the rest
    #: of their maps is NaN); empty when every layer sees every column.
    layer_cols: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = np.asarray(self.time_maps)
        c = self.grid.cols
        if t.ndim != 4 or t.shape[0] != len(self.layer_names) or t.shape[-2:] != (c, c):
            raise ValueError(
                f"time_maps must have shape ({len(self.layer_names)} layers, heads, {c}, {c}) "
                f"for this grid, got {t.shape}"
            )
        if np.asarray(self.prefix_mass).shape != t.shape[:3]:
            raise ValueError(
                f"prefix_mass must have shape {t.shape[:3]}, got {np.asarray(self.prefix_mass).shape}"
            )

    # ----- indexing ------------------------------------------------------------------------------
    def layer_index(self, layer: str | int) -> int:
        """Index of ``layer`` (a name in ``layer_names`` or an int index, negatives allowed)."""
        names = list(self.layer_names)
        if isinstance(layer, (bool, np.bool_)):
            raise ValueError(f"layer must be a name or an int index, got {layer!r}")
        if isinstance(layer, numbers.Integral):
            i = int(layer)
            if not -len(names) <= i < len(names):
                raise ValueError(
                    f"layer index {i} is out of range: {len(names)} layers captured "
                    f"(0..{len(names) - 1}): {names}"
                )
            return i % len(names)
        if isinstance(layer, str) and layer in names:
            return names.index(layer)
        raise ValueError(f"unknown layer {layer!r}; captured layers are {names}")

    def layer_name(self, layer: str | int) -> str:
        """Name of ``layer`` (a name or an int index); the one layer lookup every caller uses."""
        return self.layer_names[self.layer_index(layer)]

    def heads_of(self, layer: str | int) -> int:
        return int(self.num_heads[self.layer_name(layer)])

    def head_index(self, layer: str | int, head: int) -> tuple[int, int]:
        """(layer index, head) after checking both exist; errors name the layer's head range."""
        li = self.layer_index(layer)
        name = self.layer_names[li]
        n = int(self.num_heads[name])
        if isinstance(head, (bool, np.bool_)) or not isinstance(head, numbers.Integral):
            raise ValueError(f"head must be an int, got {head!r} (layer {name!r} has {n} heads)")
        if not 0 <= int(head) < n:
            raise ValueError(f"head {head} is out of range for layer {name!r}: it has {n} heads (0..{n - 1})")
        return li, int(head)

    def time_map(self, layer: str | int, head: int) -> np.ndarray:
        """(cols, cols) time map of one head."""
        li, h = self.head_index(layer, head)
        return self.time_maps[li, h]

    @property
    def history(self) -> np.ndarray:
        return self.series

    # ----- lag curves and periods ----------------------------------------------------------------
    def lag_curve(self, layer: str | int, head: int, direction: str = "past", region: str = "all",
                  normalize: bool = False, max_lag: float | None = None) -> LagCurve:
        """Lag curve of one head, lags in real samples of this call (see ``attnviz.lags``)."""
        li, h = self.head_index(layer, head)
        return lag_curve(self.time_maps[li, h], self.grid, direction, region, normalize, max_lag)

    def _lag_maps(self) -> np.ndarray:
        """What ``lag_curves()`` reads: every head at once, values (layers, heads, lags)."""
        return self.time_maps

    def periods(self, layer: str | int, head: int, direction: str = "past", region: str = "all",
                max_lag: float | None = None, **period_kwargs: Any) -> PeriodEstimate:
        """Peaks and fundamental period (samples) of one head's lag curve.

        Without ``max_lag`` only lags whose diagonal averages over at least max(3, 1/4 of the
        region's query columns) queries are used (the same rule as the ranking).
        """
        curve = self.lag_curve(layer, head, direction, region, False, max_lag)
        reliable = None
        if max_lag is None:
            reliable = reliable_lags(self.grid, direction, region)
        return head_period(curve, reliable, **period_kwargs)

    # ----- the series and the ranking --------------------------------------------------------------
    @cached_property
    def series_periodicity(self) -> SeriesPeriodicity:
        """ACF of the history on this call's lag grid and its period (see ``attnviz.ranking``)."""
        return series_periodicity(self.series, self.grid)

    @cached_property
    def ranked_heads(self) -> list[HeadScore]:
        """Every (layer, head) scored against the series' own periodicity, best first.

        Per head: ``agreement`` = Pearson correlation of its past-direction lag curve (all
        queries) with the history's ACF seen on the same column lags (triangular column
        smoothing, lags <= 0.75 of the history), both linearly detrended; ``period_samples`` =
        fundamental of the head's curve (``periods``); ``consistency`` = closeness of that period
        to the ACF's period (Gaussian, sigma = half of max(half a column, 8 %)); ``clarity`` =
        explained-prominence x hit-rate of the period estimate.  ``score = max(agreement, 0) x
        (0.1 + 0.9 consistency) x (0.5 + 0.5 clarity)``.  Details: ``attnviz.ranking``.
        A history the ranking cannot compare with (too short, or flat) gives a
        ``RankingCaveatWarning`` naming why (``series_periodicity.caveats()``).
        """
        for caveat in self.series_periodicity.caveats():
            warnings.warn(caveat.detail, RankingCaveatWarning, stacklevel=2)
        return self.rank_heads()

    def rank_heads(
        self,
        direction: str = "past",
        region: str = "all",
        acf_fraction: float = 0.75,
        period_fraction: float = 0.8,
        **period_kwargs: Any,
    ) -> list[HeadScore]:
        """The head ranking with non-default options (see ``attnviz.ranking.rank_heads``)."""
        default = acf_fraction == 0.75 and period_fraction == 0.8
        return rank_heads(
            self.time_maps,
            self.grid,
            self.series,
            self.layer_names,
            [self.num_heads[n] for n in self.layer_names],
            direction=direction,
            region=region,
            acf_fraction=acf_fraction,
            period_fraction=period_fraction,
            periodicity=self.series_periodicity if default else None,
            **period_kwargs,
        )

    # ----- export ----------------------------------------------------------------------------------
    def to_html(self, path: Any, **options: Any) -> Any:
        """Write the offline interactive explorer of this result to ``path`` (one HTML file).

        Options go to :func:`attnviz.explorer.write_html`; returns the written path."""
        from .explorer import write_html

        return write_html(self, path, **options)

    def _repr_html_(self) -> str:
        """The explorer inline in a notebook (same page as :meth:`to_html`)."""
        from .explorer import render_html

        return render_html(self)

    def to_dict(self, include_maps: bool = False, top: int | None = None) -> dict[str, Any]:
        """JSON-ready summary.  ``include_maps`` adds the time maps, prefix mass and forecast
        values; ``top`` limits the ranked heads listed (all by default)."""
        ranked = self.ranked_heads if top is None else self.ranked_heads[: int(top)]
        fc = self.forecast
        out: dict[str, Any] = {
            "layer_names": list(self.layer_names),
            "num_heads": dict(self.num_heads),
            "grid": self.grid.to_dict(),
            "time_convention": self.time_convention,
            "time_maps_shape": list(self.time_maps.shape),
            "strategies": dict(self.strategies),
            "history_length": int(len(self.series)),
            "forecast": {
                "horizon": int(self.grid.horizon),
                "decode": getattr(fc, "decode", None),
                "mu": getattr(fc, "mu", None),
                "std": getattr(fc, "std", None),
            },
            "prefix_mass_mean": np.nanmean(self.prefix_mass, axis=-1)
            if self.prefix_mass.size
            else [],
            "series_periodicity": self.series_periodicity.to_dict(),
            "ranked_heads": [s.to_dict() for s in ranked],
            "rollout": None if self.rollout is None else self.rollout.to_dict(include_maps),
        }
        if include_maps:
            out["time_maps"] = self.time_maps
            out["prefix_mass"] = self.prefix_mass
            out["forecast"]["forecast"] = getattr(fc, "forecast", None)
            out["forecast"]["full"] = getattr(fc, "full", None)
        return to_jsonable(out)


class MultiHeadAttentionRollout:
    """Run a forecaster once under attention capture and analyse every captured head.

    forecaster: anything with ``.model`` (the torch module), ``.predict(series, horizon)``
    returning a Forecast with ``.grid``, and ``.grid(length, horizon)`` (a ViTimeForecaster).
    layers: fnmatch patterns of the attention layers to capture (None: all).  strategy,
    time_convention: passed to the capture ('auto'/'exact'/'chunked'; 'sum'/'mean').
    """

    def __init__(
        self,
        forecaster: Any,
        layers: str | Sequence[str] | None = None,
        strategy: str = "auto",
        time_convention: str = "sum",
    ) -> None:
        missing = [a for a in ("model", "predict", "grid") if not hasattr(forecaster, a)]
        if missing:
            raise TypeError(
                f"forecaster must provide .model, .predict and .grid (a ViTimeForecaster); "
                f"{type(forecaster).__name__} lacks {missing}"
            )
        check_convention(time_convention)
        from .capture import STRATEGIES, AttentionRollout  # lazy: torch hooks load on first use

        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")

        self.forecaster = forecaster
        self.strategy = strategy
        self.time_convention = time_convention
        self.capturer = AttentionRollout(forecaster.model, layers=layers)

    @property
    def layer_names(self) -> list[str]:
        return list(self.capturer.layer_names)

    @property
    def num_heads(self) -> dict[str, int]:
        return dict(self.capturer.num_heads)

    def analyze(self, series: Any, horizon: Any, *, rollout: bool = False, head_fusion: str = "mean",
                discard_ratio: float = 0.0, chunk_size: int | None = None, decode: str = "max") -> AnalysisResult:
        """One ``forecaster.predict(series, horizon)`` under one capture -> AnalysisResult.

        rollout=True also computes the attention rollout over the captured layers in model
        order with ``head_fusion`` ('mean'/'max'/'min') and ``discard_ratio`` in [0, 1).
        """
        return self.analyze_many(
            [series], horizon, rollout=rollout, head_fusion=head_fusion,
            discard_ratio=discard_ratio, chunk_size=chunk_size, decode=decode,
        )[0]

    def analyze_many(self, series_list: Sequence[Any], horizon: Any, *, rollout: bool = False, head_fusion: str = "mean",
                     discard_ratio: float = 0.0, chunk_size: int | None = None, decode: str = "max") -> list[AnalysisResult]:
        """Several series of one length in ONE batched forward under one capture: the same
        results as one ``analyze`` call each, at the cost of a batch (datasets build on this).
        A forecaster without ``predict_many`` (VisionTS: each call draws its own token order) is
        run one series at a time, with the same results."""
        xs = [as_series(s, name=f"series {i}" if len(series_list) > 1 else "series") for i, s in enumerate(series_list)]
        if not xs:
            raise ValueError("analyze_many needs at least one series")
        lengths = sorted({len(x) for x in xs})
        if len(lengths) > 1:
            raise ValueError(f"analyze_many needs series of one length (one token grid), got lengths {lengths}; group them by length")
        h = as_horizon(horizon)
        check_fusion(head_fusion)
        if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, numbers.Real) or not (
            0.0 <= float(discard_ratio) < 1.0
        ):
            raise ValueError(f"discard_ratio must be a number in [0, 1), got {discard_ratio!r}")
        if len(xs) > 1 and not hasattr(self.forecaster, "predict_many"):  # no batched forward: one call each
            options = dict(rollout=rollout, head_fusion=head_fusion, discard_ratio=discard_ratio, chunk_size=chunk_size,
                           decode=decode)
            return [self.analyze_many([x], h, **options)[0] for x in xs]
        grid = self.forecaster.grid(len(xs[0]), h)
        per_layer = getattr(self.forecaster, "layer_grids", None)
        with self.capturer.capture(
            keep_full=False,
            grid=grid if per_layer is None else per_layer(len(xs[0]), h),
            head_fusion=head_fusion if rollout else None,
            strategy=self.strategy,
            chunk_size=chunk_size,
            time_convention=self.time_convention,
        ) as cap:
            if len(xs) == 1:  # the plain predict path, exactly as a user calls it
                forecasts = [self.forecaster.predict(xs[0], h) if decode == "max" else self.forecaster.predict(xs[0], h, decode=decode)]
            else:
                forecasts = self.forecaster.predict_many(xs, h, decode=decode)
        grid = getattr(forecasts[0], "grid", None) or grid
        names = self.layer_names
        time_maps = dict(getattr(cap, "time_maps", {}) or {})
        prefix = dict(getattr(cap, "prefix_mass", {}) or {})
        missing = [n for n in names if n not in time_maps]
        if missing:
            raise RuntimeError(
                f"the capture returned no time maps for layers {missing} (got {sorted(time_maps)}); "
                f"did the forecaster run these layers?"
            )
        all_maps = {n: to_numpy(time_maps[n]).astype(np.float64) for n in names}
        all_prefix = {n: to_numpy(prefix[n]).astype(np.float64) for n in names}
        layer_cols = _layer_cols(grid, dict(getattr(cap, "grids", {}) or {}), names)
        tokens = dict(getattr(cap, "token_maps", {}) or {}) if rollout else {}
        if rollout:
            lengths = {n: tuple(tokens[n].shape[-2:]) for n in names if n in tokens}
            if len(set(lengths.values())) > 1:
                raise ValueError(
                    f"rollout multiplies token maps of one sequence, but these layers see different "
                    f"sequences: {lengths}; pass layers= patterns that pick one kind (e.g. the decoder)"
                )
            absent = [n for n in names if n not in tokens]
            if absent:
                raise RuntimeError(f"the capture returned no head-fused token maps for {absent}")
        return [
            self._result(
                b, x, forecast, grid, all_maps, all_prefix, tokens, rollout, head_fusion, float(discard_ratio),
                dict(getattr(cap, "strategies", {}) or {}), layer_cols,
            )
            for b, (x, forecast) in enumerate(zip(xs, forecasts))
        ]

    def _result(
        self,
        b: int,
        x: np.ndarray,
        forecast: Any,
        grid: TokenGrid,
        all_maps: dict[str, np.ndarray],
        all_prefix: dict[str, np.ndarray],
        tokens: dict[str, Any],
        rollout: bool,
        head_fusion: str,
        discard_ratio: float,
        strategies: dict[str, str],
        layer_cols: dict[str, int],
    ) -> AnalysisResult:
        """The AnalysisResult of batch element ``b`` (layers stacked, narrower layers NaN-padded)."""
        names = self.layer_names
        per_layer = [all_maps[n][b] for n in names]
        per_prefix = [all_prefix[n][b] for n in names]
        c = grid.cols
        for n, t in zip(names, per_layer):
            seen = layer_cols.get(n, c)
            if t.ndim != 3 or t.shape[-2:] != (seen, seen):
                raise ValueError(
                    f"layer {n!r}: captured time map has shape {t.shape[-2:]} but this call's "
                    f"grid gives it {seen} columns"
                )
        heads = {n: int(t.shape[0]) for n, t in zip(names, per_layer)}
        width = max(heads.values()) if heads else 0
        stacked = np.full((len(names), width, c, c), np.nan)
        stacked_prefix = np.full((len(names), width, c), np.nan)
        for i, (t, p) in enumerate(zip(per_layer, per_prefix)):  # a layer's columns come first
            stacked[i, : t.shape[0], : t.shape[1], : t.shape[2]] = t
            stacked_prefix[i, : p.shape[0], : p.shape[1]] = p
        roll = None
        if rollout:
            fused = [tokens[n][b] for n in names]
            roll = rollout_result(fused, grid, names, head_fusion, discard_ratio, self.time_convention)
        return AnalysisResult(
            layer_names=list(names), time_maps=stacked, prefix_mass=stacked_prefix, grid=grid, forecast=forecast,
            num_heads=heads, series=x, time_convention=self.time_convention, rollout=roll, strategies=strategies,
            layer_cols=dict(layer_cols),
        )


def _layer_cols(grid: TokenGrid, layer_grids: dict[str, TokenGrid], names: list[str]) -> dict[str, int]:
    """{layer: columns} for layers whose grid covers only the first columns of ``grid``; a layer
    grid that is not such a prefix of the common frame is an error naming both."""
    out = {}
    for name in names:
        g = layer_grids.get(name)
        if g is None or g.cols == grid.cols:
            continue
        same_frame = np.isclose(g.samples_per_col, grid.samples_per_col) and np.isclose(g.sample_offset, grid.sample_offset)
        if g.cols > grid.cols or not same_frame:
            raise ValueError(
                f"layer {name!r} has a grid of {g.cols} columns of {g.samples_per_col:g} samples from sample "
                f"{g.sample_offset:g}, which is not the first columns of the call's grid ({grid.cols} columns of "
                f"{grid.samples_per_col:g} samples from sample {grid.sample_offset:g})"
            )
        out[name] = int(g.cols)
    return out
