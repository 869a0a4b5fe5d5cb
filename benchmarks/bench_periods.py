"""Does the top-ranked head find the period of a signal it was never tuned on?

    python benchmarks/bench_periods.py [--weights PATH] [--periods 37 45 71 88 113 170]

Single sinusoids (512 history + 720 horizon) with periods the built-in experiments do not use;
for each, the top-ranked head's ``period_samples`` is compared with the true period using the
tolerance max(8 samples, 8 %).  Prints a table and the hit count.
"""
from __future__ import annotations

import argparse

import numpy as np

DEFAULT_PERIODS = (37.0, 45.0, 71.0, 88.0, 113.0, 170.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--periods", type=float, nargs="+", default=DEFAULT_PERIODS)
    parser.add_argument("--phase", type=float, default=0.3)
    args = parser.parse_args(argv)

    import attnviz

    fc = attnviz.load_forecaster(args.weights)
    explainer = attnviz.MultiHeadAttentionRollout(fc)
    n = np.arange(512, dtype=float)
    hits = 0
    print(f"model: {fc.source}")
    print("| true period | top head | detected | error | within max(8, 8 %) |")
    print("|---|---|---|---|---|")
    for period in args.periods:
        res = explainer.analyze(np.sin(2 * np.pi * n / period + args.phase), 720)
        top = res.ranked_heads[0]
        err = abs(top.period_samples - period)
        ok = bool(np.isfinite(err) and err <= max(8.0, 0.08 * period))
        hits += ok
        print(f"| {period:g} | {top.layer} h{top.head} | {top.period_samples:.1f} | {err:.1f} | {'yes' if ok else 'no'} |")
    print(f"\n{hits}/{len(args.periods)} within tolerance")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
