"""Plots of a real ``AnalysisResult``: what the analysis computed is what the figure shows, the
result's own lookup names layers and rejects bad heads, and no reference period appears that
the caller did not give.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest

import attnviz.plotting
from attnviz.analysis import AnalysisResult
from attnviz.grid import TokenGrid
from attnviz.plotting import head_filename
from attnviz.plotting.labels import period_label
from attnviz.ranking import RankingCaveatWarning
from test_plotting import (  # noqa: F401 (no_figures_left, plotter: fixtures)
    SMALL,
    axes_with_gid,
    find_gid,
    grid_seed,
    legend_texts,
    no_figures_left,
    periodic_map,
    plotter,
)

LAYERS = ["blocks.0.attn", "decoder_blocks.3.attn"]
PERIOD_GIDS = ("reference_period", "reference_period_band", "detected_period")


@dataclass(frozen=True)
class SeriesForecast:
    """What an AnalysisResult's ``forecast`` gives the plots: the forecast and history + forecast."""

    forecast: np.ndarray
    full: np.ndarray


def make_result(grid: TokenGrid, heads_per_layer: tuple[int, int] = (3, 3), history=None) -> AnalysisResult:
    """Two layers x three heads: periods 62.8 and 31.4 samples, and a head with no period (a
    plain decay); heads beyond ``heads_per_layer`` are NaN padding, as ``analyze`` stacks them."""
    maps = np.full((2, 3, grid.cols, grid.cols), np.nan)
    distance = np.abs(np.subtract.outer(np.arange(grid.cols), np.arange(grid.cols)))
    for layer in range(2):
        for h in range(heads_per_layer[layer]):
            if h == 2:
                m = np.exp(-distance / 9.0)
                maps[layer, h] = m / m.sum(axis=1, keepdims=True)
            else:
                maps[layer, h] = periodic_map(grid, (62.8, 31.4)[h], decay=20 + 5 * layer, seed=layer * 10 + h)
    full = np.sin(np.arange(grid.history_length + grid.horizon) / 10)
    series = full[: grid.history_length] if history is None else history
    return AnalysisResult(
        layer_names=list(LAYERS),
        time_maps=maps,
        prefix_mass=np.zeros(maps.shape[:3]),
        grid=grid,
        forecast=SeriesForecast(full[grid.history_length:], full),
        num_heads=dict(zip(LAYERS, heads_per_layer)),
        series=series,
    )


@pytest.fixture(scope="module")
def res() -> AnalysisResult:
    return make_result(grid_seed())


def assert_no_period_lines(fig):
    for gid in PERIOD_GIDS:
        assert find_gid(fig, gid) == [], gid


# ----------------------------------------------------------------- one head


def test_save_head_file_name_and_closing(tmp_path, plotter, res):
    path = plotter.save_head(res, "decoder_blocks.3.attn", 0, tmp_path, experiment="three_harmonics", figsize=SMALL)
    assert path == tmp_path / "experiment_three_harmonics_layer_1_head_0_correlations.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path2 = plotter.save_head(res, 0, 2, tmp_path, experiment="my run/2", figsize=SMALL, normalize=True, region="history")
    assert path2.name == "experiment_my_run_2_layer_0_head_2_correlations.png" and path2.exists()
    assert plotter.save_head(res, 0, 1, tmp_path, figsize=SMALL).name == "experiment_run_layer_0_head_1_correlations.png"
    with pytest.raises(ValueError, match="folder .*nowhere.* does not exist"):
        plotter.save_head(res, 0, 0, tmp_path / "nowhere", figsize=SMALL)
    assert plt.get_fignums() == []


def test_head_panel_shows_the_result_curve_and_peaks_of_the_same_region(plotter, res):
    fig = plotter.head_panel(res, 0, 0, region="history", normalize=True, figsize=SMALL)
    curve = res.lag_curve(0, 0, region="history", normalize=True)
    estimate = res.periods(0, 0, region="history")
    ax = axes_with_gid(fig, "lag_axes")
    (line,) = find_gid(ax, "lag_curve")
    np.testing.assert_array_equal(line.get_xdata(), curve.lags)
    np.testing.assert_array_equal(line.get_ydata(), curve.values)
    (marks,) = find_gid(ax, "peaks")
    np.testing.assert_array_equal(marks.get_xdata(), estimate.peaks)
    assert ax.get_ylabel() == "attention / chance"
    image = axes_with_gid(fig, "map_axes").images[0]
    np.testing.assert_array_equal(np.asarray(image.get_array()), res.time_map(0, 0))
    assert f"fundamental ≈ {period_label(estimate.fundamental_samples)} samples" in fig.get_suptitle()


