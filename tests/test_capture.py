"""AttentionRollout / AttentionCapture: exactness against upstream, strategies, cleanup, errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.layers import Attention
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

import attnviz.capture as capture_mod
from attnviz.capture import AttentionCapture, AttentionRollout, CaptureFallbackWarning
from attnviz.grid import TokenGrid
from attnviz.reducers import time_maps_from_probs

HORIZON = 720
STRATEGIES = ("exact", "chunked", "single")


# ----- helpers -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(fixture_dir):
    with np.load(fixture_dir / "reference.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def fc(vitime_fixture_forecaster):
    return vitime_fixture_forecaster


@pytest.fixture(scope="module")
def series(reference):
    return reference["x_0"]


@pytest.fixture(scope="module")
def grid(fc, series):
    return fc.grid(len(series), HORIZON)


@pytest.fixture(scope="module")
def captures(fc, series, grid):
    """One full capture per strategy (odd chunk size so the last chunk is ragged)."""
    rollout = AttentionRollout(fc.model)
    out = {}
    for strategy in STRATEGIES:
        with rollout.capture(keep_full=True, grid=grid, strategy=strategy, chunk_size=37) as cap:
            forecast = fc.predict(series, HORIZON)
        out[strategy] = (cap, forecast)
    return out


def assert_clean(model: nn.Module, flags: dict[str, bool]) -> None:
    """No hook of any kind left on any module, no forward replaced, every fused_attn flag as before."""
    for name, module in model.named_modules():
        assert "forward" not in vars(module), name
        assert not module._forward_hooks, name
        assert not module._forward_pre_hooks, name
        assert not module._forward_hooks_with_kwargs, name
        assert not module._forward_pre_hooks_with_kwargs, name
        assert not module._forward_hooks_always_called, name
    assert fused_flags(model) == flags


def fused_flags(model: nn.Module) -> dict[str, bool]:
    return {n: m.fused_attn for n, m in model.named_modules() if isinstance(m, Attention)}


def numpy_time_map(full: np.ndarray, g: TokenGrid) -> tuple[np.ndarray, np.ndarray]:
    """The definition, literally: loop over query rows, sum key rows; float64."""
    a = full.astype(np.float64)
    b, h = a.shape[:2]
    t = np.zeros((b, h, g.cols, g.cols))
    m = np.zeros((b, h, g.cols))
    key_tok = np.array([[g.token_index(r, c) for c in range(g.cols)] for r in range(g.rows)])
    for r in range(g.rows):
        q_tok = key_tok[r]
        rows = a[:, :, q_tok, :]  # (b, h, cols, S)
        t += rows[..., key_tok].sum(-2)  # (b, h, cols, rows, cols) -> sum key rows
        m += rows[..., : g.prefix_tokens].sum(-1)
    return t / g.rows, m / g.rows


def small_vit(**kw) -> VisionTransformer:
    torch.manual_seed(0)
    args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
    args.update(kw)
    return VisionTransformer(**args).eval()


def vit_grid(model: VisionTransformer) -> TokenGrid:
    rows, cols = model.patch_embed.grid_size
    prefix = model.num_prefix_tokens
    return TokenGrid(rows=rows, cols=cols, prefix_tokens=prefix, history_cols=cols, samples_per_col=1.0)


# ----- layer discovery ---------------------------------------------------------------------------
def test_layers_found_in_model_order(fc):
    rollout = AttentionRollout(fc)  # a forecaster is accepted too
    assert rollout.layer_names == ["blocks.0.attn", "blocks.1.attn", "blocks.2.attn", "decoder_blocks.0.attn"]
    assert rollout.num_heads == {n: 4 for n in rollout.layer_names}
    assert AttentionRollout(fc.model, layers="blocks.*.attn").layer_names == rollout.layer_names[:3]
    assert AttentionRollout(fc.model, layers=["decoder*", "blocks.1.attn"]).layer_names == [
        "blocks.1.attn",
        "decoder_blocks.0.attn",
    ]


# ----- exactness against upstream ----------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_full_maps_equal_upstream_reference(captures, reference, strategy):
    cap, _ = captures[strategy]
    assert isinstance(cap, AttentionCapture)
    assert set(cap.maps) == set(cap.layer_names)
    expected = {k for k in reference if k.startswith("attn_")}
    assert {"attn_" + n.replace(".", "_") for n in cap.layer_names} == expected
    for layer in cap.layer_names:
        got = cap.maps[layer]
        assert got.dtype == torch.float32 and got.device.type == "cpu"
        assert got.shape == (1, 4, 321, 321)
        ref = reference["attn_" + layer.replace(".", "_")]
        np.testing.assert_allclose(got[0].numpy(), ref, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.sum(-1).numpy(), 1.0, atol=1e-5)
        assert cap.strategies[layer] == strategy
        assert cap.calls[layer] == 1


@pytest.mark.parametrize("strategy", ["chunked", "single"])
def test_blockwise_agrees_with_exact(captures, strategy):
    exact, _ = captures["exact"]
    blockwise, _ = captures[strategy]
    for layer in exact.layer_names:
        for name in ("maps", "time_maps", "prefix_mass"):
            a, b = getattr(exact, name)[layer], getattr(blockwise, name)[layer]
            assert a.shape == b.shape
            assert (a - b).abs().max().item() < 1e-6, (layer, name)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_time_maps_equal_numpy_definition(captures, grid, strategy):
    cap, _ = captures[strategy]
    for layer in cap.layer_names:
        t_ref, m_ref = numpy_time_map(cap.maps[layer].numpy(), grid)
        t, m = cap.time_maps[layer].numpy(), cap.prefix_mass[layer].numpy()
        assert t.shape == (1, 4, grid.cols, grid.cols) and m.shape == (1, 4, grid.cols)
        np.testing.assert_allclose(t, t_ref, atol=1e-6, rtol=0)
        np.testing.assert_allclose(m, m_ref, atol=1e-6, rtol=0)
        np.testing.assert_allclose(t.sum(-1), 1.0 - m, atol=1e-5)
        assert m.max() > 1e-4  # CLS gets real mass here, so the check above is not vacuous


def test_time_convention_mean_divides_time_maps_only(fc, series, grid, captures):
    summed, _ = captures["exact"]
    with AttentionRollout(fc.model).capture(grid=grid, time_convention="mean", strategy="exact") as cap:
        fc.predict(series, HORIZON)
    assert cap.maps == {}  # keep_full is off by default
    for layer in cap.layer_names:
        expected = summed.time_maps[layer] / grid.rows
        torch.testing.assert_close(cap.time_maps[layer], expected, atol=1e-7, rtol=1e-6)
        torch.testing.assert_close(cap.prefix_mass[layer], summed.prefix_mass[layer], atol=1e-7, rtol=1e-6)
    t, m = time_maps_from_probs(summed.maps["blocks.0.attn"], grid, "mean")
    torch.testing.assert_close(t, cap.time_maps["blocks.0.attn"], atol=1e-7, rtol=1e-6)


def test_predict_unchanged_by_capture(fc, series, captures):
    plain = fc.predict(series, HORIZON)
    _, chunked = captures["chunked"]
    _, exact = captures["exact"]
    _, single = captures["single"]
    assert np.array_equal(chunked.probabilities, plain.probabilities)  # fused kernel kept: bitwise
    assert np.array_equal(chunked.full, plain.full)
    np.testing.assert_allclose(exact.probabilities, plain.probabilities, atol=1e-5, rtol=0)
    np.testing.assert_allclose(single.probabilities, plain.probabilities, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "how, strategy",
    [("mean", "chunked"), ("max", "chunked"), ("min", "chunked"), ("mean", "exact"), ("mean", "single"), ("max", "single")],
)
def test_head_fusion_equals_torch_reduction(fc, series, captures, how, strategy):
    full = captures["exact"][0].maps
    with AttentionRollout(fc.model).capture(head_fusion=how, strategy=strategy, chunk_size=100) as cap:
        fc.predict(series, HORIZON)
    assert cap.time_maps == {} and cap.maps == {}
    reduce = {"mean": torch.mean, "max": torch.amax, "min": torch.amin}[how]
    for layer in cap.layer_names:
        assert cap.token_maps[layer].shape == (1, 321, 321)
        torch.testing.assert_close(cap.token_maps[layer], reduce(full[layer], dim=1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_several_calls_concatenate_along_batch(fc, reference, grid, captures, strategy):
    layer = "blocks.2.attn"
    rollout = AttentionRollout(fc.model, layers=layer)
    image = fc.prepare(reference["x_1"], HORIZON).image
    kw = dict(keep_full=True, grid=grid, head_fusion="max", strategy=strategy, chunk_size=64)
    with rollout.capture(**kw) as cap:
        fc.predict(reference["x_0"], HORIZON)
        fc.bin_probabilities(np.stack([image, image]))  # a batch of 2 in one call
    assert cap.calls == {layer: 2}
    full = cap.maps[layer]
    assert full.shape == (3, 4, 321, 321)
    assert cap.time_maps[layer].shape == (3, 4, grid.cols, grid.cols)
    assert cap.prefix_mass[layer].shape == (3, 4, grid.cols)
    assert cap.token_maps[layer].shape == (3, 321, 321)
    torch.testing.assert_close(full[:1], captures[strategy][0].maps[layer], atol=1e-6, rtol=0)
    torch.testing.assert_close(full[1], full[2], atol=1e-6, rtol=0)
    assert (full[0] - full[1]).abs().max() > 1e-4  # x_0 and x_1 really differ
    t, m = time_maps_from_probs(full, grid)
    torch.testing.assert_close(cap.time_maps[layer], t, atol=1e-6, rtol=0)
    torch.testing.assert_close(cap.prefix_mass[layer], m, atol=1e-6, rtol=0)
    torch.testing.assert_close(cap.token_maps[layer], full.amax(1), atol=0, rtol=0)


def test_auto_picks_by_map_size(fc, series, grid, monkeypatch):
    rollout = AttentionRollout(fc.model)
    with rollout.capture(grid=grid) as small:  # 4 x 321 x 321 floats: tiny -> exact
        fc.predict(series, HORIZON)
    assert set(small.strategies.values()) == {"exact"}
    monkeypatch.setattr(capture_mod, "AUTO_SINGLE_THRESHOLD_BYTES", 1024)
    plain = fc.predict(series, HORIZON)
    with rollout.capture(grid=grid) as big:  # above the threshold: single pass
        out = fc.predict(series, HORIZON)
    assert set(big.strategies.values()) == {"single"}
    np.testing.assert_allclose(out.probabilities, plain.probabilities, atol=1e-5, rtol=0)
    for layer in rollout.layer_names:
        assert (big.time_maps[layer] - small.time_maps[layer]).abs().max().item() < 1e-6
    image = torch.as_tensor(fc.prepare(series, HORIZON).image, dtype=torch.float32)[None, None]
    with warnings.catch_warnings():  # autograd recording: single is not faithful, chunked is
        warnings.simplefilter("error")
        with rollout.capture(grid=grid) as graded:  # but not yet worth it below its threshold
            fc.model(image)
        monkeypatch.setattr(capture_mod, "AUTO_CHUNK_THRESHOLD_BYTES", 1024)
        with rollout.capture(grid=grid) as graded_big:
            fc.model(image)
    assert set(graded.strategies.values()) == {"exact"}
    assert set(graded_big.strategies.values()) == {"chunked"}
    for layer in rollout.layer_names:
        assert (graded_big.time_maps[layer] - small.time_maps[layer]).abs().max().item() < 1e-6


def test_auto_judges_one_series_map_and_caps_the_whole_call(fc, series, grid, monkeypatch):
    """Blocks cost per series and head: a batch of small maps stays exact whatever its total,
    until the whole call's map passes AUTO_EXACT_MAX_BYTES."""
    heads = fc.model.blocks[0].attn.num_heads  # every layer of the fixture has as many
    one_series = heads * grid.seq_len**2 * 4
    monkeypatch.setattr(capture_mod, "AUTO_SINGLE_THRESHOLD_BYTES", one_series)
    batch = [series, series[::-1].copy(), series * 0.5]
    rollout = AttentionRollout(fc.model)
    with rollout.capture(grid=grid) as whole:  # 3 series' maps above the threshold, each one not
        fc.predict_many(batch, HORIZON)
    assert set(whole.strategies.values()) == {"exact"}
    monkeypatch.setattr(capture_mod, "AUTO_EXACT_MAX_BYTES", 2 * one_series)
    with rollout.capture(grid=grid) as blocks:
        fc.predict_many(batch, HORIZON)
    assert set(blocks.strategies.values()) == {"single"}
    for layer in rollout.layer_names:
        assert (blocks.time_maps[layer] - whole.time_maps[layer]).abs().max().item() < 1e-6


