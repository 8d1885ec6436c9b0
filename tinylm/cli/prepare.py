"""Command line: prepare a dataset's token files, or build the offline data mirror.

A dataset is downloaded (or copied from $TINYLM_DATA_MIRROR), tokenized into train.bin and val.bin with meta.json,
into $TINYLM_DATA_DIR (else data/)/<dataset>; one already prepared is kept. `--track NAME` prepares what `train NAME`
reads, by the same function (Track.prepare). `tokenizer --file PATH` trains the BPE `train text --tokenizer bpe:N`
would and writes its `tokenizers` JSON; `mirror --out DIR` builds the offline mirror (tinylm.prepare.mirror).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from ..data.corpora import (
    TINYSTORIES_SAMPLE,
    PreparedData,
    default_folder,
    prepare_shakespeare_char,
    prepare_tinystories,
    prepare_trimmed,
)
from ..data.fineweb import DEFAULT_CONFIG, default_fineweb_edu_folder, prepare_fineweb_edu, read_progress
from ..data.text import (
    build_tokenizer,
    describe_text_files,
    find_text_files,
    parse_tokenizer,
    read_documents,
    split_held_out,
    text_name,
)
from ..errors import InputError
from ..paths import atomic_write, check_output_folder, data_dir, shown
from ..prepare import Preparation
from ..prepare.mirror import MIRROR_FILES, build_mirror
from ..runtime import resolve_profile
from ..tokenizers import EOT
from ..train.recipes import TRACKS, get_track
from .console import begin, command_parser
from .errors import run_cli
from .options import add_options, options_from


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser("python -m tinylm.prepare", __doc__, (
        "python -m tinylm.prepare --track tinystories --profile cpu",
        "python -m tinylm.prepare shakespeare-char",
        "python -m tinylm.prepare tinystories --source sample",
        "python -m tinylm.prepare tokenizer --file data/shakespeare_char/input.txt",
        "python -m tinylm.prepare mirror --out ../shared/data"))
    add_options(parser, Preparation, {"tracks": sorted(TRACKS), "file_for": "tokenizer", "tokenizer_help": (
        "tokenizer", "bpe:N, N its size", "bpe:4096"), "written": "the dataset, mirror or tokenizer JSON",
        "out": "under $TINYLM_DATA_DIR"})
    args = parser.parse_args(argv)
    args.options = options_from(parser, args, Preparation)
    if problem := args.options.problem():
        parser.error(problem)
    return args


def _stamp(path: Path) -> tuple[int, int] | None:
    """Identifies one version of a file: meta.json is replaced atomically, never edited in place."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def main(argv=None) -> PreparedData | Path:
    """Prepare the dataset and print a summary; returns the PreparedData (fineweb-edu: the shard folder; mirror: the
    mirror's folder; tokenizer: the JSON file)."""
    args = begin(parse_args(argv)).options
    if args.track is not None:
        return _track(args.track, resolve_profile(args.profile))
    if args.dataset == "tokenizer":  # --out is a file
        return _tokenizer(args.file, args.tokenizer or "bpe:4096", args.out)
    if args.out is not None:
        check_output_folder(args.out)  # now, not after the download
    if args.dataset == "mirror":
        return build_mirror(args.out, MIRROR_FILES)
    if args.dataset == "fineweb-edu":
        return _fineweb_edu(args)
    folder = args.out or default_folder(args.dataset, args.source)
    before = _stamp(folder / "meta.json")
    if args.dataset == "shakespeare-char":
        data = prepare_shakespeare_char(folder)
    else:
        data = prepare_tinystories(folder, source=args.source)
    _summarize(args.dataset, data, already=before is not None and _stamp(folder / "meta.json") == before)
    if args.dataset == "tinystories" and data.meta["source"] == TINYSTORIES_SAMPLE.mirror_path and args.out is None:
        trimmed_folder = data.folder.with_name(f"{data.folder.name}_trimmed")
        before = _stamp(trimmed_folder / "meta.json")
        trimmed = prepare_trimmed(data, trimmed_folder)  # what the cpu and smoke profiles of the track train on
        _summarize("tinystories, trimmed vocabulary (the cpu and smoke profiles)", trimmed,
                   already=before is not None and _stamp(trimmed_folder / "meta.json") == before)
    return data


