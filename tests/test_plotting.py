"""Plotter: data round-trips through the artists, markers sit on peaks, errors, files, no leaks.

Figures are kept tiny (low dpi, small figsize) so the whole file runs in a few seconds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from scipy.signal import find_peaks

from attnviz.grid import TokenGrid
from attnviz.plotting import STYLE, Plotter, head_filename, outline_segments

SMALL = (6.0, 2.6)


# ----------------------------------------------------------------- helpers


def grid_seed() -> TokenGrid:
    """512 history + 720 horizon on 77 columns: 16 samples per column, boundary at 32."""
    return TokenGrid.for_call(rows=8, cols=77, prefix_tokens=1, history_length=512, horizon=720)


def grid_small_call() -> TokenGrid:
    """300 + 200 on 77 columns: 500/77 samples per column, boundary at 46.2 columns."""
    return TokenGrid.for_call(rows=8, cols=77, prefix_tokens=1, history_length=300, horizon=200)


def periodic_map(grid: TokenGrid, period: float, decay: float = 25.0, seed: int = 0) -> np.ndarray:
    q = np.arange(grid.cols)[:, None]
    k = np.arange(grid.cols)[None, :]
    d = (q - k) * grid.samples_per_col
    rng = np.random.default_rng(seed)
    m = np.exp(-np.abs(q - k) / decay) * (1 + 0.9 * np.cos(2 * np.pi * d / period))
    m = m + 0.02 * rng.random(m.shape)
    return m / m.sum(axis=1, keepdims=True)


def past_lag_curve(time_map: np.ndarray, grid: TokenGrid) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the k-th sub-diagonal, k = 1 .. cols-1, lags in samples."""
    ks = np.arange(1, grid.cols)
    values = np.array([np.diagonal(time_map, offset=-k).mean() for k in ks])
    return ks * grid.samples_per_col, values


def curve_peaks(lags: np.ndarray, values: np.ndarray) -> np.ndarray:
    idx, _ = find_peaks(values, prominence=0.2 * np.ptp(values))
    return lags[idx]


def find_gid(container, gid):
    return [a for a in container.findobj() if a.get_gid() == gid]


def axes_with_gid(fig, gid):
    found = [ax for ax in fig.axes if ax.get_gid() == gid]
    assert found, f"no axes with gid {gid!r}"
    return found[0]


@pytest.fixture(autouse=True)
def no_figures_left():
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before == []


@pytest.fixture(scope="module")
def plotter() -> Plotter:
    return Plotter(dpi=40)


@dataclass
class HeadScore:
    layer: str
    head: int
    score: float
    period_samples: float


class FakeResult:
    """Mimics the analysis result contract with hand-built maps (2 layers x 3 heads)."""

    def __init__(self, grid: TokenGrid, periods=(62.8, 31.4, None)):
        self.grid = grid
        self.layer_names = ["blocks.0.attn", "decoder_blocks.3.attn"]
        maps = []
        for layer in range(2):
            row = []
            for h, per in enumerate(periods):
                if per is None:
                    m = np.exp(
                        -np.abs(np.subtract.outer(np.arange(grid.cols), np.arange(grid.cols))) / 9.0
                    )
                    m = m / m.sum(axis=1, keepdims=True)
                else:
                    m = periodic_map(grid, per, decay=20 + 5 * layer, seed=layer * 10 + h)
                row.append(m)
            maps.append(row)
        self.time_maps = np.array(maps)
        self.prefix_mass = np.zeros(self.time_maps.shape[:3])
        self.series = np.sin(np.arange(grid.history_length) / 10)
        full = np.sin(np.arange(grid.history_length + grid.horizon) / 10)
        self.forecast = SimpleNamespace(full=full, forecast=full[grid.history_length :])
        self.ranked_heads = [
            HeadScore("decoder_blocks.3.attn", 0, 0.93, 62.9),
            HeadScore("blocks.0.attn", 0, 0.88, 63.1),
            HeadScore("blocks.0.attn", 1, 0.61, 31.6),
            HeadScore("decoder_blocks.3.attn", 1, 0.55, 31.2),
            HeadScore("blocks.0.attn", 2, 0.0, float("nan")),
        ]
        self.calls = []

    def _index(self, layer):
        return self.layer_names.index(layer) if isinstance(layer, str) else int(layer)

    def lag_curve(self, layer, head, direction="past", region="all", normalize=False):
        self.calls.append(("lag_curve", layer, head, direction, region, normalize))
        lags, values = past_lag_curve(self.time_maps[self._index(layer), head], self.grid)
        return SimpleNamespace(lags=lags, values=values)

    def periods(self, layer, head, direction="past", region="all"):
        self.calls.append(("periods", layer, head, direction, region))
        lags, values = past_lag_curve(self.time_maps[self._index(layer), head], self.grid)
        peaks = curve_peaks(lags, values)
        return SimpleNamespace(
            peaks_samples=peaks, fundamental_samples=float(peaks[0]) if peaks.size else float("nan")
        )


