"""``attnviz ablate``: do the top-ranked (or chosen) heads matter more than random heads?

Ablates the chosen heads of one series (as ``attnviz explain`` reads it), compares the error
change with ``--random K`` random heads over ``--draws`` seeded draws, and writes, through the
report writer, ``OUT/experiment_ablate_error_change_and_forecast.png`` (error change: chosen heads
vs the random draws with their percentile interval; the forecast with and without ablation) and
``OUT/summary.json``.

The truth: ``--expr`` is evaluated ``--horizon`` samples further; ``--csv`` has one only with
``--holdout`` (the last ``--horizon`` values of the column, after any window, are held out).  Without a truth the
error change is the MAE between the ablated and the unablated forecast.

Only the standard library is imported at module level (``attnviz --help`` stays fast).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from .argtypes import non_negative_int, open_unit_float, positive_int
from .cli import UserError, _add_model_args, load_model, load_series, parse_heads

__all__ = ["add_ablate_parser", "cmd_ablate", "plot_ablation"]


def add_ablate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``ablate`` on ``subparsers`` (``parser.add_subparsers(...)``) and return it."""
    p = subparsers.add_parser(
        "ablate", help="ablate heads (top-ranked or chosen) vs random heads: figure + summary.json"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="CSV file with a header row")
    source.add_argument("--expr", help="safe expression in n, e.g. 'sin(n/10)+sin(n/5+50)+cos(n+50)'")
    p.add_argument("--column", help="CSV column to use (with --csv)")
    p.add_argument("--length", type=positive_int, default=512, help="history samples of --expr (default 512)")
    p.add_argument("--last", type=positive_int, help="use the last N data rows of the CSV")
    p.add_argument("--start", type=non_negative_int, help="first data row of the CSV to use (from 0, after the header)")
    p.add_argument("--stop", type=non_negative_int, help="data row of the CSV to stop before")
    p.add_argument("--horizon", type=positive_int, default=720, help="forecast steps (default 720)")
    p.add_argument("--holdout", action="store_true",
                   help="with --csv: hold out the last --horizon values (of the window) as the truth")
    heads = p.add_mutually_exclusive_group()
    heads.add_argument("--heads", help="heads to ablate as LAYER:HEAD pairs, e.g. '4:1,blocks.6.attn:3'")
    heads.add_argument("--top-k", type=positive_int, default=3, help="ablate the K top-ranked heads (default 3)")
    p.add_argument("--random", type=positive_int, default=None, metavar="K",
                   help="random heads per draw (default: as many as ablated)")
    p.add_argument("--draws", type=positive_int, default=20, help="random draws (default 20)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random draws (default 0)")
    p.add_argument("--mode", choices=["mean", "zero"], default="mean",
                   help="replace a head's output by its per-position mean over the reference set, or by 0")
    p.add_argument("--reference-count", type=positive_int, default=32,
                   help="held-out harmonic mixtures (same length and horizon) for --mode mean (default 32)")
    p.add_argument("--confidence", type=open_unit_float, default=0.95,
                   help="interval over the draws, strictly between 0 and 1 (default 0.95)")
    p.add_argument("--out", default="attnviz-ablate", help="output directory")
    _add_model_args(p)
    p.set_defaults(func=cmd_ablate)
    return p


def _series_and_truth(args: argparse.Namespace) -> tuple[Any, Any, str, Any]:
    """(history, truth or None, label, rows) from --expr/--length or --csv [--holdout]."""
    if args.expr:
        args = argparse.Namespace(**{**vars(args), "length": args.length + args.horizon})
    source = load_series(args)
    values, label = (source.values, source.label) if hasattr(source, "values") else source
    if args.expr:
        return values[: -args.horizon], values[-args.horizon :], label, None
    rows = getattr(source, "rows", None)
    if not args.holdout:
        return values, None, label, rows
    if len(values) < args.horizon + 2:
        raise UserError(f"--holdout: the column has {len(values)} values; need at least --horizon ({args.horizon}) + 2")
    return values[: -args.horizon], values[-args.horizon :], label, rows


