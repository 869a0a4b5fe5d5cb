"""The training curve figure (loss and held-out error against steps) from runs' ``log.jsonl``.

    python -m attnviz.training.report runs/default/log.jsonl docs/training_curve.png

A model trained in stages (a run started with ``--init-from`` another run's checkpoint) is
drawn as one curve: give the logs in order, each optionally cut at the step its successor
started from (``LOG:STEP``); later stages continue the step axis and are marked. Besides the
figure it writes the thinned, chained log (``OUT.jsonl``, small enough to commit); given that
one file alone, it redraws the figure from it (how ``docs/training_curve.png`` is regenerated,
see ``docs/training.md``):

    python -m attnviz.training.report docs/training_curve.jsonl docs/training_curve.png
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def read_log(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    if not rows:
        raise ValueError(f"{path} holds no training records")
    # A resumed run repeats the steps after its last checkpoint: keep the latest record of each.
    latest = {r["step"]: r for r in rows}
    return [latest[s] for s in sorted(latest)]


def chain_logs(specs: list[str]) -> tuple[list[dict[str, Any]], list[int]]:
    """Concatenate stage logs (``path`` or ``path:last_step``) on one step axis.

    Returns the records (steps offset, ``stage`` added) and the global step where each later
    stage begins.
    """
    rows: list[dict[str, Any]] = []
    starts: list[int] = []
    offset = 0
    for index, spec in enumerate(specs):
        path, _, cut = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
        stage = read_log(path)
        if cut:
            try:
                last = int(cut)
            except ValueError:
                raise ValueError(f"expected LOG or LOG:STEP, got {spec!r}") from None
            stage = [r for r in stage if r["step"] <= last]
            if not stage:
                raise ValueError(f"{path} has no records up to step {last}")
        if index:
            starts.append(offset)
        rows += [{**r, "step": r["step"] + offset, "stage": index} for r in stage]
        offset = rows[-1]["step"]
    return rows, starts


def thin_log(rows: list[dict[str, Any]], every: int = 50) -> list[dict[str, Any]]:
    """Every ``every``-th step plus every evaluation and each stage's last record (small enough
    to commit; the stage boundaries stay exact)."""
    last = {r.get("stage", 0): r["step"] for r in rows}
    return [r for r in rows if r["step"] % every == 0 or "eval" in r or r["step"] == last[r.get("stage", 0)]]


def read_chained_log(path: str | Path) -> tuple[list[dict[str, Any]], list[int]] | None:
    """A log written by this module (records carry ``stage``): its records and stage starts.

    ``None`` for a run's own ``log.jsonl``. A stage starts where the previous one ends.
    """
    rows = read_log(path)
    if "stage" not in rows[0]:
        return None
    ends: dict[int, int] = {}
    for r in rows:
        ends[r["stage"]] = r["step"]
    return rows, [ends[s] for s in sorted(ends)[:-1]]


def _step_label(step: float, _pos: object = None) -> str:
    """Tick label of a step count: 500, 20k, 125k, 1.5M."""
    if abs(step) >= 1_000_000:
        return f"{step / 1_000_000:g}M"
    if abs(step) >= 1_000:
        return f"{step / 1_000:g}k"
    return f"{step:g}"


def plot_training_curve(
    rows: list[dict[str, Any]], out: str | Path, title: str = "", stage_starts: list[int] | None = None
) -> Path:
    import numpy as np

    from ..plotting import Plotter

    plotter = Plotter()
    with plotter.rc_context():
        from matplotlib.figure import Figure
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

        fig = Figure(figsize=(12.5, 4.2), layout="constrained")
        ax_loss, ax_eval = fig.subplots(1, 2)
        steps = np.array([r["step"] for r in rows])
        emd = np.array([r["future_emd"] for r in rows], dtype=float)
        window = max(1, len(rows) // 150)
        smooth = np.convolve(emd, np.ones(window) / window, mode="valid")
        # A thinned log (docs/training_curve.jsonl) holds every 50th step: say so in the legend.
        stride = int(np.median(np.diff(steps))) if len(steps) > 1 else 1
        every = "per step" if stride <= 1 else f"every {stride} steps"
        ax_loss.plot(steps, emd, color="0.8", lw=0.6, label=f"future EMD ({every})")
        ax_loss.plot(steps[window - 1:], smooth, color=plotter.palette[0], lw=1.6,
                     label=f"running mean ({window * max(stride, 1)} steps)")
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("EMD on future columns (value bins)")
        ax_d = ax_loss.twinx()
        ax_d.plot(steps, [r["difficulty"] for r in rows], color=plotter.palette[2], lw=1.2, ls="--", label="curriculum difficulty")
        ax_d.set_ylim(0, 1.4)  # headroom: the legend sits above difficulty 1 instead of on it
        ax_d.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax_d.set_ylabel("curriculum difficulty")
        lines = ax_loss.get_legend_handles_labels()
        more = ax_d.get_legend_handles_labels()
        ax_loss.legend(lines[0] + more[0], lines[1] + more[1], fontsize="x-small", loc="upper right")
        ax_loss.set_title("training loss")
        evals = [r for r in rows if "eval" in r]
        if evals:
            es = [r["step"] for r in evals]
            ax_eval.plot(es, [r["eval"]["median_ratio_to_mean"] for r in evals], marker="o", ms=3,
                         color=plotter.palette[0], label="held-out harmonic mixtures (median)")
            ax_eval.plot(es, [r["eval"]["seed_ratio_to_mean"] for r in evals], marker="s", ms=3,
                         color=plotter.palette[3], label="seed signal")
            ax_eval.axhline(1.0, color="0.3", ls=":", lw=1, label="mean forecast")
            ax_eval.axhline(0.15, color=plotter.palette[0], ls="--", lw=0.8, alpha=0.6, label="target 0.15 (mixtures)")
            ax_eval.axhline(0.5, color=plotter.palette[3], ls="--", lw=0.8, alpha=0.6, label="target 0.5 (seed)")
            ratios = np.array([r["eval"][k] for r in evals for k in ("median_ratio_to_mean", "seed_ratio_to_mean")])
            ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
            ax_eval.set_yscale("log")
            if ratios.size:  # never clip a point; keep the 0.15 target and the mean forecast in view
                ax_eval.set_ylim(min(0.1, 0.9 * ratios.min()), max(1.5, 1.1 * ratios.max()))
            # Plain ratios on the log axis ("0.5", not "5 x 10^-1").
            ax_eval.yaxis.set_major_locator(
                FixedLocator([0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 10])
            )
            ax_eval.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            ax_eval.yaxis.set_minor_formatter(NullFormatter())
        for ax in (ax_loss, ax_eval):
            # "120k", not "120000": six-digit tick labels run into each other past ~100,000 steps.
            ax.xaxis.set_major_formatter(FuncFormatter(_step_label))
            for i, start in enumerate(stage_starts or []):
                ax.axvline(start, color="0.45", lw=0.9, ls="-.",
                           label="next stage (--init-from)" if ax is ax_eval and i == 0 else None)
        if evals:
            # Beside the panel: the curves fill its whole height range over the stages.
            ax_eval.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        ax_eval.set_xlabel("step")
        ax_eval.set_ylabel("forecast MAE / mean-forecast MAE")
        ax_eval.set_title("held-out error (512 + 720)")
        if title:
            fig.suptitle(title)
        return plotter.save(fig, out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m attnviz.training.report LOG.jsonl[:STEP] [LOG.jsonl ...] OUT.png", file=sys.stderr)
        return 2
    out = args[-1]
    chained = read_chained_log(args[0]) if len(args) == 2 and Path(args[0]).exists() else None
    if chained is not None:  # the committed, already thinned log: redraw the figure only
        plot_training_curve(chained[0], out, stage_starts=chained[1])
        print(f"wrote {out}")
        return 0
    rows, starts = chain_logs(args[:-1])
    plot_training_curve(rows, out, stage_starts=starts)
    thin = Path(out).with_suffix(".jsonl")
    thin.write_text("".join(json.dumps(r) + "\n" for r in thin_log(rows)))
    print(f"wrote {out} and {thin}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