def test_head_panel_marks_the_detected_fundamental_when_no_reference_is_given(plotter, res):
    fundamental = res.periods(0, 0).fundamental_samples
    fig = plotter.head_panel(res, 0, 0, figsize=SMALL)
    ax = axes_with_gid(fig, "lag_axes")
    assert find_gid(fig, "reference_period") == [] and find_gid(fig, "reference_period_band") == []
    xs = sorted(ln.get_xdata()[0] for ln in find_gid(ax, "detected_period"))
    lags = res.lag_curve(0, 0).lags
    np.testing.assert_allclose(xs, fundamental * np.arange(1, int(lags.max() // fundamental) + 1))
    assert f"detected fundamental {period_label(fundamental)} (and multiples)" in legend_texts(ax)


def test_head_panel_draws_given_reference_periods_at_their_multiples(plotter, res):
    fig = plotter.head_panel(res, 0, 1, reference_periods=(31.4,), figsize=SMALL)
    ax = axes_with_gid(fig, "lag_axes")
    xs = sorted(ln.get_xdata()[0] for ln in find_gid(ax, "reference_period"))
    lags = res.lag_curve(0, 1).lags
    np.testing.assert_allclose(xs, 31.4 * np.arange(1, min(int(lags.max() // 31.4), 40) + 1))
    assert "reference period 31.4 (and multiples)" in legend_texts(ax)
    assert find_gid(ax, "detected_period") == []  # the title states the detected fundamental


def test_a_head_without_a_period_gets_no_period_line(plotter, res):
    assert not res.periods(0, 2).found
    fig = plotter.head_panel(res, 0, 2, figsize=SMALL)
    assert_no_period_lines(fig)
    assert "fundamental" not in fig.get_suptitle()


def test_head_filename():
    assert head_filename("three_harmonics", 3, 5) == "experiment_three_harmonics_layer_3_head_5_correlations.png"


def test_layer_and_head_errors_come_from_the_result(plotter, tmp_path, res):
    with pytest.raises(ValueError, match=r"unknown layer 'blocks.9.attn'; captured layers are"):
        plotter.save_head(res, "blocks.9.attn", 0, tmp_path)
    with pytest.raises(ValueError, match="layer index 5 is out of range: 2 layers captured"):
        plotter.save_head(res, 5, 0, tmp_path)
    with pytest.raises(ValueError, match=r"head 3 is out of range for layer 'blocks.0.attn': it has 3 heads"):
        plotter.save_head(res, 0, 3, tmp_path)
    with pytest.raises(TypeError, match="res must be an attnviz.analysis.AnalysisResult"):
        plotter.layer_overview(SimpleNamespace(layer_names=LAYERS), 0)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- layers and ranking


def test_layer_overview(plotter, res):
    fig = plotter.layer_overview(res, "blocks.0.attn", reference_periods=(62.8,), panel_size=1.2)
    maps = [ax for ax in fig.axes if ax.get_gid() == "map_axes"]
    assert len(maps) == 3
    for h, ax in enumerate(maps):
        np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), res.time_map(0, h))
    lag_axes = [ax for ax in fig.axes if ax.get_gid() == "lag_axes"]
    assert len(lag_axes) == 3
    for h, ax in enumerate(lag_axes):
        peaks, marks = res.periods(0, h).peaks, find_gid(ax, "peaks")
        if peaks.size:
            np.testing.assert_array_equal(marks[0].get_xdata(), peaks)
        else:
            assert marks == []
        xs = sorted(ln.get_xdata()[0] for ln in find_gid(ax, "reference_period"))
        np.testing.assert_allclose(xs, 62.8 * np.arange(1, int(res.lag_curve(0, h).lags.max() // 62.8) + 1))
        assert find_gid(ax, "detected_period") == []
    assert maps[0].get_title() == f"head 0 · P≈{period_label(res.periods(0, 0).fundamental_samples)}"
    assert maps[2].get_title() == "head 2"  # no period found: none claimed
    assert "blocks.0.attn" in fig.get_suptitle() and "samples_per_col = 16" in fig.get_suptitle()
    assert "reference period 62.8" in fig.get_suptitle()
    assert all(not ax.texts for ax in lag_axes)  # said once in the suptitle, not in every panel
    fig2 = plotter.overview_figure(res.time_maps[1], res.grid, max_cols=2, panel_size=1.0)
    assert len([ax for ax in fig2.axes if ax.get_gid() == "map_axes"]) == 3
    with pytest.raises(ValueError, match=r"time_maps must have shape \(heads, cols, cols\)"):
        plotter.overview_figure(res.time_maps[1, 0], res.grid)


def test_layer_overview_without_references_draws_no_period_line(plotter, res):
    fig = plotter.layer_overview(res, 0, panel_size=1.0)
    assert_no_period_lines(fig)
    assert "reference" not in fig.get_suptitle()


def test_heads_of_limits_heads(plotter, tmp_path):
    res = make_result(grid_seed(), heads_per_layer=(3, 2))  # the second layer's head 2 is padding
    fig = plotter.layer_overview(res, 1, lag_curves=False, panel_size=1.0)
    assert len([ax for ax in fig.axes if ax.get_gid() == "map_axes"]) == 2
    with pytest.raises(ValueError, match=r"head 2 is out of range for layer 'decoder_blocks.3.attn': it has 2 heads"):
        plotter.save_head(res, 1, 2, tmp_path)
    fig = plotter.score_grid(res, figsize=(4, 2))
    data = find_gid(axes_with_gid(fig, "score_axes"), "score_grid")[0].get_array()
    assert np.ma.getmaskarray(data).reshape(2, 3)[1, 2]  # the padding cell stays blank


def test_score_grid_shows_the_ranking(plotter, res):
    ranked = res.ranked_heads
    fig = plotter.score_grid(res, figsize=(4, 2))
    ax = axes_with_gid(fig, "score_axes")
    (mesh,) = find_gid(ax, "score_grid")
    data = np.ma.filled(np.ma.asarray(mesh.get_array()).astype(float), np.nan).reshape(2, 3)
    expected = np.full((2, 3), np.nan)
    for entry in ranked:
        expected[res.head_index(entry.layer, entry.head)] = entry.score
    np.testing.assert_allclose(data, expected)
    texts = [t.get_text() for t in ax.texts]
    for entry in ranked:
        text = f"{entry.score:.2f}" + (f"\n{period_label(entry.period_samples)}" if np.isfinite(entry.period_samples) else "")
        assert text in texts
    (best,) = find_gid(ax, "best_head")
    layer, head = res.head_index(ranked[0].layer, ranked[0].head)
    assert best.get_xy() == (head, layer)
    assert [t.get_text() for t in ax.get_yticklabels()] == LAYERS
    assert "periodicity score" in axes_with_gid(fig, "colorbar").get_ylabel()
    assert "note:" not in ax.get_title()  # a periodic history: nothing to warn about
    with pytest.raises(ValueError, match="layer_names has 1 entries but scores has 2 rows"):
        plotter.score_heatmap(np.zeros((2, 3)), ["a"])


def test_score_grid_title_carries_the_ranking_caveat(plotter):
    grid = grid_seed()
    res = make_result(grid, history=np.full(grid.history_length, 2.0))  # a flat history
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankingCaveatWarning)
        fig = plotter.score_grid(res, figsize=(3, 2))
    title = axes_with_gid(fig, "score_axes").get_title()
    assert "note: flat history" in title
    assert max(len(line) for line in title.splitlines()[2:]) <= 30  # wrapped to the narrow figure


# ----------------------------------------------------------------- the series


def test_series_panel(plotter, res):
    fig = plotter.series_panel(res, forecast_col=50, layer=0, head=0, reference_periods=(62.8,), figsize=SMALL)
    ax = axes_with_gid(fig, "series_axes")
    (hist,) = find_gid(ax, "history")
    np.testing.assert_array_equal(hist.get_ydata(), res.series)
    (fc,) = find_gid(ax, "forecast")
    np.testing.assert_array_equal(fc.get_ydata(), res.forecast.forecast)
    assert fc.get_xdata()[0] == 512 and len(fc.get_xdata()) == 720
    att = axes_with_gid(fig, "attention_axes")
    bars = find_gid(att, "attention_bars")
    assert len(bars) == 77
    np.testing.assert_allclose([b.get_height() for b in bars], res.time_map(0, 0)[50])
    np.testing.assert_allclose([b.get_x() for b in bars], np.arange(77) * 16.0)
    np.testing.assert_allclose([b.get_width() for b in bars], 16.0)
    spans = find_gid(att, "query_column")
    assert spans and spans[0].get_x() == pytest.approx(800) and spans[0].get_width() == pytest.approx(16)
    # the given reference period, one, two ... periods back from the query column's centre
    xs = sorted(ln.get_xdata()[0] for ln in find_gid(att, "reference_period"))
    np.testing.assert_allclose(xs, sorted(808 - 62.8 * np.arange(1, int(808 // 62.8) + 1)))
    assert "query − k·62.8 (reference period)" in legend_texts(att)
    # default: best-ranked head, middle of the forecast region
    fig = plotter.series_panel(res, figsize=SMALL)
    top = res.ranked_heads[0]
    li, h = res.head_index(top.layer, top.head)
    assert f"{top.layer} (layer {li}), head {h}" in fig.get_suptitle()
    assert "query column 54" in fig.get_suptitle()
    assert_no_period_lines(fig)  # none given, none drawn
    with pytest.raises(ValueError, match=r"forecast_col must be an integer in \[0, 77\)"):
        plotter.series_panel(res, forecast_col=77)


def test_series_panel_draws_the_truth_and_the_callers_error(plotter, res):
    forecast = res.forecast.forecast
    truth = forecast + 0.25
    fig = plotter.series_panel(res, truth=truth, forecast_mae=0.25, figsize=SMALL)
    ax = axes_with_gid(fig, "series_axes")
    (line,) = find_gid(ax, "truth")
    np.testing.assert_array_equal(line.get_ydata(), truth)
    assert line.get_xdata()[0] == 512
    assert find_gid(ax, "forecast")[0].get_label() == "forecast (MAE 0.25)"
    assert "truth" in legend_texts(ax)
    # a truth without an error: the truth line, a plain label; no truth: neither
    fig = plotter.series_panel(res, truth=truth, figsize=SMALL)
    assert find_gid(fig, "forecast")[0].get_label() == "forecast"
    fig = plotter.series_panel(res, figsize=SMALL)
    ax = axes_with_gid(fig, "series_axes")
    assert find_gid(ax, "truth") == [] and find_gid(ax, "forecast")[0].get_label() == "forecast"
    with pytest.raises(ValueError, match=r"truth must have as many values as the forecast \(720\), got 10"):
        plotter.series_panel(res, truth=np.zeros(10))
    with pytest.raises(ValueError, match="forecast_mae was given without truth"):
        plotter.series_panel(res, forecast_mae=0.25)


# ----------------------------------------------------------------- the whole package


def test_no_figure_of_a_result_shows_a_reference_nobody_gave(plotter, res):
    """``attnviz explain`` once drew "known period 62.8" on a user's electricity series."""
    figures = [
        plotter.layer_overview(res, 1, panel_size=1.0),
        plotter.series_panel(res, figsize=SMALL),
        plotter.head_panel(res, 1, 2, figsize=SMALL),
        plotter.score_grid(res, figsize=(4, 2)),
    ]
    for fig in figures:
        assert find_gid(fig, "reference_period") == [] and find_gid(fig, "reference_period_band") == []
        for ax in fig.axes:
            assert not any("reference" in t or "known" in t for t in legend_texts(ax))


def test_plotting_does_not_import_evaluation():
    """The caller scores a forecast; the figures only show the number it passes."""
    package = Path(attnviz.plotting.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        ] + [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        assert not any("evaluation" in name for name in imported), path.name
