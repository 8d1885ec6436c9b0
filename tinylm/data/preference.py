"""Preference data for DPO: where it comes from, the rules a record must follow, the held-out split, and pairs.

"preference" is the 1,100-record set of Raschka's "Build a Large Language Model (From Scratch)", chapter 7:
tinylm.data.instruct's offline records, each with a `chosen` and a `rejected` answer made by having a local model
rewrite the output politely or impolitely, so one side of every pair is the answer SFT trains on. DPO must hold out
the records SFT held out, or it would be scored on instructions SFT trained on: `split_preferences` hashes what SFT's
record holds, so its validation and test halves are exactly SFT's (tests/test_dpo_train.py checks it on the real
files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..download import RemoteFile, fetch
from ..paths import data_dir
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ChatTemplate, RenderedChat
from .conversations import pad_conversations
from .instruct import InstructDataError, RecordSplit, read_records, split_three_ways

PREFERENCE_DATA = RemoteFile(
    url="https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/28c65cdfbc3338e2e040016eea4b7fdf556e4d57/"
        "ch07/04_preference-tuning-with-dpo/instruction-data-with-preference.json",
    sha256="305315abf14f65fa42c01a0877572f832606571c2a7d49f152ac1d758b16756e",
    mirror_path="instruct/instruction-data-with-preference.json",
)
REQUIRED = ("instruction", "chosen", "rejected")
SPLIT_FIELDS = ("instruction", "input", "output")  # what SFT's record holds: its hash decides the held-out split
COUNTS = ("kept", "empty_answer", "identical", "too_long")


class PreferenceDataError(InstructDataError):
    """A preference file that cannot be used: unreadable, or a record without one of its texts (named)."""


def load_preferences(data: str) -> tuple[list[dict], str]:
    """(checked records, where they came from) for --data: "preference" or the path of a JSON/JSONL file."""
    if data == "preference":
        path = fetch(PREFERENCE_DATA, data_dir() / "instruct" / "instruction-data-with-preference.json")
        source = f"instruction-data-with-preference.json (1,100 preference pairs, {PREFERENCE_DATA.url})"
    else:
        path, source = Path(data), str(data)
        if not path.is_file():
            raise PreferenceDataError(f"no preference file at {path}; pass --data preference or a JSON/JSONL file "
                                      "of records with instruction, input (optional), chosen and rejected")
    records = read_records(path)
    check_preferences(records, source)
    return records, source


def check_preferences(records: Sequence, source: str) -> None:
    """Raise PreferenceDataError naming the first record (1-based) that lacks text for a field DPO needs."""
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise PreferenceDataError(f"{source}: record {number} is not a JSON object ({record!r:.60})")
        missing = [name for name in REQUIRED if not isinstance(record.get(name), str)]
        if not isinstance(record.get("input", ""), str):
            missing.append("input")
        if missing:
            what = f" ({record['instruction'][:50]!r})" if isinstance(record.get("instruction"), str) else ""
            raise PreferenceDataError(
                f"{source}: record {number}{what} has no text for {', '.join(repr(m) for m in missing)}; every "
                "record needs instruction, chosen (the preferred answer) and rejected (the dispreferred one)")


def split_view(record: dict) -> dict:
    """What decides a preference record's split: its SPLIT_FIELDS, as SFT's record holds them."""
    return {name: record[name] for name in SPLIT_FIELDS if name in record}


def split_preferences(records: list[dict], val_fraction: float = 0.1) -> RecordSplit:
    """Train, validation and test records, each in file order: SFT's three-way split of the same instructions."""
    return split_three_ways(records, val_fraction, key=split_view)


def prompt_messages(record: dict, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[dict]:
    """The conversation up to the answer: the system prompt and the user's turn (instruction, then input)."""
    user = record["instruction"].strip()
    if (record.get("input") or "").strip():
        user += "\n\n" + record["input"].strip()
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class PreferencePair:
    """One prompt with its chosen and rejected answers, rendered; its length is the longer conversation's."""

    chosen: RenderedChat
    rejected: RenderedChat

    def __len__(self) -> int:
        return max(len(self.chosen), len(self.rejected))


@dataclass
class PreferencePairs:
    """Pairs ready for DPO and what the rules did to the records."""

    pairs: list[PreferencePair]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))

    def __len__(self) -> int:
        return len(self.pairs)

    def describe(self) -> str:
        c = self.counts
        return (f"{c['kept']:,} pairs; skipped: {c['identical']} with chosen = rejected, {c['empty_answer']} with "
                f"an empty answer, {c['too_long']} longer than the context")


def build_pairs(records: Sequence[dict], template: ChatTemplate, block_size: int,
                system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> PreferencePairs:
    """Checked records as pairs; those that cannot teach are skipped and counted (`PreferencePairs.counts`): an
    empty answer, chosen equal to rejected, a conversation longer than the context (answers are never cut). A
    conversation of block_size + 1 tokens fits."""
    built = PreferencePairs([])
    for record in records:
        chosen, rejected = record["chosen"].strip(), record["rejected"].strip()
        if not chosen or not rejected:
            built.counts["empty_answer"] += 1
            continue
        if chosen == rejected:
            built.counts["identical"] += 1
            continue
        prompt = prompt_messages(record, system_prompt)
        rendered = [template.render([*prompt, {"role": "assistant", "content": answer}])
                    for answer in (chosen, rejected)]
        if max(len(r) for r in rendered) > block_size + 1:
            built.counts["too_long"] += 1
            continue
        built.pairs.append(PreferencePair(*rendered))
        built.counts["kept"] += 1
    return built


def pad_pairs(pairs: Sequence[PreferencePair], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y), each (2B, width): rows 0..B-1 the chosen conversations, rows B..2B-1 the rejected ones, padded to
    the longest of all, targets -1 except on answer tokens (tinylm.data.conversations.pad_conversations)."""
    return pad_conversations([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
