"""The scan's explorer page: its data and refusals, and the page in a real Chromium.

The scan is a hand-made ``MergedScan`` with known answers: 2 layers of 3 and 2 heads (one
padding slot), 6 series of which one was skipped, head blocks.0.attn:1 the best (mean score 0.8,
far above its null), two clusters of heads by construction.  The browser is the one
``test_explorer.py`` decides on (its ``browser`` fixture: Debian's Chromium through playwright,
skipped with the reason where there is none), one per module.
"""
from __future__ import annotations

import base64
import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from attnviz.explorer import render_scan_html, write_scan_html
from attnviz.explorer.scan_page import build_scan_payload
from attnviz.scan.merge import MergedScan
from test_explorer import MAX_BYTES, browser  # noqa: F401 (browser: the module's fixture)

LAYERS = ["blocks.0.attn", "blocks.1.attn"]
HEADS = [3, 2]
REAL = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
NAMES = ["series_2", "series_10", "series_1", "too_short", "series_3", "series_20"]
SKIPPED = 3
# per real head, the scores of the 5 scanned series (in series order), and the null's
SCORES = {(0, 0): [0.1, 0.2, 0.3, 0.2, 0.2], (0, 1): [0.8, 0.9, 0.7, 0.85, 0.75], (0, 2): [0.5, 0.4, 0.6, 0.5, 0.5],
          (1, 0): [0.3, 0.1, 0.2, 0.4, 0.5], (1, 1): [0.6, 0.6, 0.5, 0.7, 0.6]}
NULL = {(0, 0): [0.2, 0.1, 0.3, 0.2, 0.2], (0, 1): [0.1, 0.2, 0.1, 0.15, 0.2], (0, 2): [0.5, 0.5, 0.5, 0.4, 0.6],
        (1, 0): [0.3, 0.2, 0.2, 0.3, 0.4], (1, 1): [0.2, 0.3, 0.2, 0.2, 0.1]}
TRUE = [10.0, 20.0, 30.0, None, 40.0, 50.0]
MAE = [0.3, 0.1, 0.5, np.nan, 0.2, 0.4]
# clusters by construction: {0:0, 1:0} and {0:1, 0:2, 1:1}
GROUP = {(0, 0): "a", (1, 0): "a", (0, 1): "b", (0, 2): "b", (1, 1): "b"}


def hand_scan(null: bool = True) -> MergedScan:
    n, width = len(NAMES), max(HEADS)
    scanned = [s for s in range(n) if s != SKIPPED]
    scores = np.full((n, 2, width), np.nan)
    nulls, periods = np.full_like(scores, np.nan), np.full_like(scores, np.nan)
    for (li, h), values in SCORES.items():
        scores[scanned, li, h] = values
        nulls[scanned, li, h] = NULL[(li, h)] if null else np.nan
        periods[scanned, li, h] = [TRUE[s] * (1.0 if (li, h) == (0, 1) else 1.5) for s in scanned]
    periods[4, 1, 1] = np.nan  # blocks.1.attn:1 finds no period in series_3
    flat = 2 * width
    sim = np.full((flat, flat), np.nan)
    for a, ka in GROUP.items():
        for b, kb in GROUP.items():
            sim[a[0] * width + a[1], b[0] * width + b[1]] = 1.0 if a == b else (0.9 if ka == kb == "a" else 0.8 if ka == kb else -0.2)
    info = []
    for s, name in enumerate(NAMES):
        skipped = s == SKIPPED
        top = None if skipped else max(SCORES, key=lambda k: SCORES[k][scanned.index(s)])
        info.append({"series": name, "rows": "" if skipped else f"{100 * s}:{100 * s + 512}", "skipped": skipped,
                     "reason": "only 100 rows, needs 512" if skipped else "", "true_period": TRUE[s],
                     "top_layer": None if skipped else LAYERS[top[0]], "top_head": None if skipped else top[1],
                     "top_period": None if skipped else float(periods[s, top[0], top[1]])})
    return MergedScan(LAYERS, HEADS, scores, periods, nulls, np.array(MAE), np.array(MAE) * 2, sim, info, 4.0)


