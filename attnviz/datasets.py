"""Small public-domain real series shipped with attnviz (no network needed).

``load_dataset("sunspots")``
    Yearly sunspot numbers 1700-2008 (309 samples), known period about 11 samples (years).
``load_dataset("co2")``
    Mauna Loa weekly atmospheric CO2 1958-03-29 .. 2001-12-29 (2284 samples, ppm), known period
    52 samples (weeks). The 59 weeks missing in the source were filled by linear interpolation
    between the nearest observed weeks (longest gap 18 weeks, early 1964); observed weeks are
    unchanged.

Both come from the datasets bundled with statsmodels (declared public domain there); see
``attnviz/data/SOURCES.md`` for provenance, licence statements and the list of filled weeks.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

__all__ = ["Dataset", "available_datasets", "load_dataset"]


@dataclass(frozen=True)
class Dataset:
    """One real series.

    name: registry name (``load_dataset(name)``).
    values: 1-D float64 array of the observations, oldest first.
    time: time label of every sample (int64 years, or ``datetime64[D]`` dates), same length as values.
    known_period_samples: the dominant period expected in the data, in samples.
    unit: unit of ``values``.
    description: one-paragraph human description including source and any preprocessing.
    time_name / value_name: CSV column names.
    sampling: "yearly" or "weekly".
    """

    name: str
    values: np.ndarray = field(repr=False)
    time: np.ndarray = field(repr=False)
    known_period_samples: float
    unit: str
    description: str = field(repr=False)
    time_name: str = "time"
    value_name: str = "value"
    sampling: str = ""

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class _Spec:
    filename: str
    time_column: str
    value_column: str
    time_kind: str  # "int" or "date"
    known_period_samples: float
    unit: str
    sampling: str
    description: str


_SUNSPOTS = (
    "Yearly sunspot numbers 1700-2008 from the National Geophysical Data Center (NOAA), "
    "as bundled with statsmodels (public domain). Known period: the ~11-year solar cycle."
)
_CO2 = (
    "Weekly atmospheric CO2 at Mauna Loa Observatory, Hawaii, 1958-03-29 to 2001-12-29 "
    "(Keeling & Whorf, SIO/CDIAC), as bundled with statsmodels (public domain). 59 missing "
    "weeks were filled by linear interpolation. Known period: the annual cycle, 52 weeks, "
    "on top of a rising trend."
)
_REGISTRY: dict[str, _Spec] = {
    "sunspots": _Spec("sunspots_yearly.csv", "year", "sunspots", "int", 11.0, "sunspot number", "yearly", _SUNSPOTS),
    "co2": _Spec("co2_weekly.csv", "date", "co2_ppm", "date", 52.0, "ppm", "weekly", _CO2),
}


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return sorted(_REGISTRY)


def _read_text(filename: str) -> str:
    return resources.files("attnviz").joinpath("data", filename).read_text(encoding="utf-8")


def load_dataset(name: str) -> Dataset:
    """Load a bundled real series by name (see :func:`available_datasets`)."""
    if not isinstance(name, str):
        raise ValueError(
            f"dataset name must be a string, got {name!r}; available: {', '.join(available_datasets())}"
        )
    key = name.strip().lower()
    spec = _REGISTRY.get(key)
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    text = _read_text(spec.filename)
    reader = csv.reader(line for line in io.StringIO(text) if not line.startswith("#"))
    header = next(reader)
    expected = [spec.time_column, spec.value_column]
    if header != expected:
        raise ValueError(f"{spec.filename}: expected columns {expected}, found {header}")
    times: list = []
    values: list[float] = []
    for row in reader:
        if not row:
            continue
        times.append(int(row[0]) if spec.time_kind == "int" else row[0])
        values.append(float(row[1]))
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():  # the shipped files are complete; guard against edits
        raise ValueError(f"{spec.filename} contains non-finite values")
    time = np.asarray(times, dtype=np.int64 if spec.time_kind == "int" else "datetime64[D]")
    return Dataset(
        name=key, values=arr, time=time, known_period_samples=spec.known_period_samples, unit=spec.unit,
        description=spec.description, time_name=spec.time_column, value_name=spec.value_column, sampling=spec.sampling,
    )
