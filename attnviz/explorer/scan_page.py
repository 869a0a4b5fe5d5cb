"""The scan's explorer: one self-contained HTML page for a whole ``attnviz scan``.

``render_scan_html(merged, summary)`` returns the page; ``write_scan_html(merged, summary, path)``
writes it (atomically, like ``write_html``).  ``merged`` is the scan's
:class:`attnviz.scan.merge.MergedScan`, ``summary`` the dict ``merged.summary(seed)`` returns (what
``summary.json`` holds).  The page shows

* the layer x head grid of mean scores over series (click a cell; a dot marks heads above the
  null by the summary's rule: paired t-test, Benjamini-Hochberg over heads; no dots, and "no
  verdict" in words, when the scan has too few series for one);
* for the selected head: its scores over series as a histogram (the null's beside it), the mean
  with its interval and the null's, its detected periods over series (against the series' known
  periods when they have them), its cluster and the cluster's members (click one to select it);
* the head-similarity matrix ordered by cluster (hover: the pair and their similarity; click: the
  row's head);
* the series table (name, rows, skipped and why, known period, MAE, top head and its period, the
  selected head's score and period), sorted by clicking a header;
* a PNG of the current view.  Its script API is ``window.attnvizScanExplorer[<uid>]``.

Every number the page states about a head (mean, intervals, above-null) is the summary's own; the
per-series arrays come from ``merged``.  Data travel as base64 typed arrays: per-series scores
(and null scores) quantised per head to uint16 over the head's own [lo, hi] (error at most
(hi - lo) / 131070), periods and the similarity matrix float32, per-series MAE and periods float32
with NaN meaning "not known" (no truth held out, no known period, no period detected: each is
said in words where it is shown).  Padding heads of narrower layers are not heads and are never
sent.  A 1,000-series scan of the bundled model (18 layers x 8 heads) makes a page of 1.8 MB
with a null baseline, 1.4 MB without (``tests/test_scan_explorer.py`` bounds it at 5 MB); the
40-series scan of the README's picture, 0.23 MB.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .page import FALLBACK, document, new_uid, style, widget_scripts, write_page
from .payload import QUANT_LEVELS, _b64, _colormap_lut

__all__ = ["build_scan_payload", "render_scan_html", "write_scan_html"]


def _shape_error(what: str, got: tuple, want: tuple) -> ValueError:
    return ValueError(f"MergedScan.{what} has shape {got}, expected {want}")


def _real_heads(merged: Any) -> tuple[list[str], list[int], int, list[tuple[int, int]]]:
    names = [str(n) for n in getattr(merged, "layer_names", [])]
    heads = [int(n) for n in getattr(merged, "num_heads", [])]
    scores = np.asarray(getattr(merged, "scores", np.zeros((0, 0, 0))))
    if scores.ndim != 3 or len(names) != scores.shape[1] or len(heads) != len(names):
        raise ValueError(
            f"MergedScan.scores of shape {scores.shape} does not hold (series, {len(names)} layers, heads); "
            f"num_heads has {len(heads)} entries"
        )
    width = scores.shape[2]
    if any(n < 0 or n > width for n in heads):
        raise ValueError(f"MergedScan.num_heads {heads} must lie in 0..{width} (the scores' head axis)")
    return names, heads, width, [(li, h) for li, n in enumerate(heads) for h in range(n)]


def _first_bad(block: np.ndarray, ok: np.ndarray, real: list[tuple[int, int]], names: list[str],
               series: list[str], what: str, why: str) -> None:
    """Raise naming the first (series, layer, head) where ``ok`` is False."""
    if ok.all():
        return
    s, k = (int(i) for i in np.argwhere(~ok)[0])
    li, h = real[k]
    raise ValueError(
        f"{what} of series {series[s]!r}, {names[li]} head {h} is {block[s, k]}: {why}"
    )


def _summary_heads(summary: Any, names: list[str], real: list[tuple[int, int]]) -> list[dict[str, Any]]:
    if not isinstance(summary, dict) or not isinstance(summary.get("heads"), list):
        raise ValueError("summary must be the dict MergedScan.summary(seed) returns (with a 'heads' list)")
    by_key = {}
    for entry in summary["heads"]:
        try:
            by_key[(str(entry["layer"]), int(entry["head"]))] = entry
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"summary['heads'] holds an entry without a layer and head: {entry!r}"[:200]) from None
    out = []
    for li, h in real:
        entry = by_key.get((names[li], h))
        if entry is None:
            raise ValueError(f"summary does not belong to this scan: it has no entry for {names[li]} head {h}")
        out.append(entry)
    if len(by_key) != len(real):
        extra = sorted(set(by_key) - {(names[li], h) for li, h in real})[:1]
        raise ValueError(f"summary does not belong to this scan: it has an entry for {extra[0][0]} head {extra[0][1]}")
    return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _quantised(values: np.ndarray) -> tuple[str, list[float], list[float]]:
    """(heads, series) finite values -> uint16 per head over its own [lo, hi]."""
    lo = values.min(axis=1) if values.size else np.zeros(len(values))
    hi = values.max(axis=1) if values.size else np.zeros(len(values))
    scale = np.where(hi > lo, (hi - lo) / QUANT_LEVELS, 1.0)
    q = np.round((values - lo[:, None]) / scale[:, None]).astype("<u2")
    return _b64(q, "<u2"), [float(v) for v in lo], [float(v) for v in hi]


def _order(merged: Any, real_flat: np.ndarray, clusters: list[list[int]], threshold: float) -> list[int]:
    """Real heads (indices into the page's head list) ordered by cluster, as the summary lists
    the clusters (largest first), each cluster's members and then the heads in no cluster in the
    dendrogram's leaf order (alike heads side by side)."""
    from ..scan.stats import head_clusters

    _, leaves = head_clusters(np.asarray(merged.similarity, dtype=np.float64), np.asarray(merged.real), threshold)
    page_of = {int(f): i for i, f in enumerate(real_flat)}
    leaf_rank = {page_of[int(f)]: r for r, f in enumerate(leaves) if int(f) in page_of}
    order: list[int] = []
    for members in clusters:
        order += sorted(members, key=lambda i: leaf_rank.get(i, i))
    placed = set(order)
    order += sorted((i for i in range(len(real_flat)) if i not in placed), key=lambda i: leaf_rank.get(i, i))
    return order


def _stats(entries: list[dict[str, Any]], has_null: bool) -> dict[str, Any]:
    """The summary's numbers per head, as flat lists (the page states them as they are)."""
    def column(key: str, index: int | None = None) -> list[float | None]:
        return [_num(e.get(key) if index is None else (e.get(key) or [None, None])[index]) for e in entries]

    out: dict[str, Any] = {"mean": column("mean_score"), "lo": column("score_ci", 0), "hi": column("score_ci", 1),
                           "median_period": column("median_period_samples")}
    if has_null:
        out.update(null_mean=column("null_mean_score"), null_lo=column("null_score_ci", 0),
                   null_hi=column("null_score_ci", 1), diff_lo=column("difference_ci", 0),
                   diff_hi=column("difference_ci", 1),
                   above_null=[None if e.get("above_null") is None else bool(e["above_null"]) for e in entries])
    return out


@dataclass
class _Checked:
    """The scan's arrays the page draws, checked: real heads only, scanned series only."""

    names: list[str]
    heads: list[int]
    width: int
    real: list[tuple[int, int]]
    info: list[dict[str, Any]]
    scanned: np.ndarray  # indices of the scanned series
    scores: np.ndarray  # (scanned series, real heads), all finite
    periods: np.ndarray  # the same, NaN: no period detected
    null: np.ndarray | None  # the same, all finite; None without a null baseline


def _checked(merged: Any) -> _Checked:
    names, heads, width, real = _real_heads(merged)
    info = list(getattr(merged, "info", []) or [])
    n = len(info)
    scores = np.asarray(merged.scores, dtype=np.float64)
    if n == 0 or scores.shape[0] == 0:
        raise ValueError("this scan holds no series: there is nothing to explore")
    if not real:
        raise ValueError(f"this scan holds no heads ({len(names)} layer(s), num_heads {heads})")
    if scores.shape[0] != n:
        raise ValueError(f"MergedScan.info has {n} series but its scores {scores.shape[0]}")
    for what, want in (("periods", scores.shape), ("null_scores", scores.shape), ("mae", (n,)), ("mean_mae", (n,)),
                       ("similarity", (len(names) * width,) * 2)):
        if np.shape(getattr(merged, what)) != want:
            raise _shape_error(what, np.shape(getattr(merged, what)), want)
    scanned = np.flatnonzero([not row["skipped"] for row in info])
    if scanned.size == 0:
        first = info[0]
        reason = (str(first["reason"]).splitlines() or ["no reason given"])[0]
        raise ValueError(
            f"none of this scan's {n} series was scanned (all skipped; e.g. {first['series']!r}: {reason}): "
            "there is nothing to explore"
        )
    li_idx, h_idx = np.array([li for li, _ in real]), np.array([h for _, h in real])
    scanned_names = [str(info[i]["series"]) for i in scanned]

    def block(values: Any) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)[scanned][:, li_idx, h_idx]

    scored = block(scores)
    _first_bad(scored, np.isfinite(scored), real, names, scanned_names, "the score",
               "a scanned series has a finite score in every head; the page refuses to draw it as a gap")
    periods = block(merged.periods)
    _first_bad(periods, ~np.isinf(periods) & ~(periods <= 0), real, names, scanned_names, "the detected period",
               "periods are positive numbers of samples (NaN: none detected)")
    null = block(merged.null_scores)
    if np.isfinite(null).any():
        _first_bad(null, np.isfinite(null), real, names, scanned_names, "the null score",
                   "with a null baseline every scanned series has a finite null score in every head")
    return _Checked(names, heads, width, real, info, scanned, scored, periods, null if np.isfinite(null).any() else None)