@pytest.mark.parametrize(
    "seq_len,batch,workers,rows,expected",
    [
        (2465, 1, 2, 212, 206),  # released ViTime: 12 equal blocks, not 11 x 212 + 133
        (2465, 1, 1, 212, 212),  # one worker: the budget as it is
        (197, 4, 4, 2000, 197),  # one block per series already shares out evenly
        (10, 1, 4, 8, 3),  # at least one block per worker
        (0, 1, 2, 8, 1),  # nothing to split: no division by zero
    ],
)
def test_block_rows_split_evenly_over_the_workers(seq_len, batch, workers, rows, expected):
    from attnviz.capture_strategies import block_rows

    assert block_rows(seq_len, batch, workers, rows) == expected


def test_chunk_bytes_bounds_the_chunk(fc, series, grid, captures):
    """A budget of 10 query rows per head block (33 blocks) still gives the same maps."""
    rollout = AttentionRollout(fc.model, layers="decoder_blocks.0.attn")
    threads = torch.get_num_threads()
    with rollout.capture(grid=grid, strategy="chunked", chunk_bytes=10 * 321 * 4) as cap:
        fc.predict(series, HORIZON)
    ref = captures["exact"][0].time_maps["decoder_blocks.0.attn"]
    assert (cap.time_maps["decoder_blocks.0.attn"] - ref).abs().max().item() < 1e-6
    assert torch.get_num_threads() == threads  # worker threads leave the caller's setting alone


