"""``attnviz scan``: the command line of a dataset scan (parser + the command)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..argtypes import non_negative_int, positive_int

__all__ = ["add_scan_parser", "cmd_scan"]


def add_scan_parser(sub: Any, add_model_args: Any) -> argparse.ArgumentParser:
    """Register ``attnviz scan`` on the CLI's subparsers."""
    scan = sub.add_parser(
        "scan", help="many series: heads.csv, series.csv, summary.json with intervals and a null baseline (resumable)"
    )
    source = scan.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="a CSV file with one series per column (header = series names)")
    source.add_argument("--folder", help="a folder of CSV files, one series each")
    source.add_argument("--synthetic", type=positive_int, metavar="COUNT",
                        help="seeded 1-3-sinusoid mixtures with a known period and continuation")
    source.add_argument("--dataset", nargs="+", metavar="NAME",
                        help="bundled real series (sunspots, co2) with their known period; use --stride for many windows")
    scan.add_argument("--column", help="with --folder: the column to read (default: each file's only numeric column)")
    scan.add_argument("--seed", type=non_negative_int, default=0, help="seed of the synthetic series, surrogates and bootstrap (default 0)")
    scan.add_argument("--length", type=positive_int, default=512, help="history samples per series: the last LENGTH (default 512)")
    scan.add_argument("--horizon", type=positive_int, default=720, help="forecast steps (default 720)")
    scan.add_argument("--holdout", action="store_true",
                      help="keep each series' last HORIZON values back as truth (forecast MAE in series.csv)")
    scan.add_argument("--stride", type=positive_int,
                      help="cut every series into windows starting each STRIDE rows (default: its last window only)")
    scan.add_argument("--batch-size", type=positive_int, default=16, help="series per model call (default 16)")
    scan.add_argument("--shard-size", type=positive_int, default=32, help="series per shard file (default 32)")
    scan.add_argument("--no-null", action="store_true", help="skip the null baseline (halves the work)")
    scan.add_argument("--ablate", type=int, metavar="K",
                      help="also ablate each series' top-K ranked heads together, and K random heads (one seeded draw "
                           "per series): forecast-error change vs the truth (needs --synthetic or --holdout)")
    scan.add_argument("--ablate-mode", choices=["mean", "zero"],
                      help="with --ablate: replace a head's output by its per-position mean over a fixed reference "
                           "set of 32 harmonic mixtures (default), or by 0")
    scan.add_argument("--html", action="store_true",
                      help="also write experiment_scan_explorer.html, the scan's offline interactive explorer")
    scan.add_argument("--out", default="attnviz-scan", help="output directory (a rerun resumes from its shards)")
    add_model_args(scan)
    scan.set_defaults(func=cmd_scan)
    return scan


def _items(args: argparse.Namespace) -> tuple[list[Any], str]:
    from .sources import bundled, csv_columns, csv_folder, synthetic

    if args.column and not args.folder:
        raise ValueError("--column is for --folder; with --csv every column is a series")
    if args.synthetic:
        if args.stride:
            raise ValueError("--stride cuts real series into windows; --synthetic makes COUNT series already")
        return synthetic(args.synthetic, args.seed, args.length, args.horizon), f"synthetic:{args.synthetic}:seed={args.seed}"
    stride = args.stride
    if args.dataset:
        names = sorted({name.lower() for name in args.dataset})
        return bundled(names, args.length, args.horizon, args.holdout, stride), f"dataset:{','.join(names)}:stride={stride}"
    if args.csv:
        return csv_columns(Path(args.csv), args.length, args.horizon, args.holdout, stride), f"csv:{Path(args.csv).name}:stride={stride}"
    folder = Path(args.folder)
    if not folder.is_dir():
        raise ValueError(f"--folder {folder} is not a folder")
    return (csv_folder(folder, args.length, args.horizon, args.holdout, args.column, stride),
            f"folder:{folder.name}:column={args.column}:stride={stride}")


