"""Experiments as data, and the runner behind ``python main.py`` / ``attnviz experiments``.

Each experiment names its signal, geometry, heads and the effect it expects; running it writes
PNG figures and a ``summary.json`` (expected effect, observed peaks in samples, ranked heads,
verdict) into ``<out>/<name>/``.

The experiments are ViTime's: their expectations (peaks at multiples of a period along the time
columns, a sweep of periods 16..256 and two datasets of their own cycle lengths, all at one
tolerance of one token column) assume a grid whose columns are consecutive time spans.  A
VisionTS folds the series by one periodicity ``P`` given up front, so a single ``P`` cannot fit
every experiment's signal; :class:`ExperimentRunner` refuses it (explain a VisionTS instead).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy.ndimage import uniform_filter1d

from .jsonutil import to_jsonable
from .periods import period_recovered, recovery_tolerance
from .report import ReportWriter, model_label, ranked_heads_json, resolve_heads, selected_heads_json

SEED_EXPR = "sin(n/10) + sin(n/5 + 50) + cos(n + 50)"
TWO_HARMONICS_EXPR = "sin(n/5 + 50) + cos(n + 50)"
FUNDAMENTAL = 20 * np.pi  # sin(n/10): period 62.83 samples
SWEEP_PERIODS = (16, 24, 32, 48, 64, 96, 128, 192, 256)
NOISE_SNRS_DB = (30, 20, 10, 5, 0, -5)


@dataclass(frozen=True)
class Experiment:
    """What to run and what we expect to see.

    heads: "auto" (the ``top_k`` best-ranked heads) or explicit (layer name or index, head) pairs.
    layers: restrict the analysis to these layer-name patterns (None = every attention layer).
    known_periods: the signal's true periods (samples); the figures draw them as reference periods.
    """

    name: str
    title: str
    expected: str
    kind: str  # "single", "contrast", "period_sweep", "noise", "dataset"
    signal: str | None = None
    length: int = 512
    horizon: int = 720
    heads: str | tuple[tuple[str | int, int], ...] = "auto"
    top_k: int = 3
    layers: tuple[str, ...] | None = None
    known_periods: tuple[float, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "three_harmonics",
            "Three harmonics: sin(n/10) + sin(n/5+50) + cos(n+50)",
            "lag peaks at the fundamental period (~62.8 samples) and its multiples",
            "single",
            SEED_EXPR,
            known_periods=(FUNDAMENTAL,),
        ),
        Experiment(
            "two_harmonics",
            "Without sin(n/10): sin(n/5+50) + cos(n+50)",
            "the ~62.8-sample peaks of the heads that showed them in three_harmonics vanish",
            "contrast",
            TWO_HARMONICS_EXPR,
            known_periods=(FUNDAMENTAL,),
            params={"reference": "three_harmonics", "reference_signal": SEED_EXPR},
        ),
        Experiment(
            "period_sweep",
            "Period sweep: single sinusoids, periods 16..256 samples",
            "the top-ranked head's period matches the true period within one column",
            "period_sweep",
            params={"periods": SWEEP_PERIODS},
        ),
        Experiment(
            "noise_robustness",
            "Noise robustness: three harmonics at falling SNR",
            "the ~62.8-sample peaks survive moderate noise and fade at low SNR",
            "noise",
            SEED_EXPR,
            known_periods=(FUNDAMENTAL,),
            params={"snr_db": NOISE_SNRS_DB, "seed": 7},
        ),
        Experiment(
            "sunspots",
            "Yearly sunspot numbers (~11-year cycle)",
            "the top-ranked head's period is near the ~11-year solar cycle",
            "dataset",
            length=240,
            horizon=60,
            params={"dataset": "sunspots"},
        ),
        Experiment(
            "co2",
            "Mauna Loa weekly CO2 (52-week cycle)",
            "the top-ranked head's period is near 52 weeks",
            "dataset",
            length=520,
            horizon=156,
            params={"dataset": "co2"},
        ),
    )
}


@dataclass
class Outcome:
    """What one experiment observed (also written as ``summary.json``)."""

    name: str
    title: str
    expected: str
    observed: str
    verdict: str  # "pass", "fail" or "info"
    files: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


# ----- helpers on analysis results ---------------------------------------------------------------
def periodic_peaks(peaks: np.ndarray, period: float, tolerance: float, max_lag: float) -> list[float]:
    """Peaks (samples) lying within ``tolerance`` of a multiple of ``period`` below ``max_lag``."""
    hits = []
    for p in np.asarray(peaks, dtype=float):
        m = round(p / period)
        if m >= 1 and m * period <= max_lag + tolerance and abs(p - m * period) <= tolerance:
            hits.append(float(p))
    return hits


def heads_with_period(
    res: Any, period: float, max_lag: float | None = None, min_multiples: int = 2
) -> list[dict[str, Any]]:
    """Every (layer, head) whose lag curve repeats at ``period``.

    A head qualifies when its detected peaks sit within one column of at least
    ``min_multiples`` distinct multiples of ``period`` (one lone peak near a multiple is
    too easy to hit by chance when a curve has many peaks).
    """
    tol = res.grid.samples_per_col
    limit = max_lag if max_lag is not None else 4 * period
    found = []
    for li, layer in enumerate(res.layer_names):
        for head in range(res.heads_of(layer)):
            est = res.periods(layer, head)
            hits = periodic_peaks(est.peaks_samples, period, tol, limit)
            if len({round(h / period) for h in hits}) >= min_multiples:
                error = float(np.mean([abs(h - round(h / period) * period) for h in hits]))
                found.append(
                    {"layer": layer, "layer_index": li, "head": head, "peaks_samples": hits, "mean_error_samples": error}
                )
    # Clearest first: most multiples matched, then the smallest distance to them.
    found.sort(key=lambda f: (-len({round(h / period) for h in f["peaks_samples"]}), f["mean_error_samples"]))
    return found


def period_strength(res: Any, layer: str, head: int, period: float, multiples: int = 3) -> float:
    """``curve_period_strength`` of one head's lag curve (mean detrended z-score at the multiples)."""
    return curve_period_strength(*res.lag_curve(layer, head), period, multiples)


