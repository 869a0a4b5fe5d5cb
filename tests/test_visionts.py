"""VisionTS adapter: faithful forecasts, the folded token-to-time map, capture, loading, bad input.

Fast tests use a small VisionTS built by visionts' own constructor (``tiny_visionts``: the real
224-pixel, 14 x 14-token geometry with a small MAE); ``mae_base`` (112 M parameters, seconds
per forecast on a CPU) runs in the tests marked slow.
"""
from __future__ import annotations

import argparse
import ast
import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import attnviz.forecasters.visionts as visionts_adapter
from attnviz.capture import AttentionRollout
from attnviz.forecasters.visionts import VisionTSForecaster, import_visionts, tiny_visionts
from attnviz.forecasters.vitime.checkpoint import CheckpointError
from attnviz.lags import prefix_mass_from_attention, time_maps_from_attention

#: (context, horizon, periodicity): P = 1; P = 24 with a context of whole periods; a context
#: that is not a multiple of P (20 samples padded); a horizon over two masked token columns.
GEOMETRIES = {
    "P1": (96, 24, 1),
    "P24": (480, 96, 24),
    "ragged": (100, 36, 24),
    "spill": (96, 48, 1),
}


def series(length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return 3.0 + np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=length).cumsum()


def visionts_forward(model, x: np.ndarray, horizon: int, periodicity: int):
    """visionts' own recipe: update_config, then model(x)."""
    model.update_config(len(x), horizon, periodicity=periodicity)
    with torch.no_grad():
        return model(torch.tensor(x, dtype=torch.float32)[None, :, None])


def normalised(x: np.ndarray, norm_const: float = 0.4) -> tuple[np.ndarray, float, float]:
    """visionts' normalisation in float64: (x - mean) / (sqrt(var + 1e-5) / norm_const)."""
    mu = x.mean()
    scale = np.sqrt(x.var() + 1e-5) / norm_const
    return (x - mu) / scale, mu, scale


@pytest.fixture(scope="module")
def vt():
    return pytest.importorskip(
        "visionts", reason="VisionTS tests need the optional visionts package (pip install attnviz[visionts])"
    )


@pytest.fixture(scope="module")
def tiny(vt):
    return tiny_visionts(seed=0)


@pytest.fixture(scope="module")
def base(vt):
    """visionts' mae_base with random weights (slow tests only)."""
    torch.manual_seed(0)
    return vt.VisionTS(arch="mae_base", load_ckpt=False).eval()


def forecaster(model, periodicity: int) -> VisionTSForecaster:
    return VisionTSForecaster(model, periodicity, allow_random_weights=True)


class Recorder:
    """Forward (pre-)hooks that keep inputs/outputs of modules during a with-block; removed after."""

    def __init__(self, **modules):
        self.modules = modules
        self.inputs: dict = {}
        self.outputs: dict = {}

    def __enter__(self):
        self.handles = []
        for name, module in self.modules.items():
            self.handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: self.inputs.__setitem__(name, args[0].detach().clone())
            ))
            self.handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: self.outputs.__setitem__(name, out)
            ))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


# ----- faithful forecasts ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", GEOMETRIES)
def test_forecast_equals_visionts_forward(tiny, name):
    length, horizon, p = GEOMETRIES[name]
    x = series(length)
    out = forecaster(tiny, p).predict(x, horizon)
    ref = visionts_forward(tiny, x, horizon, p)[0, :, 0].double().numpy()
    assert out.forecast.shape == (horizon,)
    assert np.max(np.abs(out.forecast - ref)) <= 1e-5
    assert "random_masking" not in tiny.vision_model.__dict__  # the observer is gone


@pytest.mark.slow
def test_forecast_equals_visionts_forward_mae_base(base):
    diffs = {}
    for name, (length, horizon, p) in GEOMETRIES.items():
        x = series(length, seed=1)
        out = forecaster(base, p).predict(x, horizon)
        ref = visionts_forward(base, x, horizon, p)[0, :, 0].double().numpy()
        diffs[name] = float(np.max(np.abs(out.forecast - ref)))
    print("max |attnviz - visionts| per geometry (mae_base):", diffs)
    assert max(diffs.values()) <= 1e-5, diffs


