"""The fast decode step (tinylm.generate.fast) against the readable one (GPT.decode_step): the same logits to float
rounding, the same keys and values in the cache, the same tokens greedy and sampled, over the context's end, for every
block family it serves; and the models it does not serve walk the modules instead."""

import copy
import dataclasses
import gc
import mmap
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tinylm.config import with_architecture
from tinylm.generate.decode import generate, generate_batch
from tinylm.generate.fast import fast_decode_step
from tinylm.model.gpt import GPT
from tinylm.model.kv_cache import KVCache
from tinylm.model.lora import apply_lora

FAMILIES = {
    "gpt2": {},
    "llama (GQA)": {"arch": "llama"},
    "gpt2 + qk-norm, relu², soft cap, untied, explicit attention": dict(qk_norm=True, mlp="relu2", logit_softcap=15.0,
                                                                         tie_weights=False, attention="explicit"),
    "llama + bias": {"arch": "llama", "bias": True},
}


@pytest.fixture(params=list(FAMILIES))
def model(request, tiny_config):
    options = dict(FAMILIES[request.param])
    config = tiny_config(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32)
    config = dataclasses.replace(with_architecture(config, options.pop("arch", "gpt2")), **options)
    torch.manual_seed(0)
    model = GPT(config).eval()
    with torch.no_grad():  # trained-looking weights: biases and norm gains away from their initial 0 and 1
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.1)
    return model


def test_each_step_gives_the_readable_steps_logits_to_float_rounding(model, monkeypatch):
    fast = fast_decode_step(model)
    assert fast is not None
    assert model.config.kv_heads < model.config.n_head or model.config.position == "learned"  # GQA: llama's half
    prompt = torch.randint(37, (2, 5), generator=torch.Generator().manual_seed(1))
    readable_cache, fast_cache = KVCache(model.config, 2), KVCache(model.config, 2)
    with torch.inference_mode():
        a, b = model.decode_step(prompt, readable_cache), fast(prompt, fast_cache)  # the prefill: the readable step
        walk = model.decode_step
        monkeypatch.setattr(model, "decode_step", lambda *args: pytest.fail("the fast step fell back on the modules"))
        for step in range(model.config.block_size - 5):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=f"step {step}")
            token = a.argmax(-1, keepdim=True)
            a, b = walk(token, readable_cache), fast(token, fast_cache)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert fast_cache.length == readable_cache.length == model.config.block_size
    for ours, theirs in zip(fast_cache.layers, readable_cache.layers):
        torch.testing.assert_close(ours.keys, theirs.keys, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.values, theirs.values, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=0.9, seed=3),
                                      dict(temperature=1.2, top_k=10, top_p=0.9, repetition_penalty=1.3, seed=4)],
                         ids=["greedy", "sampled", "top-k, top-p, penalty"])
def test_generation_is_token_for_token_the_readable_one_past_the_end_of_the_context(model, sampling, monkeypatch):
    prompt = torch.randint(37, (1, 3), generator=torch.Generator().manual_seed(2))
    readable = generate(model, prompt, 60, fast=False, **sampling)  # 60 > block_size 16: crops and prefills again
    calls = []
    walk = model.decode_step
    monkeypatch.setattr(model, "decode_step", lambda idx, cache, head=None: calls.append(idx.size(1)) or
                        walk(idx, cache, head))
    fast = generate(model, prompt, 60, **sampling)
    assert torch.equal(fast, readable)
    assert calls and all(length > 1 for length in calls), "the readable step only prefilled; every token was fast"


def test_without_the_cache_no_fast_step_is_built(model, monkeypatch):
    """The fast step serves one new position after a prefill, which the uncached loop never has: building it would
    copy every block's weights for nothing."""
    import tinylm.generate.decode as decode_module

    prompt = torch.randint(37, (1, 1), generator=torch.Generator().manual_seed(2))  # one token: a 1-position context
    expected = generate(model, prompt, 20, use_cache=False, fast=False, temperature=0)
    monkeypatch.setattr(decode_module, "fast_decode_step", lambda model: pytest.fail("built without the cache"))
    assert torch.equal(generate(model, prompt, 20, use_cache=False, temperature=0), expected)


