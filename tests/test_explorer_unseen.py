"""The explorer on layers that saw only their first columns (VisionTS' encoder): the cells such a
layer never saw travel as a mask, are drawn hatched as "not seen by this layer", its lag curve
stops at its last lag, and the score grid and ranking are those of the result.
"""
from __future__ import annotations

import base64
import warnings

import numpy as np
import pytest

from attnviz.analysis import AnalysisResult
from attnviz.explorer import render_html, write_html
from attnviz.explorer.payload import build_payload
from test_explorer import Loaded, browser, periodic_result  # noqa: F401  (browser: a fixture)

SEEN = 9  # layer 0 of the hand-made result saw columns 0..8 of 24


def _partial(seen: int = SEEN) -> tuple[AnalysisResult, np.ndarray]:
    res, truth = periodic_result()
    maps = res.time_maps.copy()
    maps[0, :, seen:, :] = np.nan
    maps[0, :, :, seen:] = np.nan
    name = res.layer_names[0]
    out = AnalysisResult(
        layer_names=res.layer_names, time_maps=maps, prefix_mass=res.prefix_mass, grid=res.grid,
        forecast=res.forecast, num_heads=res.num_heads, series=res.series, layer_cols={name: seen},
    )
    return out, truth


@pytest.fixture(scope="module")
def partial():
    return _partial()


def _ranked(res):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(res.ranked_heads)


def test_unseen_cells_travel_as_a_mask_not_as_nan(partial):
    res, _ = partial
    data = build_payload(res)
    cols = res.grid.cols
    assert data["seen_cols"] == [SEEN, cols]
    assert data["unseen"][1] is None
    mask = np.frombuffer(base64.b64decode(data["unseen"][0]), dtype=np.uint8).reshape(cols, cols)
    np.testing.assert_array_equal(mask.astype(bool), np.isnan(res.time_maps[0, 0]))
    q = np.frombuffer(base64.b64decode(data["maps"]), dtype="<u2").reshape(-1, cols, cols)
    for h in range(res.heads_of(0)):
        m = res.time_map(0, h)
        lo, hi = data["map_lo"][h], data["map_hi"][h]
        assert (lo, hi) == (np.nanmin(m), np.nanmax(m))  # the scale is that of the seen cells
        np.testing.assert_allclose(lo + q[h] * (hi - lo) / 65535, np.where(mask, lo, m), atol=(hi - lo) / 65535)
    valid = np.frombuffer(base64.b64decode(data["curve_valid"]), dtype=np.uint8).reshape(sum(data["heads"]), -1)
    assert valid[: res.heads_of(0), : SEEN - 1].all() and not valid[: res.heads_of(0), SEEN - 1:].any()
    assert valid[res.heads_of(0):].all()
    # the score grid and the ranking are the result's own
    assert [(r["layer"], r["head"]) for r in data["ranking"]] == [res.head_index(s.layer, s.head) for s in _ranked(res)]


def test_non_finite_values_where_the_layer_saw_are_still_refused(partial):
    res, _ = partial
    maps = res.time_maps.copy()
    maps[0, 1, 3, 2] = np.inf
    bad = AnalysisResult(
        layer_names=res.layer_names, time_maps=maps, prefix_mass=res.prefix_mass, grid=res.grid,
        forecast=res.forecast, num_heads=res.num_heads, series=res.series, layer_cols=res.layer_cols,
    )
    with pytest.raises(ValueError, match=r"blocks\.0\.attn \(layer 0\) head 1 holds 1 NaN/infinite value\(s\) in the 9 columns"):
        render_html(bad)
    without = AnalysisResult(  # the same NaN cells without layer_cols: refused as before
        layer_names=res.layer_names, time_maps=res.time_maps, prefix_mass=res.prefix_mass, grid=res.grid,
        forecast=res.forecast, num_heads=res.num_heads, series=res.series,
    )
    with pytest.raises(ValueError, match=r"blocks\.0\.attn \(layer 0\) head 0 holds \d+ NaN/infinite"):
        render_html(without)


