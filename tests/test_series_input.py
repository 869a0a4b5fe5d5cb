"""Reading users' CSV files: BOM, encodings, windows, the only numeric column, bad cells by line."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from attnviz.series_input import MAX_FIELD_CHARS, RowWindow, read_csv_series, shown


def write(tmp_path: Path, text: str | bytes, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_bom_in_the_header_is_dropped(tmp_path):
    path = write(tmp_path, "\ufeffload,t\n1,0\n2,1\n3,2\n")
    got = read_csv_series(path, "load")
    assert got.values.tolist() == [1.0, 2.0, 3.0] and got.rows["column"] == "load"


def test_a_non_utf8_file_is_named_with_a_hint(tmp_path):
    path = write(tmp_path, "temp\u00e9rature\n1\n2\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"d\.csv is not UTF-8 text \(byte 0xe9 .*re-save it as UTF-8"):
        read_csv_series(path, None)


def test_an_oversized_cell_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, "x\n1\n2\n" + "9" * (MAX_FIELD_CHARS * 20) + "\n")
    with pytest.raises(ValueError, match=f"line 4: a cell longer than {MAX_FIELD_CHARS:,} characters"):
        read_csv_series(path, "x")


@pytest.mark.parametrize("cell, what", [("1e400", "out of range"), ("-1e999", "out of range"), ("nan", "NaN"), ("abc", "non-numeric")])
def test_bad_cells_name_their_line(tmp_path, cell, what):
    path = write(tmp_path, f"# a comment\nx\n1\n{cell}\n3\n")
    with pytest.raises(ValueError, match=f"line 4: column 'x' holds .*{what}"):
        read_csv_series(path, "x")


def test_extreme_but_finite_values_are_read(tmp_path):
    path = write(tmp_path, "x\n1e308\n-1e308\n5e-324\n")
    assert read_csv_series(path, "x").values.tolist() == [1e308, -1e308, 5e-324]


def test_the_only_numeric_column_is_used_when_none_is_named(tmp_path):
    path = write(tmp_path, "time,value\n2020-01-01,1.5\n2020-01-02,2.5\n2020-01-03,3.5\n")
    got = read_csv_series(path, None)
    assert got.rows["column"] == "value" and got.values.tolist() == [1.5, 2.5, 3.5]
    assert got.label == "d.csv:value"


def test_several_or_no_numeric_columns_need_a_name(tmp_path):
    with pytest.raises(ValueError, match=r"2 numeric columns \('a', 'b'\); pick one with --column"):
        read_csv_series(write(tmp_path, "a,b\n1,2\n3,4\n"), None)
    with pytest.raises(ValueError, match="no numeric column"):
        read_csv_series(write(tmp_path, "a,b\nx,y\nz,w\n", "t.csv"), None)


def test_windows_pick_rows_and_say_which(tmp_path):
    path = write(tmp_path, "# header comment\nv\n" + "\n".join(str(i) for i in range(100)) + "\n")
    last = read_csv_series(path, "v", RowWindow(last=10))
    assert last.values.tolist() == list(range(90, 100))
    assert last.rows == {"source": str(path), "column": "v", "first_row": 90, "stop_row": 100, "count": 10,
                         "rows_in_file": 100, "first_line": 93, "last_line": 102}
    middle = read_csv_series(path, "v", RowWindow(start=5, stop=25))
    assert middle.values.tolist() == list(range(5, 25)) and middle.rows["first_line"] == 8
    clipped = read_csv_series(path, "v", RowWindow(start=95, stop=1000))
    assert clipped.values.tolist() == [95, 96, 97, 98, 99]


def test_bad_cells_outside_the_window_do_not_matter(tmp_path):
    path = write(tmp_path, "v\nbroken\n" + "\n".join(str(i) for i in range(10)) + "\n")
    assert read_csv_series(path, "v", RowWindow(last=5)).values.tolist() == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("window, message", [
    (dict(last=5, start=1), "cannot be combined"),
    (dict(start=-1), "--start must be a row number >= 0"),
    (dict(last=1), "--last must be at least 2"),
])
def test_bad_windows(window, message):
    with pytest.raises(ValueError, match=message):
        RowWindow(**window)


def test_windows_past_the_end(tmp_path):
    path = write(tmp_path, "v\n1\n2\n3\n")
    with pytest.raises(ValueError, match=r"--start 7 is past the end: the file has 3 data rows"):
        read_csv_series(path, "v", RowWindow(start=7))
    with pytest.raises(ValueError, match="hold 1 value"):
        read_csv_series(path, "v", RowWindow(start=2))


def test_control_characters_are_escaped_when_echoed(tmp_path):
    path = write(tmp_path, "\x1b[31mred\x1b[0m,v\n1,2\n3,4\n")
    with pytest.raises(ValueError) as info:
        read_csv_series(path, "nope")
    assert "\x1b" not in str(info.value) and "\\x1b[31mred" in str(info.value)
    assert shown("a" * 100, limit=10) == "'aaaaaaaaaa...'"


def test_a_long_file_reads_in_seconds(tmp_path):
    rows = 400_000
    path = tmp_path / "long.csv"
    path.write_text("t,v\n" + "\n".join(f"{i},{np.sin(i / 10):.6f}" for i in range(rows)) + "\n")
    start = time.perf_counter()
    got = read_csv_series(path, "v", RowWindow(last=512))
    elapsed = time.perf_counter() - start
    assert got.rows["rows_in_file"] == rows and got.values.size == 512
    assert elapsed < 20, f"{rows:,} rows took {elapsed:.1f} s"  # ~0.5 s on an idle 2-core machine
