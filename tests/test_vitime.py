"""ViTime forecaster: upstream equivalence on the fixture, geometry, safe loading, bad input."""
from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import attnviz
from attnviz.forecasters.vitime import CheckpointError, ViTimeConfig, convert_upstream
from attnviz.forecasters.vitime.mapping import gaussian_blur, opencv_gaussian_kernel
from attnviz.forecasters.vitime.model import sincos_pos_embed_2d

FIXTURE = Path(__file__).parent / "fixtures" / "vitime-upstream-small"
TINY = {"h": 32, "maxScal": 3.5, "size": [64, 0, 96], "patch_size": [8, 16], "embed_dim": 32,
        "depth": 1, "num_heads": 4, "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 4}


@pytest.fixture(scope="module")
def fc():
    return attnviz.ViTimeForecaster.from_checkpoint(FIXTURE / "checkpoint.pth")


@pytest.fixture(scope="module")
def reference():
    return np.load(FIXTURE / "reference.npz")


@pytest.fixture(scope="module")
def meta():
    return json.loads((FIXTURE / "meta.json").read_text())


def assert_matches_upstream(out_full, pred, forecaster, std):
    diff = np.abs(out_full - pred)
    assert np.mean(diff <= 1e-4) >= 0.995, f"only {np.mean(diff <= 1e-4):.4f} of points within 1e-4"
    one_bin = forecaster.config.resolution * std
    assert diff.max() <= one_bin + 1e-9, f"max diff {diff.max()} exceeds one value bin {one_bin}"


# ----- upstream equivalence ------------------------------------------------------------------------
def test_fixture_config_is_read_from_args(fc, meta):
    cfg = fc.config
    assert (cfg.h, cfg.max_scal, cfg.size, cfg.patch_size) == (32, 3.5, (256, 0, 384), (4, 16))
    assert (cfg.enc_embed_dim, cfg.enc_depth, cfg.enc_num_heads) == (256, 3, 4)
    assert (cfg.dec_embed_dim, cfg.dec_depth, cfg.dec_num_heads) == (128, 1, 4)
    assert (cfg.rows, cfg.cols) == (8, 40)


def test_every_fixture_case_matches_upstream(fc, reference, meta):
    for case in meta["cases"]:
        i = case["index"]
        out = fc.predict(reference[f"x_{i}"], case["horizon"])
        pred = reference[f"pred_{i}"][:, 0]
        assert out.full.shape == (case["length"] + case["horizon"],)
        assert out.forecast.shape == (case["horizon"],)
        np.testing.assert_array_equal(out.forecast, out.full[case["length"]:])
        assert_matches_upstream(out.full, pred, fc, out.std)


def test_module_prefix_and_native_roundtrip(fc, reference, tmp_path):
    payload = torch.load(FIXTURE / "checkpoint.pth", weights_only=False)
    payload["model"] = {"module." + k: v for k, v in payload["model"].items()}
    prefixed = tmp_path / "prefixed.pth"
    torch.save(payload, prefixed)
    x = reference["x_0"]
    expected = fc.predict(x, 720).full
    np.testing.assert_array_equal(attnviz.ViTimeForecaster.from_checkpoint(prefixed).predict(x, 720).full, expected)

    weights, config = convert_upstream(FIXTURE / "checkpoint.pth", tmp_path / "native")
    assert weights.suffix == ".safetensors" and config.suffix == ".json"
    native = attnviz.ViTimeForecaster.from_checkpoint(tmp_path / "native")
    np.testing.assert_array_equal(native.predict(x, 720).full, expected)
    fc.save(tmp_path / "again.safetensors")
    again = attnviz.ViTimeForecaster.from_checkpoint(tmp_path / "again.json")
    np.testing.assert_array_equal(again.predict(x, 720).full, expected)


# ----- geometry ------------------------------------------------------------------------------------
def test_grid_geometry_depends_on_the_call():
    released = dict(TINY, h=128, size=[1024, 0, 1440], patch_size=[4, 32])
    fc = attnviz.ViTimeForecaster.from_config(released)
    g = fc.grid(512, 720)
    assert (g.rows, g.cols, g.prefix_tokens, g.history_cols) == (32, 77, 1, 32)
    assert g.samples_per_col == pytest.approx(16.0)
    g2 = fc.grid(300, 200)
    assert g2.samples_per_col == pytest.approx(500 / 77)
    out = fc.predict(np.sin(np.arange(300) / 7), 200)
    assert out.grid.samples_per_col == pytest.approx(500 / 77)
    assert out.full.shape == (500,)


def test_model_sizes_follow_model_size():
    cfg = ViTimeConfig.from_mapping({"h": 128, "maxScal": 3.5, "size": [1024, 0, 1440],
                                     "patch_size": [4, 32], "modelSize": 0.75})
    assert (cfg.enc_embed_dim, cfg.enc_depth, cfg.enc_num_heads) == (768, 9, 12)
    assert (cfg.dec_embed_dim, cfg.dec_depth, cfg.dec_num_heads) == (384, 4, 12)
    assert cfg.width == 2464 and (cfg.rows, cfg.cols) == (32, 77)
    doubled = ViTimeConfig.from_mapping({**cfg.to_upstream_args(), "expandData": 2})
    assert doubled.width == 2 * 2464 and doubled.cols == 154


def test_model_state_dict_keys_match_upstream(fc):
    payload = torch.load(FIXTURE / "checkpoint.pth", weights_only=False)
    upstream = {k[len("model."):] for k in payload["model"]}
    assert set(fc.model.state_dict()) == upstream


def test_sincos_tables():
    # MAE table: first half encodes the column, second half the row; CLS row is zero.
    table = sincos_pos_embed_2d(8, rows=2, cols=3)
    assert table.shape == (7, 8) and not table[0].any()
    token = 1 + 1 * 3 + 2  # row 1, col 2
    omega = 1.0 / 10000 ** (np.arange(2) / 2.0)
    np.testing.assert_allclose(table[token, :4], np.r_[np.sin(2 * omega), np.cos(2 * omega)])
    np.testing.assert_allclose(table[token, 4:], np.r_[np.sin(1 * omega), np.cos(1 * omega)])
    # ROPE flag: interleaved cos/sin, rows first.
    rope = sincos_pos_embed_2d(8, rows=2, cols=3, rope=True)
    freqs = 10000 ** (-2 * np.arange(2) / 4)
    np.testing.assert_allclose(rope[token, 0:4:2], np.cos(1 * freqs))
    np.testing.assert_allclose(rope[token, 5:8:2], np.sin(2 * freqs))
    fc = attnviz.ViTimeForecaster.from_config(dict(TINY, ROPE=True))
    assert fc.config.rope
    np.testing.assert_allclose(fc.model.pos_embed[0].numpy(), sincos_pos_embed_2d(32, 4, 10, rope=True), atol=1e-6)


# ----- mapping -------------------------------------------------------------------------------------
def test_blur_equals_opencv_gaussian_with_reflect101():
    k = opencv_gaussian_kernel(31)
    assert k.sum() == pytest.approx(1.0)
    sigma = 0.3 * ((31 - 1) * 0.5 - 1) + 0.8
    assert sigma == pytest.approx(5.0)
    np.testing.assert_allclose(k / k[15], np.exp(-((np.arange(31) - 15) ** 2) / 50.0))
    img = np.zeros((40, 60))
    img[20, 30] = 1.0
    np.testing.assert_allclose(gaussian_blur(img)[5:36, 15:46], 31 * np.outer(k, k), atol=1e-15)
    # Delta on row 1: reflect-101 mirrors about row 0 without repeating it, so row r receives
    # the kernel at offsets 1 - r and -1 - r (BORDER_REFLECT would use -2 - r instead).
    edge = np.zeros((40, 60))
    edge[1, 30] = 1.0
    col = gaussian_blur(edge)[:, 30] / (31 * k[15])
    expected = np.zeros(40)
    for r in range(40):
        for source in (1, -1):
            offset = source - r
            if -15 <= offset <= 15:
                expected[r] += k[offset + 15]
    np.testing.assert_allclose(col, expected, atol=1e-15)


def test_mu_norm_follows_upstream_formula():
    fc = attnviz.ViTimeForecaster.from_config(dict(TINY, muNorm=2))
    x = np.linspace(1.0, 3.0, 64)
    prepared = fc.prepare(x, 96)
    hist = np.interp(np.linspace(0, 63, fc.mapper.history_width(64, 96)), np.arange(64), x)
    mu0 = np.mean(hist**2 * np.sign(hist)) + 1e-7
    assert prepared.mu == pytest.approx(np.sqrt(abs(mu0)) * np.sign(mu0))
    assert prepared.std == pytest.approx(np.std(hist) + 1e-7)


def test_constant_series_forecasts_the_constant():
    fc = attnviz.ViTimeForecaster.from_config(TINY, seed=0)
    out = fc.predict(np.full(64, 4.25), 32)
    np.testing.assert_allclose(out.forecast, 4.25, atol=1e-5)
    assert np.isfinite(out.full).all()


def test_expectation_decoding_differs_from_argmax(fc, reference):
    a = fc.predict(reference["x_0"], 720, decode="max")
    b = fc.predict(reference["x_0"], 720, decode="expectation")
    assert a.full.shape == b.full.shape and not np.allclose(a.full, b.full)
    with pytest.raises(ValueError, match="decode"):
        fc.predict(reference["x_0"], 720, decode="median")


def test_accepted_input_shapes(fc):
    x = np.sin(np.arange(100) / 5)
    ref = fc.predict(x, 50).full
    np.testing.assert_array_equal(fc.predict(list(x), 50).full, ref)
    np.testing.assert_array_equal(fc.predict(x[:, None], 50).full, ref)
    np.testing.assert_array_equal(fc.predict(x, 50.0).full, ref)
    np.testing.assert_array_equal(fc.predict(np.arange(100) % 7, 50).full, fc.predict(np.arange(100.0) % 7, 50).full)
    pd = pytest.importorskip("pandas")
    np.testing.assert_array_equal(fc.predict(pd.Series(x), 50).full, ref)


@pytest.mark.parametrize(
    "series, horizon, message",
    [
        ([1.0, np.nan, 2.0], 5, "NaN"),
        ([1.0, np.inf, 2.0], 5, "NaN or infinite"),
        ([], 5, "empty"),
        ([1.0], 5, "at least 2"),
        (np.ones((10, 3)), 5, "1-D"),
        (["a", "b", "c"], 5, "numbers"),
        ("hello", 5, "sequence of numbers"),
        (np.ones(10), 0, "positive integer"),
        (np.ones(10), -3, "positive integer"),
        (np.ones(10), 2.5, "positive integer"),
        (np.ones(10), "12", "positive integer"),
        (np.ones(10), True, "positive integer"),
    ],
)
def test_bad_input_is_refused_clearly(fc, series, horizon, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fc.predict(series, horizon)


# ----- safe loading --------------------------------------------------------------------------------
def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        attnviz.ViTimeForecaster.from_checkpoint(tmp_path / "nope.pth")
    text = tmp_path / "notes.pth"
    text.write_text("just some text\n")
    with pytest.raises(CheckpointError, match="notes.pth"):
        attnviz.ViTimeForecaster.from_checkpoint(text)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((FIXTURE / "checkpoint.pth").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        attnviz.ViTimeForecaster.from_checkpoint(truncated)
    torch.save({"weights": {}}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="'args' and 'model'"):
        attnviz.ViTimeForecaster.from_checkpoint(tmp_path / "foreign.pth")


def test_missing_and_mismatched_keys_are_named(tmp_path):
    payload = torch.load(FIXTURE / "checkpoint.pth", weights_only=False)
    state = dict(payload["model"])
    del state["model.blocks.1.attn.qkv.weight"]
    torch.save({"args": payload["args"], "model": state}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing\.pth.*blocks\.1\.attn\.qkv\.weight.*\(768, 256\)"):
        attnviz.ViTimeForecaster.from_checkpoint(tmp_path / "missing.pth")
    state = dict(payload["model"])
    state["model.norm.weight"] = torch.zeros(7)
    torch.save({"args": payload["args"], "model": state}, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"norm\.weight.*expected shape \(256,\), found \(7,\)"):
        attnviz.ViTimeForecaster.from_checkpoint(tmp_path / "shape.pth")


def test_unsafe_pickle_needs_explicit_trust(tmp_path):
    payload = torch.load(FIXTURE / "checkpoint.pth", weights_only=False)
    args = argparse.Namespace(**vars(payload["args"]))
    args.created = datetime.datetime(2025, 1, 1)  # a global outside the allow-list
    torch.save({"args": args, "model": payload["model"]}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="trust_checkpoint=True"):
        attnviz.ViTimeForecaster.from_checkpoint(tmp_path / "odd.pth")
    trusted = attnviz.ViTimeForecaster.from_checkpoint(tmp_path / "odd.pth", trust_checkpoint=True)
    assert trusted.config.h == 32


def test_native_checkpoint_errors(tmp_path):
    fc = attnviz.ViTimeForecaster.from_config(TINY)
    weights, config = fc.save(tmp_path / "tiny.safetensors")
    config.unlink()
    with pytest.raises(CheckpointError, match="tiny.json"):
        attnviz.ViTimeForecaster.from_checkpoint(weights)
    (tmp_path / "tiny.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="attnviz ViTime config"):
        attnviz.ViTimeForecaster.from_checkpoint(weights)
    fc.save(tmp_path / "ok.safetensors")
    (tmp_path / "ok.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="ok.safetensors"):
        attnviz.ViTimeForecaster.from_checkpoint(tmp_path / "ok.safetensors")


def test_folder_checkpoint_loads_from_the_folder_or_its_weights_file(tmp_path):
    fc = attnviz.ViTimeForecaster.from_config(TINY)
    weights, config = fc.save(tmp_path / "run")  # no suffix: a folder
    assert (weights.name, config.name) == ("model.safetensors", "config.json")
    x = np.sin(np.arange(200) / 5.0)
    expected = fc.predict(x, 50).forecast
    for path in (tmp_path / "run", weights, config):
        np.testing.assert_array_equal(attnviz.ViTimeForecaster.from_checkpoint(path).predict(x, 50).forecast, expected)
    config.unlink()
    with pytest.raises(CheckpointError, match="model.json is missing"):
        attnviz.ViTimeForecaster.from_checkpoint(weights)


def test_devices():
    fc = attnviz.ViTimeForecaster.from_config(TINY, device="auto")
    assert fc.device.type in ("cpu", "cuda")
    assert next(fc.model.parameters()).dtype == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            attnviz.ViTimeForecaster.from_config(TINY, device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        attnviz.ViTimeForecaster.from_config(TINY, device="tpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(reference):
    cpu = attnviz.ViTimeForecaster.from_checkpoint(FIXTURE / "checkpoint.pth")
    gpu = attnviz.ViTimeForecaster.from_checkpoint(FIXTURE / "checkpoint.pth", device="cuda")
    a, b = cpu.predict(reference["x_0"], 720), gpu.predict(reference["x_0"], 720)
    assert_matches_upstream(b.full, a.full, cpu, a.std)
