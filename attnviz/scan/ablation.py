"""``attnviz scan --ablate K``: does taking out each series' top-K heads hurt its forecast more
than taking out K random heads?

For every scanned series (all have a truth: ``--synthetic``, or ``--holdout``; ``--ablate``
without a truth is refused with a one-line error, since "hurts" is measured against the truth):

* **top-K**: the series' own K best heads of ``ranked_heads`` (the unablated analysis the scan
  already made), ablated together;
* **random**: K heads drawn uniformly, without replacement, from all heads of the model, once
  per series with ``numpy.random.default_rng([seed, series_index])`` (top heads may be drawn), so
  ranks, batch sizes and resumed runs draw the same heads;
* ablation as :class:`attnviz.ablation.HeadAblator` does it (at the head's slice of the input to
  ``attn.proj``): ``mean`` (default) replaces the head's output by its per-token-position mean
  over a **fixed reference set**: :meth:`HeadAblator.default_means`, the 32 harmonic mixtures of
  ``attnviz.evaluation.harmonic_mixtures`` with seed 2024 at the scan's length and horizon (not
  the scan's own series, so the means do not depend on how series fall into shards, batches or
  ranks); ``zero`` replaces it by 0;
* ``ΔMAE = MAE(ablated forecast, truth) - MAE(unablated forecast, truth)``, positive = the
  ablation hurts.  Both forecasts are plain (fused) forwards, as in ``HeadAblator.run``; the
  unablated one equals series.csv's ``mae`` forecast up to float rounding.  A series' unablated,
  top-K and random forecasts run as three elements of one batched forward (one head set per
  element, ``HeadAblator.ablate_each``; an empty set leaves its element bitwise unablated), so a
  batch of B series costs one forward of 3B.

Tables (only with ``--ablate``; without it the tables are unchanged):

``heads.csv``
    ``ablated_in_topk`` / ``ablated_in_random``: 1 when the head is in this series' top-K /
    random set, else 0; ``topk_delta_mae`` / ``random_delta_mae``: that set's ΔMAE, on the rows of
    the heads in the set only (empty elsewhere).
``series.csv``
    ``topk_heads`` (rank order) and ``random_heads`` as ``layer:head`` joined by ``;``, and
    ``topk_delta_mae``, ``random_delta_mae``.
``summary.json`` ``"ablation"``
    mode, k, reference, the mean ΔMAE of top-K and of random heads over series, the mean paired
    difference (top-K - random) and the share of series where top-K hurt more, each with a 95 %
    bootstrap percentile interval over series (:func:`attnviz.intervals.bootstrap_means`, one
    set of resamples for all, so the intervals are paired), and a verdict read off the
    difference's interval — only from ``MIN_SERIES_FOR_VERDICT`` series on (with fewer, the
    percentile interval is little more than the range of a handful of values).
"""
from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["ScanAblation", "ablation_fields", "ablation_summary", "check_request", "head_label"]

RESAMPLES = 1000


def check_request(args: argparse.Namespace) -> None:
    """The checks that need no model: K >= 1 and a truth for every series (the parser already
    refuses a negative --seed)."""
    if args.ablate is None:
        if args.ablate_mode is not None:
            raise ValueError("--ablate-mode is for --ablate K")
        return
    if args.ablate < 1:
        raise ValueError(f"--ablate {args.ablate}: give how many top heads to ablate (1 or more)")
    if not (args.holdout or args.synthetic):
        raise ValueError("--ablate measures the forecast error against the truth: add --holdout (each series' "
                         "last HORIZON values are held back as truth) or scan --synthetic series")


def ablation_fields(args: argparse.Namespace, total_heads: int) -> dict[str, Any]:
    """The ScanSettings fields of ``--ablate`` (empty without it); K is checked against the model."""
    from ..ablation import DEFAULT_REFERENCE_COUNT, DEFAULT_REFERENCE_SEED

    if args.ablate is None:
        return {}
    if args.ablate > total_heads:
        raise ValueError(f"--ablate {args.ablate}: the model has {total_heads} attention heads; give 1..{total_heads}")
    mode = args.ablate_mode or "mean"
    reference = f"harmonic_mixtures:count={DEFAULT_REFERENCE_COUNT}:seed={DEFAULT_REFERENCE_SEED}" if mode == "mean" else ""
    return {"ablate": int(args.ablate), "ablate_mode": mode, "ablate_reference": reference}


def head_label(heads: Sequence[Sequence[Any]] | None) -> str:
    """[[layer, head], ...] -> 'layer:head;layer:head' (empty for None)."""
    return ";".join(f"{layer}:{head}" for layer, head in heads or ())