# ----- cleanup -----------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["exact", "chunked", "single", "auto"])
def test_hooks_removed_and_flags_restored(fc, series, grid, strategy):
    model = fc.model
    model.blocks[1].attn.fused_attn = False  # a non-default flag must come back as it was
    try:
        before = fused_flags(model)
        assert before["blocks.0.attn"] is True
        rollout = AttentionRollout(model)
        with rollout.capture(grid=grid, strategy=strategy) as cap:
            fc.predict(series, HORIZON)
        assert_clean(model, before)
        assert cap.calls == {n: 1 for n in rollout.layer_names}

        with pytest.raises(KeyError, match="boom"):
            with rollout.capture(grid=grid, keep_full=True, strategy=strategy):
                fc.predict(series, HORIZON)
                raise KeyError("boom")
        assert_clean(model, before)

        class Stop(Exception):
            pass

        def stop_in_forward(module, args, output):
            raise Stop

        handle = model.blocks[1].mlp.register_forward_hook(stop_in_forward)
        try:
            with pytest.raises(Stop):
                with rollout.capture(grid=grid, strategy=strategy):
                    fc.predict(series, HORIZON)  # raises mid-forward, after blocks.1.attn ran
        finally:
            handle.remove()
        assert_clean(model, before)
    finally:
        model.blocks[1].attn.fused_attn = True


