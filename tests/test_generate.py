"""Sampling: seeds, greedy decoding, top-k, temperature, and prompts longer than the context."""

import pytest
import torch

from tinylm.config import GPTConfig
from tinylm.generate.decode import generate, generate_batch
from tinylm.generate.sampling import Sampling
from tinylm.generate.stream import generate_text, stream
from tinylm.tokenizers.char import CharTokenizer


def prompt(model, length, batch=1, seed=0):
    return torch.randint(0, model.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


def greedy_reference(model, idx, steps):
    """Argmax decoding written out by hand."""
    model.eval()
    with torch.no_grad():
        for _ in range(steps):
            logits, _ = model(idx[:, -model.config.block_size :])
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


def test_seeded_sampling_is_repeatable_and_leaves_global_rng_alone(make_model):
    model = make_model()
    idx = prompt(model, 3, batch=2)
    state = torch.get_rng_state()
    a = generate(model, idx, 20, seed=5)
    b = generate(model, idx, 20, seed=5)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(a, generate(model, idx, 20, seed=6))


def test_the_sampler_settings_by_name_or_as_one_value_sample_the_same_tokens(make_model):
    """sampling=Sampling(...) is the keywords' value; a keyword beside it overrides its field."""
    model = make_model()
    idx = prompt(model, 3, batch=2)
    by_name = generate(model, idx, 20, temperature=0.8, top_k=5, seed=3)
    assert torch.equal(generate(model, idx, 20, sampling=Sampling(temperature=0.8, top_k=5, seed=3)), by_name)
    assert torch.equal(generate(model, idx, 20, sampling=Sampling(temperature=0.8, top_k=5, seed=9), seed=3), by_name)
    rows = [row.tolist() for row in idx]
    assert generate_batch(model, rows, 20, sampling=Sampling(temperature=0.8, top_k=5, seed=3)) == \
        [row[3:] for row in by_name.tolist()]


def test_output_is_the_prompt_followed_by_new_tokens(make_model):
    model = make_model()
    idx = prompt(model, 5, batch=3)
    out = generate(model, idx, 7, seed=0)
    assert out.shape == (3, 12)
    assert torch.equal(out[:, :5], idx)
    assert out.min() >= 0 and out.max() < model.config.vocab_size


def test_temperature_zero_is_argmax_decoding(make_model):
    model = make_model()
    idx = prompt(model, 4, batch=2)
    assert torch.equal(generate(model, idx, 12, temperature=0), greedy_reference(model, idx, 12))


@pytest.mark.parametrize("temperature", [1.0, 0.7, 3.0])
def test_top_k_of_one_is_greedy(make_model, temperature):
    model = make_model()
    idx = prompt(model, 4, batch=2)
    assert torch.equal(generate(model, idx, 12, temperature=temperature, top_k=1, seed=1),
                       greedy_reference(model, idx, 12))


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_top_k_samples_only_the_k_best_with_renormalised_probabilities(fixed_logits_model, temperature):
    vocab, k = 50, 5
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(0)) * 2
    model = fixed_logits_model(logits)
    out = generate(model, torch.zeros(400, 1, dtype=torch.long), 10, temperature=temperature, top_k=k, seed=0)
    samples = out[:, 1:].flatten()  # 4,000 draws
    best = set(torch.topk(logits, k).indices.tolist())
    assert set(samples.tolist()) <= best
    assert set(samples.tolist()) == best  # all k stay reachable
    expected = torch.softmax(logits / temperature, -1)[sorted(best)]
    expected = expected / expected.sum()
    observed = torch.bincount(samples, minlength=vocab)[sorted(best)].float() / samples.numel()
    torch.testing.assert_close(observed, expected, atol=0.03, rtol=0)


def test_top_k_larger_than_the_vocabulary_is_plain_sampling(fixed_logits_model):
    logits = torch.randn(8, generator=torch.Generator().manual_seed(0))
    model = fixed_logits_model(logits)
    idx = torch.zeros(4, 1, dtype=torch.long)
    assert torch.equal(generate(model, idx, 10, top_k=1000, seed=3), generate(model, idx, 10, seed=3))


