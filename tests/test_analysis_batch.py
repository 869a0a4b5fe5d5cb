"""analyze_many: a batch of series in one forward gives exactly what one analyze call each gives."""
from __future__ import annotations

import numpy as np
import pytest

from attnviz.analysis import MultiHeadAttentionRollout


def test_a_batch_of_8_equals_8_single_calls(vitime_fixture_forecaster):
    explainer = MultiHeadAttentionRollout(vitime_fixture_forecaster)
    n = np.arange(256)
    batch = [np.sin(2 * np.pi * n / p) + 0.1 * k for k, p in enumerate((9, 13, 17, 21, 25, 31, 40, 57))]
    many = explainer.analyze_many(batch, 128)
    assert len(many) == 8
    for series, got in zip(batch, many):
        one = explainer.analyze(series, 128)
        np.testing.assert_allclose(got.time_maps, one.time_maps, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(got.prefix_mass, one.prefix_mass, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(got.forecast.forecast, one.forecast.forecast, atol=1e-6)
        np.testing.assert_array_equal(got.series, series)
        assert [(h.layer, h.head) for h in got.ranked_heads[:5]] == [(h.layer, h.head) for h in one.ranked_heads[:5]]


def test_a_batch_needs_one_length(vitime_fixture_forecaster):
    explainer = MultiHeadAttentionRollout(vitime_fixture_forecaster)
    with pytest.raises(ValueError, match=r"one length .*got lengths \[100, 120\]"):
        explainer.analyze_many([np.ones(100), np.ones(120)], 50)
    with pytest.raises(ValueError, match="at least one series"):
        explainer.analyze_many([], 50)
    with pytest.raises(ValueError, match="series 1 contains 1 NaN"):
        explainer.analyze_many([np.ones(100), np.r_[np.ones(99), np.nan]], 50)
