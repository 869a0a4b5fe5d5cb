"""Training: synthetic data, the EMD loss, the exact blur, resumable runs, flag validation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnviz.forecasters.vitime import ViTimeConfig, ViTimeForecaster
from attnviz.forecasters.vitime.mapping import gaussian_blur
from attnviz.training.synthetic import SyntheticSeries, SyntheticSpec
from attnviz.training.trainer import (
    BatchBuilder, TrainConfig, emd_loss, export_checkpoint, initial_weights, train,
)

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


def test_easy_periods_leave_the_column_grid_as_difficulty_grows():
    spec = SyntheticSpec(col_width=32, easy_period_cols=(4,), easy_jitter=0.4, jitter_ramp=0.2,
                         easy_fraction=1.0, other_family_fraction=0.0)

    def periods(difficulty: float) -> np.ndarray:  # easy_fraction=1: every series is an easy one
        rows = SyntheticSeries(seed=0, spec=spec).batch(200, 4096, difficulty=difficulty)
        return np.array([4096 / np.argmax(np.abs(np.fft.rfft(row - row.mean()))) for row in rows])

    exact = periods(0.0)
    np.testing.assert_allclose(exact, 128, rtol=0.03)
    half = periods(0.1)  # half-way up the ramp: +-20 %
    assert half.min() > 128 * 0.78 and half.max() < 128 * 1.22
    full = periods(0.2)  # +-40 %, spread over the range rather than stuck on the grid
    assert full.min() > 128 * 0.58 and full.max() < 128 * 1.42
    assert full.min() < 128 * 0.7 and full.max() > 128 * 1.3
    assert np.mean(np.abs(full / 128 - 1) > 0.05) > 0.7
    # Without jitter the easy periods stay on the grid at any difficulty (how stage 1 was trained).
    still = SyntheticSeries(seed=0, spec=SyntheticSpec(easy_period_cols=(4,), easy_jitter=0.0, easy_fraction=1.0,
                                                     other_family_fraction=0.0))
    rows = still.batch(50, 4096, difficulty=0.4)
    np.testing.assert_allclose([4096 / np.argmax(np.abs(np.fft.rfft(r - r.mean()))) for r in rows], 128)


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


def test_init_from_checkpoint_or_weights_file(tmp_path):
    first = TrainConfig(out_dir=str(tmp_path / "a"), steps=2, batch_size=2, warmup=1, model=TINY,
                        eval_every=100, eval_cases=1, seed=1)
    ckpt = train(first, log=lambda *_: None)
    trained = torch.load(ckpt, weights_only=True)["model"]
    weights, _ = export_checkpoint(ckpt, tmp_path / "tiny.safetensors")
    config = ViTimeConfig.from_mapping(TINY)
    renamed = tmp_path / "renamed.pth"  # a training checkpoint is recognised by content, not suffix
    renamed.write_bytes(ckpt.read_bytes())
    for source in (ckpt, weights, renamed):
        state = initial_weights(source, config)
        assert state.keys() == trained.keys()
        for key in trained:
            torch.testing.assert_close(state[key], trained[key])
    # A run initialised from it starts from those weights (lr ~0: they barely move).
    second = TrainConfig(out_dir=str(tmp_path / "b"), steps=1, batch_size=2, warmup=1, lr=1e-12, model=TINY,
                         eval_every=100, eval_cases=1, seed=2, init_from=str(weights))
    after = torch.load(train(second, log=lambda *_: None), weights_only=True)
    assert after["step"] == 1 and after["difficulty"] == 0.0
    torch.testing.assert_close(after["model"]["pos_embed"], trained["pos_embed"])
    torch.testing.assert_close(after["model"]["decoder_pred.weight"], trained["decoder_pred.weight"], atol=1e-6, rtol=0)
    other = ViTimeConfig.from_mapping({**TINY, "embed_dim": 64})
    with pytest.raises(ValueError, match="differs from this run"):
        initial_weights(ckpt, other)
    with pytest.raises(ValueError, match="no such file"):
        initial_weights(tmp_path / "missing.pt", config)


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "positive integer"),
    (["--lr=-1e-3"], "positive"),
    (["--lr", "0"], "positive"),
    (["--batch-size", "x"], "positive integer"),
    (["--device", "tpu"], "invalid choice"),
    (["--easy-jitter", "1.5"], "in [0, 1]"),
    (["--jitter-ramp", "x"], "in [0, 1]"),
    (["--easy-period-cols", "0,2"], "comma-separated positive integers"),
    (["--easy-period-cols", "2;3"], "comma-separated positive integers"),
    (["--max-difficulty", "-0.1"], "in [0, 1]"),
    (["--easy-fraction", "1.2"], "in [0, 1]"),
    (["--other-fraction", "x"], "in [0, 1]"),
    (["--depth", "0"], "positive integer"),
])
def test_nonsense_flags_are_argparse_errors(flags, message, capsys):
    # in this process (what ``python -m attnviz.training`` calls); test_growth's
    # test_cli_reports_unfitting_init_weights_in_one_line starts the real process
    from attnviz.training.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(flags)
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2
    assert message in stderr and "Traceback" not in stderr


def _write_log(path, steps, evals=()):
    records = [{"step": s, "loss": 5.0 - s / 100, "future_emd": 4.0 - s / 100, "difficulty": s / 1000,
                **({"eval": {"median_ratio_to_mean": 1.0 - s / 1000, "seed_ratio_to_mean": 0.9}} if s in evals else {})}
               for s in steps]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_training_report_chains_stages(tmp_path):
    from attnviz.training.report import chain_logs, main, read_log

    first = _write_log(tmp_path / "a.jsonl", [1, 2, 3, 2, 3, 4, 5], evals=(4,))  # resumed at 1
    second = _write_log(tmp_path / "b.jsonl", [1, 2, 3], evals=(3,))
    assert [r["step"] for r in read_log(first)] == [1, 2, 3, 4, 5]
    rows, starts = chain_logs([f"{first}:4", str(second)])
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["stage"] for r in rows] == [0, 0, 0, 0, 1, 1, 1]
    assert starts == [4]
    assert rows[-1]["eval"]["median_ratio_to_mean"] == pytest.approx(0.997)
    out = tmp_path / "curve.png"
    assert main([f"{first}:4", str(second), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    thin = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert thin[-1]["step"] == 7 and all("eval" in r or r["step"] % 50 == 0 or r is thin[-1] for r in thin)
    with pytest.raises(ValueError, match="LOG or LOG:STEP"):
        chain_logs([f"{first}:x"])
    with pytest.raises(ValueError, match="no records up to step 0"):
        chain_logs([f"{first}:0"])
    assert main([str(out)]) == 2


@pytest.mark.parametrize("step, label", [(0, "0"), (500, "500"), (20000, "20k"), (125000, "125k"), (1.5e6, "1.5M")])
def test_training_curve_step_ticks_stay_short(step, label):
    from attnviz.training.report import _step_label

    assert _step_label(step) == label


@pytest.mark.parametrize("flags, message", [
    (["--start-difficulty", "0.5", "--max-difficulty", "0.2"], "start_difficulty 0.5 is above max_difficulty 0.2"),
    (["--easy-fraction", "0.8", "--other-fraction", "0.4"], "easy_fraction 0.8 + other_family_fraction 0.4 exceed 1"),
])
def test_contradictory_flags_are_refused(flags, message, capsys):
    from attnviz.training.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(flags)
    stderr = capsys.readouterr().err
    assert exit_.value.code != 0
    assert message in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("fields, message", [
    ({"start_difficulty": 0.9, "max_difficulty": 0.5}, "start_difficulty 0.9 is above max_difficulty 0.5"),
    ({"easy_fraction": 0.7, "other_family_fraction": 0.5}, "easy_fraction 0.7 \\+ other_family_fraction 0.5 exceed 1"),
    ({"easy_fraction": -0.1}, r"easy_fraction must lie in \[0, 1\], got -0.1"),
    ({"easy_period_cols": (0, 2)}, r"easy_period_cols must be whole columns >= 1, got \(0, 2\)"),
])
def test_the_python_api_refuses_what_the_cli_refuses(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(model=TINY, **fields)


def test_easy_period_cols_reach_the_generator(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path), model=TINY, easy_period_cols=(1, 3))
    builder = BatchBuilder(ViTimeConfig.from_mapping(TINY), cfg, torch.device("cpu"))
    assert builder.series.spec.easy_period_cols == (1, 3) and builder.series.spec.col_width == 16


def test_family_shares_reach_the_generator(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path), model=TINY, easy_fraction=0.1, other_family_fraction=0.05)
    builder = BatchBuilder(ViTimeConfig.from_mapping(TINY), cfg, torch.device("cpu"))
    spec = builder.series.spec
    assert (spec.easy_fraction, spec.other_family_fraction) == (0.1, 0.05)
    # The non-sinusoidal share is other_fraction x difficulty: 0.05 at full difficulty, 0.3 by default.
    _, periodic = builder.series.batch_with_labels(4000, 256, difficulty=1.0)
    assert abs((~periodic).mean() - 0.05) < 0.015
    _, periodic = SyntheticSeries(0).batch_with_labels(4000, 256, difficulty=1.0)
    assert abs((~periodic).mean() - 0.3) < 0.03


def test_cli_defaults_are_the_api_defaults():
    from attnviz.training.cli import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args([])) == TrainConfig()
    cfg = config_from_args(build_parser().parse_args(
        ["--other-fraction", "0.05", "--easy-period-cols", "1,3", "--steps", "7", "--out", "x"]))
    assert cfg == TrainConfig(other_family_fraction=0.05, easy_period_cols=(1, 3), steps=7, out_dir="x")


def _foreign_files(folder):
    folder.mkdir()
    text = folder / "notes.pt"
    text.write_text("not a checkpoint at all")
    torch.save([1, 2, 3], folder / "list.pt")
    torch.save({"weights": torch.zeros(2)}, folder / "dict.pt")
    truncated = folder / "truncated.pt"
    torch.save({"model": {"w": torch.zeros(1000)}, "config": {}, "step": 1}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    foreign_config = folder / "foreign_config.pt"  # shaped like a training checkpoint, config nonsense
    torch.save({"model": {"w": torch.zeros(1)}, "config": {"h": -4}, "step": 1}, foreign_config)
    return [text, folder / "list.pt", folder / "dict.pt", truncated, foreign_config]


def test_foreign_files_are_one_line_errors_naming_them(tmp_path, capsys):
    """--init-from, --resume and --export-only given a file that is not what they read."""
    from attnviz.training.cli import main

    for i, foreign in enumerate(_foreign_files(tmp_path / "foreign")):
        # the last file is shaped like a training checkpoint: its config is what is wrong
        why = "its 'config' does not describe a ViTime model" if foreign.stem == "foreign_config" else "is not a"
        with pytest.raises(SystemExit) as init:
            main(["--out", str(tmp_path / f"init{i}"), "--steps", "1", "--init-from", str(foreign)])
        assert str(init.value).startswith(f"attnviz train: --init-from: {foreign}"), init.value
        if foreign.stem != "foreign_config":
            assert "training checkpoint written by attnviz train is also accepted" in str(init.value)
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "checkpoint.pt").write_bytes(foreign.read_bytes())
        with pytest.raises(SystemExit) as resume:
            main(["--out", str(run), "--steps", "1", "--resume"])
        assert str(resume.value).startswith(f"attnviz train: --resume: {run / 'checkpoint.pt'}"), resume.value
        assert why in str(resume.value)
        with pytest.raises(SystemExit) as export:
            main(["--out", str(run), "--export-only", "--export", str(tmp_path / "x.safetensors")])
        assert str(export.value).startswith(f"attnviz train: export: {run / 'checkpoint.pt'}")
        assert why in str(export.value)
        assert "\n" not in str(init.value) + str(resume.value) + str(export.value)


def test_a_value_error_inside_a_training_step_keeps_its_traceback(tmp_path, monkeypatch):
    """Only input errors are shortened to one line; a bug mid-run must not be disguised as one."""
    from attnviz.training import trainer
    from attnviz.training.cli import main

    def broken(*args, **kwargs):
        raise ValueError("bug inside a step")

    monkeypatch.setattr(trainer, "emd_loss", broken)
    with pytest.raises(ValueError, match="bug inside a step"):
        main(["--out", str(tmp_path / "r"), "--steps", "1", "--eval-every", "100"])


def test_export_only_checks_a_requested_depth_before_writing(tmp_path, capsys):
    """--export-only writes the checkpoint's model; a --depth that contradicts it is an error, not ignored."""
    from attnviz.training.cli import main

    run = tmp_path / "run"
    train(TrainConfig(out_dir=str(run), steps=1, batch_size=2, warmup=1, model=TINY, eval_every=100,
                      eval_cases=1, seed=3), log=lambda *_: None)
    out = tmp_path / "model.safetensors"
    for flags, stack in ((["--depth", "4"], "1 encoder block, not the 4"),
                         (["--decoder-depth", "2"], "1 decoder block, not the 2")):
        with pytest.raises(SystemExit) as err:
            main(["--out", str(run), "--export-only", "--export", str(out), *flags])
        assert str(err.value).startswith(f"attnviz train: export: {run / 'checkpoint.pt'} holds {stack}")
        assert flags[0] in str(err.value) and "\n" not in str(err.value)
        assert not out.exists()
    capsys.readouterr()
    assert main(["--out", str(run), "--export-only", "--export", str(out), "--depth", "1"]) == 0
    printed = capsys.readouterr().out
    assert "exporting step 1: ViTime h=32" in printed and "encoder 32d x 1 blocks" in printed
    assert ViTimeForecaster.from_checkpoint(out).config.enc_depth == 1
