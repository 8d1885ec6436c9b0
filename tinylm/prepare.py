"""Command line: prepare a dataset's token files ahead of training.

    python -m tinylm.prepare shakespeare-char [--out DIR]
    python -m tinylm.prepare tinystories [--source hf|sample] [--out DIR]

Downloads the text (or copies it from $TINYLM_DATA_MIRROR), tokenizes it into train.bin and
val.bin, and writes meta.json last. A dataset already prepared in the folder is not prepared
again. The default folder is $TINYLM_DATA_DIR (else the repository's data/) / shakespeare_char,
tinystories or tinystories_sample. TinyStories' default source is the mirror's 2 MiB sample when
$TINYLM_DATA_MIRROR is set, else the full dataset from Hugging Face; GPT-2 BPE encoding runs in
tiktoken's thread pool, on every core.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .corpora import PreparedData, default_folder, prepare_shakespeare_char, prepare_tinystories
from .logging import format_error

DATASETS = ("shakespeare-char", "tinystories")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tinylm.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=DATASETS, help="what to prepare")
    parser.add_argument("--source", choices=["hf", "sample"],
                        help="tinystories only: hf (the full dataset) or sample (the offline mirror's 2 MiB); "
                             "default: sample when $TINYLM_DATA_MIRROR is set, else hf")
    parser.add_argument("--out", type=Path, help="folder for train.bin, val.bin and meta.json")
    args = parser.parse_args(argv)
    if args.source and args.dataset != "tinystories":
        parser.error("--source applies to tinystories only")
    return args


def _stamp(path: Path) -> tuple[int, int] | None:
    """Identifies one version of a file: meta.json is replaced atomically, never edited in place."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def main(argv=None) -> PreparedData:
    args = parse_args(argv)
    folder = args.out or default_folder(args.dataset, args.source)
    before = _stamp(folder / "meta.json")
    if args.dataset == "shakespeare-char":
        data = prepare_shakespeare_char(folder)
    else:
        data = prepare_tinystories(folder, source=args.source)
    already = before is not None and _stamp(folder / "meta.json") == before
    meta = data.meta
    print(f"{args.dataset}: {'already prepared (nothing to do)' if already else 'prepared'} in {data.folder}")
    print(f"  source:    {meta['source']}")
    print(f"  tokenizer: {meta['tokenizer']['kind']} ({data.tokenizer.vocab_size:,} tokens)")
    for split in ("train", "val"):
        stories = f" from {meta[f'{split}_stories']:,} stories" if f"{split}_stories" in meta else ""
        print(f"  {split + '.bin:':10} {meta[f'{split}_tokens']:,} tokens{stories}")
    if "tokens_per_s" in meta:
        when = " when it was prepared" if already else ""
        print(f"  tokenizer stage: {meta['tokens_per_s']:,} tokens/s ({meta['seconds']} s{when})")
    return data


def cli(argv=None) -> None:
    """`python -m tinylm.prepare`: main(), with a failed download, an unreachable Hugging Face or missing
    tiktoken files ending the program with a one-line message and exit status 1."""
    try:
        main(argv)
    except (ValueError, OSError, RuntimeError) as error:  # RuntimeError: DownloadError, Hugging Face, tiktoken
        sys.exit(format_error(error))


if __name__ == "__main__":  # the guard worker processes would need; tiktoken's threads need none
    cli()
