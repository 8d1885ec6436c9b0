"""Command line: reinforcement learning with verifiable rewards (GRPO).
An option left out takes the recipe's value (with --resume: the saved run's).

GRPO trains on a task whose answers a program checks: arithmetic, countdown or stories.

--base: for arithmetic and countdown, pretrain (the default) first fine-tunes a small character-level GPT on the
task's format, in OUT/base-<task>-<profile> (reused by later runs); a run folder or checkpoint whose tokenizer can
write the task starts from there instead. For stories, an SFT stories run (default runs/sft-stories-<profile>),
rewarded by the story verifier. What a run does and writes (OUT/grpo_eval.json with the test accuracy before and
after, best.pt chosen on separate validation problems) is `tinylm.posttrain.grpo.run.grpo`'s; this module parses the
options into `RunOptions` and `GRPOOptions` and hands them over.
"""

from __future__ import annotations

import argparse

from ..distributed import run_in_world
from ..posttrain.grpo.recipes import REWARDS
from ..posttrain.grpo.run import GRPOOptions, grpo
from ..posttrain.grpo.tasks import TASK_NAMES
from .console import CommandParser, HelpFormatter, begin, examples
from .errors import run_cli
from .run_options import add_run_options, positive_float, run_options


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m tinylm.grpo", usage="%(prog)s [options]", description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.grpo --task arithmetic --profile cpu --out runs/grpo-arithmetic",
                        "python -m tinylm.grpo --profile cpu --out runs/grpo-arithmetic --resume --max-steps 6000",
                        "python -m tinylm.grpo --task countdown --profile cpu --max-seconds 300",
                        "python -m tinylm.grpo --profile cpu --reward format --out runs/grpo-hacked",
                        "python -m tinylm.grpo --task stories --profile cpu --base runs/sft-stories-cpu"))
    parser.add_argument("--task", choices=TASK_NAMES, help="the problems and their check (default: arithmetic)")
    parser.add_argument("--base", help="pretrain, a run or a checkpoint; stories: an SFT run")
    add_run_options(parser, out="runs/grpo-<task>-<profile>", steps="GRPO updates")
    parser.add_argument("--group-size", type=int, metavar="G", help="completions per prompt, >= 2 (default: the "
                        "recipe's)")
    parser.add_argument("--kl-coef", type=non_negative_float, metavar="B", help="weight of the KL penalty to the base "
                        "(default: 0)")
    parser.add_argument("--reward", choices=REWARDS, help="correct (the default); format or (stories) "
                        "constraints: weaker checks that show reward hacking")
    return parser.parse_args(argv)


def non_negative_float(text: str) -> float:
    """An argparse `type`: a finite number >= 0."""
    return 0.0 if text.strip() in ("0", "0.0") else positive_float(text)


def main(argv=None) -> dict:
    args = begin(parse_args(argv))
    options = GRPOOptions(task=args.task, base=args.base, group_size=args.group_size, kl_coef=args.kl_coef,
                          reward=args.reward)
    return run_in_world(lambda world, held: grpo(run_options(args), options, world=world))


def cli(argv=None) -> None:
    """`python -m tinylm.grpo`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
