"""Training a ViTime on synthetic series, ViTime's way, with a curriculum and resumable runs.

Input: the blurred history image with the future columns zeroed.  Target: the true value bin
of every column.  Loss: the 1-D earth mover's distance over value bins,
sum_b p_b * |b - true_bin| ** dNorm, averaged over the future columns, plus a smaller weight on
the history columns.  AdamW with warm-up and cosine decay, gradient clipping.

The curriculum is adaptive: ``difficulty`` (see ``SyntheticSeries``) only grows while the
running loss on periodic series stays below a threshold, so the model is widened to harder
data only as fast as it keeps up (jumping straight to the full mix puts small models back on
the mean-forecast plateau).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import correlate1d

from ..evaluation import EvalCase, evaluate_cases, harmonic_mixtures, seed_signal, summarize
from ..forecasters.vitime import ViTimeConfig, ViTimeForecaster, ViTimeMAE, resolve_device
from ..forecasters.vitime.budget import check_training_memory
from ..forecasters.vitime.checkpoint import CheckpointError, resolve_native_paths
from ..progress import ProgressBar
from ..forecasters.vitime.mapping import BLUR_KERNEL_SIZE, STD_EPS, opencv_gaussian_kernel
from .config import TrainConfig
from .growth import can_deepen, deepen_state
from .synthetic import SyntheticSeries

class BatchBuilder:
    """Synthetic series -> (input images, target bins, column weights) on a device."""

    def __init__(self, config: ViTimeConfig, train: TrainConfig, device: torch.device) -> None:
        self.config = config
        self.train = train
        self.device = device
        self.series = SyntheticSeries(train.seed, train.synthetic_spec(config.patch_size[1]))
        self.rng = np.random.default_rng(train.seed + 1)
        kernel = torch.tensor(opencv_gaussian_kernel(BLUR_KERNEL_SIZE), dtype=torch.float32)
        self.kernel = kernel.to(device)
        self._kernel_fft: dict[int, torch.Tensor] = {}
        table = correlate1d(np.eye(config.h), opencv_gaussian_kernel(BLUR_KERNEL_SIZE), axis=0, mode="mirror")
        self.bin_table = torch.tensor(table, dtype=torch.float32, device=device)  # column j: blurred one-hot j
        self.standard_split = config.size[0] / (config.size[0] + config.size[2])

    def state(self) -> dict[str, Any]:
        return {"series": self.series.rng.bit_generator.state, "split": self.rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        self.series.rng.bit_generator.state = state["series"]
        self.rng.bit_generator.state = state["split"]

    def blur(self, bins: torch.Tensor, history: int) -> torch.Tensor:
        """The upstream blur (OpenCV GaussianBlur 31x31 * 31, reflect-101) of one-hot histories.

        Separable and exact: along the value axis a lookup table of blurred one-hot columns,
        along time an FFT convolution over the columns that can be non-zero (history + margin).
        """
        r = BLUR_KERNEL_SIZE // 2
        n, width = bins.shape
        h = self.config.h
        cols = self.bin_table[:, bins[:, :history]].permute(1, 0, 2).reshape(n * h, history)
        span = min(width, history + 2 * r)
        x = F.pad(cols, (0, span - history))
        if span == width:
            x = F.pad(x[:, None], (r, r), mode="reflect")[:, 0]
        else:  # the right neighbours are zero columns of the future
            x = torch.cat([F.pad(x[:, None], (r, 0), mode="reflect")[:, 0], x.new_zeros(n * h, r)], 1)
        nfft = 1 << (x.shape[-1] + BLUR_KERNEL_SIZE - 1).bit_length()
        y = torch.fft.irfft(torch.fft.rfft(x, nfft) * self.kernel_fft(nfft), nfft)
        y = y[:, 2 * r : 2 * r + span] * BLUR_KERNEL_SIZE
        out = torch.zeros(n, h, width, device=self.device)
        out[:, :, :span] = y.reshape(n, h, span)
        return out[:, None]

    def kernel_fft(self, nfft: int) -> torch.Tensor:
        if nfft not in self._kernel_fft:
            self._kernel_fft[nfft] = torch.fft.rfft(self.kernel, nfft)
        return self._kernel_fft[nfft]

    def build(self, n: int, difficulty: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.config
        width = c.width
        series, periodic = self.series.batch_with_labels(n, width, difficulty)
        if self.rng.uniform() < self.train.random_split_prob:
            frac = self.rng.uniform(*self.train.split_range)
        else:
            frac = self.standard_split
        hist = max(2, int(round(frac * width)))
        history = series[:, :hist]
        mu = history.mean(axis=1, keepdims=True)
        std = history.std(axis=1, keepdims=True) + STD_EPS
        norm = (series - mu) / std
        clipped = np.clip(norm, -c.max_scal, c.max_scal)
        bins = np.clip(np.floor((clipped + c.max_scal) / c.resolution), 0, c.h - 1).astype(np.int64)
        target = torch.from_numpy(bins).to(self.device)
        image = self.blur(target, hist)
        weights = torch.full((n, width), self.train.history_weight, device=self.device)
        weights[:, hist:] = 1.0
        return image, target, weights, torch.from_numpy(periodic).to(self.device)


def emd_loss(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, d_norm: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean EMD over columns and the per-series future EMD (in bins) for monitoring.

    logits (B, W, h), target (B, W) bin indices, weights (B, W) (1 = future, <1 = history).
    """
    h = logits.shape[-1]
    probs = torch.softmax(logits, dim=-1)
    bins = torch.arange(h, device=logits.device, dtype=probs.dtype)
    dist = (bins[None, None, :] - target[..., None].to(probs.dtype)).abs()
    if d_norm != 1:
        dist = dist**d_norm
    per_col = (probs * dist).sum(-1)
    future = weights >= 1.0
    fut = (per_col * future).sum(1) / future.sum(1).clamp_min(1)
    hist = (per_col * ~future).sum(1) / (~future).sum(1).clamp_min(1)
    hist_w = weights[~future][0] if (~future).any() else weights.new_tensor(0.0)
    loss = (fut + hist_w * hist).mean()
    return loss, fut.detach()


