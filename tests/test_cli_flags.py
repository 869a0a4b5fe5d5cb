"""Bad flags are one line naming the flag, exit code 2, and come before slow work (model loading,
forwards): ablate's --seed/--confidence/--top-k/--random/--heads, experiments --model visionts."""
from __future__ import annotations

import numpy as np
import pytest

from attnviz import cli

LENGTH, HORIZON = 160, 48


def parse_error(capsys, argv: list[str]) -> str:
    """The one-line argparse error of ``argv`` (exit code 2)."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def run_error(capsys, argv: list[str]) -> str:
    """The one-line error of a command that parsed (exit code 2)."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if anything loads a model."""
    import attnviz.ablation_cli  # first: it binds cli.load_model when imported

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the flags were checked")

    monkeypatch.setattr(cli, "load_model", refuse)
    monkeypatch.setattr(attnviz.ablation_cli, "load_model", refuse)


@pytest.fixture
def no_forwards(monkeypatch):
    """Fail the test if the ablation runs (it starts with forwards)."""
    from attnviz.ablation import HeadAblator

    def refuse(*args, **kwargs):
        raise AssertionError("forwards ran before the flags were checked")

    monkeypatch.setattr(HeadAblator, "compare", refuse)


def ablate(tmp_path, *extra: str, weights: str | None = None) -> list[str]:
    argv = ["ablate", "--expr", "sin(n/10)", "--length", str(LENGTH), "--horizon", str(HORIZON), "--mode", "zero",
            "--out", str(tmp_path / "out"), *extra]
    return argv + (["--weights", weights] if weights else [])


@pytest.mark.parametrize("flag, value, expected", [
    ("--seed", "-1", "argument --seed: expected an integer >= 0, got '-1'"),
    ("--seed", "x", "argument --seed: expected an integer >= 0, got 'x'"),
    ("--confidence", "0", "argument --confidence: expected a number strictly between 0 and 1, got '0'"),
    ("--confidence", "1", "argument --confidence: expected a number strictly between 0 and 1, got '1'"),
    ("--confidence", "1.5", "argument --confidence: expected a number strictly between 0 and 1, got '1.5'"),
    ("--top-k", "0", "argument --top-k: expected a positive integer, got '0'"),
    ("--random", "-2", "argument --random: expected a positive integer, got '-2'"),
])
def test_ablate_flags_fail_at_parsing_naming_the_flag(capsys, tmp_path, no_model, flag, value, expected):
    assert parse_error(capsys, ablate(tmp_path, flag, value)).endswith(expected)
    assert not (tmp_path / "out").exists()


def test_ablate_checks_the_history_before_loading(capsys, tmp_path, no_model):
    argv = ablate(tmp_path)
    argv[argv.index("--length") + 1] = "1"
    assert run_error(capsys, argv) == "attnviz: error: the history (--length 1) has 1 sample; need at least 2"


@pytest.mark.parametrize("extra, expected", [
    (["--top-k", "999"], "attnviz: error: --top-k 999: the model has 16 heads in its attention layers; give at most 16"),
    (["--top-k", "2", "--random", "17"], "attnviz: error: --random 17: the model has 16 heads"),
    (["--heads", "0:1", "--random", "99"], "attnviz: error: --random 99: the model has 16 heads"),
    (["--heads", "0:9"], "attnviz: error: --heads: head 9 is out of range for layer 'blocks.0.attn': it has 4 heads"),
])
def test_ablate_head_counts_are_checked_after_loading_before_any_forward(capsys, tmp_path, fixture_dir, no_forwards,
                                                                         extra, expected):
    weights = str(fixture_dir / "checkpoint.pth")
    assert run_error(capsys, ablate(tmp_path, *extra, weights=weights)).startswith(expected)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ablation_api_refuses_a_negative_seed_before_any_forward(vitime_fixture_forecaster, monkeypatch):
    from attnviz.ablation import HeadAblator

    ablator = HeadAblator(vitime_fixture_forecaster)
    monkeypatch.setattr(vitime_fixture_forecaster, "predict", lambda *a, **k: pytest.fail("forward ran"))
    with pytest.raises(ValueError, match=r"^seed must be an int >= 0 \(it seeds numpy's generators\), got -1$"):
        ablator.compare(np.sin(np.arange(LENGTH) / 10), HORIZON, top_k=2, seed=-1, mode="zero")


# ----- experiments ---------------------------------------------------------------------------------
def test_experiments_refuse_visionts_before_loading(capsys, tmp_path, no_model):
    line = run_error(capsys, ["experiments", "--model", "visionts", "--periodicity", "24", "--out", str(tmp_path)])
    assert line.startswith("attnviz: error: --model visionts: the built-in experiments are ViTime's")
    assert "attnviz explain --model visionts" in line and not any(tmp_path.iterdir())


def test_experiment_runner_refuses_a_visionts_forecaster(tmp_path):
    pytest.importorskip("visionts")
    from attnviz.experiments import ExperimentRunner
    from attnviz.forecasters.visionts import VisionTSForecaster, tiny_visionts

    fc = VisionTSForecaster(tiny_visionts(seed=0), 24, allow_random_weights=True)
    with pytest.raises(ValueError, match="the built-in experiments are ViTime's"):
        ExperimentRunner(fc, tmp_path)


def test_period_sweep_tolerance_is_the_calls_token_column(vitime_fixture_forecaster, tmp_path):
    """The sweep's one-column tolerance comes from the analysis' grid, not the forecaster's config."""
    from attnviz.experiments import Experiment, ExperimentRunner

    exp = Experiment("sweep", "sweep", "", "period_sweep", length=LENGTH, horizon=HORIZON, params={"periods": (16, 32)})
    runner = ExperimentRunner(vitime_fixture_forecaster, tmp_path)
    outcome = runner.run(exp)
    spc = vitime_fixture_forecaster.grid(LENGTH, HORIZON).samples_per_col
    assert f"one column = {spc:g}" in outcome.observed


def test_a_known_period_shorter_than_a_column_is_refused_before_the_forward(capsys, monkeypatch, tmp_path):
    """512 + 720 samples on 77 columns: one column is 16 samples; 3 cannot show (and the parser
    refuses a negative period before anything loads)."""
    from attnviz.analysis import MultiHeadAttentionRollout

    def no_forward(*args, **kwargs):
        raise AssertionError("the model ran before --known-period was checked")

    monkeypatch.setattr(MultiHeadAttentionRollout, "analyze", no_forward)
    argv = ["explain", "--expr", "sin(n/10)", "--length", "512", "--horizon", "720", "--out", str(tmp_path / "o")]
    err = run_error(capsys, argv + ["--known-period", "3"])
    assert err.startswith("attnviz: error: --known-period: 3.0 samples is shorter than one token column (16 samples)")
    monkeypatch.setattr(cli, "load_model", no_forward)
    assert "--known-period: expected a positive finite number" in parse_error(capsys, argv + ["--known-period", "-2"])