# ----------------------------------------------------------------- per-head figure


def test_head_figure_heatmap_holds_the_map(plotter):
    grid = grid_seed()
    tmap = periodic_map(grid, 62.8)
    lags, values = past_lag_curve(tmap, grid)
    fig = plotter.head_figure(tmap, grid, lags, values, title="t", figsize=SMALL)
    ax = axes_with_gid(fig, "map_axes")
    assert len(ax.images) == 1
    image = ax.images[0]
    np.testing.assert_array_equal(np.asarray(image.get_array()), tmap)
    assert image.get_extent() == [0, grid.cols, grid.cols, 0]
    # robust percentile clipping with the default (5, 99)
    lo, hi = np.percentile(tmap, [5, 99])
    assert isinstance(image.norm, mcolors.Normalize)
    assert image.norm.vmin == pytest.approx(lo) and image.norm.vmax == pytest.approx(hi)
    # colour bar is labelled
    cbar = axes_with_gid(fig, "colorbar")
    assert "attention" in cbar.get_ylabel()
    # history/forecast boundary on both axes at column 32 (= sample 512)
    lines = find_gid(ax, "boundary")
    xs = [ln.get_xdata()[0] for ln in lines if ln.get_xdata()[0] == ln.get_xdata()[1]]
    ys = [ln.get_ydata()[0] for ln in lines if ln.get_ydata()[0] == ln.get_ydata()[1]]
    assert xs == [32.0] and ys == [32.0]
    assert ax.get_xlabel() == "key column" and ax.get_ylabel() == "query column"
    assert "samples_per_col = 16" in fig.get_suptitle()


def test_secondary_axes_show_samples(plotter):
    grid = grid_seed()
    tmap = periodic_map(grid, 62.8)
    lags, values = past_lag_curve(tmap, grid)
    fig = plotter.head_figure(tmap, grid, lags, values, figsize=SMALL)
    fig.canvas.draw()
    ax = axes_with_gid(fig, "map_axes")
    secondary = [c for c in ax.child_axes if c.get_gid() == "samples_axis"]
    assert len(secondary) == 2
    top = [c for c in secondary if c.get_xlabel()][0]
    right = [c for c in secondary if c.get_ylabel()][0]
    assert top.get_xlabel() == "key time (samples)"
    assert right.get_ylabel() == "query time (samples)"
    assert top.get_xlim() == pytest.approx((0, 77 * 16))
    # column ticks at nice column multiples (the boundary column is among them)
    assert 32 in list(ax.get_xticks())
    lag_ax = axes_with_gid(fig, "lag_axes")
    cols_axis = [c for c in lag_ax.child_axes if c.get_gid() == "columns_axis"][0]
    assert cols_axis.get_xlabel() == "lag (columns of 16 samples)"
    assert lag_ax.get_xlabel() == "lag (samples)"
    assert cols_axis.get_xlim()[1] == pytest.approx(lag_ax.get_xlim()[1] / 16)
    plotter.close(fig)


def test_lag_legend_sits_beside_the_panel(plotter):
    """The legend never covers the curve and peaks it explains: it sits right of the panel."""
    grid = grid_seed()
    tmap = periodic_map(grid, 62.8)
    lags, values = past_lag_curve(tmap, grid)
    peaks = curve_peaks(lags, values)
    fig = plotter.head_figure(tmap, grid, lags, values, peaks_samples=peaks, known_periods=[62.8])
    fig.canvas.draw()
    ax = axes_with_gid(fig, "lag_axes")
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1
    assert legend_box.x1 <= fig.bbox.x1 + 1  # constrained layout made room for it
    plotter.close(fig)
    # A small figure has no room beside the panel: the legend goes inside, the layout holds.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied" would be a warning
        fig = plotter.head_figure(tmap, grid, lags, values, peaks_samples=peaks, figsize=SMALL)
        fig.canvas.draw()
    ax = axes_with_gid(fig, "lag_axes")
    assert ax.get_window_extent().fully_overlaps(ax.get_legend().get_window_extent())
    plotter.close(fig)


