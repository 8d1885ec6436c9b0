"""Your own text as a dataset: a UTF-8 file, a folder of .txt files or a glob, checked, split and tokenized once.

`find_text_files` resolves what --file names, `read_text_file` is the one check of a text file (what `train text
--file` and `eval loss --text` accept), `read_documents` cuts it into documents, `split_held_out` holds some out,
and `prepare_text` tokenizes both splits once into data/text/<name>-<content digest>-<tokenizer>/, where the same
text and tokenizer are found the next time.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError, MissingFile
from ..paths import data_dir, shown
from ..tokenizers import EOT
from ..tokenizers.char import CharTokenizer
from ..tokenizers.gpt2 import BPETokenizer
from ..tokenizers.hf_bpe import TrainedBPETokenizer
from .corpora import PreparedData, load_prepared
from .tokens import TokenFileWriter, read_meta, write_meta

TOKENIZER_KINDS = "char, gpt2 or bpe:N"
CHAR_DOCUMENT_END = "\n\n"  # what ends a document in character token files, as in notebook 13's stories
HELD_OUT_EVERY = 10  # every tenth document, or the last tenth of the text, is held out
CHUNK_CHARACTERS = 1 << 18  # the longest piece of text encoded at once
BATCH_CHARACTERS = 1 << 22  # text encoded per batch (a BPE's on every core) between two updates of the progress bar


class TextError(InputError):
    """A --file that holds no usable text; the message names the file and what to do."""


def parse_tokenizer(spec: str) -> tuple[str, int | None]:
    """("char" | "gpt2" | "bpe", N or None) of a --tokenizer value."""
    if spec in ("char", "gpt2"):
        return spec, None
    match = re.fullmatch(r"bpe:(\d+)", spec)
    if match is None:
        raise InputError(f"--tokenizer {spec}: choose {TOKENIZER_KINDS} (e.g. bpe:4096)")
    return "bpe", int(match.group(1))


def find_text_files(spec: str | Path) -> list[Path]:
    """The files --file names: the file itself, a folder's .txt files (all depths, sorted), or a glob's files."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise TextError(f"{shown(path)} has no .txt files; put your text in UTF-8 .txt files there, or name a "
                            "file with --file")
        return files
    if glob.has_magic(str(spec)):
        files = sorted(Path(p) for p in glob.glob(str(spec), recursive=True) if Path(p).is_file())
        if not files:
            raise TextError(f"--file {spec}: the pattern matches no file; check it (quote it, so that the shell "
                            "does not expand it)")
        return files
    raise _no_such_file(path)


def _no_such_file(path: Path) -> MissingFile:
    return MissingFile(f"{shown(path)}: no such file; check the path")


def describe_text_files(spec: str | Path, files: list[Path]) -> str:
    """What --file names, in a line: the files read and, for a folder, those skipped (not .txt), each list cut to
    its first few names."""
    folder = Path(spec) if Path(spec).is_dir() else None
    line = f"text: {_names(files, folder)}"
    if folder is not None:
        read = set(files)
        skipped = sorted(p for p in folder.rglob("*") if p.is_file() and p not in read)
        if skipped:
            line += f"; skipped, not .txt: {_names(skipped, folder)}"
    return line


def _names(files: list[Path], folder: Path | None, first: int = 3) -> str:
    """'N files (a, b, c and M more)': the names relative to `folder` (else as shown)."""
    names = [str(p.relative_to(folder)) if folder else shown(p) for p in files[:first]]
    more = f" and {len(files) - first:,} more" if len(files) > first else ""
    return f"{len(files):,} file{'s' * (len(files) != 1)} ({', '.join(names)}{more})"


