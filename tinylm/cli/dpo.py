"""Command line: preference tuning (DPO) of a chat model, through the same Trainer as pretraining and SFT.

    python -m tinylm.dpo [--base RUN_DIR|CHECKPOINT] [--data preference|FILE] [--out DIR] [--beta B]
        [--profile smoke|cpu|gpu] [--resume] [--overwrite] [--max-steps N] [--max-seconds S] [--batch-size N]
        [--seed N] [--device ...] [--dtype ...] [--lora-rank R [--lora-alpha A] [--lora-targets LAYER ...]]

--base: a chat model, i.e. a run folder or checkpoint of `python -m tinylm.finetune` (default: runs/chat-<profile>,
finetune's default --out); it is also DPO's frozen reference.
--data: `preference` (the 1,100 instructions of the SFT set, each with a chosen and a rejected answer) or a
JSON/JSONL file of instruction/input/chosen/rejected records.
--lora-rank: train LoRA adapters of that rank (tinylm.model.lora) instead of every weight, as finetune does; best.pt
is read like any checkpoint (adapters merged on load) and OUT/adapters.pt holds the adapters alone.

What a run does and writes (OUT/dpo_eval.json with the before/after measurements, metrics.jsonl, best.pt,
last.pt) is `tinylm.posttrain.dpo_run.dpo`'s; this module parses the options and hands them over.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import DTYPES
from ..distributed import run_in_world
from ..posttrain.dpo import DPO_RECIPES
from ..posttrain.dpo_run import dpo
from ..runtime import configure_backend
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT
from .console import HelpFormatter, examples
from .errors import run_cli
from .lora_options import add_lora_arguments, lora_options


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.dpo", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.dpo --profile cpu --base runs/chat-cpu --out runs/dpo-cpu",
                        "python -m tinylm.dpo --profile cpu --base runs/chat-cpu --out runs/dpo-cpu-b05 --beta 0.5",
                        "python -m tinylm.dpo --profile cpu --out runs/dpo-cpu --resume",
                        "python -m tinylm.dpo --profile cpu --out runs/dpo-lora-cpu --lora-rank 8"))
    parser.add_argument("--base", type=Path, help="the chat model to tune: a run folder or checkpoint of "
                        "python -m tinylm.finetune (default: runs/chat-<profile>)")
    parser.add_argument("--data", default="preference", help="preference, or a JSON/JSONL file of "
                        "instruction/input/chosen/rejected records")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/dpo-<profile>)")
    parser.add_argument("--beta", type=float, help="how far the model may move from the base: smaller moves "
                        "further (default: the profile's, 0.1)")
    parser.add_argument("--profile", choices=sorted(DPO_RECIPES),
                        help="default: $TINYLM_PROFILE, else gpu with CUDA, else cpu")
    fresh_or_not = parser.add_mutually_exclusive_group()  # both would delete the run's history, then resume it
    fresh_or_not.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    fresh_or_not.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (default: the profile's)")
    parser.add_argument("--max-seconds", type=float, help="budget of training time (default: none, the profile's "
                        "steps)")
    parser.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT, help="system prompt of every conversation "
                        "(the one the base was fine-tuned with)")
    parser.add_argument("--batch-size", type=int, help="preference pairs per micro-batch on each process "
                        "(default: the profile's)")
    parser.add_argument("--seed", type=int, help="batch order (default: the profile's)")
    parser.add_argument("--device", help="e.g. cpu, cuda, mps (default: the best available)")
    parser.add_argument("--dtype", choices=DTYPES, help="autocast dtype (default: by hardware)")
    add_lora_arguments(parser)
    args = parser.parse_args(argv)
    if args.beta is not None and not args.beta > 0:
        parser.error(f"--beta must be positive, got {args.beta:g}: try 0.1")
    args.lora = lora_options(parser, args)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if note := configure_backend(args.device):
        print(note)
    return run_in_world(lambda world, held: dpo(
        args.profile, base=args.base, data=args.data, out=args.out, beta=args.beta, resume=args.resume,
        overwrite=args.overwrite, max_steps=args.max_steps, max_seconds=args.max_seconds, batch_size=args.batch_size,
        seed=args.seed, device=args.device, dtype=args.dtype, system_prompt=args.system_prompt, lora=args.lora,
        world=world))


def cli(argv=None) -> None:
    """`python -m tinylm.dpo`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