def test_peak_markers_sit_on_curve_peaks(plotter):
    grid = grid_seed()
    tmap = periodic_map(grid, 62.8)
    lags, values = past_lag_curve(tmap, grid)
    peaks = curve_peaks(lags, values)
    assert peaks.size >= 3 and abs(peaks[0] - 64) < 1e-9  # 62.8 samples -> 4 columns of 16
    fig = plotter.head_figure(tmap, grid, lags, values, peaks_samples=peaks, figsize=SMALL)
    ax = axes_with_gid(fig, "lag_axes")
    (curve,) = find_gid(ax, "lag_curve")
    np.testing.assert_array_equal(curve.get_xdata(), lags)
    np.testing.assert_array_equal(curve.get_ydata(), values)
    (marks,) = find_gid(ax, "peaks")
    np.testing.assert_array_equal(marks.get_xdata(), peaks)
    expected = values[np.searchsorted(lags, peaks)]
    np.testing.assert_allclose(marks.get_ydata(), expected)
    # each marker is a local maximum of the plotted curve
    for x in marks.get_xdata():
        i = int(np.flatnonzero(lags == x)[0])
        assert values[i] >= values[i - 1] and values[i] >= values[i + 1]


def test_off_grid_peaks_are_placed_on_the_curve(plotter):
    grid = grid_seed()
    lags = np.arange(1, 77) * 16.0
    values = np.cos(2 * np.pi * lags / 62.8) + 2
    values[10] = np.nan  # an empty diagonal
    fig = plotter.head_figure(
        np.eye(77), grid, lags, values, peaks_samples=[62.8, 125.6], figsize=SMALL
    )
    (marks,) = find_gid(axes_with_gid(fig, "lag_axes"), "peaks")
    finite = np.isfinite(values)
    np.testing.assert_allclose(
        marks.get_ydata(), np.interp([62.8, 125.6], lags[finite], values[finite])
    )


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
    from attnviz.plotting import _label_candidates

    xs = np.array([64.0, 128.0, 192.0, 256.0])
    assert [x for x, _ in _label_candidates(xs, np.array([1.0, 3.0, 2.0, 4.0]))] == [256, 64, 128, 192]
    # the shortest lag is also the highest: it stays first, the rest by height
    assert [x for x, _ in _label_candidates(xs, np.array([5.0, 3.0, 2.0, 4.0]))] == [64, 256, 128, 192]
    assert [x for x, _ in _label_candidates(xs, np.array([1.0, 3.0, 2.0, 4.0]), limit=2)] == [256, 64]


def test_known_periods_and_multiples_drawn(plotter):
    grid = grid_seed()
    tmap = periodic_map(grid, 62.8)
    lags, values = past_lag_curve(tmap, grid)
    fig = plotter.head_figure(tmap, grid, lags, values, known_periods=(62.8, 500.0), figsize=SMALL)
    ax = axes_with_gid(fig, "lag_axes")
    xs = sorted(round(ln.get_xdata()[0], 6) for ln in find_gid(ax, "known_period"))
    expected = sorted(
        [round(62.8 * k, 6) for k in range(1, 20) if 62.8 * k <= lags.max()] + [500.0, 1000.0]
    )
    assert xs == expected
    for line in find_gid(ax, "known_period"):
        assert line.get_linestyle() == "--"
    # a ±half-column band around each reference line
    assert len(find_gid(ax, "known_period_band")) == len(expected)
    assert [c.get_xlabel() for c in ax.child_axes] == ["lag (columns of 16 samples)"]


def test_fractional_samples_per_col():
    grid = grid_small_call()
    assert grid.history_boundary == pytest.approx(46.2)
    tmap = periodic_map(grid, 50.0)
    lags, values = past_lag_curve(tmap, grid)
    fig = Plotter(dpi=40).head_figure(tmap, grid, lags, values, figsize=SMALL)
    ax = axes_with_gid(fig, "map_axes")
    xs = [ln.get_xdata()[0] for ln in find_gid(ax, "boundary")]
    assert xs[0] == pytest.approx(46.2)
    assert "samples_per_col = 6.49" in fig.get_suptitle()
    (cols_axis,) = axes_with_gid(fig, "lag_axes").child_axes
    assert cols_axis.get_xlabel() == "lag (columns of 6.49 samples)"


