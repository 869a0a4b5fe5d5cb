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

from .argtypes import positive_int


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", default=None,
        help="ViTime checkpoint (.pth or native .safetensors); default: $ATTNVIZ_WEIGHTS or the bundled model",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument(
        "--trust-checkpoint", action="store_true",
        help="allow arbitrary pickle code when loading a .pth (only for files you trust)",
    )


def ensure_writable(out: str | Path) -> Path:
    """Create ``out`` and prove we can write there, before any work is done."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".attnviz-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output directory {path} is not writable: {exc.strerror or exc}") from None
    return path


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


def load_series(args: argparse.Namespace) -> tuple[Any, str]:
    """The series to explain, from --csv/--column or --expr/--length."""
    import numpy as np

    if args.csv:
        if not args.column:
            raise UserError("--csv needs --column NAME")
        return read_csv_column(Path(args.csv), args.column), f"{Path(args.csv).name}:{args.column}"
    from .signals import evaluate_expression

    try:
        return np.asarray(evaluate_expression(args.expr, args.length), dtype=float), args.expr
    except (ValueError, TypeError) as exc:
        raise UserError(f"--expr: {exc}") from None


def read_csv_column(path: Path, column: str) -> Any:
    import csv

    import numpy as np

    if not path.is_file():
        raise UserError(f"CSV file not found: {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(row for row in handle if not row.startswith("#"))
        if reader.fieldnames is None or column not in reader.fieldnames:
            found = ", ".join(reader.fieldnames or []) or "no header"
            raise UserError(f"column {column!r} not in {path} (columns: {found})")
        values = []
        for line, row in enumerate(reader, start=2):
            cell = (row.get(column) or "").strip()
            try:
                values.append(float(cell))
            except ValueError:
                raise UserError(f"{path} line {line}: column {column!r} holds a non-numeric value {cell!r}") from None
    if len(values) < 2:
        raise UserError(f"{path}: column {column!r} has {len(values)} value(s); need at least 2")
    return np.asarray(values)


def cmd_explain(args: argparse.Namespace) -> int:
    import json

    out = ensure_writable(args.out)
    heads = parse_heads(args.heads)
    series, label = load_series(args)
    from .analysis import MultiHeadAttentionRollout
    from .experiments import model_label, ranked_heads_json
    from .plotting import Plotter
    from .ranking import RankingCaveatWarning
    from .validation import as_series

    try:
        series = as_series(series)
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc)) from None
    fc = _load(args)
    res = MultiHeadAttentionRollout(fc).analyze(series, args.horizon)
    with warnings.catch_warnings():  # the caveats are printed below as one-line notes
        warnings.simplefilter("ignore", RankingCaveatWarning)
        ranked = res.ranked_heads
    notes = [caveat.detail for caveat in res.series_periodicity.caveats()]
    if heads == "auto":
        chosen = [(h.layer, int(h.head)) for h in ranked[: args.top_k]]
    else:
        chosen = []
        for layer, head in heads:
            name = _layer_name(res, layer)
            if not 0 <= head < res.time_maps.shape[1]:
                raise UserError(f"--heads: head {head} out of range; {name} has heads 0..{res.time_maps.shape[1] - 1}")
            chosen.append((name, head))
    plotter = Plotter()
    files = [str(plotter.save_head(res, layer, head, out, experiment=args.name)) for layer, head in chosen]
    files.append(str(plotter.save(plotter.score_grid(res), out / f"experiment_{args.name}_head_scores.png")))
    files.append(str(plotter.save(plotter.series_panel(res, layer=chosen[0][0], head=chosen[0][1]), out / f"experiment_{args.name}_series.png")))
    summary = {
        "signal": label,
        "length": int(len(series)),
        "horizon": args.horizon,
        "model": model_label(fc),
        "grid": res.grid.to_dict(),
        "ranking_caveats": notes,
        "ranked_heads": ranked_heads_json(res),
        "selected_heads": [
            {"layer": layer, "head": head, "peaks_samples": est.peaks_samples.tolist(),
             "fundamental_samples": est.fundamental_samples}
            for layer, head, est in ((lay, hd, res.periods(lay, hd)) for lay, hd in chosen)
        ],
        "forecast": res.forecast.forecast.tolist(),
        "files": files,
    }
    from .jsonutil import to_jsonable

    (out / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=1) + "\n")
    for note in notes:
        print(f"attnviz explain: note: {note}", file=sys.stderr)
    top = ranked[0]
    print(f"top head: {top.layer} head {top.head} (score {top.score:.3f}, period {top.period_samples:.1f} samples)")
    print(f"wrote {len(files)} figures and {out / 'summary.json'}")
    return 0


def _layer_name(res: Any, layer: str | int) -> str:
    if isinstance(layer, int):
        if not 0 <= layer < len(res.layer_names):
            raise UserError(f"--heads: layer index {layer} out of range 0..{len(res.layer_names) - 1}")
        return res.layer_names[layer]
    if layer not in res.layer_names:
        raise UserError(f"--heads: unknown layer {layer!r}; layers: {', '.join(res.layer_names)}")
    return layer


def _load(args: argparse.Namespace, configured: str | None = None) -> Any:
    from .weights import load_forecaster

    return load_forecaster(args.weights, device=args.device, trust_checkpoint=args.trust_checkpoint, configured=configured)


def cmd_experiments(args: argparse.Namespace, configured: str | None = None) -> int:
    from .experiments import EXPERIMENTS, format_table, run_experiments

    # "a b" and "a,b" both work: people type either.
    only = [name for item in args.only for name in item.split(",") if name] if args.only else None
    unknown = [n for n in (only or []) if n not in EXPERIMENTS]
    if unknown:
        raise UserError(f"unknown experiment(s) {', '.join(unknown)}; available: {', '.join(EXPERIMENTS)}")
    out = ensure_writable(args.out)
    fc = _load(args, configured)
    print(f"model: {fc.source} ({fc.config.describe()})", file=sys.stderr)
    outcomes = run_experiments(fc, out, only)
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

    chosen = _load(args)
    models = [chosen]
    if not is_bundled(chosen):  # another model joins the bundled one's table
        models.insert(0, load_forecaster(default_weights_path(), device=args.device))
    print(evaluation_table(models, cases=args.cases))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnviz", description="See what ViT-style time-series forecasters (ViTime) attend to."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    explain = sub.add_parser("explain", help="analyse your own series: figures + summary.json")
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="CSV file with a header row")
    source.add_argument("--expr", help="safe expression in n, e.g. 'sin(2*pi*n/57) + 0.1*cos(n/3)'")
    explain.add_argument("--column", help="CSV column to use (with --csv)")
    explain.add_argument("--length", type=positive_int, default=512, help="samples of --expr (default 512)")
    explain.add_argument("--horizon", type=positive_int, default=720, help="forecast steps (default 720)")
    explain.add_argument("--heads", default="auto", help="'auto' (top-ranked) or LAYER:HEAD pairs, e.g. '3:2,5:1'")
    explain.add_argument("--top-k", type=positive_int, default=3, help="heads to plot with --heads auto")
    explain.add_argument("--name", default="explain", help="name used in figure file names")
    explain.add_argument("--out", default="attnviz-out", help="output directory")
    _add_model_args(explain)
    explain.set_defaults(func=cmd_explain)

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
        print(f"attnviz: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as exc:
        if os.environ.get("ATTNVIZ_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"attnviz: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnviz: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
