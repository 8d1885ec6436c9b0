"""Command line: measure a checkpoint: its loss on a text, or HellaSwag accuracy.

`loss` scores a UTF-8 text with the checkpoint's own tokenizer (tinylm.eval.loss.text_loss): nats per token, and
bits per byte, which compare models whose tokenizers differ. `hellaswag` scores HellaSwag's validation set
(tinylm.eval.hellaswag; under torchrun the examples are split over processes).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..data.text import read_text_file
from ..errors import MissingFile
from ..eval.loss import text_loss
from ..eval.uncertainty import wilson_interval
from ..runtime import resolve_device
from ..train.checkpoint import CheckpointError, find_checkpoint, load_model
from .console import add_subcommand, begin, command_parser, positive_int
from .errors import run_cli
from .flags import add_batch_size, add_ckpt, add_device, add_json


def run_loss(args: argparse.Namespace) -> dict[str, Any]:
    ckpt = Path(args.ckpt)
    ckpt_file = find_checkpoint(ckpt) if ckpt.is_dir() else ckpt
    text = read_text_file(args.text)  # before loading the model: a wrong path fails fast
    model, tokenizer, state = load_model(ckpt_file, resolve_device(args.device))
    if tokenizer is None:
        raise CheckpointError(f"{ckpt_file} carries no tokenizer, so the text cannot be turned into its ids")
    result = text_loss(model, tokenizer, text, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({"ckpt": str(ckpt_file), "text": str(args.text), **result}))
    else:
        kind = tokenizer.to_dict()["kind"]
        print(f"checkpoint:    {ckpt_file} (step {state.get('step', '?')}, {kind} tokenizer of "
              f"{tokenizer.vocab_size:,}, context {model.config.block_size})")
        print(f"text:          {args.text}")
        print(f"tokens:        {result['tokens']:,} predicted")
        print(f"bytes:         {result['bytes']:,}")
        print(f"loss:          {result['loss']:.4f} nats/token (perplexity {math.exp(result['loss']):.2f})")
        print(f"bits per byte: {result['bits_per_byte']:.4f}")
    return result


def run_hellaswag(args: argparse.Namespace) -> dict[str, Any]:
    from ..distributed import run_in_world

    return run_in_world(lambda world: _hellaswag(args, world))  # under torchrun each rank scores every W-th


def _hellaswag(args: argparse.Namespace, world) -> dict[str, Any]:
    from ..distributed import device_for
    from ..eval.hellaswag import ValFile, check_tokenizer, evaluate_hellaswag, locate_val, read_examples

    ckpt = Path(args.ckpt)
    ckpt_file = find_checkpoint(ckpt) if ckpt.is_dir() else ckpt
    device = resolve_device(device_for(world, args.device))
    model, tokenizer, state = load_model(ckpt_file, device)
    check_tokenizer(model, tokenizer)  # before the data is fetched
    if args.data is not None:
        if not args.data.is_file():
            raise MissingFile(f"no HellaSwag file at {args.data}; check the path")
        val = ValFile(args.data, False, "a file given with --data (its contents were not verified)")
    else:
        val = locate_val()
    examples = read_examples(val.path, args.limit)
    result = evaluate_hellaswag(model, tokenizer, examples, device)
    if not world.is_main:
        return result
    if args.json:
        print(json.dumps({"ckpt": str(ckpt_file), "data": str(val.path), "official": val.official,
                          "data_note": val.description, **result}))
    else:
        print(f"checkpoint: {ckpt_file} (step {state.get('step', '?')}, context {model.config.block_size})")
        print(f"data:       {val.path}")
        print(f"            {val.description}")
        print(f"examples:   {result['examples']:,}" + (f" (the first {args.limit:,})" if args.limit else ""))
        for key, count, rule in (("acc", "correct", "lowest summed loss"),
                                 ("acc_norm", "correct_norm", "lowest mean loss per token"),
                                 ("acc_norm_char", "correct_norm_char", "lowest loss per character of the ending")):
            low, high = wilson_interval(result[count], result["examples"])
            share = f"{result[count]:,}/{result['examples']:,}"
            print(f"{key + ':':<15} {result[key]:.4f} [{low:.3f}, {high:.3f}] ({share}; {rule})")
        print("                [95% interval]; chance is 0.25")
    return result


def parse_args(argv=None) -> argparse.Namespace:
    loss_examples = ("python -m tinylm.eval loss --ckpt runs/tinystories-cpu --text README.md",
                     "python -m tinylm.eval loss --ckpt runs/gpt2 --text README.md --json",
                     "python -m tinylm.eval loss --ckpt runs/gpt2 --text README.md --batch-size 4")
    hellaswag_examples = ("python -m tinylm.eval hellaswag --ckpt runs/tinystories-cpu --limit 500",
                          "python -m tinylm.eval hellaswag --ckpt runs/gpt2 --json",
                          "python -m tinylm.eval hellaswag --ckpt runs/gpt2-124m-gpu")
    parser = command_parser("python -m tinylm.eval", __doc__, (*loss_examples[:2], hellaswag_examples[0]))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    loss = add_subcommand(commands, "loss", "loss per token and bits per byte of a checkpoint on a text file",
                          "Loss per token (nats) and bits per byte of a checkpoint on a UTF-8 text file.",
                          loss_examples)
    hellaswag = add_subcommand(
        commands, "hellaswag", "HellaSwag accuracy of a checkpoint with GPT-2's tokens",
        "HellaSwag validation accuracy of a checkpoint with GPT-2's tokens: acc (lowest\n"
        "summed loss), acc_norm (lowest mean loss per token) and acc_norm_char (lowest\n"
        "loss per character), with 95% intervals; chance is 25%. Offline, the mirror's\n"
        "substitute file is scored, and the output says so.", hellaswag_examples)
    for command in (loss, hellaswag):
        add_ckpt(command)
    loss.add_argument("--text", required=True, type=Path, help="UTF-8 text file to score")
    add_batch_size(loss, 8)
    hellaswag.add_argument("--limit", type=positive_int, metavar="K",
                           help="score only the first K examples (default: all 10,042)")
    hellaswag.add_argument("--data", type=Path, metavar="FILE", help="a HellaSwag JSON-lines file to score (default: "
                           "the official validation file, or, offline, the mirror's substitute)")
    for command in (loss, hellaswag):
        add_device(command)
        add_json(command)
    loss.set_defaults(run=run_loss)
    hellaswag.set_defaults(run=run_hellaswag)
    return parser.parse_args(argv)


def main(argv=None):
    args = begin(parse_args(argv))
    return args.run(args)


def cli(argv=None) -> None:
    """`python -m tinylm.eval`: main(), its anticipated errors (a bad checkpoint, a missing or unreadable text,
    characters the tokenizer does not know, a text too short, data that cannot be fetched) one line each
    (tinylm.cli.errors)."""
    run_cli(main, argv)

