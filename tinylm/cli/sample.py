"""Command line: generate text from a trained checkpoint, streamed as it comes.

Generation stops at the tokenizer's end-of-text token (--no-stop-at-eot runs on), at any --stop string, or after
--max-new-tokens; --temperature 0 is greedy decoding.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools

from ..generate.sampling import Sampling
from ..generate.stream import stream
from ..runtime import resolve_device, resolve_dtype
from ..train.checkpoint import CheckpointError, load_model
from .console import begin, command_parser, int_at_least, positive_int, warn_if_slow
from .errors import run_cli
from .flags import add_ckpt, add_device, add_dtype, add_max_new_tokens
from .options import add_options, options_from


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser("python -m tinylm.sample", __doc__, (
        'python -m tinylm.sample --ckpt runs/shakespeare-char-cpu --prompt "ROMEO:"',
        "python -m tinylm.sample --ckpt runs/tinystories-cpu --top-k 40 --num-samples 3",
        'python -m tinylm.sample --ckpt runs/tinystories-cpu --stop "\\n\\n" --seed 1'))
    add_ckpt(parser)
    parser.add_argument("--prompt", default="", metavar="TEXT", help="text to continue (default: start from nothing)")
    add_max_new_tokens(parser, 300)
    parser.add_argument("--min-new-tokens", type=int_at_least(0), default=0, metavar="N",
                        help="stop at end-of-text only after this many")
    parser.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop before this text "
                        "(repeatable; \\n and \\t stand for newline and tab; default: none)")
    parser.add_argument("--no-stop-at-eot", action="store_true", help="keep going past the end-of-text token")
    parser.add_argument("--num-samples", type=positive_int, default=1, metavar="N",
                        help="how many continuations of the prompt")
    add_sampling_options(parser, "sample")
    args = parser.parse_args(argv)
    args.sampling = options_from(parser, args, Sampling)  # a NaN --temperature is refused before a checkpoint loads
    return args


def add_sampling_options(parser: argparse.ArgumentParser, unit: str) -> None:
    """The sampler (tinylm.generate.sampling.Sampling's fields), cache and device options of every command that
    generates (sample, chat, serve); `unit`: what the seed's i counts ("sample", "reply")."""
    add_options(parser, Sampling, {"seed": f"{unit} i uses seed + i (default: fresh each run)"})
    parser.add_argument("--no-cache", action="store_true", help="recompute the whole context at every token (slow)")
    add_device(parser)
    add_dtype(parser, "float32")


def load_generation_model(args: argparse.Namespace):
    """(model, tokenizer) of --ckpt on --device in --dtype, for a command that turns ids into text; a --dtype that is
    slow on that device is said first (`warn_if_slow`)."""
    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.ckpt, device)
    if tokenizer is None:
        raise CheckpointError(f"{args.ckpt} carries no tokenizer, so its ids cannot be turned into text")
    dtype = resolve_dtype(device, args.dtype)
    warn_if_slow(device, dtype)
    return model.to(dtype), tokenizer


def main(argv=None) -> list[str]:
    args = begin(parse_args(argv))
    model, tokenizer = load_generation_model(args)
    stop = [s.replace("\\n", "\n").replace("\\t", "\t") for s in args.stop]
    texts = []
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        pieces = stream(model, tokenizer, args.prompt, args.max_new_tokens, stop=stop,
                        stop_tokens=() if args.no_stop_at_eot else None, min_new_tokens=args.min_new_tokens,
                        sampling=dataclasses.replace(args.sampling, seed=None if args.seed is None else args.seed + i),
                        use_cache=not args.no_cache)  # checks the arguments and the prompt before printing anything
        print(args.prompt, end="", flush=True)
        text = args.prompt
        for piece in pieces:
            print(piece, end="", flush=True)
            text += piece
        print(flush=True)
        texts.append(text)
    return texts


cli = functools.partial(run_cli, main)  # what `python -m tinylm.sample` runs