def test_browser_reports_unseen_cells_and_decodes_seen_ones(browser, partial, tmp_path):  # noqa: F811
    res, truth = partial
    cols, spc = res.grid.cols, res.grid.samples_per_col
    p = Loaded(browser, write_html(res, tmp_path / "partial.html", truth=truth, selected=(0, 1)))
    try:
        assert p.errors == [] and p.requests == [p.url]
        shown = p.js("({values: Array.from(api.state.heatmap.values), unseen: api.state.heatmap.unseen,"
                     " seen: api.state.heatmap.seenCols})")
        m = res.time_map(0, 1)
        values, unseen = np.array(shown["values"], dtype=float), np.array(shown["unseen"], dtype=bool)
        assert shown["seen"] == SEEN
        np.testing.assert_array_equal(unseen, np.isnan(m).ravel())
        assert np.isnan(values[unseen]).all()
        tol = (np.nanmax(m) - np.nanmin(m)) / 65535
        np.testing.assert_allclose(values[~unseen], m.ravel()[~unseen], rtol=0, atol=tol)
        # the lag curve ends at the layer's last lag: no point, no axis past it
        assert p.js("api.state.lagRange")[1] == pytest.approx((SEEN - 1) * spc + spc / 2)
        note = p.page.locator(f"#attnviz-{p.uid}-peaks").inner_text()
        assert f"saw only the first {SEEN} of {cols} columns" in note and "not seen by this layer" in note
        # hover: a seen query, then an unseen one
        pt = p.js("api.heatCell(5, 2)")
        p.page.mouse.move(pt["x"], pt["y"])
        assert p.js("api.state.lagProfile.query") == 5
        np.testing.assert_allclose(p.js("api.state.lagProfile.values"), m[5, 4::-1], atol=tol)
        pt = p.js("api.heatCell(15, 2)")
        p.page.mouse.move(pt["x"], pt["y"])
        assert p.js("api.state.query") == 15 and p.js("api.state.lagProfile") is None
        assert p.page.locator(".avx-tip").inner_text() == f"query col 15 (t {15 * spc:g}–{16 * spc:g}): not seen by this layer"
        assert all(v is None or np.isnan(v) for v in p.js("api.state.seriesAttention.values"))
        # the other layer saw everything: no mask, the full lag axis
        p.js("api.select(1, 0)")
        assert p.js("api.state.heatmap.unseen") is None
        assert p.js("api.state.lagRange")[1] == pytest.approx((cols - 1) * spc + spc / 2)
        assert p.errors == []
    finally:
        p.close()


def test_all_tiny_visionts_layers_make_a_page(browser, tmp_path):  # noqa: F811
    pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    from attnviz.analysis import MultiHeadAttentionRollout
    from attnviz.forecasters.visionts import VisionTSForecaster, tiny_visionts

    fc = VisionTSForecaster(tiny_visionts(0), periodicity=24, allow_random_weights=True)
    n = np.arange(600)
    res = MultiHeadAttentionRollout(fc).analyze(2 + np.sin(2 * np.pi * n / 24) + 0.3 * np.sin(2 * np.pi * n / 90), 72)
    assert res.layer_cols  # the encoder layers saw only the context columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = res.to_html(tmp_path / "visionts.html")
    p = Loaded(browser, path)
    try:
        assert p.errors == [] and p.requests == [p.url]
        for li, name in enumerate(res.layer_names):
            p.js(f"api.select({li}, 0)")
            seen = res.layer_cols.get(name, res.grid.cols)
            assert p.js("api.state.heatmap.seenCols") == seen
            unseen = p.js("api.state.heatmap.unseen")
            assert (unseen is None) == (seen == res.grid.cols)
        assert p.errors == []
    finally:
        p.close()