def curve_period_strength(lags: np.ndarray, values: np.ndarray, period: float, multiples: int = 3) -> float:
    """How much a lag curve stands out at 1..``multiples`` x ``period``, as a mean z-score.

    The curve is detrended first by subtracting its moving average over one period: lag curves
    often rise or fall with the lag, and a plain z-score then reads a slope as (missing)
    periodicity. A moving average over one full period removes the trend but not the period.
    """
    lags, values = np.asarray(lags, dtype=float), np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    lags, values = lags[ok], values[ok]
    if values.size < 3:
        return 0.0
    spacing = float(np.median(np.diff(lags)))
    window = int(round(period / spacing)) if spacing > 0 else 0
    if window >= 2:
        values = values - uniform_filter1d(values, size=window, mode="nearest")
    if np.std(values) == 0:
        return 0.0
    z = (values - np.mean(values)) / np.std(values)
    picks = [z[np.argmin(np.abs(lags - m * period))] for m in range(1, multiples + 1) if m * period <= lags[-1]]
    return float(np.mean(picks)) if picks else 0.0


#: Why the experiments do not run on a VisionTS (one line: the CLI prints it as its error).
VISIONTS_REFUSAL = (
    "the built-in experiments are ViTime's: their expected periods and one-column tolerances assume "
    "ViTime's time grid, not a series folded by one --periodicity (explain a VisionTS with "
    "'attnviz explain --model visionts')"
)


def check_experiment_forecaster(forecaster: Any) -> None:
    """Refuse a VisionTS forecaster (see the module doc), before any forward."""
    from .forecasters.visionts import VisionTSForecaster

    if isinstance(forecaster, VisionTSForecaster):
        raise ValueError(VISIONTS_REFUSAL)


def select_heads(res: Any, exp: Experiment) -> list[tuple[str, int]]:
    return resolve_heads(res, exp.heads, exp.top_k)


