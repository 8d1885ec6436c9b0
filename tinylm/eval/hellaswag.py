"""HellaSwag: does the model prefer the right ending of a sentence?

Each example is a context and four endings, one right; the model scores each ending given the context (nothing is
generated or trained), a cheap benchmark where small models beat chance (25%). Three answers come from the same
losses: `acc` (lowest summed loss), `acc_norm` (lowest mean loss per token: build-nanogpt's and llm.c's) and
`acc_norm_char` (lowest loss per character: lm-evaluation-harness's normalisation, not its prompt). The data is the
official validation file or, offline, the mirror's substitute derived from it, and every report says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from ..distributed import all_reduce_sum, current_world
from ..download import MIRROR_ENV, DownloadError, RemoteFile, fetch, mirror_dir, sha256_of
from ..errors import InputError
from ..paths import data_dir
from ..runtime import evaluating, model_device
from ..tokenizers.saved import describe_tokenizer
from .loss import target_losses

# The official validation split. The digest and size are those TensorFlow Datasets pins for this URL
# (tensorflow_datasets/url_checksums/hellaswag.txt); the file has not changed upstream since 2019.
OFFICIAL_VAL = RemoteFile(
    url="https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl",
    sha256="0aa3b88843990f3f10a97b9575c94d7b71fb2205240ba04ae4884d9e9c992588",
    mirror_path="hellaswag/hellaswag_val.jsonl",
)
OFFICIAL_VAL_BYTES = 12_246_618
# The offline mirror's substitute (see its MANIFEST.md): derived from the official file, not identical to it.
SUBSTITUTE_VAL_PATH = "hellaswag/hellaswag_val_klosax.jsonl"
SUBSTITUTE_VAL_SHA256 = "7f07c53c6269084911e648da25811117ccb43f89c95c0ba8fffb95b93de91bea"
VAL_EXAMPLES = 10_042
BPE_KINDS = ("bpe", "bpe-trimmed")


@dataclass(frozen=True)
class Example:
    """One HellaSwag item: a context, four candidate endings, and the index of the right one."""

    ctx: str
    endings: tuple[str, ...]
    label: int


@dataclass(frozen=True)
class ValFile:
    """Where the validation examples come from: the file, whether it is the official one, and a sentence saying so."""

    path: Path
    official: bool
    description: str


def parse_example(record: dict[str, Any]) -> Example:
    """An Example from one JSON line of the official file or of the mirror's substitute.

    Both carry `ctx`, `endings` and `label`; the official file also has `ctx_a`/`ctx_b`, whose
    joining `ctx` already is, so they are used only if `ctx` is missing.
    """
    if "ctx" in record:
        ctx = record["ctx"]
    elif "ctx_a" in record:
        ctx = f"{record['ctx_a']} {record.get('ctx_b', '')}".rstrip()
    else:
        raise InputError(f"a HellaSwag record needs 'ctx' (or 'ctx_a'/'ctx_b'); this one has keys {sorted(record)}")
    endings = record.get("endings")
    if not isinstance(endings, list) or len(endings) != 4 or not all(isinstance(e, str) for e in endings):
        raise InputError(f"a HellaSwag record needs 'endings': a list of 4 strings; got {endings!r}")
    if "label" not in record or str(record["label"]).strip() == "":
        raise InputError("this HellaSwag record has no label (the test split's labels are not public); "
                         "use the validation split")
    label = int(record["label"])
    if not 0 <= label < 4:
        raise InputError(f"a HellaSwag label must be 0, 1, 2 or 3; got {label}")
    return Example(ctx=str(ctx), endings=tuple(endings), label=label)


def read_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    """The first `limit` examples (all of them if None) of a HellaSwag JSON-lines file."""
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if limit is not None and len(examples) >= limit:
                break
            if not line.strip():
                continue
            try:
                examples.append(parse_example(json.loads(line)))
            except (json.JSONDecodeError, ValueError, TypeError) as error:
                raise InputError(f"{path}, line {number}: {error}") from None
    return examples


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
    return tokenizer is not None and tokenizer.to_dict().get("kind") in BPE_KINDS


def check_tokenizer(model, tokenizer) -> None:
    """Refuse, saying what to do, a model HellaSwag does not score (`scorable`) or a tokenizer larger than it."""
    if not scorable(tokenizer):
        raise InputError(f"HellaSwag scores models with GPT-2's tokens (its BPE, plain or trimmed), whose acc_norm "
                         f"compares with published figures; this checkpoint's tokenizer is "
                         f"{describe_tokenizer(tokenizer)}. Measure it with python -m tinylm.eval loss --text FILE "
                         "instead (bits per byte compare across tokenizers)")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise InputError(f"the tokenizer has {tokenizer.vocab_size:,} tokens but the model only "
                         f"{model.config.vocab_size:,}; use the checkpoint's own tokenizer")


def render_example(example: Example, encode, block_size: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, mask), both (4, T): context + ending per row, padded on the right; mask is 1 on the ending's tokens.

    Rows longer than block_size + 1 tokens keep their last block_size + 1 (a forward pass sees
    block_size inputs and predicts the next token of each).
    """
    ctx_ids = list(encode(example.ctx))
    rows, masks = [], []
    for ending in example.endings:
        end_ids = list(encode(" " + ending))  # a leading space: the ending continues the sentence
        rows.append((ctx_ids + end_ids)[-(block_size + 1):])
        masks.append(([0] * len(ctx_ids) + [1] * len(end_ids))[-(block_size + 1):])
    width = max(len(row) for row in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, row_mask) in enumerate(zip(rows, masks)):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row_mask)] = torch.tensor(row_mask, dtype=torch.long)
    return tokens, mask