def test_exact_switches_fused_off_only_during_the_call(fc, series):
    model = fc.model
    seen = []
    attn = model.blocks[0].attn
    handle = attn.proj.register_forward_hook(lambda m, a, o: seen.append(attn.fused_attn))
    try:
        rollout = AttentionRollout(model, layers="blocks.0.attn")
        with rollout.capture(head_fusion="mean", strategy="exact"):
            assert model.blocks[0].attn.fused_attn is True
            fc.predict(series, HORIZON)
            assert model.blocks[0].attn.fused_attn is True
        with rollout.capture(head_fusion="mean", strategy="chunked"):
            fc.predict(series, HORIZON)
    finally:
        handle.remove()
    assert seen == [False, True]


# ----- models whose attention bypasses the hooks -------------------------------------------------
class BypassAttention(Attention):
    """Ignores fused_attn and calls SDPA directly, so no softmax ever passes attn_drop."""

    def forward(self, x, attn_mask=None, is_causal=False):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))


def test_bypassing_attention_raises_naming_layers():
    torch.manual_seed(0)
    model = nn.Sequential(Block(32, 2, attn_layer=BypassAttention), Block(32, 2)).eval()
    flags = fused_flags(model)
    rollout = AttentionRollout(model)
    assert rollout.layer_names == ["0.attn", "1.attn"]
    x = torch.randn(2, 10, 32)
    with pytest.raises(RuntimeError, match=r"0\.attn") as info:
        with rollout.capture(head_fusion="mean", strategy="exact"):
            model(x)
    assert "1.attn" not in str(info.value)
    assert_clean(model, flags)
    for strategy in ("chunked", "single"):
        with pytest.warns(CaptureFallbackWarning, match="overrides"):
            with pytest.raises(RuntimeError, match=r"0\.attn"):
                with rollout.capture(head_fusion="mean", strategy=strategy), torch.no_grad():
                    model(x)
        assert_clean(model, flags)


