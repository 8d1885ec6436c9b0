"""The course's datasets: where each comes from and how it becomes token files.

Every `prepare_*` function is idempotent: it writes `train.bin`, `val.bin` and finally `meta.json`, each atomically,
and returns at once when `meta.json` already describes the same source and tokenizer, so its presence means the token
files are complete. TinyStories comes from Hugging Face `datasets`, or offline as the mirror's 2 MiB sample of its
train split, whose last stories are held out.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm

from ..download import DownloadError, RemoteFile, fetch, mirror_dir
from ..errors import InputError
from ..paths import data_dir
from ..tokenizers import EOT
from ..tokenizers.char import CharTokenizer
from ..tokenizers.gpt2 import BPETokenizer, TrimmedBPETokenizer
from ..tokenizers.saved import tokenizer_from_dict
from .tokens import DataError, TokenFileWriter, batched, read_meta, read_tokens, write_meta, write_tokens

TINY_SHAKESPEARE = RemoteFile(
    url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    mirror_path="tinyshakespeare/input.txt",
)

# The first 2 MiB of TinyStories-train.txt (V1), as published in a public repository.
TINYSTORIES_SAMPLE = RemoteFile(
    url="https://raw.githubusercontent.com/gusjengis/toy-RNN/40f1854472f2e06a5a6e68703750bfbe016b4c50/data/tinystories_sample.txt",
    sha256="5352b299dcb1a32898b2d779b145b5a05f3e1265953fd21c264c9f9f9c9ae33d",
    mirror_path="tinystories/TinyStories-train_first2MiB.txt",
)
TINYSTORIES_HF = "roneneldan/TinyStories"


@dataclass(frozen=True)
class PreparedData:
    folder: Path
    train: np.ndarray
    val: np.ndarray
    tokenizer: object
    meta: dict


def load_prepared(folder: Path, meta: dict, prepare_command: str) -> PreparedData:
    """The prepared splits, each file's size checked against the token count meta.json records for it."""
    remedy = f"delete {folder} and prepare it again: {prepare_command}"
    train, val = (read_tokens(folder / f"{split}.bin", meta.get(f"{split}_tokens"), str(folder / "meta.json"), remedy)
                  for split in ("train", "val"))
    try:
        tokenizer = tokenizer_from_dict(meta.get("tokenizer"))
    except ValueError as error:
        raise DataError(f"{folder / 'meta.json'}: {error}; {remedy}") from None
    return PreparedData(folder, train, val, tokenizer, meta)


def default_folder(dataset: str, source: str | None = None) -> Path:
    """Where `prepare_*` writes a dataset unless told otherwise: a folder of $TINYLM_DATA_DIR (or data/).

    dataset "shakespeare-char" -> shakespeare_char/; "tinystories" -> tinystories/ (source "hf") or
    tinystories_sample/ (source "sample"; see `dataset_source` for the default).
    """
    if dataset == "shakespeare-char":
        return data_dir() / "shakespeare_char"
    if dataset == "tinystories":
        return data_dir() / ("tinystories" if dataset_source(source, "TinyStories") == "hf" else "tinystories_sample")
    raise InputError(f"unknown dataset {dataset!r}: use 'shakespeare-char' or 'tinystories'")


def dataset_source(source: str | None, dataset: str) -> str:
    """Where `dataset` (TinyStories, FineWeb-Edu) comes from: the argument, else "sample" (the offline mirror's) when
    $TINYLM_DATA_MIRROR is set, else "hf" (Hugging Face)."""
    source = source or ("sample" if mirror_dir() is not None else "hf")
    if source not in ("hf", "sample"):
        raise InputError(f"unknown {dataset} source {source!r}: use 'hf' (Hugging Face) or 'sample' (offline mirror)")
    return source


def prepare_shakespeare_char(folder: Path | None = None, val_fraction: float = 0.1) -> PreparedData:
    """Download tinyshakespeare, map each character to an id, and split 90/10 into train.bin/val.bin."""
    folder = Path(folder) if folder is not None else default_folder("shakespeare-char")
    meta = read_meta(folder)
    if meta is None or meta.get("source_sha256") != TINY_SHAKESPEARE.sha256 or meta.get("val_fraction") != val_fraction:
        text = fetch(TINY_SHAKESPEARE, folder / "input.txt").read_text(encoding="utf-8")
        tokenizer = CharTokenizer.from_text(text)
        ids = np.array(tokenizer.encode(text))
        split = int(len(ids) * (1 - val_fraction))
        write_tokens(folder / "train.bin", ids[:split])
        write_tokens(folder / "val.bin", ids[split:])
        meta = {"source": TINY_SHAKESPEARE.url, "source_sha256": TINY_SHAKESPEARE.sha256, "val_fraction": val_fraction,
                "tokenizer": tokenizer.to_dict(), "train_tokens": split, "val_tokens": len(ids) - split}
        write_meta(folder, meta)
    return load_prepared(folder, meta, f"python -m tinylm.prepare shakespeare-char --out {folder}")


