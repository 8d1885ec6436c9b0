"""TextStream decodes incrementally: its pieces join to exactly the one-shot decode of the same tokens (characters,
GPT-2's byte-level BPE with characters split over tokens, invalid UTF-8, stop strings), and each token costs the
tokenizer a bounded amount of work, however long the stream."""

import random

import pytest
import torch

from tinylm.config import GPTConfig
from tinylm.generate.stream import stream
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.gpt2 import BPETokenizer

MULTI_BYTE = "Zürich ⛵🪐 你好，世界 🦜 parrot 👩‍👩‍👧 naïve café — 東京タワー 😀😀 ok\n"


class Script(torch.nn.Module):
    """A 'model' whose n-th call predicts script[n] by a wide margin: cheap at any length (it reads no context)."""

    def __init__(self, script: list[int], vocab_size: int):
        super().__init__()
        self.script, self.calls = script, 0
        self.config = GPTConfig(vocab_size=vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=1)

    def forward(self, idx):
        logits = torch.zeros(idx.size(0), 1, self.config.vocab_size)
        logits[:, -1, self.script[min(self.calls, len(self.script) - 1)]] = 10.0
        self.calls += 1
        return logits, None


class CountingTokenizer:
    """A tokenizer that counts the ids its decode is given, over all calls."""

    def __init__(self, tokenizer):
        self.tokenizer, self.decoded_ids = tokenizer, 0
        self.vocab_size = tokenizer.vocab_size

    def encode(self, text):
        return self.tokenizer.encode(text)

    def decode(self, ids):
        self.decoded_ids += len(ids)
        return self.tokenizer.decode(ids)


def streamed(tokenizer, ids, **options):
    """The pieces a stream yields for the scripted `ids`, and the stream."""
    pieces = stream(Script(ids, tokenizer.vocab_size), tokenizer, [0], len(ids), temperature=0, stop_tokens=(),
                    **options)
    return list(pieces), pieces


@pytest.fixture(scope="module")
def gpt2():
    return BPETokenizer("gpt2")


def test_char_pieces_join_to_the_one_shot_decode():
    tokenizer = CharTokenizer.from_text(MULTI_BYTE)
    ids = tokenizer.encode(MULTI_BYTE * 3)
    pieces, _ = streamed(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids) and len(pieces) == len(ids)  # one character per token


def test_bpe_pieces_join_to_the_one_shot_decode_and_never_split_a_character(gpt2):
    ids = gpt2.encode(MULTI_BYTE * 3)
    assert sum("\ufffd" in gpt2.decode([i]) for i in ids) > 10  # many tokens are partial UTF-8 on their own
    pieces, _ = streamed(gpt2, ids)
    assert "".join(pieces) == MULTI_BYTE * 3
    assert not any("\ufffd" in piece for piece in pieces)


@pytest.mark.parametrize("seed", range(5))
def test_random_bpe_tokens_invalid_utf8_included_join_to_the_one_shot_decode(gpt2, seed):
    """Tokens drawn at random, a third of them single bytes (GPT-2's first 256 ids): lone continuation bytes and
    cut characters decode to U+FFFD in the one-shot decode, and exactly there in the stream."""
    rng = random.Random(seed)
    ids = [rng.randrange(256) if rng.random() < 0.33 else rng.randrange(gpt2.vocab_size - 1) for _ in range(300)]
    one_shot = gpt2.decode(ids)
    assert "\ufffd" in one_shot
    pieces, _ = streamed(gpt2, ids)
    assert "".join(pieces) == one_shot


@pytest.mark.parametrize("stop", ["你好", "🦜", "parrot", " 東", "\n", "😀😀 ok", "never there"])
def test_bpe_stop_strings_cut_the_one_shot_decode(gpt2, stop):
    text = MULTI_BYTE * 2
    ids = gpt2.encode(text)
    pieces, reader = streamed(gpt2, ids, stop=stop)
    cut = text.find(stop)
    assert "".join(pieces) == (text if cut < 0 else text[:cut])
    assert reader.stop_reason == ("max_new_tokens" if cut < 0 else "stop_string")
    assert not any(stop in piece for piece in pieces)


def test_the_tokenizer_decodes_a_bounded_number_of_ids_per_token(gpt2):
    """2,000 tokens, multi-byte characters split over tokens among them: decoding the whole continuation at every
    token passes the tokenizer about 2,000,000 ids; an incremental decode a few per token."""
    text = MULTI_BYTE * 80
    ids = gpt2.encode(text)[:2000]
    assert len(ids) == 2000
    tokenizer = CountingTokenizer(gpt2)
    pieces, _ = streamed(tokenizer, ids, stop=["<never>", "\n\n\n"])  # stop strings: text is held back at "\n"
    assert "".join(pieces) == gpt2.decode(ids)
    assert tokenizer.decoded_ids <= 8 * len(ids), tokenizer.decoded_ids


def test_sentencepiece_pieces_join_to_the_one_shot_decode(sentencepiece_model):
    """Byte fallback spells an emoji or a CJK character as single bytes, and a continuation decoded on its own keeps
    the space of its first piece: the stream decodes windows of it and must still give the one-shot text."""
    from tinylm.tokenizers.llama import SentencePieceTokenizer

    tokenizer = SentencePieceTokenizer.from_file(sentencepiece_model)
    ids = tokenizer.encode(MULTI_BYTE * 3)
    assert sum("\ufffd" in tokenizer.decode([i]) for i in ids) > 10  # byte pieces: partial UTF-8 on their own
    pieces, _ = streamed(tokenizer, ids, stop="never there")
    assert "".join(pieces) == tokenizer.decode(ids) == " " + MULTI_BYTE * 3  # the first piece's space kept
