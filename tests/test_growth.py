"""Deepening a trained model: same forecast, trained blocks in order, new blocks as identities."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from attnviz.forecasters.vitime import ViTimeConfig, ViTimeMAE
from attnviz.training.growth import block_positions, can_deepen, deepen_state
from attnviz.training.trainer import TrainConfig, export_checkpoint, initial_weights, train

SMALL = {"h": 32, "maxScal": 3.5, "size": [64, 0, 96], "patch_size": [16, 16], "embed_dim": 32,
         "depth": 2, "num_heads": 4, "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 4}
DEEP = {**SMALL, "depth": 4, "decoder_depth": 3}


@pytest.mark.parametrize("source, target, expected", [
    (4, 8, [0, 2, 4, 6]), (2, 4, [0, 2]), (1, 3, [0]), (2, 3, [0, 1]), (3, 3, [0, 1, 2]),
])
def test_trained_blocks_are_spread_in_order(source, target, expected):
    assert block_positions(source, target) == expected


def test_block_positions_refuse_a_shallower_stack():
    with pytest.raises(ValueError, match="cannot spread 5 blocks over 4"):
        block_positions(5, 4)


def test_only_depth_may_grow():
    small = ViTimeConfig.from_mapping(SMALL)
    assert can_deepen(small, ViTimeConfig.from_mapping(DEEP))
    assert can_deepen(small, small)
    assert not can_deepen(ViTimeConfig.from_mapping(DEEP), small)  # fewer blocks
    assert not can_deepen(small, ViTimeConfig.from_mapping({**DEEP, "embed_dim": 64}))
    assert not can_deepen(small, ViTimeConfig.from_mapping({**DEEP, "h": 64}))


def _trained_small(seed: int = 0) -> ViTimeMAE:
    torch.manual_seed(seed)
    model = ViTimeMAE(ViTimeConfig.from_mapping(SMALL))
    with torch.no_grad():  # every weight away from its initial value, like a trained model's
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_deepened_model_computes_the_same_logits():
    small = _trained_small()
    target = ViTimeConfig.from_mapping(DEEP)
    deep = ViTimeMAE(target)
    state = deepen_state(small.state_dict(), small.config, target, deep.state_dict())
    deep.load_state_dict(state)
    deep.eval()
    image = torch.rand(3, 1, target.h, target.width)
    with torch.no_grad():
        torch.testing.assert_close(deep(image), small(image), atol=1e-6, rtol=1e-5)
    # Trained blocks keep their order at [0, 2] (encoder) and [0] (decoder); new ones add nothing.
    for src, dst in ((0, 0), (1, 2)):
        torch.testing.assert_close(state[f"blocks.{dst}.attn.qkv.weight"], small.state_dict()[f"blocks.{src}.attn.qkv.weight"])
    for prefix, new in (("blocks", 1), ("blocks", 3), ("decoder_blocks", 1), ("decoder_blocks", 2)):
        for suffix in ("attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
            assert not state[f"{prefix}.{new}.{suffix}"].any(), (prefix, new, suffix)
        # ... but they are not dead: their query/key/value and first MLP layer are random.
        assert state[f"{prefix}.{new}.attn.qkv.weight"].std() > 0


def test_deepening_refuses_other_changes():
    small = _trained_small()
    wider = ViTimeConfig.from_mapping({**DEEP, "embed_dim": 64})
    with pytest.raises(ValueError, match="only more encoder or decoder blocks"):
        deepen_state(small.state_dict(), small.config, wider, ViTimeMAE(wider).state_dict())


def test_a_deeper_run_starts_from_a_shallower_checkpoint(tmp_path):
    first = TrainConfig(out_dir=str(tmp_path / "a"), steps=2, batch_size=2, warmup=1, model=SMALL,
                        eval_every=100, eval_cases=1, seed=1)
    weights, _ = export_checkpoint(train(first, log=lambda *_: None), tmp_path / "small.safetensors")
    deep_config = ViTimeConfig.from_mapping(DEEP)
    fresh = ViTimeMAE(deep_config).state_dict()
    state = initial_weights(weights, deep_config, fresh)
    assert state.keys() == fresh.keys()
    # Without the fresh state (no place for new blocks) a deeper model is still a mismatch.
    with pytest.raises(ValueError, match="differs from this run"):
        initial_weights(weights, deep_config)
    second = TrainConfig(out_dir=str(tmp_path / "b"), steps=1, batch_size=2, warmup=1, model=DEEP,
                         eval_every=100, eval_cases=1, seed=2, init_from=str(weights))
    after = torch.load(train(second, log=lambda *_: None), weights_only=True)
    assert after["config"]["depth"] == 4 and after["config"]["decoder_depth"] == 3
    # Resuming the deep run without its depth flags names both models instead of a key error.
    shallow_resume = TrainConfig(out_dir=str(tmp_path / "b"), steps=2, batch_size=2, warmup=1, model=SMALL,
                                 eval_every=100, eval_cases=1, seed=2)
    with pytest.raises(ValueError, match="--resume: .* holds .*4 blocks.* this run builds .*2 blocks"):
        train(shallow_resume, resume=True, log=lambda *_: None)


def test_cli_reports_unfitting_init_weights_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "attnviz.training", "--out", str(tmp_path / "r"), "--steps", "1",
                           "--init-from", str(tmp_path / "missing.pt")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "attnviz train: --init-from: no such file" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_depth_flags_set_the_model():
    from attnviz.training.cli import build_parser, config_from_args

    cfg = config_from_args(build_parser().parse_args(["--depth", "8", "--decoder-depth", "4"]))
    assert (cfg.model["depth"], cfg.model["decoder_depth"]) == (8, 4)
    assert cfg.model["embed_dim"] == TrainConfig().model["embed_dim"]
