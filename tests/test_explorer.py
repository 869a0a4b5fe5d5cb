"""The offline HTML explorer: its data, its refusals, and the page itself in a real Chromium.

Browser tests drive Debian's Chromium (``/usr/bin/chromium``, or ``ATTNVIZ_CHROMIUM``) through
the ``playwright`` package; no browser is ever downloaded.  Where either is missing they skip
with the reason (``.ci/run`` installs Chromium and passes on why when it could not).
"""
from __future__ import annotations

import base64
import os
import re
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from attnviz.analysis import AnalysisResult
from attnviz.explorer import render_html, write_html
from attnviz.explorer.payload import build_payload
from attnviz.explorer.screenshot import CHROMIUM_ARGS, chromium_path
from attnviz.grid import TokenGrid

MAX_BYTES = 5 * 1024 * 1024


# --------------------------------------------------------------------------- synthetic results
@dataclass
class _Forecast:
    forecast: np.ndarray


def periodic_result(
    heads: tuple[int, ...] = (3, 2),
    cols: int = 24,
    samples_per_col: int = 8,
    history_cols: int = 10,
    periods: tuple[int, ...] = (4, 3, 5),
    seed: int = 0,
) -> tuple[AnalysisResult, np.ndarray]:
    """An AnalysisResult with hand-made maps: head h of layer l attends to keys a whole number
    of periods (in columns) back.  Layers with fewer heads are NaN-padded, as analyze() does.
    Returns the result and the series' true continuation."""
    rng = np.random.default_rng(seed)
    L, H = history_cols * samples_per_col, (cols - history_cols) * samples_per_col
    grid = TokenGrid.for_call(rows=2, cols=cols, prefix_tokens=1, history_length=L, horizon=H)
    maps = np.full((len(heads), max(heads), cols, cols), np.nan)
    q, k = np.meshgrid(np.arange(cols), np.arange(cols), indexing="ij")
    lag = q - k
    for li, n in enumerate(heads):
        for h in range(n):
            p = periods[(li + h) % len(periods)]
            w = 0.05 + np.exp(-0.5 * ((lag % p) / 0.35) ** 2) * (lag > 0) + 0.02 * rng.random((cols, cols))
            maps[li, h] = 0.9 * w / w.sum(axis=1, keepdims=True)
    t = np.arange(L + H)
    x = np.sin(2 * np.pi * t / 32.0) + 0.3 * np.sin(2 * np.pi * t / 11.0)
    names = [f"blocks.{i}.attn" for i in range(len(heads))]
    res = AnalysisResult(
        layer_names=names,
        time_maps=maps,
        prefix_mass=np.zeros(maps.shape[:3]),
        grid=grid,
        forecast=_Forecast(x[L:] + 0.1),
        num_heads=dict(zip(names, heads)),
        series=x[:L],
    )
    return res, x[L:]


@pytest.fixture(scope="module")
def small():
    return periodic_result()


def _with(res: AnalysisResult, **changes) -> AnalysisResult:
    fields = {f: getattr(res, f) for f in ("layer_names", "time_maps", "prefix_mass", "grid", "forecast", "num_heads", "series")}
    fields.update(changes)
    return AnalysisResult(**fields)


# --------------------------------------------------------------------------- no browser needed
def test_payload_maps_round_trip_within_quantisation(small):
    res, _ = small
    data = build_payload(res)
    q = np.frombuffer(base64.b64decode(data["maps"]), dtype="<u2")
    cols = res.grid.cols
    i = 0
    for li in range(len(res.layer_names)):
        for h in range(res.heads_of(li)):
            lo, hi = data["map_lo"][i], data["map_hi"][i]
            got = lo + q[i * cols * cols:(i + 1) * cols * cols].reshape(cols, cols) * (hi - lo) / 65535
            np.testing.assert_allclose(got, res.time_map(li, h), rtol=0, atol=(hi - lo) / 65535)
            assert data["periods"][i]["labels"] == [f"{p:.1f}" for p in res.periods(li, h).peaks_samples]
            i += 1
    assert i == sum(res.heads_of(li) for li in range(2)) == len(q) // (cols * cols)  # no padded head sent


def test_page_is_self_contained(small):
    res, truth = small
    page = render_html(res, truth=truth)
    assert "http:" not in page and "https:" not in page and "//cdn" not in page
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page, re.I)
    assert not re.search(r"\ssrc\s*=", page, re.I)
    assert "@import" not in page and "url(" not in page
    data = re.search(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S).group(1)
    assert "[[" not in data  # arrays travel as base64 typed arrays, not nested JSON lists


