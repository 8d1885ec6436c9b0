"""Any tokenizer rebuilt from the small JSON-safe dict it describes itself with (`to_dict`): how tokenizers
travel in data folders and checkpoints."""

from __future__ import annotations

import base64
from typing import Any

from ..errors import InputError
from .char import CharTokenizer
from .gpt2 import BPETokenizer, TrimmedBPETokenizer
from .hf_bpe import TrainedBPETokenizer
from .llama import SentencePieceTokenizer
from .pretrained import PretrainedTokenizer

KINDS = {"char": "characters, one token each", "bpe": "GPT-2's BPE", "bpe-trimmed": "GPT-2's BPE trimmed to a corpus",
         "trained_bpe": "a BPE trained on its own text (bpe:N)", "sentencepiece": "SentencePiece",
         "pretrained": "a published model's own"}


def describe_tokenizer(tokenizer) -> str:
    """A tokenizer in words, for messages: its kind and size ("none" for None)."""
    if tokenizer is None:
        return "none"
    kind = tokenizer.to_dict().get("kind")
    return f"{KINDS.get(kind, repr(kind))}, {tokenizer.vocab_size:,} tokens"


def tokenizer_from_dict(values: dict[str, Any]):
    """The tokenizer that `values` (a to_dict() description) describes. A description that is not a dict, names no
    known kind or lacks a field its kind needs is a ValueError saying what is wrong; the caller names the file."""
    if not isinstance(values, dict):
        raise InputError(f"the tokenizer description is {type(values).__name__} {str(values)[:40]!r}, "
                         "not a dict with a 'kind'")
    kind = values.get("kind")
    try:
        if kind == "char":
            return CharTokenizer(values["chars"])
        if kind == "bpe":
            return BPETokenizer(values.get("encoding", "gpt2"))
        if kind == "bpe-trimmed":
            return TrimmedBPETokenizer(values["kept_ids"], values.get("encoding", "gpt2"))
        if kind == "trained_bpe":
            return TrainedBPETokenizer(values["json"])
        if kind == "pretrained":
            return PretrainedTokenizer(values["json"], values.get("bos"), values.get("eos"), values.get("pad"),
                                       bool(values.get("chatml")), values.get("system_prompt"))
        if kind == "sentencepiece":
            return SentencePieceTokenizer(base64.b64decode(values["model"]))
    except KeyError as error:
        raise InputError(f"the {kind!r} tokenizer description has no {error.args[0]!r} field") from None
    except TypeError as error:  # e.g. "chars": 5
        raise InputError(f"the {kind!r} tokenizer description has a field of the wrong type ({error})") from None
    shown = {k: v for k, v in values.items() if k not in ("model", "json")}  # a model's bytes would fill the screen
    raise InputError(f"unknown tokenizer description {shown!r}: expected kind {', '.join(map(repr, KINDS))}")