def test_gamma_and_log_norms():
    grid = grid_seed()
    tmap = periodic_map(grid, 62.8)
    lags, values = past_lag_curve(tmap, grid)
    fig = Plotter(gamma=0.5, dpi=40).head_figure(tmap, grid, lags, values, figsize=SMALL)
    norm = axes_with_gid(fig, "map_axes").images[0].norm
    assert isinstance(norm, mcolors.PowerNorm) and norm.gamma == 0.5
    assert "γ = 0.5" in axes_with_gid(fig, "colorbar").get_ylabel()
    zeroed = tmap.copy()
    zeroed[0, :10] = 0.0
    p = Plotter(log=True, percentiles=(1, 99.5), dpi=40)
    fig = p.head_figure(zeroed, grid, lags, values, figsize=SMALL)
    norm = axes_with_gid(fig, "map_axes").images[0].norm
    assert isinstance(norm, mcolors.LogNorm)
    positive = zeroed[zeroed > 0]
    assert norm.vmin == pytest.approx(np.percentile(positive, 1))
    assert norm.vmax == pytest.approx(np.percentile(positive, 99.5))
    assert "log" in axes_with_gid(fig, "colorbar").get_ylabel()


def test_top_percent_outline_surrounds_top_cells():
    grid = grid_seed()
    tmap = np.full((77, 77), 0.01)
    tmap[40, 10] = 1.0
    lags, values = past_lag_curve(tmap, grid)
    fig = Plotter(dpi=40).head_figure(tmap, grid, lags, values, figsize=SMALL)
    (outline,) = find_gid(axes_with_gid(fig, "map_axes"), "top_outline")
    segs = np.array(outline.get_segments())
    assert segs.shape == (4, 2, 2)
    # the unit square of cell (row 40, col 10): x in [10, 11], y in [40, 41]
    assert segs[..., 0].min() == 10 and segs[..., 0].max() == 11
    assert segs[..., 1].min() == 40 and segs[..., 1].max() == 41
    # top 10 %: every cell >= the 90th percentile is inside the outline
    p = Plotter(top_percent=90, dpi=40)
    mask = p.top_mask(periodic_map(grid, 62.8))
    assert mask.mean() == pytest.approx(0.1, abs=0.01)
    assert Plotter(top_percent=None).top_mask(tmap) is None


