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
from pathlib import Path

from ..config import DTYPES
from ..distributed import run_in_world
from ..posttrain.sft import SFT_RECIPES
from ..posttrain.sft_run import finetune
from ..runtime import configure_backend
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT
from .console import HelpFormatter, examples
from .errors import run_cli
from .lora_options import add_lora_arguments, lora_options


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.finetune", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.finetune --profile cpu",
                        "python -m tinylm.finetune --base gpt2 --data instruct --profile gpu --out runs/chat-gpt2",
                        "python -m tinylm.finetune --profile cpu --resume",
                        "python -m tinylm.finetune --profile cpu --lora-rank 8 --out runs/chat-lora-cpu"))
    parser.add_argument("--base", help="pretrain, gpt2, a run folder, a checkpoint or a transformers GPT-2 folder "
                        "(default: gpt2 for the gpu profile, pretrain for cpu and smoke)")
    parser.add_argument("--data", default="instruct", help="instruct, or a JSON/JSONL file of instruction/input/output "
                        "or messages records")
    parser.add_argument("--profile", choices=sorted(SFT_RECIPES),
                        help="default: $TINYLM_PROFILE, else gpu with CUDA, else cpu")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/chat-<profile>)")
    fresh_or_not = parser.add_mutually_exclusive_group()  # both would delete the run's history, then resume it
    fresh_or_not.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    fresh_or_not.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (default: the profile's)")
    parser.add_argument("--max-seconds", type=float, help="budget of training time for fine-tuning "
                        "(default: none, the profile's steps)")
    parser.add_argument("--pretraining-share", type=float, help="share of batches of pretraining text, "
                        "0 to 1 (default: the profile's)")
    parser.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT, help="system prompt of every conversation")
    parser.add_argument("--batch-size", type=int, help="conversations per micro-batch on each process "
                        "(default: the profile's)")
    parser.add_argument("--seed", type=int, help="initial weights, batches and dropout (default: the profile's)")
    parser.add_argument("--device", help="e.g. cpu, cuda, mps (default: the best available)")
    parser.add_argument("--dtype", choices=DTYPES,
                        help="autocast dtype (default: by hardware)")
    add_lora_arguments(parser)
    args = parser.parse_args(argv)
    args.lora = lora_options(parser, args)
    if args.pretraining_share is not None and not 0 <= args.pretraining_share < 1:
        parser.error("--pretraining-share must be at least 0 and below 1 (the rest of the batches are chat)")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if note := configure_backend(args.device):
        print(note)
    return run_in_world(lambda world, held: finetune(
        args.profile, base=args.base, data=args.data, out=args.out, resume=args.resume, overwrite=args.overwrite,
        max_steps=args.max_steps, max_seconds=args.max_seconds, pretraining_share=args.pretraining_share,
        system_prompt=args.system_prompt, batch_size=args.batch_size, seed=args.seed, device=args.device,
        dtype=args.dtype, lora=args.lora, world=world))


def cli(argv=None) -> None:
    """`python -m tinylm.finetune`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