def test_block_that_skips_attention_raises():
    class SkipAttn(Block):
        def forward(self, x, attn_mask=None, is_causal=False):
            return x + self.mlp(self.norm2(x))

    torch.manual_seed(0)
    model = nn.Sequential(Block(16, 2), SkipAttn(16, 2)).eval()
    with pytest.raises(RuntimeError, match=r"1\.attn \(ran 0x"):
        with AttentionRollout(model).capture(head_fusion="mean"):
            model(torch.randn(1, 5, 16))


# ----- generic timm ViTs -------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"qk_norm": True, "reg_tokens": 2}])
def test_timm_vision_transformer(kw):
    model = small_vit(**kw)
    g = vit_grid(model)
    x = torch.randn(3, 3, 32, 32)
    flags = fused_flags(model)
    with torch.no_grad():  # single pass runs where autograd is off (else: chunked, tested apart)
        plain = model(x)
    rollout = AttentionRollout(model)
    assert rollout.layer_names == ["blocks.0.attn", "blocks.1.attn"]
    caps = {}
    for strategy in STRATEGIES:
        kw = dict(keep_full=True, grid=g, head_fusion="mean", strategy=strategy, chunk_size=5)
        with rollout.capture(**kw) as cap, torch.no_grad():
            out = model(x)
        assert set(cap.strategies.values()) == {strategy}
        caps[strategy] = cap
        if strategy == "chunked":
            assert torch.equal(out, plain)
        torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)
        assert_clean(model, flags)
    for layer in rollout.layer_names:
        full = caps["exact"].maps[layer]
        assert full.shape == (3, 2, g.seq_len, g.seq_len)
        torch.testing.assert_close(full.sum(-1), torch.ones(3, 2, g.seq_len))
        t_ref, m_ref = numpy_time_map(full.numpy(), g)
        for strategy in ("chunked", "single"):
            for name in ("maps", "time_maps", "prefix_mass", "token_maps"):
                diff = getattr(caps["exact"], name)[layer] - getattr(caps[strategy], name)[layer]
                assert diff.abs().max() < 1e-6, (layer, name, strategy)
            np.testing.assert_allclose(caps[strategy].time_maps[layer].numpy(), t_ref, atol=1e-6)
            np.testing.assert_allclose(caps[strategy].prefix_mass[layer].numpy(), m_ref, atol=1e-6)


