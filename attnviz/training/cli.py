"""Command line of ``attnviz train`` / ``python -m attnviz.training``.

Only argparse and the torch-free ``TrainConfig`` are imported at module level, so ``--help``
answers instantly and shows the defaults the Python API uses (one place defines them).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from ..argtypes import column_list, positive_float, positive_int, unit_float
from .config import DEFAULT_MODEL, TrainConfig


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="attnviz train", description="Train a small ViTime on synthetic series (resumable)."
    )
    parser.add_argument("--out", default=TrainConfig.out_dir, help="run directory (checkpoint, log)")
    parser.add_argument("--steps", type=positive_int, default=TrainConfig.steps, help="total optimiser steps")
    parser.add_argument("--batch-size", type=positive_int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=positive_float, default=TrainConfig.lr, help="peak AdamW learning rate")
    parser.add_argument("--warmup", type=positive_int, default=TrainConfig.warmup, help="warm-up steps")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--device", default=TrainConfig.device, choices=["cpu", "cuda", "auto"])
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--checkpoint-every", type=positive_int, default=TrainConfig.checkpoint_every)
    parser.add_argument("--eval-every", type=positive_int, default=TrainConfig.eval_every)
    parser.add_argument(
        "--curriculum-rate", type=positive_float, default=TrainConfig.curriculum_rate,
        help="difficulty gained per step while the model keeps up (1/steps to reach the full mix)",
    )
    parser.add_argument(
        "--curriculum-threshold", type=positive_float, default=TrainConfig.curriculum_threshold,
        help="running future EMD (value bins) on periodic series below which the curriculum advances",
    )
    parser.add_argument(
        "--init-from", metavar="WEIGHTS", default=None,
        help="start from these weights (a run's checkpoint.pt or a weights file) with a fresh optimiser",
    )
    parser.add_argument(
        "--easy-jitter", type=unit_float, default=TrainConfig.easy_jitter,
        help="largest relative deviation of the easy periods from whole token columns",
    )
    parser.add_argument(
        "--jitter-ramp", type=unit_float, default=TrainConfig.jitter_ramp,
        help="curriculum difficulty at which the easy jitter is full (0: from the start)",
    )
    parser.add_argument(
        "--easy-period-cols", type=column_list, default=TrainConfig.easy_period_cols, metavar="N,N,...",
        help="periods of the easy sinusoids, in token columns (default %s)"
        % ",".join(map(str, TrainConfig.easy_period_cols)),
    )
    parser.add_argument(
        "--easy-fraction", type=unit_float, default=TrainConfig.easy_fraction,
        help="share of easy single sinusoids kept in every batch, at any difficulty",
    )
    parser.add_argument(
        "--other-fraction", type=unit_float, default=TrainConfig.other_family_fraction,
        help="share of non-sinusoidal series (shaped and step waves, random walks) at full difficulty",
    )
    parser.add_argument(
        "--start-difficulty", type=unit_float, default=TrainConfig.start_difficulty,
        help="curriculum difficulty of a fresh run (e.g. where the --init-from run stopped)",
    )
    parser.add_argument(
        "--max-difficulty", type=unit_float, default=TrainConfig.max_difficulty,
        help="the curriculum stops here",
    )
    # None = not given: --export-only must tell a requested depth from the default one
    parser.add_argument(
        "--depth", type=positive_int, default=None,
        help="encoder blocks (default %d; more than --init-from's: its blocks are spread out, new ones "
        "start as identities)" % DEFAULT_MODEL["depth"],
    )
    parser.add_argument(
        "--decoder-depth", type=positive_int, default=None,
        help="decoder blocks (default %d; as --depth)" % DEFAULT_MODEL["decoder_depth"],
    )
    parser.add_argument("--threads", type=positive_int, default=TrainConfig.threads, help="torch CPU threads")
    parser.add_argument(
        "--export", metavar="PATH", default=None,
        help="after training, write the weights as PATH.safetensors + PATH.json "
        "(a PATH without those suffixes: a folder with model.safetensors + config.json)",
    )
    parser.add_argument(
        "--export-only", action="store_true",
        help="only export OUT/checkpoint.pt to --export (its model as trained; --depth, if given, must match)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's settings from parsed flags (flag names are the CLI's, fields the API's)."""
    return TrainConfig(
        out_dir=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        seed=args.seed,
        device=args.device,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        curriculum_rate=args.curriculum_rate,
        curriculum_threshold=args.curriculum_threshold,
        threads=args.threads,
        easy_jitter=args.easy_jitter,
        jitter_ramp=args.jitter_ramp,
        init_from=args.init_from,
        start_difficulty=args.start_difficulty,
        max_difficulty=args.max_difficulty,
        easy_fraction=args.easy_fraction,
        other_family_fraction=args.other_fraction,
        easy_period_cols=tuple(args.easy_period_cols),
        model={
            **DEFAULT_MODEL,
            "depth": args.depth or DEFAULT_MODEL["depth"],
            "decoder_depth": args.decoder_depth or DEFAULT_MODEL["decoder_depth"],
        },
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .trainer import TrainingInputError, export_checkpoint, train

    ckpt = Path(args.out) / "checkpoint.pt"
    if args.export_only:
        if not args.export:
            raise SystemExit("attnviz train: --export-only needs --export PATH")
        if not ckpt.exists():
            raise SystemExit(f"attnviz train: no checkpoint to export at {ckpt}")
    else:
        try:
            cfg = config_from_args(args)
        except ValueError as err:  # contradicting settings
            raise SystemExit(f"attnviz train: {err}") from None
    # Only input errors become one line: a ValueError from inside a training step keeps its traceback.
    try:
        if not args.export_only:
            ckpt = train(cfg, resume=args.resume)
        if args.export:
            # a depth given with --export-only is a claim about the checkpoint, checked before writing
            depths = (args.depth, args.decoder_depth) if args.export_only else (None, None)
            weights, config = export_checkpoint(ckpt, args.export, expected_depths=depths, log=print)
            print(f"exported {weights} and {config}")
    except TrainingInputError as err:
        raise SystemExit(f"attnviz train: {err}") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