def _matching_summary(summary: Any, c: _Checked) -> list[dict[str, Any]]:
    """The summary's entry of every real head (in page order), refused when it is another scan's."""
    entries = _summary_heads(summary, c.names, c.real)
    n = len(c.info)
    if int(summary.get("scanned", c.scanned.size)) != c.scanned.size or int(summary.get("series", n)) != n:
        raise ValueError(
            f"summary does not belong to this scan: it counts {summary.get('scanned')} scanned of "
            f"{summary.get('series')} series, the scan {c.scanned.size} of {n}"
        )
    means = c.scores.mean(axis=0)
    for k, entry in enumerate(entries):
        mean = _num(entry.get("mean_score"))
        if mean is None or abs(mean - means[k]) > 1e-9 * max(1.0, abs(mean)):
            li, h = c.real[k]
            raise ValueError(
                f"summary does not belong to this scan: its mean score of {c.names[li]} head {h} is "
                f"{entry.get('mean_score')}, the scan's scores give {means[k]:.6g}"
            )
    return entries


def _clusters(summary: dict[str, Any], page_of: dict[str, int]) -> tuple[list[list[int]], list[float | None], float]:
    """The summary's head clusters as page head indices, their mean similarity, the threshold."""
    block = summary.get("head_clusters") or {}
    clusters, sims = [], []
    for cluster in block.get("clusters", []):
        try:
            clusters.append([page_of[label] for label in cluster["heads"]])
        except KeyError as exc:
            raise ValueError(f"summary's head cluster names {exc.args[0]!r}, not a head of this scan") from None
        sims.append(_num(cluster.get("mean_similarity")))
    return clusters, sims, float(block.get("threshold", 0.5))


