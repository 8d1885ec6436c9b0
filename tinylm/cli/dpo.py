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

from ..distributed import run_in_world
from ..posttrain.dpo_run import dpo
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT
from .console import CommandParser, HelpFormatter, begin, examples
from .errors import run_cli
from .run_options import add_lora_arguments, add_run_options, lora_options, positive_float, train_options


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m tinylm.dpo", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.dpo --profile cpu --base runs/chat-cpu --out runs/dpo-cpu",
                        "python -m tinylm.dpo --profile cpu --base runs/chat-cpu --out runs/dpo-cpu-b05 --beta 0.5",
                        "python -m tinylm.dpo --profile cpu --out runs/dpo-cpu --resume",
                        "python -m tinylm.dpo --profile cpu --out runs/dpo-lora-cpu --lora-rank 8"))
    parser.add_argument("--base", type=Path, help="the chat model to tune: a run folder or checkpoint of "
                        "python -m tinylm.finetune (default: runs/chat-<profile>)")
    parser.add_argument("--data", default="preference", help="preference, or a JSON/JSONL file of "
                        "instruction/input/chosen/rejected records")
    parser.add_argument("--beta", type=positive_float, help="how far the model may move from the base: smaller "
                        "moves further (default: the profile's, 0.1)")
    add_run_options(parser, out="runs/dpo-<profile>", batch="preference pairs")
    parser.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT, help="system prompt of every conversation "
                        "(the one the base was fine-tuned with)")
    add_lora_arguments(parser)
    args = parser.parse_args(argv)
    args.lora = lora_options(parser, args)
    return args


def main(argv=None) -> dict:
    args = begin(parse_args(argv))
    return run_in_world(lambda world, held: dpo(
        base=args.base, data=args.data, beta=args.beta, system_prompt=args.system_prompt, lora=args.lora,
        world=world, **train_options(args)))


def cli(argv=None) -> None:
    """`python -m tinylm.dpo`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
