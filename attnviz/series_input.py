"""Reading the series a user asks to explain: a CSV column (a window of it) or an expression.

Built for users' own files: a UTF-8 BOM is dropped, a file in another encoding is named with
a hint, comment lines (``#``) are skipped, a missing ``--column`` is fine when the file has one
numeric column, and every bad cell is reported with its line number. Cells are parsed by the
``csv`` module and converted to numbers in one vectorised numpy call, so a file of millions of
rows reads in seconds; a window (``--last``/``--start``/``--stop``) is cut before conversion.
Standard library + numpy only: the CLI imports this before torch.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RowWindow", "SeriesInput", "read_csv_series", "shown"]

#: The longest cell accepted (characters); longer cells are an error with their line number.
MAX_FIELD_CHARS = 10_000


def shown(value: Any, limit: int = 60) -> str:
    """``repr`` of a user-given value with control characters escaped and long text cut, so an
    echoed header or cell can neither garble the terminal nor flood it."""
    text = str(value)
    cut = text[:limit]
    out = repr(cut)
    return out[:-1] + "...'" if len(text) > limit else out


@dataclass(frozen=True)
class RowWindow:
    """Which data rows (counted after the header, from 0) to use: ``last`` N, or ``start:stop``."""

    start: int | None = None
    stop: int | None = None
    last: int | None = None

    def __post_init__(self) -> None:
        if self.last is not None and (self.start is not None or self.stop is not None):
            raise ValueError("--last cannot be combined with --start/--stop; use one way to pick the rows")
        for name in ("start", "stop"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"--{name} must be a row number >= 0 (rows are counted after the header), got {value}")
        if self.last is not None and self.last < 2:
            raise ValueError(f"--last must be at least 2 rows, got {self.last}")

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.start, self.stop, self.last))

    def bounds(self, rows: int) -> tuple[int, int]:
        """(first, stop) data-row indices for a file of ``rows`` data rows; errors name both."""
        if self.last is not None:
            return max(0, rows - self.last), rows
        start = 0 if self.start is None else self.start
        stop = rows if self.stop is None else min(self.stop, rows)
        if start >= rows:
            raise ValueError(f"--start {start} is past the end: the file has {rows} data rows (0..{rows - 1})")
        if stop - start < 2:
            raise ValueError(f"rows {start}..{stop} hold {max(stop - start, 0)} value(s); need at least 2 (the file has {rows} data rows)")
        return start, stop


@dataclass(frozen=True)
class SeriesInput:
    """A series and where it came from (written to ``summary.json`` as ``rows``)."""

    values: np.ndarray
    label: str
    rows: dict[str, Any] | None = None


def read_csv_series(path: Path, column: str | None = None, window: RowWindow = RowWindow()) -> SeriesInput:
    """The numbers of one column of a CSV file with a header row (see the module doc)."""
    header, data, lines = read_csv_table(path)
    name = _pick_column(path, header, column, data)
    index = header.index(name)
    first, stop = window.bounds(len(data)) if window.given else (0, len(data))
    cells = [row[index] if index < len(row) else "" for row in data[first:stop]]
    values = _to_floats(path, name, cells, lines[first:stop])
    if values.size < 2:
        raise ValueError(f"{path}: column {shown(name)} has {values.size} value(s); need at least 2")
    rows = {
        "source": str(path),
        "column": name,
        "first_row": first,
        "stop_row": stop,
        "count": int(values.size),
        "rows_in_file": len(data),
        "first_line": lines[first],
        "last_line": lines[stop - 1],
    }
    return SeriesInput(values, f"{path.name}:{name}", rows)


def read_csv_table(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, the data rows and their line numbers in the file (comment lines skipped).

    The one CSV reader of attnviz (``explain`` reads a column, ``scan`` every column): BOM,
    encoding, cell size and quoting problems become one-line errors naming the file and line."""
    if not path.is_file():
        raise ValueError(f"CSV file not found: {path}")
    csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header: list[str] | None = None
            data: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                if not row or row[0].lstrip().startswith("#"):
                    continue
                if header is None:
                    header = [cell.strip() for cell in row]
                    continue
                data.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            f"re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > fixed.csv"
        ) from None
    except csv.Error as exc:
        where = f"line {reader.line_num}: " if reader.line_num else ""
        detail = f"a cell longer than {MAX_FIELD_CHARS:,} characters" if "field larger" in str(exc) else str(exc)
        raise ValueError(f"{path} {where}{detail}") from None
    if header is None:
        raise ValueError(f"{path} has no header row (expected column names on the first line)")
    return header, data, lines


def _pick_column(path: Path, header: list[str], column: str | None, data: list[list[str]]) -> str:
    if column is not None:
        if column not in header:
            raise ValueError(f"column {shown(column)} not in {path} (columns: {_names(header)})")
        if header.count(column) > 1:
            raise ValueError(f"{path} has {header.count(column)} columns named {shown(column)}; rename them apart")
        return column
    sample = data[: min(len(data), 20)]
    numeric = [name for i, name in enumerate(header) if sample and all(_is_number(row[i] if i < len(row) else "") for row in sample)]
    if len(numeric) == 1:
        return _pick_column(path, header, numeric[0], data)
    if not numeric:
        raise ValueError(f"{path} has no numeric column (columns: {_names(header)}); name one with --column")
    raise ValueError(f"{path} has {len(numeric)} numeric columns ({_names(numeric)}); pick one with --column")


def _names(names: list[str]) -> str:
    listed = ", ".join(shown(n, 30) for n in names[:12])
    return listed + (f", ... ({len(names)} in all)" if len(names) > 12 else "") or "none"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _to_floats(path: Path, name: str, cells: list[str], lines: list[int]) -> np.ndarray:
    """Vectorised conversion; on failure, find the first bad cell and name its line."""
    try:
        values = np.asarray(cells, dtype=np.float64) if cells else np.zeros(0)
        if np.isfinite(values).all():
            return values
    except ValueError:
        pass
    for cell, line in zip(cells, lines):
        text = cell.strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{path} line {line}: column {shown(name)} holds a non-numeric value {shown(text)}") from None
        if not math.isfinite(value):
            what = "NaN" if value != value else "a value out of range for float64"
            raise ValueError(f"{path} line {line}: column {shown(name)} holds {what} ({shown(text)}); clean or interpolate it first")
    raise AssertionError("unreachable: a bad cell was expected")  # pragma: no cover