def build_scan_payload(merged: Any, summary: Any, *, title: str | None = None) -> dict[str, Any]:
    """Everything the scan page needs, checked, as a JSON-ready dict (see the module doc)."""
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title must be a string, got {type(title).__name__}")
    c = _checked(merged)
    entries = _matching_summary(summary, c)
    info, has_null = c.info, c.null is not None
    series_names = [str(row["series"]) for row in info]
    real_flat = np.array([li * c.width + h for li, h in c.real])
    sim = np.asarray(merged.similarity, dtype=np.float64)[np.ix_(real_flat, real_flat)]
    if np.isinf(sim).any():
        a, b = (int(i) for i in np.argwhere(np.isinf(sim))[0])
        raise ValueError(f"the similarity of {merged.head_label(real_flat[a])} and {merged.head_label(real_flat[b])} is infinite")
    page_of = {merged.head_label(int(f)): i for i, f in enumerate(real_flat)}
    clusters, cluster_sims, threshold = _clusters(summary, page_of)

    def per_series(values: Any, what: str) -> str:  # NaN: not known (said as such on the page)
        arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        if np.isinf(arr).any():
            raise ValueError(f"the {what} of series {series_names[int(np.argmax(np.isinf(arr)))]!r} is infinite")
        return _b64(arr, "<f4")

    top = [page_of.get(f"{row.get('top_layer')}:{row.get('top_head')}", -1) if row.get("top_layer") else -1
           for row in info]
    q_scores, lo, hi = _quantised(c.scores.T)
    payload: dict[str, Any] = {
        "title": title,
        "layers": c.names,
        "heads": c.heads,
        "samples_per_col": float(merged.samples_per_col),
        "series": {
            "names": series_names,
            "rows": [str(row.get("rows", "")) for row in info],
            "skipped": [bool(row["skipped"]) for row in info],
            "reason": [str(row.get("reason") or "") for row in info],
            "true_period": per_series((row.get("true_period") for row in info), "known period"),
            "mae": per_series(np.asarray(merged.mae, dtype=np.float64), "forecast MAE"),
            "mean_mae": per_series(np.asarray(merged.mean_mae, dtype=np.float64), "mean forecast's MAE"),
            "top": top,
            "top_period": per_series((row.get("top_period") for row in info), "top head's period"),
        },
        "scanned": [int(i) for i in c.scanned],
        "scores": q_scores, "score_lo": lo, "score_hi": hi,
        "null": None, "null_lo": None, "null_hi": None,
        "periods": _b64(c.periods.T, "<f4"),
        "stats": _stats(entries, has_null),
        "similarity": _b64(sim, "<f4"),
        "order": _order(merged, real_flat, clusters, threshold),
        "cluster_of": [next((i for i, members in enumerate(clusters) if k in members), -1) for k in range(len(c.real))],
        "cluster_similarity": cluster_sims,
        "threshold": threshold,
        "interval": str(summary.get("interval") or "95 % bootstrap interval over series"),
        "null_baseline": summary.get("null_baseline") if has_null else None,
        "above_null_rule": str(summary.get("above_null_rule") or "") if has_null else None,
        "compared": int(summary.get("compared", c.scanned.size)),
        "recovery": _picked(summary.get("period_recovery"), series=int, within_tolerance=int, tolerance=str),
        "forecast": _picked(summary.get("forecast"), median_mae=_num, median_ratio_to_mean_forecast=_num),
        "selected": entries.index(max(entries, key=lambda e: float(e["mean_score"]))),
        "cmap": _colormap_lut(),
        "cmap_similarity": _colormap_lut("vlag"),
    }
    if has_null:
        payload["null"], payload["null_lo"], payload["null_hi"] = _quantised(c.null.T)
    return payload


