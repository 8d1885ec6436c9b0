"""Command line: reinforcement learning (GRPO) on a task a program checks.
An option left out is the task's recipe's (with --resume: the saved run's).

What a run does and writes (OUT/grpo_eval.json: the test split measured before and after, best.pt chosen on
separate validation problems) is `tinylm.posttrain.grpo.run.grpo`'s; this module parses the options and hands them
over.
"""

from __future__ import annotations

import argparse

from ..posttrain.grpo.run import grpo
from . import post_training
from .errors import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    return post_training.parse(
        "grpo", __doc__.split("\n\n")[0], argv, steps="GRPO updates", batch=None,
        bases="pretrain, a run or checkpoint", data="a task's data set",
        lora=False,
        example_lines=("python -m tinylm.grpo --task arithmetic --profile cpu",
                       "python -m tinylm.grpo --task arithmetic --resume --max-steps 6000",
                       "python -m tinylm.grpo --task countdown --profile cpu --max-seconds 300",
                       "python -m tinylm.grpo --set reward=format --out runs/grpo-hacked",
                       "python -m tinylm.grpo --task stories --base runs/sft-stories-cpu"))


def main(argv=None) -> dict:
    return post_training.main(parse_args(argv), grpo)


def cli(argv=None) -> None:
    """`python -m tinylm.grpo`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
