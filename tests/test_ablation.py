"""Head ablation: identities, planted manual computations, hook hygiene, comparison, errors, CLI."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attnviz.ablation import HeadAblator, ReferenceMeans
from attnviz.ablation_cli import add_ablate_parser, cmd_ablate

LENGTH, HORIZON = 256, 128
SEED_EXPR = "sin(n/10)+sin(n/5+50)+cos(n+50)"


@pytest.fixture(scope="module")
def fc(vitime_fixture_forecaster):
    return vitime_fixture_forecaster


@pytest.fixture(scope="module")
def ablator(fc):
    return HeadAblator(fc)


@pytest.fixture(scope="module")
def signal():
    n = np.arange(LENGTH + HORIZON, dtype=float)
    x = np.sin(n / 10) + np.sin(n / 5 + 50) + np.cos(n + 50)
    return x[:LENGTH], x[LENGTH:]


@pytest.fixture(scope="module")
def image(fc, signal):
    return torch.as_tensor(fc.prepare(signal[0], HORIZON).image, dtype=torch.float32)[None, None]


def assert_no_hooks(model: nn.Module) -> None:
    for name, module in model.named_modules():
        assert not module._forward_pre_hooks and not module._forward_hooks, name


def manual_attention(attn: nn.Module, x: torch.Tensor, zero_heads: list[int]) -> torch.Tensor:
    """timm Attention written out by hand, with the outputs of ``zero_heads`` set to 0 before proj."""
    b, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    heads = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1) @ v  # (B, H, N, d)
    heads[:, zero_heads] = 0.0
    return attn.proj(heads.transpose(1, 2).reshape(b, n, c))


# ----- identities --------------------------------------------------------------------------------
def test_ablating_no_head_is_bitwise_identical_and_installs_nothing(fc, ablator, signal):
    history, truth = signal
    for mode in ("zero", "mean"):
        reference = ablator.reference_means([history[::-1].copy()], HORIZON) if mode == "mean" else None
        res = ablator.run(history, HORIZON, [], mode=mode, reference=reference, truth=truth, analyze=False)
        assert np.array_equal(res.forecast.probabilities, res.baseline.probabilities)
        assert np.array_equal(res.forecast.forecast, res.baseline.forecast)
        assert res.mae_vs_baseline == 0.0 and res.delta_mae == 0.0
    with ablator.ablate([], "zero"):
        assert_no_hooks(fc.model)


def test_mean_ablation_with_the_series_as_its_own_reference_changes_nothing(ablator, signal):
    """Per-position means over a reference set holding only the series are its own activations,
    so replacing every head of every layer by them gives the same forecast, bit for bit."""
    history, _ = signal
    means = ablator.reference_means([history], HORIZON)
    res = ablator.run(history, HORIZON, ablator.all_heads, mode="mean", reference=means, analyze=False)
    assert np.array_equal(res.forecast.probabilities, res.baseline.probabilities)
    other = ablator.reference_means([history[::-1].copy()], HORIZON)  # a different series does change it
    assert ablator.run(history, HORIZON, ablator.all_heads, mode="mean", reference=other, analyze=False).mae_vs_baseline > 0


@pytest.mark.parametrize("per_position", [True, False])
def test_reference_means_are_the_mean_input_of_proj(fc, ablator, signal, per_position):
    history, _ = signal
    refs = [history, history[::-1].copy(), np.cos(np.arange(LENGTH) / 7.0)]
    seen: dict[str, list[torch.Tensor]] = {}
    handles = [m.proj.register_forward_pre_hook(lambda mod, args, n=n: seen.setdefault(n, []).append(args[0].clone()))
               for n, m in ablator.modules.items()]
    try:
        for r in refs:
            fc.predict(r, HORIZON)
    finally:
        for h in handles:
            h.remove()
    means = ablator.reference_means(refs, HORIZON, per_position=per_position, batch_size=2)
    for name, inputs in seen.items():
        x = torch.cat(inputs).double()
        expected = x.mean(0) if per_position else x.mean((0, 1))
        torch.testing.assert_close(means.means[name], expected.float(), atol=1e-5, rtol=1e-5)
    assert means.count == 3 and means.per_position is per_position


# ----- planted: manual computations ---------------------------------------------------------------
def test_zero_ablating_every_head_of_a_layer_equals_zeros_into_proj(fc, ablator, image):
    """By hand: block 1 written out, its attention replaced by proj(0) = proj.bias."""
    m = fc.model
    with torch.no_grad():
        x = m.patch_embed(image) + m.pos_embed[:, 1:, :]
        x = torch.cat(((m.cls_token + m.pos_embed[:, :1, :]).expand(1, -1, -1), x), dim=1)
        for i, blk in enumerate(m.blocks):
            attn = blk.attn.proj(torch.zeros_like(x)) if i == 1 else blk.attn(blk.norm1(x))
            x = x + blk.ls1(attn)
            x = x + blk.ls2(blk.mlp(blk.norm2(x)))
        manual = m.unpatchify(m.forward_decoder(m.norm(x))).transpose(1, 2)
        with ablator.ablate([(1, h) for h in range(4)], "zero"):
            ablated = m(image)
        plain = m(image)
    torch.testing.assert_close(ablated, manual, atol=1e-5, rtol=1e-5)
    assert (ablated - plain).abs().max() > 1e-2  # the planted change is not vacuous
    assert_no_hooks(m)


@pytest.mark.parametrize("layer,heads", [("blocks.0.attn", [2]), ("blocks.2.attn", [0, 3]),
                                         ("decoder_blocks.0.attn", [1])])
def test_zero_ablating_heads_equals_manual_attention_with_those_heads_zeroed(fc, ablator, image, layer, heads):
    module = ablator.modules[layer]
    handle = module.register_forward_hook(lambda mod, args, out: manual_attention(mod, args[0], heads))
    try:
        with torch.no_grad():
            manual = fc.model(image)
    finally:
        handle.remove()
    with torch.no_grad(), ablator.ablate([(layer, h) for h in heads], "zero"):
        ablated = fc.model(image)
    torch.testing.assert_close(ablated, manual, atol=1e-4, rtol=1e-4)
    assert_no_hooks(fc.model)


def test_batched_head_sets_equal_one_forward_each(ablator, signal):
    history, _ = signal
    sets = [[(0, 1)], [("decoder_blocks.0.attn", 3), (2, 0)], []]
    batched = ablator.forecast_each(history, HORIZON, sets, "zero", batch_size=2)
    for heads, fc_b in zip(sets, batched):
        single = ablator.run(history, HORIZON, heads, mode="zero", analyze=False).forecast
        np.testing.assert_allclose(fc_b.probabilities, single.probabilities, atol=1e-6)


# ----- hooks: scoped, removed on errors, compose with capture -------------------------------------
def test_hooks_are_removed_when_the_block_or_the_forward_raises(fc, ablator, signal):
    history, _ = signal
    with pytest.raises(RuntimeError, match="boom"):
        with ablator.ablate([(0, 0), (3, 1)], "zero"):
            assert fc.model.blocks[0].attn.proj._forward_pre_hooks
            raise RuntimeError("boom")
    assert_no_hooks(fc.model)
    good = ablator.reference_means([history], HORIZON)
    bad = ReferenceMeans({n: t[:-1] for n, t in good.means.items()}, True, 1, LENGTH, HORIZON)
    with pytest.raises(ValueError, match="reference means have 320 positions, the input 321"):
        with ablator.ablate([(1, 0)], "mean", bad):
            fc.predict(history, HORIZON)  # raises inside the forward, in our hook
    assert_no_hooks(fc.model)
    with pytest.raises(ValueError, match="2 head sets for a batch of 1"):
        with ablator.ablate_each([[(0, 0)], [(0, 1)]], "zero"):
            fc.predict(history, HORIZON)
    assert_no_hooks(fc.model)


def test_ablation_composes_with_capture(fc, ablator, signal):
    """Under zero-ablation of block 1, the captured attention of blocks 0-1 is unchanged (ablation
    acts after a layer's softmax) and later layers' differs; every hook is gone afterwards."""
    history, truth = signal
    res = ablator.run(history, HORIZON, [(1, h) for h in range(4)], mode="zero", truth=truth,
                      report_heads=[(2, 0), (0, 1)])
    base, abl = res.baseline_analysis.time_maps, res.analysis.time_maps
    np.testing.assert_allclose(abl[:2], base[:2], atol=1e-6)
    assert np.abs(abl[2:] - base[2:]).max() > 1e-4
    assert [(r["layer"], r["head"]) for r in res.head_periods()] == [("blocks.2.attn", 0), ("blocks.0.attn", 1)]
    assert res.lag_curve(2, 0).values.shape == res.baseline_analysis.lag_curve(2, 0).values.shape
    np.testing.assert_allclose(res.analysis.forecast.forecast, res.forecast.forecast, atol=0.05)
    assert_no_hooks(fc.model)
    json.dumps(res.to_dict(include_forecasts=True))


# ----- comparison --------------------------------------------------------------------------------
def test_top_k_vs_random_shapes_and_seeded_reproducibility(ablator, signal):
    history, truth = signal
    kw = dict(top_k=(1, 3), draws=4, mode="zero", truth=truth, analyze=False, n_boot=500)
    a = ablator.compare(history, HORIZON, seed=5, **kw)
    b = ablator.compare(history, HORIZON, seed=5, **kw)
    c = ablator.compare(history, HORIZON, seed=6, **{**kw, "top_k": 3})
    assert a.metric == "delta_mae_vs_truth" and [r.k for r in a.rows] == [1, 3]
    ranked = [(s.layer, s.head) for s in a.rows[0].result.baseline_analysis.ranked_heads]
    for row in a.rows:
        assert row.random_changes.shape == (4,) and row.random_mae_vs_baseline.shape == (4,)
        assert all(len(set(draw)) == row.k for draw in row.random_heads)
        assert row.interval[0] <= np.median(row.random_changes) <= row.interval[1]
        assert row.mean_interval[0] <= row.random_changes.mean() <= row.mean_interval[1]
        assert 1 / 5 <= row.p_value <= 1
        assert list(row.result.heads) == ranked[: row.k]
    for ra, rb in zip(a.rows, b.rows):
        assert ra.random_heads == rb.random_heads and ra.interval == rb.interval and ra.mean_interval == rb.mean_interval
        np.testing.assert_array_equal(ra.random_changes, rb.random_changes)
    assert a.rows[1].random_heads != c.rows[0].random_heads  # another seed, other draws
    # a draw's error change is that of running its heads alone
    draw = a.rows[1].random_heads[2]
    single = ablator.run(history, HORIZON, draw, mode="zero", truth=truth, analyze=False)
    assert a.rows[1].random_changes[2] == pytest.approx(single.delta_mae, abs=1e-6)
    json.dumps(a.to_dict())


def test_explicit_heads_vs_random_without_truth(ablator, signal):
    history, _ = signal
    cmp = ablator.compare(history, HORIZON, heads=[(0, 0), (0, 1)], random_k=3, draws=3, mode="zero", analyze=False)
    (row,) = cmp.rows
    assert cmp.metric == "mae_vs_unablated" and row.k == 3 and len(row.result.heads) == 2
    np.testing.assert_array_equal(row.random_changes, row.random_mae_vs_baseline)
    assert row.chosen_change == row.result.mae_vs_baseline > 0


# ----- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("call,message", [
    (lambda a, x: a.run(x, HORIZON, [("blocks.9.attn", 0)], mode="zero"), "unknown layer 'blocks.9.attn'"),
    (lambda a, x: a.run(x, HORIZON, [(7, 0)], mode="zero"), "layer index 7 is out of range"),
    (lambda a, x: a.run(x, HORIZON, [(0, 4)], mode="zero"), "head 4 is out of range for layer 'blocks.0.attn'"),
    (lambda a, x: a.run(x, HORIZON, [(0, 1)], mode="half"), "mode must be one of ('mean', 'zero'), got 'half'"),
    (lambda a, x: a.compare(x, HORIZON, top_k=17, mode="zero"), "k=17 must be an int in 1..16"),
    (lambda a, x: a.compare(x, HORIZON, heads=[(0, 0)], random_k=99, mode="zero"), "random_k=99"),
    (lambda a, x: a.compare(x, HORIZON, top_k=2, draws=0, mode="zero"), "draws must be a positive int, got 0"),
    (lambda a, x: a.run(x, HORIZON, [(0, 1)], reference=a.reference_means([x[:100]], HORIZON)),
     "taken at history 100, horizon 128, not 256, 128"),
    (lambda a, x: a.run(x, HORIZON, [(0, 1)], truth=x[:5], mode="zero"), "truth has 5 values"),
])
def test_bad_input_is_a_one_line_value_error_naming_the_value(ablator, signal, call, message):
    with pytest.raises(ValueError) as info:
        call(ablator, signal[0])
    assert message in str(info.value) and "\n" not in str(info.value)


# ----- CLI ---------------------------------------------------------------------------------------
def ablate_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="attnviz")
    add_ablate_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["ablate", *argv])


def test_cmd_ablate_writes_the_figure_and_summary(fixture_dir, tmp_path, capsys):
    weights = str(fixture_dir / "checkpoint.pth")
    args = ablate_args("--expr", SEED_EXPR, "--length", str(LENGTH), "--horizon", str(HORIZON), "--top-k", "2",
                       "--draws", "3", "--reference-count", "3", "--weights", weights, "--out", str(tmp_path))
    assert cmd_ablate(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("signal", "length", "horizon", "model", "mode", "reference", "truth_known", "metric", "heads",
                "ablation", "comparison", "ranking_caveats", "files", "figures"):
        assert key in summary, key
    assert summary["mode"] == "mean" and summary["reference"]["count"] == 3 and summary["truth_known"]
    assert summary["metric"] == "delta_mae_vs_truth" and len(summary["heads"]) == 2
    (row,) = summary["comparison"]["rows"]
    assert len(row["random_changes"]) == 3 and len(row["interval"]) == 2
    assert len(summary["ablation"]["forecast"]) == HORIZON == len(summary["ablation"]["truth"])
    (figure,) = summary["files"]
    assert Path(figure).is_file() and Path(figure).stat().st_size > 20_000
    assert "error change" in capsys.readouterr().out


def test_cmd_ablate_csv_with_heads_and_holdout(fixture_dir, tmp_path):
    csv = tmp_path / "series.csv"
    values = np.sin(np.arange(LENGTH + HORIZON) / 9.0)
    csv.write_text("value\n" + "\n".join(f"{v:.6f}" for v in values) + "\n")
    args = ablate_args("--csv", str(csv), "--column", "value", "--holdout", "--horizon", str(HORIZON),
                       "--heads", "0:1,decoder_blocks.0.attn:2", "--random", "1", "--draws", "2", "--mode", "zero",
                       "--weights", str(fixture_dir / "checkpoint.pth"), "--out", str(tmp_path / "out"))
    assert cmd_ablate(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["heads"] == [{"layer": "blocks.0.attn", "head": 1}, {"layer": "decoder_blocks.0.attn", "head": 2}]
    assert summary["length"] == LENGTH and summary["reference"] is None and summary["comparison"]["rows"][0]["k"] == 1


def test_cli_main_runs_ablate_once_registered(fixture_dir, tmp_path):
    from attnviz import cli

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if "ablate" not in commands:
        pytest.skip("attnviz.cli does not register 'ablate' yet (the lead adds add_ablate_parser)")
    rc = cli.main(["ablate", "--expr", "sin(n/10)", "--length", str(LENGTH), "--horizon", str(HORIZON), "--top-k", "1",
                   "--draws", "2", "--mode", "zero", "--weights", str(fixture_dir / "checkpoint.pth"),
                   "--out", str(tmp_path)])
    assert rc == 0 and (tmp_path / "summary.json").is_file()
    assert cli.main(["ablate", "--expr", "sin(n)", "--heads", "0:9", "--mode", "zero",
                     "--weights", str(fixture_dir / "checkpoint.pth"), "--out", str(tmp_path)]) == 2


# ----- bundled model ------------------------------------------------------------------------------
def test_bundled_model_self_reference_identity_and_top_head_ablation(bundled_forecaster):
    from attnviz.signals import evaluate_expression

    fc = bundled_forecaster
    ab = HeadAblator(fc)
    x = evaluate_expression(SEED_EXPR, 512 + 720)
    history, truth = x[:512], x[512:]
    means = ab.reference_means([history], 720)
    same = ab.run(history, 720, ab.all_heads, mode="mean", reference=means, truth=truth, analyze=False)
    assert np.array_equal(same.forecast.forecast, same.baseline.forecast) and same.delta_mae == 0.0
    zero = ab.run(history, 720, [("blocks.4.attn", 1)], mode="zero", truth=truth, analyze=False)
    assert zero.mae_vs_baseline > 0 and np.isfinite(zero.delta_mae)
    assert_no_hooks(fc.model)
