"""A command's flags, made from the settings values they fill (tinylm.settings.option): each field is one flag with
its help, so an option is declared once, in the library, beside its meaning. `--set FIELD=VALUE` (repeatable) goes
into RunOptions.set; LoRA's three flags make one tinylm.model.lora.LoRAOptions."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any

from ..model.lora import DEFAULT_TARGETS, LORA_TARGETS, LoRAOptions
from .console import int_at_least
from .flags import SHARED


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
        if f.name == "lora":  # three flags that make one LoRAOptions
            add_lora_arguments(parser)
            continue
        if meta["help"] is None:  # a flag other commands share, declared in tinylm/cli/flags.py
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
    parser.add_argument("--lora-rank", type=int_at_least(1, "4 to 16 is usual"), metavar="R",
                        help="train LoRA adapters of rank R (default: none)")
    parser.add_argument("--lora-alpha", type=positive_float, metavar="A", help="updates scaled by A/R (default: A = R)")
    parser.add_argument("--lora-targets", nargs="+", choices=LORA_TARGETS, default=list(DEFAULT_TARGETS),
                        metavar="L", help=f"layers to adapt (default: {' '.join(DEFAULT_TARGETS)})")


def lora_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> LoRAOptions | None:
    """The parsed options (None without --lora-rank); --lora-alpha alone is a usage error."""
    if args.lora_rank is None and args.lora_alpha is not None:
        parser.error("--lora-alpha needs --lora-rank")
    return None if args.lora_rank is None else LoRAOptions(args.lora_rank, args.lora_alpha, tuple(args.lora_targets))
