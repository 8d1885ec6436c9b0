"""Command line: chat fine-tuning (SFT) of a pretrained model, through the same Trainer as pretraining.

    python -m tinylm.finetune [--base pretrain|gpt2|RUN_DIR|CHECKPOINT|HF_FOLDER] [--data instruct|FILE]
        [--profile smoke|cpu|gpu] [--out DIR] [--resume] [--overwrite] [--max-steps N] [--max-seconds S]
        [--pretraining-share F] [--system-prompt TEXT] [--batch-size N] [--seed N] [--device ...] [--dtype ...]
        [--lora-rank R [--lora-alpha A] [--lora-targets LAYER ...]]

--base: `gpt2` is OpenAI's GPT-2 124M from Hugging Face (online; offline, a folder saved by transformers or a
tinylm checkpoint made from one with `python -m tinylm.interop import`); a run folder or checkpoint (e.g. the
course's runs/gpt2-124m-gpu); `pretrain` pretrains the profile's small base first, in OUT/base (see
tinylm.posttrain.chat_base for why). Default: gpt2 for the gpu profile, pretrain for cpu and smoke.
--data: `instruct` (tinylm.data.instruct: Alpaca-cleaned online, the 1,100-record set offline) or a JSON/JSONL file.
--lora-rank: train LoRA adapters of that rank (tinylm.model.lora) instead of every weight; best.pt is read like any
checkpoint (adapters merged on load) and OUT/adapters.pt holds the adapters alone.

What a run does and writes (OUT/chat_eval.json with the before/after measurements, metrics.jsonl, best.pt,
last.pt) is `tinylm.posttrain.sft_run.finetune`'s; this module parses the options and hands them over.
"""

from __future__ import annotations

import argparse

from ..distributed import run_in_world
from ..posttrain.sft_run import finetune
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT
from .console import CommandParser, HelpFormatter, begin, examples
from .errors import run_cli
from .run_options import add_lora_arguments, add_run_options, lora_options, train_options


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m tinylm.finetune", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.finetune --profile cpu",
                        "python -m tinylm.finetune --base gpt2 --data instruct --profile gpu --out runs/chat-gpt2",
                        "python -m tinylm.finetune --profile cpu --resume",
                        "python -m tinylm.finetune --profile cpu --lora-rank 8 --out runs/chat-lora-cpu"))
    parser.add_argument("--base", help="pretrain, gpt2, a run folder, a checkpoint or a transformers GPT-2 folder "
                        "(default: gpt2 for the gpu profile, pretrain for cpu and smoke)")
    parser.add_argument("--data", default="instruct", help="instruct, or a JSON/JSONL file of instruction/input/output "
                        "or messages records")
    add_run_options(parser, out="runs/chat-<profile>", batch="conversations")
    parser.add_argument("--pretraining-share", type=float, help="share of batches of pretraining text, "
                        "0 to 1 (default: the profile's)")
    parser.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT, help="system prompt of every conversation")
    add_lora_arguments(parser)
    args = parser.parse_args(argv)
    args.lora = lora_options(parser, args)
    if args.pretraining_share is not None and not 0 <= args.pretraining_share < 1:
        parser.error("--pretraining-share must be at least 0 and below 1 (the rest of the batches are chat)")
    return args


def main(argv=None) -> dict:
    args = begin(parse_args(argv))
    return run_in_world(lambda world, held: finetune(
        base=args.base, data=args.data, pretraining_share=args.pretraining_share, system_prompt=args.system_prompt,
        lora=args.lora, world=world, **train_options(args)))


def cli(argv=None) -> None:
    """`python -m tinylm.finetune`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
