"""Time and peak memory of attention capture on a released-size ViTime (random weights, CPU).

    python benchmarks/bench_capture.py               # released size: 2465 tokens, 9+4 blocks, 12 heads
    python benchmarks/bench_capture.py --quick       # a small config, seconds instead of minutes
    python benchmarks/bench_capture.py --batch 8     # also: a batch of 8 series per call

**Time** is measured in ONE process, because a shared machine's speed drifts between processes
by more than the 10-20 % being measured: the model is built once, every mode is warmed up once,
then each round times every mode right next to a plain fused ``predict`` (the order inside a
pair alternates between rounds) and keeps the ratio of that pair.  The table shows the median
ratio over ``--pairs`` rounds (at least 5) with its min and max, of wall time (what the targets
are about) and of the process's CPU time (all threads; it moves less with other jobs' load).
Median seconds are printed for context only: they say more about the machine's load than about
capture.  ``--threads`` (default 2) sets ``torch.set_num_threads`` everywhere; the load average is
printed at the start, after the memory runs and at the end.

**Peak RSS** cannot be reset, so every mode runs in its own subprocess (model build, one warm-up
call, one call), ``--memory-runs`` times (the allocator's peak varies by tens of MB between runs),
and the median peak is compared with the plain subprocess's.  The peak is the child's
``VmHWM`` (``ru_maxrss`` would start at the parent's peak: Linux keeps it across ``exec``), and
the children run before the parent imports torch.

Modes (all ``predict`` of one 512-sample series, horizon 720, unless ``--batch``):

* ``plain``    predict with the fused attention kernel, no capture (the reference);
* ``analyze``  ``attnviz.MultiHeadAttentionRollout(fc).analyze(series, horizon)`` with defaults;
* ``capture``  predict under ``rollout.capture(grid=...)``: time maps of every layer, ``auto``;
* ``single``, ``chunked``, ``exact``: the same capture with that strategy forced (``exact``,
  ~2x, only when asked for with ``--modes``);
* ``single-torch``: ``single`` with the compiled CPU kernel switched off (``ATTNVIZ_CPU_KERNEL=0``
  for the call): what the kernel saves, paired like the rest (only with ``--modes``);
* ``naive``    (memory only) ``capture(keep_full=True, strategy="exact")``: every full map kept.

``--batch B`` adds rows ``capture xB``: ``predict_many`` of B series under capture against a
plain ``predict_many`` of the same B series (same ratio definition, per call), so its ratio can be
compared with the batch-1 ``capture`` row; the time per series of both is printed too.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

RELEASED = {"h": 128, "maxScal": 3.5, "size": [1024, 0, 1440], "patch_size": [4, 32], "modelSize": 0.75}
QUICK = {"h": 64, "maxScal": 3.5, "size": [512, 0, 512], "patch_size": [4, 16], "modelSize": 0.25}
LENGTH, HORIZON = 512, 720
TIME_MODES = ("analyze", "capture", "single", "chunked", "exact", "single-torch")
DEFAULT_TIME_MODES = ("analyze", "capture", "single", "chunked")
MEMORY_MODES = ("plain", "analyze", "capture", "single", "chunked", "naive")
DEFAULT_MEMORY_MODES = ("plain", "analyze", "capture", "chunked", "naive")
TARGETS = {"analyze": 1.2, "capture": 1.15}
MEMORY_TARGET = 1.1


def _series(shift: float = 0.0) -> Any:
    import numpy as np

    n = np.arange(LENGTH, dtype=float)
    return np.sin(n / 10 + shift) + np.sin(n / 5 + 50) + np.cos(n + 50 + shift)


def _forecaster(config: dict) -> Any:
    from attnviz.forecasters.vitime import ViTimeForecaster

    return ViTimeForecaster.from_config(config, seed=0)


def _workload(mode: str, fc: Any, batch: int = 1) -> Callable[[], Any]:
    """One call of ``mode`` on ``fc`` (a batch of ``batch`` series when ``batch > 1``)."""
    from attnviz.capture import AttentionRollout

    series = [_series(0.3 * i) for i in range(batch)]

    def predict() -> Any:
        return fc.predict(series[0], HORIZON) if batch == 1 else fc.predict_many(series, HORIZON)

    if mode == "plain":
        return predict
    if mode == "analyze":
        from attnviz import MultiHeadAttentionRollout

        analyzer = MultiHeadAttentionRollout(fc)
        return lambda: analyzer.analyze(series[0], HORIZON)
    rollout = AttentionRollout(fc.model)
    grid = fc.grid(LENGTH, HORIZON)
    strategy = {"capture": "auto", "single-torch": "single"}.get(mode, mode)
    keep_full = mode == "naive"
    if keep_full:
        grid, strategy = None, "exact"
    from attnviz import cpu_kernel

    def run() -> Any:
        switch = os.environ.get(cpu_kernel.ENV_SWITCH)
        if mode == "single-torch":
            os.environ[cpu_kernel.ENV_SWITCH] = "0"
        try:
            with rollout.capture(grid=grid, keep_full=keep_full, strategy=strategy) as cap:
                predict()
        finally:
            if switch is None:
                os.environ.pop(cpu_kernel.ENV_SWITCH, None)
            else:
                os.environ[cpu_kernel.ENV_SWITCH] = switch
        assert len(cap.calls) == len(rollout.layer_names)
        return cap

    return run


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process (all threads) and the result of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - t0, time.process_time() - c0, result


def time_in_one_process(config: dict, modes: list[str], pairs: int, batch: int) -> dict[str, dict]:
    """Paired ratios mode / plain, every mode next to a plain call, in this one process."""
    fc = _forecaster(config)
    runs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        m: (_workload("plain", fc), _workload(m, fc)) for m in modes
    }
    if batch > 1:
        runs[f"capture x{batch}"] = (_workload("plain", fc, batch), _workload("capture", fc, batch))
    used: dict[str, str] = {}
    for name, (plain, fn) in runs.items():  # warm-up of each
        plain()
        result = fn()
        strategies = getattr(result, "strategies", None) or {}
        used[name] = ",".join(sorted(set(strategies.values())))
    rows = {
        name: {"ratios": [], "cpu_ratios": [], "plain_s": [], "mode_s": [], "strategies": used[name]}
        for name in runs
    }
    for i in range(pairs):
        for name, (plain, fn) in runs.items():
            first, second = (plain, fn) if i % 2 == 0 else (fn, plain)
            timings = [_timed(first)[:2], _timed(second)[:2]]
            (t_plain, c_plain), (t_mode, c_mode) = timings if i % 2 == 0 else timings[::-1]
            row = rows[name]
            row["ratios"].append(t_mode / t_plain)
            row["cpu_ratios"].append(c_mode / c_plain)
            row["plain_s"].append(t_plain)
            row["mode_s"].append(t_mode)
        print(f"  round {i + 1}/{pairs}: " + ", ".join(
            f"{n} {r['ratios'][-1]:.2f}" for n, r in rows.items()
        ), flush=True)
    return rows


def memory_child(mode: str, config: dict, threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
    fn = _workload(mode, _forecaster(config))
    fn()  # warm-up
    seconds, _, _ = _timed(fn)
    print(json.dumps({"mode": mode, "peak_mb": _peak_rss_kb() / 1024, "seconds": seconds}))


def _peak_rss_kb() -> float:
    """This process's peak resident set in KiB: VmHWM (Linux), else ru_maxrss."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory_in_subprocesses(args: argparse.Namespace) -> dict[str, list[float]]:
    """{mode: peak MB of each run}, modes interleaved run by run."""
    peaks: dict[str, list[float]] = {mode: [] for mode in args.memory_modes}
    for run in range(args.memory_runs):
        for mode in args.memory_modes:
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", mode]
            cmd += ["--quick"] if args.quick else []
            cmd += ["--threads", str(args.threads)] if args.threads else []
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{mode}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            peaks[mode].append(json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"])
            print(f"  memory run {run + 1}/{args.memory_runs} {mode}: peak RSS {peaks[mode][-1]:.0f} MB", flush=True)
    return {mode: values for mode, values in peaks.items() if values}


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small config instead of the released size")
    parser.add_argument("--modes", nargs="+", choices=TIME_MODES, default=list(DEFAULT_TIME_MODES), help="timed modes")
    parser.add_argument("--memory-modes", nargs="*", choices=MEMORY_MODES, default=list(DEFAULT_MEMORY_MODES))
    parser.add_argument("--memory-runs", type=int, default=3, help="subprocesses per memory mode (median)")
    parser.add_argument("--pairs", type=int, default=5, help="timed rounds (>= 5)")
    parser.add_argument("--batch", type=int, default=1, help="also time capture of a batch of this many series")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (0: torch default)")
    parser.add_argument("--memory-child", choices=MEMORY_MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pairs < 5:
        parser.error("--pairs must be >= 5 (a median of fewer pairs does not resolve 10 %)")
    if args.batch < 1 or args.memory_runs < 1:
        parser.error("--batch and --memory-runs must be >= 1")
    config = QUICK if args.quick else RELEASED
    if args.memory_child:
        memory_child(args.memory_child, config, args.threads)
        return
    load_before = os.getloadavg()
    print(
        f"config: {config}\nseries {LENGTH} samples, horizon {HORIZON}, CPU, torch threads "
        f"{args.threads or 'default'}, {os.cpu_count()} CPUs, load average {load_before[0]:.2f} "
        f"{load_before[1]:.2f} {load_before[2]:.2f}; {args.pairs} pairs after one warm-up of each"
    )
    memory = memory_in_subprocesses(args) if args.memory_modes else {}  # before this process grows
    load_after_memory = os.getloadavg()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from attnviz import cpu_kernel

    print(f"CPU softmax of the blockwise capture: {cpu_kernel.status()}")
    times = time_in_one_process(config, args.modes, args.pairs, args.batch)
    load_after = os.getloadavg()

    print(f"\ntime: paired ratio mode / plain fused predict (same process, {args.pairs} pairs);")
    print("wall clock (the target), and CPU time of the process (less sensitive to other jobs)")
    print(
        f"{'mode':<13} {'wall med':>8} {'min':>6} {'max':>6}  {'CPU med':>7} {'min':>6} {'max':>6}"
        f" {'plain s':>8} {'mode s':>7}  strategy  target (wall median)"
    )
    for name, row in times.items():
        med, lo, hi = _stats(row["ratios"])
        c_med, c_lo, c_hi = _stats(row["cpu_ratios"])
        plain_s, mode_s = statistics.median(row["plain_s"]), statistics.median(row["mode_s"])
        target = TARGETS.get(name)
        verdict = "" if target is None else f"<= {target:.2f} {'met' if med <= target else 'NOT met'}"
        print(
            f"{name:<13} {med:>8.3f} {lo:>6.3f} {hi:>6.3f}  {c_med:>7.3f} {c_lo:>6.3f} {c_hi:>6.3f}"
            f" {plain_s:>8.2f} {mode_s:>7.2f}  {row['strategies']:<9} {verdict}"
        )
    if args.batch > 1 and "capture" in times:
        one = statistics.median(times["capture"]["mode_s"])
        many = statistics.median(times[f"capture x{args.batch}"]["mode_s"]) / args.batch
        print(f"capture seconds per series: batch 1 {one:.2f}, batch {args.batch} {many:.2f} ({many / one:.2f}x)")
    if memory:
        base = statistics.median(memory["plain"]) if "plain" in memory else float("nan")
        print(f"\npeak RSS (VmHWM), each mode in its own process (model build + warm-up + one call), "
              f"median of {args.memory_runs}")
        print(f"{'mode':<13} {'MB':>7} {'min':>6} {'max':>6} {'x plain':>8}")
        for mode, values in memory.items():
            med, lo, hi = _stats(values)
            flag = f"  (target <= {MEMORY_TARGET})" if mode in ("analyze", "capture") else ""
            print(f"{mode:<13} {med:>7.0f} {lo:>6.0f} {hi:>6.0f} {med / base:>8.2f}{flag}")
    print(
        f"\nload average (1/5/15 min): start {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
        f"after memory {load_after_memory[0]:.2f}/{load_after_memory[1]:.2f}/{load_after_memory[2]:.2f}, "
        f"end {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