class ExperimentRunner:
    """Runs experiments on one forecaster, sharing analyses between experiments."""

    def __init__(self, forecaster: Any, out_dir: str | Path, plotter: Any | None = None) -> None:
        from .analysis import MultiHeadAttentionRollout
        from .plotting import Plotter

        check_experiment_forecaster(forecaster)
        self.forecaster = forecaster
        self.out_dir = Path(out_dir)
        self.plotter = plotter or Plotter()
        self.explainer = MultiHeadAttentionRollout(forecaster)
        self._cache: dict[tuple[str, int, int], Any] = {}

    def analyze(self, key: str, series: np.ndarray, horizon: int) -> Any:
        cache_key = (key, len(series), horizon)
        if cache_key not in self._cache:
            self._cache[cache_key] = self.explainer.analyze(series, horizon)
        return self._cache[cache_key]

    # ----- per-kind runners ----------------------------------------------------------------------
    def run(self, exp: Experiment) -> Outcome:
        """Run one experiment into ``<out>/<name>/`` through the report writer (figures +
        summary.json; an earlier run's files there are replaced, see :mod:`attnviz.report`)."""
        start = time.time()
        runner: Callable[[Experiment, ReportWriter], Outcome] = getattr(self, f"_run_{exp.kind}")
        with ReportWriter(self.out_dir / exp.name, exp.name, self.plotter) as report:
            outcome = runner(exp, report)
            outcome.details.setdefault("model", model_label(self.forecaster))
            outcome.seconds = round(time.time() - start, 2)
            summary = outcome.to_dict()
            summary.pop("files")
            outcome.files = report.finish(summary)["files"]
        return outcome

    def _signal(self, expr: str, length: int) -> np.ndarray:
        from .signals import evaluate_expression

        return evaluate_expression(expr, length)

    def _history_and_truth(self, expr: str, length: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """The signal's first ``length`` samples and its real next ``horizon`` ones.

        Expressions are element-wise in ``n``, so one evaluation over both spans serves both.
        """
        full = self._signal(expr, length + horizon)
        return full[:length], full[length:]

    @staticmethod
    def _figures(
        report: ReportWriter,
        res: Any,
        exp: Experiment,
        heads: Sequence[tuple[str, int]],
        truth: np.ndarray | None = None,
        reference_periods: Sequence[float] | None = None,
    ) -> list[str]:
        """The standard figures, with the experiment's known periods as reference periods."""
        periods = exp.known_periods if reference_periods is None else reference_periods
        return report.analysis_figures(res, heads, reference_periods=periods, truth=truth)

    @staticmethod
    def _forecast_error(res: Any, truth: np.ndarray | None) -> dict[str, float] | None:
        """The forecast's MAE against the real continuation, and the mean forecast's."""
        from .evaluation import mae, mean_forecast

        if truth is None:
            return None
        model = mae(res.forecast.forecast, truth)
        baseline = mae(mean_forecast(res.series, len(truth)), truth)
        return {"mae": model, "mean_forecast_mae": baseline, "ratio_to_mean": model / baseline}

    def _single_details(self, res: Any, heads: Sequence[tuple[str, int]]) -> dict[str, Any]:
        return {
            "grid": res.grid.to_dict(),
            "selected_heads": selected_heads_json(res, heads),
            "ranked_heads": ranked_heads_json(res, 12),
        }

    def _run_single(self, exp: Experiment, report: ReportWriter) -> Outcome:
        series, truth = self._history_and_truth(exp.signal, exp.length, exp.horizon)
        res = self.analyze(exp.signal, series, exp.horizon)
        heads = select_heads(res, exp)
        period = exp.known_periods[0]
        hits = heads_with_period(res, period)
        if hits and (hits[0]["layer"], hits[0]["head"]) not in heads:
            heads = [(hits[0]["layer"], hits[0]["head"]), *heads]  # the clearest periodic head too
        files = self._figures(report, res, exp, heads, truth)
        details = self._single_details(res, heads)
        details["forecast_vs_truth"] = self._forecast_error(res, truth)
        details["heads_with_fundamental_peaks"] = hits
        verdict = "pass" if hits else "fail"
        observed = (
            f"{len(hits)} head(s) peak within one column ({res.grid.samples_per_col:g} samples) of "
            f"at least two multiples of {period:.1f}"
            + (
                f", e.g. {hits[0]['layer']} head {hits[0]['head']} at "
                f"{', '.join(f'{p:.1f}' for p in hits[0]['peaks_samples'])} samples"
                if hits
                else ""
            )
        )
        return Outcome(exp.name, exp.title, exp.expected, observed, verdict, files, details)

    def _run_contrast(self, exp: Experiment, report: ReportWriter) -> Outcome:
        ref_expr = exp.params["reference_signal"]
        period = exp.known_periods[0]
        ref_res = self.analyze(ref_expr, self._signal(ref_expr, exp.length), exp.horizon)
        series, truth = self._history_and_truth(exp.signal, exp.length, exp.horizon)
        res = self.analyze(exp.signal, series, exp.horizon)
        flagged = heads_with_period(ref_res, period)
        tol, limit = res.grid.samples_per_col, 4 * period
        rows, vanished, counted = [], 0, 0
        for h in flagged:
            before = period_strength(ref_res, h["layer"], h["head"], period)
            after = period_strength(res, h["layer"], h["head"], period)
            est = res.periods(h["layer"], h["head"])
            remaining = periodic_peaks(est.peaks_samples, period, tol, limit)
            fundamental = est.fundamental_samples
            # Only heads that stand out at the multiples with the reference signal can lose it
            # (peaks near two multiples on a flat curve are not a periodicity to lose).
            showed = before > 0
            # A remaining peak at an even multiple may belong to sin(n/5)'s 31.4-sample period;
            # the fundamental is gone when the curve no longer repeats at ~62.8 samples.
            moved = not (np.isfinite(fundamental) and abs(fundamental - period) <= tol)
            gone = showed and (after < 0.5 * before or moved)
            counted += int(showed)
            vanished += int(gone)
            rows.append(
                {
                    "layer": h["layer"],
                    "head": h["head"],
                    "strength_with": before,
                    "strength_without": after,
                    "peaks_near_multiples_without": remaining,
                    "fundamental_without": fundamental,
                    "showed_it": showed,
                    "vanished": gone,
                }
            )
        drawn = [(r["layer"], r["head"]) for r in rows if r["showed_it"]][: exp.top_k] or select_heads(res, exp)
        files = self._figures(report, res, exp, drawn, truth)
        if not counted:
            verdict, observed = "fail", f"no head showed ~{period:.1f}-sample peaks in {exp.params['reference']}, nothing to contrast"
        else:
            verdict = "pass" if vanished >= max(1, int(np.ceil(0.5 * counted))) else "fail"
            mean_before = np.mean([r["strength_with"] for r in rows if r["showed_it"]])
            mean_after = np.mean([r["strength_without"] for r in rows if r["showed_it"]])
            observed = (
                f"{vanished}/{counted} head(s) that showed it lost the ~{period:.1f}-sample periodicity "
                f"(mean detrended lag-curve z-score at its multiples {mean_before:.2f} -> {mean_after:.2f})"
            )
        details = self._single_details(res, select_heads(res, exp))
        details["forecast_vs_truth"] = self._forecast_error(res, truth)
        details["contrast"] = rows
        return Outcome(exp.name, exp.title, exp.expected, observed, verdict, files, details)

    def _run_period_sweep(self, exp: Experiment, report: ReportWriter) -> Outcome:
        from .signals import sinusoid

        periods = exp.params["periods"]
        rows = []
        for p in periods:
            res = self.analyze(f"sinusoid:{p}", sinusoid(exp.length, p), exp.horizon)
            top = res.ranked_heads[0]
            rows.append({"true": float(p), "detected": top.period_samples, "layer": top.layer, "head": int(top.head)})
        spc = res.grid.samples_per_col  # one token column of the sweep's calls (all one length)
        detected = np.array([r["detected"] for r in rows], dtype=float)
        true = np.array(periods, dtype=float)
        ok = period_recovered(detected, true, spc)
        fig = self.plotter.period_sweep(true, detected, spc)
        files = [report.add_figure(fig, "detected_vs_true", kind="period_sweep")]
        verdict = "pass" if ok.mean() >= 0.75 else "fail"
        observed = f"{int(ok.sum())}/{len(ok)} periods recovered within max(one column = {spc:g}, 8 %)"
        return Outcome(exp.name, exp.title, exp.expected, observed, verdict, files, {"sweep": rows, "within_tolerance": ok.tolist()})

    def _run_noise(self, exp: Experiment, report: ReportWriter) -> Outcome:
        from .signals import add_noise

        clean = self._signal(exp.signal, exp.length)
        period = exp.known_periods[0]
        ref = self.analyze(exp.signal, clean, exp.horizon)
        flagged = heads_with_period(ref, period) or [
            {"layer": h.layer, "head": int(h.head)} for h in ref.ranked_heads[:1]
        ]
        layer, head = flagged[0]["layer"], flagged[0]["head"]
        rows, curves = [], []
        for snr in exp.params["snr_db"]:
            noisy = add_noise(clean, snr, seed=exp.params["seed"])
            res = self.analyze(f"{exp.signal}|snr={snr}", noisy, exp.horizon)
            hits = periodic_peaks(res.periods(layer, head).peaks_samples, period, res.grid.samples_per_col, 4 * period)
            rows.append(
                {
                    "snr_db": snr,
                    "strength": period_strength(res, layer, head, period),
                    "peaks_near_multiples": hits,
                    "top_head": ranked_heads_json(res, 1)[0],
                }
            )
            curves.append((f"{snr} dB", *res.lag_curve(layer, head)))
        holds = [r["snr_db"] for r in rows if r["peaks_near_multiples"]]
        fig = self.plotter.lag_curves(curves, reference_periods=(period,), title=f"{layer} head {head}: lag curve vs SNR")
        suffix = f"layer_{ref.layer_index(layer)}_head_{head}_snr"
        files = [report.add_figure(fig, suffix, kind="lag_curves", reference_periods=(period,), layer=layer, head=head)]
        observed = (
            f"{layer} head {head} keeps peaks near multiples of {period:.1f} down to {min(holds)} dB"
            if holds else f"{layer} head {head} shows no ~{period:.1f}-sample peaks at any tested SNR"
        )
        return Outcome(exp.name, exp.title, exp.expected, observed, "info", files, {"layer": layer, "head": head, "snr": rows})

    def _run_dataset(self, exp: Experiment, report: ReportWriter) -> Outcome:
        from .datasets import load_dataset

        data = load_dataset(exp.params["dataset"])
        series = np.asarray(data.values, dtype=float)[-exp.length:]
        res = self.analyze(f"dataset:{data.name}", series, exp.horizon)
        known = (float(data.known_period_samples),)
        heads = select_heads(res, exp)
        files = self._figures(report, res, exp, heads, reference_periods=known)
        top = res.ranked_heads[0]
        tol = float(recovery_tolerance(known[0], res.grid.samples_per_col))
        ok = bool(period_recovered(top.period_samples, known[0], res.grid.samples_per_col))
        observed = (
            f"top head {top.layer} head {top.head}: period {top.period_samples:.1f} samples "
            f"(known {known[0]:g}; tolerance {tol:.1f})"
        )
        details = self._single_details(res, heads)
        details["dataset"] = {"name": data.name, "description": data.description, "unit": data.unit}
        return Outcome(exp.name, exp.title, exp.expected, observed, "pass" if ok else "fail", files, details)


def run_experiments(
    forecaster: Any,
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> list[Outcome]:
    """Run the named experiments (all by default) and return their outcomes, in order."""
    from .progress import ProgressBar

    selected = list(names) if names else list(EXPERIMENTS)
    unknown = [n for n in selected if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; available: {', '.join(EXPERIMENTS)}")
    runner = ExperimentRunner(forecaster, out_dir)
    bar = ProgressBar(len(selected), "experiments", every=1) if progress else None
    outcomes = []
    for i, name in enumerate(selected):
        outcomes.append(runner.run(EXPERIMENTS[name]))
        if bar:
            bar.update(i + 1, f"{name}: {outcomes[-1].verdict}")
    return outcomes


def format_table(outcomes: Sequence[Outcome]) -> str:
    """Plain-text table: experiment, expected effect, observed, verdict."""
    headers = ("experiment", "expected effect", "observed", "verdict")
    rows = [(o.name, o.expected, o.observed, o.verdict.upper()) for o in outcomes]
    widths = [min(60, max(len(h), *(len(r[i]) for r in rows))) if rows else len(h) for i, h in enumerate(headers)]

    def wrap(text: str, width: int) -> list[str]:
        words, lines, line = text.split(), [], ""
        for w in words:
            if line and len(line) + 1 + len(w) > width:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}".strip()
        return lines + [line] if line else lines or [""]

    out = [" | ".join(h.ljust(w) for h, w in zip(headers, widths)), "-+-".join("-" * w for w in widths)]
    for row in rows:
        cells = [wrap(c, w) for c, w in zip(row, widths)]
        for k in range(max(len(c) for c in cells)):
            out.append(" | ".join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)))
    return "\n".join(out)