def test_prompt_longer_than_the_context_is_cropped_to_keep_tokens(make_model, fixed_logits_model):
    model = make_model()
    block = model.config.block_size
    long_prompt = prompt(model, 2 * block + 8)
    for keep in (block, block // 2):
        out = generate(model, long_prompt, 6, seed=2, keep=keep)
        assert out.shape == (1, 2 * block + 8 + 6)
        assert torch.equal(out[:, : long_prompt.size(1)], long_prompt)
        cropped = generate(model, long_prompt[:, -keep:], 6, seed=2, keep=keep)
        assert torch.equal(out[:, long_prompt.size(1) :], cropped[:, keep:])  # only the last `keep` tokens matter
    fixed = fixed_logits_model(torch.zeros(5), block_size=8)
    generate(fixed, torch.zeros(1, 30, dtype=torch.long), 4, seed=0, keep=8)
    assert fixed.seen_lengths == [8, 8, 8, 8]


@pytest.mark.parametrize("kwargs, field", [(dict(temperature=-0.1), "temperature"), (dict(top_k=0), "top_k"),
                                           (dict(top_k=-3), "top_k"), (dict(top_p=0), "top_p"),
                                           (dict(top_p=1.01), "top_p"), (dict(min_new_tokens=4), "min_new_tokens")])
def test_bad_sampling_arguments_are_value_errors(make_model, kwargs, field):
    model = make_model()
    with pytest.raises(ValueError, match=field):
        generate_batch(model, [[1, 2]], 3, **kwargs)


def test_prompts_must_be_token_ids_of_the_model(make_model):
    model = make_model()
    with pytest.raises(ValueError, match="at least one token"):
        generate_batch(model, [[1], []], 3)
    with pytest.raises(ValueError, match=r"prompt token ids must be in \[0, 37\)"):
        generate_batch(model, [[1, 37]], 3)
    with pytest.raises(ValueError, match=r"stop token ids must be in \[0, 37\)"):
        generate_batch(model, [[1, 2]], 3, stop_tokens=[50])


def test_models_without_a_cache_need_equal_length_prompts(bigram):
    model = bigram()
    assert len(generate_batch(model, [[1, 2], [3, 4]], 5, seed=0)[1]) == 5
    with pytest.raises(ValueError, match="equal lengths"):
        generate_batch(model, [[1], [3, 4]], 5)
    with pytest.raises(ValueError, match="takes no key/value cache"):
        generate_batch(model, [[1]], 5, use_cache=True)


@pytest.mark.parametrize("training", [True, False])
def test_generation_restores_the_training_flag(make_model, training):
    model = make_model(dropout=0.5).train(training)
    generate(model, prompt(model, 2), 3, seed=0)
    assert model.training is training


def test_generation_runs_in_eval_mode_so_dropout_does_not_change_samples(make_model):
    model = make_model(dropout=0.5)
    idx = prompt(model, 3)
    assert torch.equal(generate(model.train(), idx, 10, temperature=0), generate(model.eval(), idx, 10, temperature=0))


def test_generate_text_decodes_prompt_and_continuation(make_model):
    tokenizer = CharTokenizer([chr(ord("a") + i) for i in range(26)] + list("0123456789 "))
    model = make_model()
    text = generate_text(model, tokenizer, "hello there", 9, seed=0)
    assert text.startswith("hello there") and len(text) == len("hello there") + 9
    ids = torch.tensor([tokenizer.encode("hello there")])
    assert text == tokenizer.decode(generate(model, ids, 9, seed=0, vocab_limit=tokenizer.vocab_size)[0].tolist())


def test_top_k_keeps_exactly_k_tokens_even_when_logits_tie():
    """All-equal logits: a threshold test would keep every token; top_k=3 must still sample from only 3."""

    class Flat(torch.nn.Module):
        config = GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4)

        def forward(self, idx):
            return torch.zeros(idx.size(0), idx.size(1), 10), None

    out = generate(Flat(), torch.zeros(200, 1, dtype=torch.long), max_new_tokens=1, top_k=3, seed=0)
    assert len(set(out[:, 1].tolist())) == 3


