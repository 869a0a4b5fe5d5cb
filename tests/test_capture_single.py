"""Single-pass capture: the layer's output equals timm's fused kernel, fixture forecasts stay within
the upstream tolerance, a batch equals single calls, fallbacks say why; CUDA where there is one."""
from __future__ import annotations

import inspect
import json
import warnings

import numpy as np
import pytest
import torch
from timm.layers import Attention
from torch import nn

import attnviz.capture_strategies as strategies_mod
from attnviz.capture import AttentionRollout, CaptureFallbackWarning
from attnviz.capture_strategies import (
    BlockPlan,
    BlockRunner,
    single_blocker,
    single_pass_forward,
    timm_forward_mirrored,
)

HORIZON = 720
#: The stated tolerance of ``single`` against timm's fused kernel: one layer's output, float32.
LAYER_ATOL, LAYER_RTOL = 1e-5, 1e-5
#: Time maps, prefix mass and head-fused maps of different strategies (probabilities in [0, 1]).
MAP_ATOL = 1e-6
ATTENTION_ARGS = set(inspect.signature(Attention.__init__).parameters)


# ----- helpers -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fc(vitime_fixture_forecaster):
    return vitime_fixture_forecaster


@pytest.fixture(scope="module")
def reference(fixture_dir):
    with np.load(fixture_dir / "reference.npz") as data:
        return {k: data[k] for k in data.files}


def assert_matches_upstream(out_full: np.ndarray, pred: np.ndarray, fc, std: float) -> None:
    """The fixture tolerance of tests/test_vitime.py: 99.5 % within 1e-4, none beyond one bin."""
    diff = np.abs(out_full - pred)
    assert np.mean(diff <= 1e-4) >= 0.995, f"only {np.mean(diff <= 1e-4):.4f} of points within 1e-4"
    assert diff.max() <= fc.config.resolution * std + 1e-9


def attention(seed: int = 0, **kw) -> Attention:
    torch.manual_seed(seed)
    return Attention(kw.pop("dim", 32), num_heads=kw.pop("num_heads", 4), qkv_bias=True, **kw).eval()


def fused_output(module: Attention, x: torch.Tensor, **kw) -> torch.Tensor:
    flag = module.fused_attn
    module.fused_attn = True
    try:
        with torch.no_grad():
            return module(x, **kw)
    finally:
        module.fused_attn = flag


def series_batch(length: int, count: int = 8) -> list[np.ndarray]:
    """``count`` different series (periods, phases, trends) of one length."""
    n = np.arange(length, dtype=float)
    return [np.sin(2 * np.pi * n / (12 + 5 * i)) + 0.01 * i * n / 10 + 0.3 * np.cos(n / (3 + i)) for i in range(count)]


# ----- the layer's output -------------------------------------------------------------------------
VARIANTS = [
    {},
    {"qk_norm": True, "norm_layer": nn.LayerNorm},
    {"attn_head_dim": 6},  # attn_dim (24) != dim (32)
]
if "scale_norm" in ATTENTION_ARGS:
    VARIANTS.append({"scale_norm": True, "norm_layer": nn.LayerNorm})
if "gated" in ATTENTION_ARGS:
    VARIANTS.append({"gated": True})


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(kw) or "default")
@pytest.mark.parametrize(
    "plan", [BlockPlan(rows=1, heads=1), BlockPlan(rows=5, heads=1), BlockPlan(rows=64, heads=4, in_place=False)]
)
@pytest.mark.parametrize("workers", [1, 2])
def test_single_pass_forward_equals_fused_kernel(kw, plan, workers):
    module = attention(**dict(kw))
    assert single_blocker(module) is None
    x = torch.randn(3, 23, 32, generator=torch.Generator().manual_seed(1))
    runner = BlockRunner(workers)
    try:
        with torch.no_grad():
            got = single_pass_forward(module, x, None, False, None, plan, runner)
    finally:
        runner.close()
    want = fused_output(module, x)
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got, want, atol=LAYER_ATOL, rtol=LAYER_RTOL)


@pytest.mark.parametrize("mask_kind", ["bool_per_head", "float", "causal"])
@pytest.mark.parametrize("heads_per_block", [1, 4])
def test_single_pass_forward_with_masks(mask_kind, heads_per_block):
    module = attention()
    n = 11
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, n, 32, generator=gen)
    kw: dict = {}
    if mask_kind == "bool_per_head":
        mask = torch.rand(2, 4, n, n, generator=gen) > 0.4
        mask[..., 0] = True  # every query keeps a key
        kw["attn_mask"] = mask
    elif mask_kind == "float":
        kw["attn_mask"] = torch.randn(1, 4, n, n, generator=gen)
    else:
        kw["is_causal"] = True
    plan = BlockPlan(rows=4, heads=heads_per_block, in_place=heads_per_block == 1)
    with torch.no_grad():
        got = single_pass_forward(
            module, x, kw.get("attn_mask"), kw.get("is_causal", False), None, plan, BlockRunner(1)
        )
    torch.testing.assert_close(got, fused_output(module, x, **kw), atol=LAYER_ATOL, rtol=LAYER_RTOL)