def test_a_batch_gives_each_row_what_it_gives_alone(model):
    prompts = [[1, 2, 3], [4, 5, 6], [7, 8]]  # the third row is left-padded: that batch walks the modules
    equal_lengths = generate_batch(model, prompts[:2], 20, temperature=0.8, seed=5)
    assert equal_lengths == generate_batch(model, prompts[:2], 20, temperature=0.8, seed=5, fast=False)
    assert generate_batch(model, prompts, 20, temperature=0) == generate_batch(model, prompts, 20, temperature=0,
                                                                               fast=False)


def test_in_float64_the_logits_agree_to_float64_rounding(model):
    model = model.double()  # float32's rounding would hide a small real error; float64's cannot
    prompt = torch.randint(37, (2, 5), generator=torch.Generator().manual_seed(1))
    readable_cache, fast_cache = KVCache(model.config, 2), KVCache(model.config, 2)
    fast = fast_decode_step(model)
    with torch.inference_mode():
        readable_logits, fast_logits = model.decode_step(prompt, readable_cache), fast(prompt, fast_cache)
        for _ in range(model.config.block_size - 5):
            token = readable_logits.argmax(-1, keepdim=True)
            readable_logits, fast_logits = model.decode_step(token, readable_cache), fast(token, fast_cache)
            torch.testing.assert_close(fast_logits, readable_logits, rtol=1e-12, atol=1e-12)


def test_models_with_parts_it_does_not_know_walk_the_modules(make_model, model):
    moe = make_model(n_experts=4, n_experts_active=2)
    assert fast_decode_step(moe) is None
    lora = make_model()
    apply_lora(lora, rank=2)
    assert fast_decode_step(lora) is None
    mlp_lora = GPT(model.config).eval()  # every block family: adapters on the MLP's up projection
    apply_lora(mlp_lora, rank=2, targets=("mlp.c_fc",))
    token_rows = model
    assert fast_decode_step(mlp_lora) is None
    apply_lora(token_rows, rank=2, token_ids=[3])  # trainable embedding and head rows (a chat template's tokens)
    assert fast_decode_step(token_rows) is None
    assert torch.equal(generate(token_rows, torch.tensor([[1, 2]]), 5, temperature=0),
                       generate(token_rows, torch.tensor([[1, 2]]), 5, temperature=0, fast=False))
    prompt = torch.tensor([[1, 2]])
    assert torch.equal(generate(moe, prompt, 5, temperature=0), generate(moe, prompt, 5, temperature=0, fast=False))