def read_text_file(path: str | Path, allow_empty: bool = False) -> str:
    """The exact text of a UTF-8 file (no newline translation); a missing, empty, binary or non-UTF-8 file is an
    error that says so in one line (an empty one returns "" with `allow_empty`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _no_such_file(path) from None
    if not data.strip():
        if allow_empty:
            return ""
        raise TextError(f"{shown(path)} is empty; give a file with text in it")
    if b"\x00" in data[:1 << 16]:
        raise TextError(f"{shown(path)} is a binary file (it holds NUL bytes), not text; give a UTF-8 text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TextError(f"{shown(path)} is not UTF-8: byte {error.start:,} (0x{data[error.start]:02x}) cannot be "
                        "decoded; convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8) or remove that byte") from None


def read_documents(files: list[Path], say=lambda line: None) -> list[str]:
    """The documents of `files`: each file, or each part of a file between <|endoftext|> separators. In a folder
    of several files an empty one is skipped, and `say` names them; a folder whose files are all empty is an
    error."""
    documents, empty = [], []
    for path in files:
        text = read_text_file(path, allow_empty=len(files) > 1)
        parts = text.split(EOT) if EOT in text else [text]
        documents += [part for part in parts if part.strip()]
        if not text:
            empty.append(path)
    if not documents:
        raise TextError(f"the {len(files)} files named hold no text; give UTF-8 text files with something in them")
    if empty:
        say(f"skipped, empty: {_names(empty, None)}")
    return documents


def split_held_out(documents: list[str]) -> tuple[list[str], list[str], str]:
    """(training documents, held-out documents, how): every tenth document with ten or more, else the last tenth
    of the text, cut at the line end nearest to it (or at 90% exactly where no line ends near)."""
    if len(documents) >= HELD_OUT_EVERY:
        held = [d for i, d in enumerate(documents) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
        kept = [d for i, d in enumerate(documents) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
        return kept, held, f"every {HELD_OUT_EVERY}th document"
    text = CHAR_DOCUMENT_END.join(documents)
    cut = len(text) * (HELD_OUT_EVERY - 1) // HELD_OUT_EVERY
    line_end = text.rfind("\n", cut - len(text) // 50, cut)
    cut = line_end + 1 if line_end >= 0 else cut
    return [text[:cut]], [text[cut:]], f"the last {100 // HELD_OUT_EVERY}% of the text"


def content_digest(files: list[Path]) -> str:
    """sha256 of the files' names (relative to their common folder) and bytes: which text a data folder holds."""
    digest = hashlib.sha256()
    root = files[0].parent if len(files) == 1 else Path(os.path.commonpath([str(p.parent) for p in files]))
    for path in files:
        digest.update(str(path.relative_to(root)).encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()


def build_tokenizer(spec: str, train: list[str], held_out: list[str]):
    """The tokenizer `spec` names, built for this text: characters of both splits, GPT-2's, or a BPE trained on
    the training split."""
    kind, size = parse_tokenizer(spec)
    if kind == "gpt2":
        return BPETokenizer("gpt2")
    if kind == "bpe":
        chunks = list(_chunks(train))
        return TrainedBPETokenizer.train(chunks, size, length=len(chunks))
    characters = set(CHAR_DOCUMENT_END)
    for document in (*train, *held_out):
        characters.update(document)
    if len(characters) > 65_536:
        raise TextError(f"the text has {len(characters):,} distinct characters, more than token files hold "
                        "(65,536); use --tokenizer bpe:N")
    return CharTokenizer(sorted(characters))


def _chunks(documents: Iterable[str]) -> Iterator[str]:
    """The documents in pieces of about CHUNK_CHARACTERS, cut at line ends where there are any."""
    for document in documents:
        start = 0
        while start < len(document):
            end = min(start + CHUNK_CHARACTERS, len(document))
            if end < len(document) and (line_end := document.rfind("\n", start, end)) > start:
                end = line_end + 1
            yield document[start:end]
            start = end


class _CharEncoder:
    """Characters -> ids through a table over code points, a whole batch in one numpy lookup."""

    def __init__(self, tokenizer: CharTokenizer):
        self.table = np.full(0x110000, -1, dtype=np.int32)
        self.table[[ord(ch) for ch in tokenizer.chars]] = np.arange(tokenizer.vocab_size)

    def __call__(self, text: str) -> np.ndarray:
        return self.table[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]


def encode_documents(documents: list[str], tokenizer, out: TokenFileWriter, bar: tqdm) -> None:
    """Every document's ids, then its separator (<|endoftext|>, or a blank line for characters), into `out`; BPE
    encodes pieces of BATCH_CHARACTERS at a time on every core."""
    if isinstance(tokenizer, CharTokenizer):
        encode_char, end = _CharEncoder(tokenizer), tokenizer.encode(CHAR_DOCUMENT_END)
        encode_batch = lambda pieces: [encode_char(piece) for piece in pieces]  # noqa: E731
    else:
        end = [tokenizer.eot_token]
        encode_batch = (tokenizer.encoding.encode_ordinary_batch if isinstance(tokenizer, BPETokenizer)
                        else getattr(tokenizer, "encode_batch", lambda pieces: [tokenizer.encode(p) for p in pieces]))
    pieces, ends, size = [], [], 0

    def flush():
        for ids, last in zip(encode_batch(pieces), ends):
            out.append(np.concatenate([np.asarray(ids, dtype=np.int64), end]) if last else np.asarray(ids))
        bar.update(sum(len(piece.encode("utf-8")) for piece in pieces))
        pieces.clear(), ends.clear()

    for document in documents:
        chunks = list(_chunks([document]))
        for index, chunk in enumerate(chunks):
            pieces.append(chunk)
            ends.append(index == len(chunks) - 1)
            size += len(chunk)
            if size >= BATCH_CHARACTERS:
                flush()
                size = 0
    flush()


def tokenizer_label(tokenizer) -> str:
    """A short name for a given tokenizer, for its data folder: gpt2, or kind + a digest of its description."""
    description = tokenizer.to_dict()
    if description == {"kind": "bpe", "encoding": "gpt2"}:
        return "gpt2"
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode("utf-8")).hexdigest()[:10]
    return f"{description.get('kind', 'tokenizer')}-{digest}"