def split_stories(text: str) -> list[str]:
    """Stories of a TinyStories .txt file: separated by <|endoftext|> lines; a cut-off last story is dropped."""
    pieces = text.split(EOT)
    return [story.strip() for story in pieces[:-1] if story.strip()]


STORIES_PER_CHUNK = 2048  # stories encoded per call of tiktoken's thread pool


def tokenize_stories(stories: Iterable[str], tokenizer: BPETokenizer, out: TokenFileWriter, total: int | None = None,
                     threads: int | None = None, desc: str = "tokenizing") -> None:
    """Encode stories in parallel chunks, each story followed by one end-of-text token, into `out`. The chunks run
    in tiktoken's thread pool: its Rust core releases the GIL, so threads use every core without worker processes'
    start-method pitfalls."""
    threads = threads or os.cpu_count() or 1
    with tqdm(total=total, unit="story", desc=desc) as bar:
        for chunk in batched(stories, STORIES_PER_CHUNK):
            encoded = tokenizer.encoding.encode_ordinary_batch(chunk, num_threads=threads)
            out.append(np.fromiter((i for ids in encoded for i in (*ids, tokenizer.eot_token)), dtype=np.int64))
            bar.update(len(chunk))
            bar.set_postfix(tokens=f"{out.count:,}")


def prepare_tinystories(folder: Path | None = None, source: str | None = None, val_fraction: float = 0.05,
                        max_train_stories: int | None = None) -> PreparedData:
    """TinyStories as GPT-2 tokens. source "hf" (the full dataset) or "sample" (the mirror's 2 MiB);
    default: "sample" when $TINYLM_DATA_MIRROR is set, else "hf". val_fraction applies to the sample only.

    max_train_stories keeps only the first stories of the training split (Hugging Face streams just those, so
    download and tokenization stay bounded), in a folder of its own (default: the dataset's folder name +
    "_first<N>"); the validation split is kept whole, so scores stay comparable with the full run's.
    """
    if max_train_stories is not None and max_train_stories < 1:
        raise InputError(f"max_train_stories must be positive or None, got {max_train_stories}")
    source = dataset_source(source, "TinyStories")
    folder = Path(folder) if folder is not None else _stories_folder(source, max_train_stories)
    tokenizer = BPETokenizer("gpt2")
    # A folder whose meta.json has no max_train_stories (None) holds every story.
    wanted = {"source": TINYSTORIES_HF if source == "hf" else TINYSTORIES_SAMPLE.mirror_path,
              "tokenizer": tokenizer.to_dict(), "max_train_stories": max_train_stories}
    command = f"python -m tinylm.prepare tinystories --source {source} --out {folder}"
    meta = read_meta(folder)
    if meta is not None and all(meta.get(k) == v for k, v in wanted.items()):
        return load_prepared(folder, meta, command)

    splits = _tinystories_splits(folder, source, val_fraction, max_train_stories)
    start = time.perf_counter()  # the tokenizer stage only: downloading and loading the text are not timed
    counts = {}
    for name, stories in splits.items():
        with TokenFileWriter(folder / f"{name}.bin") as out:
            tokenize_stories(stories, tokenizer, out, total=len(stories), desc=f"tokenizing {name}")
        counts[f"{name}_tokens"], counts[f"{name}_stories"] = out.count, len(stories)
    seconds = time.perf_counter() - start
    meta = {**wanted, **counts, "seconds": round(seconds, 2),
            "tokens_per_s": round((counts["train_tokens"] + counts["val_tokens"]) / seconds)}
    write_meta(folder, meta)
    return load_prepared(folder, meta, command)


# A blank line ends each story in the character files: stories hold single newlines between paragraphs and almost
# never two, and one more character per story than the text has costs the model almost nothing to predict.
STORY_END = "\n\n"