def test_timm_create_model_offline():
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64, depth=3)
    rollout = AttentionRollout(model.eval(), layers="blocks.[12].attn")
    assert rollout.layer_names == ["blocks.1.attn", "blocks.2.attn"]
    with rollout.capture(grid=vit_grid(model), head_fusion="max") as cap:
        model(torch.randn(1, 3, 64, 64))
    assert cap.time_maps["blocks.2.attn"].shape == (1, 3, 4, 4)
    assert cap.token_maps["blocks.1.attn"].shape == (1, 17, 17)
    torch.testing.assert_close(cap.time_maps["blocks.1.attn"].sum(-1), 1 - cap.prefix_mass["blocks.1.attn"])


@pytest.mark.parametrize("strategy", ["chunked", "single"])
@torch.no_grad()
def test_blockwise_inline_when_single_threaded(strategy):
    """With one torch thread the blocks run inline (no worker pool); results are unchanged."""
    model = small_vit()
    g = vit_grid(model)
    x = torch.randn(2, 3, 32, 32)
    rollout = AttentionRollout(model)
    with rollout.capture(grid=g, head_fusion="min", strategy=strategy, chunk_size=3) as pooled:
        model(x)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with rollout.capture(grid=g, head_fusion="min", strategy=strategy, chunk_size=3) as inline:
            model(x)
    finally:
        torch.set_num_threads(threads)
    for layer in rollout.layer_names:
        for name in ("time_maps", "prefix_mass", "token_maps"):
            a, b = getattr(inline, name)[layer], getattr(pooled, name)[layer]
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_non_default_scale_falls_back_to_exact():
    """timm's fused kernel ignores ``scale``; chunked cannot mirror both paths, so it says so."""
    model = small_vit()
    model.blocks[1].attn.scale = 0.05
    rollout = AttentionRollout(model)
    with pytest.warns(CaptureFallbackWarning, match=r"blocks\.1\.attn.*scale"):
        with rollout.capture(grid=vit_grid(model), strategy="chunked") as cap:
            model(torch.randn(1, 3, 32, 32))
    assert cap.strategies == {"blocks.0.attn": "chunked", "blocks.1.attn": "exact"}
    assert_clean(model, {"blocks.0.attn": True, "blocks.1.attn": True})


class MaskedWrapper(nn.Module):
    """Calls one timm Attention with a mask, the way a Block would."""

    def __init__(self, attn_mask=None, is_causal=False):
        super().__init__()
        torch.manual_seed(0)
        self.attn = Attention(16, num_heads=2, qkv_bias=True).eval()
        self.attn_mask, self.is_causal = attn_mask, is_causal

    def forward(self, x):
        return self.attn(x, attn_mask=self.attn_mask, is_causal=self.is_causal)


