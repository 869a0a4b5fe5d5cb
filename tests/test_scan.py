"""attnviz scan: tables, resumable shards, one-line errors, batch and rank invariance, statistics."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attnviz.intervals import bootstrap_means
from attnviz.scan.stats import (
    above_null_test,
    benjamini_hochberg,
    head_clusters,
    lag_profile_correlation,
    phase_surrogate,
    real_heads,
)

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "tests" / "fixtures" / "vitime-upstream-small" / "checkpoint.pth"
SMALL = ["--weights", str(WEIGHTS), "--length", "256", "--horizon", "128"]


def scan(*args: str, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    env.pop("ATTNVIZ_WEIGHTS", None)
    command = (launcher or [sys.executable, "-m", "attnviz"]) + ["scan", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, timeout=600)


def tables(out: Path) -> tuple[str, str]:
    return (out / "heads.csv").read_text(), (out / "series.csv").read_text()


@pytest.fixture(scope="module")
def synthetic_scan(tmp_path_factory):
    out = tmp_path_factory.mktemp("scan") / "out"
    proc = scan("--synthetic", "5", "--seed", "3", *SMALL, "--batch-size", "2", "--shard-size", "2", "--html", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_synthetic_scan_writes_its_tables_and_summary(synthetic_scan):
    out = synthetic_scan
    summary = json.loads((out / "summary.json").read_text())
    heads_per_series = len(summary["heads"])
    with open(out / "heads.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 * heads_per_series
    assert set(rows[0]) == {"series", "layer", "head", "period_samples", "score", "null_score", "true_period"}
    with open(out / "series.csv") as handle:
        series = list(csv.DictReader(handle))
    assert [s["series"] for s in series] == [f"synthetic_{i}" for i in range(5)]
    assert all(float(s["mae"]) > 0 and s["skipped"] == "0" for s in series)
    assert summary["scanned"] == 5 and summary["skipped"] == 0 and summary["shards"]["computed"] == 3
    head = summary["heads"][0]
    assert head["score_ci"][0] <= head["mean_score"] <= head["score_ci"][1]
    assert {"null_mean_score", "null_score_ci", "difference_ci", "p_value", "q_value", "above_null"} <= set(head)
    # 5 series are too few for a verdict: intervals and p-values are given, above_null is not
    assert head["above_null"] is None and summary["heads_above_null"] is None
    assert summary["above_null_rule"] == "no verdict: 5 series compared, at least 10 needed"
    assert summary["compared"] == 5 and summary["left_out_of_statistics"] is None
    # the means in the summary are the means of the table
    layer, index = head["layer"], str(head["head"])
    scores = [float(r["score"]) for r in rows if r["layer"] == layer and r["head"] == index]
    assert head["mean_score"] == pytest.approx(np.mean(scores), abs=1e-5)
    assert summary["period_recovery"]["series"] == 5
    kinds = {f["kind"] for f in summary["figures"]}
    assert kinds == {"head_scores", "head_intervals", "head_clusters", "period_recovery", "explorer"}
    page = (out / "experiment_scan_explorer.html").read_text()
    assert "attnvizScanExplorer" in page and "http://" not in page and "https://" not in page
    assert all(Path(f).is_file() for f in summary["files"])


def test_a_rerun_skips_finished_shards_and_recomputes_a_corrupt_one(synthetic_scan, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(synthetic_scan, out)
    before = tables(out)
    (out / "shards" / "shard-00001.npz").write_bytes(b"PK\x03\x04 truncated")
    (out / "shards" / "shard-00002.npz").unlink()  # as if interrupted before the last shard
    proc = scan("--synthetic", "5", "--seed", "3", *SMALL, "--batch-size", "2", "--shard-size", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "shard-00001.npz is corrupt" in proc.stderr and "recomputing" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards"] == {"computed": 2, "reused": 1, "recomputed": 1}
    assert tables(out) == before


def test_another_scans_folder_is_refused(synthetic_scan, tmp_path):
    out = tmp_path / "other"
    shutil.copytree(synthetic_scan, out)
    proc = scan("--synthetic", "5", "--seed", "4", *SMALL, "--shard-size", "2", "--out", str(out))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "holds another scan's shards (" in proc.stderr and "seed 3 -> 4" in proc.stderr


def test_batch_size_does_not_change_the_numbers(synthetic_scan, tmp_path):
    out = tmp_path / "batch1"
    proc = scan("--synthetic", "5", "--seed", "3", *SMALL, "--batch-size", "1", "--shard-size", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    heads_a, series_a = tables(out)
    heads_b, series_b = tables(synthetic_scan)
    rows_a = [r.split(",") for r in heads_a.splitlines()[1:]]
    rows_b = [r.split(",") for r in heads_b.splitlines()[1:]]
    assert [r[:3] for r in rows_a] == [r[:3] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):  # batched float32 kernels may differ in the last digits
        for a, b in zip(ra[3:], rb[3:]):
            assert (a == b == "") or float(a) == pytest.approx(float(b), rel=1e-3, abs=1e-4)


def test_csv_columns_that_cannot_be_used_are_recorded_not_dropped(tmp_path):
    n = np.arange(300)
    good = np.sin(2 * np.pi * n / 24)
    lines = ["good,short,text,gap"]
    for i in range(300):
        short = f"{good[i]:.5f}" if i < 100 else ""
        text = "abc" if i == 7 else "1"
        gap = "nan" if i == 250 else f"{good[i]:.5f}"
        lines.append(f"{good[i]:.5f},{short},{text},{gap}")
    path = tmp_path / "many.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    proc = scan("--csv", str(path), *SMALL, "--no-null", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with open(out / "series.csv") as handle:
        series = {row["series"]: row for row in csv.DictReader(handle)}
    assert series["many:good"]["skipped"] == "0" and series["many:good"]["rows"] == "44:300"
    assert series["many:short"]["reason"] == "too short: 100 values, need 256 (256 history)"
    assert series["many:text"]["reason"] == "a non-numeric value 'abc' at line 9 (data row 7)"
    assert series["many:gap"]["reason"].startswith("NaN at data row 250")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scanned"] == 1 and summary["skipped"] == 3 and summary["null_baseline"] is None


def test_a_bundled_real_series_cut_into_windows(tmp_path):
    out = tmp_path / "windows"
    proc = scan("--dataset", "sunspots", "--weights", str(WEIGHTS), "--length", "120", "--horizon", "40",
                "--holdout", "--stride", "50", "--no-null", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with open(out / "series.csv") as handle:
        series = list(csv.DictReader(handle))
    # 309 yearly values, windows of 120 + 40 every 50 rows counted back from the end: the newest
    # window ends at the last value (starts 149, 99, 49; a start at -1 would run past the beginning)
    assert [s["series"] for s in series] == ["sunspots@49", "sunspots@99", "sunspots@149"]
    assert [s["rows"] for s in series] == ["49:209", "99:259", "149:309"]
    assert all(s["true_period"] == "11" and float(s["mae"]) > 0 for s in series)


@pytest.mark.parametrize("args, message", [
    (["--csv", "missing.csv"], "CSV file not found"),
    (["--folder", "nowhere"], "is not a folder"),
    (["--synthetic", "2", "--column", "x"], "--column is for --folder"),
    (["--synthetic", "2", "--stride", "5"], "--stride cuts real series"),
    (["--dataset", "nile"], "unknown dataset 'nile'"),
    (["--synthetic", "2", "--seed", "-1"], "--seed: expected an integer >= 0"),
])
def test_bad_scan_input_is_one_line(tmp_path, args, message):
    proc = scan(*args, *SMALL, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 or proc.stderr.startswith("usage")  # argparse's own errors


def test_two_ranks_with_gloo_give_the_tables_of_one_process(synthetic_scan, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "ranks"
    proc = scan("--synthetic", "5", "--seed", "3", *SMALL, "--batch-size", "2", "--shard-size", "2", "--out", str(out),
                launcher=[torchrun, "--standalone", "--nproc-per-node", "2", "-m", "attnviz"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert tables(out) == tables(synthetic_scan)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards"]["computed"] == 2  # rank 0's share of the 3 shards; rank 1 did the other


# ----- statistics with known answers ---------------------------------------------------------------
def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = bootstrap_means(rng.normal(2.0, 1.0, size=(20, 3)), seed=1)
    large = bootstrap_means(rng.normal(2.0, 1.0, size=(2000, 3)), seed=1)
    assert np.all(small.lo < small.mean) and np.all(small.mean < small.hi)
    assert np.all(large.lo < 2.0) and np.all(2.0 < large.hi)
    assert np.all((large.hi - large.lo) < (small.hi - small.lo) / 5)
    assert np.allclose(large.hi - large.lo, 2 * 1.96 / np.sqrt(2000), rtol=0.25)


def test_bootstrap_ignores_padding():
    values = np.array([[1.0, np.nan], [3.0, np.nan]])
    got = bootstrap_means(values, seed=0)
    assert got.mean[0] == 2.0 and np.isnan(got.mean[1])


def test_phase_surrogate_keeps_spectrum_and_mean_but_not_the_waveform():
    n = np.arange(512)
    x = 3 + np.sin(2 * np.pi * n / 32) + 0.5 * np.sign(np.sin(2 * np.pi * n / 100))
    y = phase_surrogate(x, seed=5)
    assert y.mean() == pytest.approx(x.mean())
    np.testing.assert_allclose(np.abs(np.fft.rfft(y - y.mean())), np.abs(np.fft.rfft(x - x.mean())), atol=1e-9)
    assert np.corrcoef(x, y)[0, 1] < 0.9
    np.testing.assert_array_equal(y, phase_surrogate(x, seed=5))


def test_lag_profile_correlation_of_known_curves():
    lags = np.linspace(0, 1, 50)
    curves = np.stack([np.sin(6 * lags), 2 * np.sin(6 * lags) + 1, -np.sin(6 * lags), np.ones(50)])
    corr, valid = lag_profile_correlation(curves, np.array([True, True, True, True]))
    assert corr[0, 1] == pytest.approx(1.0) and corr[0, 2] == pytest.approx(-1.0)
    assert not valid[3].any() and corr[3, 0] == 0.0  # a flat curve has no correlation


def test_lag_profile_correlation_ignores_padded_heads():
    """A layer with fewer heads is padded with all-NaN rows; the real heads keep their pairs."""
    lags = np.linspace(0, 1, 40)
    curves = np.stack([np.sin(5 * lags), np.sin(5 * lags) + 0.1 * lags, np.cos(5 * lags), np.full(40, np.nan)])
    corr, valid = lag_profile_correlation(curves, np.array([True, True, True, False]))
    assert valid[:3, :3].all() and not valid[3].any()
    assert corr[0, 1] > 0.99 and corr[0, 2] < 0.5


def test_real_heads_mask_padding():
    np.testing.assert_array_equal(real_heads([3, 1], 3), [True, True, True, True, False, False])


def test_benjamini_hochberg_matches_hand_computed_q_values():
    p = np.array([0.01, 0.04, 0.03, 0.20, np.nan])
    # sorted 0.01, 0.03, 0.04, 0.20 -> 0.01*4/1, 0.03*4/2, 0.04*4/3, 0.2*4/4 = 0.04, 0.06, 0.0533, 0.2,
    # then the running minimum from the top: 0.04, 0.0533, 0.0533, 0.2
    np.testing.assert_allclose(benjamini_hochberg(p)[:4], [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert np.isnan(benjamini_hochberg(p)[4])


def test_above_null_test_finds_the_planted_head_and_not_the_others():
    rng = np.random.default_rng(4)
    diff = rng.normal(0.0, 1.0, size=(40, 2, 10))  # 20 heads with no effect
    diff[:, 1, 3] += 1.0  # one head whose score beats the null by one sd on average
    diff[:, 0, 9] = np.nan  # a padded head
    diff[:, 0, 8] = 0.25  # identical differences: p = 0 when positive
    p, q, n = above_null_test(diff)
    assert q[1, 3] < 1e-4 and q[0, 8] == 0.0
    others = np.ones((2, 10), bool)
    others[1, 3] = others[0, 8] = others[0, 9] = False
    assert (q[others] > 0.05).all() and np.isnan(p[0, 9]) and n[0, 9] == 0 and n[1, 3] == 40


def test_head_clusters_find_planted_blocks():
    sim = np.full((6, 6), 0.05)
    sim[:3, :3] = sim[3:5, 3:5] = 0.9
    np.fill_diagonal(sim, 1.0)
    real = np.array([True] * 5 + [False])
    clusters, order = head_clusters(sim, real, threshold=0.5)
    assert [c.members for c in clusters] == [[0, 1, 2], [3, 4]]
    assert clusters[0].mean_similarity == pytest.approx(0.9)
    assert sorted(order.tolist()) == [0, 1, 2, 3, 4]


# ----- fingerprints: what makes two scans the same scan --------------------------------------------
def test_the_data_digest_changes_when_a_value_changes_not_when_nothing_does():
    from attnviz.scan.shards import items_digest
    from attnviz.scan.sources import ScanItem

    a = [ScanItem("s", np.arange(10.0)), ScanItem("t", None, skip="too short")]
    same = [ScanItem("s", np.arange(10.0)), ScanItem("t", None, skip="too short")]
    edited = [ScanItem("s", np.arange(10.0) + np.eye(1, 10, 4).ravel()), ScanItem("t", None, skip="too short")]
    truth = [ScanItem("s", np.arange(10.0), np.ones(3)), ScanItem("t", None, skip="too short")]
    assert items_digest(a) == items_digest(same)
    assert len({items_digest(a), items_digest(edited), items_digest(truth)}) == 3


def test_the_weights_digest_tells_two_random_inits_apart(vitime_fixture_forecaster):
    import copy

    import torch

    from attnviz.scan.shards import model_digest

    model = vitime_fixture_forecaster.model
    twin = copy.deepcopy(model)
    assert model_digest(model) == model_digest(twin)
    with torch.no_grad():
        next(twin.parameters()).view(-1)[0] += 1e-6
    assert model_digest(model) != model_digest(twin)


def test_caveated_series_are_listed_but_left_out_of_the_statistics():
    """A history too short to rank against gets clarity-only scores (often 1.0): not averaged in."""
    from attnviz.scan.merge import MergedScan

    n = 12
    scores = np.full((n, 1, 2), 0.2)
    scores[:2] = 1.0  # the two caveated series
    info = [{"series": f"s{i}", "rows": "", "skipped": False, "reason": "", "true_period": 24.0,
             "caveat": "history too short to rank against" if i < 2 else "", "null_reason": "",
             "top_layer": "L0", "top_head": 0, "top_period": 24.0 if i >= 2 else 250.0} for i in range(n)]
    merged = MergedScan(["L0"], [2], scores, np.full((n, 1, 2), 24.0), np.full((n, 1, 2), 0.1), np.full(n, np.nan),
                        np.full(n, np.nan), np.eye(2), info, 16.0)
    summary = merged.summary(seed=0)
    assert summary["scanned"] == 12 and summary["compared"] == 10
    assert "2 scanned series whose ranking carries a caveat" in summary["left_out_of_statistics"]
    assert summary["heads"][0]["mean_score"] == pytest.approx(0.2)
    assert summary["period_recovery"]["series"] == 10 and summary["period_recovery"]["within_tolerance"] == 10
    assert summary["heads_above_null"] == 2  # constant positive differences over 10 series
    assert "history too short" in merged.series_csv().splitlines()[1]


def test_a_history_too_short_to_rank_against_is_recorded_as_a_caveat(vitime_fixture_forecaster):
    from attnviz import MultiHeadAttentionRollout
    from attnviz.scan.runner import compute_shard
    from attnviz.scan.shards import ScanSettings
    from attnviz.scan.sources import synthetic

    explainer = MultiHeadAttentionRollout(vitime_fixture_forecaster)
    heads = explainer.num_heads
    settings = ScanSettings("t", 1, "", 16, 128, True, False, 0, 1, "m", len(heads), max(heads.values()))
    _, info = compute_shard(explainer, synthetic(1, 0, 16, 128), [0], settings, 1)
    assert info[0]["caveat"].startswith("history too short to rank against") and not info[0]["skipped"]
