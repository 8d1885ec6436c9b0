"""Character and GPT-2 BPE tokenizers: round trips, persistence, and error messages."""

import os

import numpy as np
import pytest
import torch

from tinylm.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    UnknownCharacterError,
    _use_mirror_tiktoken_cache,
    tokenizer_from_dict,
)

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\tAll: Speak, speak! «été» 日本 😀"


def test_char_tokenizer_vocabulary_is_the_sorted_distinct_characters():
    tok = CharTokenizer.from_text(TEXT)
    assert tok.chars == sorted(set(TEXT))
    assert tok.vocab_size == len(set(TEXT))


def test_char_tokenizer_round_trip():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    assert len(ids) == len(TEXT)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == TEXT
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_char_tokenizer_decodes_tensors_and_numpy_ids():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode("hear me")
    assert tok.decode(torch.tensor(ids)) == "hear me"
    assert tok.decode(np.array(ids, dtype=np.uint16)) == "hear me"


def test_char_tokenizer_save_load_round_trip(tmp_path):
    tok = CharTokenizer.from_text(TEXT + '"\\\r\x00')
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    loaded = CharTokenizer.load(path)
    assert isinstance(loaded, CharTokenizer)
    assert loaded.chars == tok.chars
    assert loaded.encode(TEXT) == tok.encode(TEXT)


def test_unknown_characters_error_names_each_of_them():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(UnknownCharacterError) as info:
        tok.encode("a cab Xyz!X")
    message = str(info.value)
    for ch in "Xyz!":
        assert repr(ch) in message
    assert "4 character" in message  # each distinct unknown counted once
    assert isinstance(info.value, ValueError)


def test_char_tokenizer_rejects_duplicate_characters():
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer(["a", "b", "a"])


def test_char_tokenizer_rejects_empty_text():
    with pytest.raises(ValueError):
        CharTokenizer.from_text("")


def test_tokenizer_from_dict_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="kind"):
        tokenizer_from_dict({"kind": "wordpiece"})


@pytest.fixture(scope="module")
def gpt2():
    return BPETokenizer("gpt2")  # offline: the mirror's tiktoken_cache (set by the root conftest.py)


def test_bpe_encodes_the_gpt2_reference_sentence(gpt2):
    assert gpt2.encode("Hello, I am a language model,") == [15496, 11, 314, 716, 257, 3303, 2746, 11]
    assert gpt2.vocab_size == 50257
    assert gpt2.eot_token == 50256


@pytest.mark.parametrize(
    "text",
    [
        TEXT,
        "",
        " leading and trailing spaces  ",
        "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich",
        "数学是科学的皇后。 Математика — царица наук. الرياضيات ملكة العلوم",
        "emoji: 👩‍👩‍👧‍👦 🇫🇷 e\u0301 \u200b zero-width, combining accent",
        "code:\n\tdef f(x):\r\n\t\treturn x ** 2  # ∑ ∫ ≠\x00\x7f",
    ],
)
def test_bpe_decode_round_trips_unicode(gpt2, text):
    ids = gpt2.encode(text)
    assert all(0 <= i < gpt2.vocab_size for i in ids)
    assert gpt2.decode(ids) == text


def test_endoftext_inside_text_is_ordinary_text(gpt2):
    text = "one story ends<|endoftext|>another begins"
    ids = gpt2.encode(text)
    assert gpt2.eot_token not in ids
    assert gpt2.decode(ids) == text


def test_bpe_description_round_trips(gpt2):
    rebuilt = tokenizer_from_dict(gpt2.to_dict())
    assert isinstance(rebuilt, BPETokenizer)
    assert rebuilt.encode(TEXT) == gpt2.encode(TEXT)


def test_bpe_finds_the_tiktoken_cache_in_the_mirror(monkeypatch, tmp_path):
    (tmp_path / "tiktoken_cache").mkdir()
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("TINYLM_DATA_MIRROR", str(tmp_path))
    _use_mirror_tiktoken_cache()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / "tiktoken_cache")


@pytest.mark.parametrize("bad_id", [-1, 3])
def test_char_decode_rejects_ids_outside_the_vocabulary(bad_id):
    with pytest.raises(ValueError, match="outside"):
        CharTokenizer(["a", "b", "c"]).decode([0, bad_id])