def test_each_render_gets_its_own_widget_id(small):
    res, _ = small
    ids = {re.search(r'id="attnviz-([0-9a-f]+)"', render_html(res)).group(1) for _ in range(3)}
    assert len(ids) == 3


def test_reference_periods_only_when_given(small):
    res, _ = small
    assert build_payload(res)["reference_periods"] == []
    assert build_payload(res, reference_periods=[32])["reference_periods"] == [32.0]
    assert build_payload(res, reference_periods=32.0)["reference_periods"] == [32.0]
    for bad in ([0], [-3], [float("nan")], ["32"], [True]):
        with pytest.raises(ValueError, match="reference_periods"):
            build_payload(res, reference_periods=bad)


def test_nan_padding_of_narrow_layers_is_not_refused(small):
    res, _ = small
    assert np.isnan(res.time_maps[1, 2]).all()  # layer 1 has 2 heads: slot 2 is padding
    build_payload(res)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_map_values_are_refused(small, bad):
    res, _ = small
    maps = res.time_maps.copy()
    maps[1, 1, 5, 3] = bad
    with pytest.raises(ValueError, match=r"blocks\.1\.attn \(layer 1\) head 1 holds 1 NaN/infinite"):
        render_html(_with(res, time_maps=maps))


def test_non_finite_series_forecast_or_truth_is_refused(small, tmp_path):
    res, truth = small
    series = res.series.copy()
    series[7] = np.nan
    with pytest.raises(ValueError, match=r"series \(history\) holds 1 NaN/infinite value\(s\) \(first at index 7"):
        render_html(_with(res, series=series))
    fc = res.forecast.forecast.copy()
    fc[3] = np.inf
    with pytest.raises(ValueError, match="forecast holds 1 NaN/infinite"):
        render_html(_with(res, forecast=_Forecast(fc)))
    bad = truth.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="truth holds 1 NaN/infinite"):
        write_html(res, tmp_path / "x.html", truth=bad)
    with pytest.raises(ValueError, match=r"truth must have as many values as the forecast \(112\), got 5"):
        render_html(res, truth=truth[:5])
    assert not (tmp_path / "x.html").exists()


def test_result_without_maps_is_a_clear_error(small):
    res, _ = small
    empty = AnalysisResult(
        layer_names=[],
        time_maps=np.zeros((0, 0, res.grid.cols, res.grid.cols)),
        prefix_mass=np.zeros((0, 0, res.grid.cols)),
        grid=res.grid,
        forecast=res.forecast,
        num_heads={},
        series=res.series,
    )
    with pytest.raises(ValueError, match=r"holds no attention maps \(0 layer\(s\)"):
        render_html(empty)


def test_bad_selection_names_the_range(small):
    res, _ = small
    with pytest.raises(ValueError, match=r"head 2 is out of range for layer 'blocks.1.attn': it has 2 heads"):
        render_html(res, selected=(1, 2))
    with pytest.raises(ValueError, match="selected must be a"):
        render_html(res, selected=3)


def test_unwritable_path_is_a_one_line_error_naming_it(small, tmp_path):
    res, _ = small
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        target = locked / "page.html"
        if os.access(locked, os.W_OK):  # root ignores the mode bits: use a path under a file
            target = tmp_path / "afile" / "page.html"
            (tmp_path / "afile").write_text("")
        with pytest.raises(ValueError) as info:
            res.to_html(target)
        message = str(info.value)
        assert "\n" not in message and str(target) in message and message.startswith("cannot write the explorer to")
        assert list(locked.iterdir()) == []  # no temporary file left behind
    finally:
        locked.chmod(stat.S_IRWXU)
    with pytest.raises(ValueError, match="it is a directory"):
        write_html(res, tmp_path)


def test_write_html_returns_the_path_and_repr_html_is_the_page(small, tmp_path):
    res, _ = small
    out = res.to_html(tmp_path / "sub" / "page.html", title="a <b>title</b>")
    assert out == tmp_path / "sub" / "page.html" and out.read_text().startswith("<!DOCTYPE html>")
    assert "a &lt;b&gt;title&lt;/b&gt;" in out.read_text()
    assert 'class="avx"' in res._repr_html_()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["page.html"]


