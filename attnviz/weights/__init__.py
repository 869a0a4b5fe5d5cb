"""The bundled default model and the rules for choosing which weights to load.

Order: an explicit path (``--weights``), then ``ATTNVIZ_WEIGHTS``, then ``config.py``'s
``VITIME_MODEL_PATH`` (passed in by ``main.py``), then the small ViTime shipped in this folder
(safetensors + JSON, trained by ``attnviz train``).  Nothing here touches the network.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

ENV_VAR = "ATTNVIZ_WEIGHTS"
DEFAULT_STEM = "vitime_small"


def default_weights_path() -> Path:
    """Path of the bundled model's ``.safetensors`` file (inside the installed package)."""
    return Path(str(resources.files(__name__).joinpath(f"{DEFAULT_STEM}.safetensors")))


def is_bundled(forecaster: Any) -> bool:
    """Whether ``forecaster`` was loaded from the bundled weights (compared by its ``source``)."""
    source = getattr(forecaster, "source", None)
    return bool(source) and Path(str(source)) == default_weights_path()


def resolve_weights(path: str | os.PathLike | None = None, configured: str | None = None) -> Path:
    """Pick the weights file: explicit path, env var, configured path, bundled default."""
    for candidate in (path, os.environ.get(ENV_VAR) or None, configured):
        if candidate:
            return Path(candidate).expanduser()
    return default_weights_path()


def load_forecaster(
    path: str | os.PathLike | None = None,
    device: str = "cpu",
    trust_checkpoint: bool = False,
    configured: str | None = None,
    max_memory_gb: float | None = None,
) -> Any:
    """Load a ViTimeForecaster: ``load_forecaster()`` gives the bundled default model.

    ``path`` may be an upstream ``ViTime_Model.pth`` or a native checkpoint.  Its config is
    checked and its memory estimated before anything is built: over ``max_memory_gb`` (default
    ``$ATTNVIZ_MAX_MEMORY_GB``, else 4 GB) it is a one-line CheckpointError.
    """
    from ..forecasters.vitime import CheckpointError, ViTimeForecaster

    weights = resolve_weights(path, configured)
    if not weights.exists() and weights == default_weights_path():
        raise CheckpointError(
            f"the bundled default model is missing from the package ({weights}); reinstall "
            f"attnviz or pass a checkpoint path (--weights / {ENV_VAR})"
        )
    return ViTimeForecaster.from_checkpoint(
        weights, device=device, trust_checkpoint=trust_checkpoint, max_memory_gb=max_memory_gb
    )
