"""Where a scan's series come from: a CSV with one series per column, a folder of CSVs, or the
seeded synthetic generator (harmonic mixtures with a known period and a known continuation).

Every series becomes a :class:`ScanItem`; one that cannot be used (non-numeric, NaN inside the
window, too short) becomes an item with a ``skip`` reason, so ``series.csv`` records it and
nothing is silently dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..series_input import shown

__all__ = ["ScanItem", "bundled", "csv_columns", "csv_folder", "synthetic", "window", "windows"]


@dataclass(frozen=True)
class ScanItem:
    """One series of a scan: the history the model sees, the truth after it when known."""

    name: str
    history: np.ndarray | None
    truth: np.ndarray | None = None
    period: float | None = None  # known period in samples (synthetic series)
    rows: str = ""  # which rows of the source were used, e.g. "1488:2000"
    skip: str = ""  # why the series is not scanned ("" = it is)


def window(name: str, values: np.ndarray, length: int, horizon: int, holdout: bool, first_row: int = 0) -> ScanItem:
    """The last ``length`` values as history (with ``holdout``: the ``horizon`` values after
    them are kept back as truth), or an item that says why it cannot be used."""
    need = length + (horizon if holdout else 0)
    if values.size < need:
        what = f"{length} history + {horizon} held-out" if holdout else f"{length} history"
        return ScanItem(name, None, skip=f"too short: {values.size} values, need {need} ({what})")
    used = values[values.size - need:]
    start = first_row + values.size - need
    bad = ~np.isfinite(used)
    if bad.any():
        where = int(np.flatnonzero(bad)[0])
        kind = "NaN" if np.isnan(used[where]) else "an infinite value"
        return ScanItem(name, None, skip=f"{kind} at data row {start + where} (clean or interpolate it first)")
    history, truth = used[:length], (used[length:] if holdout else None)
    return ScanItem(name, history, truth, rows=f"{start}:{start + need}")


def windows(name: str, values: np.ndarray, length: int, horizon: int, holdout: bool, stride: int | None) -> list[ScanItem]:
    """Without ``stride``: the series' last window. With it: windows of ``length`` (+ ``horizon``
    held out) every ``stride`` rows, counted back from the series' end so the newest values are
    always in the last window, named ``name@first_row`` — one long real series becomes a dataset
    of windows (oldest first)."""
    if stride is None:
        return [window(name, values, length, horizon, holdout)]
    need = length + (horizon if holdout else 0)
    if values.size < need:
        return [window(name, values, length, horizon, holdout)]  # too short: says so
    starts = range((values.size - need) % stride, values.size - need + 1, stride)
    return [window(f"{name}@{s}", values[s:s + need], length, horizon, holdout, first_row=s) for s in starts]


def bundled(names: Sequence[str], length: int, horizon: int, holdout: bool, stride: int | None) -> list[ScanItem]:
    """Windows of attnviz's bundled real series (sunspots, co2), with their known period."""
    from dataclasses import replace

    from ..datasets import load_dataset

    items = []
    for name in names:
        data = load_dataset(name)
        for item in windows(data.name, np.asarray(data.values, dtype=float), length, horizon, holdout, stride):
            items.append(replace(item, period=float(data.known_period_samples)) if not item.skip else item)
    return items


def csv_columns(path: Path, length: int, horizon: int, holdout: bool = False, stride: int | None = None) -> list[ScanItem]:
    """Each column of a CSV with a header row is one series (empty cells at a column's end make
    columns of different lengths; a non-numeric or empty cell inside a column skips it)."""
    header, columns, lines = _read_columns(path)
    items = []
    for name, cells in zip(header, columns):
        while cells and not cells[-1].strip():
            cells.pop()
        values, problem = _numbers(cells, lines)
        label = f"{path.stem}:{name}"
        if problem:
            items.append(ScanItem(label, None, skip=problem))
        else:
            items.extend(windows(label, values, length, horizon, holdout, stride))
    return items


def csv_folder(
    folder: Path, length: int, horizon: int, holdout: bool = False, column: str | None = None, stride: int | None = None
) -> list[ScanItem]:
    """Every ``*.csv`` in ``folder`` (sorted) is one series: ``column``, or its only numeric column."""
    from ..series_input import read_csv_series

    files = sorted(folder.glob("*.csv"))
    if not files:
        raise ValueError(f"folder {folder} holds no .csv files")
    items = []
    for path in files:
        try:
            read = read_csv_series(path, column)
        except ValueError as exc:
            items.append(ScanItem(path.stem, None, skip=str(exc).replace(f"{path} ", "")))
            continue
        items.extend(windows(path.stem, read.values, length, horizon, holdout, stride))
    return items


def synthetic(count: int, seed: int, length: int, horizon: int) -> list[ScanItem]:
    """Seeded 1-3-sinusoid mixtures (``attnviz.evaluation.harmonic_mixtures``): known dominant
    period and continuation, so detected periods and forecast errors can be checked."""
    from ..evaluation import harmonic_mixtures

    cases = harmonic_mixtures(count=count, seed=seed, history=length, horizon=horizon)
    return [ScanItem(f"synthetic_{i}", c.history, c.truth, c.period, rows=f"0:{length + horizon}") for i, c in enumerate(cases)]


def _read_columns(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, one list of cells per column (short rows padded with empty cells) and the file
    line of each data row."""
    from ..series_input import read_csv_table

    header, rows, lines = read_csv_table(path)
    if not rows:
        raise ValueError(f"{path} needs a header row and at least one row of values")
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: column names must be unique, got {', '.join(shown(h, 20) for h in header)}")
    width = len(header)
    for line, row in zip(lines, rows):
        if len(row) > width:
            raise ValueError(f"{path} line {line}: {len(row)} cells under a header of {width} columns")
    return header, [[row[i] if i < len(row) else "" for row in rows] for i in range(width)], lines


def _numbers(cells: Sequence[str], lines: Sequence[int]) -> tuple[np.ndarray, str]:
    """The cells as float64, or a reason naming the file line of the first cell that is not a number."""
    try:
        return np.asarray(cells, dtype=np.float64), ""
    except ValueError:
        pass
    for row, (cell, line) in enumerate(zip(cells, lines)):
        try:
            float(cell)
        except ValueError:
            what = "an empty cell" if not cell.strip() else f"a non-numeric value {shown(cell.strip(), 30)}"
            return np.zeros(0), f"{what} at line {line} (data row {row})"
    return np.zeros(0), "could not read the column as numbers"  # pragma: no cover
