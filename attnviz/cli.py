"""The ``attnviz`` command: explain, experiments, train, convert, evaluate.

Only the standard library is imported until a command actually runs, so ``--help`` is instant.
User errors print one line and exit with code 2; no tracebacks.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from .argtypes import non_negative_int, positive_float, positive_int


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="vitime", choices=["vitime", "visionts"],
                        help="forecaster family (default: the bundled ViTime)")
    visionts = parser.add_argument_group("--model visionts")
    visionts.add_argument("--periodicity", type=positive_int, help="samples per period P the series is folded by (required)")
    visionts.add_argument("--ckpt-dir", help="folder of the MAE checkpoint (default ./ckpt/)")
    visionts.add_argument("--arch", help="visionts MAE: mae_base (default), mae_large, mae_huge")
    visionts.add_argument("--download", action="store_true", help="let visionts download a missing checkpoint")
    visionts.add_argument("--allow-random-weights", action="store_true", help="explain random weights when no checkpoint")
    parser.add_argument(
        "--weights", default=None,
        help="ViTime checkpoint (.pth or native .safetensors); default: $ATTNVIZ_WEIGHTS or the bundled model",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument(
        "--trust-checkpoint", action="store_true",
        help="allow arbitrary pickle code when loading a .pth (only for files you trust)",
    )
    parser.add_argument(
        "--max-memory-gb", type=positive_float, default=None,
        help="refuse a model whose estimated memory exceeds this (default $ATTNVIZ_MAX_MEMORY_GB, else 4)",
    )


def parse_heads(text: str) -> str | list[tuple[str | int, int]]:
    """'auto' or a comma list of LAYER:HEAD (layer as index or module path), e.g. '3:2,blocks.1.attn:0'."""
    if text.strip() == "auto":
        return "auto"
    heads: list[tuple[str | int, int]] = []
    for item in text.split(","):
        layer, sep, head = item.strip().rpartition(":")
        if not sep or not layer or not head.isdigit():
            raise UserError(f"--heads: expected 'auto' or LAYER:HEAD pairs like '3:2,blocks.1.attn:0', got {item!r}")
        heads.append((int(layer) if layer.isdigit() else layer, int(head)))
    return heads


def load_series(args: argparse.Namespace) -> Any:
    """The series to explain (a ``SeriesInput``), from --csv [--column] [window] or --expr/--length."""
    import numpy as np

    from .series_input import RowWindow, SeriesInput, read_csv_series

    window = RowWindow(getattr(args, "start", None), getattr(args, "stop", None), getattr(args, "last", None))
    if args.csv:
        return read_csv_series(Path(args.csv), args.column, window)
    if args.column or window.given:
        raise UserError("--column, --last, --start and --stop pick from a --csv file; --expr takes --length")
    from .signals import evaluate_expression

    try:
        return SeriesInput(np.asarray(evaluate_expression(args.expr, args.length), dtype=float), args.expr)
    except (ValueError, TypeError) as exc:
        raise UserError(f"--expr: {exc}") from None


def cmd_explain(args: argparse.Namespace) -> int:
    from .report import ReportWriter, model_label, resolve_heads, total_heads

    heads = parse_heads(args.heads)
    source = load_series(args)
    with ReportWriter(Path(args.out), args.name) as report:  # checks --name and --out before any work
        from .analysis import MultiHeadAttentionRollout
        from .ranking import RankingCaveatWarning
        from .validation import as_series

        from .grid import check_reference_periods

        series = as_series(source.values)
        fc = load_model(args)
        # before the forward: a period shorter than one token column of this call cannot show
        check_reference_periods(args.known_period, fc.grid(len(series), args.horizon), name="--known-period")
        res = MultiHeadAttentionRollout(fc).analyze(series, args.horizon)
        with warnings.catch_warnings():  # the caveats are printed below as one-line notes
            warnings.simplefilter("ignore", RankingCaveatWarning)
            ranked = res.ranked_heads
        caveats = [caveat.detail for caveat in res.series_periodicity.caveats()]
        notes = list(caveats)
        available = total_heads(res)
        if heads == "auto" and args.top_k > available:
            notes.append(f"--top-k {args.top_k} is more than the {available} heads of this model; drawing all {available}")
        chosen = resolve_heads(res, heads, min(args.top_k, available))
        summary = report.write_analysis(
            res,
            chosen,
            reference_periods=tuple(args.known_period or ()),
            html=args.html,
            extra={
                "signal": source.label,
                "length": int(len(series)),
                "horizon": args.horizon,
                "rows": source.rows,
                "model": model_label(fc),
                "ranking_caveats": caveats,
                "forecast": res.forecast.forecast.tolist(),
            },
        )
    notes += report.notes
    if report.replaced:
        notes.append(f"replaced {report.replaced} file(s) of an earlier run in {args.out}")
    for note in notes:
        print(f"attnviz explain: note: {printable(note)}", file=sys.stderr)
    top = ranked[0]
    print(f"top head: {top.layer} head {top.head} (score {top.score:.3f}, period {top.period_samples:.1f} samples)")
    print(f"wrote {len(summary['files'])} files and {Path(args.out) / 'summary.json'}")
    return 0


def load_model(args: argparse.Namespace, configured: str | None = None, device: str | None = None) -> Any:
    """The forecaster the model flags name (``--weights``, ``--device``, ``--trust-checkpoint``,
    ``--max-memory-gb``): one place, so every command loads alike."""
    from .weights import load_forecaster

    visionts = {f: getattr(args, f, None) for f in ("periodicity", "ckpt_dir", "arch", "download", "allow_random_weights")}
    if getattr(args, "model", "vitime") == "visionts":
        if args.weights is not None:
            raise UserError("--weights is a ViTime checkpoint; with --model visionts use --ckpt-dir (and --arch)")
        if visionts["periodicity"] is None:
            raise UserError("--model visionts needs --periodicity P (samples per period, e.g. 24 for hourly data)")
        from .forecasters.visionts.loading import load_visionts

        try:
            return load_visionts(visionts["periodicity"], visionts["arch"] or "mae_base", visionts["ckpt_dir"] or "./ckpt/",
                                 download=visionts["download"], allow_random_weights=visionts["allow_random_weights"],
                                 trust_checkpoint=args.trust_checkpoint, device=device or device_name(args.device))
        except ImportError as exc:  # visionts is optional
            raise UserError(str(exc)) from None
    given = [f"--{f.replace('_', '-')}" for f, v in visionts.items() if v]
    if given:
        raise UserError(f"{', '.join(given)} only apply to --model visionts")
    return load_forecaster(args.weights, device=device or args.device, trust_checkpoint=args.trust_checkpoint,
                           configured=configured, max_memory_gb=args.max_memory_gb)


def device_name(name: str) -> str:
    """The device a ``--device`` value means here ('auto': CUDA when available)."""
    from .forecasters.vitime.forecaster import resolve_device

    return str(resolve_device(name))


def cmd_experiments(args: argparse.Namespace, configured: str | None = None) -> int:
    from .experiments import EXPERIMENTS, VISIONTS_REFUSAL, format_table, run_experiments

    if getattr(args, "model", "vitime") == "visionts":  # before loading anything
        raise UserError(f"--model visionts: {VISIONTS_REFUSAL}")
    # "a b" and "a,b" both work: people type either.
    only = [name for item in args.only for name in item.split(",") if name] if args.only else None
    unknown = [n for n in (only or []) if n not in EXPERIMENTS]
    if unknown:
        raise UserError(f"unknown experiment(s) {', '.join(unknown)}; available: {', '.join(EXPERIMENTS)}")
    fc = load_model(args, configured)
    config = getattr(fc, "config", None)
    print(f"model: {fc.source}" + (f" ({config.describe()})" if config is not None else ""), file=sys.stderr)
    outcomes = run_experiments(fc, Path(args.out), only)
    print(format_table(outcomes))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .forecasters.vitime import convert_upstream

    weights, config = convert_upstream(args.source, args.destination, trust_checkpoint=args.trust_checkpoint)
    print(f"wrote {weights} and {config}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluation_table
    from .weights import default_weights_path, is_bundled, load_forecaster

    chosen = load_model(args)
    models = [chosen]
    if not is_bundled(chosen):  # another model joins the bundled one's table
        models.insert(0, load_forecaster(default_weights_path(), device=args.device, max_memory_gb=args.max_memory_gb))
    print(evaluation_table(models, cases=args.cases))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnviz", description="See what ViT-style time-series forecasters (ViTime, VisionTS) attend to."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    explain = sub.add_parser("explain", help="analyse your own series: figures + summary.json")
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="CSV file with a header row")
    source.add_argument("--expr", help="safe expression in n, e.g. 'sin(2*pi*n/57) + 0.1*cos(n/3)'")
    explain.add_argument("--column", help="CSV column to use (default: the file's only numeric column)")
    explain.add_argument("--last", type=positive_int, help="use the last N data rows of the CSV")
    explain.add_argument("--start", type=non_negative_int, help="first data row of the CSV to use (from 0, after the header)")
    explain.add_argument("--stop", type=non_negative_int, help="data row of the CSV to stop before")
    explain.add_argument("--length", type=positive_int, default=512, help="samples of --expr (default 512)")
    explain.add_argument("--horizon", type=positive_int, default=720, help="forecast steps (default 720)")
    explain.add_argument("--heads", default="auto", help="'auto' (top-ranked) or LAYER:HEAD pairs, e.g. '3:2,5:1'")
    explain.add_argument("--top-k", type=positive_int, default=3, help="heads to plot with --heads auto")
    explain.add_argument(
        "--known-period", type=positive_float, action="append", metavar="SAMPLES",
        help="a period you know the series has (samples); drawn with its multiples on the figures (repeatable). "
        "Without it the figures mark each head's detected fundamental",
    )
    explain.add_argument("--html", action="store_true", help="also write an offline interactive explorer page")
    explain.add_argument("--name", default="explain", help="plain name used in file names (letters, digits, _ . -)")
    explain.add_argument("--out", default="attnviz-out", help="output directory")
    _add_model_args(explain)
    explain.set_defaults(func=cmd_explain)

    from .ablation_cli import add_ablate_parser
    from .scan.command import add_scan_parser

    add_ablate_parser(sub)
    add_scan_parser(sub, _add_model_args)

    experiments = sub.add_parser("experiments", help="regenerate the built-in experiments (= python main.py)")
    add_experiment_args(experiments)
    experiments.set_defaults(func=cmd_experiments)

    from .training.cli import build_parser as build_train_parser

    train = sub.add_parser("train", help="train a small ViTime on synthetic series (resumable)")
    build_train_parser(train)
    train.set_defaults(func=lambda a: __import__("attnviz.training.cli", fromlist=["run"]).run(a))

    convert = sub.add_parser("convert", help="convert an upstream ViTime .pth to safetensors + JSON")
    convert.add_argument("source", help="upstream checkpoint (.pth)")
    convert.add_argument("destination", help="output stem (.safetensors/.json) or directory")
    convert.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickle code")
    convert.set_defaults(func=cmd_convert)

    evaluate = sub.add_parser(
        "evaluate", help="forecast error vs mean and seasonal-naive baselines (--weights: beside the bundled model)"
    )
    evaluate.add_argument("--cases", type=positive_int, default=64, help="held-out harmonic mixtures")
    _add_model_args(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)
    return parser


def add_experiment_args(parser: argparse.ArgumentParser, out_default: str = "experiments") -> None:
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only these experiments (space- or comma-separated)"
    )
    parser.add_argument("--out", default=out_default, help="output directory (default: experiments)")
    _add_model_args(parser)


def run(func: Any, args: argparse.Namespace, **kwargs: Any) -> int:
    """Call a command, turning user errors into one line on stderr and exit code 2."""
    try:
        return int(func(args, **kwargs) or 0)
    except UserError as exc:
        print(f"attnviz: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as exc:
        if os.environ.get("ATTNVIZ_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"attnviz: error: {printable(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnviz: interrupted", file=sys.stderr)
        return 130


def printable(message: str) -> str:
    """``message`` with control characters (ANSI escapes from a CSV header, say) escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in message)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
