"""The time axis: token column ``c`` starts at sample ``grid.col_start_sample(c)`` everywhere.

VisionTS pads ``pad_left`` samples before the history and counts its columns from the start of
the padded context, so its grids carry ``sample_offset = -pad_left``.  Known answers at P = 24,
history 76 + horizon 24 (20 samples padded; 4 visible columns of exactly one period, 24
samples): the history/forecast boundary is at sample 76, column c starts at 24c - 20, and a
planted head that attends one column (= one period) back puts its attention on the 24 samples
just before the query column.  Before the offset existed, all of these were drawn 20 samples late.
"""
from __future__ import annotations

import json
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from attnviz.grid import TokenGrid, check_reference_periods  # noqa: E402
from attnviz.plotting import Plotter  # noqa: E402
from attnviz.plotting.references import MAX_MULTIPLES, draw_query_period_lines  # noqa: E402
from attnviz.plotting.theme import default_theme  # noqa: E402

P, L, H, PAD = 24, 76, 24, 20
LAYER = "vision_model.decoder_blocks.0.attn"


def padded_grid(**changes) -> TokenGrid:
    fields = dict(rows=2, cols=14, prefix_tokens=1, history_cols=4, samples_per_col=24.0, history_length=L,
                  horizon=H, history_boundary=4.0, sample_offset=-PAD)
    fields.update(changes)
    return TokenGrid(**fields)


# ----------------------------------------------------------------------------- TokenGrid
def test_grid_converts_columns_to_samples_through_its_offset():
    g = padded_grid()
    assert g.sample_offset == -20.0 and isinstance(g.sample_offset, float)
    np.testing.assert_array_equal(g.col_start_sample([0, 1, 4, 14]), [-20, 4, 76, 316])
    np.testing.assert_array_equal(g.col_center_sample([0, 3]), [-8, 64])
    assert g.boundary_sample == 76.0
    np.testing.assert_array_equal(g.sample_to_col([-20, 76, 88]), [0, 4, 4.5])
    x = np.linspace(-3, 17, 41)
    np.testing.assert_allclose(g.sample_to_col(g.col_start_sample(x)), x)
    assert float(g.lag_samples(3)) == 72.0  # lags are differences of columns: no offset
    d = g.to_dict()
    assert d["sample_offset"] == -20.0
    json.dumps(d)


def test_grid_without_offset_is_unchanged():
    """ViTime's grids: offset 0, columns at exactly c * samples_per_col, as before the offset."""
    g = TokenGrid.for_call(rows=4, cols=77, prefix_tokens=1, history_length=512, horizon=720, history_boundary=33.0)
    assert g.sample_offset == 0.0 and g.to_dict()["sample_offset"] == 0.0
    cols = np.arange(78) + 0.25
    assert np.array_equal(g.col_start_sample(cols), cols * g.samples_per_col)
    assert g.boundary_sample == 33.0 * g.samples_per_col


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "-20", None])
def test_grid_refuses_a_bad_offset(bad):
    with pytest.raises(ValueError, match="sample_offset must be a finite number"):
        padded_grid(sample_offset=bad)


# ----------------------------------------------------------------------------- VisionTS geometry
@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    from attnviz.forecasters.visionts import tiny_visionts

    return tiny_visionts(seed=0)


def _forecaster(model):
    from attnviz.forecasters.visionts import VisionTSForecaster

    return VisionTSForecaster(model, P, allow_random_weights=True)


@pytest.mark.parametrize(
    "length, horizon, col, centre",
    # interior visible columns (their resize reads only real samples on both sides)
    [(76, 24, 2, 40.0), (100, 36, 2, 55.0), (500, 96, 1, 185.0), (500, 96, 2, 311.0)],
)
def test_visionts_columns_sit_where_its_resize_weights_put_them(tiny, length, horizon, col, centre):
    """Known answer from visionts' own resize weights: the coverage-weighted centre of a token
    column (over every row; + 0.5, the middle of a sample) is ``col_center_sample`` -- not
    ``(col + 0.5) * samples_per_col``, which is ``pad_left`` samples late."""
    geo = _forecaster(tiny).geometry(length, horizon)
    n = geo.grid_size
    weights = geo.sample_weights.reshape(n, n, -1).sum(axis=0)[col]
    measured = weights @ np.arange(weights.size) / weights.sum() + 0.5
    assert measured == pytest.approx(centre, abs=1e-6)
    for grid in (geo.decoder_grid(), geo.encoder_grid()):
        assert grid.sample_offset == -geo.pad_left
        assert float(grid.col_center_sample(col)) == pytest.approx(centre, abs=1e-9)
        assert grid.boundary_sample == pytest.approx(length, abs=1e-9)
    if geo.pad_left:
        assert (col + 0.5) * geo.samples_per_col == pytest.approx(centre + geo.pad_left)


