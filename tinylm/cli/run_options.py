"""The options every command that trains shares, declared once: where the run goes (--profile, --out, --resume,
--overwrite), its budgets and schedule (--max-steps, --max-seconds, --learning-rate, --seed, and --batch-size where the
command has a batch), and where it computes (--device, --dtype); and LoRA's options, for the commands that fine-tune
(--lora-rank, --lora-alpha, --lora-targets, parsed into `tinylm.model.lora.LoRAOptions`). Every such command offers and
checks them alike, and hands `train_options(args)` to its library function."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..config import DTYPES
from ..model.lora import DEFAULT_TARGETS, LORA_TARGETS, LoRAOptions
from ..runtime import PROFILES
from .console import int_at_least


def positive_float(text: str) -> float:
    """An argparse `type`: a finite number above 0 (nan, inf and 0 are usage errors)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_run_options(parser: argparse.ArgumentParser, out: str, steps: str = "optimizer steps",
                    batch: str | None = None) -> None:
    """The shared options; `out` says the default run folder, `steps` what a step is, `batch` (None: no
    --batch-size) what a micro-batch holds."""
    parser.add_argument("--profile", choices=PROFILES, help="default: $TINYLM_PROFILE, else gpu with CUDA, else cpu")
    parser.add_argument("--out", type=Path, help=f"run folder (default: {out})")
    fresh_or_not = parser.add_mutually_exclusive_group()  # both would delete the run's history, then resume it
    fresh_or_not.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    fresh_or_not.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run (the "
                              "old run stays until the new one has saved a checkpoint)")
    parser.add_argument("--max-steps", type=int_at_least(1), help=f"{steps} (default: the profile's)")
    parser.add_argument("--max-seconds", type=positive_float, help="budget of training time in seconds: the steps' "
                        "own time, evaluations and checkpoints excluded (default: the profile's, none for most)")
    parser.add_argument("--learning-rate", type=positive_float, metavar="LR", help="the peak learning rate; the "
                        "schedule's floor scales with it (default: the recipe's, or the resumed run's)")
    if batch is not None:
        parser.add_argument("--batch-size", type=int_at_least(1), help=f"{batch} per micro-batch on each process "
                            "(default: the profile's)")
    parser.add_argument("--seed", type=int, help="initial weights, batches and sampling (default: the profile's)")
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument("--dtype", choices=DTYPES, help="autocast dtype (default: the recipe's; auto: by hardware)")


def train_options(args: argparse.Namespace) -> dict:
    """The shared options a library run function takes, by name (None: the recipe's)."""
    names = ("profile", "out", "resume", "overwrite", "max_steps", "max_seconds", "learning_rate", "batch_size",
             "seed", "device", "dtype")
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


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
    if args.lora_alpha is not None and not (math.isfinite(args.lora_alpha) and args.lora_alpha > 0):
        parser.error(f"--lora-alpha must be a positive number (got {args.lora_alpha:g}); the rank is usual")
    return None if args.lora_rank is None else LoRAOptions(args.lora_rank, args.lora_alpha, tuple(args.lora_targets))
