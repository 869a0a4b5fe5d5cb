"""Head ablation: take chosen heads out of the forecast at their slice of the input to ``attn.proj``.

timm's ``Attention`` concatenates its heads' outputs into (B, N, H*d) and feeds that to ``proj``;
head ``h`` owns columns ``h*d .. (h+1)*d``.  Ablating a head replaces its columns there, with a
forward-pre hook on ``attn.proj`` (its attention map is untouched; later layers see the change):

``zero``
    by 0: the head adds nothing to the residual stream (``proj`` keeps its bias).
``mean``
    by their mean over a reference set of series, **per token position** (default).  ViTime's
    image has a fixed size, so token ``p`` is the same (value-bin row, time column) for every
    series of one history length and horizon, and what a head writes there has a typical value
    that depends on the position (the CLS token; history columns vs the zeroed forecast
    columns).  A per-position mean keeps that typical value and removes only what the head
    computed from *this* series.  A mean over positions too (``per_position=False``) would also
    move forecast columns to a history-like value: an off-distribution input whose effect mixes
    with the head's removal.  Per-position means therefore require references of the same history
    length and horizon (the same token-to-time map); ``per_position=False`` does not.  Means are
    taken on the unablated model, in float64, and stored as float32.

Hooks are installed by a context manager and removed when the ``with`` block ends, also when it
raises; they compose with :mod:`attnviz.capture` (which hooks ``attn``/``qkv``/``attn_drop``).
Ablating no head installs nothing, so the forecast is bitwise the unablated one.

Error change: ``delta_mae`` = MAE(ablated, truth) - MAE(unablated, truth) when the truth is
given (positive = ablation hurts), and always ``mae_vs_baseline`` = MAE(ablated, unablated).
:meth:`HeadAblator.compare` sets chosen (or top-ranked) heads against as many random heads over
seeded draws: the null is "a uniformly random k-subset of all heads" (top heads may be drawn), so
``p_value`` = (1 + #draws with change >= chosen) / (1 + draws) is a valid permutation p-value.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .evaluation import harmonic_mixtures, mae
from .intervals import bootstrap_means, percentile_interval
from .validation import as_horizon, as_series

__all__ = ["MODES", "AblationComparison", "AblationResult", "HeadAblator", "RandomComparison", "ReferenceMeans"]

MODES: tuple[str, ...] = ("mean", "zero")
#: Reference set used when ``mode="mean"`` gets no reference: held-out harmonic mixtures.
DEFAULT_REFERENCE_COUNT = 32
DEFAULT_REFERENCE_SEED = 2024

Head = tuple[str, int]


@dataclass(frozen=True, eq=False)
class ReferenceMeans:
    """Mean input of ``attn.proj`` per layer: {layer: (N, C)} per position, or {layer: (C,)}."""

    means: dict
    per_position: bool
    count: int
    history_length: int
    horizon: int

    def check_fits(self, history_length: int, horizon: int) -> None:
        if self.per_position and (history_length, horizon) != (self.history_length, self.horizon):
            raise ValueError(f"per-position reference means were taken at history {self.history_length}, horizon "
                             f"{self.horizon}, not {history_length}, {horizon}: recompute them or use per_position=False")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("count", "per_position", "history_length", "horizon")}


class _Hooks:
    """Forward-pre hooks on ``attn.proj`` of some layers; removed on exit, also on error."""

    def __init__(self, hooks: dict) -> None:  # {proj module: hook function}
        self._hooks, self._handles = hooks, []

    def __enter__(self) -> "_Hooks":
        try:  # a failed registration must not leave the earlier hooks behind
            for proj, fn in self._hooks.items():
                self._handles.append(proj.register_forward_pre_hook(fn))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _replace_hook(mask: torch.Tensor, fill: torch.Tensor | None, layer: str):
    """Replace the masked columns of proj's input by ``fill`` ((N, C) or (C,)) or by 0.

    ``mask`` is (C,) for every batch element alike, or (B, 1, C) for one head set per element."""
    def hook(module: torch.nn.Module, args: tuple) -> tuple:
        x = args[0]
        if mask.dim() == 3 and mask.shape[0] != x.shape[0]:
            raise ValueError(f"{layer}: {mask.shape[0]} head sets for a batch of {x.shape[0]} inputs")
        if fill is None:
            return (x.masked_fill(mask, 0.0),) + args[1:]
        if fill.dim() == 2 and fill.shape[0] != x.shape[-2]:
            raise ValueError(f"{layer}: reference means have {fill.shape[0]} positions, the input {x.shape[-2]}")
        return (torch.where(mask, fill.to(x.dtype), x),) + args[1:]
    return hook


@dataclass(frozen=True, eq=False)
class AblationResult:
    """One ablation of ``heads`` on one series (see the module doc for the error measures).

    forecast / baseline: the Forecast with / without ablation (plain, fused ``predict`` calls).
    analysis / baseline_analysis: AnalysisResult of the ablated / unablated model (or None), for
    the lag curves and periods of ``report_heads``.
    """

    heads: tuple
    mode: str
    forecast: Any
    baseline: Any
    truth: np.ndarray | None
    mae_vs_baseline: float
    mae_baseline: float | None = None
    mae_ablated: float | None = None
    analysis: Any = None
    baseline_analysis: Any = None
    report_heads: tuple = ()
    reference: ReferenceMeans | None = None

    @property
    def delta_mae(self) -> float | None:
        """MAE(ablated, truth) - MAE(unablated, truth); None without the truth."""
        return None if self.truth is None else self.mae_ablated - self.mae_baseline

    @property
    def error_change(self) -> float:
        """``delta_mae`` with the truth, else ``mae_vs_baseline``."""
        return self.mae_vs_baseline if self.truth is None else self.delta_mae

    def lag_curve(self, layer: str | int, head: int, **options: Any) -> Any:
        """Lag curve of one head in the ablated model (``analysis.lag_curve``)."""
        return self._analysis().lag_curve(layer, head, **options)

    def periods(self, layer: str | int, head: int, **options: Any) -> Any:
        """PeriodEstimate of one head in the ablated model (``analysis.periods``)."""
        return self._analysis().periods(layer, head, **options)

    def _analysis(self) -> Any:
        if self.analysis is None:
            raise ValueError("this ablation ran with analyze=False: it has no lag curves or periods")
        return self.analysis

    def head_periods(self) -> list[dict[str, Any]]:
        """Fundamental period (samples) of each report head, unablated and ablated."""
        rows = []
        for layer, head in self.report_heads:
            row: dict[str, Any] = {"layer": layer, "head": head}
            for key, res in (("baseline", self.baseline_analysis), ("ablated", self.analysis)):
                est = None if res is None else res.periods(layer, head)
                row[f"{key}_period_samples"] = None if est is None else est.fundamental_samples
                row[f"{key}_peaks_samples"] = None if est is None else est.peaks_samples
            rows.append(row)
        return rows

    def to_dict(self, include_forecasts: bool = False) -> dict[str, Any]:
        from .jsonutil import to_jsonable

        out = {
            "heads": [list(h) for h in self.heads], "mode": self.mode,
            "reference": None if self.reference is None else self.reference.to_dict(),
            "mae_baseline": self.mae_baseline, "mae_ablated": self.mae_ablated,
            "delta_mae": self.delta_mae, "mae_vs_baseline": self.mae_vs_baseline,
            "error_change": self.error_change, "head_periods": self.head_periods(),
        }
        if include_forecasts:
            out.update(forecast=self.forecast.forecast, baseline_forecast=self.baseline.forecast,
                       truth=self.truth)
        return to_jsonable(out)


@dataclass(frozen=True, eq=False)
class RandomComparison:
    """Chosen heads vs ``len(random_changes)`` draws of ``k`` random heads (one row of a comparison).

    interval: central ``confidence`` percentile interval of the random draws' error changes (the
    spread of the null, linear interpolation between draws).  mean_interval: percentile-bootstrap
    interval of the mean random change (``n_boot`` resamples of the draws, seeded).
    """

    k: int
    result: AblationResult
    random_heads: tuple
    random_changes: np.ndarray
    random_mae_vs_baseline: np.ndarray
    confidence: float
    interval: tuple
    mean_interval: tuple

    @property
    def chosen_change(self) -> float:
        return float(self.result.error_change)

    @property
    def p_value(self) -> float:
        worse = int(np.sum(self.random_changes >= self.chosen_change))
        return (1 + worse) / (1 + len(self.random_changes))

    def to_dict(self) -> dict[str, Any]:
        from .jsonutil import to_jsonable

        return to_jsonable({
            "k": self.k, "heads": [list(h) for h in self.result.heads],
            "chosen_change": self.chosen_change, "chosen_mae_vs_baseline": self.result.mae_vs_baseline,
            "random_mean": float(np.mean(self.random_changes)),
            "random_median": float(np.median(self.random_changes)),
            "interval": self.interval, "mean_interval": self.mean_interval, "p_value": self.p_value,
            "random_changes": self.random_changes, "random_mae_vs_baseline": self.random_mae_vs_baseline,
            "random_heads": [[list(h) for h in draw] for draw in self.random_heads],
        })


@dataclass(frozen=True, eq=False)
class AblationComparison:
    """Rows of :class:`RandomComparison`; ``metric`` names the error change compared."""

    metric: str
    mode: str
    draws: int
    seed: int
    confidence: float
    rows: tuple

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "mode": self.mode, "draws": self.draws, "seed": self.seed,
                "confidence": self.confidence,
                "interval_kind": "percentile over random draws (null spread); mean_interval: bootstrap",
                "rows": [r.to_dict() for r in self.rows]}


class HeadAblator:
    """Ablate heads of a forecaster's timm ``Attention`` layers (see the module doc).

    forecaster: a ViTimeForecaster (``.model``, ``.predict_many``, ``.grid``).  layers: fnmatch
    patterns of the layers that may be ablated and are analysed (None: all).  Layers are named by
    module path (``blocks.3.attn``) or by their index in :attr:`layer_names`.
    """

    def __init__(self, forecaster: Any, layers: str | Sequence[str] | None = None) -> None:
        from .analysis import MultiHeadAttentionRollout

        self.forecaster = forecaster
        self.explainer = MultiHeadAttentionRollout(forecaster, layers=layers)
        self.modules = self.explainer.capturer.modules
        for name, module in self.modules.items():
            proj = getattr(module, "proj", None)
            width = int(module.num_heads) * int(module.head_dim)
            if not isinstance(proj, torch.nn.Linear) or proj.in_features != width:
                raise ValueError(f"layer {name!r}: attn.proj is not an nn.Linear over the {width} head columns")

    @property
    def layer_names(self) -> list[str]:
        return list(self.modules)

    @property
    def all_heads(self) -> list[Head]:
        return [(n, h) for n, m in self.modules.items() for h in range(int(m.num_heads))]

    # ----- heads ---------------------------------------------------------------------------------
    def resolve(self, heads: Iterable[Any]) -> list[Head]:
        """(layer, head) pairs (or HeadScores) -> [(layer name, head)], checked, duplicates kept once."""
        if isinstance(heads, (str, bytes)):
            raise ValueError(f"heads must be a list of (layer, head) pairs, got {heads!r}")
        out: list[Head] = []
        for item in heads:
            try:
                layer, head = (item.layer, item.head) if hasattr(item, "layer") else item
            except (TypeError, ValueError):
                raise ValueError(f"each head must be a (layer, head) pair, got {item!r}") from None
            name = self._layer_name(layer)
            n = int(self.modules[name].num_heads)
            if isinstance(head, (bool, np.bool_)) or not isinstance(head, numbers.Integral) or not 0 <= head < n:
                raise ValueError(f"head {head!r} is out of range for layer {name!r}: it has {n} heads (0..{n - 1})")
            if (name, int(head)) not in out:
                out.append((name, int(head)))
        return out

    def _layer_name(self, layer: Any) -> str:
        names = self.layer_names
        if isinstance(layer, numbers.Integral) and not isinstance(layer, (bool, np.bool_)):
            if not -len(names) <= int(layer) < len(names):
                raise ValueError(f"layer index {layer} is out of range: {len(names)} layers (0..{len(names) - 1})")
            return names[int(layer)]
        if isinstance(layer, str) and layer in self.modules:
            return layer
        raise ValueError(f"unknown layer {layer!r}; layers are {', '.join(names)}")

    # ----- hooks ---------------------------------------------------------------------------------
    def ablate(self, heads: Iterable[Any], mode: str = "zero", means: ReferenceMeans | None = None) -> _Hooks:
        """Context manager: while active, every forward of the model runs with ``heads`` ablated.

        ``mode="mean"`` needs ``means`` (:meth:`reference_means`); no head -> no hooks at all."""
        return self._hooks([self.resolve(heads)], mode, means, batched=False)

    def ablate_each(self, head_sets: Sequence[Iterable[Any]], mode: str = "zero",
                    means: ReferenceMeans | None = None) -> _Hooks:
        """Like :meth:`ablate`, but batch element ``i`` of each forward gets ``head_sets[i]``
        ablated (forwards must have a batch of ``len(head_sets)``)."""
        return self._hooks([self.resolve(s) for s in head_sets], mode, means, batched=True)

    def _hooks(self, sets: list[list[Head]], mode: str, means: Any, batched: bool) -> _Hooks:
        check_mode(mode)
        if mode == "mean" and not isinstance(means, ReferenceMeans):
            raise ValueError(f"mode 'mean' needs ReferenceMeans from reference_means(), got {means!r}")
        hooks = {}
        for name in dict.fromkeys(n for heads in sets for n, _ in heads):
            module = self.modules[name]
            d, proj = int(module.head_dim), module.proj
            masks = torch.zeros(len(sets), proj.in_features, dtype=torch.bool)
            for i, heads in enumerate(sets):
                for h in (h for n, h in heads if n == name):
                    masks[i, h * d : (h + 1) * d] = True
            mask = masks[:, None, :] if batched else masks[0]
            fill = None if mode == "zero" else means.means[name].to(proj.weight.device)
            hooks[proj] = _replace_hook(mask.to(proj.weight.device), fill, name)
        return _Hooks(hooks)

    def forecast_each(self, series: Any, horizon: Any, head_sets: Sequence[Iterable[Any]], mode: str = "zero",
                      means: ReferenceMeans | None = None, batch_size: int = 16, decode: str = "max") -> list:
        """Forecasts of ``series`` with each head set ablated, in batched forwards."""
        x, h = as_series(series), as_horizon(horizon)
        out: list = []
        for start in range(0, len(head_sets), int(batch_size)):
            chunk = head_sets[start : start + int(batch_size)]
            with self.ablate_each(chunk, mode, means):
                out += self.forecaster.predict_many([x] * len(chunk), h, decode=decode)
        return out

    def reference_means(self, references: Sequence[Any], horizon: Any, per_position: bool = True,
                        batch_size: int = 16) -> ReferenceMeans:
        """Mean input of every layer's ``attn.proj`` over ``references`` (unablated model).

        per_position=True: one mean per token position, (N, C); all references must have one
        length.  False: one mean per column over positions too, (C,)."""
        h = as_horizon(horizon)
        refs = [as_series(r, "reference series") for r in references]
        if not refs:
            raise ValueError("references is empty; give at least one reference series")
        lengths = sorted({len(r) for r in refs})
        if per_position and len(lengths) > 1:
            raise ValueError(f"per-position means need references of one length, got lengths {lengths}")
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}  # rows summed per layer

        def recorder(name: str):
            def hook(module: torch.nn.Module, args: tuple) -> None:
                x = args[0].detach().double()
                part = x.sum(0) if per_position else x.sum((0, 1))
                sums[name] = part if name not in sums else sums[name] + part
                counts[name] = counts.get(name, 0) + x.shape[0] * (1 if per_position else x.shape[1])
            return hook

        with _Hooks({m.proj: recorder(n) for n, m in self.modules.items()}), torch.no_grad():
            for start in range(0, len(refs), int(batch_size)):
                self.forecaster.predict_many(refs[start : start + int(batch_size)], h)
        means = {n: (sums[n] / counts[n]).float().cpu() for n in self.modules}
        return ReferenceMeans(means, bool(per_position), len(refs), lengths[0], h)

    def default_means(self, length: int, horizon: int, count: int = DEFAULT_REFERENCE_COUNT,
                      seed: int = DEFAULT_REFERENCE_SEED) -> ReferenceMeans:
        """Per-position means over ``count`` held-out harmonic mixtures of this length/horizon."""
        cases = harmonic_mixtures(count=count, seed=seed, history=int(length), horizon=as_horizon(horizon))
        return self.reference_means([c.history for c in cases], horizon)

    def _means_for(self, mode: str, reference: Any, length: int, horizon: int) -> ReferenceMeans | None:
        check_mode(mode)
        if mode == "zero":
            return None
        if reference is None or isinstance(reference, numbers.Integral):  # a count of default mixtures
            means = self.default_means(length, horizon, count=int(reference or DEFAULT_REFERENCE_COUNT))
        elif not isinstance(means := reference, ReferenceMeans):
            means = self.reference_means(list(reference), horizon)
        means.check_fits(length, horizon)
        return means

    # ----- runs ----------------------------------------------------------------------------------
    def run(self, series: Any, horizon: Any, heads: Iterable[Any], mode: str = "mean", reference: Any = None,
            truth: Any = None, analyze: bool = True, report_heads: Iterable[Any] | None = None,
            decode: str = "max") -> AblationResult:
        """Forecast ``series`` with and without ``heads`` ablated.

        reference (mode 'mean'): ReferenceMeans, a list of reference series, or a count (None:
        ``DEFAULT_REFERENCE_COUNT``) of :meth:`default_means` mixtures.  truth: the next ``horizon`` values (optional).  analyze: also
        analyse the ablated and unablated model (lag curves, periods of ``report_heads``,
        default: the ablated heads)."""
        x, h = as_series(series), as_horizon(horizon)
        means = self._means_for(mode, reference, len(x), h)
        chosen = self.resolve(heads)
        baseline = self.forecaster.predict(x, h, decode=decode)
        base_res = self.explainer.analyze(x, h, decode=decode) if analyze else None
        return self._one(x, h, chosen, mode, means, _truth(truth, h), baseline, base_res, analyze,
                         report_heads, decode)

    def _one(self, x, h, chosen, mode, means, truth, baseline, base_res, analyze, report_heads, decode,
             forecast=None) -> AblationResult:
        with self.ablate(chosen, mode, means):
            forecast = forecast or self.forecaster.predict(x, h, decode=decode)
            res = self.explainer.analyze(x, h, decode=decode) if analyze else None
        report = tuple(self.resolve(report_heads if report_heads is not None else chosen))
        errors = {} if truth is None else {"mae_baseline": mae(baseline.forecast, truth),
                                           "mae_ablated": mae(forecast.forecast, truth)}
        return AblationResult(tuple(chosen), mode, forecast, baseline, truth,
                              mae(forecast.forecast, baseline.forecast), analysis=res,
                              baseline_analysis=base_res, report_heads=report, reference=means, **errors)

    def compare(self, series: Any, horizon: Any, top_k: int | Sequence[int] = (3, 5, 10),
                heads: Iterable[Any] | None = None, random_k: int | None = None, draws: int = 20,
                seed: int = 0, mode: str = "mean", reference: Any = None, truth: Any = None,
                confidence: float = 0.95, n_boot: int = 2000, analyze: bool = True, batch_size: int = 16,
                decode: str = "max") -> AblationComparison:
        """Top-``k`` ranked heads (or the given ``heads``) vs ``random_k`` (default: as many) random
        heads, ``draws`` times.  The ranking is ``ranked_heads`` of the unablated model's analysis
        of ``series``.  Draw ``i`` of ``k`` random heads uses ``numpy.random.default_rng([seed, k,
        i])``; chosen heads and draws run ``batch_size`` at a time (one head set per batch element)."""
        x, h = as_series(series), as_horizon(horizon)
        if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 1:
            raise ValueError(f"draws must be a positive int, got {draws!r}")
        if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
            raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an int >= 0 (it seeds numpy's generators), got {seed!r}")
        total = len(self.all_heads)
        ks = [] if heads is not None else [top_k] if isinstance(top_k, numbers.Integral) else list(top_k)
        for name, k in [("k", k) for k in ks] + ([("random_k", random_k)] if random_k is not None else []):
            if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= total:
                raise ValueError(f"{name}={k!r} must be an int in 1..{total} (the heads of the ablated layers)")
        sets = [self.resolve(heads)] if heads is not None else []
        if not ks and not (sets and sets[0]):
            raise ValueError(f"nothing to compare: heads={heads!r}, top_k={top_k!r}; give heads or top_k")
        means = self._means_for(mode, reference, len(x), h)
        truth = _truth(truth, h)
        baseline = self.forecaster.predict(x, h, decode=decode)
        base_res = self.explainer.analyze(x, h, decode=decode) if heads is None or analyze else None
        if heads is None:
            ranked = [(s.layer, int(s.head)) for s in base_res.ranked_heads if s.layer in self.modules]
            sets = [ranked[:k] for k in ks]
        rows = []
        pool = self.all_heads
        for chosen in sets:
            k = int(random_k or len(chosen))
            picks = []
            for i in range(int(draws)):
                rng = np.random.default_rng([int(seed), k, i])
                picks.append(tuple(pool[j] for j in sorted(rng.choice(total, size=k, replace=False))))
            first, *forecasts = self.forecast_each(x, h, [chosen, *picks], mode, means, batch_size, decode)
            top = self._one(x, h, chosen, mode, means, truth, baseline, base_res, analyze, None, decode, first)
            vs_base = [mae(f.forecast, baseline.forecast) for f in forecasts]
            changes = vs_base if truth is None else [mae(f.forecast, truth) - top.mae_baseline for f in forecasts]
            changes_arr = np.asarray(changes, dtype=float)
            rows.append(RandomComparison(
                k, top, tuple(picks), changes_arr, np.asarray(vs_base, dtype=float), float(confidence),
                percentile_interval(changes_arr, confidence),
                bootstrap_mean_interval(changes_arr, confidence, n_boot, seed)))
        metric = "delta_mae_vs_truth" if truth is not None else "mae_vs_unablated"
        return AblationComparison(metric, mode, int(draws), int(seed), float(confidence), tuple(rows))


# ----- helpers -----------------------------------------------------------------------------------
def check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def bootstrap_mean_interval(values: np.ndarray, confidence: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (seeded; ``intervals.bootstrap_means``)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    iv = bootstrap_means(np.asarray(values, dtype=float)[:, None], int(n_boot), float(confidence), seed=int(seed))
    return float(iv.lo[0]), float(iv.hi[0])


def _truth(truth: Any, horizon: int) -> np.ndarray | None:
    if truth is None:
        return None
    t = as_series(truth, "truth")
    if len(t) != horizon:
        raise ValueError(f"truth has {len(t)} values; it must hold the next {horizon} (the horizon)")
    return t