def test_visionts_grid_records_the_offset(tiny):
    fc = _forecaster(tiny)
    assert fc.grid(L, H).to_dict()["sample_offset"] == -PAD
    assert fc.grid(480, 96).sample_offset == 0.0  # a whole number of periods: no padding


# ----------------------------------------------------------------------------- planted head, figures
@pytest.fixture(scope="module")
def planted(tiny):
    """A tiny VisionTS whose decoder block 0 head 1 attends exactly one column back."""
    import copy

    from attnviz.analysis import MultiHeadAttentionRollout
    from attnviz.planted import planted_visionts

    fc = _forecaster(planted_visionts(copy.deepcopy(tiny), head=1, shift=1))
    x = 3 + np.sin(np.arange(L) * 2 * np.pi / P)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few columns: the ranking says so
        res = MultiHeadAttentionRollout(fc, layers="vision_model.decoder_blocks.*").analyze(x, H)
        res.ranked_heads
    g = res.grid
    assert (g.samples_per_col, g.sample_offset, g.history_cols) == (24.0, -20.0, 4)
    return res


def _by_gid(artists, gid):
    return [a for a in artists if a.get_gid() == gid]


def test_series_panel_puts_boundary_columns_and_planted_attention_at_their_samples(planted):
    q = 4  # the forecast column: samples [76, 100)
    t = planted.time_map(LAYER, 1)
    assert t[q, q - 1] > 0.99  # the planted head: one column back
    fig = Plotter().series_panel(planted, forecast_col=q, layer=LAYER, head=1, reference_periods=(24,))
    try:
        series_ax = _by_gid(fig.axes, "series_axes")[0]
        bars_ax = _by_gid(fig.axes, "attention_axes")[0]
        for ax in (series_ax, bars_ax):
            (boundary,) = _by_gid(ax.get_lines(), "boundary")
            np.testing.assert_allclose(boundary.get_xdata(), [76, 76])  # was 96 (= 4 columns x 24)
            (band,) = _by_gid(ax.patches, "query_column")
            assert (band.get_x(), band.get_x() + band.get_width()) == pytest.approx((76, 100))
        (history,) = _by_gid(series_ax.get_lines(), "history")
        np.testing.assert_array_equal(history.get_xdata(), np.arange(L))
        assert series_ax.get_xlim()[0] == pytest.approx(-20)  # column 0 starts in the padding
        bars = _by_gid(bars_ax.patches, "attention_bars")
        np.testing.assert_allclose([b.get_x() for b in bars], -20 + 24 * np.arange(14))
        assert all(b.get_width() == pytest.approx(24) for b in bars)
        top = bars[int(np.argmax([b.get_height() for b in bars]))]
        assert (top.get_x(), top.get_x() + top.get_width()) == pytest.approx((52, 76))  # one period back
        # reference lines at query centre (88) - k * 24, down to the first column's start (-20)
        lines = sorted(float(line.get_xdata()[0]) for line in _by_gid(bars_ax.get_lines(), "reference_period"))
        assert lines == pytest.approx([-8, 16, 40, 64])
        assert top.get_x() < 64 < top.get_x() + top.get_width()  # the first lies on the planted key column
    finally:
        plt.close(fig)


def test_time_map_samples_axes_follow_the_offset(planted):
    fig = Plotter().head_panel(planted, LAYER, 1)
    try:
        fig.canvas.draw()
        ax = _by_gid(fig.axes, "map_axes")[0]
        sec = _by_gid(ax.child_axes, "samples_axis")
        assert len(sec) == 2
        top = sec[0] if sec[0].get_xlabel() else sec[1]
        assert top.get_xlim() == pytest.approx((-20, 316))  # columns 0 .. 14
    finally:
        plt.close(fig)