def prepare_tinystories_chars(folder: Path | None = None, source: str | None = None, val_fraction: float = 0.05,
                              max_train_stories: int | None = None) -> PreparedData:
    """TinyStories as characters: the stories and held-out stories of `prepare_tinystories` with the same arguments,
    each followed by STORY_END, one id per distinct character (CharTokenizer). The character set is taken from both
    splits, as notebook 1 takes Shakespeare's from the whole text: no held-out story then meets an unknown
    character, and which characters exist tells the model nothing it could learn from. Written once to `folder`
    (default: the GPT-2 folder's name + "_chars").

    Notebook 13 sweeps model sizes on it: about four times as many tokens as GPT-2's BPE makes of the same text, and
    a vocabulary of under a hundred, so the embedding is a negligible share of even a tiny model."""
    source = dataset_source(source, "TinyStories")
    folder = Path(folder) if folder is not None else _stories_folder(source, max_train_stories, "_chars")
    wanted = {"source": TINYSTORIES_HF if source == "hf" else TINYSTORIES_SAMPLE.mirror_path,
              "val_fraction": val_fraction, "max_train_stories": max_train_stories, "story_end": STORY_END}
    command = "tinylm.data.corpora.prepare_tinystories_chars() (notebook 13)"
    meta = read_meta(folder)
    if meta is not None and all(meta.get(k) == v for k, v in wanted.items()):
        return load_prepared(folder, meta, command)
    splits = {name: [story.strip() + STORY_END for story in stories]
              for name, stories in _tinystories_splits(folder, source, val_fraction, max_train_stories).items()}
    characters = set()
    for stories in splits.values():
        for story in stories:
            characters.update(story)
    tokenizer = CharTokenizer(sorted(characters))
    counts = {}
    for name, stories in splits.items():
        with TokenFileWriter(folder / f"{name}.bin") as out:
            for chunk in batched(stories, 2048):
                out.append(np.array(tokenizer.encode("".join(chunk)), dtype=np.int64))
        counts[f"{name}_tokens"], counts[f"{name}_stories"] = out.count, len(stories)
    meta = {**wanted, "tokenizer": tokenizer.to_dict(), **counts}
    write_meta(folder, meta)
    return load_prepared(folder, meta, command)


def _stories_folder(source: str, max_train_stories: int | None, kind: str = "") -> Path:
    """The default folder of a TinyStories format: the dataset's folder name, then `kind` ("_chars"; GPT-2's ids
    none), then "_first<N>" for a run limited to max_train_stories."""
    folder = default_folder("tinystories", source)
    first = f"_first{max_train_stories}" if max_train_stories is not None else ""
    return folder.with_name(f"{folder.name}{kind}{first}")


def _tinystories_splits(folder: Path, source: str, val_fraction: float,
                        max_train_stories: int | None) -> dict[str, Iterable[str]]:
    """The stories of each split: the sample's last `val_fraction` held out (its text fetched into `folder`), or
    Hugging Face's train and validation splits. Every TinyStories format (GPT-2 ids, characters) splits here."""
    if source == "hf":
        return _load_hf_tinystories(max_train_stories)
    stories = split_stories(fetch(TINYSTORIES_SAMPLE, folder / "sample.txt").read_text(encoding="utf-8"))
    n_val = max(1, int(len(stories) * val_fraction))
    return {"train": stories[:-n_val][:max_train_stories], "val": stories[-n_val:]}


def _load_hf_tinystories(max_train_stories: int | None = None) -> dict[str, Iterable[str]]:
    import datasets

    try:
        if max_train_stories is None:
            dataset = datasets.load_dataset(TINYSTORIES_HF)
            return {"train": dataset["train"]["text"], "val": dataset["validation"]["text"]}
        # Streamed: only the row groups that hold the first stories are downloaded, not the whole 1 GB.
        streams = {split: datasets.load_dataset(TINYSTORIES_HF, split=split, streaming=True)
                   for split in ("train", "validation")}
        return {"train": [row["text"] for row in streams["train"].take(max_train_stories)],
                "val": [row["text"] for row in streams["validation"]]}
    except Exception as error:  # offline: ConnectionError, HF's OfflineModeIsEnabled, ...
        raise DownloadError(
            f"could not load {TINYSTORIES_HF} from Hugging Face ({error}). Offline, set TINYLM_DATA_MIRROR to the "
            "course's data mirror to train on its TinyStories sample (see README, 'Offline mirror')."
        ) from error


def prepare_trimmed(data: PreparedData, folder: Path | None = None) -> PreparedData:
    """`data` (GPT-2 tokens) with the vocabulary trimmed to the tokens its training split uses, written once to
    `folder` (default: the data's folder name + "_trimmed") and loaded from there while `data` is unchanged."""
    folder = Path(folder) if folder is not None else data.folder.with_name(f"{data.folder.name}_trimmed")
    base = {key: data.meta.get(key) for key in ("source", "tokenizer", "train_tokens", "val_tokens")}
    meta = read_meta(folder)
    if meta is None or meta.get("base") != base:
        tokenizer = TrimmedBPETokenizer.from_ids(data.train)
        write_tokens(folder / "train.bin", tokenizer.compact(data.train))
        write_tokens(folder / "val.bin", tokenizer.compact(data.val))
        meta = {"base": base, "source": data.meta.get("source"), "tokenizer": tokenizer.to_dict(),
                "train_tokens": len(data.train), "val_tokens": len(data.val)}
        write_meta(folder, meta)
    # the cpu and smoke profiles both read it
    return load_prepared(folder, meta, "python -m tinylm.prepare --track tinystories --profile cpu")
