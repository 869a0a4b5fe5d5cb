"""The offline interactive explorer: one self-contained HTML file per ``AnalysisResult``, and one
per scan (``render_scan_html`` / ``write_scan_html``, see :mod:`attnviz.explorer.scan_page`).

``render_html(res)`` returns the page as a string (``AnalysisResult._repr_html_`` shows it in a
notebook); ``write_html(res, path)`` writes it (``AnalysisResult.to_html(path)``).  The page has
the layer x head score grid (click a cell), layer and head selectors, the time-time map with the
history/forecast boundary, the head's lag curve in samples with its detected peaks (labelled
with ``res.periods(layer, head).peaks_samples`` to one decimal) and fundamental, the series with
history, forecast and (when given) truth, the ranking table, and a PNG download of the view.
Hovering a query column on the map, or a time on the series, shows that column's attention onto
every key column under the series and its row as a lag profile on the lag curve.  Reference
periods are drawn only when the caller gives them.  A layer that saw only the first columns
(``res.layer_cols``: VisionTS' encoder sees the context columns) is shown with the cells it never
saw hatched grey, "not seen by this layer" in the legends, the tooltip and the notes, and its lag
curve ending at its last lag; its heads are ranked and drawn in the score grid like any other.

Why plain JavaScript on ``<canvas>`` and no library: a time map is drawn with one
``putImageData`` of ``cols x cols`` pixels, scaled up, however many cells it has (an SVG/d3
heat map makes a DOM node per cell: 5,929 per 77-column map, 1.4 M for a 1,232-sample map),
the whole script is about 40 KB of readable source in ``explorer.js`` (no minified bundle to
vendor, audit and update), and with nothing to load the page works offline, from ``file://``
and in a notebook without require.js.  The file makes no network request: no ``<link>``, no
``src=`` and no URL in it.

Data go in as typed arrays in base64 (see ``attnviz.explorer.payload``): time maps quantised
to uint16 per head over the head's own min..max, lag curves float32, the series float64.  The
bundled model's result (18 layers x 8 heads, 77 columns) makes a file of about 2.5 MB.

Each widget gets a fresh id: its root element is ``#attnviz-<id>`` and its script API is
``window.attnvizExplorer[<id>]`` (``state`` holds what is drawn: the heat map's values (NaN
where unseen, with ``unseen``: 1 per such cell, and ``seenCols``), the lag axis' range, the
peak labels, the linked query column's lag profile and attention row; ``select(layer, head)``,
``setQuery(col)``, ``png()``), so two explorers in one notebook do not clash.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .page import FALLBACK, document, new_uid, style, widget_scripts, write_page
from .payload import build_payload, check_result
from .scan_page import render_scan_html, write_scan_html

__all__ = ["render_html", "write_html", "check_result", "render_scan_html", "write_scan_html"]


def _default_title(res: Any, payload: dict) -> str:
    g = payload["grid"]
    return (
        f"attnviz explorer: {len(payload['layers'])} layers, {sum(payload['heads'])} heads; "
        f"history {g['history_length']}, horizon {g['horizon']} samples"
    )


def render_html(res: Any, *, title: str | None = None, reference_periods: Any = (), truth: Any = None,
                selected: Any = None) -> str:
    """The explorer page of ``res`` as one HTML string (a full document that also works as a
    notebook fragment: its CSS is scoped to the widget).

    title: heading (default: layers, heads, history and horizon).  reference_periods: periods in
    samples to mark on the lag curve and the attention row (none unless given).  truth: the real
    continuation, as long as the forecast, drawn under it.  selected: (layer, head) shown first
    (default: the top-ranked head).  Raises ValueError for a result without maps, non-finite
    values in a real head's map where its layer saw the columns, the series, forecast or truth, and bad options.
    """
    payload = build_payload(
        res, title=title, reference_periods=reference_periods, truth=truth, selected=selected
    )
    uid = new_uid()
    heading = title if title is not None else _default_title(res, payload)
    payload["title"] = heading
    g = payload["grid"]
    meta = (
        f"{g['cols']} token columns of {g['samples_per_col']:g} samples · history "
        f"{g['history_length']} + horizon {g['horizon']} samples · time maps: "
        f"{payload['time_convention']} convention"
    )
    if g["sample_offset"]:  # a forecaster that pads the history (VisionTS): column 0 starts before it
        meta += f" · column 0 starts at sample {g['sample_offset']:g} (padding)"
    caveats = "".join(
        f'<p class="avx-caveat">note: {html.escape(c)}</p>' for c in payload["caveats"]
    )
    body = f"""<div class="avx" id="attnviz-{uid}" data-attnviz-explorer="{uid}">
{style()}
<div class="avx-head"><h2 class="avx-title">{html.escape(heading)}</h2><span class="avx-meta">{html.escape(meta)}</span></div>
{caveats}
{FALLBACK}
<div class="avx-body" style="display:none">
<div class="avx-bar">
<label>layer <select data-part="layer" id="attnviz-{uid}-layer"></select></label>
<label>head <select data-part="head" id="attnviz-{uid}-head"></select></label>
<label>colour <select data-part="scale" id="attnviz-{uid}-scale"><option value="pct">linear, p5–p99</option><option value="full">linear, min–max</option><option value="log">log, p5–p99</option></select></label>
<button type="button" data-part="png" id="attnviz-{uid}-png" title="download the grid, map, lag curve and series as they are now">PNG of this view</button>
<span class="avx-info" data-part="info" id="attnviz-{uid}-info"></span>
</div>
<div class="avx-main">
<div class="avx-side">
<div class="avx-panel"><canvas data-part="grid" id="attnviz-{uid}-grid"></canvas></div>
<p class="avx-note">click a cell (or a table row) to show that head</p>
<div class="avx-table-wrap"><table data-part="table" id="attnviz-{uid}-table"></table></div>
</div>
<div class="avx-panel avx-heat"><canvas data-part="heatmap" id="attnviz-{uid}-heatmap"></canvas></div>
<div class="avx-panel avx-lag"><canvas data-part="lag" id="attnviz-{uid}-lag"></canvas></div>
<p class="avx-note avx-peaks" data-part="peaks" id="attnviz-{uid}-peaks"></p>
<div class="avx-panel avx-series"><canvas data-part="series" id="attnviz-{uid}-series"></canvas></div>
<p class="avx-note avx-hint">hover a row of the map or a time on the series: that query column's attention shows under the series and, as its row by lag, on the lag curve</p>
</div>
</div>
<div class="avx-tip" data-part="tip"></div>
</div>
{widget_scripts(uid, payload, "explorer.js")}"""
    return document(heading, body)


def write_html(res: Any, path: Any, *, title: str | None = None, reference_periods: Any = (), truth: Any = None,
               selected: Any = None) -> Path:
    """Write :func:`render_html` of ``res`` to ``path`` (parents created) and return the path.

    The page is built first, then written through a temporary file in the same folder and moved
    into place, so a failure never leaves half a page.  A path that cannot be written is a
    one-line ValueError naming it."""
    return write_page(path, lambda: render_html(
        res, title=title, reference_periods=reference_periods, truth=truth, selected=selected
    ), "the explorer")

