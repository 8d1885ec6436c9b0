"""GPT-2's byte-level BPE through tiktoken (`BPETokenizer`, plain or with the chat tokens), and a copy trimmed to the
tokens a corpus uses (`TrimmedBPETokenizer`), whose output layer is that much narrower.

tiktoken downloads its BPE files on first use and caches them in $TIKTOKEN_CACHE_DIR; offline, that variable is
pointed at the offline mirror's `tiktoken_cache/` when $TINYLM_DATA_MIRROR is set.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..download import mirror_dir
from ..errors import InputError, TinyLMError


class TokenizerUnavailable(TinyLMError, RuntimeError):
    """GPT-2's BPE files could not be loaded (offline without a cache or mirror)."""


# Chat markers added after GPT-2's 50,257 tokens (ids 50257, 50258, 50259), for the chat track.
CHAT_SPECIAL_TOKENS = {"<|im_start|>": 50257, "<|im_end|>": 50258, "<|pad|>": 50259}


class BPETokenizer:
    """GPT-2's byte-level BPE via tiktoken: any text encodes, nothing is unknown.

    encoding "gpt2" is GPT-2's own; "gpt2-chat" is the same BPE extended with CHAT_SPECIAL_TOKENS
    through tiktoken's Encoding constructor. Special-token strings that occur in ordinary text are
    encoded as the ordinary text they are unless `allow_special=True` is passed to `encode`.
    """

    def __init__(self, encoding_name: str = "gpt2"):
        if encoding_name not in ("gpt2", "gpt2-chat"):
            raise InputError(f"unknown BPE encoding {encoding_name!r}; choose 'gpt2' or 'gpt2-chat'")
        _use_mirror_tiktoken_cache()
        import tiktoken

        try:
            gpt2 = tiktoken.get_encoding("gpt2")
        except Exception as error:  # tiktoken raises requests/urllib errors when it cannot download
            raise TokenizerUnavailable(
                f"could not load GPT-2's BPE files ({error}). Offline, set TIKTOKEN_CACHE_DIR "
                "to a folder with tiktoken's cached files, or TINYLM_DATA_MIRROR to a mirror that has "
                "tiktoken_cache/ (see README, 'Offline mirror')."
            ) from error
        if encoding_name == "gpt2-chat":
            gpt2 = tiktoken.Encoding(
                name="gpt2-chat",
                pat_str=gpt2._pat_str,
                mergeable_ranks=gpt2._mergeable_ranks,
                special_tokens={**gpt2._special_tokens, **CHAT_SPECIAL_TOKENS},
            )
        self.encoding = gpt2
        self.encoding_name = encoding_name
        self.eot_token = self.encoding.eot_token

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        if allow_special:
            return self.encoding.encode(text, allowed_special="all")
        return self.encoding.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.encoding.decode([int(i) for i in ids])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "bpe", "encoding": self.encoding_name}


class TrimmedBPETokenizer:
    """GPT-2 tokenization with an output layer only as wide as the tokens a corpus uses.

    A small model on a CPU spends most of its time in the 50,257-wide output layer, although a
    corpus like TinyStories uses under 7,000 distinct GPT-2 tokens. Text is tokenized exactly as
    GPT-2 does it; each kept GPT-2 id gets a compact id (its position in `kept_ids`), and every
    other GPT-2 id becomes one <unk> id at the end.

    Losses stay per GPT-2 token: <unk> stands for `dropped` GPT-2 tokens at once, so evaluation
    spreads its probability evenly over them, i.e. adds `unk_penalty` = ln(dropped) nats to every
    <unk> target. The result is the loss of a proper distribution over GPT-2's whole vocabulary.
    """

    def __init__(self, kept_ids: list[int], encoding_name: str = "gpt2"):
        self.base = BPETokenizer(encoding_name)
        self.kept_ids = [int(i) for i in kept_ids]
        if (len(set(self.kept_ids)) != len(self.kept_ids)
                or not all(0 <= i < self.base.vocab_size for i in self.kept_ids)):
            raise InputError("kept_ids must be distinct ids of the base vocabulary")
        self.unk_id = len(self.kept_ids)
        self._compact = np.full(self.base.vocab_size, self.unk_id, dtype=np.int64)  # GPT-2 id -> compact id
        self._compact[self.kept_ids] = np.arange(len(self.kept_ids))
        dropped = self.base.vocab_size - len(self.kept_ids)
        self.unk_penalty = math.log(dropped) if dropped > 1 else 0.0
        self.eot_token = int(self._compact[self.base.eot_token])

    @classmethod
    def from_ids(cls, gpt2_ids, encoding_name: str = "gpt2") -> "TrimmedBPETokenizer":
        """Keep the distinct ids of a token array (e.g. the training split), in GPT-2 order."""
        return cls(np.unique(np.asarray(gpt2_ids)).tolist(), encoding_name)

    @property
    def vocab_size(self) -> int:
        return len(self.kept_ids) + 1

    def compact(self, gpt2_ids):
        """GPT-2 ids (any array) -> compact ids."""
        return self._compact[np.asarray(gpt2_ids, dtype=np.int64)]

    def encode(self, text: str) -> list[int]:
        return self.compact(self.base.encode(text)).tolist()

    def decode(self, ids) -> str:
        pieces = [self.kept_ids[int(i)] if int(i) < self.unk_id else None for i in ids]
        out, run = [], []
        for gpt2_id in pieces:
            if gpt2_id is None:
                out.append(self.base.decode(run) + "\N{REPLACEMENT CHARACTER}")
                run = []
            else:
                run.append(gpt2_id)
        return "".join(out) + self.base.decode(run)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "bpe-trimmed", "encoding": self.base.encoding_name, "kept_ids": self.kept_ids}


def padded_vocab_size(vocab_size: int, multiple: int = 64) -> int:
    """The embedding size to allocate: vocab_size rounded up to a multiple of 64, which matmul kernels run faster on."""
    return -(-vocab_size // multiple) * multiple


def _use_mirror_tiktoken_cache() -> None:
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    mirror = mirror_dir()
    if mirror is not None and (mirror / "tiktoken_cache").is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(mirror / "tiktoken_cache")