def check_head_counts(args: argparse.Namespace, ablator: Any, chosen: Any) -> None:
    """What needs the model's head count: --heads in range, --top-k and --random at most all heads."""
    if chosen != "auto":
        try:
            ablator.resolve(chosen)
        except ValueError as exc:  # names the layer and its heads
            raise UserError(f"--heads: {exc}") from None
    total = len(ablator.all_heads)
    flags = ([("--top-k", args.top_k)] if chosen == "auto" else []) + [("--random", args.random)]
    for flag, k in flags:
        if k is not None and k > total:
            raise UserError(f"{flag} {k}: the model has {total} heads in its attention layers; give at most {total}")


def cmd_ablate(args: argparse.Namespace) -> int:
    from .ablation import HeadAblator
    from .ranking import RankingCaveatWarning
    from .report import ReportWriter, model_label
    from .validation import as_series

    if args.holdout and not args.csv:
        raise UserError("--holdout is for --csv (with --expr the truth is the expression continued)")
    chosen = parse_heads(args.heads) if args.heads else "auto"
    history, truth, label, rows = _series_and_truth(args)
    as_series(history, f"the history (--length {args.length})" if args.expr else "the history (the CSV rows used)")
    with ReportWriter(Path(args.out), "ablate") as report:  # checks --out before any work
        fc = load_model(args)
        ablator = HeadAblator(fc)
        check_head_counts(args, ablator, chosen)  # before the reference forwards
        with warnings.catch_warnings():  # ranking caveats: printed below as one-line notes
            warnings.simplefilter("ignore", RankingCaveatWarning)
            comparison = ablator.compare(
                history, args.horizon, top_k=args.top_k, heads=None if chosen == "auto" else chosen,
                random_k=args.random, draws=args.draws, seed=args.seed, mode=args.mode, reference=args.reference_count,
                truth=truth, confidence=args.confidence,
            )
        row = comparison.rows[0]
        means = row.result.reference
        notes = [caveat.detail for caveat in row.result.baseline_analysis.series_periodicity.caveats()]
        fig = plot_ablation(comparison, history, plotter=report.plotter, label=label)
        report.add_figure(fig, "error_change_and_forecast", kind="ablation")
        summary = report.finish({
            "signal": label, "rows": rows, "length": len(history), "horizon": args.horizon,
            "model": model_label(fc), "mode": args.mode,
            "reference": None if means is None else {**means.to_dict(), "source": "harmonic_mixtures"},
            "truth_known": truth is not None, "metric": comparison.metric, "ranking_caveats": notes,
            "heads": [{"layer": layer, "head": head} for layer, head in row.result.heads],
            "ablation": row.result.to_dict(include_forecasts=True),
            "comparison": comparison.to_dict(),
        })
    for note in notes + report.notes:
        print(f"attnviz ablate: note: {note}", file=sys.stderr)
    lo, hi = row.interval
    print(f"{len(row.result.heads)} heads ({args.mode}-ablated): error change {row.chosen_change:+.4f}; "
          f"{row.k} random heads over {args.draws} draws: median {float(_median(row.random_changes)):+.4f}, "
          f"{args.confidence:.0%} interval [{lo:+.4f}, {hi:+.4f}], p = {row.p_value:.3f} ({comparison.metric})")
    print(f"wrote {', '.join(summary['files'])} and {Path(args.out) / 'summary.json'}")
    return 0


def _median(values: Any) -> float:
    import numpy as np

    return float(np.median(values))