def test_outline_segments_two_cells():
    mask = np.zeros((3, 3), dtype=bool)
    mask[1, 0] = mask[1, 1] = True  # a 1x2 block: 6 unit edges
    segs = outline_segments(mask)
    assert segs.shape == (6, 2, 2)
    pts = {tuple(map(tuple, s)) for s in segs}
    assert ((0.0, 1.0), (1.0, 1.0)) in pts and ((2.0, 1.0), (2.0, 2.0)) in pts
    assert ((1.0, 1.0), (1.0, 2.0)) not in pts  # no edge between the two True cells


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"percentiles": (99, 5)}, "0 <= lo < hi <= 100"),
        ({"percentiles": (5, 5)}, "0 <= lo < hi <= 100"),
        ({"percentiles": (-1, 99)}, "0 <= lo < hi <= 100"),
        ({"percentiles": (5, 101)}, "0 <= lo < hi <= 100"),
        ({"percentiles": (5,)}, "pair"),
        ({"gamma": 0}, "gamma must be > 0"),
        ({"gamma": -1.0}, "gamma must be > 0"),
        ({"gamma": float("nan")}, "gamma must be a finite"),
        ({"top_percent": 0}, "top_percent must lie in (0, 100]"),
        ({"top_percent": 100.5}, "top_percent must lie in (0, 100]"),
        ({"log": True, "gamma": 0.5}, "log=True cannot be combined"),
        ({"dpi": 0}, "dpi must be > 0"),
        ({"style": {"colour": 1}}, "unknown style keys"),
        ({"style": {"cmap": "no-such-map"}}, "unknown colormap"),
    ],
)
def test_bad_plotter_settings(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        Plotter(**kwargs)
    assert fragment in str(info.value)


def test_bad_head_inputs(plotter):
    grid = grid_seed()
    good = periodic_map(grid, 62.8)
    lags, values = past_lag_curve(good, grid)
    with pytest.raises(ValueError, match=r"square .* got shape \(77, 76\)"):
        plotter.head_figure(good[:, :-1], grid, lags, values)
    with pytest.raises(
        ValueError, match=r"shape \(70, 70\) but the grid has 77 columns; expected \(77, 77\)"
    ):
        plotter.head_figure(good[:70, :70], grid, lags, values)
    with pytest.raises(ValueError, match="square"):
        plotter.head_figure(good[0], grid, lags, values)
    with pytest.raises(ValueError, match="76 lags and 75 values"):
        plotter.head_figure(good, grid, lags, values[:-1])
    with pytest.raises(ValueError, match="lags is empty"):
        plotter.head_figure(good, grid, [], [])
    with pytest.raises(ValueError, match="no finite values"):
        plotter.head_figure(np.full((77, 77), np.nan), grid, lags, values)
    with pytest.raises(ValueError, match="known_periods must be positive"):
        plotter.head_figure(good, grid, lags, values, known_periods=(-5,))
    with pytest.raises(ValueError, match="grid must be an attnviz.grid.TokenGrid"):
        plotter.head_figure(good, {"cols": 77}, lags, values)


# ----------------------------------------------------------------- res-based figures


def test_save_head_file_name_and_closing(tmp_path, plotter):
    res = FakeResult(grid_seed())
    path = plotter.save_head(res, "decoder_blocks.3.attn", 0, tmp_path / "figs", figsize=SMALL)
    assert path == tmp_path / "figs" / "experiment_three_harmonics_layer_1_head_0_correlations.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path2 = plotter.save_head(
        res,
        0,
        2,
        tmp_path,
        experiment="my run/2",
        known_periods=(),
        figsize=SMALL,
        normalize=True,
        region="history",
    )
    assert path2.name == "experiment_my_run_2_layer_0_head_2_correlations.png" and path2.exists()
    assert ("lag_curve", 0, 2, "past", "history", True) in res.calls
    assert res.calls[-1] == ("periods", 0, 2, "past", "history")  # peaks of the same region
    assert plt.get_fignums() == []


def test_head_filename():
    assert (
        head_filename("three_harmonics", 3, 5)
        == "experiment_three_harmonics_layer_3_head_5_correlations.png"
    )


def test_res_layer_and_head_errors(plotter, tmp_path):
    res = FakeResult(grid_seed())
    with pytest.raises(
        ValueError,
        match="unknown layer 'blocks.9.attn'; available: blocks.0.attn, decoder_blocks.3.attn",
    ):
        plotter.save_head(res, "blocks.9.attn", 0, tmp_path)
    with pytest.raises(ValueError, match="layer index 5 is out of range for 2 layers"):
        plotter.save_head(res, 5, 0, tmp_path)
    with pytest.raises(ValueError, match=r"head must be an integer in \[0, 3\), got 3"):
        plotter.save_head(res, 0, 3, tmp_path)


def test_layer_overview(plotter):
    res = FakeResult(grid_seed())
    fig = plotter.layer_overview(res, "blocks.0.attn", known_periods=(62.8,), panel_size=1.2)
    maps = [ax for ax in fig.axes if ax.get_gid() == "map_axes"]
    assert len(maps) == 3
    for h, ax in enumerate(maps):
        np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), res.time_maps[0, h])
    lag_axes = [ax for ax in fig.axes if ax.get_gid() == "lag_axes"]
    assert len(lag_axes) == 3
    (marks,) = find_gid(lag_axes[0], "peaks")
    np.testing.assert_array_equal(marks.get_xdata(), res.periods(0, 0).peaks_samples)
    assert "blocks.0.attn" in fig.get_suptitle()
    assert "samples_per_col = 16" in fig.get_suptitle()
    assert all(not ax.texts for ax in lag_axes)  # said once in the suptitle, not in every panel
    fig2 = plotter.overview_figure(res.time_maps[1], res.grid, max_cols=2, panel_size=1.0)
    assert len([ax for ax in fig2.axes if ax.get_gid() == "map_axes"]) == 3
    with pytest.raises(ValueError, match=r"time_maps must have shape \(heads, cols, cols\)"):
        plotter.overview_figure(res.time_maps[1, 0], res.grid)


