"""Command line of ``attnviz train`` / ``python -m attnviz.training``.

Only argparse and the torch-free ``TrainConfig`` are imported at module level, so ``--help``
answers instantly and shows the defaults the Python API uses (one place defines them).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, Sequence

from ..argtypes import column_list, positive_float, positive_int, unit_float
from .config import DEFAULT_MODEL, TrainConfig


# Every flag in --help order: (flag, the TrainConfig field it sets or None, add_argument options).
# A flag with a field takes its default from TrainConfig and config_from_args passes it on, so
# each flag names its field in this one place.
_FLAGS: tuple[tuple[str, str | None, dict[str, Any]], ...] = (
    ("--out", "out_dir", dict(help="run directory (checkpoint, log)")),
    ("--steps", "steps", dict(type=positive_int, help="total optimiser steps")),
    ("--batch-size", "batch_size", dict(type=positive_int)),
    ("--lr", "lr", dict(type=positive_float, help="peak AdamW learning rate")),
    ("--warmup", "warmup", dict(type=positive_int, help="warm-up steps")),
    ("--seed", "seed", dict(type=int)),
    ("--device", "device", dict(choices=["cpu", "cuda", "auto"])),
    ("--resume", None, dict(action="store_true", help="continue from OUT/checkpoint.pt")),
    ("--checkpoint-every", "checkpoint_every", dict(type=positive_int)),
    ("--eval-every", "eval_every", dict(type=positive_int)),
    ("--curriculum-rate", "curriculum_rate", dict(
        type=positive_float,
        help="difficulty gained per step while the model keeps up (1/steps to reach the full mix)",
    )),
    ("--curriculum-threshold", "curriculum_threshold", dict(
        type=positive_float,
        help="running future EMD (value bins) on periodic series below which the curriculum advances",
    )),
    ("--init-from", "init_from", dict(
        metavar="WEIGHTS",
        help="start from these weights (a run's checkpoint.pt or a weights file) with a fresh optimiser",
    )),
    ("--easy-jitter", "easy_jitter", dict(
        type=unit_float, help="largest relative deviation of the easy periods from whole token columns"
    )),
    ("--jitter-ramp", "jitter_ramp", dict(
        type=unit_float, help="curriculum difficulty at which the easy jitter is full (0: from the start)"
    )),
    ("--easy-period-cols", "easy_period_cols", dict(
        type=column_list,
        metavar="N,N,...",
        help="periods of the easy sinusoids, in token columns (default %s)"
        % ",".join(map(str, TrainConfig.easy_period_cols)),
    )),
    ("--easy-fraction", "easy_fraction", dict(
        type=unit_float, help="share of easy single sinusoids kept in every batch, at any difficulty"
    )),
    ("--other-fraction", "other_family_fraction", dict(
        type=unit_float,
        help="share of non-sinusoidal series (shaped and step waves, random walks) at full difficulty",
    )),
    ("--start-difficulty", "start_difficulty", dict(
        type=unit_float, help="curriculum difficulty of a fresh run (e.g. where the --init-from run stopped)"
    )),
    ("--max-difficulty", "max_difficulty", dict(type=unit_float, help="the curriculum stops here")),
    # default None = not given: --export-only must tell a requested depth from the default one
    ("--depth", None, dict(
        type=positive_int,
        default=None,
        help="encoder blocks (default %d; more than --init-from's: its blocks are spread out, new ones "
        "start as identities)" % DEFAULT_MODEL["depth"],
    )),
    ("--decoder-depth", None, dict(
        type=positive_int,
        default=None,
        help="decoder blocks (default %d; as --depth)" % DEFAULT_MODEL["decoder_depth"],
    )),
    ("--threads", "threads", dict(type=positive_int, help="torch CPU threads")),
    ("--max-memory-gb", "max_memory_gb", dict(
        type=positive_float,
        metavar="GB",
        help="refuse a run whose one training step is estimated above this (default: "
        "$ATTNVIZ_MAX_MEMORY_GB or 4)",
    )),
    ("--export", None, dict(
        metavar="PATH",
        default=None,
        help="after training, write the weights as PATH.safetensors + PATH.json "
        "(a PATH without those suffixes: a folder with model.safetensors + config.json)",
    )),
    ("--export-only", None, dict(
        action="store_true",
        help="only export OUT/checkpoint.pt to --export (its model as trained; --depth, if given, must match)",
    )),
)


def _dest(flag: str) -> str:
    """The attribute argparse stores ``flag`` under (``--batch-size`` -> ``batch_size``)."""
    return flag.lstrip("-").replace("-", "_")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="attnviz train", description="Train a small ViTime on synthetic series (resumable)."
    )
    for flag, field, options in _FLAGS:
        default = {} if field is None else {"default": getattr(TrainConfig, field)}
        parser.add_argument(flag, **default, **options)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's settings from parsed flags (flag names are the CLI's, fields the API's)."""
    fields = {field: getattr(args, _dest(flag)) for flag, field, _ in _FLAGS if field is not None}
    fields["easy_period_cols"] = tuple(fields["easy_period_cols"])
    return TrainConfig(
        **fields,
        model={
            **DEFAULT_MODEL,
            "depth": args.depth or DEFAULT_MODEL["depth"],
            "decoder_depth": args.decoder_depth or DEFAULT_MODEL["decoder_depth"],
        },
    )


class UsageExit(SystemExit):
    """Exit status 2 (the ``attnviz`` contract for user errors, argparse's too); ``str()`` is the line."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.code = 2


def fail(message: object) -> NoReturn:
    """A user error: one line on stderr, then exit code 2 (a plain SystemExit(message) exits 1)."""
    line = f"attnviz train: {message}"
    print(line, file=sys.stderr)
    raise UsageExit(line)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .trainer import TrainingInputError, export_checkpoint, train

    ckpt = Path(args.out) / "checkpoint.pt"
    if args.export_only:
        if not args.export:
            fail("--export-only needs --export PATH")
        if not ckpt.exists():
            fail(f"no checkpoint to export at {ckpt}")
    else:
        try:
            cfg = config_from_args(args)
        except ValueError as err:  # contradicting settings
            fail(err)
    # Only input errors become one line: a ValueError from inside a training step keeps its traceback.
    try:
        if not args.export_only:
            ckpt = train(cfg, resume=args.resume)
        if args.export:
            # a depth given with --export-only is a claim about the checkpoint, checked before writing
            depths = (args.depth, args.decoder_depth) if args.export_only else (None, None)
            weights, config = export_checkpoint(
                ckpt, args.export, expected_depths=depths, log=print, max_memory_gb=args.max_memory_gb
            )
            print(f"exported {weights} and {config}")
    except TrainingInputError as err:
        fail(err)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
