"""FineWeb-Edu as GPT-2 token shards, and the sharded, DDP-aware, resumable loader that trains on them.

`prepare_fineweb_edu` (`python -m tinylm.prepare fineweb-edu`) writes uint16 shards, the first for validation and
the rest for training, and resumes an interrupted run where it stopped. Source "hf" streams
`HuggingFaceFW/fineweb-edu`; "sample" is the offline mirror's 120 documents of it in shards of 20,000 tokens, so that
sharding, shuffling and resuming are all exercised offline. `ShardedWindowLoader` trains on the shards.
"""

from __future__ import annotations

import functools
import itertools
import json
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..download import MIRROR_ENV, DownloadError, RemoteFile, fetch, mirror_dir
from ..errors import InputError, MissingFile
from ..paths import data_dir, write_json
from ..runtime import usable_cores
from ..tokenizers.gpt2 import BPETokenizer
from .corpora import dataset_source
from .tokens import (
    TOKEN_DTYPE,
    DataError,
    batched,
    check_token_file,
    check_token_ids,
    gather_windows,
    read_tokens,
    to_device,
    write_tokens,
)

FINEWEB_EDU_HF = "HuggingFaceFW/fineweb-edu"
DEFAULT_CONFIG = "sample-10BT"

# 120 documents of FineWeb-Edu sample-10BT, DERIVED (the `text` column of a public CSV re-saved as
# JSONL; see the mirror's MANIFEST.md). No public URL serves this exact file: only the offline mirror
# holds it. The URL names where the documents come from, the dataset's Hugging Face page.
FINEWEB_EDU_SAMPLE = RemoteFile(
    url="https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu",
    sha256="e5c3f035b93d5b5a432885d82d54cf6b154ab7cd64625851fcde20b32c1a5824",
    mirror_path="fineweb_edu/fineweb_edu_120docs.jsonl",
)

HF_SHARD_TOKENS = 100_000_000  # llm.c's and build-nanogpt's shard size: 200 MB per shard
SAMPLE_SHARD_TOKENS = 20_000  # the 120-doc sample (73,056 tokens) -> 4 shards: val + 3 train
DOCS_PER_BATCH = 16  # documents per task sent to a worker process
PROGRESS_FILE = "progress.json"
SHARD_PREFIX = "fineweb_edu"


# -- preparation ------------------------------------------------------------------------------------
def default_fineweb_edu_folder(source: str | None = None, config: str = DEFAULT_CONFIG,
                               max_documents: int | None = None) -> Path:
    """$TINYLM_DATA_DIR (or data/) / fineweb_edu (hf, sample-10BT), fineweb_edu_<config> (hf, other configs),
    with _first<N> for a run limited to max_documents, or fineweb_edu_sample (the mirror's 120 documents)."""
    if dataset_source(source, "FineWeb-Edu") == "sample":
        return data_dir() / "fineweb_edu_sample"
    name = "fineweb_edu" if config == DEFAULT_CONFIG else f"fineweb_edu_{config}"
    return data_dir() / (name if max_documents is None else f"{name}_first{max_documents}")


def shard_name(index: int) -> str:
    """fineweb_edu_val_000000.bin for the first shard, fineweb_edu_train_{index:06d}.bin for the others."""
    return f"{SHARD_PREFIX}_{'val' if index == 0 else 'train'}_{index:06d}.bin"


