"""HellaSwag's data and who may be scored on it: the validation file (the official one, downloaded or from the mirror,
else the mirror's substitute derived from it, and every report says which) and the tokenizers whose acc_norm compares
with published figures (GPT-2's BPE, plain or trimmed).

Each example is a context and four endings, one right: a `MultipleChoice` item (tinylm.eval.benchmarks reads the
file), scored by the one benchmark scorer exactly as CORE's `hellaswag_zeroshot` is (tinylm.eval.scoring's
evaluate_hellaswag: acc, acc_norm per token and acc_norm_char per character), a cheap benchmark where small models
beat chance (25%).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..download import MIRROR_ENV, DownloadError, RemoteFile, fetch, mirror_dir, sha256_of
from ..errors import InputError, MissingFile
from ..paths import data_dir
from ..settings import option
from ..tokenizers.saved import describe_tokenizer
from .loss import check_vocabulary

# The official validation split. The digest and size are those TensorFlow Datasets pins for this URL
# (tensorflow_datasets/url_checksums/hellaswag.txt); the file has not changed upstream since 2019.
OFFICIAL_VAL = RemoteFile(
    url="https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl",
    sha256="0aa3b88843990f3f10a97b9575c94d7b71fb2205240ba04ae4884d9e9c992588",
    mirror_path="hellaswag/hellaswag_val.jsonl",
)
# The offline mirror's substitute (see its MANIFEST.md): derived from the official file, not identical to it.
SUBSTITUTE_VAL_PATH = "hellaswag/hellaswag_val_klosax.jsonl"
SUBSTITUTE_VAL_SHA256 = "7f07c53c6269084911e648da25811117ccb43f89c95c0ba8fffb95b93de91bea"


@dataclass(frozen=True)
class ValFile:
    """Where the validation examples come from: the file, whether it is the official one, and a sentence saying so."""

    path: Path
    official: bool
    description: str


@dataclass(frozen=True)
class HellaSwagOptions:
    """Which file `eval hellaswag` scores (val_file)."""

    hellaswag_file: Path | None = option("a HellaSwag JSON-lines file to score (default: the official validation "
                                         "file, or, offline, the mirror's substitute)", metavar="FILE", type=Path)


def val_file(options: HellaSwagOptions) -> ValFile:
    """The file named by --hellaswag-file (scored as it is), else the official validation file or its substitute
    (locate_val)."""
    path = options.hellaswag_file
    if path is None:
        return locate_val()
    if not path.is_file():
        raise MissingFile(f"no HellaSwag file at {path}; check the path")
    return ValFile(path, False, "a file given with --hellaswag-file (its contents were not verified)")


def locate_val(folder: str | Path | None = None) -> ValFile:
    """The validation file to score: the official one (downloaded or from the mirror), else the mirror's substitute.

    `folder` is where a downloaded (or mirror-copied) official file is kept: <data dir>/hellaswag by default.
    """
    folder = Path(folder) if folder is not None else data_dir() / "hellaswag"
    mirror = mirror_dir()
    if mirror is None or (mirror / OFFICIAL_VAL.mirror_path).is_file():
        where = "copied from the mirror" if mirror is not None else f"downloaded from {OFFICIAL_VAL.url}"
        try:
            path = fetch(OFFICIAL_VAL, folder / "hellaswag_val.jsonl")
        except DownloadError as error:
            if mirror is not None:
                raise
            message = f"{error} A mirror with only the substitute {SUBSTITUTE_VAL_PATH} works too."
            raise DownloadError(message) from error
        return ValFile(path, True, f"the official HellaSwag validation file ({where}; sha256 verified)")
    substitute = mirror / SUBSTITUTE_VAL_PATH
    if not substitute.is_file():
        raise DownloadError(
            f"{MIRROR_ENV} is set to {mirror}, but it has neither {OFFICIAL_VAL.mirror_path} (the official file) nor "
            f"{SUBSTITUTE_VAL_PATH} (its substitute); add one, or unset {MIRROR_ENV} to download {OFFICIAL_VAL.url}"
        )
    actual = sha256_of(substitute)
    if actual != SUBSTITUTE_VAL_SHA256:
        raise DownloadError(f"{substitute} has sha256 {actual}, expected {SUBSTITUTE_VAL_SHA256}; "
                            "the mirror copy is damaged or a different file")
    return ValFile(substitute, False,
                   "the offline mirror's substitute, not the official file: derived from HellaSwag val with cleaned "
                   "WikiHow texts, so results differ slightly from the official numbers (sha256 verified)")


def scorable(tokenizer) -> bool:
    """Whether HellaSwag scores a model with this tokenizer: GPT-2's BPE, plain or trimmed, so that acc_norm (per
    token) compares with the published figures of GPT-2-tokenized models."""
    return tokenizer is not None and tokenizer.to_dict().get("kind") in ("bpe", "bpe-trimmed")


def check_tokenizer(model, tokenizer) -> None:
    """Refuse, saying what to do, a model HellaSwag does not score (`scorable`) or a tokenizer larger than it."""
    if not scorable(tokenizer):
        raise InputError(f"HellaSwag scores models with GPT-2's tokens (its BPE, plain or trimmed), whose acc_norm "
                         f"compares with published figures; this checkpoint's tokenizer is "
                         f"{describe_tokenizer(tokenizer)}. Measure it with python -m tinylm.eval loss --text FILE "
                         "instead (bits per byte compare across tokenizers)")
    check_vocabulary(model, tokenizer)
