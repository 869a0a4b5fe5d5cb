"""A scan's work on disk: its settings, and one shard per block of series.

A shard holds the small per-series, per-head results of ``shard_size`` consecutive series
(scores, periods, null scores, forecast errors, and with ``--ablate`` each series' two ablation
error changes; its ablated head sets are in the per-series ``info``) and the summed head-by-head lag-profile
similarity of those series — never attention maps. Shards are written atomically (a temporary
file renamed into place) and carry the settings' fingerprint, so a scan run again skips the
shards that are complete and valid, recomputes a corrupt one, and never mixes two scans.
Arrays only (``allow_pickle=False``): reading a shard runs no code.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["ScanSettings", "ShardError", "read_shard", "shard_path", "write_shard", "claim_folder"]

ARRAYS = ("index", "scores", "periods", "null_scores", "mae", "mean_mae", "corr_sum", "corr_count",
          "topk_delta", "random_delta")


class ShardError(ValueError):
    """A shard file that cannot be used (corrupt, truncated, or from other settings)."""


@dataclass(frozen=True)
class ScanSettings:
    """Everything that decides a scan's numbers; two runs with equal settings share shards."""

    source: str
    series: int
    data_digest: str  # names, histories and truths of every series (``items_digest``)
    length: int
    horizon: int
    holdout: bool
    null: bool
    seed: int
    shard_size: int
    model: str
    layers: int
    heads: int
    ablate: int = 0  # K of --ablate (0: no ablation)
    ablate_mode: str = ""  # "mean" or "zero" with --ablate
    ablate_reference: str = ""  # the reference set of the mean ablation (see attnviz.scan.ablation)
    weights_digest: str = ""  # every parameter and buffer of the model (``model_digest``)
    grid: str = ""  # the token geometry at this length and horizon (VisionTS: depends on the periodicity)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def fingerprint(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def shards(self) -> int:
        return -(-self.series // self.shard_size)

    def shard_range(self, k: int) -> range:
        return range(k * self.shard_size, min((k + 1) * self.shard_size, self.series))


def items_digest(items: Sequence[Any]) -> str:
    """Digest of every series' name, history, truth and known period: a file edited in place, or
    another file under the same name, is another scan."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.name}\0{item.skip}\0{item.period}\0".encode())
        for values in (item.history, item.truth):
            digest.update(b"-" if values is None else np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def model_digest(model: Any) -> str:
    """Digest of a torch module's parameters and buffers (names, shapes, dtypes, values): two
    randomly initialised models, or two checkpoints, never share shards."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{data.dtype}\0".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()[:16]


def claim_folder(out: Path, settings: ScanSettings) -> int:
    """Make ``out`` this scan's folder: write its settings, or check they match the scan that
    is already there (then its valid shards are reused). Returns how many shard files exist."""
    path = out / "scan_settings.json"
    (out / "shards").mkdir(parents=True, exist_ok=True)
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = None
        if before != settings.to_dict():
            changed = [k for k, v in settings.to_dict().items() if not isinstance(before, dict) or before.get(k) != v]
            detail = ", ".join(f"{k} {before.get(k)!r} -> {settings.to_dict()[k]!r}" for k in changed[:3]) if isinstance(before, dict) else "unreadable settings"
            raise ValueError(
                f"{out} holds another scan's shards ({detail}); use another --out, or delete {out / 'shards'} to start over"
            )
    else:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(settings.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)
    return len(list((out / "shards").glob("shard-*.npz")))


def shard_path(out: Path, k: int) -> Path:
    return out / "shards" / f"shard-{k:05d}.npz"


def write_shard(out: Path, k: int, settings: ScanSettings, arrays: dict[str, np.ndarray], info: list[dict[str, Any]]) -> Path:
    """Write shard ``k`` atomically."""
    path = shard_path(out, k)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    payload = {name: np.asarray(arrays[name]) for name in ARRAYS}
    payload["info"] = np.asarray(json.dumps(info))
    payload["fingerprint"] = np.asarray(settings.fingerprint)
    with open(tmp, "wb") as handle:
        np.savez(handle, **payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def read_shard(out: Path, k: int, settings: ScanSettings) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Shard ``k`` checked against ``settings``; :class:`ShardError` says what is wrong."""
    path = shard_path(out, k)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ARRAYS}
            info = json.loads(str(data["info"]))
            fingerprint = str(data["fingerprint"])
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise ShardError(f"{path.name} is corrupt ({type(exc).__name__}: {str(exc)[:80]})") from None
    if fingerprint != settings.fingerprint:
        raise ShardError(f"{path.name} belongs to a scan with other settings")
    expected = len(settings.shard_range(k))
    if arrays["index"].shape != (expected,) or len(info) != expected or list(arrays["index"]) != list(settings.shard_range(k)):
        raise ShardError(f"{path.name} holds {arrays['index'].shape[0]} series, expected {expected}")
    return arrays, info
