"""What the three post-training command lines (sft, dpo, grpo) share: their parser, made from RunOptions and
PostTrainingOptions (tinylm/cli/options.py), and their start. Each command's module says what differs."""

from __future__ import annotations

import argparse
from typing import Callable

from ..distributed import run_in_world
from ..posttrain.job import PostTrainingOptions
from ..posttrain.tasks import DEFAULT_TASKS, task_class, tasks_for
from ..train.options import RunOptions
from .console import CommandParser, HelpFormatter, begin, examples
from .options import add_options, options_from

FIELDS = {"sft": "SFTRecipe", "dpo": "DPORecipe", "grpo": "GRPORecipe"}


def parse(method: str, description: str, argv, *, bases: str, data: str, steps: str, batch: str | None, lora: bool,
          example_lines: tuple[str, ...]) -> argparse.Namespace:
    parser = CommandParser(prog=f"python -m tinylm.{method}", usage="%(prog)s [options]", description=description,
                           formatter_class=HelpFormatter, epilog=examples(*example_lines))
    skip = (() if lora else ("lora",)) + (() if any(task_class(t).takes_data for t in tasks_for(method)) else ("data",))
    add_options(parser, PostTrainingOptions, {"tasks": ", ".join(tasks_for(method)), "task": DEFAULT_TASKS[method],
                                              "bases": bases, "data": data}, skip=skip,
                choices={"task": tuple(tasks_for(method))})
    add_options(parser, RunOptions, {"out": f"runs/{method}-<task>-<profile>", "steps": steps, "batch": batch or "",
                                     "fields": f"{FIELDS[method]} (tinylm/posttrain/recipes.py) or TrainConfig"},
                skip=() if batch else ("batch_size",))
    args = parser.parse_args(argv)
    args.run, args.options = options_from(parser, args, RunOptions), options_from(parser, args, PostTrainingOptions)
    return args


def main(args: argparse.Namespace, method: Callable[..., dict]) -> dict:
    begin(args)
    return run_in_world(lambda world: method(args.run, args.options, world=world))