def cmd_scan(args: argparse.Namespace) -> int:
    from .ablation import ScanAblation, ablation_fields, check_request

    check_request(args)  # before torch is imported: a bad --ablate fails at once
    from ..analysis import MultiHeadAttentionRollout
    from ..progress import ProgressBar
    from ..report import ensure_writable_dir, model_label
    from ..cli import device_name, load_model
    from .runner import Distributed, run_shards
    from .shards import ScanSettings, claim_folder, items_digest, model_digest

    items, source = _items(args)
    if not items:
        raise ValueError(f"{source} holds no series")
    requested = device_name(args.device)  # "auto" resolved first: under torchrun each rank takes its own GPU
    where = Distributed.from_env(requested)
    device = f"cuda:{where.local_rank}" if where.world > 1 and requested.startswith("cuda") else requested
    out = ensure_writable_dir(args.out)
    try:
        fc = load_model(args, device=device)
        if args.ablate is None:
            explainer, ablator = MultiHeadAttentionRollout(fc), None
        else:
            from ..ablation import HeadAblator

            ablator = HeadAblator(fc)
            explainer = ablator.explainer
        heads = explainer.num_heads
        settings = ScanSettings(
            source=source, series=len(items), data_digest=items_digest(items),
            length=args.length, horizon=args.horizon, holdout=bool(args.holdout or args.synthetic),
            null=not args.no_null, seed=args.seed, shard_size=args.shard_size, model=str(model_label(fc)),
            weights_digest=model_digest(fc.model), grid=_grid_text(fc, args.length, args.horizon),
            layers=len(heads), heads=max(heads.values()), **ablation_fields(args, sum(heads.values())),
        )
        if where.rank == 0:
            existing = claim_folder(out, settings)
        where.barrier()
        if where.rank != 0:
            existing = claim_folder(out, settings)
        talk = where.rank == 0
        if talk and existing:
            print(f"attnviz scan: resuming in {out}: {existing} shard file(s) found", file=sys.stderr)
        start = time.time()
        bar = ProgressBar(max(1, -(-settings.shards // where.world)), "scan shards", every=1) if talk else None
        done = run_shards(
            explainer, items, out, settings, args.batch_size, where,
            report=lambda message: print(f"attnviz scan: rank {where.rank}: {message}", file=sys.stderr),
            progress=(lambda step, total: bar.update(step)) if bar else (lambda step, total: None),
            ablation=ScanAblation.from_settings(ablator, settings),
        )
        where.barrier()
        if where.rank != 0:
            return 0
        grid = fc.grid(args.length, args.horizon)
        summary = _write_report(out, settings, explainer, grid.samples_per_col, done, time.time() - start, args.html)
    finally:
        where.close()
    print(f"scanned {summary['scanned']} series ({summary['skipped']} skipped) -> {out / 'heads.csv'}, "
          f"{out / 'series.csv'}, {out / 'summary.json'}")
    return 0


def _grid_text(fc: Any, length: int, horizon: int) -> str:
    """The token geometry of this call (e.g. VisionTS's periodicity shows in it), for the fingerprint."""
    try:
        grid = fc.grid(length, horizon)
    except ValueError:  # a length the model cannot take: every series will be skipped with the reason
        return "unavailable"
    return json.dumps(grid.to_dict(), sort_keys=True) if hasattr(grid, "to_dict") else repr(grid)


def _write_report(out: Path, settings: Any, explainer: Any, samples_per_col: float, done: dict[str, int], seconds: float,
                  html: bool = False) -> dict[str, Any]:
    from ..report import ReportWriter
    from .ablation import ablation_summary
    from .figures import ablation_figure, interval_figure, similarity_figure
    from .merge import merge_shards

    names = explainer.layer_names
    merged = merge_shards(out, settings, names, [explainer.num_heads[n] for n in names], samples_per_col)
    summary = merged.summary(settings.seed)
    with ReportWriter(out, "scan") as report:
        report.add_table("heads.csv", merged.heads_csv())
        report.add_table("series.csv", merged.series_csv())
        plotter = report.plotter
        stats = merged.head_statistics(settings.seed)
        fig = plotter.score_heatmap(stats["score"].mean, names, title=f"mean periodicity score over {summary['compared']} series")
        report.add_figure(fig, "head_scores", kind="head_scores")
        report.add_figure(interval_figure(plotter, summary["heads"], summary["compared"]), "head_intervals", kind="head_intervals")
        clusters, order = merged.clusters()
        labels = [merged.head_label(i) for i in range(merged.similarity.shape[0])]
        fig = similarity_figure(plotter, merged.similarity, order, labels, [c.members for c in clusters])
        report.add_figure(fig, "head_clusters", kind="head_clusters")
        recovery = merged.period_recovery()
        if recovery is not None:
            fig = plotter.period_sweep(recovery["true"], recovery["detected"], samples_per_col,
                                       title="top head's period vs the known period")
            report.add_figure(fig, "detected_vs_true", kind="period_recovery")
        if settings.ablate:
            summary["ablation"] = ablation_summary(merged, settings)
            fig = ablation_figure(plotter, merged.topk_delta, merged.random_delta, summary["ablation"])
            report.add_figure(fig, "ablation", kind="ablation")
        if html and summary["scanned"]:
            from ..explorer import write_scan_html

            report.add_page(lambda path: write_scan_html(merged, summary, path))
        elif html:
            print("attnviz scan: no explorer page: none of the series was scanned", file=sys.stderr)
        written = report.finish({"settings": settings.to_dict(), "shards": done, "seconds": round(seconds, 1), **summary})
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        return written
