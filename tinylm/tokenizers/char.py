"""The first track's tokenizer: one id per distinct character of the training text, in sorted order."""

from __future__ import annotations

from typing import Any

from ..errors import InputError


class UnknownCharacterError(InputError):
    """Text holds characters the character tokenizer never saw."""


class CharTokenizer:
    """One id per distinct character of the training text, in sorted order."""

    def __init__(self, chars: list[str]):
        if len(set(chars)) != len(chars):
            raise InputError("CharTokenizer characters must be distinct")
        self.chars = list(chars)
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        if not text:
            raise InputError("cannot build a character tokenizer from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError:
            unknown = sorted({ch for ch in text if ch not in self.stoi})
            raise UnknownCharacterError(
                f"text contains {len(unknown)} character(s) this tokenizer does not know: "
                f"{', '.join(repr(ch) for ch in unknown)}. Remove or replace them; the vocabulary is "
                f"{''.join(self.chars)!r}"
            ) from None

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < len(self.chars)]
        if bad:
            raise InputError(f"ids {bad[:5]} are outside this tokenizer's vocabulary of {len(self.chars)} characters")
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "char", "chars": self.chars}
