"""Llama 2's SentencePiece tokenizer, for imported Llama-family models (llama2.c's TinyStories models use it)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingFile

SPACE_PIECE = "\N{LOWER ONE EIGHTH BLOCK}"  # "▁": SentencePiece's space, glued to the start of a piece


class SentencePieceTokenizer:
    """A SentencePiece model, such as Llama 2's 32,000-token `tokenizer.model`, through the `sentencepiece` package.

    Beginning of text. Llama's texts start with a BOS token (id 1). llama2.c trains its TinyStories models
    on every story encoded as [BOS, *story], so BOS also separates one story from the next, and its run.c
    stops generating when the model produces it. BOS therefore plays the part GPT-2's <|endoftext|> plays
    in tinylm, and `eot_token` is the BOS id: evaluation scores a text after it, an empty prompt starts
    from it, and generation stops at it. `encode` returns the text's own pieces (as BPETokenizer does);
    encode(text, bos=True) puts BOS in front.

    Spaces. SentencePiece turns a space into "▁" glued to the next piece, and it adds one at the start
    of every text (its "dummy prefix"), which its decoder drops again. A continuation decoded on its own,
    though, begins with a real space ("Once upon a time" + "▁there"), so `decode` keeps the space of the
    first piece unless the ids start with BOS, as run.c does: decode(encode(text, bos=True)) == text, and
    streamed text keeps the space between the prompt and what follows.

    The model file's bytes travel with the tokenizer (`to_dict`, base64), so a checkpoint needs nothing else.
    """

    def __init__(self, model_proto: bytes):
        try:
            import sentencepiece
        except ImportError as error:
            raise ImportError("SentencePiece tokenizers need sentencepiece: pip install sentencepiece") from error
        try:
            self.processor = sentencepiece.SentencePieceProcessor(model_proto=bytes(model_proto))
        except RuntimeError as error:
            raise InputError(
                "these bytes are not a SentencePiece model: expected a tokenizer.model file (llama2.c's "
                "tokenizer.bin is a different format; use the tokenizer.model next to it)"
            ) from error
        self.model_proto = bytes(model_proto)
        self.bos_token, self.eos_token = self.processor.bos_id(), self.processor.eos_id()
        if self.bos_token < 0:
            raise InputError("this SentencePiece model has no BOS piece, which tinylm starts every text from; "
                             "train it with bos_id=1, as Llama's is")
        self.eot_token = self.bos_token

    @classmethod
    def from_file(cls, path: str | Path) -> "SentencePieceTokenizer":
        path = Path(path)
        if not path.is_file():
            raise MissingFile(f"no SentencePiece model at {path}; check the path (Llama's is tokenizer.model)")
        try:
            return cls(path.read_bytes())
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str, bos: bool = False) -> list[int]:
        ids = self.processor.encode(text)
        return [self.bos_token, *ids] if bos else ids

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"ids {bad[:5]} are outside this tokenizer's vocabulary of {self.vocab_size:,} pieces")
        text = self.processor.decode(ids)
        first = next((i for i in ids if not self.processor.is_control(i)), None)
        if first is not None and ids[0] != self.bos_token and self.processor.id_to_piece(first).startswith(SPACE_PIECE):
            text = " " + text  # sentencepiece dropped this space as if it were the dummy prefix of a new text
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "sentencepiece", "model": base64.b64encode(self.model_proto).decode("ascii")}