@pytest.mark.parametrize(
    "mask_kind", ["bool", "float", "bool_broadcast", "causal"]
)
def test_chunked_respects_attention_masks(mask_kind):
    n = 9
    gen = torch.Generator().manual_seed(1)
    if mask_kind == "bool":
        mask = torch.rand(2, 1, n, n, generator=gen) > 0.3
        mask[..., 0] = True  # every query keeps at least one key
        model = MaskedWrapper(mask)
    elif mask_kind == "float":
        model = MaskedWrapper(torch.randn(n, n, generator=gen))
    elif mask_kind == "bool_broadcast":
        mask = torch.ones(2, 1, 1, n, dtype=torch.bool)
        mask[..., -3:] = False  # key padding
        model = MaskedWrapper(mask)
    else:
        model = MaskedWrapper(is_causal=True)
    x = torch.randn(2, n, 16, generator=gen)
    rollout = AttentionRollout(model)
    maps = {}
    with torch.no_grad():
        plain = model(x)
        for strategy in STRATEGIES:
            with rollout.capture(keep_full=True, strategy=strategy, chunk_size=4) as cap:
                out = model(x)
            assert cap.strategies == {"attn": strategy}
            torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)
            maps[strategy] = cap.maps["attn"]
    assert (maps["exact"] - maps["chunked"]).abs().max() < 1e-6
    assert (maps["exact"] - maps["single"]).abs().max() < 1e-6
    if mask_kind == "causal":
        assert maps["chunked"].triu(1).abs().max() == 0
    if mask_kind == "bool_broadcast":
        assert maps["chunked"][..., -3:].abs().max() == 0


# ----- bad input ---------------------------------------------------------------------------------
def test_bad_arguments_name_what_was_asked(fc):
    rollout = AttentionRollout(fc.model)
    with pytest.raises(ValueError, match=r"strategy .*'auto', 'exact', 'chunked', 'single'.*'fast'"):
        rollout.capture(strategy="fast")
    with pytest.raises(ValueError, match=r"head_fusion .*'mean', 'max', 'min'.*'median'"):
        rollout.capture(head_fusion="median")
    with pytest.raises(ValueError, match=r"time_convention .*'avg'"):
        rollout.capture(time_convention="avg")
    with pytest.raises(ValueError, match="chunk_size"):
        rollout.capture(chunk_size=0)
    with pytest.raises(ValueError, match=r"grid must be .*TokenGrid"):
        rollout.capture(grid=(8, 40))
    with pytest.raises(ValueError, match=r"'encoder\.\*'.*blocks\.0\.attn.*decoder_blocks\.0\.attn"):
        AttentionRollout(fc.model, layers="encoder.*")
    with pytest.raises(ValueError, match=r"'nope'"):
        AttentionRollout(fc.model, layers=["blocks.*.attn", "nope"])
    with pytest.raises(ValueError, match=r"no timm Attention.*Linear"):
        AttentionRollout(nn.Sequential(nn.Linear(2, 2), nn.MultiheadAttention(2, 1)))
    with pytest.raises(TypeError, match="nn.Module"):
        AttentionRollout("model")


def test_grid_that_does_not_fit_names_both_lengths(fc, series):
    flags = fused_flags(fc.model)
    wrong = fc.grid(len(series), HORIZON)
    wrong = TokenGrid(
        rows=wrong.rows, cols=wrong.cols - 1, prefix_tokens=1, history_cols=10, samples_per_col=1.0
    )
    for strategy in STRATEGIES:
        with pytest.raises(ValueError, match=r"seq_len 313 .*sequence length 321"):
            with AttentionRollout(fc.model).capture(grid=wrong, strategy=strategy):
                fc.predict(series, HORIZON)
        assert_clean(fc.model, flags)


def test_nested_capture_refused(fc):
    rollout = AttentionRollout(fc.model)
    with rollout.capture():
        with pytest.raises(RuntimeError, match="already capturing"):
            with rollout.capture():
                pass
    assert_clean(fc.model, fused_flags(fc.model))


@pytest.mark.parametrize("strategy", ["chunked", "single"])
def test_no_warning_on_plain_vitime(fc, series, grid, strategy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with AttentionRollout(fc.model).capture(grid=grid, strategy=strategy) as cap:
            fc.predict(series, HORIZON)
    assert set(cap.strategies.values()) == {strategy}