def test_lag_panel_states_the_column_resolution_once(plotter):
    grid = grid_seed()
    lags, values = past_lag_curve(periodic_map(grid, 62.8), grid)
    notes = {}
    for secondary, note in [(True, True), (False, True), (False, False)]:
        fig = Figure()
        ax = fig.add_subplot()
        plotter.draw_lag_curve(ax, lags, values, grid, secondary=secondary, resolution_note=note)
        texts = [t.get_text() for t in ax.texts if t.get_gid() != "peak_label"]
        notes[secondary, note] = (texts, [c.get_xlabel() for c in ax.child_axes])
    assert notes[True, True] == ([], ["lag (columns of 16 samples)"])  # the column axis says it
    assert notes[False, True] == (["resolution: 1 column = 16 samples"], [])
    assert notes[False, False] == ([], [])


def test_heads_of_limits_heads(plotter, tmp_path):
    res = FakeResult(grid_seed())
    res.heads_of = lambda layer: 2  # e.g. a layer with fewer heads than the padded array
    fig = plotter.layer_overview(res, 1, lag_curves=False, panel_size=1.0)
    assert len([ax for ax in fig.axes if ax.get_gid() == "map_axes"]) == 2
    with pytest.raises(ValueError, match=r"head must be an integer in \[0, 2\), got 2"):
        plotter.save_head(res, 1, 2, tmp_path)


def test_score_grid(plotter):
    res = FakeResult(grid_seed())
    fig = plotter.score_grid(res, figsize=(4, 2))
    ax = axes_with_gid(fig, "score_axes")
    (mesh,) = find_gid(ax, "score_grid")
    data = np.ma.filled(np.ma.asarray(mesh.get_array()).astype(float), np.nan).reshape(2, 3)
    expected = np.array([[0.88, 0.61, 0.0], [0.93, 0.55, np.nan]])
    np.testing.assert_allclose(data, expected)
    texts = [t.get_text() for t in ax.texts]
    assert "0.93\n62.9" in texts and "0.61\n31.6" in texts
    (best,) = find_gid(ax, "best_head")
    assert best.get_xy() == (0, 1)  # head 0 of decoder_blocks.3.attn (row 1)
    assert [t.get_text() for t in ax.get_yticklabels()] == res.layer_names
    assert "periodicity score" in axes_with_gid(fig, "colorbar").get_ylabel()
    with pytest.raises(ValueError, match="layer_names has 1 entries but scores has 2 rows"):
        plotter.score_heatmap(np.zeros((2, 3)), ["a"])
    assert "note:" not in ax.get_title()  # FakeResult has no periodicity: nothing to warn about


def test_score_grid_title_carries_the_ranking_caveat(plotter):
    from attnviz.ranking import series_periodicity

    res = FakeResult(grid_seed())
    res.series_periodicity = series_periodicity(np.full(512, 2.0), res.grid)  # a flat history
    fig = plotter.score_grid(res, figsize=(3, 2))
    title = axes_with_gid(fig, "score_axes").get_title()
    assert "note: flat history" in title
    assert max(len(line) for line in title.splitlines()[2:]) <= 30  # wrapped to the narrow figure


def test_series_panel(plotter):
    res = FakeResult(grid_seed())
    fig = plotter.series_panel(
        res, forecast_col=50, layer=0, head=0, known_periods=(62.8,), figsize=SMALL
    )
    ax = axes_with_gid(fig, "series_axes")
    (hist,) = find_gid(ax, "history")
    np.testing.assert_array_equal(hist.get_ydata(), res.series)
    (fc,) = find_gid(ax, "forecast")
    assert fc.get_xdata()[0] == 512 and len(fc.get_xdata()) == 720
    att = axes_with_gid(fig, "attention_axes")
    bars = find_gid(att, "attention_bars")
    assert len(bars) == 77
    np.testing.assert_allclose([b.get_height() for b in bars], res.time_maps[0, 0, 50])
    np.testing.assert_allclose([b.get_x() for b in bars], np.arange(77) * 16.0)
    np.testing.assert_allclose([b.get_width() for b in bars], 16.0)
    spans = find_gid(att, "query_column")
    assert (
        spans
        and spans[0].get_x() == pytest.approx(800)
        and spans[0].get_width() == pytest.approx(16)
    )
    # default: best-ranked head, middle of the forecast region
    fig = plotter.series_panel(res, figsize=SMALL)
    assert "decoder_blocks.3.attn (layer 1), head 0" in fig.get_suptitle()
    assert "query column 54" in fig.get_suptitle()
    with pytest.raises(ValueError, match=r"forecast_col must be an integer in \[0, 77\)"):
        plotter.series_panel(res, forecast_col=77)


