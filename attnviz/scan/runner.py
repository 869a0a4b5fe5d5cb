"""Running a scan: batched analyses of many series, written shard by shard, merged into tables.

Work is split by shard: shard ``k`` (series ``k*S .. (k+1)*S - 1``) belongs to rank
``k % world``. Under ``torchrun`` (torch.distributed, gloo on CPU, NCCL on GPUs, one device per
rank) each rank computes its own shards, then rank 0 merges every shard; alone, the process is
rank 0 of 1. Each series is reduced on the spot to per-head scores, periods and lag-profile
similarities, so memory does not grow with the number of series and nothing large crosses
processes. Surrogate series for the null baseline (and, with ``--ablate``, the random heads of
:mod:`~attnviz.scan.ablation`) are seeded by the series' index, so ranks, batch sizes and resumed
runs all give the same numbers.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .shards import ScanSettings, ShardError, read_shard, shard_path, write_shard
from .sources import ScanItem
from .stats import lag_profile_correlation, phase_surrogate, real_heads

__all__ = ["Distributed", "compute_shard", "head_arrays", "run_shards"]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torch.distributed job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device: str) -> "Distributed":
        """Join the job torchrun started (WORLD_SIZE > 1), else a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0") or 0))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def head_arrays(res: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """(layers, heads) scores and periods of one result, NaN where a layer has fewer heads, and
    the ranking's caveat for this series ("" when its scores can be compared with others')."""
    shape = res.time_maps.shape[:2]
    scores, periods = np.full(shape, np.nan), np.full(shape, np.nan)
    with warnings.catch_warnings():  # the caveat is returned (series.csv records it), not shouted
        warnings.simplefilter("ignore")
        ranked = res.ranked_heads
    for h in ranked:
        li = res.layer_index(h.layer)
        scores[li, h.head] = h.score
        periods[li, h.head] = h.period_samples
    caveat = "; ".join(c.short for c in res.series_periodicity.caveats())
    return scores, periods, caveat


def compute_shard(
    explainer: Any, items: Sequence[ScanItem], indices: Sequence[int], settings: ScanSettings, batch_size: int,
    ablation: Any = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Analyse the items of one shard in batches; return its arrays and per-series info.

    ablation: a :class:`~attnviz.scan.ablation.ScanAblation` (``--ablate``) or None."""
    from ..evaluation import mae, mean_forecast

    n, layers, heads = len(items), settings.layers, settings.heads
    flat = layers * heads
    arrays = {
        "index": np.asarray(indices, dtype=np.int64),
        "scores": np.full((n, layers, heads), np.nan),
        "periods": np.full((n, layers, heads), np.nan),
        "null_scores": np.full((n, layers, heads), np.nan),
        "mae": np.full(n, np.nan),
        "mean_mae": np.full(n, np.nan),
        "corr_sum": np.zeros((flat, flat)),
        "corr_count": np.zeros((flat, flat)),
        "topk_delta": np.full(n, np.nan),
        "random_delta": np.full(n, np.nan),
    }
    info: list[dict[str, Any]] = [_info(item) for item in items]
    todo = [i for i, item in enumerate(items) if not item.skip]
    real = real_heads([explainer.num_heads[name] for name in explainer.layer_names], heads)  # padding is not a head
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        try:
            results = explainer.analyze_many([items[i].history for i in batch], settings.horizon)
        except ValueError as exc:  # e.g. a history the model cannot cover: skip, say why
            for i in batch:
                info[i]["skipped"], info[i]["reason"] = True, str(exc).splitlines()[0]
            continue
        nulls: list[Any] = [None] * len(batch)
        if settings.null:
            surrogates = [phase_surrogate(items[i].history, settings.seed * 1_000_003 + indices[i]) for i in batch]
            try:
                nulls = explainer.analyze_many(surrogates, settings.horizon)
            except ValueError as exc:  # the series stay scanned; their null scores stay empty, and say why
                for i in batch:
                    info[i]["null_reason"] = str(exc).splitlines()[0]
        for i, res, null in zip(batch, results, nulls):
            scores, periods, caveat = head_arrays(res)
            arrays["scores"][i], arrays["periods"][i] = scores, periods
            info[i]["caveat"] = caveat
            if null is not None:
                arrays["null_scores"][i] = head_arrays(null)[0]
            corr, valid = lag_profile_correlation(res.lag_curves().values.reshape(flat, -1), real)
            arrays["corr_sum"] += corr
            arrays["corr_count"] += valid
            item = items[i]
            if item.truth is not None:
                arrays["mae"][i] = mae(res.forecast.forecast, item.truth)
                arrays["mean_mae"][i] = mae(mean_forecast(item.history, settings.horizon), item.truth)
            if np.isfinite(scores).any():
                top = int(np.nanargmax(np.where(np.isfinite(scores), scores, -np.inf)))
                info[i].update(top_layer=res.layer_names[top // heads], top_head=top % heads, top_period=periods.flat[top])
        known = [(i, res) for i, res in zip(batch, results) if items[i].truth is not None]
        if ablation is not None and known:
            done = ablation.run([items[i].history for i, _ in known], [items[i].truth for i, _ in known],
                                [res for _, res in known], [indices[i] for i, _ in known])
            for (i, _), row in zip(known, done):
                arrays["topk_delta"][i], arrays["random_delta"][i] = row.pop("topk_delta"), row.pop("random_delta")
                info[i].update(row)
    return arrays, info


def _info(item: ScanItem) -> dict[str, Any]:
    return {
        "series": item.name,
        "rows": item.rows,
        "skipped": bool(item.skip),
        "reason": item.skip,
        "caveat": "",
        "null_reason": "",
        "true_period": item.period,
        "top_layer": None,
        "top_head": None,
        "top_period": None,
    }


def run_shards(
    explainer: Any,
    items: Sequence[ScanItem],
    out: Path,
    settings: ScanSettings,
    batch_size: int,
    where: Distributed,
    report: Callable[[str], None] = lambda message: None,
    progress: Callable[[int, int], None] = lambda done, total: None,
    ablation: Any = None,
) -> dict[str, int]:
    """Compute this rank's missing or corrupt shards; returns counts of what was done."""
    mine = [k for k in range(settings.shards) if k % where.world == where.rank]
    done = {"computed": 0, "reused": 0, "recomputed": 0}
    for step, k in enumerate(mine):
        if shard_path(out, k).is_file():
            try:
                read_shard(out, k, settings)
                done["reused"] += 1
                progress(step + 1, len(mine))
                continue
            except ShardError as exc:
                report(f"{exc}; recomputing it")
                done["recomputed"] += 1
        span = settings.shard_range(k)
        arrays, info = compute_shard(explainer, [items[i] for i in span], list(span), settings, batch_size, ablation)
        write_shard(out, k, settings, arrays, info)
        done["computed"] += 1
        progress(step + 1, len(mine))
    return done
