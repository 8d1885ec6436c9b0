"""The KV cache: cached logits equal full-context logits, padded rows equal rows alone, and generation with the
cache gives the same tokens as without it (greedy, seeded sampling, ragged batches, across the context limit).

Token-equality tests use a model with large random weights, in float64. At GPT-2's initial scale a random
model's logits barely depend on the context, so greedy decoding repeats one token whatever a cache gets
wrong; large weights make every choice depend on the context. float64 keeps a rounding difference between
a 1-token and a 16-token matmul from flipping a near-tie.
"""

import pytest
import torch

from tinylm.generate import generate, generate_batch
from tinylm.kv_cache import KVCache


@pytest.fixture
def sharp_model(make_model):
    """Factory: a tiny GPT in float64 with weights of std 0.3 (LayerNorms left at 1 and 0)."""

    def make(**overrides):
        model = make_model(**overrides).double()
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if ".ln_" not in name and "ln_f" not in name:
                    param.copy_(0.3 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
        return model

    return make


def ids(length, vocab=37, seed=0):
    return torch.randint(0, vocab, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("attention", ["flash", "explicit"])
def test_prefill_then_one_token_at_a_time_matches_the_full_forward(make_model, attention):
    model = make_model(attention=attention).eval()
    sequence = torch.tensor([ids(16)])  # (1, 16): the whole context
    with torch.no_grad():
        full, _ = model(sequence)  # (1, 16, vocab)
        cache = KVCache(model.config, batch_size=1)
        prefill, _ = model(sequence[:, :6], kv_cache=cache)
        torch.testing.assert_close(prefill[:, -1], full[:, 5], atol=1e-5, rtol=1e-5)
        for t in range(6, 16):
            step, _ = model(sequence[:, t : t + 1], kv_cache=cache)
            torch.testing.assert_close(step[:, -1], full[:, t], atol=1e-5, rtol=1e-5)
    assert cache.length == 16


@pytest.mark.parametrize("attention", ["flash", "explicit"])
def test_a_left_padded_row_computes_what_it_computes_alone(make_model, attention):
    model = make_model(attention=attention).eval()
    short, long = ids(4, seed=1), ids(9, seed=2)
    batch = torch.tensor([[0] * 5 + short, long])  # (2, 9): the short prompt padded on the left
    with torch.no_grad():
        cache = KVCache(model.config, 2, pad_lengths=torch.tensor([5, 0]))
        logits, _ = model(batch, kv_cache=cache)
        step, _ = model(torch.tensor([[3], [3]]), kv_cache=cache)
        alone, _ = model(torch.tensor([short + [3]]))
        alone_long, _ = model(torch.tensor([long + [3]]))
    torch.testing.assert_close(logits[0, -1], alone[0, -2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step[0, -1], alone[0, -1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step[1, -1], alone_long[0, -1], atol=1e-5, rtol=1e-5)


def test_cache_rejects_more_positions_than_the_context(make_model):
    model = make_model().eval()
    cache = KVCache(model.config, 1)
    with torch.no_grad():
        model(torch.tensor([ids(16)]), kv_cache=cache)
        with pytest.raises(ValueError, match="crop the context and reset the cache"):
            model(torch.tensor([[1]]), kv_cache=cache)
    with pytest.raises(ValueError, match="pad_lengths must have shape"):
        KVCache(model.config, 2, pad_lengths=torch.tensor([1]))


@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(seed=3), dict(seed=4, temperature=0.7, top_k=9,
                                      top_p=0.9, repetition_penalty=1.3)], ids=["greedy", "seeded", "all-samplers"])
def test_cache_and_no_cache_give_identical_tokens(sharp_model, sampling):
    model = sharp_model()
    prompts = torch.tensor([ids(5, seed=1), ids(5, seed=2)])
    with_cache = generate(model, prompts, 40, use_cache=True, **sampling)  # 45 > 16: crosses the context limit
    without = generate(model, prompts, 40, use_cache=False, **sampling)
    assert torch.equal(with_cache, without)
    assert len(set(with_cache[0, 5:].tolist())) > 5  # the choices vary: a broken cache could not go unnoticed


def test_ragged_batch_matches_each_prompt_alone_and_the_uncached_batch(sharp_model):
    model = sharp_model()
    prompts = [ids(3, seed=1), ids(9, seed=2), ids(1, seed=3)]
    batch = generate_batch(model, prompts, 7, temperature=0)  # 9 + 7 = 16: stays inside the context
    assert batch == [generate_batch(model, [p], 7, temperature=0)[0] for p in prompts]
    assert batch == generate_batch(model, prompts, 7, temperature=0, use_cache=False)
    sampled = generate_batch(model, prompts, 30, seed=5, use_cache=True)
    assert sampled == generate_batch(model, prompts, 30, seed=5, use_cache=False)


class RecordingModel:
    """Wraps a GPT and records (positions already cached, positions fed) at every forward call."""

    def __init__(self, model):
        self.calls = []
        model.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        cache = kwargs.get("kv_cache")
        self.calls.append((0 if cache is None else cache.length, args[0].size(1)))


def test_full_context_is_cropped_to_keep_tokens_and_prefilled_again(sharp_model):
    model = sharp_model()  # context 16
    recorder = RecordingModel(model)
    prompt = torch.tensor([ids(10)])
    out = generate(model, prompt, 12, temperature=0, keep=6)
    # prefill 10; steps fill the context to 16; the 17th token would not fit: keep the last 6, prefill them; go on.
    assert recorder.calls == [(0, 10)] + [(t, 1) for t in range(10, 16)] + [(0, 6)] + [(t, 1) for t in range(6, 10)]
    with torch.no_grad():
        expected_after_crop = model(out[:, 11:17])[0][0, -1].argmax()  # the next token from the kept 6 alone
    assert out[0, 17] == expected_after_crop


def test_keep_equal_to_the_context_is_the_exact_sliding_window(sharp_model):
    model = sharp_model()
    prompt = torch.tensor([ids(4)])
    out = generate(model, prompt, 30, temperature=0, keep=16)
    reference = prompt
    with torch.no_grad():
        for _ in range(30):  # the textbook loop: always the last block_size tokens
            logits, _ = model(reference[:, -16:])
            reference = torch.cat([reference, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, reference)


@pytest.mark.parametrize("keep", [0, 17])
def test_keep_outside_the_context_is_rejected(make_model, keep):
    model = make_model()
    with pytest.raises(ValueError, match="keep must be between 1 and block_size"):
        generate(model, torch.tensor([ids(3)]), 2, keep=keep)
