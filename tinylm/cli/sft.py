"""Command line: chat fine-tuning (SFT) of a pretrained model on a task.
An option left out is the task's recipe's (with --resume: the saved run's).

What a run does and writes (OUT/sft_eval.json: the test split measured on the base in plain text, before and after)
is `tinylm.posttrain.sft.run.sft`'s; this module parses the options and hands them over.
"""

from __future__ import annotations

import argparse

from ..posttrain.sft.run import sft
from . import post_training
from .errors import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    return post_training.parse(
        "sft", __doc__.split("\n\n")[0], argv, steps="optimizer steps", batch="conversations",
        bases="pretrain, gpt2, a run or checkpoint",
        data="instruct, a JSON/JSONL file, or a DPO run (its passing chosen replies)", lora=True,
        example_lines=("python -m tinylm.sft --task stories --profile cpu",
                       "python -m tinylm.sft --task instruct --base gpt2 --profile gpu",
                       "python -m tinylm.sft --task stories --lora-rank 8 --out runs/sft-lora"))


def main(argv=None) -> dict:
    return post_training.main(parse_args(argv), sft)


def cli(argv=None) -> None:
    """`python -m tinylm.sft`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