def plot_ablation(comparison: Any, history: Any = None, row: int = 0, plotter: Any = None,
                  label: str | None = None) -> Any:
    """Figure: error change of each row (chosen heads vs random draws with the percentile interval
    and the bootstrap interval of their mean) and the forecast of row ``row`` with and without
    ablation (after the last ``2 * horizon`` history samples, if ``history`` is given)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plotting import Plotter

    plotter = plotter or Plotter()
    colors = plotter.palette
    with plotter.rc_context():
        fig = Figure(figsize=(12.5, 5.0), dpi=plotter.dpi, layout="constrained")
        FigureCanvasAgg(fig)
        ax, fx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.7]})
        rng = np.random.default_rng(0)  # jitter only
        pct = f"{comparison.confidence:.0%}"
        for i, r in enumerate(comparison.rows):
            vals = np.asarray(r.random_changes)
            ax.scatter(i + rng.uniform(-0.14, 0.14, len(vals)), vals, s=14, color="0.55", alpha=0.6, lw=0,
                       label=f"random heads ({comparison.draws} draws)" if i == 0 else None, zorder=2)
            lo, hi = r.interval
            ax.errorbar(i + 0.27, np.median(vals), yerr=[[np.median(vals) - lo], [hi - np.median(vals)]],
                        fmt="o", color="0.25", ms=4, capsize=4, lw=1.6, zorder=3,
                        label=f"{pct} interval of the draws (median)" if i == 0 else None)
            mlo, mhi = r.mean_interval
            ax.errorbar(i + 0.38, np.mean(vals), yerr=[[np.mean(vals) - mlo], [mhi - np.mean(vals)]],
                        fmt="s", color=colors[0], ms=4, capsize=3, lw=1.2, zorder=3,
                        label=f"mean of the draws ({pct} bootstrap)" if i == 0 else None)
            ax.scatter([i], [r.chosen_change], marker="D", s=60, color=colors[3], edgecolor="k", zorder=4,
                       label="chosen / top-ranked heads" if i == 0 else None)
            ax.annotate(f"p={r.p_value:.2f}", (i, r.chosen_change), xytext=(-8, 8), textcoords="offset points",
                        ha="right", fontsize="x-small")
        ax.axhline(0, color="k", lw=0.7, zorder=1)
        ax.set_xticks(range(len(comparison.rows)),
                      [f"{len(r.result.heads)} heads\nvs {r.k} random" for r in comparison.rows])
        ax.set_xlim(-0.6, len(comparison.rows) - 0.4)
        truth_known = comparison.metric == "delta_mae_vs_truth"
        ax.set_ylabel("Δ MAE vs truth (ablated − unablated)" if truth_known else "MAE(ablated, unablated forecast)")
        ax.set_title(f"{comparison.mode}-ablation: error change")
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        _forecast_panel(fx, comparison.rows[row].result, history, colors, label)
    return fig


def _forecast_panel(ax: Any, result: Any, history: Any, colors: Any, label: str | None) -> None:
    import numpy as np

    horizon = len(result.forecast.forecast)
    t_future = np.arange(horizon)
    if history is not None:
        hist = np.asarray(history, dtype=float)[-2 * horizon :]
        ax.plot(np.arange(-len(hist), 0), hist, color="0.45", lw=0.9, label="history")
    if result.truth is not None:
        ax.plot(t_future, result.truth, color="k", lw=0.9, ls=(0, (4, 2)), label="truth")
    for fc, color, lw, name, err in ((result.baseline, colors[0], 1.8, "unablated", result.mae_baseline),
                                     (result.forecast, colors[3], 1.1, f"{len(result.heads)} heads ablated",
                                      result.mae_ablated)):
        ax.plot(t_future, fc.forecast, color=color, lw=lw, label=name if err is None else f"{name} (MAE {err:.3f})")
    ax.axvline(0, color="0.3", lw=0.8, ls=":")
    ax.set_xlabel("sample (0 = first forecast step)")
    ax.set_ylabel("value")
    ax.set_title("forecast with and without ablation" + (f": {label}" if label else ""), loc="left")
    ax.legend(fontsize="x-small", ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
