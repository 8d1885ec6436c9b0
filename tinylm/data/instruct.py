"""Instruction data for chat fine-tuning: where it comes from, how a record becomes a conversation, and the split.

"instruct" is Alpaca-cleaned (`yahma/alpaca-cleaned`) online, and offline or when that fails the 1,100-record
Alpaca-style set of Raschka's "Build a Large Language Model (From Scratch)", chapter 7; a path is a JSON or JSONL file
of Alpaca records or of {"messages": [...]}. Records are held out by a hash of their content, so the same ones are
held out whatever the file's order, and the half that chooses the checkpoint (validation) is not the half that
reports (test): a figure measured on the split that chose the checkpoint is biased upward.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..download import RemoteFile, fetch, mirror_dir
from ..errors import InputError, MissingFile
from ..paths import data_dir
from ..tokenizers.chat_template import (
    DEFAULT_SYSTEM_PROMPT,
    ChatFormatError,
    ChatTemplate,
    RenderedChat,
    check_messages,
)

INSTRUCTION_DATA = RemoteFile(
    url="https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/28c65cdfbc3338e2e040016eea4b7fdf556e4d57/"
        "ch07/01_main-chapter-code/instruction-data.json",
    sha256="7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
    mirror_path="instruct/instruction-data.json",
)
HF_INSTRUCT = "yahma/alpaca-cleaned"
COUNTS = ("kept", "truncated", "too_long", "empty_answer", "malformed")


class InstructDataError(InputError):
    """An instruction file that cannot be read at all (not JSON, not a list of records, no usable record)."""


def load_records(data: str, source: str | None = None) -> tuple[list[dict], str]:
    """(records, where they came from) for --data: "instruct" or the path of a JSON/JSONL file.

    source for "instruct": "hf" or "mirror" (the 1,100 records); default "mirror" when $TINYLM_DATA_MIRROR is set.
    """
    if data != "instruct":
        return read_records(data), str(data)
    source = source or ("mirror" if mirror_dir() is not None else "hf")
    if source == "hf":
        try:
            import datasets

            return list(datasets.load_dataset(HF_INSTRUCT, split="train")), f"{HF_INSTRUCT} (Hugging Face)"
        except Exception as error:  # offline, the Hub down, a renamed dataset: the small set still works
            print(f"could not load {HF_INSTRUCT} from Hugging Face ({str(error).splitlines()[0][:120]}); "
                  f"using the 1,100-record instruction set instead")
    path = fetch(INSTRUCTION_DATA, data_dir() / "instruct" / "instruction-data.json")
    return read_records(path), f"instruction-data.json (1,100 Alpaca-style records, {INSTRUCTION_DATA.url})"


def read_records(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no instruction file at {path}; pass --data instruct or a JSON/JSONL file of "
                                "records with instruction/input/output (or messages)")
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise InstructDataError(f"{path} is neither a JSON list nor JSON lines ({error}); fix the file or "
                                "convert it to a list of records") from None
    if not isinstance(records, list) or not records:
        raise InstructDataError(f"{path} holds no records: expected a non-empty list")
    return records


def to_messages(record, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[dict]:
    """An Alpaca record or a {"messages": [...]} record as a conversation that ends with the assistant's answer.

    Raises ChatFormatError for a malformed record and ValueError("empty answer") for an empty one.
    """
    if isinstance(record, dict) and "messages" in record:
        messages = record["messages"]
        check_messages(messages)
        if messages[-1]["role"] != "assistant":
            raise ChatFormatError("the conversation must end with the assistant's answer")
        if messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system_prompt}, *messages]
    else:
        if not isinstance(record, dict):
            raise ChatFormatError(f"a record must be a JSON object, got {record!r:.60}")
        fields = {name: record.get(name) for name in ("instruction", "output")}
        fields["input"] = record.get("input") or ""  # optional, as in Alpaca
        bad = [name for name, value in fields.items() if not isinstance(value, str)]
        if bad or not fields["instruction"].strip():
            raise ChatFormatError(f"record lacks text for {', '.join(bad) or 'instruction'}")
        user = fields["instruction"].strip() + (f"\n\n{fields['input'].strip()}" if fields["input"].strip() else "")
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user},
                    {"role": "assistant", "content": fields["output"].strip()}]
    if not messages[-1]["content"].strip():
        raise InputError("empty answer")
    return messages


def content_hash(record) -> int:
    """A record's place in [0, 2**64), from its content only."""
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def split_records(records: list, val_fraction: float = 0.1, max_val: int | None = 500,
                  key: Callable | None = None) -> tuple[list, list]:
    """(train, held out), each in file order. A record is held out when its content hash falls in the first
    `val_fraction` of the range; at most max_val are (a 52k-record set would otherwise hold out 5k): those with the
    smallest hashes, so that the order of the file does not change which. `key(record)` is what is hashed (default:
    the whole record)."""
    hashes = [content_hash(record if key is None else key(record)) for record in records]
    cutoff = val_fraction * 2**64  # held out: a hash below it
    below = sorted(h for h in hashes if h < cutoff)
    if max_val is not None and len(below) > max_val:
        cutoff = below[max_val - 1] + 1
    held = [i for i, h in enumerate(hashes) if h < cutoff][:max_val]  # ties at the cutoff: file order decides
    held_set = set(held)
    return [record for i, record in enumerate(records) if i not in held_set], [records[i] for i in held]


