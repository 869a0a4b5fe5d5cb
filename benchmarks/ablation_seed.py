"""Do the top-ranked period heads matter more for the forecast than as many random heads?

    python benchmarks/ablation_seed.py [--weights PATH] [--draws 40] [--seed 0] [--modes mean zero]
                                       [--ks 3 5 10] [--reference-count 32] [--out DIR]

The seed signal sin(n/10)+sin(n/5+50)+cos(n+50): 512 samples of history, the next 720 as the
truth.  For each ablation mode and k, the k top-ranked heads (``res.ranked_heads`` of the
unablated model) are ablated, and so are k heads drawn uniformly from all heads, ``--draws``
times (seeded).  The error change is MAE(ablated, truth) - MAE(unablated, truth); positive =
ablation hurts.  Printed per row: the top-k change, the random draws' median and central 95 %
percentile interval (the spread of the null), the random mean with a 95 % percentile-bootstrap
interval, and the permutation p-value (1 + #draws >= top-k) / (1 + draws).  ``--out`` also
writes the figure (``plot_ablation``) per mode.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SEED_EXPR = "sin(n/10)+sin(n/5+50)+cos(n+50)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", nargs="+", default=["mean", "zero"], choices=["mean", "zero"])
    parser.add_argument("--ks", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--reference-count", type=int, default=32)
    parser.add_argument("--out", default=None, help="also write one figure per mode here")
    parser.add_argument("--single-heads", action="store_true",
                        help="also ablate every head alone (first mode): the most harmful heads, and "
                             "where the top-ranked heads fall among all")
    args = parser.parse_args(argv)

    import attnviz
    from attnviz.ablation import HeadAblator
    from attnviz.signals import evaluate_expression

    fc = attnviz.load_forecaster(args.weights)
    ablator = HeadAblator(fc)
    x = evaluate_expression(SEED_EXPR, 512 + 720)
    history, truth = x[:512], x[512:]
    print(f"model: {fc.source} ({len(ablator.all_heads)} heads in {len(ablator.layer_names)} layers)")
    print(f"signal: {SEED_EXPR}, history 512, truth the next 720; draws {args.draws}, seed {args.seed}")
    rows = []
    for mode in args.modes:
        start = time.perf_counter()
        means = ablator.default_means(512, 720, count=args.reference_count) if mode == "mean" else None
        cmp = ablator.compare(history, 720, top_k=tuple(args.ks), draws=args.draws, seed=args.seed, mode=mode,
                              reference=means, truth=truth, analyze=False)
        elapsed = time.perf_counter() - start
        if mode == args.modes[0]:
            base = cmp.rows[0].result
            ranked = widest(cmp.rows).result.heads  # the largest --ks value, wherever it was given
            print(f"unablated MAE {base.mae_baseline:.4f}; top-{len(ranked)} ranked heads: "
                  + ", ".join(f"{layer}:{head}" for layer, head in ranked))
        for r in cmp.rows:
            rows.append((mode, r))
        print(f"({mode}: {elapsed:.0f} s)")
        if args.out:
            from attnviz.ablation_cli import plot_ablation
            from attnviz.plotting import Plotter

            path = Path(args.out) / f"ablation_seed_{mode}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Plotter().save(plot_ablation(cmp, history, row=0, label="seed signal"), path)
            print(f"wrote {path}")
    if args.single_heads:
        top = widest([r for mode, r in rows if mode == args.modes[0]]).result
        ranked = [(h.layer, int(h.head)) for h in top.baseline_analysis.ranked_heads]
        single_heads(ablator, history, truth, args.modes[0], args.reference_count, top.heads, ranked)
    print()
    print("| mode | k | top-k ΔMAE | random median | random 95 % interval (draws) | random mean [95 % bootstrap] "
          "| p (top-k >= random) | draws hurting more than top-k |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, r in rows:
        rc = r.random_changes
        lo, hi = r.interval
        mlo, mhi = r.mean_interval
        worse = int(np.sum(rc >= r.chosen_change))
        print(f"| {mode} | {r.k} | {r.chosen_change:+.4f} | {np.median(rc):+.4f} | [{lo:+.4f}, {hi:+.4f}] "
              f"| {rc.mean():+.4f} [{mlo:+.4f}, {mhi:+.4f}] | {r.p_value:.3f} | {worse}/{len(rc)} |")
    return 0


def widest(rows):
    """The comparison row of the most top-ranked heads (the largest k)."""
    return max(rows, key=lambda r: len(r.result.heads))


def single_heads(ablator, history, truth, mode, reference_count, cmp_heads, ranked) -> None:
    """Each head ablated alone: ΔMAE per head, the 10 most harmful, and the top-ranked heads' places."""
    from attnviz.evaluation import mae

    means = ablator.default_means(512, 720, count=reference_count) if mode == "mean" else None
    heads = ablator.all_heads
    base = mae(ablator.forecaster.predict(history, 720).forecast, truth)
    forecasts = ablator.forecast_each(history, 720, [[h] for h in heads], mode, means)
    delta = np.array([mae(f.forecast, truth) - base for f in forecasts])
    order = np.argsort(-delta)
    place = {heads[j]: i + 1 for i, j in enumerate(order)}
    print(f"\neach head alone ({mode}): ΔMAE median {np.median(delta):+.4f}, max {delta.max():+.4f}; most harmful:")
    print("  " + ", ".join(f"{heads[j][0]}:{heads[j][1]} {delta[j]:+.4f} (ranked #{ranked.index(heads[j]) + 1})"
                           for j in order[:10]))
    print(f"  top-ranked heads' places by harm (1 = most harmful of {len(heads)}): "
          + ", ".join(f"{layer}:{head} #{place[(layer, head)]}" for layer, head in cmp_heads))


if __name__ == "__main__":
    raise SystemExit(main())
