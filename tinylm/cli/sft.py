"""Command line: chat fine-tuning (SFT) of a pretrained model, through the same Trainer as pretraining.
An option left out takes the profile's recipe's value (with --resume: the saved run's).

--task: stories (the cpu and smoke profiles' default: the story base learns to write stories that meet instructions
a program checks, scored by the verifier's pass rate) or instruct (the gpu profile's: an instruction set). --base:
pretrain (the default, but instruct on gpu) pretrains the story base first in runs/stories-base-<profile>, or for
instruct the small base in OUT/base; gpt2 (instruct on gpu) is OpenAI's GPT-2 124M from Hugging Face, or offline a
transformers folder or a tinylm checkpoint made from one (`python -m tinylm.interop import`); or a run folder or
checkpoint. --data (instruct): instruct (Alpaca-cleaned online, the 1,100-record set offline) or a JSON/JSONL file.
What a run does and writes (OUT/sft_eval.json with the before and after measurements) is
`tinylm.posttrain.sft.run.sft`'s; this module parses the options into `RunOptions` and `SFTOptions` and hands them
over.
"""

from __future__ import annotations

import argparse

from ..distributed import run_in_world
from ..posttrain.sft.recipes import TASKS
from ..posttrain.sft.run import SFTOptions, sft
from .console import CommandParser, HelpFormatter, begin, examples
from .errors import run_cli
from .run_options import add_lora_arguments, add_run_options, lora_options, run_options


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m tinylm.sft", usage="%(prog)s [options]", description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.sft --task stories --profile cpu",
                        "python -m tinylm.sft --task stories --profile cpu --resume --max-steps 1200",
                        "python -m tinylm.sft --task instruct --base gpt2 --profile gpu --out runs/sft-gpt2",
                        "python -m tinylm.sft --task stories --profile cpu --lora-rank 8 --out runs/sft-lora-cpu"))
    parser.add_argument("--task", choices=TASKS, metavar="TASK",
                        help="stories (default), or instruct (gpu's default)")
    parser.add_argument("--base", help="pretrain, gpt2, a run folder, a checkpoint or a transformers folder "
                        "(default: the recipe's)")
    parser.add_argument("--data", help="instruct tasks: instruct (default) or a JSON/JSONL file")
    add_run_options(parser, out="runs/sft-<task>-<profile>", batch="conversations")
    parser.add_argument("--pretraining-share", type=float, metavar="F",
                        help="instruct: share of pretraining batches (default: recipe)")
    parser.add_argument("--system-prompt", metavar="TEXT", help="default: 'You are a helpful assistant.'")
    add_lora_arguments(parser)
    args = parser.parse_args(argv)
    args.lora = lora_options(parser, args)
    return args


def main(argv=None) -> dict:
    args = begin(parse_args(argv))
    options = SFTOptions(task=args.task, base=args.base, data=args.data, pretraining_share=args.pretraining_share,
                         system_prompt=args.system_prompt, lora=args.lora)
    return run_in_world(lambda world, held: sft(run_options(args), options, world=world))


def cli(argv=None) -> None:
    """`python -m tinylm.sft`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