def test_summary_grid_records_the_offset(planted):
    assert planted.to_dict()["grid"]["sample_offset"] == -20.0


# ----------------------------------------------------------------------------- explorer
def test_explorer_payload_and_script_use_the_offset(planted):
    from importlib import resources

    from attnviz.explorer import render_html
    from attnviz.explorer.payload import build_payload

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = build_payload(planted, reference_periods=[24])
        page = render_html(planted)
    assert data["grid"]["sample_offset"] == -20.0
    assert data["reference_periods"] == [24.0]
    assert "column 0 starts at sample -20 (padding)" in page
    script = resources.files("attnviz.explorer").joinpath("explorer.js").read_text()
    assert "t0 = D.grid.sample_offset" in script


def test_explorer_page_maps_times_to_columns_through_the_offset(planted, tmp_path):
    """In a browser: a time t on the series panel is query column floor((t + 20) / 24)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright")
    from attnviz.explorer import write_html
    from attnviz.explorer.screenshot import CHROMIUM_ARGS, chromium_path

    path = chromium_path()
    if path is None:
        pytest.skip("browser tests: no Chromium found")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page_path = write_html(planted, tmp_path / "padded.html")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1340, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.resolve().as_uri())
            page.wait_for_function("window.attnvizExplorer && Object.keys(window.attnvizExplorer).length > 0")
            api = "Object.values(window.attnvizExplorer)[0]"
            for t, q in [(-10.0, 0), (3.5, 0), (4.5, 1), (75.5, 3), (76.5, 4), (99.5, 4)]:
                pt = page.evaluate(f"{api}.seriesPoint({t})")
                page.mouse.move(pt["x"], pt["y"])
                assert page.evaluate(f"{api}.state.query") == q, t
            assert errors == []
        finally:
            browser.close()


# ----------------------------------------------------------------------------- reference periods
def test_one_check_of_reference_periods():
    import attnviz.explorer.payload as payload
    import attnviz.plotting.checks as checks
    import attnviz.report as report

    assert report.check_reference_periods is check_reference_periods
    assert not hasattr(payload, "_reference_periods") and not hasattr(checks, "check_periods")
    g = padded_grid()
    assert check_reference_periods(None) == () and check_reference_periods(24, g) == (24.0,)
    assert check_reference_periods(np.array([24.0, 48.5]), g) == (24.0, 48.5)
    for bad in (0, -3, float("nan"), True, "24", [[24]]):
        with pytest.raises(ValueError, match="reference_periods"):
            check_reference_periods(bad)


@pytest.mark.parametrize("period", [0.5, 0.01, 23.9])
def test_reference_periods_shorter_than_a_column_are_refused_everywhere(planted, period):
    from attnviz.explorer.payload import build_payload

    plotter = Plotter()
    calls = [
        lambda: build_payload(planted, reference_periods=[period]),
        lambda: plotter.series_panel(planted, layer=LAYER, head=1, reference_periods=(period,)),
        lambda: plotter.head_panel(planted, LAYER, 1, reference_periods=(period,)),
        lambda: plotter.layer_overview(planted, LAYER, reference_periods=(period,)),
    ]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and repr(period) in message and "one token column (24 samples)" in message
    plt.close("all")


def test_query_period_lines_are_capped():
    fig, ax = plt.subplots()
    try:
        lines = draw_query_period_lines(ax, 1e6, np.array([0.5, 1e5]), default_theme())
        assert len(lines) == MAX_MULTIPLES + 10  # 0.5: capped; 1e5: the 10 multiples down to 0
        assert float(lines[0].get_xdata()[0]) == 1e6 - 0.5  # the nearest first
    finally:
        plt.close(fig)


def test_a_layer_grid_in_another_time_frame_is_refused():
    """Layer grids must be the first columns of the call's grid: same column width and offset."""
    from attnviz.analysis import _layer_cols

    call = padded_grid()
    assert _layer_cols(call, {"enc": padded_grid(cols=4)}, ["enc"]) == {"enc": 4}
    with pytest.raises(ValueError, match=r"from sample -4, which is not the first columns .* from sample -20"):
        _layer_cols(call, {"enc": padded_grid(cols=4, sample_offset=-4.0)}, ["enc"])