def _tokenizer(file: str, spec: str, out: Path | None) -> Path:
    """Train the BPE `spec` on the training split of `file` and write its JSON to `out`; say how well it packs the
    held-out text."""
    if parse_tokenizer(spec)[0] != "bpe":
        raise InputError(f"--tokenizer {spec}: the tokenizer command trains a BPE; give bpe:N (e.g. bpe:4096)")
    files = find_text_files(file)
    print(describe_text_files(file, files))
    train, held_out, how = split_held_out(read_documents(files, print))
    tokenizer = build_tokenizer(spec, train, held_out)
    out = out or data_dir() / "tokenizers" / f"{text_name(file)}-{spec.replace(':', '')}.json"
    check_output_folder(out.parent)
    with atomic_write(out) as f:
        f.write(tokenizer.to_dict()["json"].encode("utf-8"))
    text = EOT.join(held_out)
    ids = tokenizer.encode(text)
    print(f"tokenizer: a byte-level BPE of {tokenizer.vocab_size:,} tokens, trained on "
          f"{sum(len(d.encode('utf-8')) for d in train):,} bytes ({how} held out), written to {shown(out)}")
    print(f"  held-out text: {len(text.encode('utf-8')) / max(1, len(ids)):.2f} bytes per token; decoded back "
          f"{'exactly' if tokenizer.decode(ids) == text else 'NOT exactly'}")
    print(f"  load it: tokenizers.Tokenizer.from_file({str(out)!r})")
    return out


def _track(name: str, profile: str) -> PreparedData:
    """Prepare what `train NAME --profile PROFILE` reads, through the very call `train` makes."""
    before = _stamps()
    data = get_track(name).prepare(profile)
    shards = data.folder / "progress.json"  # the gpt2-124m track reads FineWeb-Edu shards
    record = shards if shards.exists() else data.folder / "meta.json"
    already = record in before and before[record] == _stamp(record)
    if record == shards:
        _summarize_shards(data.folder, data.meta, already)  # the track's meta is the shards' progress.json
    else:
        _summarize(f"{name} ({profile} profile)", data, already)
    print(f"next: python -m tinylm.train {name} --profile {profile}   # reads it from there")
    return data


def _stamps() -> dict[Path, tuple[int, int]]:
    """The stamp of every prepared folder's record under the data folder, taken before a track prepares its data."""
    root = data_dir()
    return {path: _stamp(path) for path in (*root.glob("*/meta.json"), *root.glob("*/progress.json"))}


def _summarize(name: str, data: PreparedData, already: bool) -> None:
    meta = data.meta
    print(f"{name}: {'already prepared (nothing to do)' if already else 'prepared'} in {shown(data.folder)}")
    print(f"  source:    {meta['source']}")
    print(f"  tokenizer: {meta['tokenizer']['kind']} ({data.tokenizer.vocab_size:,} tokens)")
    for split in ("train", "val"):
        stories = f" from {meta[f'{split}_stories']:,} stories" if f"{split}_stories" in meta else ""
        print(f"  {split + '.bin:':10} {meta[f'{split}_tokens']:,} tokens{stories}")
    if "tokens_per_s" in meta:
        when = " when it was prepared" if already else ""
        print(f"  tokenizer stage: {meta['tokens_per_s']:,} tokens/s ({meta['seconds']} s{when})")


def _fineweb_edu(args: Preparation) -> Path:
    config = args.config or DEFAULT_CONFIG
    folder = args.out or default_fineweb_edu_folder(args.source, config)
    before, previous = _stamp(folder / "progress.json"), read_progress(folder)
    folder = prepare_fineweb_edu(folder, config=config, shard_tokens=args.shard_tokens, source=args.source,
                                 workers=args.workers)
    progress = read_progress(folder)
    already = before is not None and _stamp(folder / "progress.json") == before
    settings = ("dataset", "config", "source", "tokenizer", "shard_tokens")
    resumed = (not already and previous is not None and previous["shards"]
               and all(previous.get(key) == progress[key] for key in settings))
    _summarize_shards(folder, progress, already, resumed_after=len(previous["shards"]) if resumed else 0)
    return folder


def _summarize_shards(folder: Path, progress: dict, already: bool, resumed_after: int = 0) -> None:
    print(f"fineweb-edu: {'already prepared (nothing to do)' if already else 'prepared'} in {shown(folder)}"
          + (f" (resumed after {resumed_after} finished shards)" if resumed_after else ""))
    where = "the offline mirror's 120-document sample" if progress["source"] == "sample" else "Hugging Face, streamed"
    print(f"  source:    {progress['dataset']} {progress['config']} ({where})")
    print(f"  tokenizer: {progress['tokenizer']['encoding']} BPE, an end-of-text token before each document")
    for split in ("val", "train"):
        shards = [shard for shard in progress["shards"] if shard["split"] == split]
        tokens = sum(shard["tokens"] for shard in shards)
        print(f"  {split + ':':6} {len(shards)} shard{'s' if len(shards) != 1 else ''}, {tokens:,} tokens")
    print(f"  total:  {progress['tokens']:,} tokens from {progress['documents']:,} documents, "
          f"{progress['shard_tokens']:,} tokens per shard")
    workers = f"{progress['workers']} worker{'s' if progress['workers'] != 1 else ''}"
    when = " when it was prepared" if already else ""
    print(f"  tokenizer stage: {progress['tokens_per_s']:,} tokens/s ({progress['seconds']} s, {workers}{when})")


cli = functools.partial(run_cli, main)  # what `python -m tinylm.prepare` runs
