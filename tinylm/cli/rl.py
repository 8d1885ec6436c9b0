"""Command line: reinforcement learning with verifiable rewards (GRPO) on a task whose answers a program checks.

    python -m tinylm.rl [--task arithmetic|countdown] [--base pretrain|RUN_DIR|CHECKPOINT] [--out DIR]
        [--profile smoke|cpu|gpu] [--resume] [--overwrite] [--max-steps N] [--max-seconds S] [--group-size G]
        [--kl-coef B] [--reward correct|format] [--seed N] [--device ...]

--base: `pretrain` (default) first fine-tunes a small character-level GPT on the task's format, in
OUT/base-<task>-<profile> (reused by later runs); a run folder or checkpoint whose tokenizer can write the task
starts from there instead. What a run does and writes (OUT/rl_eval.json with the held-out accuracy before and
after, metrics.jsonl, best.pt, last.pt) is `tinylm.posttrain.grpo_run.reinforce`'s; this module parses the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..distributed import run_in_world
from ..posttrain.grpo_recipes import RL_RECIPES
from ..posttrain.grpo_run import reinforce
from ..posttrain.tasks import TASKS
from ..runtime import configure_backend
from .console import HelpFormatter, examples, int_at_least
from .errors import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.rl", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.rl --task arithmetic --base pretrain --profile cpu --out runs/rl-arithmetic",
                        "python -m tinylm.rl --task arithmetic --profile cpu --out runs/rl-arithmetic --resume",
                        "python -m tinylm.rl --task countdown --profile cpu --max-seconds 300"))
    parser.add_argument("--task", choices=sorted(TASKS), default="arithmetic", help="the problems and their check")
    parser.add_argument("--base", default="pretrain", help="pretrain (a task-format model first), a run folder or a "
                        "checkpoint")
    parser.add_argument("--profile", choices=sorted(RL_RECIPES),
                        help="default: $TINYLM_PROFILE, else gpu with CUDA, else cpu")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/rl-<task>-<profile>)")
    fresh_or_not = parser.add_mutually_exclusive_group()  # both would delete the run's history, then resume it
    fresh_or_not.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    fresh_or_not.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    parser.add_argument("--max-steps", type=int_at_least(1), help="GRPO steps (default: the profile's)")
    parser.add_argument("--max-seconds", type=float, help="budget of GRPO time: sampling and updates, evaluations "
                        "excluded (default: the profile's)")
    parser.add_argument("--group-size", type=int, help="completions sampled per prompt, at least 2 "
                        "(default: the profile's)")
    parser.add_argument("--kl-coef", type=float, help="weight of the KL penalty to the starting model (default 0)")
    parser.add_argument("--reward", choices=("correct", "format"), help="correct: the task's check (default); "
                        "format: well-formed answers pay alone, to watch reward hacking")
    parser.add_argument("--seed", type=int, help="problem stream and sampling (default: the profile's)")
    parser.add_argument("--device", help="e.g. cpu, cuda, mps (default: the best available)")
    args = parser.parse_args(argv)
    if args.max_seconds is not None and not args.max_seconds > 0:
        parser.error("--max-seconds must be positive")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if note := configure_backend(args.device):
        print(note)
    return run_in_world(lambda world, held: reinforce(
        args.task, base=args.base, profile=args.profile, out=args.out, resume=args.resume, overwrite=args.overwrite,
        max_steps=args.max_steps, max_seconds=args.max_seconds, group_size=args.group_size, seed=args.seed,
        kl_coef=args.kl_coef, reward=args.reward, device=args.device, world=world))


def cli(argv=None) -> None:
    """`python -m tinylm.rl`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
