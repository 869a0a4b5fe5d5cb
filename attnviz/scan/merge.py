"""Merging a scan's shards into its tables and dataset-level statistics (rank 0's job).

``heads.csv``: one row per scanned series x layer x head. ``series.csv``: one row per series,
scanned or skipped (with the reason). With ``--ablate`` both gain the ablation columns of
:mod:`attnviz.scan.ablation`. The summary's per-head statistics are means over series
with bootstrap intervals, the same on phase-randomised surrogates of the same series (the null
baseline), and the paired difference, so a "period head" is judged against chance: a head is
``above_null`` when a one-sided paired t-test of score - null score over series, adjusted by
Benjamini-Hochberg over all heads, gives q < 0.05, and only with at least
``MIN_SERIES_FOR_VERDICT`` series.  Series whose ranking carries a caveat (history too short to
compare heads with it, or flat) are listed in series.csv with the caveat but left out of the
statistics: their scores mean something else.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..intervals import bootstrap_means
from ..periods import RECOVERY_RULE, period_recovered
from .ablation import head_label
from .shards import ScanSettings, read_shard
from .stats import MIN_SERIES_FOR_VERDICT, above_null_test, head_clusters, real_heads

FDR = 0.05  # Benjamini-Hochberg level of above_null

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
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def scanned(self) -> np.ndarray:
        return np.array([not row["skipped"] for row in self.info], dtype=bool)

    @property
    def compared(self) -> np.ndarray:
        """Scanned series whose ranking has no caveat: the ones the statistics are over."""
        return self.scanned & np.array([not row.get("caveat") for row in self.info], dtype=bool)

    @property
    def real(self) -> np.ndarray:
        return real_heads(self.num_heads, self.scores.shape[2])

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
        writer.writerow(["series", "rows", "skipped", "reason", "caveat", "null_reason", "mae", "mean_forecast_mae",
                         "true_period", "top_layer", "top_head", "top_period_samples"]
                        + (["topk_heads", "topk_delta_mae", "random_heads", "random_delta_mae"] if self.ablate else []))
        for s, row in enumerate(self.info):
            ablated = [head_label(row.get("topk_heads")), _cell(self.topk_delta[s]),
                       head_label(row.get("random_heads")), _cell(self.random_delta[s])] if self.ablate else []
            writer.writerow([row["series"], row["rows"], int(row["skipped"]), row["reason"], row.get("caveat", ""),
                             row.get("null_reason", ""), _cell(self.mae[s]),
                             _cell(self.mean_mae[s]), _cell(row["true_period"]), row["top_layer"] or "",
                             "" if row["top_head"] is None else row["top_head"], _cell(row["top_period"])] + ablated)
        return buffer.getvalue()

    # ----- statistics --------------------------------------------------------------------------
    def head_statistics(self, seed: int, resamples: int = 1000) -> dict[str, Any]:
        """Bootstrap intervals of the score, the null score and their difference over the compared
        series, and the per-head test against the null (computed once per seed)."""
        key = ("stats", seed, resamples)
        if key not in self._memo:
            used = self.compared
            scores = bootstrap_means(self.scores[used], resamples, seed=seed)
            stats: dict[str, Any] = {"score": scores, "null": None, "difference": None, "test": None}
            if np.isfinite(self.null_scores[used]).any():
                diff = self.scores[used] - self.null_scores[used]
                stats.update(null=bootstrap_means(self.null_scores[used], resamples, seed=seed + 1),
                             difference=bootstrap_means(diff, resamples, seed=seed + 2), test=above_null_test(diff))
            self._memo[key] = stats
        return self._memo[key]

    def clusters(self, threshold: float = 0.5) -> tuple[list[Any], np.ndarray]:
        """``head_clusters`` of the similarity (computed once per threshold)."""
        key = ("clusters", threshold)
        if key not in self._memo:
            self._memo[key] = head_clusters(self.similarity, self.real, threshold)
        return self._memo[key]

    def period_recovery(self) -> dict[str, Any] | None:
        """How often the top head's period matches the known period (``RECOVERY_RULE``)."""
        rows = [(r["true_period"], r["top_period"]) for r, use in zip(self.info, self.compared) if use and r["true_period"]]
        if not rows:
            return None
        true = np.array([t for t, _ in rows], dtype=float)
        found = np.array([np.nan if d is None else d for _, d in rows], dtype=float)
        ok = period_recovered(found, true, self.samples_per_col)
        return {"series": len(rows), "within_tolerance": int(ok.sum()), "share": float(ok.mean()),
                "tolerance": RECOVERY_RULE, "true": true, "detected": found}

    def summary(self, seed: int, threshold: float = 0.5) -> dict[str, Any]:
        stats = self.head_statistics(seed)
        score, null, diff, test = stats["score"], stats["null"], stats["difference"], stats["test"]
        enough = score.n >= MIN_SERIES_FOR_VERDICT
        heads = []
        for li, name in enumerate(self.layer_names):
            for h in range(self.num_heads[li]):
                entry: dict[str, Any] = {"layer": name, "head": h, "mean_score": score.mean[li, h],
                                         "score_ci": [score.lo[li, h], score.hi[li, h]],
                                         "median_period_samples": _median(self.periods[self.compared, li, h])}
                if null is not None and diff is not None and test is not None:
                    p, q = test[0][li, h], test[1][li, h]
                    entry.update(null_mean_score=null.mean[li, h], null_score_ci=[null.lo[li, h], null.hi[li, h]],
                                 difference_ci=[diff.lo[li, h], diff.hi[li, h]], p_value=p, q_value=q,
                                 above_null=bool(enough and np.isfinite(q) and q < FDR) if enough else None)
                heads.append(entry)
        heads.sort(key=lambda e: -e["mean_score"] if math.isfinite(e["mean_score"]) else math.inf)
        clusters, _ = self.clusters(threshold)
        mae = self.mae[self.scanned]
        recovery = self.period_recovery()
        caveated = int((self.scanned & ~self.compared).sum())
        return {
            "series": len(self.info),
            "scanned": int(self.scanned.sum()),
            "skipped": int((~self.scanned).sum()),
            "compared": int(self.compared.sum()),
            "left_out_of_statistics": None if not caveated else
                f"{caveated} scanned series whose ranking carries a caveat (series.csv, column caveat)",
            "interval": f"95 % bootstrap percentile interval over series ({score.n} series, 1000 resamples)",
            "null_baseline": "phase-randomised surrogate of each series (same spectrum, random phases)" if null else None,
            "above_null_rule": None if null is None else (
                f"one-sided paired t-test of score - null score over series, Benjamini-Hochberg q < {FDR} over all "
                f"{int(self.real.sum())} heads" if enough else
                f"no verdict: {score.n} series compared, at least {MIN_SERIES_FOR_VERDICT} needed"),
            "heads_above_null": None if null is None or not enough else sum(1 for e in heads if e.get("above_null")),
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