def test_geometry_cases_are_what_their_names_say(tiny):
    fc = forecaster(tiny, 1)
    for name, (length, horizon, p) in GEOMETRIES.items():
        fc.periodicity = p
        g = fc.geometry(length, horizon)
        assert g.periodicity == p and g.context_length == length
        assert (g.pad_left > 0) == (name == "ragged"), name
        # token columns that write forecast samples: masked ones, plus the last visible one,
        # which the bilinear output resize blends into the first forecast samples (< 1 sample's worth)
        forecast_part = g.output_weights[:, length:]
        written = forecast_part.reshape(g.grid_size, g.grid_size, horizon).sum(axis=(0, 2))
        cols = np.flatnonzero(written > 1e-9)
        assert cols.min() >= g.input_cols - 1
        assert forecast_part[g.visible].sum() < 1.0
        holding = np.flatnonzero(written[g.input_cols :] > 1.0)  # more than one sample's worth
        if name == "spill":
            assert len(holding) >= 2, written


def test_visiontspp_forecast_and_quantiles_equal_its_forward(vt):
    model = tiny_visionts(seed=1, variant="visiontspp")
    x = series(100)
    out = forecaster(model, 24).predict(x, 36)
    median, others = visionts_forward(model, x, 36, 24)
    assert np.max(np.abs(out.forecast - median[0, :, 0].double().numpy())) <= 1e-5
    assert out.quantile_heads.shape == (len(others), 36)
    for mine, theirs in zip(out.quantile_heads, others):
        assert np.max(np.abs(mine - theirs[0, :, 0].double().numpy())) <= 1e-5


# ----- the token-to-time map ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", GEOMETRIES)
def test_image_and_forecast_follow_the_geometry(tiny, name):
    length, horizon, p = GEOMETRIES[name]
    check_image_and_forecast(tiny, series(length), horizon, p)


@pytest.mark.parametrize("seed", range(4))
def test_drawn_geometries_are_faithful(tiny, seed):
    """Geometries nobody chose: the forecast equals visionts' and the geometry explains it."""
    rng = np.random.default_rng(100 + seed)
    p = int(rng.choice([1, 5, 7, 12, 24, 52]))
    length = int(rng.integers(p, 700))
    horizon = int(rng.integers(1, 3 * length))
    fc = forecaster(tiny, p)
    try:
        fc.geometry(length, horizon)
    except ValueError as exc:  # a horizon too long for the image: take the longest it holds
        horizon = int(str(exc).split("at most ")[1].split(",")[0])
    x = series(length, seed)
    out = check_image_and_forecast(tiny, x, horizon, p)
    ref = visionts_forward(tiny, x, horizon, p)[0, :, 0].double().numpy()
    assert np.max(np.abs(out.forecast - ref)) <= 1e-5, (length, horizon, p)


def check_image_and_forecast(tiny, x: np.ndarray, horizon: int, p: int):
    """The MAE's input image is the folded, resized context and the forecast the reconstruction
    unfolded, both as the FoldedGrid weights say."""
    length = len(x)
    with Recorder(mae=tiny.vision_model) as rec:
        out = forecaster(tiny, p).predict(x, horizon)
    g = out.geometry
    image = rec.inputs["mae"][0].double().numpy()  # (3, 224, 224)
    assert np.array_equal(image[0], image[1]) and np.array_equal(image[0], image[2])
    xn, mu, scale = normalised(x)
    padded = np.where(g.pad_sources >= 0, xn[np.maximum(g.pad_sources, 0)], 0.0)
    folded = padded.reshape(g.periods_in, p).T  # rows: phase, columns: period
    width = g.input_cols * g.patch_size
    expected = g.input_row_weights @ folded @ g.input_col_weights.T
    np.testing.assert_allclose(image[0][:, :width], expected, atol=1e-5)
    assert not image[0][:, width:].any()  # masked columns are zero
    # per token: the mean pixel is input_weights @ series
    s = g.patch_size
    token_means = image[0].reshape(g.grid_size, s, g.grid_size, s).mean(axis=(1, 3)).reshape(-1)
    np.testing.assert_allclose(token_means, g.input_weights @ xn, atol=1e-5)
    assert not g.input_weights[~g.visible].any()
    # and the forecast is the reconstructed image read back through the output weights
    pred = rec.outputs["mae"][1]
    grey = tiny.vision_model.unpatchify(pred).mean(1)[0].double().numpy()  # (224, 224)
    unfolded = (g.output_row_weights @ grey @ g.output_col_weights.T).T.reshape(-1)
    start = g.pad_left + length
    mine = unfolded[start : start + horizon] * scale + mu
    np.testing.assert_allclose(mine, out.forecast, atol=1e-4 * scale)
    # every output sample is shared out over the tokens exactly once
    np.testing.assert_allclose(g.output_weights.sum(axis=0), 1.0, atol=1e-9)
    return out