def _picked(block: Any, **kinds: Any) -> dict[str, Any] | None:
    """The named entries of a summary block, as plain JSON values (None when any is missing)."""
    if not isinstance(block, dict) or any(block.get(k) is None for k in kinds):
        return None
    out = {k: kind(block[k]) for k, kind in kinds.items()}
    return None if any(v is None for v in out.values()) else out


def _meta(payload: dict[str, Any]) -> str:
    n, scanned = len(payload["series"]["names"]), len(payload["scanned"])
    parts = [f"{n} series ({n - scanned} skipped)", f"{len(payload['layers'])} layers, {sum(payload['heads'])} heads",
             f"1 column = {payload['samples_per_col']:g} samples", payload["interval"]]
    parts.append(f"null: {payload['null_baseline']}" if payload["null_baseline"] else "no null baseline (scan run with --no-null)")
    if payload["null_baseline"] and payload["above_null_rule"]:
        parts.append(f"above the null: {payload['above_null_rule']}")
    if payload["compared"] < scanned:
        parts.append(f"{scanned - payload['compared']} scanned series left out of the means (ranking caveat, see the table)")
    rec = payload["recovery"]
    if rec:
        parts.append(f"top head's period within {rec['tolerance']} of the known period in "
                     f"{rec['within_tolerance']}/{rec['series']} series")
    fc = payload["forecast"]
    if fc:
        parts.append(f"median forecast MAE {fc['median_mae']:.3g} ({fc['median_ratio_to_mean_forecast']:.2f} x the mean forecast's)")
    return " · ".join(parts)