def summary_of(merged: MergedScan) -> dict:
    """The summary, with the verdict threshold lowered to the hand-made scan's 5 series (a real
    scan draws no above-null verdict from fewer than 10: tests/test_scan.py checks that)."""
    import attnviz.scan.merge as merge

    threshold = merge.MIN_SERIES_FOR_VERDICT
    merge.MIN_SERIES_FOR_VERDICT = 5
    try:
        with warnings.catch_warnings():  # the bootstrap's percentiles of the padding slot are all-NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return merged.summary(seed=0)
    finally:
        merge.MIN_SERIES_FOR_VERDICT = threshold


@pytest.fixture(scope="module")
def scan():
    merged = hand_scan()
    return merged, summary_of(merged)


def entry(summary, li, h):
    return next(e for e in summary["heads"] if e["layer"] == LAYERS[li] and e["head"] == h)


# --------------------------------------------------------------------------- no browser needed
def test_the_hand_made_scan_has_the_answers_it_was_built_for(scan):
    merged, summary = scan
    assert (summary["series"], summary["scanned"], summary["skipped"]) == (6, 5, 1)
    assert entry(summary, 0, 1)["mean_score"] == pytest.approx(0.8) and entry(summary, 0, 1)["above_null"]
    assert not entry(summary, 0, 2)["above_null"]
    clusters = sorted(sorted(c["heads"]) for c in summary["head_clusters"]["clusters"])
    assert clusters == [["blocks.0.attn:0", "blocks.1.attn:0"], ["blocks.0.attn:1", "blocks.0.attn:2", "blocks.1.attn:1"]]


def test_payload_sends_real_heads_and_scanned_series_as_typed_arrays(scan):
    merged, summary = scan
    data = build_scan_payload(merged, summary)
    assert data["scanned"] == [0, 1, 2, 4, 5] and data["series"]["skipped"][SKIPPED]
    q = np.frombuffer(base64.b64decode(data["scores"]), dtype="<u2").reshape(len(REAL), 5)  # no padding head
    for k, (li, h) in enumerate(REAL):
        lo, hi = data["score_lo"][k], data["score_hi"][k]
        np.testing.assert_allclose(lo + q[k] * (hi - lo) / 65535, SCORES[(li, h)], atol=(hi - lo) / 65535)
        assert data["stats"]["mean"][k] == entry(summary, li, h)["mean_score"]
    periods = np.frombuffer(base64.b64decode(data["periods"]), dtype="<f4").reshape(len(REAL), 5)
    assert np.isnan(periods[4, 3]) and np.isfinite(np.delete(periods, 3, axis=1)).all()
    sim = np.frombuffer(base64.b64decode(data["similarity"]), dtype="<f4").reshape(5, 5)
    assert sim[0, 3] == pytest.approx(0.9) and sim[1, 4] == pytest.approx(0.8) and sim[0, 1] == pytest.approx(-0.2)
    # ordered by cluster: each cluster's members side by side
    clusters = [data["cluster_of"][k] for k in data["order"]]
    assert clusters == sorted(clusters, key=lambda c: (c < 0, clusters.index(c)))
    assert data["series"]["top"][1] == REAL.index((0, 1)) and data["series"]["top"][SKIPPED] == -1


def test_page_is_self_contained_with_its_own_widget_id(scan):
    merged, summary = scan
    page = render_scan_html(merged, summary, title="a <b>scan</b>")
    assert "http:" not in page and "https:" not in page and "//cdn" not in page
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page, re.I)
    assert not re.search(r"\ssrc\s*=", page, re.I) and "@import" not in page and "url(" not in page
    data = re.search(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S).group(1)
    assert "[[" not in data  # per-series and per-pair data travel as typed arrays, not nested lists
    assert "a &lt;b&gt;scan&lt;/b&gt;" in page
    meta = re.search(r'<span class="avx-meta">(.*?)</span>', page).group(1)
    assert "6 series (1 skipped)" in meta and "of the known period in 5/5 series" in meta  # top head: blocks.0.attn:1
    assert f"median forecast MAE {summary['forecast']['median_mae']:.3g}" in meta
    ids = {re.search(r'id="attnviz-([0-9a-f]+)"', render_scan_html(merged, summary)).group(1) for _ in range(3)}
    assert len(ids) == 3