def test_tokens_of_one_row_share_phases_and_sit_whole_columns_apart(tiny):
    length, horizon, p = GEOMETRIES["P24"]
    g = forecaster(tiny, p).geometry(length, horizon)
    assert g.samples_per_col == 120.0  # 20 periods on 4 columns: 5 periods per column
    phases = np.arange(length) % p
    for row in range(g.grid_size):
        touched = [set(phases[g.input_weights[g.token_index(row, c)] > 1e-12]) for c in range(g.input_cols)]
        assert all(t == touched[0] for t in touched), row  # same phases in every column
        assert len(touched[0]) < p  # a row covers only part of the period
        centers = g.token_centers[[g.token_index(row, c) for c in range(g.input_cols)]]
        # interior columns: exactly one column of samples apart (edges are clamped by the resize)
        np.testing.assert_allclose(np.diff(centers)[1:-1], g.samples_per_col, atol=1e-9)
    np.testing.assert_allclose(g.sample_weights.sum(axis=1)[g.visible], 1.0, atol=1e-12)


def test_geometry_reads_visionts_config_without_changing_the_model(tiny):
    fc = forecaster(tiny, 24)
    fc.predict(series(480), 96)
    before = (tiny.context_len, tiny.pred_len, tiny.num_patch_input, tiny.mask.clone())
    g = fc.geometry(100, 36)
    assert (tiny.context_len, tiny.pred_len, tiny.num_patch_input) == before[:3]
    assert torch.equal(tiny.mask, before[3])
    tiny.update_config(100, 36, periodicity=24)
    assert (g.pad_left, g.input_cols) == (tiny.pad_left, tiny.num_patch_input)
    assert g.periods_out == tiny.output_resize.size[1]
    assert g.ids_restore is None and g.encoder_tokens is None
    with pytest.raises(ValueError, match="ids_restore"):
        g.encoder_order


def test_encoder_order_is_restored_with_ids_restore(tiny):
    """Encoder tokens, put in natural order, are the row-major visible patches (+ CLS)."""
    length, horizon, p = GEOMETRIES["ragged"]
    vm = tiny.vision_model
    with Recorder(mae=vm, block0=vm.blocks[0]) as rec:
        out = forecaster(tiny, p).predict(series(length), horizon)
    g = out.geometry
    with torch.no_grad():
        patches = vm.patch_embed(rec.inputs["mae"]) + vm.pos_embed[:, 1:]
        cls = vm.cls_token + vm.pos_embed[:, :1]
    expected = torch.cat([cls, patches[:, torch.as_tensor(np.flatnonzero(g.visible))]], dim=1)[0]
    seen = rec.inputs["block0"][0]
    assert seen.shape[0] == 1 + g.num_visible
    torch.testing.assert_close(seen[torch.as_tensor(g.encoder_order)], expected)
    assert sorted(g.encoder_tokens) == list(np.flatnonzero(g.visible))


# ----- capture --------------------------------------------------------------------------------------
def naive_attention(module, x: torch.Tensor) -> np.ndarray:
    """softmax(q k^T * scale) recomputed in float64 from the module's own weights."""
    b, n, _ = x.shape
    heads, dim = module.num_heads, module.head_dim
    qkv = torch.nn.functional.linear(x.double(), module.qkv.weight.double(), module.qkv.bias.double())
    q, k, _ = qkv.reshape(b, n, 3, heads, dim).permute(2, 0, 3, 1, 4)
    return torch.softmax(q * module.scale @ k.transpose(-2, -1), dim=-1).numpy()


def run_captured(model, fc, x, horizon, strategy):
    rollout = AttentionRollout(model)
    modules = rollout.modules
    with Recorder(**{n.replace(".", "_"): m for n, m in modules.items()}) as rec:
        with rollout.capture(keep_full=True, strategy=strategy) as cap:
            out = fc.predict(x, horizon)
    inputs = {n: rec.inputs[n.replace(".", "_")] for n in modules}
    return out, cap, modules, inputs