def test_timm_forward_is_mirrored():
    """The self-check that guards ``single`` against a timm whose forward computes more."""
    assert timm_forward_mirrored()


# ----- the fixture model --------------------------------------------------------------------------
def test_fixture_forecasts_within_upstream_tolerance(fc, reference, fixture_dir):
    meta = json.loads((fixture_dir / "meta.json").read_text())
    for case in meta["cases"]:
        i = case["index"]
        x, horizon = reference[f"x_{i}"], case["horizon"]
        grid = fc.grid(len(x), horizon)
        plain = fc.predict(x, horizon)
        rollout = AttentionRollout(fc.model)
        with rollout.capture(grid=grid, strategy="single") as single:
            out = fc.predict(x, horizon)
        with rollout.capture(grid=grid, strategy="exact") as exact:
            fc.predict(x, horizon)
        assert set(single.strategies.values()) == {"single"}
        assert_matches_upstream(out.full, reference[f"pred_{i}"][:, 0], fc, out.std)
        np.testing.assert_allclose(out.probabilities, plain.probabilities, atol=1e-5, rtol=0)
        for layer in rollout.layer_names:
            for name in ("time_maps", "prefix_mass"):
                diff = getattr(single, name)[layer] - getattr(exact, name)[layer]
                assert diff.abs().max().item() < MAP_ATOL, (i, layer, name)


def test_layer_outputs_equal_fused_kernel_inside_the_model(fc, reference):
    """Every attention layer's output under ``single`` against the same layer's fused output."""
    outputs: dict[str, list[torch.Tensor]] = {}

    def keep(name):
        return lambda module, args, out: outputs.setdefault(name, []).append(out)

    rollout = AttentionRollout(fc.model)
    handles = [m.register_forward_hook(keep(n)) for n, m in rollout.modules.items()]
    try:
        fc.predict(reference["x_0"], HORIZON)
        with rollout.capture(grid=fc.grid(512, HORIZON), strategy="single"):
            fc.predict(reference["x_0"], HORIZON)
    finally:
        for handle in handles:
            handle.remove()
    for name, (fused, single) in outputs.items():
        # Same input only in the first layer; later ones inherit earlier rounding, still tiny.
        torch.testing.assert_close(single, fused, atol=LAYER_ATOL, rtol=LAYER_RTOL)


@pytest.mark.parametrize("strategy", ["single", "chunked", "exact"])
def test_batch_of_8_equals_8_single_calls(fc, reference, strategy):
    """A batch of 8 series in one forward gives each series the maps it gets alone."""
    series = series_batch(len(reference["x_0"]))
    grid = fc.grid(len(series[0]), HORIZON)
    rollout = AttentionRollout(fc.model)
    kw = dict(grid=grid, head_fusion="max", strategy=strategy)
    with rollout.capture(**kw) as batched:
        many = fc.predict_many(series, HORIZON)
    with rollout.capture(**kw) as singles:
        ones = [fc.predict(s, HORIZON) for s in series]
    assert batched.calls == {n: 1 for n in rollout.layer_names}
    assert singles.calls == {n: 8 for n in rollout.layer_names}
    assert set(batched.strategies.values()) == {strategy}
    for layer in rollout.layer_names:
        for name in ("time_maps", "prefix_mass", "token_maps"):
            a, b = getattr(batched, name)[layer], getattr(singles, name)[layer]
            assert a.shape[0] == 8 and a.shape == b.shape, (layer, name)
            assert (a - b).abs().max().item() < MAP_ATOL, (layer, name)
        t = batched.time_maps[layer]
        assert (t[0] - t[1]).abs().max() > 1e-4  # the series really differ
    for one, batch_item in zip(ones, many):
        np.testing.assert_allclose(batch_item.probabilities, one.probabilities, atol=1e-5, rtol=0)


def test_accelerator_layout_on_the_cpu(fc, reference):
    """The accelerator layout (all heads of a block in one batched kernel, the softmax into its
    own buffer), run on the CPU: the same maps and forecasts as the CPU layout."""
    x = reference["x_0"]
    grid = fc.grid(len(x), HORIZON)
    rollout = AttentionRollout(fc.model)
    results = {}
    for grouped in (False, True):
        session = rollout.capture(grid=grid, keep_full=True, head_fusion="mean", strategy="single", chunk_size=50)
        session._accelerator_layout = grouped
        with session as cap:
            out = fc.predict(x, HORIZON)
        results[grouped] = (cap, out)
    (a, out_a), (b, out_b) = results[False], results[True]
    np.testing.assert_allclose(out_a.probabilities, out_b.probabilities, atol=1e-5, rtol=0)
    for layer in rollout.layer_names:
        for name in ("maps", "time_maps", "prefix_mass", "token_maps"):
            diff = getattr(a, name)[layer] - getattr(b, name)[layer]
            assert diff.abs().max().item() < MAP_ATOL, (layer, name)


# ----- where single is not faithful ---------------------------------------------------------------
class Wrapper(nn.Module):
    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x):
        return self.attn(x)


