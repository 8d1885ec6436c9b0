"""Any tokenizer rebuilt from the small JSON-safe dict it describes itself with (`to_dict`): how tokenizers
travel in data folders and checkpoints."""

from __future__ import annotations

import base64
from typing import Any

from .char import CharTokenizer
from .gpt2 import BPETokenizer, TrimmedBPETokenizer
from .llama import SentencePieceTokenizer


def tokenizer_from_dict(values: dict[str, Any]):
    kind = values.get("kind")
    if kind == "char":
        return CharTokenizer(values["chars"])
    if kind == "bpe":
        return BPETokenizer(values.get("encoding", "gpt2"))
    if kind == "bpe-trimmed":
        return TrimmedBPETokenizer(values["kept_ids"], values.get("encoding", "gpt2"))
    if kind == "sentencepiece":
        return SentencePieceTokenizer(base64.b64decode(values["model"]))
    shown = {k: v for k, v in values.items() if k != "model"}  # a SentencePiece model's bytes would fill the screen
    raise ValueError(f"unknown tokenizer description {shown!r}: "
                     "expected kind 'char', 'bpe', 'bpe-trimmed' or 'sentencepiece'")