class Scripted(torch.nn.Module):
    """A 'model' that predicts script[i] as the i-th new token, by a wide margin, whatever the prompt."""

    def __init__(self, script: list[int], vocab_size: int, prompt_length: int):
        super().__init__()
        self.script, self.prompt_length = script, prompt_length
        self.config = GPTConfig(vocab_size=vocab_size, block_size=256, n_layer=1, n_head=1, n_embd=1)

    def forward(self, idx):
        logits = torch.zeros(idx.size(0), idx.size(1), self.config.vocab_size)
        position = min(idx.size(1) - self.prompt_length, len(self.script) - 1)
        logits[:, -1, self.script[position]] = 10.0
        return logits, None


LETTERS = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz "))


def scripted(text: str, tokenizer=LETTERS, prompt: str = "a") -> Scripted:
    return Scripted(tokenizer.encode(text), tokenizer.vocab_size, len(tokenizer.encode(prompt)))


def test_stream_yields_the_continuation_piece_by_piece():
    pieces = list(stream(scripted("hello world"), LETTERS, "a", 11, temperature=0))
    assert pieces == list("hello world")
    assert generate_text(scripted("hello world"), LETTERS, "a", 11, temperature=0) == "ahello world"


@pytest.mark.parametrize("stop, expected", [("lo w", "hel"), (["xyz", "wor"], "hello "), ("d", "hello worl"),
                                            ("never", "hello world")])
def test_stream_stops_before_a_stop_string_and_never_prints_part_of_it(stop, expected):
    pieces = list(stream(scripted("hello world"), LETTERS, "a", 11, stop=stop, temperature=0))
    assert "".join(pieces) == expected


def test_stop_tokens_end_generation_but_not_before_min_new_tokens():
    o = LETTERS.encode("o")
    assert generate_text(scripted("hello world"), LETTERS, "a", 11, stop_tokens=o, temperature=0) == "ahell"
    # The 5th token would be "o" but cannot stop yet; the next best (id 0, "a") takes its place.
    text = generate_text(scripted("hello world"), LETTERS, "a", 11, stop_tokens=o, min_new_tokens=6, temperature=0)
    assert text == "ahella w"


def test_batch_rows_stop_independently():
    model = scripted("hello world")
    rows = generate_batch(model, [[0], [1]], 11, stop_tokens=LETTERS.encode("w"), temperature=0)
    assert rows == [LETTERS.encode("hello "), LETTERS.encode("hello ")]


def test_decode_yields_the_stop_token_once_and_then_minus_one(bigram):
    from tinylm.generate.decode import decode

    model = bigram(4)
    with torch.no_grad():  # greedy successors: 0 -> 1, 1 -> 3, 2 -> 0, 3 -> 3
        model.table.weight.copy_(torch.eye(4)[[1, 3, 0, 3]] * 10)
    steps = [row.tolist() for row in decode(model, [[0], [2]], 10, Sampling(temperature=0), stop_tokens=[3])]
    # Row 0 stops at its 2nd token, row 1 at its 3rd: a finished row yields -1 until the other one stops too.
    assert steps == [[1, 0], [3, 1], [-1, 3]]


@pytest.mark.parametrize("stop, stop_tokens, reason, stopped_at, text", [
    ((), (), "max_new_tokens", None, "hello"),  # 5 tokens asked, 5 given
    ("ll", (), "stop_string", "ll", "he"),
    (("xyz", "lo"), (), "stop_string", "lo", "hel"),
    ((), "l", "stop_token", "l", "he"),
    ("lo", "l", "stop_token", "l", "he"),  # the stop token comes first
    ("he", "l", "stop_string", "he", ""),
])
def test_a_stream_knows_why_it_stopped(stop, stop_tokens, reason, stopped_at, text):
    pieces = stream(scripted("hello world"), LETTERS, "a", 5, stop=stop, stop_tokens=LETTERS.encode(stop_tokens),
                    temperature=0)
    assert pieces.stop_reason is None and pieces.stop_description == "still generating"
    assert "".join(pieces) == text
    assert (pieces.stop_reason, pieces.stopped_at) == (reason, stopped_at)


