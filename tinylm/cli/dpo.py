"""Command line: preference tuning (DPO) of a chat model.
An option left out takes the recipe's value (with --resume: the saved run's).

DPO runs through the same Trainer as pretraining and SFT.

--task: stories (the cpu and smoke profiles' default: pairs the story verifier makes from the SFT model's own
sampled replies, scored by its pass rate) or preference (the gpu profile's). --base: a chat model, i.e. a run folder
or checkpoint of `python -m tinylm.sft` (default: its default --out, runs/sft-stories-<profile>, or for preference
runs/sft-instruct-<profile>); it is also DPO's frozen reference. --data: preference (the 1,100 instructions of the
SFT set, each with a chosen and a rejected answer) or a JSON/JSONL file of instruction/input/chosen/rejected
records; for stories, a DPO stories run from the same base, whose pairs this run trains on instead of sampling.
What a run does and writes (OUT/dpo_eval.json with the before and after measurements) is
`tinylm.posttrain.dpo.run.dpo`'s; this module parses the options into `RunOptions` and `DPOOptions` and hands them
over.
"""

from __future__ import annotations

import argparse

from ..distributed import run_in_world
from ..posttrain.dpo.recipes import TASKS
from ..posttrain.dpo.run import DPOOptions, dpo
from .console import CommandParser, HelpFormatter, begin, examples
from .errors import run_cli
from .run_options import add_lora_arguments, add_run_options, lora_options, positive_float, run_options


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m tinylm.dpo", usage="%(prog)s [options]", description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.dpo --task stories --profile cpu",
                        "python -m tinylm.dpo --task stories --profile cpu --resume --max-steps 300",
                        "python -m tinylm.dpo --task preference --profile cpu --base runs/sft-instruct-cpu",
                        "python -m tinylm.dpo --task stories --profile cpu --out runs/dpo-lora --lora-rank 8"))
    parser.add_argument("--task", choices=TASKS, metavar="TASK",
                        help="stories (default), or preference (gpu's default)")
    parser.add_argument("--base", help="an SFT run (default: runs/sft-<task>-<profile>)")
    parser.add_argument("--data", help="preference, a JSON(L) file, or a DPO run's pairs")
    parser.add_argument("--beta", type=positive_float, metavar="B", help="smaller moves further from the base "
                        "(default: 0.1)")
    add_run_options(parser, out="runs/dpo-<task>-<profile>", batch="pairs")
    parser.add_argument("--system-prompt", metavar="TEXT", help="default: 'You are a helpful assistant.'")
    add_lora_arguments(parser)
    args = parser.parse_args(argv)
    args.lora = lora_options(parser, args)
    return args


def main(argv=None) -> dict:
    args = begin(parse_args(argv))
    options = DPOOptions(task=args.task, base=args.base, data=args.data, beta=args.beta,
                         system_prompt=args.system_prompt, lora=args.lora)
    return run_in_world(lambda world, held: dpo(run_options(args), options, world=world))


def cli(argv=None) -> None:
    """`python -m tinylm.dpo`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