def read_progress(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / PROGRESS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _write_shard(path: Path, tokens: np.ndarray) -> None:
    """One shard, atomically (a module-level function so tests can interrupt a run here)."""
    write_tokens(path, tokens)


class EncodedBatch(NamedTuple):
    tokens: np.ndarray  # uint16: for each document, eot then its tokens
    lengths: np.ndarray  # int64: tokens per document, its eot included
    text_bytes: int  # UTF-8 bytes of the batch's text


_WORKER_TOKENIZER: BPETokenizer | None = None  # one per process, made on first use


def _encode_batch(texts: list[str]) -> EncodedBatch:
    """The worker: GPT-2 tokens of a batch of documents, an end-of-text token before each. It lives at module
    level so that every start method can pickle it."""
    global _WORKER_TOKENIZER
    if _WORKER_TOKENIZER is None:
        _WORKER_TOKENIZER = BPETokenizer("gpt2")
    encoding, eot = _WORKER_TOKENIZER.encoding, _WORKER_TOKENIZER.eot_token
    flat: list[int] = []
    lengths = np.empty(len(texts), dtype=np.int64)
    text_bytes = 0
    for i, text in enumerate(texts):
        ids = encoding.encode_ordinary(text)
        flat.append(eot)
        flat.extend(ids)
        lengths[i] = len(ids) + 1
        text_bytes += len(text.encode("utf-8"))
    return EncodedBatch(np.array(flat, dtype=TOKEN_DTYPE), lengths, text_bytes)  # GPT-2 ids < 50,257 fit uint16


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the main process, which stops the pool: one message, not one traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _bounded(items: Iterable, slots: threading.Semaphore, stop: threading.Event) -> Iterator:
    """Yield items only while a slot is free: Pool.imap's feeder thread would otherwise read the whole
    stream ahead into memory. Returns soon after `stop` is set, so the pool can shut down."""
    for item in items:
        while not slots.acquire(timeout=0.1):
            if stop.is_set():
                return
        if stop.is_set():
            return
        yield item


def encode_documents(texts: Iterable[str], workers: int = 1, docs_per_batch: int = DOCS_PER_BATCH,
                     context=None) -> Iterator[EncodedBatch]:
    """EncodedBatches of `texts`, in order. workers > 1 tokenizes in a process pool from `context`
    (a multiprocessing context, e.g. get_context("spawn"); default: the platform's start method);
    workers = 1 tokenizes in this process. The output does not depend on workers or docs_per_batch."""
    batches = batched(texts, docs_per_batch)
    if workers <= 1:
        yield from map(_encode_batch, batches)
        return
    context = context or multiprocessing.get_context()
    slots, stop = threading.Semaphore(4 * workers), threading.Event()
    with context.Pool(workers, initializer=_ignore_sigint) as pool:
        try:
            for batch in pool.imap(_encode_batch, _bounded(batches, slots, stop)):
                slots.release()
                yield batch
        finally:
            stop.set()


def _sample_texts(folder: Path) -> tuple[list[str], int]:
    dest = folder / Path(FINEWEB_EDU_SAMPLE.mirror_path).name
    if mirror_dir() is None and not dest.is_file():
        raise DownloadError(f"the FineWeb-Edu sample exists only in the offline data mirror: set {MIRROR_ENV} "
                           "to the mirror (see README, 'Offline mirror') or use source 'hf'")
    with open(fetch(FINEWEB_EDU_SAMPLE, dest), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    return texts, len(texts)


def _hf_texts(config: str, skip: int, max_documents: int | None = None) -> tuple[Iterable[str], int | None]:
    import datasets

    try:
        dataset = datasets.load_dataset(FINEWEB_EDU_HF, name=config, split="train", streaming=True)
    except Exception as error:  # offline: ConnectionError, HF's OfflineModeIsEnabled, ...
        raise DownloadError(
            f"could not stream {FINEWEB_EDU_HF} ({config}) from Hugging Face ({error}). Offline, set "
            f"{MIRROR_ENV} to the course's data mirror to prepare its 120-document sample (source 'sample')."
        ) from error
    try:
        total = dataset.info.splits["train"].num_examples
    except Exception:  # streaming datasets do not always know their size
        total = None
    if skip:
        dataset = dataset.skip(skip)  # still reads the skipped rows, but does not tokenize them
    texts = (row["text"] for row in dataset)
    if max_documents is not None:
        texts = itertools.islice(texts, max(0, max_documents - skip))
        total = min(total, max_documents) if total is not None else max_documents
    return texts, total


def prepare_fineweb_edu(folder: str | Path | None = None, config: str = DEFAULT_CONFIG, shard_tokens: int | None = None,
                        source: str | None = None, workers: int | None = None, *, max_documents: int | None = None
                        ) -> Path:
    """Tokenize FineWeb-Edu into uint16 shards in `folder`; returns the folder.

    Worker processes tokenize the documents with GPT-2's BPE, an end-of-text token before each (as nanoGPT's and
    llm.c's scripts do), and the token stream is cut into shards of `shard_tokens` tokens, so a document may run on
    into the next shard. Each shard is written atomically, then progress.json records the shards finished and where
    the document stream stands, so an interrupted run resumes there and writes files byte-identical to an
    uninterrupted one; `"complete": true` means done. A worker killed from outside makes the pool wait forever:
    Ctrl-C, then run again to resume.

    source "hf" streams the `config` of the dataset from Hugging Face; "sample" (the default when
    $TINYLM_DATA_MIRROR is set) reads the mirror's 120 documents of sample-10BT. shard_tokens
    defaults to HF_SHARD_TOKENS (100M) for "hf" and SAMPLE_SHARD_TOKENS (20,000: 4 shards) for the
    sample. workers: tokenizer processes (default: one per CPU core; 1 tokenizes in this process).
    max_documents: with source "hf", only the stream's first documents (a small run online).

    A finished folder with the same settings is returned at once; an interrupted one is resumed. A
    folder prepared with other settings (source, config, shard size) is started over: its shards are
    deleted first.

    One function on purpose: the shard buffer, the resume point and progress.json change together at every shard
    boundary (`finish_shard`), and the loop reads as that one story.
    """
    source = dataset_source(source, "FineWeb-Edu")
    if source == "sample" and config != DEFAULT_CONFIG:
        raise InputError(f"the offline sample holds {DEFAULT_CONFIG} documents only; "
                         f"use source 'hf' for config {config!r}")
    if shard_tokens is None:
        shard_tokens = SAMPLE_SHARD_TOKENS if source == "sample" else HF_SHARD_TOKENS
    if shard_tokens < 1:
        raise InputError(f"shard_tokens must be positive, got {shard_tokens}")
    if max_documents is not None and (source != "hf" or max_documents < 1):
        raise InputError(f"max_documents applies to source 'hf' and must be positive, got {max_documents} "
                         f"with source {source!r}")
    workers = workers or usable_cores()
    folder = Path(folder) if folder is not None else default_fineweb_edu_folder(source, config, max_documents)
    tokenizer = BPETokenizer("gpt2")
    wanted = {"dataset": FINEWEB_EDU_HF, "config": config, "source": source, "tokenizer": tokenizer.to_dict(),
              "shard_tokens": shard_tokens, "max_documents": max_documents}
    progress = read_progress(folder)
    resuming = progress is not None and all(progress.get(key) == value for key, value in wanted.items())
    if resuming and progress["complete"]:
        return folder
    if not resuming:  # nothing here yet, or shards of other settings: start over
        progress = {**wanted, "complete": False, "documents": 0, "skip_tokens": 0, "shards": []}

    skip_docs, skip_tokens = progress["documents"], progress["skip_tokens"]
    if source == "sample":
        texts, total = _sample_texts(folder)
        texts = itertools.islice(texts, skip_docs, None)
    else:
        texts, total = _hf_texts(config, skip_docs, max_documents)
    if not resuming:  # the source opened: now clear out what another preparation left here
        folder.mkdir(parents=True, exist_ok=True)
        for path in folder.glob(f"{SHARD_PREFIX}_*_*.bin"):
            path.unlink()
        write_json(folder / PROGRESS_FILE, progress, indent=2)

    buffer = np.empty(shard_tokens, dtype=TOKEN_DTYPE)
    fill = 0
    docs_before = skip_docs  # documents of the stream before the current batch
    session_tokens, session_bytes = 0, 0
    start = time.perf_counter()

    def finished_tokens() -> int:
        return sum(shard["tokens"] for shard in progress["shards"])

    def finish_shard(documents: int, next_skip: int) -> None:
        nonlocal fill
        index = len(progress["shards"])
        _write_shard(folder / shard_name(index), buffer[:fill])
        split = "val" if index == 0 else "train"
        progress["shards"].append({"name": shard_name(index), "split": split, "tokens": fill})
        progress["documents"], progress["skip_tokens"] = documents, next_skip
        write_json(folder / PROGRESS_FILE, progress, indent=2)
        fill = 0

    with tqdm(total=total, initial=skip_docs, unit="doc", desc=f"fineweb-edu ({source})") as bar:
        for batch in encode_documents(texts, workers):
            tokens, lengths = batch.tokens, batch.lengths
            first_offset = skip_tokens  # tokens of the batch's first document already in finished shards
            if skip_tokens:
                tokens, lengths = tokens[skip_tokens:], lengths.copy()
                lengths[0] -= skip_tokens
                skip_tokens = 0
            ends = np.cumsum(lengths)
            pos = 0
            while pos < len(tokens):
                take = min(shard_tokens - fill, len(tokens) - pos)
                buffer[fill : fill + take] = tokens[pos : pos + take]
                fill, pos = fill + take, pos + take
                if fill == shard_tokens:
                    whole = int(np.searchsorted(ends, pos, side="right"))  # documents of this batch fully written
                    into_next = pos - (int(ends[whole - 1]) if whole else 0) + (first_offset if whole == 0 else 0)
                    finish_shard(docs_before + whole, into_next)
            docs_before += len(lengths)
            session_tokens += len(tokens)
            session_bytes += batch.text_bytes
            seconds = time.perf_counter() - start
            bar.update(len(lengths))
            megabytes_per_s = session_bytes / 1e6 / max(seconds, 1e-9)
            bar.set_postfix(tokens=f"{finished_tokens() + fill:,}", MBps=f"{megabytes_per_s:.2f}", refresh=False)
        if fill:
            finish_shard(docs_before, 0)
    seconds = time.perf_counter() - start
    if not progress["shards"]:
        raise InputError(f"the {source} source yielded no documents; nothing was written to {folder}")
    progress.update(complete=True, documents=docs_before, skip_tokens=0, tokens=finished_tokens(),
                    seconds=round(seconds, 3), tokens_per_s=round(session_tokens / max(seconds, 1e-9)), workers=workers)
    write_json(folder / PROGRESS_FILE, progress, indent=2)
    return folder


# -- loading ----------------------------------------------------------------------------------------
def shard_files(folder_or_files: str | Path | Sequence[str | Path], split: str = "train") -> list[Path]:
    """The token files of a split: a prepared folder's shards of that split in order (from progress.json,
    else every `*_{split}_*.bin` by name), a single file, or a list of files as given."""
    if isinstance(folder_or_files, (str, os.PathLike)):
        path = Path(folder_or_files)
        if path.is_file():
            return [path]
        if not path.is_dir():
            raise MissingFile(f"no shard folder or file at {path}; "
                                    "prepare it first (python -m tinylm.prepare fineweb-edu)")
        progress = read_progress(path)
        if progress is not None:
            if not progress.get("complete"):
                raise DataError(f"the preparation of {path} is not finished ({len(progress['shards'])} shards so "
                                   "far); run python -m tinylm.prepare fineweb-edu again to complete it")
            shards = [shard for shard in progress["shards"] if shard["split"] == split]
            for shard in shards:  # a stat each: a shard cut short or changed by hand is an error, not less data
                check_token_file(path / shard["name"], shard["tokens"], str(path / PROGRESS_FILE),
                                 f"delete {path} and prepare it again (python -m tinylm.prepare fineweb-edu)")
            files = [path / shard["name"] for shard in shards]
        else:
            files = sorted(path.glob(f"*_{split}_*.bin"))
        if not files:
            raise MissingFile(f"{path} has no {split} shards (with a single shard everything is validation: "
                                    "prepare it with a smaller shard size)")
        return files
    files = [Path(p) for p in folder_or_files]
    if not files:
        raise InputError("no shard files given")
    return files


def val_tokens(folder: str | Path) -> np.memmap:
    """The validation shard of a prepared folder as a memory map (for tinylm.eval.loss.evaluate_loss)."""
    files = shard_files(folder, "val")
    if len(files) != 1:
        raise InputError(f"expected one validation shard in {folder}, found {len(files)}: {[f.name for f in files]}")
    return read_tokens(files[0])


# Small caches: windows are consumed shard by shard, so only a few permutations are in use at a time.
@functools.lru_cache(maxsize=8)
def _shard_order(seed: int, epoch: int, shard_windows: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Epoch `epoch`'s order of shards and the cumulative window counts along it."""
    order = np.random.default_rng([seed, 0, epoch]).permutation(len(shard_windows))
    return order, np.cumsum(np.array(shard_windows)[order])


@functools.lru_cache(maxsize=8)
def _window_order(seed: int, epoch: int, shard: int, windows: int) -> np.ndarray:
    """Epoch `epoch`'s order of the `windows` windows of shard `shard` (window k starts at token k * block_size)."""
    return np.random.default_rng([seed, 1, epoch, shard]).permutation(windows)


class ShardedWindowLoader:
    """Training batches from token shards: shuffled, sharded across DDP ranks, resumable at any world size.

    The loader defines ONE global, deterministic sequence of windows. A window is block_size + 1
    tokens at an offset k * block_size of a shard (non-overlapping targets; k < (len - 1) // block_size).
    In epoch e the shards come in a seeded permutation, and within each shard its windows in a seeded
    permutation, so every window is seen exactly once per epoch and the loss shows no periodic
    pattern from reading documents in order. The sequence depends on the seed, block_size and the
    shards (their order and lengths), nothing else.

    A global cursor counts the windows consumed by all ranks. On each call rank r takes windows
    [cursor + r*B, cursor + (r+1)*B) and every rank advances the cursor by world_size * B; all ranks
    call next_batch equally often, so their cursors agree. `state_dict()` is therefore the same on
    every rank and independent of world size and batch size: a loader built with another world_size
    or batch_size continues the same global sequence after `load_state_dict`.

    Shards are memory-mapped (np.memmap through tinylm.data.tokens.read_tokens), never read whole.
    """

    def __init__(self, folder_or_files: str | Path | Sequence[str | Path], block_size: int, batch_size: int,
                 rank: int = 0, world_size: int = 1, seed: int = 1337, split: str = "train",
                 vocab_size: int | None = None):
        """vocab_size: token ids at or above it are an error naming the shard, in any shard now (one pass over each:
        tinylm.data.tokens.check_token_ids) and in every window cut."""
        if block_size < 1 or batch_size < 1:
            raise InputError(f"block_size and batch_size must be positive, got {block_size} and {batch_size}")
        if not 0 <= rank < world_size:
            raise InputError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        if seed < 0:
            raise InputError(f"seed must be non-negative, got {seed}")
        self.block_size, self.batch_size = block_size, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.vocab_size = vocab_size
        self.files = shard_files(folder_or_files, split)
        self.shards = [read_tokens(path) for path in self.files]
        if vocab_size is not None:
            for shard in self.shards:
                check_token_ids(shard, vocab_size)
        self.shard_windows = np.array([max(0, (len(s) - 1) // block_size) for s in self.shards], dtype=np.int64)
        self.window_counts = tuple(self.shard_windows.tolist())  # the caches' key: hashable, made once
        self.windows_per_epoch = int(self.shard_windows.sum())
        if self.windows_per_epoch == 0:
            raise InputError(f"no shard of {[f.name for f in self.files]} holds one window of {block_size} + 1 tokens")
        self.cursor = 0

    @property
    def epoch(self) -> int:
        """The epoch of the next window of the global sequence."""
        return self.cursor // self.windows_per_epoch

    def window(self, index: int) -> tuple[int, int]:
        """(shard index into self.files, start offset) of window `index` of the global sequence."""
        epoch, within = divmod(int(index), self.windows_per_epoch)
        order, ends = _shard_order(self.seed, epoch, self.window_counts)  # (shards,) each
        slot = int(np.searchsorted(ends, within, side="right"))
        shard = int(order[slot])
        local = within - (int(ends[slot - 1]) if slot else 0)
        offsets = _window_order(self.seed, epoch, shard, self.window_counts[shard])
        return shard, int(offsets[local]) * self.block_size

    def next_batch(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next (x, y), int64 (batch_size, block_size) each; y is x shifted left by one token."""
        first = self.cursor + self.rank * self.batch_size
        rows = []
        for index in range(first, first + self.batch_size):
            shard, start = self.window(index)
            rows.append(gather_windows(self.shards[shard], [start], self.block_size + 1, self.vocab_size))
        self.cursor += self.world_size * self.batch_size
        batch = torch.from_numpy(np.concatenate(rows))  # (B, T + 1)
        return to_device(device, batch[:, :-1], batch[:, 1:])

    def state_dict(self) -> dict[str, Any]:
        """The position in the global sequence: the same on every rank, independent of world and batch size."""
        return {"cursor": self.cursor, "seed": self.seed, "block_size": self.block_size,
                "shards": [[path.name, len(tokens)] for path, tokens in zip(self.files, self.shards)]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the global sequence of `state` (saved at any world size and batch size)."""
        shards = [[path.name, len(tokens)] for path, tokens in zip(self.files, self.shards)]
        if state["block_size"] != self.block_size:
            raise InputError(f"the saved loader cut windows of {state['block_size']} tokens, this one "
                             f"{self.block_size}; resume with the same block_size")
        if [list(s) for s in state["shards"]] != shards:
            raise InputError("the saved loader read other shards (names or lengths differ); "
                             "resume on the same prepared data")
        if state["seed"] != self.seed:
            self.seed = int(state["seed"])
        self.cursor = int(state["cursor"])
