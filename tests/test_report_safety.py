"""The report writer never loses or deletes what it should not: duplicate heads/files, a failure
while finishing, and summary.json files it did not write."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from attnviz import report as report_module
from attnviz.analysis import AnalysisResult
from attnviz.grid import TokenGrid
from attnviz.report import GENERATOR, ReportWriter, resolve_heads, write_report


def tiny_figure() -> Figure:
    fig = Figure(figsize=(1, 1), dpi=20)
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def small_result(layers: int = 2, heads: int = 3) -> AnalysisResult:
    """A hand-built result (heads attend 4 columns back): no model needed."""
    grid = TokenGrid.for_call(rows=2, cols=24, prefix_tokens=1, history_length=160, horizon=80)
    cols = grid.cols
    shifted = np.zeros((cols, cols))
    for q in range(cols):
        shifted[q, max(q - 4, 0)] = 1.0
    maps = np.broadcast_to(0.8 * shifted + 0.2 / cols, (layers, heads, cols, cols)).copy()
    names = [f"blocks.{i}.attn" for i in range(layers)]

    class Forecast:
        forecast = np.zeros(80)

    series = np.sin(2 * np.pi * np.arange(160) / (4 * grid.samples_per_col))
    return AnalysisResult(names, maps, np.zeros((layers, heads, cols)), grid, Forecast(), {k: heads for k in names}, series)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry of ``folder`` (hidden ones too) with its bytes: 'as it was' means equal."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def first_run(folder: Path) -> dict[str, bytes]:
    with ReportWriter(folder, "first") as report:
        report.add_figure(tiny_figure(), "a", kind="test")
        report.add_figure(tiny_figure(), "b", kind="test")
        report.finish({"run": 1})
    (folder / "notes.txt").write_text("the user's own file")
    return snapshot(folder)


# ----- item: the same head named twice -------------------------------------------------------------
def test_resolve_heads_keeps_each_head_once_in_the_order_named():
    res = small_result()
    assert resolve_heads(res, [(0, 0), (0, 0)]) == [("blocks.0.attn", 0)]
    assert resolve_heads(res, [(1, 2), (0, 0), ("blocks.0.attn", 0), ("blocks.1.attn", 2)]) == [
        ("blocks.1.attn", 2), ("blocks.0.attn", 0)]


def test_a_head_named_twice_two_ways_writes_one_complete_report(tmp_path):
    before = first_run(tmp_path)
    summary = write_report(small_result(), tmp_path, "explain", heads=[(0, 0), ("blocks.0.attn", 0), (0, 0)])
    assert [(h["layer"], h["head"]) for h in summary["selected_heads"]] == [("blocks.0.attn", 0)]
    listed = sorted(Path(f).name for f in summary["files"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*listed, "notes.txt", "summary.json"])
    assert not any(name in listed for name in before if name.startswith("experiment_first_"))


def test_the_writer_refuses_a_file_or_head_twice(tmp_path):
    res = small_result()
    with ReportWriter(tmp_path, "dup") as report:
        report.add_figure(tiny_figure(), "a", kind="test")
        with pytest.raises(ValueError, match=r"'experiment_dup_a.png' is already part of this run"):
            report.add_figure(tiny_figure(), "a", kind="test")
        report.head_figure(res, "blocks.0.attn", 1)
        with pytest.raises(ValueError, match="blocks.0.attn head 1 is already drawn"):
            report.head_figure(res, "blocks.0.attn", 1)
        with pytest.raises(ValueError, match="already part of this run"):
            report.add_table("summary.json", "x")  # the summary's own name is never a file of the run
        report.finish({})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "experiment_dup_a.png", "experiment_dup_layer_0_head_1_correlations.png", "summary.json"]


def test_finish_checks_everything_before_touching_the_folder(tmp_path):
    before = first_run(tmp_path)
    with ReportWriter(tmp_path, "second") as report:
        report.add_figure(tiny_figure(), "c", kind="test")
        report.records.append(report.records[0])  # a duplicate slipped past the checks
        with pytest.raises(ValueError, match="lists 'experiment_second_c.png' twice"):
            report.finish({})
    assert snapshot(tmp_path) == before
    with ReportWriter(tmp_path, "third") as report:
        report.add_figure(tiny_figure(), "c", kind="test")
        (report.stage / "experiment_third_c.png").unlink()  # a staged file went missing
        with pytest.raises(ValueError, match="recorded 'experiment_third_c.png' but never wrote it"):
            report.finish({})
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4, 5, 6])
def test_a_failure_while_finishing_leaves_the_folder_as_it_was(tmp_path, monkeypatch, fail_at):
    """os.replace fails at its ``fail_at``-th call (moving earlier files aside, or new files in):
    every move is undone and the folder is byte for byte what it was."""
    before = first_run(tmp_path)
    real_replace, calls = os.replace, []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == fail_at:
            raise PermissionError(13, "Permission denied")
        return real_replace(src, dst)

    with ReportWriter(tmp_path, "second") as report:
        report.add_figure(tiny_figure(), "a", kind="test")
        report.add_figure(tiny_figure(), "c", kind="test")
        monkeypatch.setattr(report_module.os, "replace", flaky)
        with pytest.raises(ValueError, match="the folder was left as it was"):
            report.finish({"run": 2})
        monkeypatch.setattr(report_module.os, "replace", real_replace)
    assert snapshot(tmp_path) == before  # no staging folder left either
    assert len(calls) >= fail_at


def test_a_later_run_replaces_the_earlier_one_completely(tmp_path):
    first_run(tmp_path)
    with ReportWriter(tmp_path, "second") as report:
        report.add_figure(tiny_figure(), "c", kind="test")
        summary = report.finish({})
    assert report.replaced == 2 and report.notes == []
    assert summary["generator"] == GENERATOR
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment_second_c.png", "notes.txt", "summary.json"]


# ----- item: only attnviz's own summaries delete files ---------------------------------------------
def test_a_foreign_summary_never_deletes_what_it_lists(tmp_path):
    for name in ("data.csv", "experiment_run_old.png", "report.pdf"):
        (tmp_path / name).write_text(name)
    (tmp_path / "summary.json").write_text(json.dumps(
        {"files": ["data.csv", str(tmp_path / "report.pdf"), "experiment_run_old.png"]}))
    with ReportWriter(tmp_path, "run") as report:
        report.add_figure(tiny_figure(), "a", kind="test")
        report.finish({})
    assert report.replaced == 0
    for name in ("data.csv", "experiment_run_old.png", "report.pdf"):
        assert (tmp_path / name).read_text() == name  # also a same-name-prefix file is left alone
    (note,) = report.notes
    assert 'no "generator": "attnviz" marker' in note and "left the 3 file(s) it lists" in note


def test_an_old_attnviz_summary_without_the_marker_leaves_its_files(tmp_path):
    with ReportWriter(tmp_path, "old") as report:
        report.add_figure(tiny_figure(), "a", kind="test")
        report.finish({})
    summary = json.loads((tmp_path / "summary.json").read_text())
    del summary["generator"]  # as an attnviz from before the marker wrote it
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    with ReportWriter(tmp_path, "new") as report:
        report.add_figure(tiny_figure(), "b", kind="test")
        report.finish({})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment_new_b.png", "experiment_old_a.png", "summary.json"]
    assert report.replaced == 0 and "left the 1 file(s)" in report.notes[0]


def test_a_marked_summary_deletes_only_plain_names_in_its_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "precious.png").write_text("keep")
    (out / "sub").mkdir()
    (out / "sub" / "inner.png").write_text("keep")
    (out / "mine.png").write_text("listed")
    (out / ".hidden").write_text("keep")
    listed = ["../precious.png", "sub", "sub/inner.png", ".hidden", "mine.png", str(out / "summary.json")]
    (out / "summary.json").write_text(json.dumps({"generator": GENERATOR, "files": listed}))
    with ReportWriter(out, "run") as report:
        report.add_figure(tiny_figure(), "a", kind="test")
        report.finish({})
    assert report.replaced == 1 and not (out / "mine.png").exists()
    assert (tmp_path / "precious.png").read_text() == "keep"
    assert (out / "sub" / "inner.png").read_text() == "keep" and (out / ".hidden").read_text() == "keep"
    assert json.loads((out / "summary.json").read_text())["generator"] == GENERATOR


def test_the_marker_cannot_be_overridden_by_the_callers_summary(tmp_path):
    with ReportWriter(tmp_path, "run") as report:
        summary = report.finish({"generator": "someone else"})
    assert summary["generator"] == GENERATOR and next(iter(summary)) == "generator"