def learning_rate(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def eval_set(count: int) -> list[EvalCase]:
    cases = harmonic_mixtures(count=count, seed=2024)
    full = seed_signal(512 + 720)
    cases.append(EvalCase("seed_signal", full[:512], full[512:], 62.83))
    return cases


def evaluate_model(model: ViTimeMAE, device: torch.device, cases: list[EvalCase]) -> dict[str, float]:
    was_training = model.training
    fc = ViTimeForecaster(model, device=device)
    rows = evaluate_cases(fc, cases)
    model.train(was_training)
    summary = summarize([r for r in rows if r.name != "seed_signal"])
    summary["seed_ratio_to_mean"] = next(r.ratio_to_mean for r in rows if r.name == "seed_signal")
    return summary


class TrainingInputError(ValueError):
    """The run cannot start or export: its model settings, or a checkpoint or weights file, do not fit.

    Raised before the first step (or by the export), so the CLI prints it as one line; a
    ValueError raised inside a training step is a bug and keeps its traceback.
    """


_CHECKPOINT_KEYS = ("model", "config", "step")


def _read_torch_file(path: Path) -> Any:
    """``torch.load`` without pickle code; unreadable files raise TrainingInputError naming them."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        # torch's weights-only message opens with advice to unpickle unsafely; keep only its reason
        lines = str(exc).split("WeightsUnpickler error:")[-1].strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise TrainingInputError(
            f"{path} is not a readable training checkpoint (truncated, corrupt, or holding more than "
            f"tensors and plain values): {reason}"
        ) from None


def _is_training_checkpoint(payload: Any) -> bool:
    return isinstance(payload, dict) and all(key in payload for key in _CHECKPOINT_KEYS)


def load_training_checkpoint(path: str | Path, role: str) -> dict[str, Any]:
    """A checkpoint written by ``train`` (``--resume``, ``--export-only``); ``role`` prefixes errors."""
    path = Path(path)
    try:
        payload = _read_torch_file(path)
    except TrainingInputError as err:
        raise TrainingInputError(f"{role}: {err}") from None
    if not _is_training_checkpoint(payload):
        raise TrainingInputError(
            f"{role}: {path} is not a training checkpoint written by attnviz train "
            f"(expected a dict with {', '.join(map(repr, _CHECKPOINT_KEYS))}, ...)"
        )
    return payload


def checkpoint_config(payload: dict[str, Any], path: str | Path, role: str) -> ViTimeConfig:
    """The model config a training checkpoint was written with; a foreign one is a TrainingInputError."""
    try:
        return ViTimeConfig.from_mapping(payload["config"])
    except (ValueError, TypeError) as err:
        raise TrainingInputError(f"{role}: {path}: its 'config' does not describe a ViTime model: {err}") from None


def initial_weights(
    path: str | Path,
    config: ViTimeConfig,
    fresh: dict[str, torch.Tensor] | None = None,
    max_memory_gb: float | None = None,
) -> dict[str, torch.Tensor]:
    """Weights to start from: a training checkpoint, or any file ``load_forecaster`` reads.

    The architecture must match the run's model, except that the run may have more encoder or
    decoder blocks: given the run's freshly initialised state (``fresh``), the trained blocks
    are spread over the deeper stack and the new ones start as identities (``growth``).
    Any other mismatch is an error naming both models.
    """
    path = Path(path)
    if not path.exists():
        raise TrainingInputError(f"--init-from: no such file {path}")
    state: dict[str, Any] | None = None
    if path.is_file() and resolve_native_paths(path) is None:
        try:  # a training checkpoint, whatever its suffix; anything else is for load_forecaster
            raw = _read_torch_file(path)
        except TrainingInputError:
            raw = None
        if _is_training_checkpoint(raw):
            source, state = checkpoint_config(raw, path, "--init-from"), raw["model"]
    if state is None:
        try:
            fc = ViTimeForecaster.from_checkpoint(path, device="cpu", max_memory_gb=max_memory_gb)
        except CheckpointError as err:
            raise TrainingInputError(
                f"--init-from: {err} (a training checkpoint written by attnviz train is also accepted)"
            ) from None
        source, state = fc.config, fc.model.state_dict()
    if source.to_dict() != config.to_dict():
        if fresh is not None and can_deepen(source, config):
            return deepen_state(state, source, config, fresh)
        raise TrainingInputError(
            f"--init-from {path}: its model ({source.describe()}) differs from this run's ({config.describe()})"
        )
    return state


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig, resume: bool = False, log=print) -> Path:
    """Run (or resume) training; returns the checkpoint path. Safe to interrupt at any time."""
    try:  # settings and the memory one step needs are checked before anything is built or written
        config = ViTimeConfig.from_mapping(cfg.model)
    except ValueError as err:
        raise TrainingInputError(f"model settings: {err}") from None
    try:
        check_training_memory(config, cfg.batch_size, cfg.max_memory_gb)
    except ValueError as err:
        raise TrainingInputError(str(err)) from None
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    log_path = out / "log.jsonl"
    torch.manual_seed(cfg.seed)
    model = ViTimeMAE(config, max_memory_gb=cfg.max_memory_gb).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    builder = BatchBuilder(config, cfg, device)
    step, difficulty, ema = 0, cfg.start_difficulty, None
    elapsed = 0.0
    if resume and ckpt_path.exists():
        state = load_training_checkpoint(ckpt_path, "--resume")
        saved = checkpoint_config(state, ckpt_path, "--resume")
        if saved.to_dict() != config.to_dict():
            raise TrainingInputError(
                f"--resume: {ckpt_path} holds {saved.describe()}, but this run builds {config.describe()}; "
                "resume with the flags the run started with (e.g. --depth / --decoder-depth)"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        builder.load_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        step, difficulty, ema = state["step"], state["difficulty"], state["ema"]
        elapsed = state.get("elapsed", 0.0)
        log(f"resumed from {ckpt_path} at step {step} (difficulty {difficulty:.3f})")
    else:
        if resume:
            log(f"no checkpoint at {ckpt_path}; starting fresh")
        if cfg.init_from:
            model.load_state_dict(
                initial_weights(cfg.init_from, config, model.state_dict(), cfg.max_memory_gb)
            )
            log(f"initialised from {cfg.init_from}")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"{config.describe()}; {n_params / 1e6:.2f} M trainable parameters; device {device}")
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    cases = eval_set(cfg.eval_cases)
    model.train()
    t0 = time.time() - elapsed

    def save() -> None:
        _atomic_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": builder.state(),
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "difficulty": difficulty,
                "ema": ema,
                "elapsed": time.time() - t0,
                "config": config.to_dict(),
                "train_config": asdict(cfg),
            },
            ckpt_path,
        )

    bar = _progress(cfg.steps, step)
    with open(log_path, "a") as log_file:
        while step < cfg.steps:
            lr = learning_rate(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            image, target, weights, periodic = builder.build(cfg.batch_size, difficulty)
            logits = model(image)
            loss, future_emd = emd_loss(logits, target, weights, config.d_norm)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            gate = float(future_emd[periodic].mean()) if periodic.any() else float(future_emd.mean())
            ema = gate if ema is None else 0.98 * ema + 0.02 * gate
            if ema < cfg.curriculum_threshold and difficulty < cfg.max_difficulty:
                difficulty = min(cfg.max_difficulty, difficulty + cfg.curriculum_rate)
            record: dict[str, Any] = {
                "step": step,
                "loss": round(loss.item(), 5),
                "future_emd": round(float(future_emd.mean()), 4),
                "ema": round(ema, 4),
                "difficulty": round(difficulty, 4),
                "lr": lr,
                "grad_norm": round(float(grad_norm), 3),
                "time": round(time.time() - t0, 1),
            }
            if step % cfg.eval_every == 0 or step == cfg.steps:
                record["eval"] = evaluate_model(model, device, cases)
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            bar(step, record)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save()
    log(f"finished {step} steps in {time.time() - t0:.0f} s; checkpoint {ckpt_path}")
    return ckpt_path


def export_checkpoint(
    ckpt_path: str | Path,
    destination: str | Path,
    expected_depths: tuple[int | None, int | None] = (None, None),
    log: Callable[[str], None] | None = None,
    max_memory_gb: float | None = None,
) -> tuple[Path, Path]:
    """Write a training checkpoint's weights as the native safetensors + JSON format.

    ``expected_depths`` (encoder, decoder; None = any) are checked before anything is written,
    so a depth asked for on the command line never silently exports a different model.
    """
    state = load_training_checkpoint(ckpt_path, "export")
    config = checkpoint_config(state, ckpt_path, "export")
    actual = (config.enc_depth, config.dec_depth)
    stacks = (("--depth", "encoder"), ("--decoder-depth", "decoder"))
    for (flag, stack), want, have in zip(stacks, expected_depths, actual):
        if want is not None and want != have:
            raise TrainingInputError(
                f"export: {ckpt_path} holds {have} {stack} block{'' if have == 1 else 's'}, not the {want} asked "
                f"for with {flag} (the export writes the checkpoint's model as trained; drop {flag})"
            )
    if log is not None:
        log(f"exporting step {state['step']}: {config.describe()}")
    try:
        model = ViTimeMAE(config, max_memory_gb=max_memory_gb)
    except ValueError as err:  # the memory estimate: a checkpoint config is user input too
        raise TrainingInputError(f"export: {ckpt_path}: {err}") from None
    model.load_state_dict(state["model"])
    fc = ViTimeForecaster(model)
    meta = {
        "trained_by": "attnviz train",
        "steps": state["step"],
        "difficulty": state["difficulty"],
        "train_seconds": round(state.get("elapsed", 0.0)),
        "train_config": state["train_config"],
    }
    return fc.save(destination, metadata=meta)


def _progress(total: int, start: int):
    """Progress line with the loss, the curriculum difficulty and the latest eval ratios."""
    bar = ProgressBar(total, "train", every=50)

    def update(step: int, record: dict[str, Any]) -> None:
        ev = record.get("eval")
        extra = f" eval {ev['median_ratio_to_mean']:.3f}/{ev['seed_ratio_to_mean']:.3f}" if ev else ""
        bar.update(
            step,
            f"loss {record['loss']:.3f} emd {record['future_emd']:.2f} d {record['difficulty']:.2f}{extra}",
        )

    return update
