"""Character and GPT-2 BPE tokenizers: round trips, persistence, and error messages."""

import json
import math
import os

import numpy as np
import pytest
import torch

from tinylm.tokenizers.char import CharTokenizer, UnknownCharacterError
from tinylm.tokenizers.gpt2 import BPETokenizer, TrimmedBPETokenizer, _use_mirror_tiktoken_cache
from tinylm.tokenizers.saved import tokenizer_from_dict

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


def test_char_tokenizer_round_trips_through_its_saved_description():
    tok = CharTokenizer.from_text(TEXT + '"\\\r\x00')
    loaded = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict(), ensure_ascii=False)))
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


KEPT_TEXT = "Once upon a time, a little cat sat on the mat."


@pytest.fixture(scope="module")
def trimmed(gpt2):
    return TrimmedBPETokenizer.from_ids([*gpt2.encode(KEPT_TEXT), gpt2.eot_token])


def test_trimmed_tokenizer_keeps_the_ids_it_was_built_from_in_gpt2_order(gpt2, trimmed):
    assert trimmed.kept_ids == sorted(set(gpt2.encode(KEPT_TEXT)) | {gpt2.eot_token})
    assert trimmed.vocab_size == len(trimmed.kept_ids) + 1 and trimmed.unk_id == len(trimmed.kept_ids)
    assert trimmed.kept_ids[trimmed.eot_token] == gpt2.eot_token


def test_trimmed_tokenizer_round_trips_text_whose_tokens_are_all_kept(gpt2, trimmed):
    text = "Once upon a little cat sat on a mat."
    ids = trimmed.encode(text)
    assert len(ids) == len(gpt2.encode(text)) and max(ids) < trimmed.unk_id  # same tokenization, compact ids
    assert [trimmed.kept_ids[i] for i in ids] == gpt2.encode(text)
    assert trimmed.decode(ids) == text
    assert trimmed.decode(torch.tensor(ids)) == text


def test_trimmed_tokenizer_maps_tokens_it_dropped_to_unk(gpt2, trimmed):
    text = "the cat sat on a dog."
    ids = trimmed.encode(text)
    unknown = [i for i, gpt2_id in enumerate(gpt2.encode(text)) if gpt2_id not in trimmed.kept_ids]
    assert unknown and [i for i, t in enumerate(ids) if t == trimmed.unk_id] == unknown
    assert trimmed.decode(ids).count("\N{REPLACEMENT CHARACTER}") == len(unknown)
    np.testing.assert_array_equal(trimmed.compact(np.array(gpt2.encode(text), dtype=np.uint16)), ids)


def test_trimmed_tokenizer_description_round_trips(trimmed):
    description = trimmed.to_dict()
    assert description["kind"] == "bpe-trimmed"
    rebuilt = tokenizer_from_dict(json.loads(json.dumps(description)))  # JSON-safe, as in checkpoints
    assert isinstance(rebuilt, TrimmedBPETokenizer) and rebuilt.kept_ids == trimmed.kept_ids
    assert rebuilt.encode("the cat sat on a dog.") == trimmed.encode("the cat sat on a dog.")


def test_trimmed_unk_penalty_spreads_unk_over_every_dropped_gpt2_token(trimmed):
    assert trimmed.unk_penalty == pytest.approx(math.log(50257 - len(trimmed.kept_ids)))
    with pytest.raises(ValueError, match="distinct"):
        TrimmedBPETokenizer([1, 1])


@pytest.fixture(scope="module")
def sentencepiece_tokenizer(sentencepiece_model):
    from tinylm.tokenizers.llama import SentencePieceTokenizer

    return SentencePieceTokenizer.from_file(sentencepiece_model)


@pytest.mark.parametrize("text", [TEXT, "", "  two leading spaces, and  two inside", "digits 2024 and\n\nnewlines\n"])
def test_sentencepiece_round_trips_text_from_bos(sentencepiece_tokenizer, text):
    tok = sentencepiece_tokenizer
    assert (tok.vocab_size, tok.bos_token, tok.eos_token, tok.eot_token) == (400, 1, 2, 1)
    ids = tok.encode(text, bos=True)
    assert ids == [1, *tok.processor.encode(text)] and all(0 <= i < 400 for i in ids)
    assert tok.decode(ids) == text  # bytes the 400 pieces lack (é, 日本, 😀) come back through byte fallback
    assert tok.decode(torch.tensor(ids)) == text


