"""Grouped-query and multi-query attention: the projection's shape, equality with multi-head attention whose key and
value heads are copies of the shared ones, and the fast and explicit paths agreeing with GQA and RoPE."""

import pytest
import torch

from tinylm.config import ConfigError
from tinylm.model.attention import repeat_kv

LLAMA_BLOCK = dict(norm="rmsnorm", position="rope", mlp="swiglu")


def random_idx(model, batch=3, seed=0):
    V, T = model.config.vocab_size, model.config.block_size
    return torch.randint(0, V, (batch, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_c_attn_makes_n_head_queries_and_n_kv_head_keys_and_values(make_model, n_kv_head):
    model = make_model(n_head=4, n_kv_head=n_kv_head)
    C, hs = 32, 8
    attn = model.transformer.h[0].attn
    assert attn.c_attn.weight.shape == ((4 + 2 * n_kv_head) * hs, C)
    assert attn.c_attn.bias.shape == ((4 + 2 * n_kv_head) * hs,)
    assert attn.c_proj.weight.shape == (C, C)
    q, k, v = attn.heads(torch.zeros(2, 5, C))
    assert q.shape == (2, 4, 5, hs) and k.shape == v.shape == (2, n_kv_head, 5, hs)


def test_repeat_kv_gives_each_query_head_its_groups_key_value_head():
    x = torch.randn(2, 3, 5, 4)  # (B, n_kv, T, hs)
    repeated = repeat_kv(x, 2)  # query heads 0, 1 read kv head 0; 2, 3 read kv head 1; 4, 5 read kv head 2
    assert repeated.shape == (2, 6, 5, 4)
    for head in range(6):
        assert torch.equal(repeated[:, head], x[:, head // 2])
    assert repeat_kv(x, 1) is x


def as_multi_head(gqa_model, make_model, grouped=True, **overrides):
    """A multi-head model (n_kv_head = n_head) computing what `gqa_model` computes: every key/value head is
    copied once per query head of its group, in c_attn's weight and bias. grouped=False cycles through the
    key/value heads instead (query head h gets kv head h % n_kv_head): the wrong grouping."""
    cfg = gqa_model.config
    mha = make_model(seed=1, n_kv_head=None, **overrides).to(torch.float64)
    n_rep, kv_width = cfg.n_head // cfg.kv_heads, cfg.kv_heads * cfg.head_size
    state = dict(gqa_model.state_dict())
    for name, tensor in gqa_model.state_dict().items():
        if ".attn.c_attn." not in name:
            continue
        q, k, v = tensor.split([cfg.n_embd, kv_width, kv_width], dim=0)  # rows: q heads, then k heads, then v heads
        # (n_kv·hs, ...) -> (n_kv, hs, ...) -> n_head heads: each n_rep times in a row, or the list n_rep times over
        heads = [t.unflatten(0, (cfg.kv_heads, cfg.head_size)) for t in (k, v)]
        k, v = (h.repeat_interleave(n_rep, dim=0) if grouped else h.repeat(n_rep, *[1] * (h.dim() - 1))
                for h in heads)
        k, v = k.flatten(0, 1), v.flatten(0, 1)
        state[name] = torch.cat([q, k, v], dim=0)
    mha.load_state_dict(state)
    return mha.eval()


@pytest.mark.parametrize("n_kv_head", [1, 2])
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_gqa_equals_multi_head_attention_with_repeated_key_value_weights(make_model, n_kv_head, position):
    shape = dict(n_head=4, position=position, bias=True)  # biases too: they are repeated like the weights
    gqa = make_model(n_kv_head=n_kv_head, **shape).to(torch.float64).eval()
    mha = as_multi_head(gqa, make_model, **shape)
    assert mha.transformer.h[0].attn.c_attn.weight.shape == (3 * 32, 32)
    idx = random_idx(gqa)
    with torch.no_grad():
        torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], rtol=1e-10, atol=1e-10)
        if n_kv_head > 1:  # the grouping matters: query heads 0, 1 share kv head 0, not heads 0 and 2
            wrongly_grouped = as_multi_head(gqa, make_model, grouped=False, **shape)
            assert not torch.allclose(gqa(idx)[0], wrongly_grouped(idx)[0], atol=1e-6)


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_explicit_and_flash_paths_agree_with_gqa_and_rope(make_model, n_kv_head):
    shape = dict(n_head=4, n_kv_head=n_kv_head, bias=False, **LLAMA_BLOCK)
    flash = make_model(attention="flash", **shape).eval()
    explicit = make_model(seed=1, attention="explicit", **shape).eval()
    explicit.load_state_dict(flash.state_dict())
    idx = random_idx(flash)
    with torch.no_grad():
        torch.testing.assert_close(explicit(idx)[0], flash(idx)[0], atol=1e-5, rtol=1e-5)


def test_attention_weights_of_a_gqa_model_are_causal_rows_summing_to_one(make_model):
    model = make_model(n_head=4, n_kv_head=2, **LLAMA_BLOCK).eval()
    block = model.transformer.h[0]
    x = block.ln_1(model.transformer.wte(random_idx(model, batch=1)))
    weights = block.attn.attention_weights(x, model.rope(torch.arange(16)))  # (1, 4, 16, 16)
    assert weights.shape == (1, 4, 16, 16)
    assert torch.all(weights.triu(diagonal=1) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 4, 16))


def test_multi_query_model_trains(make_model):
    model = make_model(n_head=4, n_kv_head=1, **LLAMA_BLOCK)
    idx = random_idx(model, batch=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        _, loss = model(idx, idx)  # predict the next token of a fixed batch: a loss that must go down
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_n_head_not_divisible_by_n_kv_head_is_a_config_error_listing_the_divisors(tiny_config):
    with pytest.raises(ConfigError, match=r"n_head=4 is not divisible by n_kv_head=3.*\[1, 2, 4\]"):
        tiny_config(n_head=4, n_kv_head=3)
