"""Plotter and drawers on plain arrays: data round-trips through the artists, markers sit on
peaks, period lines only where given, errors, files, no leaks.

Shared helpers (grids, synthetic maps, gid lookups) live here and are imported by the other
``test_plotting_*`` files.  Figures are kept tiny (low dpi, small figsize).
"""

from __future__ import annotations

import math
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from scipy.signal import find_peaks

from attnviz.grid import TokenGrid
from attnviz.plotting import STYLE, Plotter, draw_lag_curve, draw_lag_curves, draw_time_map, outline_segments

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


def seed_head(period: float = 62.8):
    """(grid, time map, lags, values) of a periodic head on the seed grid."""
    grid = grid_seed()
    tmap = periodic_map(grid, period)
    return (grid, tmap, *past_lag_curve(tmap, grid))


def curve_peaks(lags: np.ndarray, values: np.ndarray) -> np.ndarray:
    idx, _ = find_peaks(values, prominence=0.2 * np.ptp(values))
    return lags[idx]


def find_gid(container, gid):
    return [a for a in container.findobj() if a.get_gid() == gid]


def legend_texts(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


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


# ----------------------------------------------------------------- per-head figure


def test_head_figure_heatmap_holds_the_map(plotter):
    grid, tmap, lags, values = seed_head()
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
    grid, tmap, lags, values = seed_head()
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
    grid, tmap, lags, values = seed_head()
    peaks = curve_peaks(lags, values)
    fig = plotter.head_figure(tmap, grid, lags, values, peaks_samples=peaks, reference_periods=[62.8])
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
    grid, tmap, lags, values = seed_head()
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


def test_reference_periods_and_multiples_drawn(plotter):
    grid, tmap, lags, values = seed_head()
    fig = plotter.head_figure(
        tmap, grid, lags, values, reference_periods=(62.8, 500.0), detected_period=64.0, figsize=SMALL
    )
    ax = axes_with_gid(fig, "lag_axes")
    xs = sorted(round(ln.get_xdata()[0], 6) for ln in find_gid(ax, "reference_period"))
    expected = sorted(
        [round(62.8 * k, 6) for k in range(1, 20) if 62.8 * k <= lags.max()] + [500.0, 1000.0]
    )
    assert xs == expected
    for line in find_gid(ax, "reference_period"):
        assert line.get_linestyle() == "--"
    # a ±half-column band around each reference line
    assert len(find_gid(ax, "reference_period_band")) == len(expected)
    assert [c.get_xlabel() for c in ax.child_axes] == ["lag (columns of 16 samples)"]
    assert "reference periods 62.8, 500 (and multiples)" in legend_texts(ax)
    # given references replace the detected fundamental's lines (the title states it)
    assert find_gid(ax, "detected_period") == []


def test_without_references_the_detected_fundamental_is_marked(plotter):
    grid, tmap, lags, values = seed_head(48.5)
    fig = plotter.head_figure(tmap, grid, lags, values, detected_period=48.5, figsize=SMALL)
    ax = axes_with_gid(fig, "lag_axes")
    lines = find_gid(ax, "detected_period")
    xs = sorted(ln.get_xdata()[0] for ln in lines)
    np.testing.assert_allclose(xs, 48.5 * np.arange(1, int(lags.max() // 48.5) + 1))
    assert "detected fundamental 48.5 (and multiples)" in legend_texts(ax)
    assert all(ln.get_linestyle() == ":" for ln in lines)  # not the references' dashes
    assert find_gid(fig, "reference_period") == [] and find_gid(fig, "reference_period_band") == []
    assert not any("reference" in t for t in legend_texts(ax))


@pytest.mark.parametrize("detected", [None, float("nan")])
def test_no_reference_and_no_fundamental_draws_no_period_line(plotter, detected):
    grid, tmap, lags, values = seed_head()
    fig = plotter.head_figure(tmap, grid, lags, values, detected_period=detected, figsize=SMALL)
    for gid in ("reference_period", "reference_period_band", "detected_period"):
        assert find_gid(fig, gid) == []
    assert legend_texts(axes_with_gid(fig, "lag_axes")) == ["lag curve"]


def test_drawers_take_an_ax_and_return_it():
    """Axes-level drawers compose into any figure the caller builds."""
    grid, tmap, lags, values = seed_head()
    fig = Figure(figsize=(6, 3))
    ax_map, ax_lag, ax_all = fig.subplots(1, 3)
    image = draw_time_map(ax_map, tmap, grid, legend=False)
    np.testing.assert_array_equal(np.asarray(image.get_array()), tmap)
    assert draw_lag_curve(ax_lag, lags, values, grid, reference_periods=[62.8], legend=False) is ax_lag
    assert len(find_gid(ax_lag, "reference_period")) == int(lags.max() // 62.8)
    curves = [("a", lags, values), ("b", lags, 2 * values)]
    assert draw_lag_curves(ax_all, curves) is ax_all
    assert [ln.get_label() for ln in find_gid(ax_all, "lag_curve")] == ["a", "b"]
    assert find_gid(ax_all, "reference_period") == []


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
    grid, tmap, lags, values = seed_head()
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
    grid, good, lags, values = seed_head()
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
    with pytest.raises(ValueError, match="reference_periods must be positive"):
        plotter.head_figure(good, grid, lags, values, reference_periods=(-5,))
    with pytest.raises(ValueError, match="detected_period must be a positive finite number"):
        plotter.head_figure(good, grid, lags, values, detected_period=-3.0)
    with pytest.raises(ValueError, match="grid must be an attnviz.grid.TokenGrid"):
        plotter.head_figure(good, {"cols": 77}, lags, values)


def test_lag_panel_states_the_column_resolution_once(plotter):
    grid, _, lags, values = seed_head()
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


def test_lag_curves_figure_draws_references_only_when_given(plotter):
    grid, _, lags, values = seed_head()
    curves = [("SNR 10", lags, values), ("SNR 1", lags, values / 2)]
    fig = plotter.lag_curves(curves, reference_periods=(62.8,), figsize=(3, 2))
    ax = fig.axes[0]
    xs = [ln.get_xdata()[0] for ln in find_gid(ax, "reference_period")]
    np.testing.assert_allclose(sorted(xs), 62.8 * np.arange(1, int(lags.max() // 62.8) + 1))
    assert "reference period 62.8 (and multiples)" in legend_texts(ax)
    fig = plotter.lag_curves(curves, figsize=(3, 2))
    assert find_gid(fig, "reference_period") == [] and legend_texts(fig.axes[0]) == ["SNR 10", "SNR 1"]
    with pytest.raises(ValueError, match="at least one"):
        plotter.lag_curves([])


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
    grid, tmap, lags, values = seed_head()
    fig = plotter.head_figure(tmap, grid, lags, values, figsize=SMALL)
    with pytest.raises(ValueError, match="folder .*missing.* does not exist"):
        plotter.save(fig, tmp_path / "missing" / "b.svg")  # no folder is created silently
    assert not (tmp_path / "missing").exists()
    fig = plotter.head_figure(tmap, grid, lags, values, figsize=SMALL)
    out = plotter.save(fig, tmp_path / "b.svg")
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
    grid, tmap, lags, values = seed_head()
    plotter.head_figure(tmap, grid, lags, values, figsize=SMALL)
    after = dict(matplotlib.rcParams)
    assert {k for k in before if before[k] != after[k]} == set()
    assert STYLE["cmap"] == "rocket"
    custom = Plotter(style={"cmap": "magma", "context": "notebook"}, dpi=40)
    assert custom.cmap.name.startswith("magma")
    assert math.isclose(Plotter(style="whitegrid").dpi, 150)