def text_name(spec: str | Path) -> str:
    """A short name for what --file names (the file's stem, the folder's name), safe in a folder's name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(spec).rstrip("/*")).stem or "text")[:40]


def prepare_text(spec: str | Path, tokenizer: str | object = "char", folder: Path | None = None,
                 say=print) -> PreparedData:
    """The text --file names, split and tokenized with `tokenizer` (a --tokenizer value, or a tokenizer to keep)
    into `folder` (default: data/text/<name>-<digest>-<tokenizer>), or read from there if done before; `say` names
    the files read and skipped."""
    files = find_text_files(spec)
    say(describe_text_files(spec, files))
    label = tokenizer.replace(":", "") if isinstance(tokenizer, str) else tokenizer_label(tokenizer)
    if isinstance(tokenizer, str):
        parse_tokenizer(tokenizer)  # a bad value fails before the text is read
    digest = content_digest(files)
    if folder is None:
        folder = data_dir() / "text" / f"{text_name(spec)}-{digest[:12]}-{label}"
    wanted = {"digest": digest, "tokenizer_spec": label}
    meta = read_meta(folder)
    if meta is None or any(meta.get(key) != value for key, value in wanted.items()):
        meta = _tokenize(files, tokenizer, folder, wanted, say)
    return load_prepared(folder, meta, "the next `python -m tinylm.train text` run of it does")


def _tokenize(files: list[Path], tokenizer, folder: Path, wanted: dict, say) -> dict:
    documents = read_documents(files, say)
    train, held_out, how = split_held_out(documents)
    if isinstance(tokenizer, str):
        if tokenizer.startswith("bpe:"):
            say(f"training a byte-level BPE of {tokenizer[4:]} tokens on the training split")
        tokenizer = build_tokenizer(tokenizer, train, held_out)
    counts = {}
    for split, docs in (("train", train), ("val", held_out)):
        total = sum(len(doc.encode("utf-8")) for doc in docs)
        with TokenFileWriter(folder / f"{split}.bin") as out, \
                tqdm(total=total, unit="B", unit_scale=True, desc=f"tokenizing {split}") as bar:
            encode_documents(docs, tokenizer, out, bar)
        counts.update({f"{split}_tokens": out.count, f"{split}_documents": len(docs), f"{split}_bytes": total})
    meta = {**wanted, "source": [shown(path) for path in files[:20]], "files": len(files), "held_out": how,
            "tokenizer": tokenizer.to_dict(), **counts}
    write_meta(folder, meta)
    return meta
