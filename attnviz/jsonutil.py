"""Plain-JSON conversion shared by result objects, experiment summaries and the CLI."""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """numpy -> Python, NaN/inf -> None, tuples -> lists, objects with ``to_dict`` -> dicts."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    return str(value)
