"""Bundled real series: offline loading, shape, completeness, periodicity sanity."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.datasets import Dataset, available_datasets, load_dataset


def _acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    x = np.asarray(x, dtype=float) - np.mean(x)
    denom = float(np.dot(x, x))
    return np.array([np.dot(x[: x.size - k], x[k:]) / denom for k in range(max_lag + 1)])


def test_available():
    assert available_datasets() == ["co2", "sunspots"]


def test_sunspots_shape_and_values():
    ds = load_dataset("sunspots")
    assert isinstance(ds, Dataset)
    assert ds.name == "sunspots"
    assert len(ds) == 309 and ds.values.shape == (309,) and ds.time.shape == (309,)
    assert ds.values.dtype == np.float64
    assert np.isfinite(ds.values).all()
    assert ds.time[0] == 1700 and ds.time[-1] == 2008
    assert np.all(np.diff(ds.time) == 1)
    assert ds.values.min() >= 0
    # spot checks against the statsmodels source file
    assert ds.values[:3].tolist() == [5.0, 11.0, 16.0]
    assert ds.known_period_samples == 11.0


def test_co2_shape_and_values():
    ds = load_dataset("co2")
    assert len(ds) == 2284
    assert np.isfinite(ds.values).all()
    assert ds.time.dtype == np.dtype("datetime64[D]")
    assert str(ds.time[0]) == "1958-03-29" and str(ds.time[-1]) == "2001-12-29"
    assert np.all(np.diff(ds.time).astype(int) == 7)  # regular weekly grid, gaps filled
    assert 300 < ds.values.min() and ds.values.max() < 400
    assert ds.values[0] == 316.1
    # 1958-05-10 was missing in the source: filled halfway between its neighbours
    assert ds.values[6] == pytest.approx(0.5 * (ds.values[5] + ds.values[7]), abs=1e-3)
    assert ds.unit == "ppm" and ds.known_period_samples == 52.0
    assert "interpolat" in ds.description


def test_sunspots_acf_peaks_near_11():
    ds = load_dataset("sunspots")
    acf = _acf(ds.values, 20)
    lag = 5 + int(np.argmax(acf[5:21]))
    assert 9 <= lag <= 12, lag


def test_co2_acf_peaks_near_52():
    ds = load_dataset("co2")
    t = np.arange(len(ds), dtype=float)
    detrended = ds.values - np.polyval(np.polyfit(t, ds.values, 2), t)
    acf = _acf(detrended, 80)
    lag = 30 + int(np.argmax(acf[30:81]))
    assert 50 <= lag <= 54, lag


@pytest.mark.parametrize("name", ["SUNSPOTS", " co2 "])
def test_name_is_normalised(name):
    assert load_dataset(name).name == name.strip().lower()


@pytest.mark.parametrize("bad", ["airline", "", 3])
def test_unknown_name_lists_available(bad):
    with pytest.raises(ValueError, match="available: co2, sunspots"):
        load_dataset(bad)


def test_loads_are_independent_copies():
    a = load_dataset("sunspots")
    a.values[0] = -1.0
    assert load_dataset("sunspots").values[0] == 5.0
