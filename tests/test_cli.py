"""The attnviz command line: fast --help, explain's JSON = the Python API, one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def attnviz_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("ATTNVIZ_WEIGHTS", None)
    return subprocess.run([sys.executable, "-m", "attnviz.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, stdin=subprocess.DEVNULL)


def test_help_does_not_import_torch():
    code = ("import sys; from attnviz.cli import build_parser; p = build_parser();\n"
            "try:\n p.parse_args(['--help'])\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy import on --help'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for sub in ("explain", "ablate", "scan", "experiments", "train", "convert", "evaluate"):
        out = attnviz_cli(sub, "--help")
        assert out.returncode == 0 and "usage" in out.stdout


def test_explain_json_matches_python_api(tmp_path):
    import attnviz
    from attnviz.signals import evaluate_expression

    expr = "sin(2*pi*n/57) + 0.1*cos(n/3)"
    proc = attnviz_cli("explain", "--expr", expr, "--length", "512", "--horizon", "720", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    res = attnviz.MultiHeadAttentionRollout(attnviz.load_forecaster()).analyze(evaluate_expression(expr, 512), 720)
    api = [(h.layer, h.head) for h in res.ranked_heads]
    assert [(h["layer"], h["head"]) for h in summary["ranked_heads"]] == api
    for from_json, h in zip(summary["ranked_heads"], res.ranked_heads):
        assert from_json["score"] == pytest.approx(h.score, abs=1e-6)
        if np.isfinite(h.period_samples):
            assert from_json["period_samples"] == pytest.approx(h.period_samples, abs=1e-6)
    for path in summary["files"]:
        assert Path(path).is_file() and Path(path).stat().st_size > 10_000
    assert any(Path(p).name.startswith("experiment_explain_layer_") for p in summary["files"])
    assert summary["ranking_caveats"] == [] and "note:" not in proc.stderr


def test_explain_says_when_the_history_is_too_short_to_rank_heads(tmp_path):
    proc = attnviz_cli("explain", "--expr", "sin(n/10)", "--length", "20", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    (caveat,) = summary["ranking_caveats"]
    assert "history (20 samples)" in caveat and f"attnviz explain: note: {caveat}" in proc.stderr
    assert "RankingCaveatWarning" not in proc.stderr  # said once, as a note, not again as a warning


def test_explain_from_csv_with_explicit_heads(tmp_path):
    csv = tmp_path / "data.csv"
    n = np.arange(300)
    csv.write_text("# comment lines are skipped\nt,value\n" + "\n".join(f"{i},{np.sin(2 * np.pi * i / 40):.6f}" for i in n))
    out = tmp_path / "out"
    proc = attnviz_cli("explain", "--csv", str(csv), "--column", "value", "--horizon", "200",
                       "--heads", "0:1,decoder_blocks.0.attn:2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [(h["layer"], h["head"]) for h in summary["selected_heads"]] == [("blocks.0.attn", 1), ("decoder_blocks.0.attn", 2)]
    assert summary["grid"]["samples_per_col"] == pytest.approx(500 / 77)
    assert (out / "experiment_explain_layer_0_head_1_correlations.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["explain", "--expr", "__import__('os').system('echo hi')"], "--expr"),
    (["explain", "--expr", "np.sin(n)"], "--expr"),
    (["explain", "--expr", "sin(n"], "--expr"),
    (["explain", "--expr", "sin(n)", "--horizon", "0"], "positive integer"),
    (["explain", "--expr", "sin(n)", "--heads", "7"], "--heads"),
    (["explain", "--csv", "missing.csv", "--column", "x"], "not found"),
    (["experiments", "--only", "nonsense"], "unknown experiment"),
    (["experiments", "--only", "co2,nonsense"], "unknown experiment(s) nonsense; available"),  # co2 accepted
])
def test_user_errors_are_one_line_exit_2(args, message, tmp_path):
    proc = attnviz_cli(*args, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 or proc.stderr.startswith("usage")


def test_csv_errors(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n1,x\n2,3\n")
    wrong_col = attnviz_cli("explain", "--csv", str(csv), "--column", "c", "--out", str(tmp_path / "o"))
    assert wrong_col.returncode == 2 and "column 'c' not in" in wrong_col.stderr
    text = attnviz_cli("explain", "--csv", str(csv), "--column", "b", "--out", str(tmp_path / "o"))
    assert text.returncode == 2 and "non-numeric" in text.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permission check not observable")
def test_unwritable_output_dir_fails_before_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    proc = attnviz_cli("explain", "--expr", "sin(n)", "--out", str(locked / "sub"))
    assert proc.returncode == 2 and "not writable" in proc.stderr


def test_unwritable_output_dir_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = attnviz_cli("explain", "--expr", "sin(n)", "--out", str(blocker / "sub"))
    assert proc.returncode == 2 and "not writable" in proc.stderr


def test_explain_draws_reference_periods_only_when_given(tmp_path):
    expr = "sin(2*pi*n/48)"
    plain = attnviz_cli("explain", "--expr", expr, "--top-k", "2", "--out", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    summary = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert summary["reference_periods"] == []
    assert [f["reference_periods"] for f in summary["figures"]] == [[]] * len(summary["figures"])
    given = attnviz_cli("explain", "--expr", expr, "--top-k", "2", "--known-period", "48", "--known-period", "96",
                        "--out", str(tmp_path / "given"))
    assert given.returncode == 0, given.stderr
    summary = json.loads((tmp_path / "given" / "summary.json").read_text())
    assert summary["reference_periods"] == [48.0, 96.0]
    heads = [f for f in summary["figures"] if f["kind"] == "head"]
    assert len(heads) == 2 and all(f["reference_periods"] == [48.0, 96.0] for f in heads)
    listed = sorted(Path(f).name for f in summary["files"])
    assert sorted(p.name for p in (tmp_path / "given").iterdir() if p.name != "summary.json") == listed


def test_explain_a_window_of_a_csv_without_naming_the_column(tmp_path):
    csv = tmp_path / "demand.csv"
    rows = [f"2024-01-01T{i:05d},{np.sin(2 * np.pi * i / 48):.5f}" for i in range(2000)]
    csv.write_text("\ufefftimestamp,value\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    proc = attnviz_cli("explain", "--csv", str(csv), "--last", "512", "--horizon", "336", "--top-k", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"]["column"] == "value" and summary["rows"]["first_row"] == 1488
    assert summary["rows"]["count"] == summary["length"] == 512 and summary["rows"]["last_line"] == 2001
    assert summary["signal"] == "demand.csv:value"


@pytest.mark.parametrize("name", ["/../../../x", "a/b", ".."])
def test_explain_name_must_be_plain(tmp_path, name):
    out = tmp_path / "deep" / "out"
    proc = attnviz_cli("explain", "--expr", "sin(n)", "--name", name, "--out", str(out))
    assert proc.returncode == 2 and "plain name" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.png")) and not (ROOT.parent / "x_head_scores.png").exists()


def test_control_characters_in_a_csv_header_are_escaped(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("\x1b[31mload\x1b[0m,t\n1,2\n3,4\n")
    proc = attnviz_cli("explain", "--csv", str(csv), "--column", "load", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "\x1b" not in proc.stderr and "\\x1b[31mload" in proc.stderr


def test_explain_html_writes_one_offline_page(tmp_path):
    proc = attnviz_cli("explain", "--expr", "sin(2*pi*n/40)", "--top-k", "1", "--known-period", "40", "--html",
                       "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    (page,) = [f for f in summary["figures"] if f["kind"] == "explorer"]
    assert page["file"] == "experiment_explain_explorer.html" and page["reference_periods"] == [40.0]
    html = (tmp_path / page["file"]).read_text()
    assert 100_000 < len(html) < 5_000_000 and "http://" not in html and "https://" not in html


def test_top_k_is_bounded_by_the_heads_of_the_model(tmp_path):
    weights = ROOT / "tests" / "fixtures" / "vitime-upstream-small" / "checkpoint.pth"
    proc = attnviz_cli("explain", "--expr", "sin(n/10)", "--length", "256", "--horizon", "384", "--weights", str(weights),
                       "--top-k", "100000", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    heads = len(summary["ranked_heads"])
    assert f"--top-k 100000 is more than the {heads} heads of this model; drawing all {heads}" in proc.stderr
    assert len(summary["selected_heads"]) == heads


def test_a_tiny_config_asking_for_a_giant_model_is_refused_before_loading(tmp_path):
    import shutil

    weights = ROOT / "attnviz" / "weights" / "vitime_small.safetensors"
    config = json.loads(weights.with_suffix(".json").read_text())
    config["config"]["embed_dim"] = 8192
    config["config"]["depth"] = 100000
    shutil.copy(weights, tmp_path / "huge.safetensors")
    (tmp_path / "huge.json").write_text(json.dumps(config))
    proc = attnviz_cli("explain", "--expr", "sin(n)", "--weights", str(tmp_path / "huge.safetensors"),
                       "--max-memory-gb", "2", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "embed_dim=8192" in proc.stderr and "limit 2 GB" in proc.stderr
    bad = attnviz_cli("explain", "--expr", "sin(n)", "--max-memory-gb", "-1", "--out", str(tmp_path / "o"))
    assert bad.returncode == 2 and "--max-memory-gb" in bad.stderr


def test_convert_command(tmp_path):
    src = ROOT / "tests" / "fixtures" / "vitime-upstream-small" / "checkpoint.pth"
    proc = attnviz_cli("convert", str(src), str(tmp_path / "native.safetensors"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "native.safetensors").is_file() and (tmp_path / "native.json").is_file()


def test_evaluate_puts_another_checkpoint_beside_the_bundled_model(tmp_path):
    src = ROOT / "tests" / "fixtures" / "vitime-upstream-small" / "checkpoint.pth"
    proc = attnviz_cli("evaluate", "--weights", str(src), "--cases", "3")
    assert proc.returncode == 0, proc.stderr
    head = next(line for line in proc.stdout.splitlines() if line.startswith("| series |"))
    assert "| bundled MAE | bundled / mean | checkpoint.pth MAE | checkpoint.pth / mean |" in head
    seed_row = next(line for line in proc.stdout.splitlines() if line.startswith("| seed signal |"))
    assert len(seed_row.strip("|").split("|")) == 7  # name, 2 shared baselines, 2 x (MAE, ratio)
