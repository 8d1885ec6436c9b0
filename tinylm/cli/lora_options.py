"""The LoRA options of a command that fine-tunes (--lora-rank, --lora-alpha, --lora-targets), parsed into
`tinylm.model.lora.LoRAOptions`: one definition, so that every such command offers and checks them alike."""

from __future__ import annotations

import argparse

from ..model.lora import DEFAULT_TARGETS, LORA_TARGETS, LoRAOptions


def add_lora_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora-rank", type=int, help="train LoRA adapters of this rank instead of every weight "
                        "(default: none, every weight trains)")
    parser.add_argument("--lora-alpha", type=float, help="LoRA scale numerator: updates are scaled by alpha/rank "
                        "(default: the rank, a scale of 1)")
    parser.add_argument("--lora-targets", nargs="+", choices=LORA_TARGETS, default=list(DEFAULT_TARGETS),
                        metavar="LAYER", help=f"layers to adapt, from {', '.join(LORA_TARGETS)} "
                        f"(default: {' '.join(DEFAULT_TARGETS)})")


def lora_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> LoRAOptions | None:
    """The parsed options (None without --lora-rank); a rank below 1 or --lora-alpha alone is a usage error."""
    if args.lora_rank is not None and args.lora_rank < 1:
        parser.error(f"--lora-rank must be at least 1 (got {args.lora_rank}); 4 to 16 is usual")
    if args.lora_rank is None and args.lora_alpha is not None:
        parser.error("--lora-alpha needs --lora-rank")
    return None if args.lora_rank is None else LoRAOptions(args.lora_rank, args.lora_alpha, tuple(args.lora_targets))