def test_bundled_model_shaped_result_fits_in_5_mb():
    """18 layers x 8 heads, 77 columns at 512 + 720 samples; random maps (nothing compresses)."""
    rng = np.random.default_rng(1)
    cols, layers, heads = 77, 18, 8
    grid = TokenGrid.for_call(rows=32, cols=cols, prefix_tokens=1, history_length=512, horizon=720)
    maps = rng.random((layers, heads, cols, cols))
    maps /= maps.sum(axis=-1, keepdims=True)
    names = [f"blocks.{i}.attn" for i in range(layers)]
    t = np.arange(512 + 720)
    res = AnalysisResult(
        layer_names=names,
        time_maps=maps,
        prefix_mass=np.zeros(maps.shape[:3]),
        grid=grid,
        forecast=_Forecast(np.sin(t[512:] / 10)),
        num_heads={n: heads for n in names},
        series=np.sin(t[:512] / 10),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        size = len(render_html(res, truth=np.sin(t[512:] / 10)).encode("utf-8"))
    assert size <= MAX_BYTES, f"{size / 1e6:.2f} MB"


# --------------------------------------------------------------------------- the real browser
@pytest.fixture(scope="module")
def browser():
    reason = os.environ.get("ATTNVIZ_BROWSER_SKIP")  # set by .ci/run when apt-get failed
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests: the playwright package is not installed (pip install -e '.[test]')")
    path = chromium_path()
    if path is None:
        pytest.skip(
            "browser tests: no Chromium found (apt-get install chromium; or set ATTNVIZ_CHROMIUM)"
            + (f": {reason}" if reason else "")
        )
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Loaded:
    """A page opened from a file with every request recorded (and any non-file one refused)."""

    def __init__(self, browser, path: Path, viewport=(1340, 900)):
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_function("window.attnvizExplorer && Object.keys(window.attnvizExplorer).length > 0")
        self.uids = self.page.evaluate("Object.keys(window.attnvizExplorer)")
        self.uid = self.uids[0]

    def _route(self, route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            route.abort()

    def js(self, expr: str, uid: str | None = None):
        return self.page.evaluate(f"(api => {expr})(window.attnvizExplorer[{(uid or self.uid)!r}])")

    def close(self):
        self.context.close()


@pytest.fixture(scope="module")
def small_page(browser, small, tmp_path_factory):
    res, truth = small
    path = write_html(res, tmp_path_factory.mktemp("explorer") / "small.html", truth=truth)
    loaded = Loaded(browser, path)
    yield loaded
    loaded.close()


def test_page_loads_without_errors_or_network(small_page):
    p = small_page
    assert p.errors == []
    assert p.requests == [p.url], p.requests  # the file itself and nothing else
    assert p.page.locator(".avx-fallback").count() == 0
    assert p.page.locator(".avx-body").is_visible()
    for part in ("grid", "heatmap", "lag", "series"):
        box = p.page.locator(f"#attnviz-{p.uid}-{part}").bounding_box()
        assert box["width"] > 100 and box["height"] > 100, part


def test_request_recorder_sees_a_network_request(browser, tmp_path):
    """The check above is not vacuous: a page that does load from the network is caught."""
    path = tmp_path / "net.html"
    path.write_text(
        '<!DOCTYPE html><html><body><img src="http://attnviz.invalid/x.png">'
        "<script>window.attnvizExplorer = {x: 1};</script></body></html>"
    )
    loaded = Loaded(browser, path)
    try:
        assert any(u.startswith("http://attnviz.invalid") for u in loaded.requests)
    finally:
        loaded.close()


def _expected_map(res, layer, head):
    m = res.time_map(layer, head)
    return m, (m.max() - m.min()) / 65535


def test_clicking_a_score_cell_shows_that_heads_map(small_page, small):
    res, _ = small
    p = small_page
    top = res.ranked_heads[0]
    assert p.js("[api.state.layer, api.state.head]") == list(res.head_index(top.layer, top.head))
    for layer, head in [(1, 1), (0, 2), (0, 0)]:
        before = p.page.evaluate(f"document.getElementById('attnviz-{p.uid}-heatmap').toDataURL()")
        cell = p.js(f"api.gridCell({layer}, {head})")
        p.page.mouse.click(cell["x"], cell["y"])
        shown = p.js("({layer: api.state.heatmap.layer, head: api.state.heatmap.head, values: Array.from(api.state.heatmap.values)})")
        assert (shown["layer"], shown["head"]) == (layer, head)
        values = np.array(shown["values"])
        expected, tol = _expected_map(res, layer, head)
        np.testing.assert_allclose(values.reshape(expected.shape), expected, rtol=0, atol=tol)
        after = p.page.evaluate(f"document.getElementById('attnviz-{p.uid}-heatmap').toDataURL()")
        assert after != before
        assert p.page.locator(f"#attnviz-{p.uid}-layer").input_value() == str(layer)
        assert p.page.locator(f"#attnviz-{p.uid}-head").input_value() == str(head)
        assert p.page.locator("tr.avx-sel").get_attribute("data-l") == str(layer)
    assert p.errors == []


def test_selectors_and_table_select_heads(small_page, small):
    res, _ = small
    p = small_page
    p.page.locator(f"#attnviz-{p.uid}-layer").select_option("1")
    p.page.locator(f"#attnviz-{p.uid}-head").select_option("1")
    assert p.js("[api.state.heatmap.layer, api.state.heatmap.head]") == [1, 1]
    assert p.page.locator(f"#attnviz-{p.uid}-head option").count() == res.heads_of(1)  # no padded head offered
    p.page.locator("tr[data-l='0'][data-h='1']").click()
    assert p.js("[api.state.heatmap.layer, api.state.heatmap.head]") == [0, 1]


def test_peak_labels_are_the_periods_of_the_head(small_page, small):
    res, _ = small
    p = small_page
    for layer in range(len(res.layer_names)):
        for head in range(res.heads_of(layer)):
            p.js(f"api.select({layer}, {head})")
            est = res.periods(layer, head)
            expected = [f"{x:.1f}" for x in est.peaks_samples]
            assert expected, "the synthetic heads all have peaks"
            assert p.js("api.state.peakLabels") == expected
            assert p.js("api.state.fundamentalLabel") == f"{est.fundamental_samples:.1f}"
            note = p.page.locator(f"#attnviz-{p.uid}-peaks").inner_text()
            assert "peaks (samples): " + ", ".join(expected) in note
    assert p.js("api.state.referencePeriods") == []  # none given, none drawn


def test_hover_links_map_row_series_and_lag_profile(small_page, small):
    res, _ = small
    p = small_page
    p.js("api.select(0, 0)")
    m, tol = _expected_map(res, 0, 0)
    spc = res.grid.samples_per_col
    for q, k in [(15, 3), (20, 11)]:
        pt = p.js(f"api.heatCell({q}, {k})")
        p.page.mouse.move(pt["x"], pt["y"])
        assert p.js("api.state.query") == q
        row = p.js("api.state.seriesAttention")
        assert row["query"] == q
        np.testing.assert_allclose(row["values"], m[q], atol=tol)
        prof = p.js("api.state.lagProfile")
        assert prof["query"] == q
        np.testing.assert_allclose(prof["lags"], np.arange(1, q + 1) * spc)
        np.testing.assert_allclose(prof["values"], m[q, q - 1::-1], atol=tol)
        assert p.page.locator(".avx-tip").inner_text().startswith(f"query col {q} ")
    t = 13.5 * spc  # a time on the series -> its column
    pt = p.js(f"api.seriesPoint({t})")
    p.page.mouse.move(pt["x"], pt["y"])
    assert p.js("api.state.query") == 13
    np.testing.assert_allclose(p.js("api.state.seriesAttention.values"), m[13], atol=tol)


def test_png_download_of_the_current_view(small_page):
    p = small_page
    with p.page.expect_download() as info:
        p.page.locator(f"#attnviz-{p.uid}-png").click()
    download = info.value
    assert download.suggested_filename.endswith(".png")
    data = Path(download.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    grid_w = p.page.locator(f"#attnviz-{p.uid}-grid").bounding_box()["width"]
    assert w > 2 * grid_w and h > 400
    assert p.errors == []


def test_reference_periods_and_two_widgets_in_one_page(browser, small, tmp_path):
    res, truth = small
    one = render_html(res, truth=truth)
    two = render_html(res, reference_periods=[32], selected=(1, 0))
    path = tmp_path / "two.html"
    path.write_text(one.replace("</body></html>", two + "</body></html>"))
    p = Loaded(browser, path, viewport=(1100, 900))
    try:
        assert p.errors == [] and len(p.uids) == 2 and p.requests == [p.url]
        a, b = p.uids
        assert p.js("api.state.referencePeriods", a) == []
        assert p.js("api.state.referencePeriods", b) == [32.0]
        assert p.js("[api.state.layer, api.state.head]", b) == [1, 0]
        cell = p.js("api.gridCell(1, 1)", a)
        p.page.mouse.click(cell["x"], cell["y"])
        assert p.js("[api.state.layer, api.state.head]", a) == [1, 1]
        assert p.js("[api.state.layer, api.state.head]", b) == [1, 0]
    finally:
        p.close()


def test_padded_history_times_follow_the_boundary(browser, small, tmp_path):
    """A forecaster that left-pads the history (VisionTS) puts the boundary at column 10 while
    the series has 76 samples: column c starts at sample 76 - 80 + 8c, on the series and the map."""
    res, _ = small
    g = res.grid
    grid = TokenGrid(rows=g.rows, cols=g.cols, prefix_tokens=1, history_cols=10, samples_per_col=8.0,
                     history_length=76, horizon=g.horizon, history_boundary=10.0, sample_offset=-4.0)
    padded = _with(res, grid=grid, series=res.series[4:])
    p = Loaded(browser, write_html(padded, tmp_path / "padded.html"))
    try:
        assert p.errors == []
        for t, q in [(102.0, 13), (-2.0, 0), (2.5, 0), (5.5, 1)]:  # column 0 covers [-4, 4)
            pt = p.js(f"api.seriesPoint({t})")
            p.page.mouse.move(pt["x"], pt["y"])
            assert p.js("api.state.query") == q, t
        m = padded.time_map(*res.head_index(p.js("api.state.layer"), p.js("api.state.head")))
        np.testing.assert_allclose(p.js("api.state.seriesAttention.values"), m[1], atol=(m.max() - m.min()) / 65535)
    finally:
        p.close()


def test_visionts_result_renders():
    """Every forecaster family: a (tiny, random) VisionTS result makes a page like ViTime's."""
    pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    from attnviz.analysis import MultiHeadAttentionRollout
    from attnviz.forecasters.visionts import VisionTSForecaster, tiny_visionts

    fc = VisionTSForecaster(tiny_visionts(seed=2), 24, allow_random_weights=True)
    x = 3 + np.sin(np.arange(470) * 2 * np.pi / 24)
    res = MultiHeadAttentionRollout(fc, layers="vision_model.decoder_blocks.*").analyze(x, 96)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = build_payload(res, reference_periods=[120])  # one column: 5 periods of 24
    assert data["grid"]["history_boundary"] * data["grid"]["samples_per_col"] > len(x)  # left padding
    assert sum(data["heads"]) == sum(res.heads_of(i) for i in range(len(res.layer_names)))


@pytest.fixture(scope="module")
def bundled(tmp_path_factory, bundled_forecaster):
    """The real bundled model on the seed signal, its page written (with truth and 2*pi*10)."""
    import attnviz
    from attnviz.signals import evaluate_expression

    x = evaluate_expression("sin(n/10)+sin(n/5+50)+cos(n+50)", 512 + 720)
    res = attnviz.MultiHeadAttentionRollout(bundled_forecaster).analyze(x[:512], 720)
    path = tmp_path_factory.mktemp("bundled") / "bundled.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res.to_html(path, truth=x[512:], reference_periods=[20 * np.pi])
    return res, path


def test_bundled_model_file_is_at_most_5_mb(bundled):
    res, path = bundled
    assert res.time_maps.shape[:3] == (18, 8, 77)
    assert path.stat().st_size <= MAX_BYTES, f"{path.stat().st_size / 1e6:.2f} MB"


def test_bundled_model_peak_labels_in_browser(browser, bundled):
    """Its peak labels are the numbers ``res.periods`` gives (what ``attnviz explain`` writes to
    summary.json), for the top-ranked head and for blocks.4.attn head 0."""
    res, path = bundled
    p = Loaded(browser, path)
    try:
        assert p.errors == [] and p.requests == [p.url]
        assert p.js("api.state.referencePeriods") == [20 * np.pi]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            top = res.ranked_heads[0]
        for layer, head in [res.head_index(top.layer, top.head), (4, 0)]:
            p.js(f"api.select({layer}, {head})")
            assert p.js("api.state.peakLabels") == [f"{v:.1f}" for v in res.periods(layer, head).peaks_samples]
    finally:
        p.close()