@pytest.mark.parametrize("strategy", ["exact", "chunked"])
def test_capture_equals_naive_attention_in_natural_order(tiny, strategy):
    length, horizon, p = GEOMETRIES["ragged"]
    fc = forecaster(tiny, p)
    out, cap, modules, inputs = run_captured(tiny, fc, series(length), horizon, strategy)
    g = out.geometry
    assert len(cap.maps) == 4  # 2 encoder + 2 decoder blocks
    for name, module in modules.items():
        captured = cap.maps[name][0].numpy()
        naive = naive_attention(module, inputs[name])[0]
        assert np.max(np.abs(captured - naive)) <= 1e-5, name
        if ".decoder_blocks." in name:
            assert captured.shape[-1] == g.seq_len  # natural order already
            continue
        # encoder: put back in natural order; equals attention over the row-major visible tokens
        x_natural = inputs[name][:, torch.as_tensor(g.encoder_order)]
        natural = naive_attention(module, x_natural)[0]
        np.testing.assert_allclose(g.to_natural(captured), natural, atol=1e-5)
        enc_grid = g.encoder_grid()
        assert time_maps_from_attention(g.to_natural(captured), enc_grid).shape == (
            module.num_heads, g.input_cols, g.input_cols
        )


def test_decoder_time_maps_use_the_decoder_grid(tiny):
    length, horizon, p = GEOMETRIES["P24"]
    fc = forecaster(tiny, p)
    grid = fc.grid(length, horizon)
    rollout = AttentionRollout(tiny, layers="vision_model.decoder_blocks.*")
    with rollout.capture(keep_full=True, grid=grid) as cap:
        out = fc.predict(series(length), horizon)
    assert out.grid == grid and grid.samples_per_col == 120.0 and grid.history_cols == 4
    for name, full in cap.maps.items():
        np.testing.assert_allclose(cap.time_maps[name].numpy(), time_maps_from_attention(full, grid), atol=1e-5)
        np.testing.assert_allclose(cap.prefix_mass[name].numpy(), prefix_mass_from_attention(full, grid), atol=1e-5)


# ----- weights and loading -------------------------------------------------------------------------
def test_random_weights_are_refused_unless_allowed(tiny):
    with pytest.raises(ValueError, match=r"random weights.*Bad checkpoint file.*allow_random_weights=True") as err:
        VisionTSForecaster(tiny, 24)
    assert "\n" not in str(err.value)
    trained = copy.deepcopy(tiny)
    with torch.no_grad():
        trained.vision_model.norm.bias += 0.01
    assert VisionTSForecaster(trained, 24).periodicity == 24


def save_tiny_checkpoint(model, path):
    trained = copy.deepcopy(model)
    with torch.no_grad():
        for module in trained.vision_model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.bias.add_(0.01)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": trained.vision_model.state_dict()}, path)
    return trained


@pytest.fixture
def tiny_arch(vt, monkeypatch):
    """Register the small MAE as a visionts arch (file 'tiny.pth') for one test."""
    from attnviz.forecasters.visionts.tiny import _tiny_mae

    monkeypatch.setitem(vt.model.MAE_ARCH, "tiny", [_tiny_mae, "tiny.pth"])
    return "tiny"


def test_from_pretrained_loads_a_checkpoint_strictly(tiny, tiny_arch, tmp_path):
    trained = save_tiny_checkpoint(tiny, tmp_path / "tiny.pth")
    fc = VisionTSForecaster.from_pretrained(24, arch=tiny_arch, ckpt_dir=tmp_path)
    x = series(100)
    ref = visionts_forward(trained, x, 36, 24)[0, :, 0].double().numpy()
    assert np.max(np.abs(fc.predict(x, 36).forecast - ref)) <= 1e-5


def test_from_pretrained_errors_are_one_line(vt, tiny, tiny_arch, tmp_path, monkeypatch):
    missing = tmp_path / "none"
    with pytest.raises(CheckpointError, match="no VisionTS checkpoint at .*tiny.pth.*download=True"):
        VisionTSForecaster.from_pretrained(24, arch=tiny_arch, ckpt_dir=missing, download=False)

    def offline(url, path):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(vt.util, "download_file", offline)
    with pytest.raises(CheckpointError, match="could not download .*tiny.pth.*network is unreachable"):
        VisionTSForecaster.from_pretrained(24, arch=tiny_arch, ckpt_dir=missing)

    (tmp_path / "tiny.pth").write_bytes(b"<html>404</html>")
    with pytest.raises(CheckpointError, match="not a readable VisionTS checkpoint.*operand.*delete it") as err:
        VisionTSForecaster.from_pretrained(24, arch=tiny_arch, ckpt_dir=tmp_path)
    assert "\n" not in str(err.value)

    torch.save({"model": {}, "args": argparse.Namespace(lr=1)}, tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match="pickles argparse.Namespace.*trust_checkpoint=True"):
        VisionTSForecaster.from_pretrained(24, arch=tiny_arch, ckpt_dir=tmp_path)

    torch.save({"model": {"foreign.weight": torch.zeros(2)}}, tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match=r"does not fit visionts' tiny: \d+ missing keys.*1 unexpected"):
        VisionTSForecaster.from_pretrained(24, arch=tiny_arch, ckpt_dir=tmp_path)

    with pytest.raises(ValueError, match="arch must be one of"):
        VisionTSForecaster.from_pretrained(24, arch="mae_tiny", ckpt_dir=tmp_path)
    with pytest.raises(ValueError, match="variant must be one of"):
        VisionTSForecaster.from_pretrained(24, variant="vision", ckpt_dir=tmp_path)


