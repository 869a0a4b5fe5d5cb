"""Peak labels on lag panels: placed at draw time, never overlapping, legible, the fundamental kept.

Every check draws the figure for real (labels are placed after layout) and measures the boxes.
"""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.plotting.labels import label_candidates
from test_plotting import SMALL, axes_with_gid, find_gid, grid_seed, no_figures_left, plotter  # noqa: F401 (fixtures)


def _shown_peak_labels(fig, ax):
    """Peak labels left visible by a real draw, with their boxes in pixels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = [t for t in ax.texts if t.get_gid() == "peak_label" and t.get_visible()]
    return shown, [t.get_window_extent(renderer) for t in shown]


def _assert_disjoint(boxes):
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)


@pytest.mark.parametrize("figsize", [SMALL, (14, 5)])
def test_peak_labels_never_overlap_but_every_peak_keeps_its_marker(plotter, figsize):
    grid = grid_seed()
    lags = np.arange(1, 77) * 16.0  # 16 .. 1216 samples
    values = 1 + 0.1 * np.cos(2 * np.pi * lags / 32.0)
    peaks = lags[1:40:2]  # 20 peaks (32, 64, ... 640), 32 samples apart: too dense for a label each
    values[[5, 29]] = 3.0  # the two highest, at 96 and 480 samples
    fig = plotter.head_figure(np.eye(77), grid, lags, values, peaks_samples=peaks, figsize=figsize)
    ax = axes_with_gid(fig, "lag_axes")
    (marks,) = find_gid(ax, "peaks")
    assert len(marks.get_xdata()) == len(peaks)
    shown, boxes = _shown_peak_labels(fig, ax)
    labelled = sorted(float(t.get_text()) for t in shown)
    assert 96.0 in labelled and 480.0 in labelled  # the highest peaks are always labelled
    assert 2 <= len(labelled) <= 8
    _assert_disjoint(boxes)  # measured as drawn, after layout: no two labels touch


def test_close_peak_labels_are_stacked_not_printed_on_top_of_each_other(plotter):
    """Peaks a period of 63 samples apart on a 1,232-sample lag axis (the three_harmonics head):
    neighbouring labels collide on one line, so every other one is lifted above its neighbours
    and all stay legible."""
    grid = grid_seed()
    lags = np.arange(1, 77) * 16.0
    peaks = np.array([63.0, 126.0, 190.0, 254.0, 316.0, 380.0, 444.0, 504.0])
    values = np.full(lags.shape, 0.01)
    fig = plotter.head_figure(
        np.eye(77), grid, lags, values, peaks_samples=peaks, figsize=(9, 4)
    )
    ax = axes_with_gid(fig, "lag_axes")
    shown, boxes = _shown_peak_labels(fig, ax)
    assert len(shown) >= 6  # stacked rather than dropped
    assert len({round(b.y0) for b in boxes}) == 2  # two tiers
    _assert_disjoint(boxes)
    axes_top = ax.get_window_extent(fig.canvas.get_renderer()).y1
    assert max(b.y1 for b in boxes) <= axes_top + 3  # the second tier stays inside the panel


def test_labels_of_peaks_at_the_top_of_the_data_still_find_room_to_stack(plotter):
    """The three_harmonics head: its peaks are the curve's maxima, so the margin above them
    left no room to lift a colliding label and the fundamental's went unlabelled.  The panel
    now keeps room for two tiers above the highest peak."""
    grid = grid_seed()
    lags = np.arange(1, 77) * 16.0
    values = 0.012 + 0.001 * np.cos(2 * np.pi * lags / 64.0)  # eight equal maxima at 64 .. 512
    peaks = 64.0 * np.arange(1, 9)
    fig = plotter.head_figure(np.eye(77), grid, lags, values, peaks_samples=peaks)
    ax = axes_with_gid(fig, "lag_axes")
    shown, boxes = _shown_peak_labels(fig, ax)
    assert len(shown) == 8  # the fundamental's label included (was 4: 64, 192, 320, 448)
    assert len({round(b.y0) for b in boxes}) == 2
    _assert_disjoint(boxes)
    axes_box = ax.get_window_extent(fig.canvas.get_renderer())
    assert max(b.y1 for b in boxes) <= axes_box.y1 + 3


def test_a_label_at_the_panel_edge_slides_inside_instead_of_over_the_spine(plotter):
    """A peak one column from zero lag: a label centred on it ran over the left spine."""
    grid = grid_seed()
    lags = np.arange(1, 77) * 16.0
    values = 0.007 + 0.00002 * lags
    fig = plotter.head_figure(
        np.eye(77), grid, lags, values, peaks_samples=[17.0, 1210.0], figsize=(9, 4)
    )
    ax = axes_with_gid(fig, "lag_axes")
    shown, boxes = _shown_peak_labels(fig, ax)
    axes_box = ax.get_window_extent(fig.canvas.get_renderer())
    assert sorted(t.get_text() for t in shown) == ["1210", "17"]
    for box in boxes:
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1, (box, axes_box)


def test_the_shortest_lag_peak_is_labelled_even_when_it_is_among_the_lowest(plotter):
    """The fundamental (first peak) of a rising lag curve is lower than eight later peaks:
    labelling only the highest eight left it unlabelled."""
    grid = grid_seed()
    lags = np.arange(1, 77) * 16.0
    values = 0.01 + 0.00001 * lags + 0.001 * np.cos(2 * np.pi * lags / 64.0)
    peaks = 64.0 * np.arange(1, 12)
    fig = plotter.head_figure(np.eye(77), grid, lags, values, peaks_samples=peaks, figsize=(14, 5))
    ax = axes_with_gid(fig, "lag_axes")
    shown, boxes = _shown_peak_labels(fig, ax)
    labelled = {t.get_text() for t in shown}
    assert {"64", "704"} <= labelled  # the fundamental and the highest peak
    assert len(labelled) <= 8
    _assert_disjoint(boxes)


def test_peak_labels_have_a_white_halo_so_they_stay_legible_over_the_curve(plotter):
    """Labels of close peaks may sit across the curve's line (the 734 beside the 700 peak):
    a white stroke behind the text keeps them readable."""
    from matplotlib import patheffects

    lags = np.arange(1, 77) * 16.0
    fig = plotter.head_figure(np.eye(77), grid_seed(), lags, np.cos(lags / 10.0), peaks_samples=[62.8, 125.6])
    shown, _ = _shown_peak_labels(fig, axes_with_gid(fig, "lag_axes"))
    assert shown
    for text in shown:
        (halo,) = text.get_path_effects()
        assert isinstance(halo, patheffects.withStroke)
        assert halo._gc["foreground"] == "white" and halo._gc["linewidth"] > 1
        assert text.get_zorder() > find_gid(text.axes, "peaks")[0].get_zorder()  # not under a marker


def test_label_order_highest_first_then_the_shortest_lag():
    xs = np.array([64.0, 128.0, 192.0, 256.0])
    assert [x for x, _ in label_candidates(xs, np.array([1.0, 3.0, 2.0, 4.0]))] == [256, 64, 128, 192]
    # the shortest lag is also the highest: it stays first, the rest by height
    assert [x for x, _ in label_candidates(xs, np.array([5.0, 3.0, 2.0, 4.0]))] == [64, 256, 128, 192]
    assert [x for x, _ in label_candidates(xs, np.array([1.0, 3.0, 2.0, 4.0]), limit=2)] == [256, 64]
