"""VisionTS' 20 layers through MultiHeadAttentionRollout: shuffled encoder order, per-layer grids.

The encoder sees only the visible token columns, in the order visionts' ``random_masking``
leaves them; ``TokenGrid.token_order`` folds such a sequence into natural columns, and the
forecaster's per-layer grids put each encoder map into the decoder's column frame (NaN where
the encoder never looked).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from attnviz.grid import TokenGrid
from attnviz.lags import prefix_mass_from_attention, time_maps_from_attention
from attnviz.reducers import BlockReducer, ReductionSpec, time_maps_from_probs


# ----- token order on a TokenGrid -------------------------------------------------------------------
def _shuffled(rows: int = 3, cols: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows * cols)
    plain = TokenGrid(rows=rows, cols=cols, prefix_tokens=1, history_cols=2, samples_per_col=2.0)
    shuffled = TokenGrid(rows=rows, cols=cols, prefix_tokens=1, history_cols=2, samples_per_col=2.0, token_order=order)
    probs = torch.softmax(torch.randn(2, 3, rows * cols + 1, rows * cols + 1, dtype=torch.float64), -1)
    seq = np.concatenate([[0], 1 + order])  # position j holds natural token order[j]
    return plain, shuffled, probs, probs[..., seq, :][..., seq]


def test_token_order_folds_a_shuffled_sequence_into_natural_columns():
    plain, shuffled, probs, shuffled_probs = _shuffled()
    t0, p0 = time_maps_from_probs(probs, plain)
    t1, p1 = time_maps_from_probs(shuffled_probs, shuffled)
    torch.testing.assert_close(t1, t0)
    torch.testing.assert_close(p1, p0)
    np.testing.assert_allclose(time_maps_from_attention(shuffled_probs, shuffled), time_maps_from_attention(probs, plain))
    np.testing.assert_allclose(
        prefix_mass_from_attention(shuffled_probs, shuffled), prefix_mass_from_attention(probs, plain)
    )
    reducer = BlockReducer(ReductionSpec(grid=shuffled), 2, 3, plain.seq_len, torch.device("cpu"))
    for b in range(2):
        for h in range(3):  # two query blocks, as the chunked and single-pass paths feed them
            reducer.add(b, h, 0, shuffled_probs[b, h, :5].float())
            reducer.add(b, h, 5, shuffled_probs[b, h, 5:].float())
    torch.testing.assert_close(reducer.finish()["time"], t0.float(), atol=1e-6, rtol=1e-6)
    assert shuffled.token_index(1, 2) == 1 + list(shuffled.token_order).index(1 * 4 + 2)


def test_token_order_is_checked_and_identity_is_dropped():
    with pytest.raises(ValueError, match="permutation of range\\(12\\)"):
        TokenGrid(rows=3, cols=4, prefix_tokens=1, history_cols=2, samples_per_col=1.0, token_order=[0] * 12)
    grid = TokenGrid(rows=3, cols=4, prefix_tokens=1, history_cols=2, samples_per_col=1.0, token_order=range(12))
    assert grid.token_order is None and grid.natural_positions is None


# ----- VisionTS: every layer through MultiHeadAttentionRollout ---------------------------------------
ENCODER = ("vision_model.blocks.0.attn", "vision_model.blocks.1.attn")
DECODER = ("vision_model.decoder_blocks.0.attn", "vision_model.decoder_blocks.1.attn")
#: (context, horizon) at periodicity 24, used nowhere else: whole periods, and a ragged context.
GEOMETRIES = {"whole": (600, 72), "ragged": (333, 50)}


def _series(length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = np.arange(length)
    return 2 + np.sin(2 * np.pi * n / 24) + 0.3 * np.sin(2 * np.pi * n / 90) + 0.1 * rng.normal(size=length)


def _naive_encoder_map(full: np.ndarray, geometry) -> np.ndarray:
    """(H, S_enc, S_enc) encoder probabilities in call order -> (H, n, n) time maps, by hand."""
    natural = geometry.to_natural(full)  # CLS first, then row-major visible tokens
    g, n = geometry.grid_size, geometry.input_cols
    patch = natural[:, 1:, 1:].reshape(-1, g, n, g, n)
    return patch.sum(axis=3).mean(axis=1)  # sum key rows, mean query rows


@pytest.mark.parametrize("strategy", ["exact", "single"])
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_all_visionts_layers_come_out_and_encoder_maps_match_a_naive_fold(geometry, strategy):
    pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    from attnviz.capture import AttentionRollout
    from attnviz.analysis import MultiHeadAttentionRollout
    from attnviz.forecasters.visionts import VisionTSForecaster, tiny_visionts

    length, horizon = GEOMETRIES[geometry]
    fc = VisionTSForecaster(tiny_visionts(seed=7), periodicity=24, allow_random_weights=True)
    x = _series(length)
    result = MultiHeadAttentionRollout(fc, strategy=strategy).analyze(x, horizon)
    assert result.layer_names == list(ENCODER + DECODER)
    g = result.forecast.geometry
    n, c = g.input_cols, g.grid_size
    assert result.grid.cols == c == 14 and 0 < n < c
    assert result.layer_cols == {name: n for name in ENCODER}
    assert result.time_maps.shape == (4, 4, c, c)

    with AttentionRollout(fc.model).capture(keep_full=True, strategy="exact") as cap:
        naive = fc.predict(x, horizon)
    np.testing.assert_array_equal(naive.geometry.ids_restore, g.ids_restore)
    assert not np.array_equal(g.encoder_tokens, np.sort(g.encoder_tokens))  # really shuffled
    for i, name in enumerate(ENCODER):
        t = result.time_maps[i]
        np.testing.assert_allclose(t[:, :n, :n], _naive_encoder_map(cap.maps[name][0].double().numpy(), g), atol=1e-6)
        assert np.isnan(t[:, n:, :]).all() and np.isnan(t[:, :, n:]).all()
        assert np.isnan(result.prefix_mass[i][:, n:]).all() and np.isfinite(result.prefix_mass[i][:, :n]).all()
        # lag curves: the encoder's lags stop at n - 1 columns, in samples of the call
        curve = result.lag_curve(name, 0)
        assert np.isfinite(curve.values[: n - 1]).all() and np.isnan(curve.values[n - 1:]).all()
        np.testing.assert_allclose(curve.lags, np.arange(1, c) * g.samples_per_col)
        normalized = result.lag_curve(name, 0, normalize=True).values[: n - 1]
        assert np.isfinite(normalized).all()
    for i, name in enumerate(DECODER, start=len(ENCODER)):
        assert np.isfinite(result.time_maps[i]).all()
    assert len(result.ranked_heads) == 16  # every head ranked, encoder heads included
    assert np.isfinite(result.to_dict()["prefix_mass_mean"]).all()


def test_rollout_across_encoder_and_decoder_is_refused_in_one_line():
    pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    from attnviz.analysis import MultiHeadAttentionRollout
    from attnviz.forecasters.visionts import VisionTSForecaster, tiny_visionts

    fc = VisionTSForecaster(tiny_visionts(seed=7), periodicity=24, allow_random_weights=True)
    with pytest.raises(ValueError, match="different sequences.*layers= patterns"):
        MultiHeadAttentionRollout(fc).analyze(_series(600), 72, rollout=True)
    roll = MultiHeadAttentionRollout(fc, layers="vision_model.decoder_blocks.*").analyze(_series(600), 72, rollout=True)
    assert roll.rollout is not None


def test_capture_takes_a_grid_per_layer():
    pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    from attnviz.capture import AttentionRollout
    from attnviz.forecasters.visionts import VisionTSForecaster, tiny_visionts

    fc = VisionTSForecaster(tiny_visionts(seed=7), periodicity=24, allow_random_weights=True)
    decoder = fc.grid(600, 72)
    with AttentionRollout(fc.model, layers="vision_model.decoder_blocks.*").capture(
        grid={name: decoder for name in DECODER}
    ) as cap:
        fc.predict(_series(600), 72)
    assert cap.grids == {name: decoder for name in DECODER}
    assert {k: tuple(v.shape) for k, v in cap.time_maps.items()} == {name: (1, 4, 14, 14) for name in DECODER}
    with pytest.raises(ValueError, match="no TokenGrid for layer 'vision_model.decoder_blocks.1.attn'"):
        with AttentionRollout(fc.model, layers="vision_model.decoder_blocks.*").capture(grid={DECODER[0]: decoder}):
            fc.predict(_series(600), 72)
    with pytest.raises(ValueError, match="grid must be an attnviz.grid.TokenGrid, a mapping"):
        AttentionRollout(fc.model).capture(grid=3)
    with pytest.raises(RuntimeError, match="outside VisionTSForecaster.predict"):
        fc.layer_grids(600, 72)(ENCODER[0])


def test_planted_encoder_head_peaks_at_one_column_in_samples():
    """Encoder block 0 sees only its position table (patch embedding zeroed); one head is planted
    so each visible token attends to the token one column back in its row, in natural order.
    The encoder runs the tokens shuffled; the lag curve must still peak at exactly one column."""
    pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    from test_planted import plant_shift_head

    from attnviz.analysis import MultiHeadAttentionRollout
    from attnviz.forecasters.visionts import VisionTSForecaster, tiny_visionts

    length, horizon, head = 600, 72, 2
    fc = VisionTSForecaster(tiny_visionts(seed=5), periodicity=24, allow_random_weights=True)
    vm = fc.model.vision_model
    geometry = fc.geometry(length, horizon)
    g, n = geometry.grid_size, geometry.input_cols
    with torch.no_grad():
        vm.patch_embed.proj.weight.zero_()
        vm.patch_embed.proj.bias.zero_()
        visible = 1 + torch.as_tensor(np.flatnonzero(geometry.visible))  # natural order, after CLS
        positions = torch.cat([vm.cls_token[0] + vm.pos_embed[0, :1], vm.pos_embed[0, visible]])
    plant_shift_head(vm.blocks[0], positions, g, n, 1, head, shift=1)
    result = MultiHeadAttentionRollout(fc, layers="vision_model.blocks.*").analyze(_series(length), horizon)
    assert result.layer_cols == {name: n for name in ENCODER}
    assert not np.array_equal(result.forecast.geometry.encoder_tokens, np.sort(result.forecast.geometry.encoder_tokens))
    # 600 samples = 25 periods on 5 visible columns: one column back in a row is 5 periods = 120 samples
    assert geometry.samples_per_col == 120.0 and n == 5
    curve = result.lag_curve(ENCODER[0], head)
    peak = int(np.nanargmax(curve.values))
    assert peak == 0 and curve.lags[peak] == pytest.approx(geometry.samples_per_col)
    assert curve.values[0] > 0.99 and np.nansum(curve.values[1:]) < 0.01
    t = result.time_map(ENCODER[0], head)
    assert np.all(t[np.arange(1, n), np.arange(n - 1)] > 0.99)


# ----- attnviz explain --model visionts -----------------------------------------------------------------
def _explain(tmp_path, *flags: str) -> list[str]:
    return ["explain", "--expr", "sin(2*pi*n/24) + 0.3*sin(2*pi*n/90)", "--length", "600", "--horizon", "72",
            "--out", str(tmp_path / "out"), *flags]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "visionts"], "--model visionts needs --periodicity P"),
        (["--periodicity", "24"], "--periodicity only apply to --model visionts"),
        (["--ckpt-dir", "x", "--allow-random-weights"], "--ckpt-dir, --allow-random-weights only apply to --model visionts"),
        (["--model", "visionts", "--periodicity", "24", "--weights", "w.pth"], "--weights is a ViTime checkpoint"),
    ],
)
def test_explain_visionts_argument_errors_are_one_line(tmp_path, capsys, flags, message):
    from attnviz.cli import main

    assert main(_explain(tmp_path, *flags)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_explain_visionts_from_a_checkpoint_dir(tmp_path, capsys):
    pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    import json

    from attnviz.cli import main
    from attnviz.forecasters.visionts.tiny import TINY_ARCH, _registered, tiny_visionts

    ckpt = tmp_path / "ckpt"
    flags = ["--model", "visionts", "--periodicity", "24", "--ckpt-dir", str(ckpt), "--arch", TINY_ARCH]
    with _registered(TINY_ARCH):
        assert main(_explain(tmp_path, *flags)) == 2  # no checkpoint, no --allow-random-weights
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "no VisionTS checkpoint at" in err and "--allow-random-weights" in err

        model = tiny_visionts(seed=4)
        ckpt.mkdir()
        torch.save({"model": model.vision_model.state_dict()}, ckpt / f"{TINY_ARCH}.pth")
        assert main(_explain(tmp_path, *flags)) == 2  # a fresh init: the adapter's one-line error
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "random weights" in err and "allow_random_weights" in err

        with torch.no_grad():  # "trained": a LayerNorm that is not (1, 0)
            model.vision_model.norm.bias.add_(0.01)
        torch.save({"model": model.vision_model.state_dict()}, ckpt / f"{TINY_ARCH}.pth")
        assert main(_explain(tmp_path, *flags, "--html", "--top-k", "1")) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    pages = list((tmp_path / "out").glob("*explorer.html"))  # every layer, the encoder's unseen columns masked
    assert len(pages) == 1 and '"unseen":["' in pages[0].read_text()
    assert summary["model"] == f"visionts:{TINY_ARCH}:{ckpt / (TINY_ARCH + '.pth')}"
    assert len(summary["forecast"]) == 72


def test_unseen_columns_are_hatched_in_the_time_map_and_masked_by_the_explorer():
    pytest.importorskip("visionts", reason="needs the optional visionts package (pip install attnviz[visionts])")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnviz.analysis import MultiHeadAttentionRollout
    from attnviz.forecasters.visionts import VisionTSForecaster, tiny_visionts
    from attnviz.plotting.drawers import draw_time_map

    fc = VisionTSForecaster(tiny_visionts(seed=7), periodicity=24, allow_random_weights=True)
    result = MultiHeadAttentionRollout(fc).analyze(_series(600), 72)
    fig, ax = plt.subplots()
    draw_time_map(ax, result.time_map(ENCODER[0], 0), result.grid)
    hatched = [c for c in ax.collections if c.get_gid() == "unseen"]
    assert len(hatched) == 1 and len(hatched[0].get_paths()) == 14 * 14 - 5 * 5
    assert "not seen by this layer" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    from attnviz.explorer.payload import build_payload

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = build_payload(result)
    assert data["seen_cols"] == [5, 5, 14, 14] and data["unseen"][2:] == [None, None]


def test_analyze_many_runs_a_forecaster_without_batches_one_series_at_a_time():
    """VisionTS has no predict_many: analyze_many still returns one result per series, equal to analyze."""
    from attnviz.analysis import MultiHeadAttentionRollout
    from attnviz.forecasters.visionts import VisionTSForecaster, tiny_visionts

    fc = VisionTSForecaster(tiny_visionts(3), periodicity=12, allow_random_weights=True)
    explainer = MultiHeadAttentionRollout(fc)
    n = np.arange(240)
    batch = [np.sin(2 * np.pi * n / 12), np.cos(2 * np.pi * n / 24) + 0.1 * n / 240]
    many = explainer.analyze_many(batch, 36)
    assert len(many) == 2
    for series, got in zip(batch, many):
        one = explainer.analyze(series, 36)
        np.testing.assert_allclose(got.time_maps, one.time_maps, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(got.forecast.forecast, one.forecast.forecast, atol=1e-6)
