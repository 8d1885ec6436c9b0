"""Command line: reinforcement learning with verifiable rewards (GRPO) on a task whose answers a program checks.

    python -m tinylm.rl [--task arithmetic|countdown] [--base pretrain|RUN_DIR|CHECKPOINT] [--out DIR]
        [--profile smoke|cpu|gpu] [--resume] [--overwrite] [--max-steps N] [--max-seconds S] [--learning-rate LR]
        [--group-size G] [--kl-coef B] [--reward correct|format] [--seed N] [--device ...] [--dtype ...]

--base: `pretrain` (default) first fine-tunes a small character-level GPT on the task's format, in
OUT/base-<task>-<profile> (reused by later runs); a run folder or checkpoint whose tokenizer can write the task
starts from there instead. What a run does and writes (OUT/rl_eval.json with the test accuracy before and after,
best.pt being chosen on separate validation problems; metrics.jsonl, best.pt, last.pt) is
`tinylm.posttrain.grpo_run.reinforce`'s; this module parses the options.
"""

from __future__ import annotations

import argparse

from ..distributed import run_in_world
from ..posttrain.grpo_run import reinforce
from ..posttrain.tasks import TASKS
from .console import CommandParser, HelpFormatter, begin, examples
from .errors import run_cli
from .run_options import add_run_options, positive_float, train_options


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m tinylm.rl", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.rl --task arithmetic --base pretrain --profile cpu --out runs/rl-arithmetic",
                        "python -m tinylm.rl --task arithmetic --profile cpu --out runs/rl-arithmetic --resume",
                        "python -m tinylm.rl --task countdown --profile cpu --max-seconds 300"))
    parser.add_argument("--task", choices=sorted(TASKS), default="arithmetic", help="the problems and their check")
    parser.add_argument("--base", default="pretrain", help="pretrain (a task-format model first), a run folder or a "
                        "checkpoint")
    add_run_options(parser, out="runs/rl-<task>-<profile>", steps="GRPO steps, one update each (a rollout serves "
                    "the recipe's updates, 2 on cpu)")
    parser.add_argument("--group-size", type=int, help="completions sampled per prompt, at least 2 "
                        "(default: the profile's)")
    parser.add_argument("--kl-coef", type=non_negative_float, help="weight of the KL penalty to the starting model "
                        "(default 0)")
    parser.add_argument("--reward", choices=("correct", "format"), help="correct: the task's check (default); "
                        "format: well-formed answers pay alone, to watch reward hacking")
    return parser.parse_args(argv)


def non_negative_float(text: str) -> float:
    """An argparse `type`: a finite number >= 0."""
    return 0.0 if text.strip() in ("0", "0.0") else positive_float(text)


def main(argv=None) -> dict:
    args = begin(parse_args(argv))
    return run_in_world(lambda world, held: reinforce(
        args.task, base=args.base, group_size=args.group_size, kl_coef=args.kl_coef, reward=args.reward,
        world=world, **train_options(args)))


def cli(argv=None) -> None:
    """`python -m tinylm.rl`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
