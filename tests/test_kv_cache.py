"""The KV cache: cached logits equal full-context logits, padded rows equal rows alone, and generation with the
cache gives the same tokens as without it (greedy, seeded sampling, ragged batches, across the context limit).

Token-equality tests use a model with large random weights, in float64. At GPT-2's initial scale a random
model's logits barely depend on the context, so greedy decoding repeats one token whatever a cache gets
wrong; large weights make every choice depend on the context. float64 keeps a rounding difference between
a 1-token and a 16-token matmul from flipping a near-tie.

Every test that can runs for the three block families: GPT-2's, llama (RMSNorm, RoPE, SwiGLU, grouped-query
attention: its cache holds 2 key/value heads for 4 query heads) and llama-moe (the same with routed experts).
With RoPE the keys are cached already rotated at their position; when the context is full, generation crops
it and prefills the kept tokens again at positions counted from 0, so a RoPE model's tokens still equal
those of the uncached loop over the same window.
"""

import dataclasses
from itertools import islice

import pytest
import torch
from torch import nn

from tinylm.config import GPT2_124M, with_architecture
from tinylm.generate.decode import decode, generate, generate_batch
from tinylm.generate.sampling import Sampling
from tinylm.model.gpt import GPT
from tinylm.model.kv_cache import KVCache, bytes_per_token

ARCHS = ["gpt2", "llama", "llama-moe"]


@pytest.fixture
def family_model(tiny_config):
    """Factory: the tiny GPT of a block family. gpt2 is exactly conftest's make_model; the llama families get 4
    heads, so that llama's grouped-query attention has 2 key/value heads."""

    def make(arch: str = "gpt2", seed: int = 0, **overrides) -> GPT:
        torch.manual_seed(seed)
        shape = {} if arch == "gpt2" else dict(n_head=4)
        return GPT(with_architecture(tiny_config(**{**shape, **overrides}), arch))

    return make