def test_a_1000_series_scan_of_the_bundled_model_shape_fits_in_5_mb():
    """18 layers x 8 heads, 1,000 series (10 skipped), random scores, null scores, periods."""
    rng = np.random.default_rng(3)
    n, layers, width = 1000, 18, 8
    scores = rng.random((n, layers, width))
    nulls, periods = rng.random((n, layers, width)) * 0.5, rng.uniform(16, 600, (n, layers, width))
    skipped = set(range(0, n, 100))
    scores[list(skipped)] = nulls[list(skipped)] = periods[list(skipped)] = np.nan
    corr = rng.uniform(-1, 1, (layers * width, layers * width))
    corr = (corr + corr.T) / 2
    np.fill_diagonal(corr, 1.0)
    info = [{"series": f"synthetic_{s}", "rows": "0:1232", "skipped": s in skipped, "reason": "too short" if s in skipped else "",
             "true_period": float(rng.uniform(16, 300)), "top_layer": "blocks.0.attn", "top_head": 0, "top_period": 64.0}
            for s in range(n)]
    merged = MergedScan([f"blocks.{i}.attn" for i in range(layers)], [width] * layers, scores, periods, nulls,
                        rng.random(n), rng.random(n) + 1, corr, info, 16.0)
    size = len(render_scan_html(merged, summary_of(merged)).encode("utf-8"))
    assert size <= MAX_BYTES, f"{size / 1e6:.2f} MB"


def test_unwritable_path_is_a_one_line_error_naming_it(scan, tmp_path):
    """A path under a plain file cannot be written, by root either (the write itself is the one
    ``write_html`` uses: tests/test_explorer.py checks a read-only folder keeps no temporary file)."""
    merged, summary = scan
    (tmp_path / "afile").write_text("")
    target = tmp_path / "afile" / "scan.html"
    with pytest.raises(ValueError) as info:
        write_scan_html(merged, summary, target)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cannot write the scan explorer to {target}: ")
    with pytest.raises(ValueError, match="it is a directory"):
        write_scan_html(merged, summary, tmp_path)
    out = write_scan_html(merged, summary, tmp_path / "sub" / "scan.html")
    assert out.read_text().startswith("<!DOCTYPE html>") and [p.name for p in out.parent.iterdir()] == ["scan.html"]