def test_series_panel_draws_the_truth_and_scores_the_forecast(plotter):
    res = FakeResult(grid_seed())
    forecast = np.asarray(res.forecast.forecast, float)
    truth = forecast + 0.25  # a known MAE of 0.25
    fig = plotter.series_panel(res, truth=truth, figsize=SMALL)
    ax = axes_with_gid(fig, "series_axes")
    (line,) = find_gid(ax, "truth")
    np.testing.assert_array_equal(line.get_ydata(), truth)
    assert line.get_xdata()[0] == 512
    (fc,) = find_gid(ax, "forecast")
    assert fc.get_label() == "forecast (MAE 0.25)"
    assert "truth" in [t.get_text() for t in ax.get_legend().get_texts()]
    # without a truth: no truth line, plain label
    fig = plotter.series_panel(res, figsize=SMALL)
    ax = axes_with_gid(fig, "series_axes")
    assert find_gid(ax, "truth") == [] and find_gid(ax, "forecast")[0].get_label() == "forecast"
    with pytest.raises(ValueError, match="truth must have as many values as the forecast \\(720\\), got 10"):
        plotter.series_panel(res, truth=np.zeros(10))


def test_period_sweep(plotter):
    true = np.array([20.0, 40.0, 62.8, 100.0, 150.0])
    det = np.array([21.0, 58.0, 62.5, np.nan, 140.0])
    fig = plotter.period_sweep(true, det, 16.0, figsize=(3, 3))
    ax = axes_with_gid(fig, "sweep_axes")
    points = find_gid(ax, "sweep_points")
    inside = points[0].get_offsets()
    np.testing.assert_allclose(inside, [[20.0, 21.0], [62.8, 62.5], [150.0, 140.0]])
    np.testing.assert_allclose(points[1].get_offsets(), [[40.0, 58.0]])
    assert len(find_gid(ax, "sweep_missing")) == 1
    (ident,) = find_gid(ax, "identity")
    np.testing.assert_allclose(ident.get_xdata(), ident.get_ydata())
    (band,) = find_gid(ax, "resolution_band")
    verts = band.get_paths()[0].vertices
    assert verts[:, 1].max() == pytest.approx(150 + 16) and verts[:, 1].min() == pytest.approx(
        20 - 16
    )
    with pytest.raises(ValueError, match="same length"):
        plotter.period_sweep(true, det[:2], 16)
    with pytest.raises(ValueError, match="resolution_samples must be positive"):
        plotter.period_sweep(true, det, 0)


# ----------------------------------------------------------------- saving and style


def test_save_closes_and_writes_formats(tmp_path, plotter):
    grid = grid_seed()
    tmap = periodic_map(grid, 62.8)
    lags, values = past_lag_curve(tmap, grid)
    fig = plotter.head_figure(tmap, grid, lags, values, figsize=SMALL)
    out = plotter.save(fig, tmp_path / "a" / "b.svg")
    assert out.exists() and out.read_text()[:200].lstrip().startswith("<?xml")
    # pyplot-managed figures handed in are closed too
    managed = plt.figure(figsize=(1, 1))
    plotter.save(managed, tmp_path / "m.png")
    assert plt.get_fignums() == []
    with pytest.raises(ValueError, match="no file suffix"):
        plotter.save(plotter.period_sweep([1.0], [1.0], 1.0, figsize=(2, 2)), tmp_path / "noext")
    # figures render themselves in notebooks (no pyplot needed)
    small = plotter.period_sweep([1.0, 2.0], [1.0, 2.5], 1.0, figsize=(2, 2))
    assert small._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_style_does_not_leak_into_global_rcparams(plotter):
    before = dict(matplotlib.rcParams)
    grid = grid_seed()
    tmap = periodic_map(grid, 62.8)
    lags, values = past_lag_curve(tmap, grid)
    plotter.head_figure(tmap, grid, lags, values, figsize=SMALL)
    after = dict(matplotlib.rcParams)
    assert {k for k in before if before[k] != after[k]} == set()
    assert STYLE["cmap"] == "rocket"
    custom = Plotter(style={"cmap": "magma", "context": "notebook"}, dpi=40)
    assert custom.cmap.name.startswith("magma")
    assert math.isclose(Plotter(style="whitegrid").dpi, 150)
