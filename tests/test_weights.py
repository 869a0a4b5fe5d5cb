"""The bundled default model and the rules that choose which weights load."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import attnviz
from attnviz.forecasters.vitime import CheckpointError
from attnviz.weights import ENV_VAR, default_weights_path, resolve_weights

FIXTURE = Path(__file__).parent / "fixtures" / "vitime-upstream-small" / "checkpoint.pth"


def test_default_model_loads_offline_from_the_package(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    path = default_weights_path()
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert Path(attnviz.__file__).parent in path.parents
    assert path.stat().st_size <= 25 * 2**20
    fc = attnviz.load_forecaster()
    cfg = fc.config
    assert cfg.cols == 77 and 2 <= cfg.rows <= 8 and cfg.enc_num_heads >= 8
    n_params = sum(p.numel() for p in fc.model.parameters())
    assert n_params <= 5_000_000
    out = fc.predict(np.sin(np.arange(512) / 10), 720)
    assert out.grid.samples_per_col == pytest.approx(16.0)
    assert fc.metadata["metadata"]["trained_by"] == "attnviz train"


def test_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_weights() == default_weights_path()
    assert resolve_weights(configured="cfg.pth") == Path("cfg.pth")
    monkeypatch.setenv(ENV_VAR, str(FIXTURE))
    assert resolve_weights(configured="cfg.pth") == FIXTURE
    assert resolve_weights("explicit.pth", configured="cfg.pth") == Path("explicit.pth")
    assert attnviz.load_forecaster().config.h == 32  # the env var points at the fixture


def test_load_forecaster_errors_name_the_file(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(CheckpointError, match="nowhere.pth"):
        attnviz.load_forecaster(tmp_path / "nowhere.pth")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(default_weights_path().read_bytes()[:1000])
    (tmp_path / "cut.json").write_bytes(default_weights_path().with_suffix(".json").read_bytes())
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        attnviz.load_forecaster(truncated)
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="foreign.bin"):
        attnviz.load_forecaster(foreign)