def render_scan_html(merged: Any, summary: Any, *, title: str | None = None) -> str:
    """The scan explorer page of ``merged`` and its ``summary`` as one HTML string (a full
    document that also works as a notebook fragment).  Raises a one-line ValueError for a scan
    with no series or no scanned series, non-finite scores of a scanned series, or a summary that
    belongs to another scan."""
    payload = build_scan_payload(merged, summary, title=title)
    uid = new_uid()
    n = len(payload["series"]["names"])
    heading = title if title is not None else f"attnviz scan: {n} series, {sum(payload['heads'])} heads"
    payload["title"] = heading
    part = lambda name: f'data-part="{name}" id="attnviz-{uid}-{name}"'  # noqa: E731
    body = f"""<div class="avx avx-scan" id="attnviz-{uid}" data-attnviz-scan="{uid}">
{style("scan.css")}
<div class="avx-head"><h2 class="avx-title">{html.escape(heading)}</h2><span class="avx-meta">{html.escape(_meta(payload))}</span></div>
{FALLBACK}
<div class="avx-body" style="display:none">
<div class="avx-bar">
<button type="button" {part("png")} title="download the grid, the head's distributions and the similarity matrix as they are now">PNG of this view</button>
<span class="avx-info" {part("info")}></span>
</div>
<div class="avx-scan-main">
<div class="avx-scan-side">
<div class="avx-panel"><canvas {part("grid")}></canvas></div>
<div class="avx-cluster" {part("cluster")}></div>
</div>
<div class="avx-panel avx-scan-dist"><canvas {part("dist")}></canvas></div>
<div class="avx-panel avx-scan-periods"><canvas {part("periods")}></canvas></div>
<div class="avx-panel avx-scan-sim"><canvas {part("sim")}></canvas></div>
</div>
<p class="avx-note">series (click a header to sort, a row to mark the series in the distributions; the last two columns are the selected head's)</p>
<div class="avx-table-wrap avx-scan-table"><table {part("table")}></table></div>
</div>
<div class="avx-tip" data-part="tip"></div>
</div>
{widget_scripts(uid, payload, "scan.js")}"""
    return document(heading, body)


def write_scan_html(merged: Any, summary: Any, path: Any, *, title: str | None = None) -> Path:
    """Write :func:`render_scan_html` to ``path`` (parents created, atomically) and return the
    path; a path that cannot be written is a one-line ValueError naming it."""
    return write_page(path, lambda: render_scan_html(merged, summary, title=title), "the scan explorer")
