"""Regenerate every attnviz experiment into ``experiments/``.

    python main.py                       # all experiments, bundled model (offline)
    python main.py --only three_harmonics two_harmonics
    python main.py --weights ViTime_Model.pth --device auto   # the released ViTime

Weights: --weights, else $ATTNVIZ_WEIGHTS, else config.VITIME_MODEL_PATH, else the bundled model.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import config
from attnviz.cli import add_experiment_args, cmd_experiments, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python main.py", description=__doc__.splitlines()[0])
    add_experiment_args(parser, out_default=config.OUTPUT_DIR)
    parser.set_defaults(device=config.DEVICE)
    args = parser.parse_args(argv)
    return run(cmd_experiments, args, configured=config.VITIME_MODEL_PATH)


if __name__ == "__main__":
    sys.exit(main())
