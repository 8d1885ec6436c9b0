"""The options several command lines share, each declared here once, so that an option reads the same in every
--help; a parameter says what differs for a command (its default, what it writes or reads)."""

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


def add_out(parser: argparse.ArgumentParser, what: str, default: str | None = None, path_type: type = Path) -> None:
    """--out, where the command writes `what`; required unless `default` says where it writes without it.
    `path_type` str keeps the text as given (a trailing slash: a folder)."""
    parser.add_argument("--out", type=path_type, required=default is None, metavar="PATH",
                        help=f"where to write {what}" + _default(default))


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def add_batch_size(parser: argparse.ArgumentParser, default: int | None = None, default_text: str | None = None,
                   what: str = "sequences per forward pass") -> None:
    """--batch-size: `default`, or None with `default_text` saying what the command picks."""
    parser.add_argument("--batch-size", type=positive_int, default=default, metavar="N",
                        help=what + _default(default_text))


def add_profile(parser: argparse.ArgumentParser, default: str = "$TINYLM_PROFILE, else gpu with CUDA, else cpu"
                ) -> None:
    parser.add_argument("--profile", choices=PROFILES, metavar="P", help="smoke, cpu or gpu" + _default(default))


def add_track(parser: argparse.ArgumentParser, tracks: list[str], default: str | None = None) -> None:
    parser.add_argument("--track", choices=tracks, default=default, metavar="TRACK",
                        help="a track of python -m tinylm.train" + ("" if default else " (default: none)"))


def add_max_new_tokens(parser: argparse.ArgumentParser, default: int | None, default_text: str | None = None
                       ) -> None:
    """--max-new-tokens: `default`, or None with `default_text` saying what the command picks."""
    parser.add_argument("--max-new-tokens", type=positive_int, default=default, metavar="N",
                        help="new tokens at most" + _default(default_text))


def add_seed(parser: argparse.ArgumentParser, what: str) -> None:
    """--seed: `what` it seeds and its default ("sample i uses seed + i (default: fresh each run)")."""
    parser.add_argument("--seed", type=int, metavar="N", help=what)


def add_arch(parser: argparse.ArgumentParser, default_text: str) -> None:
    parser.add_argument("--arch", choices=tuple(ARCHITECTURES), metavar="ARCH",
                        help="the block family: " + ", ".join(ARCHITECTURES) + _default(default_text))


def add_text_file(parser: argparse.ArgumentParser, what: str) -> None:
    """--file: the text that `what` ("text", "tokenizer") reads."""
    parser.add_argument("--file", metavar="PATH", help=f"{what}: a UTF-8 file, folder or glob (default: none)")


def add_tokenizer_kind(parser: argparse.ArgumentParser, what: str, kinds: str, default_text: str) -> None:
    """--tokenizer: which tokenizer `what` uses or trains (`kinds`: "bpe:N", "char, gpt2, or bpe:N")."""
    parser.add_argument("--tokenizer", metavar="KIND", help=f"{what}: {kinds}" + _default(default_text))
