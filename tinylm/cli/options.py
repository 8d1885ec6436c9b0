"""A command's flags, made from the settings values they fill (tinylm.settings.option): each field is one flag with
its help, so an option is declared once, in the library, beside its meaning. `--set FIELD=VALUE` (repeatable) goes
into RunOptions.set; LoRA's three flags make one tinylm.model.lora.LoRAOptions."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

from ..model.lora import DEFAULT_TARGETS, LORA_TARGETS, LoRAOptions
from .console import int_at_least
from .flags import (
    add_arch,
    add_batch_size,
    add_ckpt,
    add_device,
    add_dtype,
    add_max_new_tokens,
    add_out,
    add_profile,
    add_seed,
    add_text_file,
    add_tokenizer_kind,
    add_track,
)

# The fields whose flags other commands share, declared with their help in tinylm/cli/flags.py (LoRA's below).
SHARED = {"profile": lambda parser, context: add_profile(parser, context.get(
              "profile_default", "$TINYLM_PROFILE, else gpu with CUDA, else cpu")),
          "out": lambda parser, context: add_out(parser, context.get("written", "the run"), default=context.get("out"),
                                                 path_type=context.get("out_type", Path)),
          "ckpt": lambda parser, context: add_ckpt(parser, default=context.get("ckpt_default")),
          "track": lambda parser, context: add_track(parser, context["tracks"], default=context.get("track_default")),
          "device": lambda parser, context: add_device(parser),
          "dtype": lambda parser, context: add_dtype(parser, context.get("dtype_default"),
                                                     None if "dtype_default" in context else "the recipe's"),
          "batch_size": lambda parser, context: add_batch_size(
              parser, default_text=context.get("batch_default", "the recipe's"),
              what=context.get("batch_what", f"{context.get('batch')} per micro-batch")),
          "arch": lambda parser, context: add_arch(parser, context.get("arch_default", "gpt2")),
          "lora": lambda parser, context: add_lora_arguments(parser),
          "file": lambda parser, context: add_text_file(parser, context.get("file_for", "text")),
          "tokenizer": lambda parser, context: add_tokenizer_kind(parser, *context.get("tokenizer_help", (
              "text", "char, gpt2, or bpe:N trained on it", "char"))),
          "max_new_tokens": lambda parser, context: add_max_new_tokens(parser, None, context["max_new_tokens"]),
          "seed": lambda parser, context: add_seed(parser, context.get(
              "seed", "of weights, batches, sampling (default: the recipe's)"))}


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


def add_options(parser: argparse.ArgumentParser, kind: type, context: dict[str, Any], skip: tuple[str, ...] = (),
                choices: dict[str, tuple[str, ...]] | None = None, defaults: dict[str, Any] | None = None):
    """One flag per field of the settings value `kind` (--max-steps for max_steps), its help filled in from
    `context` ({out}, {steps}, ...) and `choices` for some. A field left out of the command line keeps its default;
    a number's type follows its annotation (an int at least its `minimum`, a float above 0; a list of them) unless
    it names one. A field marked `positional` is an argument without dashes; of the fields of one `one_of` group,
    exactly one is given. `context` also picks a shared flag's variant ({"written": ..., "dtype_default": ...}),
    `defaults` this command's own default of a field."""
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
        if (one_of := meta.pop("one_of", None)) and one_of not in groups:  # exactly one of these fields is given
            groups[one_of] = parser.add_mutually_exclusive_group(required=True)
        if f.name == "set":
            parser.add_argument(flag, action="append", type=field_value, help=text, **meta)
        elif meta.pop("positional", False):  # a word the command needs, not a flag (eval benchmark NAME)
            parser.add_argument(f.name, help=text, **meta)
        elif f.default is False:  # a switch; switches of one `exclusive` group exclude each other
            where = groups.setdefault(meta["exclusive"], parser.add_mutually_exclusive_group()) \
                if "exclusive" in meta else parser
            where.add_argument(flag, action="store_true", help=text)
        else:
            number = next((t for t in (int, float) if t in _types_in(hints[f.name])), None)
            minimum = meta.pop("minimum", None)
            meta.setdefault("type", {int: int if minimum is None else int_at_least(minimum),
                                     float: positive_float}.get(number))
            if f.name in (choices or {}):
                meta["choices"] = choices[f.name]
            (groups[one_of] if one_of else parser).add_argument(flag, default=(defaults or {}).get(f.name, f.default),
                                                                help=text, **meta)


def _types_in(hint: Any) -> tuple:
    """The annotation, its parts, and theirs: int | None and list[int] | None both hold int."""
    parts = typing.get_args(hint)
    return (hint, *parts, *(inner for part in parts for inner in typing.get_args(part)))


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
