"""Forecast evaluation: baselines, held-out cases and the table, against known answers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from attnviz.evaluation import (
    EvalCase,
    evaluate_cases,
    EvalRow,
    evaluation_table,
    harmonic_mixtures,
    mixture_breakdown,
    mae,
    mean_forecast,
    seasonal_naive,
    seed_reference_ratio,
    seed_signal,
    sinusoid_sweep,
    summarize,
)


@dataclass
class _Forecast:
    forecast: np.ndarray


class OracleForecaster:
    """Forecasts the truth of the cases it was given (looked up by history)."""

    source = "oracle"

    def __init__(self, cases: list[EvalCase] | None = None, scale: float = 1.0) -> None:
        self.cases = cases or []
        self.scale = scale

    def predict_many(self, histories, horizon, decode="max"):
        out = []
        for h in histories:
            match = [c for c in self.cases if len(c.history) == len(h) and np.array_equal(c.history, h)]
            truth = match[0].truth if match else np.full(horizon, np.mean(h))
            mean = np.mean(h)
            out.append(_Forecast(mean + self.scale * (truth[:horizon] - mean)))
        return out


def test_baselines_known_values():
    history = np.array([1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0])
    assert mae([1, 2], [2, 4]) == pytest.approx(1.5)
    np.testing.assert_array_equal(mean_forecast(history, 3), [2.5, 2.5, 2.5])
    np.testing.assert_array_equal(seasonal_naive(history, 6, 4), [1, 2, 3, 4, 1, 2])
    np.testing.assert_array_equal(seasonal_naive(history, 6, 4.4), [1, 2, 3, 4, 1, 2])  # rounded
    # No usable period -> the mean forecast
    for period in (None, float("nan"), 0.2, 100):
        np.testing.assert_array_equal(seasonal_naive(history, 2, period), [2.5, 2.5])


def test_harmonic_mixtures_are_seeded_and_in_range():
    a = harmonic_mixtures(count=20, seed=7)
    b = harmonic_mixtures(count=20, seed=7)
    c = harmonic_mixtures(count=20, seed=8)
    assert len(a) == 20 and all(len(x.history) == 512 and len(x.truth) == 720 for x in a)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.history, y.history)
    assert not np.allclose(a[0].history, c[0].history)
    assert all(12 <= x.period <= 200 for x in a)
    assert {x.components for x in a} == {1, 2, 3}
    assert all(12 <= x.shortest_period <= x.period for x in a)
    single = [x for x in a if x.components == 1]
    assert single and all(x.shortest_period == x.period for x in single)


def test_mixture_breakdown_groups_known_rows():
    def row(k: int, shortest: float, ratio: float) -> EvalRow:
        return EvalRow(f"k{k}", ratio, 1.0, 1.0, ratio, {"components": k, "shortest_period": shortest})

    rows = [row(1, 100, 0.1), row(1, 15, 0.3), row(2, 30, 0.6), row(2, 50, 0.8), row(2, 14, 1.0), row(3, 13, 0.9)]
    got = {b.label: (b.cases, b.median_ratio_to_mean) for b in mixture_breakdown(rows)}
    assert got == {
        "k = 1 sinusoid": (2, pytest.approx(0.2)),
        "k = 2 sinusoids": (3, pytest.approx(0.8)),
        "k = 3 sinusoids": (1, pytest.approx(0.9)),
        "shortest period 12-20 samples": (3, pytest.approx(0.9)),
        "shortest period 20-40 samples": (1, pytest.approx(0.6)),
        "shortest period 40-200 samples": (2, pytest.approx(0.45)),
    }
    # Rows without the labels (real series) are left out, and empty subsets are not listed.
    assert mixture_breakdown([EvalRow("co2", 1.0, 2.0, 1.0, 0.5)]) == []


def test_seasonal_naive_is_exact_on_whole_sample_periods():
    n = np.arange(512 + 720)
    x = np.sin(2 * np.pi * n / 50)
    rows = evaluate_cases(OracleForecaster(), [EvalCase("p50", x[:512], x[512:], 50.0)])
    assert rows[0].naive_mae < 1e-12
    assert rows[0].ratio_to_mean == pytest.approx(1.0)  # the oracle stub falls back to the mean


def test_ratios_of_known_forecasters():
    cases = sinusoid_sweep(periods=(20.0, 64.0), history=100, horizon=60)
    perfect = evaluate_cases(OracleForecaster(cases), cases)
    assert all(r.model_mae < 1e-12 and r.ratio_to_mean < 1e-12 for r in perfect)
    half = evaluate_cases(OracleForecaster(cases, scale=0.5), cases)
    # Half the deviation from the history mean: error is half of the mean forecast's.
    assert all(r.ratio_to_mean == pytest.approx(0.5) for r in half)
    summary = summarize(half)
    assert summary["cases"] == 2 and summary["median_ratio_to_mean"] == pytest.approx(0.5)


def test_sinusoid_sweep_periods_are_what_they_say():
    for case in sinusoid_sweep(periods=(16.0, 100.0)):
        x = np.concatenate([case.history, case.truth])
        spectrum = np.abs(np.fft.rfft(x))
        assert len(x) / np.argmax(spectrum) == pytest.approx(case.period, rel=0.05)


def test_seed_reference_ratio():
    # The fast part cos(n+50) alone accounts for ~0.63 of the mean forecast's error.
    ratio = seed_reference_ratio()
    assert 0.6 < ratio < 0.67
    n = np.arange(40)
    np.testing.assert_allclose(seed_signal(40), np.sin(n / 10) + np.sin(n / 5 + 50) + np.cos(n + 50))


def test_evaluation_table_lists_every_series():
    table = evaluation_table(OracleForecaster(), cases=4, seed=1)
    assert "model: oracle" in table
    assert "4 harmonic mixtures (median, seed 1)" in table
    for name in ("seed signal", "sunspots", "co2", "sine, period 12", "sine, period 200"):
        assert f"| {name} |" in table
    # The mean-falling-back stub scores exactly 1 x the mean forecast everywhere.
    assert "| k = 1 sinusoid |" in table and "| shortest period 12-20 samples |" in table
    headers = ("MAE", "subset")
    body = [line for line in table.splitlines() if line.startswith("| ") and not any(h in line for h in headers)]
    ratios = [line.rsplit("|", 2)[-2].strip() for line in body]
    assert ratios and all(r == "1.000" for r in ratios)


def test_models_share_the_baselines_and_add_their_own_columns():
    cases = harmonic_mixtures(count=4, seed=1)
    perfect = OracleForecaster(cases)
    perfect.source = "perfect.pth"
    half = OracleForecaster(cases, scale=0.5)
    half.source = "/runs/half/model.safetensors"  # a native folder is named by its folder
    table = evaluation_table([perfect, half], cases=4, seed=1).splitlines()
    assert table[0] == "models: perfect.pth, /runs/half/model.safetensors"
    assert "| perfect.pth MAE | perfect.pth / mean | half MAE | half / mean |" in table[2]
    mixtures = next(line for line in table if line.startswith("| 4 harmonic mixtures"))
    cells = [c.strip() for c in mixtures.strip("|").split("|")]
    # name, mean-forecast MAE, seasonal-naive MAE, then (MAE, ratio) per model: exact, then half-way
    assert cells[3:5] == ["0.000", "0.000"] and cells[6] == "0.500"
    assert float(cells[5]) == pytest.approx(0.5 * float(cells[1]), abs=1e-3)
    subset = next(line for line in table if line.startswith("| k = "))
    assert subset.rstrip(" |").endswith("| 0.000 | 0.500")
    with pytest.raises(ValueError, match="at least one forecaster"):
        evaluation_table([], cases=4)
