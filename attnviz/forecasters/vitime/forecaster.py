"""ViTimeForecaster: series in, forecast + token geometry out, on any ViTime checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ...grid import TokenGrid
from ...validation import as_horizon, as_series
from .checkpoint import check_state_dict, load_checkpoint, save_native
from .config import ViTimeConfig
from .mapping import PreparedSeries, SeriesImageMapper
from .model import ViTimeMAE

DECODE_METHODS = ("max", "expectation")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'cpu' (default), 'cuda', 'cuda:N' or 'auto' (CUDA when available)."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda' or 'auto', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'auto'") from None


@dataclass(frozen=True)
class Forecast:
    """Result of one ``predict`` call.

    forecast: the next ``horizon`` values.  full: reconstructed history followed by the
    forecast (L + H values).  grid: token geometry of this call.  probabilities: the model's
    per-column distribution over value bins, shape (W, h).
    """

    forecast: np.ndarray
    full: np.ndarray
    grid: TokenGrid
    probabilities: np.ndarray
    mu: float
    std: float
    decode: str


class ViTimeForecaster:
    """A ViTime network plus its series<->image mapping."""

    def __init__(
        self,
        model: ViTimeMAE,
        device: str | torch.device | None = "cpu",
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device, torch.float32).eval()
        self.config: ViTimeConfig = model.config
        self.mapper = SeriesImageMapper(self.config)
        self.source = source
        self.metadata = dict(metadata or {})

    # ----- construction ----------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: ViTimeConfig | Mapping[str, Any],
        device: str | torch.device | None = "cpu",
        seed: int | None = None,
        max_memory_gb: float | None = None,
    ) -> "ViTimeForecaster":
        """A randomly initialised ViTime (upstream init) of the given config.

        ``max_memory_gb``: refuse configs estimated above this (default 4 GB, see ``budget``).
        """
        cfg = config if isinstance(config, ViTimeConfig) else ViTimeConfig.from_mapping(config)
        if seed is not None:
            torch.manual_seed(seed)
        model = ViTimeMAE(cfg, max_memory_gb=max_memory_gb)  # checks the estimate before building
        return cls(model, device=device, source="random-init")

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device | None = "cpu",
        trust_checkpoint: bool = False,
        max_memory_gb: float | None = None,
    ) -> "ViTimeForecaster":
        """Load an upstream ``.pth`` (strictly) or a native safetensors + JSON checkpoint.

        The config is validated and its memory (parameters + one forward, attention maps
        included) estimated before anything is built; above ``max_memory_gb`` (default
        ``$ATTNVIZ_MAX_MEMORY_GB`` or 4 GB) it is a one-line CheckpointError.
        """
        loaded = load_checkpoint(path, trust_checkpoint=trust_checkpoint, max_memory_gb=max_memory_gb)
        model = ViTimeMAE(loaded.config, max_memory_gb=max_memory_gb)
        check_state_dict(model, loaded.state_dict, loaded.path)
        model.load_state_dict(loaded.state_dict, strict=True)
        return cls(model, device=device, source=str(loaded.path), metadata=loaded.metadata)

    def save(self, path: str | Path, metadata: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
        """Write the native format (``.safetensors`` + ``.json``)."""
        return save_native(path, self.config, self.model.state_dict(), metadata)

    # ----- geometry ----------------------------------------------------------------------------
    def grid(self, length: int, horizon: int) -> TokenGrid:
        """Token geometry of a call with ``length`` history samples and ``horizon``.

        A history that would cover fewer than two token columns is a one-line ValueError naming
        the history, the horizon and the column width (``predict`` and ``analyze`` share it).
        """
        return self.mapper.grid_for(int(length), as_horizon(horizon))

    def prepare(self, series: Any, horizon: Any) -> PreparedSeries:
        """Validate the inputs and build the model's input image."""
        return self.mapper.prepare(as_series(series), as_horizon(horizon))

    # ----- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def bin_probabilities(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, h, W) or (B, 1, h, W) images -> (B, W, h) softmax over value bins."""
        x = torch.as_tensor(images, dtype=torch.float32, device=self.device)
        if x.dim() == 3:
            x = x[:, None]
        return torch.softmax(self.model(x), dim=-1)

    def predict(self, series: Any, horizon: Any, decode: str = "max") -> Forecast:
        """Forecast ``horizon`` steps after ``series``; ``decode`` is 'max' or 'expectation'."""
        return self.predict_many([series], horizon, decode)[0]

    def predict_many(self, series_list: list[Any], horizon: Any, decode: str = "max") -> list[Forecast]:
        """Forecast several series of any lengths with one horizon in a single batched forward."""
        if decode not in DECODE_METHODS and decode != "mean":
            raise ValueError(f"decode must be one of {DECODE_METHODS}, got {decode!r}")
        prepared = [self.prepare(s, horizon) for s in series_list]
        if not prepared:
            return []
        probs = self.bin_probabilities(np.stack([p.image for p in prepared])).cpu().numpy()
        results = []
        for prep, prob in zip(prepared, probs):
            full = self.mapper.decode(prob.astype(np.float64), prep, decode)
            length = prep.grid.history_length
            results.append(
                Forecast(full[length:].copy(), full, prep.grid, prob, prep.mu, prep.std, decode)
            )
        return results

    def __repr__(self) -> str:
        return f"ViTimeForecaster({self.config.describe()}, device={self.device}, source={self.source})"
