"""Merging a scan's shards into its tables and dataset-level statistics (rank 0's job).

``heads.csv``: one row per scanned series x layer x head. ``series.csv``: one row per series,
scanned or skipped (with the reason). With ``--ablate`` both gain the ablation columns of
:mod:`attnviz.scan.ablation`. The summary's per-head statistics are means over series
with bootstrap intervals, the same on phase-randomised surrogates of the same series (the null
baseline), and the paired difference, so a "period head" is judged against chance.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .ablation import head_label
from .shards import ScanSettings, read_shard
from .stats import Interval, bootstrap_means, head_clusters

__all__ = ["MergedScan", "merge_shards"]


@dataclass
class MergedScan:
    """Every shard of a scan, stacked in series order."""

    layer_names: list[str]
    num_heads: list[int]
    scores: np.ndarray  # (series, layers, heads), NaN for skipped series and padded heads
    periods: np.ndarray
    null_scores: np.ndarray
    mae: np.ndarray
    mean_mae: np.ndarray
    similarity: np.ndarray  # (layers*heads, layers*heads) mean lag-profile correlation
    info: list[dict[str, Any]]
    samples_per_col: float
    topk_delta: np.ndarray | None = None  # (series,) ΔMAE of the top-K / random heads (--ablate)
    random_delta: np.ndarray | None = None
    ablate: int = 0  # K of --ablate; 0: no ablation columns

    @property
    def scanned(self) -> np.ndarray:
        return np.array([not row["skipped"] for row in self.info], dtype=bool)

    @property
    def real(self) -> np.ndarray:
        width = self.scores.shape[2]
        return np.array([[h < n for h in range(width)] for n in self.num_heads]).reshape(-1)

    def head_label(self, flat: int) -> str:
        layer, head = divmod(int(flat), self.scores.shape[2])
        return f"{self.layer_names[layer]}:{head}"

    # ----- tables ------------------------------------------------------------------------------
    def heads_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["series", "layer", "head", "period_samples", "score", "null_score", "true_period"]
                        + (["ablated_in_topk", "topk_delta_mae", "ablated_in_random", "random_delta_mae"] if self.ablate else []))
        for s, row in enumerate(self.info):
            if row["skipped"]:
                continue
            for li, name in enumerate(self.layer_names):
                for h in range(self.num_heads[li]):
                    writer.writerow([row["series"], name, h, _cell(self.periods[s, li, h]), _cell(self.scores[s, li, h]),
                                     _cell(self.null_scores[s, li, h]), _cell(row["true_period"])]
                                    + (self._ablated(s, name, h) if self.ablate else []))
        return buffer.getvalue()

    def _ablated(self, s: int, layer: str, head: int) -> list[Any]:
        """[in top-K, its ΔMAE or '', in random, its ΔMAE or ''] of one head of series ``s``."""
        cells: list[Any] = []
        for key, delta in (("topk", self.topk_delta), ("random", self.random_delta)):
            inside = [layer, head] in (self.info[s].get(f"{key}_heads") or [])
            cells += [int(inside), _cell(delta[s]) if inside else ""]
        return cells

    def series_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["series", "rows", "skipped", "reason", "mae", "mean_forecast_mae", "true_period",
                         "top_layer", "top_head", "top_period_samples"]
                        + (["topk_heads", "topk_delta_mae", "random_heads", "random_delta_mae"] if self.ablate else []))
        for s, row in enumerate(self.info):
            ablated = [head_label(row.get("topk_heads")), _cell(self.topk_delta[s]),
                       head_label(row.get("random_heads")), _cell(self.random_delta[s])] if self.ablate else []
            writer.writerow([row["series"], row["rows"], int(row["skipped"]), row["reason"], _cell(self.mae[s]),
                             _cell(self.mean_mae[s]), _cell(row["true_period"]), row["top_layer"] or "",
                             "" if row["top_head"] is None else row["top_head"], _cell(row["top_period"])] + ablated)
        return buffer.getvalue()

    # ----- statistics --------------------------------------------------------------------------
    def head_statistics(self, seed: int, resamples: int = 1000) -> dict[str, Interval | None]:
        used = self.scanned
        scores = bootstrap_means(self.scores[used], resamples, seed=seed)
        if not np.isfinite(self.null_scores[used]).any():
            return {"score": scores, "null": None, "difference": None}
        null = bootstrap_means(self.null_scores[used], resamples, seed=seed + 1)
        diff = bootstrap_means(self.scores[used] - self.null_scores[used], resamples, seed=seed + 2)
        return {"score": scores, "null": null, "difference": diff}

    def period_recovery(self) -> dict[str, Any] | None:
        """How often the top head's period matches the known period (within max(one column, 8 %))."""
        rows = [(r["true_period"], r["top_period"]) for r in self.info if not r["skipped"] and r["true_period"]]
        if not rows:
            return None
        true = np.array([t for t, _ in rows], dtype=float)
        found = np.array([np.nan if d is None else d for _, d in rows], dtype=float)
        tol = np.maximum(self.samples_per_col, 0.08 * true)
        ok = np.isfinite(found) & (np.abs(found - true) <= tol)
        return {"series": len(rows), "within_tolerance": int(ok.sum()), "share": float(ok.mean()),
                "tolerance": "max(one column, 8 % of the true period)", "true": true, "detected": found}

    def summary(self, seed: int, threshold: float = 0.5) -> dict[str, Any]:
        stats = self.head_statistics(seed)
        score, null, diff = stats["score"], stats["null"], stats["difference"]
        heads = []
        for li, name in enumerate(self.layer_names):
            for h in range(self.num_heads[li]):
                entry: dict[str, Any] = {"layer": name, "head": h, "mean_score": score.mean[li, h],
                                         "score_ci": [score.lo[li, h], score.hi[li, h]],
                                         "median_period_samples": _median(self.periods[self.scanned, li, h])}
                if null is not None and diff is not None:
                    entry.update(null_mean_score=null.mean[li, h], null_score_ci=[null.lo[li, h], null.hi[li, h]],
                                 difference_ci=[diff.lo[li, h], diff.hi[li, h]],
                                 above_null=bool(np.isfinite(diff.lo[li, h]) and diff.lo[li, h] > 0))
                heads.append(entry)
        heads.sort(key=lambda e: -e["mean_score"] if math.isfinite(e["mean_score"]) else math.inf)
        clusters, _ = head_clusters(self.similarity, self.real, threshold)
        mae = self.mae[self.scanned]
        recovery = self.period_recovery()
        return {
            "series": len(self.info),
            "scanned": int(self.scanned.sum()),
            "skipped": int((~self.scanned).sum()),
            "interval": f"95 % bootstrap percentile interval over series ({score.n} series, 1000 resamples)",
            "null_baseline": "phase-randomised surrogate of each series (same spectrum, random phases)" if null else None,
            "heads": heads,
            "head_clusters": {
                "threshold": threshold,
                "rule": "average linkage on 1 - mean correlation of lag profiles across series",
                "clusters": [{"heads": [self.head_label(m) for m in c.members], "mean_similarity": c.mean_similarity}
                             for c in clusters if len(c.members) > 1],
            },
            "forecast": None if not np.isfinite(mae).any() else {
                "median_mae": float(np.nanmedian(mae)),
                "median_ratio_to_mean_forecast": float(np.nanmedian(mae / self.mean_mae[self.scanned])),
            },
            "period_recovery": None if recovery is None else {k: v for k, v in recovery.items() if k not in ("true", "detected")},
        }


def merge_shards(out: Path, settings: ScanSettings, layer_names: list[str], num_heads: list[int], samples_per_col: float) -> MergedScan:
    """Read every shard of ``settings`` (all must be present and valid) and stack them."""
    parts = [read_shard(out, k, settings) for k in range(settings.shards)]
    cat = {name: np.concatenate([p[0][name] for p in parts])
           for name in ("scores", "periods", "null_scores", "mae", "mean_mae", "topk_delta", "random_delta")}
    corr = sum(p[0]["corr_sum"] for p in parts)
    count = sum(p[0]["corr_count"] for p in parts)
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = np.where(count > 0, corr / np.maximum(count, 1), np.nan)
    info = [row for p in parts for row in p[1]]
    return MergedScan(layer_names, num_heads, cat["scores"], cat["periods"], cat["null_scores"], cat["mae"],
                      cat["mean_mae"], similarity, info, samples_per_col, cat["topk_delta"], cat["random_delta"],
                      settings.ablate)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    value = float(value)
    return "" if not math.isfinite(value) else f"{value:.6g}"


def _median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan
