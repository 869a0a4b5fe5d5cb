"""attnviz scan --ablate K: columns, agreement with HeadAblator, batch and rank invariance, bad input."""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from attnviz.ablation import HeadAblator
from attnviz.scan.ablation import ScanAblation
from attnviz.scan.runner import compute_shard
from attnviz.scan.shards import ScanSettings
from attnviz.scan.sources import synthetic
from test_scan import SMALL, scan, tables

K, SEED, COUNT = 3, 3, 5
ARGS = ["--synthetic", str(COUNT), "--seed", str(SEED), *SMALL, "--no-null", "--shard-size", "3", "--ablate", str(K)]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def label(heads) -> str:
    return ";".join(f"{layer}:{head}" for layer, head in heads)


@pytest.fixture(scope="module")
def ablated_scan(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate") / "out"
    proc = scan(*ARGS, "--batch-size", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def ablator(vitime_fixture_forecaster):
    return HeadAblator(vitime_fixture_forecaster)


def test_the_ablation_columns_summary_and_figure(ablated_scan):
    heads, series = rows(ablated_scan / "heads.csv"), rows(ablated_scan / "series.csv")
    assert list(heads[0])[-4:] == ["ablated_in_topk", "topk_delta_mae", "ablated_in_random", "random_delta_mae"]
    assert list(series[0])[-4:] == ["topk_heads", "topk_delta_mae", "random_heads", "random_delta_mae"]
    for s in series:
        mine = [h for h in heads if h["series"] == s["series"]]
        for key in ("topk", "random"):
            inside = [h for h in mine if h[f"ablated_in_{key}"] == "1"]
            assert {f"{h['layer']}:{h['head']}" for h in inside} == set(s[f"{key}_heads"].split(";"))
            assert len(inside) == K and all(h[f"{key}_delta_mae"] == s[f"{key}_delta_mae"] for h in inside)
            assert all(h[f"{key}_delta_mae"] == "" for h in mine if h[f"ablated_in_{key}"] == "0")
    summary = json.loads((ablated_scan / "summary.json").read_text())
    ablation = summary["ablation"]
    assert ablation["k"] == K and ablation["mode"] == "mean" and ablation["series"] == COUNT
    assert ablation["reference"]["count"] == 32 and ablation["reference"]["seed"] == 2024
    top = np.array([float(s["topk_delta_mae"]) for s in series])
    rand = np.array([float(s["random_delta_mae"]) for s in series])
    for key, values in (("topk_delta_mae", top), ("random_delta_mae", rand), ("difference", top - rand)):
        entry = ablation[key]
        assert entry["mean"] == pytest.approx(values.mean(), abs=1e-6)
        assert entry["ci"][0] <= entry["mean"] <= entry["ci"][1]
    assert ablation["share_topk_hurts_more"]["count"] == int((top > rand).sum())
    assert summary["settings"]["ablate"] == K and summary["settings"]["ablate_mode"] == "mean"
    assert "ablation" in {f["kind"] for f in summary["figures"]}
    assert (ablated_scan / "experiment_scan_ablation.png").is_file()


def test_the_numbers_are_those_of_a_direct_head_ablator_computation(ablated_scan, ablator):
    items = synthetic(COUNT, SEED, 256, 128)
    series = {s["series"]: s for s in rows(ablated_scan / "series.csv")}
    index = 1
    item, row = items[index], series[items[index].name]
    ranked = ablator.explainer.analyze(item.history, 128).ranked_heads
    top = [(s.layer, s.head) for s in ranked][:K]
    pool = ablator.all_heads
    random = [pool[j] for j in sorted(np.random.default_rng([SEED, index]).choice(len(pool), K, replace=False))]
    assert row["topk_heads"] == label(top) and row["random_heads"] == label(random)
    means = ablator.default_means(256, 128)
    for heads, key in ((top, "topk_delta_mae"), (random, "random_delta_mae")):
        direct = ablator.run(item.history, 128, heads, mode="mean", reference=means, truth=item.truth, analyze=False)
        assert float(row[key]) == pytest.approx(direct.delta_mae, abs=1e-6)


def test_zero_ablation_in_compute_shard_matches_head_ablator(ablator):
    items = synthetic(2, 5, 256, 128)
    settings = ScanSettings("t", 2, "", 256, 128, True, False, 5, 2, "fixture", 4, 4, 2, "zero", "")
    arrays, info = compute_shard(ablator.explainer, items, [7, 8], settings, 2, ScanAblation.from_settings(ablator, settings))
    for j, item in enumerate(items):
        for key in ("topk", "random"):
            heads = [tuple(h) for h in info[j][f"{key}_heads"]]
            direct = ablator.run(item.history, 128, heads, mode="zero", truth=item.truth, analyze=False)
            assert arrays[f"{key}_delta"][j] == pytest.approx(direct.delta_mae, abs=1e-6)
    pool = ablator.all_heads  # series 8's draw, not the shard position's
    assert [tuple(h) for h in info[1]["random_heads"]] == [pool[i] for i in sorted(np.random.default_rng([5, 8]).choice(16, 2, replace=False))]


def test_batch_size_one_gives_the_same_numbers(ablated_scan, tmp_path):
    out = tmp_path / "batch1"
    proc = scan(*ARGS, "--batch-size", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for name in ("series.csv", "heads.csv"):
        a, b = rows(out / name), rows(ablated_scan / name)
        assert len(a) == len(b)
        for ra, rb in zip(a, b):
            for key in ("series", "layer", "head", "ablated_in_topk", "ablated_in_random", "topk_heads", "random_heads"):
                assert ra.get(key) == rb.get(key)
            for key in ("topk_delta_mae", "random_delta_mae"):
                assert (ra[key] == rb[key] == "") or float(ra[key]) == pytest.approx(float(rb[key]), abs=1e-6)


def test_two_ranks_with_gloo_give_the_tables_of_one_process(ablated_scan, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "ranks"
    proc = scan(*ARGS, "--batch-size", "3", "--out", str(out),
                launcher=[torchrun, "--standalone", "--nproc-per-node", "2", "-m", "attnviz"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert tables(out) == tables(ablated_scan)
    assert json.loads((out / "summary.json").read_text())["ablation"] == \
        json.loads((ablated_scan / "summary.json").read_text())["ablation"]


def test_another_k_or_no_ablation_is_another_scan(ablated_scan, tmp_path):
    out = tmp_path / "other"
    shutil.copytree(ablated_scan, out)
    proc = scan(*ARGS[:-1], "2", "--batch-size", "3", "--out", str(out))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "holds another scan's shards" in proc.stderr and "ablate 3 -> 2" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--synthetic", "2", "--ablate", "0"], "--ablate 0: give how many top heads"),
    (["--synthetic", "2", "--ablate", "17"], "--ablate 17: the model has 16 attention heads; give 1..16"),
    (["--dataset", "sunspots", "--ablate", "2"], "--ablate measures the forecast error against the truth: add --holdout"),
    (["--synthetic", "2", "--ablate-mode", "zero"], "--ablate-mode is for --ablate K"),
])
def test_bad_ablation_input_is_one_line(tmp_path, args, message):
    proc = scan(*args, *SMALL, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_few_series_give_intervals_but_no_verdict(ablated_scan):
    """5 series: the interval of the difference is reported, a verdict is not drawn from it."""
    summary = json.loads((ablated_scan / "summary.json").read_text())
    assert summary["ablation"]["verdict"] == f"no verdict: {COUNT} series, at least 10 needed"
