"""Where attnviz finds ViTime weights when you run ``python main.py``.

Set ``VITIME_MODEL_PATH`` to the released ``ViTime_Model.pth`` (or a converted native
``.safetensors``) to explain the real model.  The environment variable ``ATTNVIZ_WEIGHTS``
overrides it, and ``python main.py --weights PATH`` overrides both.  With nothing set, attnviz
uses its bundled small ViTime (trained by ``attnviz train``), so everything runs offline.

Nothing is loaded when this module is imported.
"""
from __future__ import annotations

import os

# Path to a ViTime checkpoint, or None for the bundled default model.
VITIME_MODEL_PATH: str | None = None

# The environment variable wins over the value above.
VITIME_MODEL_PATH = os.environ.get("ATTNVIZ_WEIGHTS") or VITIME_MODEL_PATH

# Where ``python main.py`` writes figures and summaries.
OUTPUT_DIR: str = "experiments"

# Torch device for ``python main.py``: "cpu", "cuda" or "auto".
DEVICE: str = "cpu"
