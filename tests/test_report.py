"""The one report writer: plain names, files only inside --out, one run per folder, honest summaries."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from attnviz.analysis import AnalysisResult
from attnviz.grid import TokenGrid
from attnviz.report import ReportWriter, check_name, check_reference_periods, resolve_heads

ROOT = Path(__file__).resolve().parents[1]


def tiny_figure() -> Figure:
    fig = Figure(figsize=(1, 1), dpi=20)
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1], [1, 0])
    return fig


@pytest.mark.parametrize("name", ["/../../../x", "a/b", "..", "a..b", "", ".hidden", "x" * 101, "a\\b", "a b", None])
def test_names_must_be_plain(name):
    with pytest.raises(ValueError, match="plain name"):
        check_name(name)


def test_plain_names_pass():
    assert check_name("run-1.v2_final") == "run-1.v2_final"


def test_reference_periods_must_be_positive():
    assert check_reference_periods(None) == () and check_reference_periods([48, 96.5]) == (48.0, 96.5)
    for bad in ([0], [-3], [float("nan")], [float("inf")]):
        with pytest.raises(ValueError, match="reference_periods"):
            check_reference_periods(bad)


def test_files_appear_only_when_the_run_finishes(tmp_path):
    with ReportWriter(tmp_path, "one") as report:
        name = report.add_figure(tiny_figure(), "a", kind="test", reference_periods=(48,))
        assert name == "experiment_one_a.png"
        assert not (tmp_path / name).exists(), "staged files must not show before finish"
        summary = report.finish({"signal": "s"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment_one_a.png", "summary.json"]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["figures"] == [{"file": name, "kind": "test", "reference_periods": [48.0]}]
    assert on_disk["files"] == [str(tmp_path / name)]


def test_a_new_run_replaces_the_earlier_runs_files(tmp_path):
    with ReportWriter(tmp_path, "first") as report:
        report.add_figure(tiny_figure(), "a", kind="test")
        report.add_figure(tiny_figure(), "b", kind="test")
        report.finish({})
    (tmp_path / "notes.txt").write_text("the user's own file")
    with ReportWriter(tmp_path, "second") as report:
        report.add_figure(tiny_figure(), "c", kind="test")
        report.finish({})
    assert report.replaced == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment_second_c.png", "notes.txt", "summary.json"]
    listed = [Path(f).name for f in json.loads((tmp_path / "summary.json").read_text())["files"]]
    assert listed == ["experiment_second_c.png"]


def test_an_interrupted_run_leaves_the_folder_as_it_was(tmp_path):
    with ReportWriter(tmp_path, "first") as report:
        report.add_figure(tiny_figure(), "a", kind="test")
        report.finish({})
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RuntimeError, match="boom"):
        with ReportWriter(tmp_path, "second") as report:
            report.add_figure(tiny_figure(), "b", kind="test")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no staging folder left either


def test_nothing_is_written_outside_the_folder(tmp_path):
    out = tmp_path / "out"
    with ReportWriter(out, "run") as report:
        with pytest.raises(ValueError, match="outside"):
            report.add_figure(tiny_figure(), "../../escape", kind="test")
    assert not list(tmp_path.glob("*escape*")) and not list(out.glob("*escape*"))


def test_a_stale_summary_cannot_delete_files_outside_the_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "precious.png"
    victim.write_text("keep me")
    (out / "summary.json").write_text(json.dumps({"files": [str(victim), "../precious.png"]}))
    with ReportWriter(out, "run") as report:
        report.add_figure(tiny_figure(), "a", kind="test")
        report.finish({})
    assert victim.read_text() == "keep me"


def test_output_folder_that_is_a_file_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="not writable"):
        ReportWriter(blocker / "sub", "run")


# The "figures" are bytes naming their run, written by a stand-in plotter: what is raced here is
# the report writer's staging and finish(), and leaving matplotlib out makes each process cheap.
CONCURRENT = """
import sys
from pathlib import Path
from attnviz.report import ReportWriter
class BytesPlotter:
    def save(self, fig, path):
        Path(path).write_bytes(fig)
        return Path(path)
out, name = sys.argv[1], sys.argv[2]
with ReportWriter(out, name, BytesPlotter()) as report:
    for k in range(3):
        report.add_figure(f"{name} figure {k}".encode(), f"f{k}", kind="test")
    report.finish({"name": name})
"""


def test_concurrent_runs_into_one_folder_leave_one_consistent_run(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(tmp_path), f"run{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(8)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    summary = json.loads((tmp_path / "summary.json").read_text())
    listed = sorted(Path(f).name for f in summary["files"])
    on_disk = sorted(p.name for p in tmp_path.iterdir() if p.name != "summary.json")
    assert on_disk == listed and len(listed) == 3
    assert all(name.startswith(f"experiment_{summary['name']}_") for name in listed)
    # and each file holds what that run wrote, not another run's figure of the same name
    assert sorted((tmp_path / name).read_text() for name in listed) == [f"{summary['name']} figure {k}" for k in range(3)]


def small_result(layers: int = 2, heads: int = 3, lag_cols: int = 4) -> AnalysisResult:
    """A hand-built result whose heads attend ``lag_cols`` columns back (a known lag)."""
    grid = TokenGrid.for_call(rows=2, cols=24, prefix_tokens=1, history_length=160, horizon=80)
    cols = grid.cols
    shifted = np.zeros((cols, cols))
    for q in range(cols):
        shifted[q, max(q - lag_cols, 0)] = 1.0
    maps = np.broadcast_to(0.8 * shifted + 0.2 / cols, (layers, heads, cols, cols)).copy()
    names = [f"blocks.{i}.attn" for i in range(layers)]
    n = np.arange(160)
    series = np.sin(2 * np.pi * n / (lag_cols * grid.samples_per_col))

    class Forecast:
        forecast = np.zeros(80)

    return AnalysisResult(names, maps, np.zeros((layers, heads, cols)), grid, Forecast(), {k: heads for k in names}, series)


def test_resolve_heads_uses_the_results_lookup():
    res = small_result()
    assert resolve_heads(res, [(1, 2), ("blocks.0.attn", 0)]) == [("blocks.1.attn", 2), ("blocks.0.attn", 0)]
    assert len(resolve_heads(res, "auto", top_k=4)) == 4
    with pytest.raises(ValueError, match="out of range"):
        resolve_heads(res, [(0, 3)])
    with pytest.raises(ValueError, match="unknown layer"):
        resolve_heads(res, [("decoder.9", 0)])


def test_analysis_figures_record_only_the_reference_periods_given(tmp_path):
    res = small_result()
    with ReportWriter(tmp_path / "none", "plain") as report:
        report.analysis_figures(res, [("blocks.0.attn", 1)])
        summary = report.finish({})
    kinds = [f["kind"] for f in summary["figures"]]
    assert kinds == ["head", "layer_overview", "head_scores", "series"]
    assert all(f["reference_periods"] == [] for f in summary["figures"])
    with ReportWriter(tmp_path / "given", "given") as report:
        report.analysis_figures(res, [("blocks.0.attn", 1)], reference_periods=(40,))
        summary = report.finish({})
    head = summary["figures"][0]
    assert head == {"file": "experiment_given_layer_0_head_1_correlations.png", "kind": "head",
                    "layer": "blocks.0.attn", "head": 1, "reference_periods": [40.0]}
    assert all(Path(f).is_file() for f in summary["files"])
