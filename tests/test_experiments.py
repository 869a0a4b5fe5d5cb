"""Experiments: definitions, outputs on disk, verdict logic on known inputs, main.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

import attnviz
from attnviz.experiments import EXPERIMENTS, curve_period_strength, format_table, periodic_peaks, run_experiments

ROOT = Path(__file__).resolve().parents[1]


def test_period_strength_reads_peaks_on_a_sloping_curve():
    lags = np.arange(1, 77) * 16.0
    ripple = np.cos(2 * np.pi * lags / 62.8)
    trend = lags / lags.max()  # lag curves often rise with the lag
    # Peaks at the multiples stand out although they sit below the curve's mean (a plain
    # z-score would call them negative).
    strength = curve_period_strength(lags, 5 * trend + 0.3 * ripple, 62.8)
    assert strength > 1.0
    assert curve_period_strength(lags, 5 * trend - 0.3 * ripple, 62.8) < -1.0  # troughs there
    assert abs(curve_period_strength(lags, 5 * trend, 62.8)) < 0.5  # no ripple, no strength
    other = curve_period_strength(lags, 5 * trend + 0.3 * np.cos(2 * np.pi * lags / 100.0), 62.8)
    assert other < 0.5 * strength  # repeating at another period is not this period
    # A flat curve or too few points: nothing stands out.
    assert curve_period_strength(lags, np.ones_like(lags), 62.8) == 0.0
    assert curve_period_strength(lags[:2], lags[:2], 62.8) == 0.0


def test_builtin_experiments_are_defined_as_data():
    assert list(EXPERIMENTS)[:5] == ["three_harmonics", "two_harmonics", "period_sweep", "noise_robustness", "sunspots"]
    seed = EXPERIMENTS["three_harmonics"]
    assert (seed.length, seed.horizon) == (512, 720)
    assert seed.known_periods[0] == pytest.approx(62.83, abs=0.01)
    assert "sin(n/10)" not in EXPERIMENTS["two_harmonics"].signal.replace(" ", "")


def test_periodic_peaks_matches_multiples_within_tolerance():
    peaks = np.array([30.0, 64.0, 120.0, 190.0, 400.0])
    assert periodic_peaks(peaks, 62.83, 16, 260) == [64.0, 120.0, 190.0]
    assert periodic_peaks(peaks, 62.83, 1.5, 260) == [64.0]


def test_seed_experiments_write_figures_and_summaries(tmp_path, bundled_forecaster):
    fc = bundled_forecaster
    stale = tmp_path / "three_harmonics" / "experiment_three_harmonics_layer_9_head_9_correlations.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old figure of a head this run does not pick")
    unlisted = stale.with_name("experiment_three_harmonics_layer_9_head_8_correlations.png")
    unlisted.write_bytes(b"a figure no attnviz summary lists")
    (tmp_path / "three_harmonics" / "notes.txt").write_text("not ours")
    # an earlier attnviz run listed the stale figure: it goes; files nobody listed stay
    (tmp_path / "three_harmonics" / "summary.json").write_text(
        json.dumps({"generator": "attnviz", "files": [str(stale)]}))
    outcomes = run_experiments(fc, tmp_path, ["three_harmonics", "two_harmonics"], progress=False)
    assert not stale.exists() and unlisted.exists() and (tmp_path / "three_harmonics" / "notes.txt").exists()
    assert [o.name for o in outcomes] == ["three_harmonics", "two_harmonics"]
    assert plt.get_fignums() == []
    for o in outcomes:
        summary = json.loads((tmp_path / o.name / "summary.json").read_text())
        assert {"expected", "observed", "verdict", "files", "details"} <= set(summary)
        assert summary["verdict"] in ("pass", "fail")
        ranked = summary["details"]["ranked_heads"]
        assert ranked and {"layer", "head", "score", "period_samples"} <= set(ranked[0])
        for f in summary["files"]:
            with Image.open(f) as img:
                assert img.size[0] >= 600 and img.size[1] >= 300
        names = [Path(f).name for f in summary["files"]]
        assert any(n.startswith(f"experiment_{o.name}_layer_") and n.endswith("_correlations.png") for n in names)
        # The forecast is scored against the signal's real continuation, recomputed here.
        exp = EXPERIMENTS[o.name]
        n = np.arange(exp.length + exp.horizon, dtype=float)
        full = np.sin(n / 5 + 50) + np.cos(n + 50) + (np.sin(n / 10) if o.name == "three_harmonics" else 0)
        forecast = fc.predict(full[: exp.length], exp.horizon).forecast
        truth = full[exp.length :]
        scored = summary["details"]["forecast_vs_truth"]
        assert scored["mae"] == pytest.approx(np.mean(np.abs(forecast - truth)), rel=1e-6)
        assert scored["mean_forecast_mae"] == pytest.approx(np.mean(np.abs(full[: exp.length].mean() - truth)))
        assert scored["ratio_to_mean"] == pytest.approx(scored["mae"] / scored["mean_forecast_mae"])
    table = format_table(outcomes)
    assert "three_harmonics" in table and "verdict" in table


def test_main_py_rejects_unknown_experiment(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "main.py", "--only", "bogus", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "unknown experiment" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_main_py_regenerates_everything(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "main.py", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=900)
    assert proc.returncode == 0, proc.stderr
    for name in EXPERIMENTS:
        assert (tmp_path / name / "summary.json").is_file()