@pytest.fixture
def sharp_model(family_model):
    """Factory: a tiny GPT in float64 with weights of std 0.3. Norm gains (and LayerNorm biases) stay at 1 and 0,
    found by module type, so RMSNorm's gains are left alone as LayerNorm's are; every other weight is rescaled,
    router and experts included."""

    def make(arch: str = "gpt2", **overrides):
        model = family_model(arch, **overrides).double()
        norms = [m for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.RMSNorm))]
        norm_params = {id(p) for norm in norms for p in norm.parameters()}
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for param in model.parameters():
                if id(param) not in norm_params:
                    param.copy_(0.3 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
        return model

    return make


def ids(length, vocab=37, seed=0):
    return torch.randint(0, vocab, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("attention", ["flash", "explicit"])
def test_prefill_then_one_token_at_a_time_matches_the_full_forward(family_model, arch, attention):
    model = family_model(arch, attention=attention).eval()
    sequence = torch.tensor([ids(16)])  # (1, 16): the whole context
    with torch.no_grad():
        full, _ = model(sequence)  # (1, 16, vocab)
        cache = KVCache(model.config, batch_size=1)
        prefill = model.decode_step(sequence[:, :6], cache)  # (1, vocab)
        torch.testing.assert_close(prefill, full[:, 5], atol=1e-5, rtol=1e-5)
        for t in range(6, 16):
            step = model.decode_step(sequence[:, t : t + 1], cache)
            torch.testing.assert_close(step, full[:, t], atol=1e-5, rtol=1e-5)
    assert cache.length == 16


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("attention", ["flash", "explicit"])
def test_a_left_padded_row_computes_what_it_computes_alone(family_model, arch, attention):
    model = family_model(arch, attention=attention).eval()
    short, long = ids(4, seed=1), ids(9, seed=2)
    batch = torch.tensor([[0] * 5 + short, long])  # (2, 9): the short prompt padded on the left
    with torch.no_grad():
        cache = KVCache(model.config, 2, pad_lengths=torch.tensor([5, 0]))
        logits = model.decode_step(batch, cache)  # (2, vocab)
        step = model.decode_step(torch.tensor([[3], [3]]), cache)
        alone, _ = model(torch.tensor([short + [3]]))
        alone_long, _ = model(torch.tensor([long + [3]]))
    torch.testing.assert_close(logits[0], alone[0, -2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step[0], alone[0, -1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step[1], alone_long[0, -1], atol=1e-5, rtol=1e-5)


def test_cache_rejects_more_positions_than_the_context(make_model):
    model = make_model().eval()
    cache = KVCache(model.config, 1)
    with torch.no_grad():
        model.decode_step(torch.tensor([ids(16)]), cache)
        with pytest.raises(ValueError, match="crop the context and reset the cache"):
            model.decode_step(torch.tensor([[1]]), cache)
    with pytest.raises(ValueError, match="pad_lengths must have shape"):
        KVCache(model.config, 2, pad_lengths=torch.tensor([1]))


@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(seed=3), dict(seed=4, temperature=0.7, top_k=9,
                                      top_p=0.9, repetition_penalty=1.3)], ids=["greedy", "seeded", "all-samplers"])
@pytest.mark.parametrize("arch", ARCHS)
def test_cache_and_no_cache_give_identical_tokens(sharp_model, sampling, arch):
    model = sharp_model(arch)
    prompts = torch.tensor([ids(5, seed=1), ids(5, seed=2)])
    with_cache = generate(model, prompts, 40, use_cache=True, **sampling)  # 45 > 16: crosses the context limit
    without = generate(model, prompts, 40, use_cache=False, **sampling)
    assert torch.equal(with_cache, without)
    assert len(set(with_cache[0, 5:].tolist())) > 5  # the choices vary: a broken cache could not go unnoticed


@pytest.mark.parametrize("arch", ARCHS)
def test_ragged_batch_matches_each_prompt_alone_and_the_uncached_batch(sharp_model, arch):
    model = sharp_model(arch)
    prompts = [ids(3, seed=1), ids(9, seed=2), ids(1, seed=3)]
    batch = generate_batch(model, prompts, 7, temperature=0)  # 9 + 7 = 16: stays inside the context
    assert batch == [generate_batch(model, [p], 7, temperature=0)[0] for p in prompts]
    assert batch == generate_batch(model, prompts, 7, temperature=0, use_cache=False)
    sampled = generate_batch(model, prompts, 30, seed=5, use_cache=True)
    assert sampled == generate_batch(model, prompts, 30, seed=5, use_cache=False)


class RecordingModel:
    """Wraps a GPT's decode_step and records (positions already cached, positions fed) at every call."""

    def __init__(self, model):
        self.calls = []
        decode_step = model.decode_step

        def record(idx, cache, head=None):
            self.calls.append((cache.length, idx.size(1)))
            return decode_step(idx, cache, head)

        model.decode_step = record


@pytest.mark.parametrize("arch", ARCHS)
def test_full_context_is_cropped_to_keep_tokens_and_prefilled_again(sharp_model, arch):
    model = sharp_model(arch)  # context 16
    recorder = RecordingModel(model)
    prompt = torch.tensor([ids(10)])
    out = generate(model, prompt, 12, temperature=0, keep=6, fast=False)  # every step through decode_step
    # prefill 10; steps fill the context to 16; the 17th token would not fit: keep the last 6, prefill them; go on.
    assert recorder.calls == [(0, 10)] + [(t, 1) for t in range(10, 16)] + [(0, 6)] + [(t, 1) for t in range(6, 10)]
    with torch.no_grad():
        expected_after_crop = model(out[:, 11:17])[0][0, -1].argmax()  # the next token from the kept 6 alone
    assert out[0, 17] == expected_after_crop


@pytest.mark.parametrize("arch", ARCHS)
def test_keep_equal_to_the_context_is_the_exact_sliding_window(sharp_model, arch):
    model = sharp_model(arch)
    prompt = torch.tensor([ids(4)])
    out = generate(model, prompt, 30, temperature=0, keep=16)
    reference = prompt
    with torch.no_grad():
        for _ in range(30):  # the textbook loop: always the last block_size tokens
            logits, _ = model(reference[:, -16:])
            reference = torch.cat([reference, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, reference)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("keep", [16, 5])
def test_max_new_tokens_is_a_count_so_a_huge_one_streams_the_same_tokens(sharp_model, keep, use_cache):
    """10**12 new tokens (8 TB of ids up front, before) stream as the window rule says, through many moves of
    the window: a ragged batch's first 100 tokens equal a hand-written loop's, each row alone over the shared
    window's columns."""
    model = sharp_model()  # context 16
    prompts = [ids(3), ids(7, seed=1)] if use_cache else [ids(3), ids(3, seed=1)]  # uncached: no padding mask
    steps = list(islice(decode(model, prompts, 10**12, Sampling(temperature=0), keep=keep, use_cache=use_cache), 100))
    longest, start = max(map(len, prompts)), 0
    expected = [list(p) for p in prompts]
    with torch.no_grad():
        for step in range(100):
            length = longest + step  # columns, left-padded: row r's token i sits at column pad_r + i
            if length - start > 16:
                start = length - keep
            for prompt, tokens in zip(prompts, expected):
                context = tokens[max(start - (longest - len(prompt)), 0):]
                tokens.append(int(model(torch.tensor([context]))[0][0, -1].argmax()))
    assert torch.stack(steps, dim=1).tolist() == [tokens[len(p):] for p, tokens in zip(prompts, expected)]


@pytest.mark.parametrize("keep", [0, 17])
def test_keep_outside_the_context_is_rejected(make_model, keep):
    model = make_model()
    with pytest.raises(ValueError, match="keep must be between 1 and block_size"):
        generate(model, torch.tensor([ids(3)]), 2, keep=keep)


def test_sharp_model_rescales_everything_but_the_norm_gains(sharp_model):
    model = sharp_model("llama-moe")
    for name, param in model.named_parameters():
        if ".ln_" in name or name.startswith("transformer.ln_f"):
            assert torch.all(param == 1), name
        else:
            assert param.std() > 0.2, name  # 0.3, not the 0.02 of the initialisation
    assert isinstance(model.transformer.ln_f, nn.RMSNorm)


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_cache_stores_n_kv_head_heads_and_shrinks_by_n_head_over_n_kv_head(tiny_config, n_kv_head):
    full = GPT(tiny_config(n_head=4, position="rope")).eval()
    model = GPT(tiny_config(n_head=4, position="rope", n_kv_head=n_kv_head)).eval()
    prompt = torch.tensor([ids(5, seed=1), ids(5, seed=2), ids(5, seed=3)])
    caches = []
    for m in (full, model):
        cache = KVCache(m.config, batch_size=3)
        assert cache.nbytes() == 0  # nothing allocated before the first pass
        with torch.no_grad():
            m.decode_step(prompt, cache)
        caches.append(cache)
    keys = caches[1].layers[0].keys
    assert keys.shape == (3, n_kv_head, 16, 8)  # (B, n_kv_head, block_size, head_size)
    assert caches[0].nbytes() == caches[1].nbytes() * (4 // n_kv_head)
    assert caches[1].nbytes() == 3 * 16 * bytes_per_token(model.config, torch.float32)  # rows x positions x per token


def test_bytes_per_token_counts_keys_and_values_of_every_layer():
    hs, layers = GPT2_124M.head_size, GPT2_124M.n_layer
    assert bytes_per_token(GPT2_124M, torch.bfloat16) == 2 * layers * 12 * hs * 2  # k and v, 12 heads, 2 bytes each
    gqa = dataclasses.replace(GPT2_124M, n_kv_head=4)
    assert bytes_per_token(GPT2_124M, torch.bfloat16) == 3 * bytes_per_token(gqa, torch.bfloat16)
    assert bytes_per_token(gqa, torch.float32) == 2 * bytes_per_token(gqa, torch.bfloat16)


@pytest.mark.parametrize("arch", ["llama", "llama-moe"])
def test_rope_keys_are_cached_rotated_at_their_absolute_position(family_model, arch):
    """The cache holds k after RoPE: a left-padded row's keys equal those of the row alone (positions from its first
    real token), and a later token's key is rotated by its own position, not by 0."""
    model = family_model(arch).eval()
    tokens = ids(6, seed=4)
    with torch.no_grad():
        alone = KVCache(model.config, 1)
        model.decode_step(torch.tensor([tokens[:5]]), alone)
        model.decode_step(torch.tensor([tokens[5:]]), alone)
        padded = KVCache(model.config, 1, pad_lengths=torch.tensor([3]))
        model.decode_step(torch.tensor([[0, 0, 0] + tokens]), padded)
        block = model.transformer.h[0]
        x = block.ln_1(model.transformer.wte(torch.tensor([tokens])))  # (1, 6, C): layer 0's input
        _, k, _ = block.attn.heads(x, model.rope(torch.arange(6)))
    torch.testing.assert_close(alone.layers[0].keys[:, :, :6], k, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(padded.layers[0].keys[:, :, 3:9], k, atol=1e-6, rtol=1e-5)


def test_a_generation_holds_only_the_positions_it_can_use(make_model, monkeypatch):
    """A long context costs no memory a generation cannot fill: the cache holds the prompt and the new tokens, and
    the tokens are those of a cache as long as the context."""
    import tinylm.generate.decode as decode_module

    model = make_model(seed=0, block_size=64).eval()
    made = []

    class Recorded(KVCache):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    prompts = [[1, 2, 3], [4, 5]]
    whole = generate_batch(model, prompts, 7, temperature=0)
    monkeypatch.setattr(decode_module, "KVCache", Recorded)
    assert generate_batch(model, prompts, 7, temperature=0) == whole
    assert made[0].capacity == 3 + 7
    assert made[0].nbytes() == 2 * 10 * bytes_per_token(model.config, torch.float32)
    generate_batch(model, prompts, 100, temperature=0)  # more than the context: the whole context, then it slides
    assert made[1].capacity == 64
