"""A byte-level BPE trained on your own text (`--tokenizer bpe:N`), with Hugging Face `tokenizers`.

GPT-2's recipe (notebook 4): GPT-2's regex cuts the text into pieces, whose UTF-8 bytes are the 256 starting tokens,
and merges of frequent neighbours are learned until the vocabulary holds N tokens, one of them <|endoftext|>; any
text encodes and decodes back exactly. `tokenizers` trains it because it encodes faster than the course's own
trainer (tinylm.tokenizers.bpe). Special tokens are never made from text. The whole tokenizer is the JSON
`tokenizers.Tokenizer.to_str()` writes, saved as is in checkpoints and exported as tokenizer.json.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..errors import InputError
from . import EOT

MIN_VOCAB = 257  # the 256 bytes and <|endoftext|>
MAX_VOCAB = 65_536  # token files store ids as uint16


class HFTokenizer:
    """A Hugging Face `tokenizers.Tokenizer`, from its serialised JSON: what a trained BPE and a published model's
    tokenizer (tinylm.tokenizers.pretrained) share. Special-token text in a text stays text."""

    def __init__(self, json: str, what: str):
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_str(json)
        except Exception as error:  # tokenizers raises a bare Exception on malformed JSON
            raise InputError(f"the {what}'s JSON cannot be read ({error})") from None
        self.tokenizer.encode_special_tokens = True  # "<|endoftext|>" in a text is text, not the special token

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Many texts at once, on every core (the Rust side releases the GIL)."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_id(self, token: str) -> int | None:
        """The id of a special token such as <|im_end|>, or None if this tokenizer lacks it."""
        return self.tokenizer.token_to_id(token)


class TrainedBPETokenizer(HFTokenizer):
    """A byte-level BPE learned from a text; `json` is a `tokenizers.Tokenizer`'s serialised form."""

    def __init__(self, json: str):
        super().__init__(json, "trained BPE tokenizer")
        self.eot_token = self.tokenizer.token_to_id(EOT)
        if self.eot_token is None:
            raise InputError(f"the trained BPE tokenizer has no {EOT} token")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, length: int | None = None,
              show_progress: bool = True) -> "TrainedBPETokenizer":
        """Learn a BPE of at most `vocab_size` tokens (fewer if the texts run out of pairs) from `texts`."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
            raise InputError(f"bpe:{vocab_size}: a byte-level BPE has {MIN_VOCAB} to {MAX_VOCAB:,} tokens (the 256 "
                             f"bytes and {EOT} at least, uint16 token files at most); try bpe:4096")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=show_progress,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
        return cls(tokenizer.to_str())

    def with_chat_tokens(self, tokens: Iterable[str]) -> "TrainedBPETokenizer":
        """A copy with `tokens` added as special tokens after the learned ones (ids unchanged)."""
        from tokenizers import AddedToken, Tokenizer

        grown = Tokenizer.from_str(self.tokenizer.to_str())
        grown.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in tokens])
        return TrainedBPETokenizer(grown.to_str())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "trained_bpe", "json": self.tokenizer.to_str()}
