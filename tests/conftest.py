"""Shared test fixtures: the upstream-format ViTime fixture, its loaded forecaster, the bundled model."""
from __future__ import annotations

from pathlib import Path

import pytest

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "vitime-upstream-small"


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """Directory of the upstream-format checkpoint, reference outputs and README."""
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def vitime_fixture_forecaster():
    """ViTimeForecaster loaded from the fixture checkpoint (random weights, small size).

    Session-scoped because loading is the slow part; tests must not modify the model.
    """
    from attnviz.forecasters.vitime import ViTimeForecaster

    return ViTimeForecaster.from_checkpoint(FIXTURE_DIR / "checkpoint.pth")


@pytest.fixture(scope="session")
def bundled_forecaster():
    """The bundled default model (``attnviz.load_forecaster()``), loaded once for the session.

    Tests must not modify the model; a test about loading itself calls ``load_forecaster``.
    """
    import attnviz

    return attnviz.load_forecaster()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip slow tests unless --runslow, with a visible reason (CI runs the fast suite)."""
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --runslow (skipped in CI to keep it fast)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
