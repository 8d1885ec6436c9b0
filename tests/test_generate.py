"""Sampling: seeds, greedy decoding, top-k, temperature, and prompts longer than the context."""

import pytest
import torch

from tinylm.config import GPTConfig
from tinylm.generate import generate, generate_text
from tinylm.tokenizers import CharTokenizer


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
    assert torch.equal(generate(model, idx, 12, temperature=temperature, top_k=1, seed=1), greedy_reference(model, idx, 12))


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


def test_prompt_longer_than_the_context_is_cropped(make_model, fixed_logits_model):
    model = make_model()
    block = model.config.block_size
    long_prompt = prompt(model, 2 * block + 8)
    out = generate(model, long_prompt, 6, seed=2)
    assert out.shape == (1, 2 * block + 8 + 6)
    assert torch.equal(out[:, : long_prompt.size(1)], long_prompt)
    cropped = generate(model, long_prompt[:, -block:], 6, seed=2)
    assert torch.equal(out[:, long_prompt.size(1) :], cropped[:, block:])  # only the last block_size tokens matter
    fixed = fixed_logits_model(torch.zeros(5), block_size=8)
    generate(fixed, torch.zeros(1, 30, dtype=torch.long), 4, seed=0)
    assert fixed.seen_lengths == [8, 8, 8, 8]


@pytest.mark.parametrize("kwargs, field", [(dict(temperature=-0.1), "temperature"), (dict(top_k=0), "top_k"),
                                           (dict(top_k=-3), "top_k")])
def test_bad_sampling_arguments_are_value_errors(make_model, kwargs, field):
    model = make_model()
    with pytest.raises(ValueError, match=field):
        generate(model, prompt(model, 2), 3, **kwargs)


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
    assert text == tokenizer.decode(generate(model, ids, 9, seed=0)[0].tolist())


def test_top_k_keeps_exactly_k_tokens_even_when_logits_tie():
    """All-equal logits: a threshold test would keep every token; top_k=3 must still sample from only 3."""

    class Flat(torch.nn.Module):
        config = GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4)

        def forward(self, idx):
            return torch.zeros(idx.size(0), idx.size(1), 10), None

    out = generate(Flat(), torch.zeros(200, 1, dtype=torch.long), max_new_tokens=1, top_k=3, seed=0)
    assert len(set(out[:, 1].tolist())) == 3
