"""The flags of a command that trains, made from the frozen options values they fill (tinylm.train.options.option):
each field is one flag with its help, so an option is declared once, in the library, beside its meaning. `--set
FIELD=VALUE` (repeatable) goes into RunOptions.set; LoRA's three flags make one tinylm.model.lora.LoRAOptions."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any

from ..model.lora import DEFAULT_TARGETS, LORA_TARGETS, LoRAOptions
from .console import int_at_least
from .flags import (
    add_arch,
    add_batch_size,
    add_device,
    add_dtype,
    add_out,
    add_profile,
    add_text_file,
    add_tokenizer_kind,
)

# The fields whose flags other commands share, declared with their help in tinylm/cli/flags.py (LoRA's below).
SHARED = {"profile": lambda parser, context: add_profile(parser),
          "out": lambda parser, context: add_out(parser, "the run", default=context["out"]),
          "device": lambda parser, context: add_device(parser),
          "dtype": lambda parser, context: add_dtype(parser, None, "the recipe's"),
          "batch_size": lambda parser, context: add_batch_size(parser, default_text="the recipe's",
                                                               what=f"{context['batch']} per micro-batch"),
          "arch": lambda parser, context: add_arch(parser, "gpt2"),
          "lora": lambda parser, context: add_lora_arguments(parser),
          "file": lambda parser, context: add_text_file(parser, "text"),
          "tokenizer": lambda parser, context: add_tokenizer_kind(parser, "text", "char, gpt2, or bpe:N trained on it",
                                                                  "char")}



def positive_float(text: str) -> float:
    """An argparse `type`: a finite number above 0 (nan, inf and 0 are usage errors)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def field_value(text: str) -> tuple[str, str]:
    """An argparse `type`: FIELD=VALUE."""
    field, equals, value = text.partition("=")
    if not equals or not field.strip():
        raise argparse.ArgumentTypeError(f"takes FIELD=VALUE, got {text!r}")
    return field.strip(), value.strip()


def add_options(parser: argparse.ArgumentParser, kind: type, context: dict[str, str], skip: tuple[str, ...] = (),
                choices: dict[str, tuple[str, ...]] | None = None):
    """One flag per field of the options dataclass `kind` (--max-steps for max_steps), its help filled in from
    `context` ({out}, {steps}, ...) and `choices` for some. A field left out of the command line is None."""
    hints, groups = typing.get_type_hints(kind), {}
    for f in dataclasses.fields(kind):
        if f.name in skip:
            continue
        meta = dict(f.metadata)
        if meta["help"] is None:
            SHARED[f.name](parser, context)
            continue
        text = meta.pop("help").format(**context)
        flag = f"--{f.name.replace('_', '-')}"
        if f.name == "set":
            parser.add_argument(flag, action="append", type=field_value, help=text, **meta)
        elif f.default is False:  # a switch; switches of one `exclusive` group exclude each other
            where = groups.setdefault(meta["exclusive"], parser.add_mutually_exclusive_group()) \
                if "exclusive" in meta else parser
            where.add_argument(flag, action="store_true", help=text)
        else:
            number = next((t for t in (int, float) if t in typing.get_args(hints[f.name])), None)
            kind_of = {int: int_at_least(1) if f.name == "max_steps" else int, float: positive_float}.get(number)
            if f.name in (choices or {}):
                meta["choices"] = choices[f.name]
            parser.add_argument(flag, type=kind_of, help=text, **meta)


def options_from(parser: argparse.ArgumentParser, args: argparse.Namespace, kind: type) -> Any:
    """The options value of `kind` that these parsed arguments fill."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(kind) if hasattr(args, f.name)}
    if "set" in values:
        values["set"] = dict(values["set"]) if values["set"] else None
    if any(f.name == "lora" for f in dataclasses.fields(kind)) and hasattr(args, "lora_rank"):
        values["lora"] = lora_options(parser, args)
    return kind(**values)


def add_lora_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora-rank", type=int, metavar="R", help="train LoRA adapters of rank R (default: none)")
    parser.add_argument("--lora-alpha", type=float, metavar="A", help="updates scaled by A/R (default: A = R)")
    parser.add_argument("--lora-targets", nargs="+", choices=LORA_TARGETS, default=list(DEFAULT_TARGETS),
                        metavar="L", help=f"layers to adapt (default: {' '.join(DEFAULT_TARGETS)})")


def lora_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> LoRAOptions | None:
    """The parsed options (None without --lora-rank); a rank below 1 or --lora-alpha alone is a usage error."""
    if args.lora_rank is not None and args.lora_rank < 1:
        parser.error(f"--lora-rank must be at least 1 (got {args.lora_rank}); 4 to 16 is usual")
    if args.lora_rank is None and args.lora_alpha is not None:
        parser.error("--lora-alpha needs --lora-rank")
    if args.lora_alpha is not None and not (math.isfinite(args.lora_alpha) and args.lora_alpha > 0):
        parser.error(f"--lora-alpha must be a positive number (got {args.lora_alpha:g}); the rank is usual")
    return None if args.lora_rank is None else LoRAOptions(args.lora_rank, args.lora_alpha, tuple(args.lora_targets))
