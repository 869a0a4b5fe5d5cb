"""The attnviz command line: fast --help, explain's JSON = the Python API, one-line errors.

Real ``python -m attnviz.cli`` processes are started where the process itself is the point
(--help's imports, one explain, convert, evaluate, one user error); the other cases call
``attnviz.cli.main`` in this process (``attnviz_in_process``: same arguments, exit code, stdout
and stderr), which saves an interpreter start and a torch import per case.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_WEIGHTS = ROOT / "tests" / "fixtures" / "vitime-upstream-small" / "checkpoint.pth"
SEED_EXPR = "sin(2*pi*n/57) + 0.1*cos(n/3)"


def attnviz_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("ATTNVIZ_WEIGHTS", None)
    return subprocess.run([sys.executable, "-m", "attnviz.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, stdin=subprocess.DEVNULL)


class Ran(NamedTuple):
    """What ``attnviz_cli`` returns, for a command run in this process."""

    returncode: int
    stdout: str
    stderr: str


def attnviz_in_process(*args: str) -> Ran:
    """``attnviz <args>`` through ``attnviz.cli.main`` in this process.

    stderr holds what the command printed plus the warnings it raised, formatted as a fresh
    interpreter would print them (its default filters: deprecation, import and resource
    warnings hidden, every other warning shown)."""
    from attnviz import cli

    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught, redirect_stdout(out), redirect_stderr(err):
        warnings.simplefilter("always")
        for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", quiet)
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    return Ran(code, out.getvalue(), err.getvalue() + shown)


@pytest.fixture(scope="module", autouse=True)
def no_weights_from_the_environment():
    """As ``attnviz_cli`` does for its processes: the in-process commands load the bundled model."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ATTNVIZ_WEIGHTS", raising=False)
        yield


