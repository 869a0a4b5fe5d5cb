"""The one memory limit every size check shares (model configs, training steps, expressions).

Torch-free so that the expression parser and ``--help`` stay fast.  The limit is
``DEFAULT_MAX_MEMORY_GB`` (4 GB: a laptop survives it, and the bundled model needs ~0.05 GB)
unless a ``max_memory_gb=`` argument or the ``ATTNVIZ_MAX_MEMORY_GB`` environment variable
raises it.
"""
from __future__ import annotations

import math
import os

ENV_MAX_MEMORY = "ATTNVIZ_MAX_MEMORY_GB"
DEFAULT_MAX_MEMORY_GB = 4.0
GB = 1e9
#: How a message tells the user to raise the limit (the CLI adds its own flag in front).
LIMIT_HINT = f"{ENV_MAX_MEMORY} or max_memory_gb="


def memory_limit_gb(max_memory_gb: float | None = None) -> float:
    """The limit in GB: ``max_memory_gb`` if given, else ``$ATTNVIZ_MAX_MEMORY_GB``, else 4."""
    if max_memory_gb is not None:
        source, value = "max_memory_gb", max_memory_gb
    elif os.environ.get(ENV_MAX_MEMORY, "").strip():
        source, value = ENV_MAX_MEMORY, os.environ[ENV_MAX_MEMORY].strip()
    else:
        return DEFAULT_MAX_MEMORY_GB
    try:
        limit = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        limit = float("nan")
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"{source} must be a positive number of GB, got {value!r}")
    return limit


def format_bytes(value: float) -> str:
    """'1.5 MB', '52.4 GB', '3.2e+05 GB': readable at any size (ints beyond float range too)."""
    if value < 1e6:
        return f"{value / 1e3:.1f} kB"
    if value < 1e9:
        return f"{value / 1e6:.1f} MB"
    if value < 1e14:
        return f"{value / GB:,.1f} GB"
    exponent = math.log10(value) - 9  # exact for ints too large for a float (size=1e300)
    return f"{10 ** (exponent % 1):.1f}e+{int(exponent):02d} GB"