def test_stop_descriptions_name_the_token_the_string_or_the_limit():
    from tinylm.tokenizers.gpt2 import BPETokenizer

    tokenizer = BPETokenizer("gpt2")
    ids = tokenizer.encode("The end.") + [tokenizer.eot_token] + tokenizer.encode(" More")
    model = Scripted(ids, 50304, prompt_length=1)
    at_eot = stream(model, tokenizer, "!", 10, temperature=0)
    assert "".join(at_eot) == "The end." and at_eot.stop_description == "stopped at <|endoftext|>"
    capped = stream(model, tokenizer, "!", 2, temperature=0)
    assert "".join(capped) == "The end" and capped.stop_description == ("stopped at the length limit, "
                                                                          "max_new_tokens=2")
    at_string = stream(model, tokenizer, "!", 10, stop=" end", temperature=0)
    assert "".join(at_string) == "The" and at_string.stop_description == "stopped before the stop string ' end'"
    closed = stream(model, tokenizer, "!", 10, temperature=0)
    next(iter(closed))
    closed.close()
    assert closed.stop_reason == "closed" and "after 1 tokens" in closed.stop_description


def test_a_stop_string_finished_by_a_token_that_ends_mid_character_still_stops_the_text():
    """A token whose bytes complete the stop string and begin a multi-byte character decodes with a trailing
    U+FFFD, which the loop does not search; the last flush must still cut the text before the stop string."""

    class ByteTokens:  # token i is PIECES[i]; text decodes from the bytes, as a byte-level BPE does
        PIECES = [b"!", b"ab", b"c\n\xf0\x9f", b"\xa6\x9c"]  # the last two: "c\n" and the parrot's 4 bytes
        vocab_size = len(PIECES)

        def decode(self, ids):
            return b"".join(self.PIECES[i] for i in ids).decode("utf-8", errors="replace")

    model = Scripted([1, 2, 3], ByteTokens.vocab_size, prompt_length=1)
    pieces = stream(model, ByteTokens(), [0], 2, stop="\n", temperature=0, stop_tokens=())
    assert "".join(pieces) == "abc" and pieces.stop_reason == "stop_string"
    full = stream(model, ByteTokens(), [0], 3, temperature=0, stop_tokens=())
    assert "".join(full) == "abc\n🦜"


def test_stream_never_yields_half_a_character_of_a_multi_byte_token_sequence():
    from tinylm.tokenizers.gpt2 import BPETokenizer

    tokenizer = BPETokenizer("gpt2")
    text = "Zürich ⛵🪐 你好 🦜 parrot"
    ids = tokenizer.encode(text)
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # some tokens are partial UTF-8 on their own
    model = Scripted(ids, 50304, prompt_length=1)
    pieces = list(stream(model, tokenizer, "!", len(ids), temperature=0))
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)


def test_bpe_generation_stops_at_end_of_text_unless_told_otherwise():
    from tinylm.tokenizers.gpt2 import BPETokenizer

    tokenizer = BPETokenizer("gpt2")
    ids = tokenizer.encode("The end.") + [tokenizer.eot_token] + tokenizer.encode(" More")
    model = Scripted(ids, 50304, prompt_length=1)
    assert generate_text(model, tokenizer, "!", 10, temperature=0) == "!The end."
    assert (generate_text(model, tokenizer, "!", len(ids), temperature=0, stop_tokens=())
            == "!The end.<|endoftext|> More")


def test_a_stream_left_early_puts_the_model_back_in_training_mode_at_once(make_model):
    """Breaking out of the loop (or closing the stream) must not leave a training model in eval mode (dropout off)
    for as long as the stream object lives."""
    model = make_model(dropout=0.1)
    model.train()
    pieces = stream(model, LETTERS, "a", 50, temperature=0, stop_tokens=())
    for _ in pieces:
        assert not model.training, "generation runs in eval mode"
        break
    assert model.training
    assert len(pieces.new_ids) == 1, "it stopped after the first piece"

    pieces = stream(model, LETTERS, "a", 50, temperature=0, stop_tokens=())
    reader = iter(pieces)
    next(reader)
    assert not model.training
    pieces.close()
    assert model.training
    assert list(reader) == [], "a closed stream yields nothing more"