def test_help_does_not_import_torch():
    """Every command's --help in one real process: usage on stdout, exit 0, no torch or matplotlib."""
    code = ("import contextlib, io, sys\n"
            "from attnviz.cli import build_parser\n"
            "for sub in sys.argv[1:]:\n"
            "    out = io.StringIO()\n"
            "    try:\n"
            "        with contextlib.redirect_stdout(out):\n"
            "            build_parser().parse_args([sub, '--help'])\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code == 0, (sub, exc.code)\n"
            "    assert 'usage' in out.getvalue(), sub\n"
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy import on --help'")
    subs = ("explain", "ablate", "scan", "experiments", "train", "convert", "evaluate")
    proc = subprocess.run([sys.executable, "-c", code, *subs], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    """One real ``python -m attnviz.cli explain`` of the bundled model (default --top-k 3, no
    --known-period): its process, output folder and summary, read by several tests."""
    out = tmp_path_factory.mktemp("explained")
    proc = attnviz_cli("explain", "--expr", SEED_EXPR, "--length", "512", "--horizon", "720", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return proc, out, json.loads((out / "summary.json").read_text())


def test_explain_json_matches_python_api(explained, bundled_forecaster):
    import attnviz
    from attnviz.signals import evaluate_expression

    proc, _, summary = explained
    res = attnviz.MultiHeadAttentionRollout(bundled_forecaster).analyze(evaluate_expression(SEED_EXPR, 512), 720)
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
    proc = attnviz_in_process("explain", "--expr", "sin(n/10)", "--length", "20", "--top-k", "1", "--out", str(tmp_path))
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
    proc = attnviz_in_process("explain", "--csv", str(csv), "--column", "value", "--horizon", "200",
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
    proc = attnviz_in_process(*args, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 or proc.stderr.startswith("usage")


def test_a_user_error_in_a_real_process_is_one_line_exit_2(tmp_path):
    """The cases above run in this process; this one goes through ``python -m attnviz.cli``."""
    proc = attnviz_cli("experiments", "--only", "co2,nonsense", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr
    assert "unknown experiment(s) nonsense; available" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_csv_errors(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n1,x\n2,3\n")
    wrong_col = attnviz_in_process("explain", "--csv", str(csv), "--column", "c", "--out", str(tmp_path / "o"))
    assert wrong_col.returncode == 2 and "column 'c' not in" in wrong_col.stderr
    text = attnviz_in_process("explain", "--csv", str(csv), "--column", "b", "--out", str(tmp_path / "o"))
    assert text.returncode == 2 and "non-numeric" in text.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permission check not observable")
def test_unwritable_output_dir_fails_before_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    proc = attnviz_in_process("explain", "--expr", "sin(n)", "--out", str(locked / "sub"))
    assert proc.returncode == 2 and "not writable" in proc.stderr


def test_unwritable_output_dir_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = attnviz_in_process("explain", "--expr", "sin(n)", "--out", str(blocker / "sub"))
    assert proc.returncode == 2 and "not writable" in proc.stderr


def test_explain_records_no_reference_periods_unless_given(explained):
    _, out, summary = explained
    assert summary["reference_periods"] == []
    assert [f["reference_periods"] for f in summary["figures"]] == [[]] * len(summary["figures"])
    listed = sorted(Path(f).name for f in summary["files"])
    assert sorted(p.name for p in out.iterdir() if p.name != "summary.json") == listed


@pytest.fixture(scope="module")
def given(tmp_path_factory):
    """explain with two --known-period and --html (in this process): output folder and summary."""
    out = tmp_path_factory.mktemp("given")
    proc = attnviz_in_process("explain", "--expr", "sin(2*pi*n/48)", "--top-k", "2", "--known-period", "48",
                              "--known-period", "96", "--html", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "summary.json").read_text())


def test_explain_draws_the_reference_periods_given(given):
    out, summary = given
    assert summary["reference_periods"] == [48.0, 96.0]
    heads = [f for f in summary["figures"] if f["kind"] == "head"]
    assert len(heads) == 2 and all(f["reference_periods"] == [48.0, 96.0] for f in heads)
    listed = sorted(Path(f).name for f in summary["files"])
    assert sorted(p.name for p in out.iterdir() if p.name != "summary.json") == listed


def test_explain_a_window_of_a_csv_without_naming_the_column(tmp_path):
    csv = tmp_path / "demand.csv"
    rows = [f"2024-01-01T{i:05d},{np.sin(2 * np.pi * i / 48):.5f}" for i in range(2000)]
    csv.write_text("\ufefftimestamp,value\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    proc = attnviz_in_process("explain", "--csv", str(csv), "--last", "512", "--horizon", "336", "--top-k", "1",
                              "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"]["column"] == "value" and summary["rows"]["first_row"] == 1488
    assert summary["rows"]["count"] == summary["length"] == 512 and summary["rows"]["last_line"] == 2001
    assert summary["signal"] == "demand.csv:value"


@pytest.mark.parametrize("name", ["/../../../x", "a/b", ".."])
def test_explain_name_must_be_plain(tmp_path, name):
    out = tmp_path / "deep" / "out"
    proc = attnviz_in_process("explain", "--expr", "sin(n)", "--name", name, "--out", str(out))
    assert proc.returncode == 2 and "plain name" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.png")) and not (ROOT.parent / "x_head_scores.png").exists()


def test_control_characters_in_a_csv_header_are_escaped(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("\x1b[31mload\x1b[0m,t\n1,2\n3,4\n")
    proc = attnviz_in_process("explain", "--csv", str(csv), "--column", "load", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "\x1b" not in proc.stderr and "\\x1b[31mload" in proc.stderr


def test_explain_html_writes_one_offline_page(given):
    out, summary = given
    (page,) = [f for f in summary["figures"] if f["kind"] == "explorer"]
    assert page["file"] == "experiment_explain_explorer.html" and page["reference_periods"] == [48.0, 96.0]
    html = (out / page["file"]).read_text()
    assert 100_000 < len(html) < 5_000_000 and "http://" not in html and "https://" not in html


def test_top_k_is_bounded_by_the_heads_of_the_model(tmp_path):
    from attnviz.forecasters.vitime import ViTimeForecaster

    # 3 heads (2 encoder, 1 decoder), so "all heads" is 3 figures, not the 16 of the fixture model
    tiny = {"h": 32, "maxScal": 3.5, "size": [64, 0, 96], "patch_size": [8, 16], "embed_dim": 32, "depth": 1,
            "num_heads": 2, "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 1}
    weights, _ = ViTimeForecaster.from_config(tiny, seed=0).save(tmp_path / "tiny.safetensors")
    proc = attnviz_in_process("explain", "--expr", "sin(n/10)", "--length", "64", "--horizon", "96",
                              "--weights", str(weights), "--top-k", "100000", "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    heads = len(summary["ranked_heads"])
    assert heads == 3
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
    proc = attnviz_in_process("explain", "--expr", "sin(n)", "--weights", str(tmp_path / "huge.safetensors"),
                              "--max-memory-gb", "2", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "embed_dim=8192" in proc.stderr and "limit 2 GB" in proc.stderr
    bad = attnviz_in_process("explain", "--expr", "sin(n)", "--max-memory-gb", "-1", "--out", str(tmp_path / "o"))
    assert bad.returncode == 2 and "--max-memory-gb" in bad.stderr


def test_convert_command(tmp_path):
    proc = attnviz_cli("convert", str(FIXTURE_WEIGHTS), str(tmp_path / "native.safetensors"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "native.safetensors").is_file() and (tmp_path / "native.json").is_file()


def test_evaluate_puts_another_checkpoint_beside_the_bundled_model(tmp_path):
    proc = attnviz_cli("evaluate", "--weights", str(FIXTURE_WEIGHTS), "--cases", "3")
    assert proc.returncode == 0, proc.stderr
    head = next(line for line in proc.stdout.splitlines() if line.startswith("| series |"))
    assert "| bundled MAE | bundled / mean | checkpoint.pth MAE | checkpoint.pth / mean |" in head
    seed_row = next(line for line in proc.stdout.splitlines() if line.startswith("| seed signal |"))
    assert len(seed_row.strip("|").split("|")) == 7  # name, 2 shared baselines, 2 x (MAE, ratio)
