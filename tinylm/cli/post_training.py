"""Command lines: sft, dpo and grpo, the three post-training methods, with one parser made from RunOptions and
PostTrainingOptions (tinylm/cli/options.py). What a run does and writes (OUT/<method>_eval.json: the test split
measured before and after) is its method's run function (tinylm.posttrain.<method>.run); this module parses the
options and hands them over. An option left out is the task's recipe's (with --resume: the saved run's).
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass

from ..distributed import run_in_world
from ..posttrain.job import PostTrainingOptions
from ..posttrain.tasks import DEFAULT_TASKS, task_class, tasks_for
from ..train.options import RunOptions
from .console import begin, command_parser
from .errors import run_cli
from .options import add_options, options_from


@dataclass(frozen=True)
class MethodCommandLine:
    """What one method's command line says: its description, what its steps and batches count, the --base and
    --data it takes, whether it trains LoRA adapters, and its examples."""

    description: str
    recipe: str
    steps: str
    batch: str | None
    bases: str
    data: str
    lora: bool
    example_lines: tuple[str, ...]


METHODS = {
    "sft": MethodCommandLine(
        "chat fine-tuning (SFT) of a pretrained model on a task", "SFTRecipe", "optimizer steps", "conversations",
        "pretrain, gpt2, smollm2-135m-instruct, a run or checkpoint",
        "instruct, a JSON/JSONL file, or a DPO run (its passing chosen replies)",
        True, ("python -m tinylm.sft --task stories --profile cpu",
               "python -m tinylm.sft --task instruct --base gpt2 --profile gpu",
               "python -m tinylm.sft --task multistep --base smollm2-135m-instruct")),
    "dpo": MethodCommandLine(
        "preference tuning (DPO) of a chat model on a task", "DPORecipe", "optimizer steps", "pairs",
        "an SFT run or checkpoint", "a preference file or a DPO run's pairs",
        True, ("python -m tinylm.dpo --task stories --profile cpu",
               "python -m tinylm.dpo --task preference --profile cpu --set beta=0.5",
               "python -m tinylm.dpo --task stories --lora-rank 8 --out runs/dpo-lora")),
    "grpo": MethodCommandLine(
        "reinforcement learning (GRPO) on a task a program checks", "GRPORecipe", "GRPO updates", None,
        "pretrain, a run or checkpoint", "a task's data set",
        False, ("python -m tinylm.grpo --task arithmetic --profile cpu",
                "python -m tinylm.grpo --task arithmetic --resume --max-steps 6000",
                "python -m tinylm.grpo --task countdown --profile cpu --max-seconds 300",
                "python -m tinylm.grpo --set reward=format --out runs/grpo-hacked",
                "python -m tinylm.grpo --task multistep_3_digit --base runs/sft-multistep-cpu")),
}


def parse_args(method: str, argv=None) -> argparse.Namespace:
    told = METHODS[method]
    description = (f"Command line: {told.description}.\nAn option left out is the task's recipe's (with --resume: "
                   "the saved run's).")
    parser = command_parser(f"python -m tinylm.{method}", description, told.example_lines, usage="%(prog)s [options]")
    takes_data = any(task_class(t).takes_data for t in tasks_for(method))
    skip = (() if told.lora else ("lora",)) + (() if takes_data else ("data",))
    add_options(parser, PostTrainingOptions, {"tasks": ", ".join(tasks_for(method)), "task": DEFAULT_TASKS[method],
                                              "bases": told.bases, "data": told.data}, skip=skip,
                choices={"task": tuple(tasks_for(method))})
    add_options(parser, RunOptions, {"out": f"runs/{method}-<task>-<profile>", "steps": told.steps,
                                     "batch": told.batch or "",
                                     "fields": f"{told.recipe} (tinylm/posttrain/recipes.py) or TrainConfig"},
                skip=() if told.batch else ("batch_size",))
    args = parser.parse_args(argv)
    args.run, args.options = options_from(parser, args, RunOptions), options_from(parser, args, PostTrainingOptions)
    return args


def main(method: str, argv=None) -> dict:
    """Parse `argv`, run `method` in torchrun's world (or alone) and return its report."""
    args = begin(parse_args(method, argv), thread_note=True)
    run = getattr(importlib.import_module(f"tinylm.posttrain.{method}.run"), method)
    return run_in_world(lambda world: run(args.run, args.options, world=world))


def cli(method: str, argv=None) -> None:
    """`python -m tinylm.<method>`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(lambda argv: main(method, argv), argv)