def test_sentencepiece_decodes_a_split_sequence_into_its_parts(sentencepiece_tokenizer):
    """What streaming relies on: the continuation after any prefix decodes with its leading space."""
    tok = sentencepiece_tokenizer
    text = "ROMEO: Is the day so young? And I will go with thee."
    ids = tok.encode(text, bos=True)
    assert len(ids) > 10
    for cut in range(2, len(ids)):
        assert tok.decode(ids[:cut]) + tok.decode(ids[cut:]) == text, cut
    # Cut right after BOS, the continuation cannot know that its first space is the one added to start a text.
    assert tok.decode(ids[1:]) == " " + text
    word = next(i for i in ids[2:] if tok.processor.id_to_piece(i).startswith("\N{LOWER ONE EIGHTH BLOCK}"))
    assert tok.decode([word]).startswith(" ") and not tok.decode([1, word]).startswith(" ")  # "▁..." starts a word


def test_sentencepiece_travels_in_a_checkpoint_without_its_file(sentencepiece_tokenizer, tmp_path):
    from tinylm.tokenizers.llama import SentencePieceTokenizer
    from tinylm.train.checkpoint import load_checkpoint, save_checkpoint

    description = sentencepiece_tokenizer.to_dict()
    assert description["kind"] == "sentencepiece" and json.loads(json.dumps(description)) == description
    save_checkpoint(tmp_path / "ckpt.pt", {"tokenizer": description})
    rebuilt = tokenizer_from_dict(load_checkpoint(tmp_path / "ckpt.pt")["tokenizer"])  # torch.load(weights_only=True)
    assert isinstance(rebuilt, SentencePieceTokenizer)
    assert rebuilt.model_proto == sentencepiece_tokenizer.model_proto
    assert rebuilt.encode(TEXT, bos=True) == sentencepiece_tokenizer.encode(TEXT, bos=True)


def test_sentencepiece_errors_say_what_is_wrong(sentencepiece_tokenizer, tmp_path):
    from tinylm.tokenizers.llama import SentencePieceTokenizer

    with pytest.raises(FileNotFoundError, match="no SentencePiece model"):
        SentencePieceTokenizer.from_file(tmp_path / "missing.model")
    (tmp_path / "tokenizer.bin").write_bytes(b"\x00\x01 not a protobuf \xff" * 10)
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        SentencePieceTokenizer.from_file(tmp_path / "tokenizer.bin")
    with pytest.raises(ValueError, match="outside"):
        sentencepiece_tokenizer.decode([5, 400])


def test_generation_from_a_sentencepiece_prompt_starts_at_bos(sentencepiece_tokenizer):
    from tinylm.config import GPTConfig
    from tinylm.generate.decode import generate_batch
    from tinylm.generate.stream import generate_text
    from tinylm.model.gpt import GPT

    tok = sentencepiece_tokenizer
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32)).eval()
    with torch.no_grad():  # large weights: a freshly initialised model's greedy output barely depends on its prompt
        for weight in (p for p in model.parameters() if p.dim() > 1):
            weight.mul_(20)
    without_bos = generate_batch(model, [tok.encode("ROMEO:")], 12, temperature=0)[0]
    assert without_bos != generate_batch(model, [tok.encode("ROMEO:", bos=True)], 12, temperature=0)[0]
    for prompt in ("ROMEO:", ""):
        continuation = generate_batch(model, [tok.encode(prompt, bos=True)], 12, temperature=0)[0]
        text = generate_text(model, tok, prompt, 12, temperature=0, stop_tokens=())
        assert text == prompt + tok.decode(continuation)


def test_the_end_of_text_token_is_named_once_in_tokenizers_and_is_gpt2s():
    """`<|endoftext|>` was assigned in three modules (tokenizers/hf_bpe.py, interop/vocab_export.py, data/text.py);
    it is named once, tinylm.tokenizers.EOT, and every other module imports that name."""
    import ast
    from pathlib import Path

    from tinylm.tokenizers import EOT

    root = Path(__file__).resolve().parents[1]
    assigned = set()
    for path in (root / "tinylm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = getattr(node, "value", None)  # `X = "<|endoftext|>"` or `X, Y = "<|endoftext|>", ...`
            values = named.elts if isinstance(named, ast.Tuple) else [named]
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
                    isinstance(value, ast.Constant) and value.value == EOT for value in values):
                assigned.add(str(path.relative_to(root)))
    assert assigned == {"tinylm/tokenizers/__init__.py"}
    gpt2 = BPETokenizer("gpt2")
    assert gpt2.decode([gpt2.eot_token]) == EOT