@dataclass
class ScanAblation:
    """Ablates each series' top-K and K random heads for a scan (see the module doc)."""

    ablator: Any  # attnviz.ablation.HeadAblator
    k: int
    mode: str
    seed: int
    horizon: int
    _means: dict = field(default_factory=dict, repr=False)  # {history length: ReferenceMeans}

    @classmethod
    def from_settings(cls, ablator: Any, settings: Any) -> "ScanAblation | None":
        if not settings.ablate:
            return None
        return cls(ablator, int(settings.ablate), settings.ablate_mode, int(settings.seed), int(settings.horizon))

    def means(self, length: int) -> Any:
        """Reference means at this history length (computed on first use: a resumed scan with
        every shard done runs no reference forward)."""
        if self.mode == "zero":
            return None
        if length not in self._means:
            self._means[length] = self.ablator.default_means(length, self.horizon)
        return self._means[length]

    def top_heads(self, res: Any) -> list[tuple[str, int]]:
        with warnings.catch_warnings():  # ranking caveats are the scan's, not repeated here
            warnings.simplefilter("ignore")
            ranked = res.ranked_heads
        return [(s.layer, int(s.head)) for s in ranked if s.layer in self.ablator.modules][: self.k]

    def random_heads(self, index: int) -> list[tuple[str, int]]:
        pool = self.ablator.all_heads
        rng = np.random.default_rng([self.seed, int(index)])
        return [pool[j] for j in sorted(rng.choice(len(pool), size=self.k, replace=False))]

    def run(self, histories: Sequence[np.ndarray], truths: Sequence[np.ndarray], results: Sequence[Any],
            indices: Sequence[int]) -> list[dict[str, Any]]:
        """ΔMAE of the top-K and the random heads of each series, in one batched forward."""
        from ..evaluation import mae

        tops = [self.top_heads(res) for res in results]
        randoms = [self.random_heads(i) for i in indices]
        sets = [s for top, rand in zip(tops, randoms) for s in ([], top, rand)]
        lengths = {len(x) for x in histories}
        if len(lengths) > 1:  # per-position means need one length per forward (scans have one)
            raise ValueError(f"series of several lengths {sorted(lengths)} in one ablation batch")
        with self.ablator.ablate_each(sets, self.mode, self.means(lengths.pop())):
            forecasts = self.ablator.forecaster.predict_many([x for x in histories for _ in range(3)], self.horizon)
        out = []
        for j, truth in enumerate(truths):
            base, top, rand = (mae(f.forecast, truth) for f in forecasts[3 * j : 3 * j + 3])
            out.append({"topk_heads": [list(h) for h in tops[j]], "random_heads": [list(h) for h in randoms[j]],
                        "topk_delta": top - base, "random_delta": rand - base})
        return out


def ablation_summary(merged: Any, settings: Any) -> dict[str, Any]:
    """The ``"ablation"`` entry of summary.json (see the module doc)."""
    from ..intervals import bootstrap_means
    from .stats import MIN_SERIES_FOR_VERDICT

    top, rand = np.asarray(merged.topk_delta, float), np.asarray(merged.random_delta, float)
    ok = np.isfinite(top) & np.isfinite(rand)
    top, rand = top[ok], rand[ok]
    rows = np.stack([top, rand, top - rand, (top > rand).astype(float)], axis=1)
    iv = bootstrap_means(rows, RESAMPLES, seed=settings.seed + 3)

    def entry(i: int) -> dict[str, Any]:
        return {"mean": float(iv.mean[i]), "ci": [float(iv.lo[i]), float(iv.hi[i])],
                "median": float(np.median(rows[:, i])) if len(rows) else float("nan")}

    diff = entry(2)
    lo, hi = diff["ci"]
    verdict = ("no series has both ablations" if not len(rows) else
               f"no verdict: {len(rows)} series, at least {MIN_SERIES_FOR_VERDICT} needed" if len(rows) < MIN_SERIES_FOR_VERDICT else
               "top-K heads hurt more than random heads (interval of the mean difference above 0)" if lo > 0 else
               "random heads hurt more than top-K heads (interval of the mean difference below 0)" if hi < 0 else
               "no difference shown (the interval of the mean difference holds 0)")
    reference = None
    if settings.ablate_mode == "mean":
        from ..ablation import DEFAULT_REFERENCE_COUNT, DEFAULT_REFERENCE_SEED

        reference = {"source": "HeadAblator.default_means: harmonic mixtures (attnviz.evaluation), not the scanned series",
                     "count": DEFAULT_REFERENCE_COUNT, "seed": DEFAULT_REFERENCE_SEED, "per_position": True,
                     "history_length": settings.length, "horizon": settings.horizon}
    share = entry(3)
    return {
        "k": settings.ablate, "mode": settings.ablate_mode, "reference": reference,
        "metric": "delta_mae = MAE(ablated forecast, truth) - MAE(unablated forecast, truth); positive = ablation hurts",
        "topk_heads": "the series' own top-K of ranked_heads, ablated together",
        "random_heads": f"K heads drawn uniformly without replacement from all heads, once per series: "
                        f"numpy.random.default_rng([{settings.seed}, series_index])",
        "series": int(ok.sum()),
        "interval": f"95 % bootstrap percentile interval over series ({int(ok.sum())} series, {RESAMPLES} resamples, "
                    f"the same resamples for every entry)",
        "topk_delta_mae": entry(0), "random_delta_mae": entry(1), "difference": diff,
        "share_topk_hurts_more": {"share": share["mean"], "ci": share["ci"], "count": int((top > rand).sum()),
                                  "ties": int((top == rand).sum())},
        "verdict": verdict,
    }