@torch.no_grad()
def ending_losses(model, tokenizer, example: Example, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss (4,), scored tokens (4,)) of each ending of `example` in nats, on the CPU.

    Logits past the tokenizer's vocabulary (embedding padding) are excluded, and a trimmed
    vocabulary's <unk> targets cost its `unk_penalty` more, as in `tinylm.eval.loss.evaluate_loss_sum`,
    so the losses are per GPT-2 token.
    """
    tokens, mask = render_example(example, tokenizer.encode, model.config.block_size)
    tokens, mask = tokens.to(device), mask.to(device)
    x, y, scored = tokens[:, :-1], tokens[:, 1:], mask[:, 1:]  # the loss at position t predicts token t + 1
    losses = target_losses(model(x)[0], y, tokenizer)  # (4, T)
    return (losses * scored).sum(dim=1).cpu(), scored.sum(dim=1).cpu()


def evaluate_hellaswag(model, tokenizer, examples: Iterable[Example], device=None) -> dict[str, Any]:
    """Score `examples`: {"examples", "correct", "correct_norm", "correct_norm_char", "acc", "acc_norm",
    "acc_norm_char"}.

    `correct` counts examples whose right ending has the lowest summed loss, `correct_norm` those whose
    right ending has the lowest mean loss per token, `correct_norm_char` the lowest loss per character of
    the ending (the module docstring says whose conventions these are); the acc keys are their fractions.
    `device` defaults to the model's. Under torch.distributed, each rank scores every W-th example and the
    counts are summed over ranks (all ranks must call this with the same list).
    """
    check_tokenizer(model, tokenizer)
    device = device if device is not None else model_device(model)
    world = current_world()
    counts = [0, 0, 0, 0]  # examples, correct, correct_norm, correct_norm_char
    with evaluating(model):
        for example in list(examples)[world.rank::world.size]:
            summed, scored = ending_losses(model, tokenizer, example, device)
            characters = torch.tensor([max(len(ending), 1) for ending in example.endings], dtype=summed.dtype)
            counts[0] += 1
            counts[1] += int(summed.argmin()) == example.label
            counts[2] += int((summed / scored.clamp(min=1)).argmin()) == example.label
            counts[3] += int((summed / characters).argmin()) == example.label
    total, correct, correct_norm, correct_char = (int(count) for count in all_reduce_sum(counts, device))
    if total == 0:
        raise InputError("no HellaSwag examples to score")
    return {"examples": total, "correct": correct, "correct_norm": correct_norm, "correct_norm_char": correct_char,
            "acc": correct / total, "acc_norm": correct_norm / total, "acc_norm_char": correct_char / total}