def test_a_model_with_a_forward_hook_walks_the_modules_so_the_hook_runs_at_every_token(model):
    calls = []
    handle = model.transformer.ln_f.register_forward_pre_hook(lambda module, args: calls.append(1))
    assert fast_decode_step(model) is None
    generate(model, torch.tensor([[1, 2, 3]]), 4, temperature=0)
    assert len(calls) == 4, "the prefill's token, then one call per new token"
    handle.remove()
    assert fast_decode_step(model) is not None


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_a_wide_product_split_by_threads_equals_the_whole_product(threads, bias, monkeypatch):
    from tinylm.generate import fast

    monkeypatch.setattr(fast, "SPLIT_OUTPUTS", 8)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        head = torch.nn.Linear(6, 37, bias=bias)  # 37 outputs: 3 threads leave the last slice two zero columns short
        head64 = copy.deepcopy(head).double()  # float32's rounding would hide a small real error; float64's cannot
        split, split64 = fast.fused_linear(head), fast.fused_linear(head64)
        whole = fast.fused_linear(torch.nn.Linear(6, 4, bias=bias))  # under SPLIT_OUTPUTS: not split
    finally:
        torch.set_num_threads(before)
    assert split.__name__ == split64.__name__ == "sliced" and whole.__name__ == "<lambda>"
    for rows in (1, 3):
        x = torch.randn(rows, 6, generator=torch.Generator().manual_seed(rows))
        with torch.no_grad():
            torch.testing.assert_close(split(x), head(x), rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(split64(x.double()), head64(x.double()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_a_large_narrow_product_is_split_along_its_inputs_and_equals_the_whole(threads, bias, monkeypatch):
    from tinylm.generate import fast

    monkeypatch.setattr(fast, "SPLIT_WEIGHTS", 60)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        down = torch.nn.Linear(12, 5, bias=bias).double()  # 60 weights, inputs a multiple of 2 and 3: split inputs
        odd = torch.nn.Linear(13, 5, bias=bias).double()  # 65 weights, 13 inputs: split along its outputs
        small = torch.nn.Linear(11, 5, bias=bias).double()  # 55 weights: whole, in its own layout
        split, odd_split, whole = fast.fused_linear(down), fast.fused_linear(odd), fast.fused_linear(small)
    finally:
        torch.set_num_threads(before)
    assert (split.__name__, odd_split.__name__, whole.__name__) == ("summed", "sliced", "<lambda>")
    for rows in (1, 3):
        x = torch.randn(rows, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(rows))
        with torch.no_grad():
            torch.testing.assert_close(split(x[:, :12]), down(x[:, :12]), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(odd_split(x), odd(x), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(whole(x[:, :11]), small(x[:, :11]), rtol=1e-12, atol=1e-12)


def test_generation_with_products_split_by_threads_is_the_readable_ones(model, monkeypatch):
    from tinylm.generate import fast

    monkeypatch.setattr(fast, "SPLIT_OUTPUTS", 8)  # the tiny models' 37 outputs split in two
    monkeypatch.setattr(fast, "SPLIT_WEIGHTS", 64)  # and their blocks' products along their inputs
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        prompt = torch.randint(37, (1, 3), generator=torch.Generator().manual_seed(2))
        assert torch.equal(generate(model, prompt, 40, temperature=0.9, seed=3),
                           generate(model, prompt, 40, temperature=0.9, seed=3, fast=False))
    finally:
        torch.set_num_threads(before)


def test_a_strided_attention_output_as_a_gpu_kernel_returns_it_gives_the_same_logits(model, monkeypatch):
    from tinylm.generate import fast

    sdpa = fast.F.scaled_dot_product_attention

    def strided(*args, **kwargs):  # the same values in a (B, L, H, D) buffer seen as (B, H, L, D): not contiguous
        y = sdpa(*args, **kwargs)
        return y.transpose(1, 2).contiguous().transpose(1, 2)

    prompt = torch.randint(37, (2, 5), generator=torch.Generator().manual_seed(1))
    plain_cache, strided_cache = KVCache(model.config, 2), KVCache(model.config, 2)
    step = fast_decode_step(model)
    with torch.inference_mode():
        step(prompt, plain_cache), step(prompt, strided_cache)  # the prefill (the readable step)
        token = torch.tensor([[3], [4]])
        expected = step(token, plain_cache)
        monkeypatch.setattr(fast.F, "scaled_dot_product_attention", strided)
        torch.testing.assert_close(step(token, strided_cache), expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("eps", [1e-5, None])
def test_rms_norm_in_four_operations_is_torchs(dtype, tolerance, eps):
    from tinylm.generate import fast

    norm = torch.nn.RMSNorm(24, eps=eps, dtype=dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(24, generator=torch.Generator().manual_seed(0)))
    ours = fast._norm(norm)
    assert ours.__name__ == "rms_norm"  # not the F.rms_norm fallback
    for rows in (1, 3):
        x = torch.randn(rows, 24, dtype=dtype, generator=torch.Generator().manual_seed(rows)) * 3
        with torch.no_grad():
            torch.testing.assert_close(ours(x), norm(x), rtol=tolerance, atol=tolerance)
    # a mean square a hundredth of eps (of the dtype's where eps is None): eps sets the result, so a wrong one shows
    used_eps = torch.finfo(dtype).eps if eps is None else eps
    tiny = torch.full((1, 24), used_eps**0.5 / 10, dtype=dtype)
    with torch.no_grad():
        torch.testing.assert_close(ours(tiny), norm(tiny), rtol=tolerance, atol=tolerance)


def test_weight_copies_lie_one_after_another_and_a_full_buffer_opens_another():
    from tinylm.generate.fast import WeightCopies

    copies = WeightCopies(14)
    a, b = torch.randn(2, 3), torch.randn(3, 2).t()  # b a transposed view: copied contiguous
    ca, cb = copies(a), copies(b)
    assert torch.equal(ca, a) and torch.equal(cb, b) and cb.is_contiguous()
    assert cb.data_ptr() == ca.data_ptr() + a.numel() * a.element_size()  # the next slot of the same buffer
    c, d = torch.randn(5), torch.randn(4, dtype=torch.float64)  # 6 + 6 + 5 > 14; then another dtype
    cc, cd = copies(c), copies(d)
    assert torch.equal(cc, c) and torch.equal(cd, d) and cd.dtype == torch.float64
    assert cc.untyped_storage().data_ptr() != ca.untyped_storage().data_ptr()
    assert torch.equal(ca, a) and torch.equal(cb, b)  # the first buffer lives on in its copies


@pytest.mark.skipif(not hasattr(mmap, "MADV_HUGEPAGE") or not Path("/sys/kernel/mm/transparent_hugepage").is_dir(),
                    reason="huge pages are advised on Linux, with a kernel built with transparent huge pages")
def test_a_buffer_of_a_huge_page_or_more_starts_on_one_and_is_advised_huge_pages():
    from tinylm.generate.fast import HUGE_PAGE, cpu_buffer

    buffer = cpu_buffer(HUGE_PAGE // 4 * 3 + 5, torch.float32)  # three huge pages and a bit, nothing else holds it
    gc.collect()
    buffer.fill_(1.5)  # its memory is still there to write and read
    assert buffer.numel() == HUGE_PAGE // 4 * 3 + 5 and buffer.dtype == torch.float32
    assert float(buffer.double().sum()) == 1.5 * buffer.numel()
    assert buffer.data_ptr() % HUGE_PAGE == 0
    # /proc/self/smaps: the mapping that holds the buffer, and its flags ("hg": advised MADV_HUGEPAGE)
    flags, holds = None, False
    for line in open("/proc/self/smaps"):
        bounds = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
        if bounds:
            holds = int(bounds[1], 16) <= buffer.data_ptr() < int(bounds[2], 16)
        elif holds and line.startswith("VmFlags:"):
            flags = line.split()[1:]
    assert flags is not None, "no mapping holds the buffer"
    assert "hg" in flags
    small = cpu_buffer(10, torch.float64)
    assert small.numel() == 10 and small.dtype == torch.float64


def test_generation_from_copies_in_advised_mappings_is_the_readable_ones(model, monkeypatch):
    """A "huge page" of 4 KiB: the tiny models' buffers (the blocks' copies, about 100 KB; the head's, 4.7 KB) take the
    mapping's path."""
    from tinylm.generate import fast

    monkeypatch.setattr(fast, "HUGE_PAGE", 4096)
    mappings = []
    monkeypatch.setattr(fast, "mmap", SimpleNamespace(**{**vars(mmap), "mmap": lambda *a, **k: mappings.append(
        mmap.mmap(*a, **k)) or mappings[-1]}))
    prompt = torch.randint(37, (1, 3), generator=torch.Generator().manual_seed(4))
    fast_tokens = generate(model, prompt, 40, temperature=0.9, seed=5)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        assert len(mappings) == 2, "the blocks' buffer and the head's were mapped"
    assert torch.equal(fast_tokens, generate(model, prompt, 40, temperature=0.9, seed=5, fast=False))