# ----- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("periodicity", [0, -3, 1.5, True, "24", None])
def test_bad_periodicity(tiny, periodicity):
    with pytest.raises(ValueError, match=f"periodicity must be a positive integer.*got {periodicity!r}"):
        forecaster(tiny, periodicity)


def test_context_shorter_than_one_period(tiny):
    with pytest.raises(ValueError, match="context has 20 samples, shorter than one period.*periodicity=24.*at least 24"):
        forecaster(tiny, 24).predict(series(20), 10)
    assert forecaster(tiny, 24).predict(series(24), 10).forecast.shape == (10,)


def test_horizon_the_image_cannot_hold(tiny):
    fc = forecaster(tiny, 1)
    assert fc.predict(series(48), 624).forecast.shape == (624,)  # the last one that fits
    with pytest.raises(ValueError, match="horizon=625 does not fit the image.*48 samples.*at most 624") as err:
        fc.predict(series(48), 625)
    assert "\n" not in str(err.value)
    # an align_const that gives the context every column leaves no room for any horizon
    with pytest.raises(ValueError, match="horizon=1 does not fit.*14 of 14 patch columns.*at most 0"):
        VisionTSForecaster(tiny, 1, allow_random_weights=True, align_const=1.05).predict(series(96), 1)
    with pytest.raises(ValueError, match="cannot lay out a context of 96 samples.*align_const.: 3.0"):
        VisionTSForecaster(tiny, 1, allow_random_weights=True, align_const=3.0).predict(series(96), 1)


def test_models_that_are_not_visionts(tiny, vitime_fixture_forecaster):
    for thing in (vitime_fixture_forecaster.model, tiny.vision_model, "mae_base"):
        with pytest.raises(TypeError, match="model must be a visionts.VisionTS or visionts.VisionTSpp, got"):
            VisionTSForecaster(thing, 24)
    broken = tiny_visionts(variant="visiontspp", quantile=False)
    with pytest.raises(ValueError, match=r"VisionTSpp\(quantile=False\) is not supported"):
        forecaster(broken, 24)


def test_unknown_interpolation(tiny):
    with pytest.raises(ValueError, match="interpolation 'cubic' is not one visionts knows"):
        VisionTSForecaster(tiny, 24, allow_random_weights=True, interpolation="cubic").predict(series(48), 12)


def test_missing_visionts_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "visionts", None)  # as if it were not installed
    for call in (import_visionts, lambda: VisionTSForecaster(object(), 24)):
        with pytest.raises(ImportError, match=r"needs the visionts package.*pip install attnviz\[visionts\]"):
            call()


def test_the_adapter_imports_visionts_only_when_used():
    """No module of the package imports visionts at import time (attnviz works without it)."""
    for path in Path(visionts_adapter.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only; imports inside functions are lazy
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            assert not any(n.split(".")[0] == "visionts" for n in names), (path.name, names)


# ----- slow: the released architecture ------------------------------------------------------------------
@pytest.mark.slow
def test_mae_base_capture_equals_naive_attention(base):
    length, horizon, p = GEOMETRIES["P24"]
    fc = forecaster(base, p)
    out, cap, modules, inputs = run_captured(base, fc, series(length), horizon, "auto")
    assert len(cap.maps) == 20
    worst = max(
        float(np.max(np.abs(cap.maps[n][0].numpy() - naive_attention(m, inputs[n])[0])))
        for n, m in modules.items()
    )
    print("mae_base: max |captured - naive| over 20 layers:", worst)
    assert worst <= 1e-5
