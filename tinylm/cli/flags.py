"""The options several command lines share, each declared here once, so that an option reads the same in every
--help; what differs for a command (its default, what it writes or reads) is a parameter, or a key of the command's
`context` dict (tinylm/cli/options.py). `SHARED` adds the flag of a settings field declared without help."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ARCHITECTURES, DTYPES
from ..runtime import PROFILES
from .console import positive_int


def _default(text: str | None) -> str:
    return f" (default: {text})" if text else ""


def add_ckpt(parser: argparse.ArgumentParser, default: str | None = None, twice: bool = False) -> None:
    """--ckpt, required unless `default` says what the command uses without it; `twice`: given twice (a list)."""
    parser.add_argument("--ckpt", required=default is None, action="append" if twice else "store",
                        help="checkpoint or run folder (its best.pt, else last.pt"
                        + (f"; default: {default})" if default else "; give two)" if twice else ")"))


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best available)")


def add_dtype(parser: argparse.ArgumentParser, default: str | None, default_text: str | None = None) -> None:
    """--dtype: `default`, or None with `default_text` saying what the command picks."""
    parser.add_argument("--dtype", choices=DTYPES, default=default, metavar="DTYPE",
                        help="auto (CUDA: bf16 or fp16, else fp32), float32, bfloat16, float16"
                             + _default(default_text))


def add_out(parser: argparse.ArgumentParser, context: dict) -> None:
    """--out, where the command writes context's "written"; required unless "out" says where it writes without it.
    "out_type" str keeps the text as given (a trailing slash: a folder)."""
    parser.add_argument("--out", type=context.get("out_type", Path), required="out" not in context, metavar="PATH",
                        help=f"where to write {context.get('written', 'the run')}" + _default(context.get("out")))


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def add_batch_size(parser: argparse.ArgumentParser, default: int | None = None, default_text: str | None = None,
                   what: str = "sequences per forward pass") -> None:
    """--batch-size: `default`, or None with `default_text` saying what the command picks."""
    parser.add_argument("--batch-size", type=positive_int, default=default, metavar="N",
                        help=what + _default(default_text))


def add_profile(parser: argparse.ArgumentParser, context: dict) -> None:
    parser.add_argument("--profile", choices=PROFILES, metavar="P", help="smoke, cpu or gpu" + _default(
        context.get("profile_default", "$TINYLM_PROFILE, else gpu with CUDA, else cpu")))


def add_track(parser: argparse.ArgumentParser, context: dict) -> None:
    """--track: one of context's "tracks"; default "track_default", else none."""
    default = context.get("track_default")
    parser.add_argument("--track", choices=context["tracks"], default=default, metavar="TRACK",
                        help="a track of python -m tinylm.train" + ("" if default else " (default: none)"))


def add_max_new_tokens(parser: argparse.ArgumentParser, default: int | None, default_text: str | None = None
                       ) -> None:
    """--max-new-tokens: `default`, or None with `default_text` saying what the command picks."""
    parser.add_argument("--max-new-tokens", type=positive_int, default=default, metavar="N",
                        help="new tokens at most" + _default(default_text))


def add_seed(parser: argparse.ArgumentParser, context: dict) -> None:
    """--seed: context's "seed" says what it seeds and its default ("sample i uses seed + i (default: fresh each
    run)")."""
    parser.add_argument("--seed", type=int, metavar="N", help=context.get(
        "seed", "of weights, batches, sampling (default: the recipe's)"))


def add_arch(parser: argparse.ArgumentParser, context: dict) -> None:
    parser.add_argument("--arch", choices=tuple(ARCHITECTURES), metavar="ARCH", help="the block family: "
                        + ", ".join(ARCHITECTURES) + _default(context.get("arch_default", "gpt2")))


def add_file(parser: argparse.ArgumentParser, context: dict) -> None:
    """--file: the text that context's "file_for" ("text", "tokenizer") reads."""
    parser.add_argument("--file", metavar="PATH",
                        help=f"{context.get('file_for', 'text')}: a UTF-8 file, folder or glob (default: none)")


def add_tokenizer(parser: argparse.ArgumentParser, context: dict) -> None:
    """--tokenizer: which tokenizer the command uses or trains; context's "tokenizer_help": (what uses it, the kinds,
    the default)."""
    what, kinds, default_text = context.get("tokenizer_help", ("text", "char, gpt2, or bpe:N trained on it", "char"))
    parser.add_argument("--tokenizer", metavar="KIND", help=f"{what}: {kinds}" + _default(default_text))


SHARED = {"profile": add_profile, "out": add_out, "track": add_track, "arch": add_arch, "file": add_file,
          "tokenizer": add_tokenizer, "seed": add_seed,
          "ckpt": lambda parser, context: add_ckpt(parser, default=context.get("ckpt_default")),
          "device": lambda parser, context: add_device(parser),
          "dtype": lambda parser, context: add_dtype(parser, context.get("dtype_default"),
                                                     None if "dtype_default" in context else "the recipe's"),
          "batch_size": lambda parser, context: add_batch_size(
              parser, default_text=context.get("batch_default", "the recipe's"),
              what=context.get("batch_what", f"{context.get('batch')} per micro-batch")),
          "max_new_tokens": lambda parser, context: add_max_new_tokens(parser, None, context["max_new_tokens"])}
