"""How fast a dataset scan runs, and whether its memory stays flat as the series pile up.

    python benchmarks/bench_scan.py                 # batch 16 vs batch 1, paired, + memory 100 vs 1000
    python benchmarks/bench_scan.py --series 1000   # also time a whole 1,000-series scan

Throughput: batch 1 and batch 16 alternate in one process after a warm-up of each (the shared
machine drifts by 30 % between runs, so only side-by-side ratios mean anything); each pair
analyses the same ``--pair-series`` synthetic series (512 + 720, bundled model, no null).
Memory: ``attnviz scan`` of 100 and of 1,000 series, each in its own process, peak RSS read
from the kernel (``ru_maxrss`` of the child).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def series_per_second(explainer, items, batch_size: int) -> float:
    from attnviz.scan.runner import compute_shard
    from attnviz.scan.shards import ScanSettings

    heads = explainer.num_heads
    settings = ScanSettings("bench", len(items), "", 512, 720, True, False, 0, len(items), "bundled",
                            len(heads), max(heads.values()))
    start = time.perf_counter()
    compute_shard(explainer, items, list(range(len(items))), settings, batch_size)
    return len(items) / (time.perf_counter() - start)


def peak_rss_of_scan(count: int, out: Path, null: bool) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of ``attnviz scan --synthetic count``, run under a fresh wrapper
    process so the peak belongs to this scan alone."""
    command = [sys.executable, "-m", "attnviz", "scan", "--synthetic", str(count), "--out", str(out)]
    if not null:
        command.append("--no-null")
    wrapper = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *command], check=True, capture_output=True, text=True)
    seconds, peak_kb = done.stdout.split()
    return float(seconds), float(peak_kb) / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--pair-series", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--series", type=int, default=0, help="also time a whole scan of this many series (with the null)")
    parser.add_argument("--no-memory", action="store_true", help="skip the 100 vs 1,000-series memory scans")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import attnviz
    from attnviz.scan.sources import synthetic

    explainer = attnviz.MultiHeadAttentionRollout(attnviz.load_forecaster())
    items = synthetic(args.pair_series, 0, 512, 720)
    for batch in (1, 16):  # warm-up of each
        series_per_second(explainer, items[:16], batch)
    ratios = []
    for pair in range(args.pairs):
        one = series_per_second(explainer, items, 1)
        sixteen = series_per_second(explainer, items, 16)
        ratios.append(sixteen / one)
        print(f"pair {pair + 1}: batch 1 {one:.2f} series/s, batch 16 {sixteen:.2f} series/s, ratio {sixteen / one:.2f}")
    print(f"batch 16 / batch 1 throughput: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}, {len(ratios)} pairs)")

    if args.no_memory and not args.series:
        return
    with tempfile.TemporaryDirectory() as tmp:
        small = peak_rss_of_scan(100, Path(tmp) / "s100", null=False)
        large = peak_rss_of_scan(1000, Path(tmp) / "s1000", null=False)
        print(f"scan without null: 100 series {small[0]:.0f} s, peak {small[1]:.0f} MB; 1000 series {large[0]:.0f} s, "
              f"peak {large[1]:.0f} MB; memory 1000 / 100 = {large[1] / small[1]:.2f}x")
        if args.series:
            seconds, peak = peak_rss_of_scan(args.series, Path(tmp) / "full", null=True)
            print(f"scan of {args.series} series with the null baseline: {seconds:.0f} s ({seconds / 60:.1f} min), peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
