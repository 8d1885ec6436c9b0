"""The options every command that trains shares, declared once, and parsed into one value: where the run goes
(--profile, --out, --resume, --overwrite), its budgets and schedule (--max-steps, --max-seconds, --learning-rate,
--seed, and --batch-size where the command has a batch) and where it computes (--device, --dtype), as
`tinylm.train.options.RunOptions`; and LoRA's options for the commands that fine-tune (--lora-rank, --lora-alpha,
--lora-targets), as `tinylm.model.lora.LoRAOptions`."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from ..config import DTYPES
from ..model.lora import DEFAULT_TARGETS, LORA_TARGETS, LoRAOptions
from ..runtime import PROFILES
from ..train.options import MAY_CHANGE, RunOptions
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
    --batch-size) what a micro-batch holds. An option left out is the recipe's (resumed: the saved run's)."""
    parser.add_argument("--profile", choices=PROFILES, metavar="P", help="smoke, cpu or gpu (default: "
                        "$TINYLM_PROFILE, else gpu with CUDA, else cpu)")
    parser.add_argument("--out", type=Path, metavar="DIR", help=f"run folder (default: {out})")
    fresh_or_not = parser.add_mutually_exclusive_group()  # both would delete the run's history, then resume it
    may_change = ", ".join(f"--{name.replace('_', '-')}" for name in MAY_CHANGE)
    fresh_or_not.add_argument("--resume", action="store_true", help=f"continue --out's run; only {may_change} "
                              "may change")
    fresh_or_not.add_argument("--overwrite", action="store_true", help="replace --out's run once the new one has a "
                              "checkpoint")
    recipe = "(default: the recipe's)"
    parser.add_argument("--max-steps", type=int_at_least(1), metavar="N", help=f"{steps} {recipe}")
    parser.add_argument("--max-seconds", type=positive_float, metavar="S", help="training seconds: evaluations and "
                        f"checkpoints excluded {recipe}")
    parser.add_argument("--learning-rate", type=positive_float, metavar="LR", help=f"peak rate, floor scaled alike "
                        f"{recipe}")
    if batch is not None:
        parser.add_argument("--batch-size", type=int_at_least(1), metavar="N", help=f"{batch} per micro-batch and "
                            f"process {recipe}")
    parser.add_argument("--seed", type=int, metavar="N", help=f"weights, batches, sampling {recipe}")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument("--dtype", choices=DTYPES, metavar="DTYPE", help="auto, float32, bfloat16 or float16 "
                        "(default: recipe's)")


def run_options(args: argparse.Namespace) -> RunOptions:
    """The shared options as one value (None: the recipe's, or resumed, the saved run's)."""
    names = [f.name for f in dataclasses.fields(RunOptions) if hasattr(args, f.name)]
    return RunOptions(**{name: getattr(args, name) for name in names})


def add_lora_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora-rank", type=int, metavar="R", help="train LoRA adapters of rank R (default: none)")
    parser.add_argument("--lora-alpha", type=float, metavar="A", help="updates scaled by A/R (default: A = R)")
    parser.add_argument("--lora-targets", nargs="+", choices=LORA_TARGETS, default=list(DEFAULT_TARGETS),
                        metavar="LAYER", help=f"layers to adapt (default: {' '.join(DEFAULT_TARGETS)})")


def lora_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> LoRAOptions | None:
    """The parsed options (None without --lora-rank); a rank below 1 or --lora-alpha alone is a usage error."""
    if args.lora_rank is not None and args.lora_rank < 1:
        parser.error(f"--lora-rank must be at least 1 (got {args.lora_rank}); 4 to 16 is usual")
    if args.lora_rank is None and args.lora_alpha is not None:
        parser.error("--lora-alpha needs --lora-rank")
    if args.lora_alpha is not None and not (math.isfinite(args.lora_alpha) and args.lora_alpha > 0):
        parser.error(f"--lora-alpha must be a positive number (got {args.lora_alpha:g}); the rank is usual")
    return None if args.lora_rank is None else LoRAOptions(args.lora_rank, args.lora_alpha, tuple(args.lora_targets))
