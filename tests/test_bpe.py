"""The readable GPT-2 BPE (tinylm.tokenizers.bpe) against tiktoken, the BPE training loop, and the chat tokenizer."""

from __future__ import annotations

from collections import Counter

import pytest

from tinylm.data.corpora import TINY_SHAKESPEARE, TINYSTORIES_SAMPLE
from tinylm.download import fetch
from tinylm.tokenizers.bpe import GPT2BPE, bpe_decode, bytes_to_unicode, pretokenize, train_bpe, train_bpe_incremental
from tinylm.tokenizers.gpt2 import CHAT_SPECIAL_TOKENS, BPETokenizer, padded_vocab_size

VARIED_TEXT = (
    "Hello, world! Héllo wörld, café, naïve, Ångström; Привет мир; 日本語のテキスト、中文字符。\n"
    "Emoji: 🙂👍🏽🇫🇷 and ZWJ 👩‍👩‍👧 — dashes – and “quotes”.\n"
    "I'm sure you'll see they're here, it's done, we've won, he'd go. DON'T SHOUT'S\n"
    "Numbers: 0 7 42 2024 3.14159 1,000,000 -12e-3 0x1F ½ ² ٣\n"
    "Whitespace:  two   three    four\t\ttabs\t \n\n\nthree newlines\r\nCRLF \u00a0nbsp\u2009thin\n"
    "   leading and trailing spaces   \n"
    "code: def f(x): return x**2  # comment <|endoftext|> <|im_start|>\n"
    "    indented\n        more"
)


@pytest.fixture(scope="module")
def readable() -> GPT2BPE:
    return GPT2BPE()


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return BPETokenizer("gpt2")


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory) -> str:
    path = fetch(TINY_SHAKESPEARE, tmp_path_factory.mktemp("shakespeare") / "input.txt")
    return path.read_text(encoding="utf-8")


def test_byte_map_is_a_bijection_onto_printable_characters():
    mapping = bytes_to_unicode()
    assert sorted(mapping) == list(range(256))
    assert len(set(mapping.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in mapping.values())
    assert mapping[ord(" ")] == "Ġ" and mapping[ord("\n")] == "Ċ" and mapping[ord("A")] == "A"


def test_pretokenize_splits_like_gpt2_and_keeps_every_character():
    assert pretokenize("Hello world, it's 2024!  ") == ["Hello", " world", ",", " it", "'s", " 2024", "!", "  "]
    assert "".join(pretokenize(VARIED_TEXT)) == VARIED_TEXT


def test_readable_bpe_matches_tiktoken_token_for_token(readable, gpt2):
    assert readable.encode(VARIED_TEXT) == gpt2.encoding.encode_ordinary(VARIED_TEXT)
    assert readable.encode("") == []


def test_readable_bpe_matches_tiktoken_on_shakespeare(readable, gpt2, shakespeare):
    text = shakespeare[:20_000]
    assert readable.encode(text) == gpt2.encoding.encode_ordinary(text)


@pytest.mark.parametrize("text", [VARIED_TEXT, "a", " ", "🙂", "\n\n", "<|endoftext|>"])
def test_readable_bpe_decode_round_trips(readable, text):
    assert readable.decode(readable.encode(text)) == text


def test_readable_bpe_decodes_tiktoken_ids(readable, gpt2):
    ids = gpt2.encode(VARIED_TEXT)
    assert readable.decode(ids) == gpt2.decode(ids) == VARIED_TEXT


SMALL_TEXT = "the cat sat on the mat. the cat ate the rat; that is that. " * 4 + "Thé end 🙂"


def test_first_learned_merge_is_the_most_frequent_pair():
    merges, _ = train_bpe(SMALL_TEXT, 5)
    # Counted independently: adjacent byte pairs inside each GPT-2 pre-token of the text.
    counts = Counter()
    for piece in pretokenize(SMALL_TEXT):
        data = piece.encode("utf-8")
        counts.update(zip(data, data[1:]))
    first_pair, first_id = next(iter(merges.items()))
    assert first_id == 256
    assert counts[first_pair] == max(counts.values())
    assert list(merges.values()) == list(range(256, 256 + len(merges))), "new ids in learning order"


def test_learned_merges_round_trip_and_compress_more_with_more_merges():
    results = []  # (merges learned, tokens of the training text)
    for num_merges in range(0, 60, 3):
        merges, encode = train_bpe(SMALL_TEXT, num_merges)
        ids = encode(SMALL_TEXT)
        assert bpe_decode(ids, merges) == SMALL_TEXT
        assert bpe_decode(encode("unseen words, ünïcode 日本"), merges) == "unseen words, ünïcode 日本"
        results.append((len(merges), len(ids)))
    assert results[0] == (0, len(SMALL_TEXT.encode("utf-8"))), "no merges: one token per byte"
    for (merges_before, tokens_before), (merges_after, tokens_after) in zip(results, results[1:]):
        if merges_after > merges_before:
            assert tokens_after < tokens_before, f"each merge must shorten the text: {results}"
        else:  # every pre-token is already one token: training stopped early
            assert tokens_after == tokens_before
    assert results[-1][0] < 60, "the small text should run out of pairs to merge"


def test_training_stops_when_nothing_is_left_to_merge():
    merges, encode = train_bpe("ab ab", 100)
    assert len(merges) == 2  # "ab", then " ab"... and nothing else to merge
    assert encode("ab ab") == [256, 257]


@pytest.fixture(scope="module")
def tinystories(tmp_path_factory) -> str:
    path = fetch(TINYSTORIES_SAMPLE, tmp_path_factory.mktemp("tinystories") / "sample.txt")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("corpus, chars, num_merges", [("shakespeare", 30_000, 300), ("tinystories", 60_000, 400)])
def test_incremental_training_learns_the_recounts_merges_in_order(corpus, chars, num_merges, request):
    text = request.getfixturevalue(corpus)[:chars]
    recounted, _ = train_bpe(text, num_merges)
    incremental, encode = train_bpe_incremental(text, num_merges)
    assert len(recounted) == num_merges
    assert list(incremental.items()) == list(recounted.items()), "same pairs, same ids, same order (ties included)"
    assert bpe_decode(encode(text), incremental) == text


@pytest.mark.parametrize("text", ["ab ab", "aaaa aaa aa a aaaaaaa", SMALL_TEXT, "ba ab ba ab cd dc"])
def test_incremental_training_agrees_on_runs_ties_and_running_out(text):
    """Runs of one byte ("aaaa" merges to "XX"), pairs tied in count, and training that stops early."""
    assert list(train_bpe_incremental(text, 100)[0].items()) == list(train_bpe(text, 100)[0].items())


def test_chat_tokenizer_special_tokens():
    chat = BPETokenizer("gpt2-chat")
    assert chat.vocab_size == 50260 and padded_vocab_size(chat.vocab_size) == 50304
    assert CHAT_SPECIAL_TOKENS == {"<|im_start|>": 50257, "<|im_end|>": 50258, "<|pad|>": 50259}
    text = "<|im_start|>user\nhi<|im_end|><|pad|>"
    ordinary = chat.encode(text)
    assert not set(ordinary) & set(CHAT_SPECIAL_TOKENS.values()), "special strings stay ordinary text by default"
    assert ordinary == BPETokenizer("gpt2").encode(text)
    special = chat.encode(text, allow_special=True)
    assert special[0] == 50257 and special[-2:] == [50258, 50259]
    assert chat.decode(special) == chat.decode(ordinary) == text
    assert chat.encode("<|endoftext|>", allow_special=True) == [50256]
