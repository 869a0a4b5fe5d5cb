"""Time and peak memory of attention capture on a released-size ViTime (random weights, CPU).

    python benchmarks/bench_capture.py            # released size: 2465 tokens, 9+4 blocks, 12 heads
    python benchmarks/bench_capture.py --quick    # a small config, seconds instead of minutes

Every mode runs in its own subprocess so that the peak RSS (``ru_maxrss``) belongs to that mode
alone.  RSS is the peak of the whole child process (model build and warm-up included: a peak
cannot be reset); time is one call measured after one warm-up call (``--repeat N``: the fastest
of N).  On a machine shared with other jobs, times are slower and noisier than on an idle one.
Modes:

* ``plain``    predict with the fused attention kernel, no capture (the reference, row "a");
* ``analyze``  ``attnviz.MultiHeadAttentionRollout(fc).analyze(series, horizon)`` with defaults
  (row "b"; falls back to ``capture`` when ``attnviz.analysis`` is not importable);
* ``capture``  predict under ``rollout.capture(grid=...)``: time maps of every layer, defaults;
* ``unfused``  predict with ``fused_attn`` off everywhere and no capture (what exact costs);
* ``naive``    predict under ``capture(keep_full=True, strategy="exact")``: every full map kept
  on the CPU (row "c").
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Callable

RELEASED = {"h": 128, "maxScal": 3.5, "size": [1024, 0, 1440], "patch_size": [4, 32], "modelSize": 0.75}
QUICK = {"h": 64, "maxScal": 3.5, "size": [512, 0, 512], "patch_size": [4, 16], "modelSize": 0.25}
LENGTH, HORIZON = 512, 720
MODES = ("plain", "analyze", "capture", "unfused", "naive")
LABELS = {"plain": "(a) plain", "analyze": "(b) analyze", "naive": "(c) naive"}


def _series() -> Any:
    import numpy as np

    n = np.arange(LENGTH, dtype=float)
    return np.sin(n / 10) + np.sin(n / 5 + 50) + np.cos(n + 50)


def _workload(mode: str, config: dict) -> tuple[Callable[[], Any], str]:
    """Build the model and return (one call of the mode, a note on what ran)."""
    from attnviz.capture import AttentionRollout
    from attnviz.forecasters.vitime import ViTimeForecaster

    fc = ViTimeForecaster.from_config(config, seed=0)
    x = _series()
    note = ""
    if mode == "plain":
        return (lambda: fc.predict(x, HORIZON)), note
    if mode == "unfused":
        for m in fc.model.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = False
        return (lambda: fc.predict(x, HORIZON)), note
    rollout = AttentionRollout(fc.model)
    if mode == "analyze":
        try:
            from attnviz import MultiHeadAttentionRollout

            analyzer = MultiHeadAttentionRollout(fc)
            return (lambda: analyzer.analyze(x, HORIZON)), "MultiHeadAttentionRollout.analyze"
        except Exception as exc:  # analysis.py is written concurrently; measure the capture
            note = f"fallback to capture ({type(exc).__name__}: {exc})"
            mode = "capture"
    if mode == "capture":
        grid = fc.grid(LENGTH, HORIZON)

        def run() -> Any:
            with rollout.capture(grid=grid) as cap:
                fc.predict(x, HORIZON)
            assert len(cap.time_maps) == len(rollout.layer_names)
            return cap

        return run, note or f"capture(grid) of {len(rollout.layer_names)} layers"
    if mode == "naive":

        def run_naive() -> Any:
            with rollout.capture(keep_full=True, strategy="exact") as cap:
                fc.predict(x, HORIZON)
            return cap

        return run_naive, "keep_full=True, exact"
    raise ValueError(f"unknown mode {mode!r}; known: {MODES}")


def child(mode: str, config: dict, repeat: int, threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
    fn, note = _workload(mode, config)
    result = fn()  # warm-up
    strategies = getattr(result, "strategies", None)
    if strategies:
        note += f"; strategies used: {sorted(set(strategies.values()))}"
    del result
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
    seconds = min(times)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"mode": mode, "seconds": seconds, "peak_mb": peak_kb / 1024, "note": note}))


def parent(args: argparse.Namespace) -> None:
    modes = args.modes or list(MODES)
    config = QUICK if args.quick else RELEASED
    threads = args.threads or "torch default"
    print(
        f"config: {config}\nseries {LENGTH} samples, horizon {HORIZON}, CPU, batch 1, "
        f"threads: {threads}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"time = min of {args.repeat} after 1 warm-up"
    )
    rows = {}
    for mode in modes:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--repeat", str(args.repeat)]
        cmd += ["--quick"] if args.quick else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{mode}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {mode}: {rows[mode]['seconds']:.2f} s, {rows[mode]['peak_mb']:.0f} MB", flush=True)
    base = rows.get("plain")
    print()
    print(f"{'mode':<14} {'seconds':>8} {'peak RSS MB':>12} {'time x (a)':>11} {'mem x (a)':>10}  note")
    for mode, r in rows.items():
        t_ratio = f"{r['seconds'] / base['seconds']:.2f}" if base else "-"
        m_ratio = f"{r['peak_mb'] / base['peak_mb']:.2f}" if base else "-"
        label = LABELS.get(mode, mode)
        print(
            f"{label:<14} {r['seconds']:>8.2f} {r['peak_mb']:>12.0f} {t_ratio:>11} {m_ratio:>10}  {r['note']}"
        )
    print("\ntargets: (b) <= 1.30x time and <= 1.25x peak RSS of (a)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small config instead of the released size")
    parser.add_argument("--modes", nargs="+", choices=MODES, help=f"subset of {MODES}")
    parser.add_argument("--repeat", type=int, default=1, help="timed calls per mode (the minimum is shown)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each child")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.child:
        child(args.child, QUICK if args.quick else RELEASED, args.repeat, args.threads)
    else:
        parent(args)


if __name__ == "__main__":
    main()
