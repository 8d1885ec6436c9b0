"""Command line: preference tuning (DPO) of a chat model on a task.
An option left out is the task's recipe's (with --resume: the saved run's).

What a run does and writes (OUT/dpo_eval.json: the test split measured before and after, the held-out pairs'
preference figures; OUT/pairs.json: on-policy pairs) is `tinylm.posttrain.dpo.run.dpo`'s; this module parses the
options and hands them over.
"""

from __future__ import annotations

import argparse

from ..posttrain.dpo.run import dpo
from . import post_training
from .errors import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    return post_training.parse(
        "dpo", __doc__.split("\n\n")[0], argv, steps="optimizer steps", batch="pairs",
        bases="an SFT run or checkpoint", data="a preference file or a DPO run's pairs",
        lora=True,
        example_lines=("python -m tinylm.dpo --task stories --profile cpu",
                       "python -m tinylm.dpo --task preference --profile cpu --set beta=0.5",
                       "python -m tinylm.dpo --task stories --lora-rank 8 --out runs/dpo-lora"))


def main(argv=None) -> dict:
    return post_training.main(parse_args(argv), dpo)


def cli(argv=None) -> None:
    """`python -m tinylm.dpo`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