@dataclass(frozen=True)
class RecordSplit:
    """Records cut three ways by content (`split_three_ways`), each part in file order: `train`; `validation`,
    which chooses (scored at every evaluation; best.pt is its best); `test`, which reports (scored before training
    and on best.pt after it; it chooses nothing)."""

    train: list
    validation: list
    test: list

    def describe(self) -> str:
        return (f"{len(self.train):,} records to train on; held out: {len(self.validation):,} for validation "
                f"(they choose best.pt), {len(self.test):,} for test (they report)")


def split_three_ways(records: list, val_fraction: float = 0.1, max_val: int | None = 500,
                     key: Callable | None = None) -> RecordSplit:
    """`split_records`, its held-out records then cut in two by content: the half with the smaller hashes (at
    least half, so that copies of one record, which hash alike, stay on one side) is the validation split, the rest
    the test split. Neither depends on the order of the file."""
    train, held_out = split_records(records, val_fraction, max_val, key)
    hashes = [content_hash(record if key is None else key(record)) for record in held_out]
    ranked = sorted(hashes)
    cutoff = ranked[(len(ranked) - 1) // 2] if ranked else 0  # validation: a hash at most the median
    return RecordSplit(train, [r for r, h in zip(held_out, hashes) if h <= cutoff],
                       [r for r, h in zip(held_out, hashes) if h > cutoff])


@dataclass
class ChatExamples:
    """Conversations ready for training: their messages, their ids with the answer mask, and what the rules did."""

    messages: list[list[dict]]
    rendered: list[RenderedChat]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))

    def __len__(self) -> int:
        return len(self.rendered)

    def describe(self) -> str:
        c = self.counts
        return (f"{c['kept']:,} conversations ({c['truncated']} shortened by their oldest turns); skipped: "
                f"{c['too_long']} longer than the context, {c['empty_answer']} with an empty answer, "
                f"{c['malformed']} malformed")


def fit_to_context(template: ChatTemplate, messages: list[dict],
                   max_tokens: int) -> tuple[list[dict], RenderedChat] | None:
    """Drop the oldest user/assistant exchanges (never the system prompt) until the conversation has at most
    max_tokens tokens; None when even its last exchange is too long."""
    system, turns = ([messages[0]], messages[1:]) if messages[0]["role"] == "system" else ([], messages)
    while turns:
        rendered = template.render(system + turns)
        if len(rendered) <= max_tokens:
            return system + turns, rendered
        turns = turns[2:]
    return None


def build_examples(records: list, template: ChatTemplate, block_size: int,
                   system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> ChatExamples:
    """Records as conversations to train on, counting what cannot be learned as it is (`ChatExamples.counts`):
    malformed records and empty answers are skipped; a conversation longer than the context loses its oldest
    exchanges (the system prompt stays) and is skipped when its last exchange alone does not fit. The answer is
    never cut: without its closing <|im_end|> it would teach the model not to stop. A conversation of
    block_size + 1 tokens fits: it gives block_size (input, target) pairs."""
    examples = ChatExamples([], [])
    for record in records:
        try:
            messages = to_messages(record, system_prompt)
        except ChatFormatError:
            examples.counts["malformed"] += 1
            continue
        except ValueError:
            examples.counts["empty_answer"] += 1
            continue
        fitted = fit_to_context(template, messages, block_size + 1)
        if fitted is None:
            examples.counts["too_long"] += 1
            continue
        examples.counts["truncated"] += len(fitted[0]) < len(messages)
        examples.messages.append(fitted[0])
        examples.rendered.append(fitted[1])
        examples.counts["kept"] += 1
    return examples
