"""Training: synthetic data, the EMD loss, the exact blur, resumable runs, flag validation."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from attnviz.forecasters.vitime import ViTimeConfig, ViTimeForecaster
from attnviz.forecasters.vitime.mapping import gaussian_blur
from attnviz.training.synthetic import SyntheticSeries, SyntheticSpec
from attnviz.training.trainer import BatchBuilder, TrainConfig, emd_loss, export_checkpoint, train

TINY = {"h": 32, "maxScal": 3.5, "size": [64, 0, 96], "patch_size": [16, 16], "embed_dim": 32,
        "depth": 1, "num_heads": 4, "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 4}


def test_generator_is_reproducible_and_finite():
    a = SyntheticSeries(seed=3).batch(32, 500, difficulty=1.0)
    b = SyntheticSeries(seed=3).batch(32, 500, difficulty=1.0)
    c = SyntheticSeries(seed=4).batch(32, 500, difficulty=1.0)
    assert a.shape == (32, 500) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_easy_level_is_whole_column_sinusoids():
    spec = SyntheticSpec(col_width=32)
    x = SyntheticSeries(seed=0, spec=spec).batch(64, 2048, difficulty=0.0)
    allowed = {c * 32 for c in spec.easy_period_cols}
    for row in x:
        spectrum = np.abs(np.fft.rfft(row - row.mean()))
        period = 2048 / np.argmax(spectrum)
        assert min(abs(period - p) / p for p in allowed) < 0.1, period


def test_difficulty_widens_the_mix():
    gen = SyntheticSeries(seed=1)
    _, easy_labels = gen.batch_with_labels(400, 300, difficulty=0.0)
    _, hard_labels = gen.batch_with_labels(400, 300, difficulty=1.0)
    assert easy_labels.all()  # only (predictable) sinusoids at difficulty 0
    assert 0.15 < 1 - hard_labels.mean() < 0.45  # other families appear at full difficulty
    with pytest.raises(ValueError, match="length"):
        gen.batch(4, 1)


def test_emd_loss_known_values():
    h = 8
    target = torch.tensor([[2, 5, 7]])
    logits = torch.full((1, 3, h), -1e4)
    logits[0, 0, 2] = logits[0, 1, 1] = logits[0, 2, 7] = 1e4  # exact, 4 bins off, exact
    weights = torch.tensor([[0.5, 1.0, 1.0]])  # column 0 is history
    loss, future = emd_loss(logits, target, weights)
    assert future.tolist() == pytest.approx([2.0])  # mean over the two future columns
    assert float(loss) == pytest.approx(2.0)
    uniform = torch.zeros(1, 1, h)
    loss_u, _ = emd_loss(uniform, torch.tensor([[0]]), torch.ones(1, 1))
    assert float(loss_u) == pytest.approx(np.mean(np.arange(h)))
    loss_sq, _ = emd_loss(logits, target, weights, d_norm=2)
    assert float(loss_sq) == pytest.approx(8.0)


def test_training_batch_matches_inference_mapping():
    config = ViTimeConfig.from_mapping(TINY)
    cfg = TrainConfig(model=TINY, random_split_prob=0.0)
    builder = BatchBuilder(config, cfg, torch.device("cpu"))
    image, target, weights, _ = builder.build(3, difficulty=0.5)
    hist = config.size[0]
    assert image.shape == (3, 1, 32, 160) and target.shape == (3, 160)
    assert (weights[:, hist:] == 1).all() and (weights[:, :hist] < 1).all()
    onehot = np.zeros((3, 32, 160))
    for i in range(3):
        onehot[i, target[i, :hist].numpy(), np.arange(hist)] = 1
    np.testing.assert_allclose(image[:, 0].numpy(), gaussian_blur(onehot), atol=2e-6)


def test_train_resume_and_export(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=4, batch_size=2, warmup=2, model=TINY,
                      checkpoint_every=2, eval_every=4, eval_cases=2, seed=5)
    ckpt = train(cfg, log=lambda *_: None)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 4
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and "eval" in log[-1]
    cfg.steps = 6
    train(cfg, resume=True, log=lambda *_: None)
    assert torch.load(ckpt, weights_only=True)["step"] == 6
    weights, config = export_checkpoint(ckpt, tmp_path / "model.safetensors")
    fc = ViTimeForecaster.from_checkpoint(weights)
    assert fc.config.h == 32 and fc.metadata["metadata"]["steps"] == 6
    assert fc.predict(np.sin(np.arange(80) / 4), 40).forecast.shape == (40,)


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "positive integer"),
    (["--lr=-1e-3"], "positive"),
    (["--lr", "0"], "positive"),
    (["--batch-size", "x"], "positive integer"),
    (["--device", "tpu"], "invalid choice"),
])
def test_nonsense_flags_are_argparse_errors(flags, message):
    proc = subprocess.run([sys.executable, "-m", "attnviz.training", *flags], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