def _one_line_error(merged, summary, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        render_scan_html(merged, summary)
    assert "\n" not in str(info.value)


def test_empty_scans_are_one_line_errors(scan):
    merged, summary = scan
    empty = MergedScan(LAYERS, HEADS, np.zeros((0, 2, 3)), np.zeros((0, 2, 3)), np.zeros((0, 2, 3)), np.zeros(0),
                       np.zeros(0), merged.similarity, [], 4.0)
    _one_line_error(empty, summary, "this scan holds no series: there is nothing to explore")
    none = hand_scan()
    for row in none.info:
        row["skipped"], row["reason"] = True, row["reason"] or "flat series"
    none.scores[:] = np.nan
    _one_line_error(none, summary, r"none of this scan's 6 series was scanned \(all skipped; e.g. 'series_2': flat series\)")


def test_nan_where_a_scanned_series_has_a_number_is_refused(scan):
    merged, summary = scan
    bad = hand_scan()
    bad.scores[2, 1, 0] = np.nan
    _one_line_error(bad, summary, r"the score of series 'series_1', blocks.1.attn head 0 is nan")
    bad = hand_scan()
    bad.periods[0, 0, 2] = np.inf
    _one_line_error(bad, summary, r"the detected period of series 'series_2', blocks.0.attn head 2 is inf")
    bad = hand_scan()
    bad.null_scores[5, 0, 0] = np.nan
    _one_line_error(bad, summary, r"the null score of series 'series_20', blocks.0.attn head 0 is nan")
    render_scan_html(hand_scan(), summary)  # NaN in the padding slot and the skipped series: by design


def test_a_summary_of_another_scan_is_refused(scan):
    merged, summary = scan
    other = hand_scan()
    other.scores[0, 0, 1] += 0.1
    _one_line_error(other, summary, r"summary does not belong to this scan: its mean score of blocks.0.attn head 1 is 0.8")
    _one_line_error(merged, {"heads": summary["heads"][:-1]}, "summary does not belong to this scan: it has no entry for")
    _one_line_error(merged, [], r"summary must be the dict MergedScan.summary\(seed\) returns")


# --------------------------------------------------------------------------- the real browser
class ScanPage:
    """A scan page opened from a file: its console errors and every request (non-file ones refused)."""

    def __init__(self, browser, path: Path, viewport=(1340, 900)):  # noqa: F811 (the imported fixture's name)
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        self.page, self.requests, self.errors = self.context.new_page(), [], []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_function("window.attnvizScanExplorer && Object.keys(window.attnvizScanExplorer).length > 0")
        self.uid = self.page.evaluate("Object.keys(window.attnvizScanExplorer)[0]")

    def js(self, expr: str):
        return self.page.evaluate(f"(api => {expr})(window.attnvizScanExplorer[{self.uid!r}])")

    def part(self, name: str):
        return self.page.locator(f"#attnviz-{self.uid}-{name}")


@pytest.fixture(scope="module")
def loaded(browser, scan, tmp_path_factory):  # noqa: F811
    merged, summary = scan
    page = ScanPage(browser, write_scan_html(merged, summary, tmp_path_factory.mktemp("scan") / "scan.html"))
    yield page
    page.context.close()


def test_page_loads_without_errors_or_network(loaded):
    assert loaded.errors == []
    assert loaded.requests == [loaded.url], loaded.requests
    assert loaded.page.locator(".avx-fallback").count() == 0
    for name in ("grid", "dist", "periods", "sim"):
        box = loaded.part(name).bounding_box()
        assert box["width"] > 150 and box["height"] > 150, name


def test_clicking_a_grid_cell_shows_that_heads_numbers(loaded, scan):
    merged, summary = scan
    assert loaded.js("[api.state.layer, api.state.headIndex]") == [0, 1]  # the best mean first
    for li, h in [(1, 1), (0, 0), (1, 0), (0, 2), (0, 1)]:
        cell = loaded.js(f"api.gridCell({li}, {h})")
        loaded.page.mouse.click(cell["x"], cell["y"])
        st = loaded.js("({l: api.state.layer, h: api.state.headIndex, mean: api.state.mean, ci: api.state.ci, "
                       "nullMean: api.state.nullMean, nullCi: api.state.nullCi, diffCi: api.state.diffCi, "
                       "above: api.state.aboveNull, scores: Array.from(api.state.scores), cluster: api.state.cluster})")
        e = entry(summary, li, h)
        assert (st["l"], st["h"]) == (li, h)
        assert st["mean"] == e["mean_score"] and st["ci"] == list(e["score_ci"])
        assert st["nullMean"] == e["null_mean_score"] and st["nullCi"] == list(e["null_score_ci"])
        assert st["diffCi"] == list(e["difference_ci"]) and st["above"] == e["above_null"]
        np.testing.assert_allclose(st["scores"], SCORES[(li, h)], atol=1e-4)
        info = loaded.part("info").inner_text()
        assert info.startswith(f"{LAYERS[li]}:{h} · mean score {e['mean_score']:.3f} [")
        assert ("above the null" in info and "not above" not in info) == e["above_null"]
        members = sorted(f"{LAYERS[a]}:{b}" for a, b in GROUP if GROUP[(a, b)] == GROUP[(li, h)])
        assert st["cluster"]["members"] == members
        assert loaded.page.locator(".avx-chips button").all_inner_texts() == members
    pad = loaded.js("api.gridCell(1, 2)")  # the padding slot of the narrower layer is not a head
    loaded.page.mouse.click(pad["x"], pad["y"])
    assert loaded.js("[api.state.layer, api.state.headIndex]") == [0, 1]
    assert loaded.errors == []


def test_a_cluster_member_selects_its_head_and_periods_follow(loaded):
    loaded.js("api.select(0, 1)")
    loaded.page.locator(".avx-chips button", has_text="blocks.1.attn:1").click()
    assert loaded.js("api.state.label") == "blocks.1.attn:1"
    periods = loaded.js("api.state.periods")
    assert np.isnan(periods[3]) and np.isfinite(np.delete(periods, 3)).all()  # no period in series_3
    assert loaded.js("api.state.noPeriod") == 1
    # 1.5 x the known period is outside max(one column, 8 %) for every series; blocks.0.attn:1 finds all 5
    assert loaded.js("api.state.recovered") == {"series": 5, "within": 0}
    loaded.js("api.select(0, 1)")
    assert loaded.js("api.state.recovered") == {"series": 5, "within": 5}


def _shown_names(loaded):
    return loaded.page.locator(f"#attnviz-{loaded.uid}-table tbody tr td:first-child").all_inner_texts()


def test_series_table_sorts_by_a_clicked_header(loaded):
    status = loaded.page.locator("tr.avx-skipped td:nth-child(3)").inner_text()
    assert status == "skipped: only 100 rows, needs 512"
    header = loaded.page.locator(f"#attnviz-{loaded.uid}-table th[data-key='mae']")
    header.click()
    by_mae = ["series_10", "series_3", "series_2", "series_20", "series_1", "too_short"]  # unknown MAE last
    assert loaded.js("api.state.tableOrder") == by_mae == _shown_names(loaded)
    assert header.inner_text().endswith("▲")
    header.click()
    assert _shown_names(loaded) == by_mae[-2::-1] + ["too_short"]  # descending; unknown still last
    loaded.page.locator(f"#attnviz-{loaded.uid}-table th[data-key='series']").click()
    assert _shown_names(loaded) == ["series_1", "series_2", "series_3", "series_10", "series_20", "too_short"]
    loaded.js("api.select(1, 0)")
    loaded.page.locator(f"#attnviz-{loaded.uid}-table th[data-key='score']").click()
    assert _shown_names(loaded)[:5] == ["series_10", "series_1", "series_2", "series_3", "series_20"]
    loaded.js("api.select(0, 0)")  # sorted by the selected head's score: a new head re-sorts
    assert _shown_names(loaded)[0] == "series_2" and _shown_names(loaded)[-1] == "too_short"
    loaded.page.locator(f"#attnviz-{loaded.uid}-table tr[data-i='2']").click()
    assert loaded.js("api.state.series") == 2 and loaded.errors == []


def test_similarity_hover_reports_the_pair_and_click_selects_the_row(loaded, scan):
    merged, _ = scan
    for a, b in [((0, 0), (1, 0)), ((0, 1), (1, 1)), ((1, 1), (0, 0)), ((0, 2), (0, 2))]:
        i, j = REAL.index(a), REAL.index(b)
        pt = loaded.js(f"api.simCell({i}, {j})")
        loaded.page.mouse.move(pt["x"], pt["y"])
        hover = loaded.js("api.state.hover")
        la, lb = f"{LAYERS[a[0]]}:{a[1]}", f"{LAYERS[b[0]]}:{b[1]}"
        expected = merged.similarity[a[0] * 3 + a[1], b[0] * 3 + b[1]]
        assert (hover["row"], hover["col"]) == (la, lb)
        assert hover["similarity"] == pytest.approx(expected, abs=1e-6)
        assert loaded.page.locator(".avx-tip").inner_text().startswith(f"{la} × {lb}: similarity {expected:.3f}")
    pt = loaded.js(f"api.simCell({REAL.index((1, 0))}, {REAL.index((0, 1))})")
    loaded.page.mouse.click(pt["x"], pt["y"])
    assert loaded.js("api.state.label") == "blocks.1.attn:0"


def test_png_download_of_the_current_view(loaded):
    with loaded.page.expect_download() as info:
        loaded.part("png").click()
    download = info.value
    assert download.suggested_filename.startswith("attnviz_scan_") and download.suggested_filename.endswith(".png")
    data = Path(download.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    assert w > 2 * loaded.part("grid").bounding_box()["width"] and h > 400
    assert loaded.errors == []


def test_a_scan_without_null_and_an_explanation_share_one_page(browser, small_page_html, tmp_path):  # noqa: F811
    """No null baseline: no marks, no null numbers.  And a scan explorer beside an explanation's
    explorer in one document (as in a notebook): both draw, the kit shared, neither disturbed."""
    merged = hand_scan(null=False)
    page = render_scan_html(merged, summary_of(merged))
    path = tmp_path / "both.html"
    path.write_text(page.replace("</body></html>", small_page_html + "</body></html>"))
    p = ScanPage(browser, path)
    try:
        assert p.errors == [] and p.requests == [p.url]
        assert p.js("[api.state.nullMean, api.state.aboveNull, api.state.label]") == [None, None, "blocks.0.attn:1"]
        assert "null" not in p.part("info").inner_text()
        assert p.page.evaluate("Object.keys(window.attnvizExplorer).length") == 1
        p.js("api.select(1, 1)")
        assert p.errors == []
    finally:
        p.context.close()


@pytest.fixture(scope="module")
def small_page_html():
    from attnviz.explorer import render_html
    from test_explorer import periodic_result

    res, truth = periodic_result()
    return render_html(res, truth=truth)