def test_autograd_falls_back_to_chunked_and_keeps_gradients():
    model = Wrapper(attention())
    x = torch.randn(2, 9, 32, requires_grad=True)
    rollout = AttentionRollout(model)
    with pytest.warns(CaptureFallbackWarning, match=r"'attn': single-pass .*autograd.*chunked instead"):
        with rollout.capture(head_fusion="mean", strategy="single") as cap:
            out = model(x)
    assert cap.strategies == {"attn": "chunked"}
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with warnings.catch_warnings():  # auto: chunked is as faithful, so no warning
        warnings.simplefilter("error")
        with rollout.capture(head_fusion="mean", strategy="auto") as cap:
            model(torch.randn(1, 800, 32))  # 4 x 800^2 floats a series: above the auto threshold
    assert cap.strategies == {"attn": "chunked"}


def test_attention_dropout_in_training_falls_back():
    model = Wrapper(attention(attn_drop=0.1)).train()
    with pytest.warns(CaptureFallbackWarning, match="dropout"):
        with AttentionRollout(model).capture(head_fusion="mean", strategy="single") as cap, torch.no_grad():
            model(torch.randn(1, 6, 32))
    assert cap.strategies == {"attn": "chunked"}


class ExtraChild(Attention):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.adapter = nn.Linear(4, 4)


def test_single_blocker_reasons(monkeypatch):
    assert single_blocker(attention()) is None
    assert "submodules" in single_blocker(ExtraChild(32, num_heads=4)) and "adapter" in single_blocker(
        ExtraChild(32, num_heads=4)
    )
    patched = attention()
    patched.forward = lambda x: x
    assert "replaced on the instance" in single_blocker(patched)
    scaled = attention()
    scaled.scale = 0.5
    assert "scale" in single_blocker(scaled)
    monkeypatch.setattr(strategies_mod, "timm_forward_mirrored", lambda: False)
    assert "timm" in single_blocker(attention())


def test_patched_forward_is_kept_and_captured_chunked():
    """Someone else's instance forward is never replaced (and never removed)."""
    model = Wrapper(attention())
    original = model.attn.forward
    model.attn.forward = lambda x, attn_mask=None, is_causal=False: original(x)
    mine = model.attn.forward
    with pytest.warns(CaptureFallbackWarning, match="replaced on the instance"):
        with AttentionRollout(model).capture(head_fusion="mean", strategy="single") as cap, torch.no_grad():
            model(torch.randn(1, 6, 32))
    assert cap.strategies == {"attn": "chunked"}
    assert model.attn.forward is mine


def test_forward_restored_when_the_attention_raises():
    model = Wrapper(attention())

    def boom(module, args):
        raise KeyError("boom")

    handle = model.attn.proj.register_forward_pre_hook(boom)
    try:
        with pytest.raises(KeyError, match="boom"):
            with AttentionRollout(model).capture(head_fusion="mean", strategy="single"), torch.no_grad():
                assert "forward" in vars(model.attn)  # installed for the session
                model(torch.randn(1, 6, 32))
    finally:
        handle.remove()
    assert "forward" not in vars(model.attn)
    assert not model.attn._forward_hooks and not model.attn._forward_pre_hooks


# ----- CUDA ---------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_strategies_on_cuda(fixture_dir, reference, fc):
    """Every strategy on CUDA, a batch of 8: maps equal the CUDA exact path, forecasts the plain
    CUDA forward, and the CPU's maps up to the device's rounding (cuDNN may run the patch
    embedding in TF32)."""
    from attnviz.forecasters.vitime import ViTimeForecaster

    gpu = ViTimeForecaster.from_checkpoint(fixture_dir / "checkpoint.pth", device="cuda")
    series = series_batch(len(reference["x_0"]))
    grid = fc.grid(len(series[0]), HORIZON)
    kw = dict(grid=grid, keep_full=True, head_fusion="mean")
    with AttentionRollout(fc.model).capture(strategy="exact", **kw) as on_cpu:
        fc.predict_many(series, HORIZON)
    plain = gpu.predict_many(series, HORIZON)
    caps = {}
    for strategy in ("exact", "chunked", "single"):
        with AttentionRollout(gpu.model).capture(strategy=strategy, **kw) as cap:
            out = gpu.predict_many(series, HORIZON)
        caps[strategy] = cap
        assert set(cap.strategies.values()) == {strategy}
        for a, b in zip(out, plain):
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4, rtol=0)
    for layer in caps["exact"].layer_names:
        for name in ("maps", "time_maps", "prefix_mass", "token_maps"):
            want = getattr(caps["exact"], name)[layer]
            assert want.device.type == "cpu" and want.shape == getattr(on_cpu, name)[layer].shape
            assert (want - getattr(on_cpu, name)[layer]).abs().max().item() < 1e-3, (layer, name)
            for strategy in ("chunked", "single"):
                got = getattr(caps[strategy], name)[layer]
                assert (got - want).abs().max().item() < 1e-5, (strategy, layer, name)
