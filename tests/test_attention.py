"""Causal attention: the explicit path against a hand loop and against F.scaled_dot_product_attention, and causality."""

import math

import pytest
import torch
import torch.nn.functional as F

import tinylm.model.attention as attention_module
from tinylm.config import with_architecture
from tinylm.model.attention import explicit_causal_attention, fast_causal_attention
from tinylm.model.gpt import GPT
from tinylm.model.moe import MoE


def loop_reference(q, k, v):
    """Attention one query at a time: position t takes a softmax over the scores of positions 0..t."""
    B, H, T, D = q.shape
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                visible = slice(0, t + 1)
                scores = k[b, h, visible] @ q[b, h, t] / math.sqrt(D)  # (t + 1,)
                weights = torch.softmax(scores, dim=0)
                out[b, h, t] = weights @ v[b, h, visible]
    return out


def random_qkv(B=2, H=3, T=7, D=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=dtype) for _ in range(3)]


def test_explicit_attention_matches_a_per_position_loop():
    q, k, v = random_qkv()
    torch.testing.assert_close(explicit_causal_attention(q, k, v), loop_reference(q, k, v))


def test_explicit_attention_weights_are_lower_triangular_rows_summing_to_one():
    q, k, v = random_qkv(T=9)
    _, weights = explicit_causal_attention(q, k, v, return_weights=True)
    T = q.size(-2)
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    assert torch.all(weights[..., future] == 0)
    assert torch.all(weights[..., ~future] > 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1], dtype=weights.dtype))


@pytest.mark.parametrize("T", [1, 4, 16])
def test_explicit_attention_matches_scaled_dot_product_attention(T):
    q, k, v = random_qkv(T=T, D=8, dtype=torch.float32, seed=T)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(explicit_causal_attention(q, k, v), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("new", [1, 3, 9])
@pytest.mark.parametrize("attend", [explicit_causal_attention, fast_causal_attention])
def test_queries_for_the_last_positions_attend_as_in_the_full_sequence(attend, new):
    """What a cache asks: `new` queries that are the last positions, keys and values for all 9 positions."""
    q, k, v = random_qkv(T=9)
    torch.testing.assert_close(attend(q[..., -new:, :], k, v), loop_reference(q, k, v)[..., -new:, :])


@pytest.mark.parametrize("attend", [explicit_causal_attention, fast_causal_attention])
def test_an_explicit_mask_replaces_the_causal_one(attend):
    q, k, v = random_qkv(T=6)
    mask = torch.ones(6, 6, dtype=torch.bool).tril()
    mask[:, :2] = torch.eye(6, dtype=torch.bool)[:, :2]  # keys 0 and 1 are padding: only they see themselves
    expected = loop_reference(q, k, v)  # rows 2.. computed without keys 0 and 1:
    expected[..., 2:, :] = loop_reference(q[..., 2:, :], k[..., 2:, :], v[..., 2:, :])
    torch.testing.assert_close(attend(q, k, v, mask=mask)[..., 2:, :], expected[..., 2:, :])


@pytest.mark.parametrize("bias", [True, False])
def test_model_explicit_and_flash_paths_agree_with_the_same_weights(make_model, bias):
    flash = make_model(attention="flash", bias=bias).eval()
    explicit = make_model(seed=1, attention="explicit", bias=bias).eval()
    idx = torch.randint(0, flash.config.vocab_size, (3, flash.config.block_size),
                        generator=torch.Generator().manual_seed(0))
    flash_logits, _ = flash(idx)
    assert not torch.allclose(explicit(idx)[0], flash_logits, atol=1e-5, rtol=1e-5)  # different init: differ
    explicit.load_state_dict(flash.state_dict())
    torch.testing.assert_close(explicit(idx)[0], flash_logits, atol=1e-5, rtol=1e-5)


def earlier_logits_change_when_a_future_token_changes(model, position: int) -> bool:
    """Change the token at `position` and report whether the logits at positions < position moved."""
    model.eval()
    T, V = model.config.block_size, model.config.vocab_size
    idx = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(position))
    changed = idx.clone()
    changed[:, position] = (changed[:, position] + 1) % V
    with torch.no_grad():
        before, _ = model(idx)
        after, _ = model(changed)
    # The changed token must matter somewhere (at its own position), or the check proves nothing.
    assert not torch.allclose(before[:, position], after[:, position])
    return not torch.allclose(before[:, :position], after[:, :position], atol=1e-6, rtol=0)


@pytest.mark.parametrize("attention", ["flash", "explicit"])
@pytest.mark.parametrize("position", [1, 7, 15])
def test_changing_a_future_token_leaves_earlier_logits_unchanged(make_model, attention, position):
    model = make_model(attention=attention)
    assert not earlier_logits_change_when_a_future_token_changes(model, position)


def _unmasked(q, k, v, dropout_p=0.0, return_weights=False, mask=None):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return weights @ v


def _anti_causal(q, k, v, dropout_p=0.0, return_weights=False, mask=None):
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).triu(), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def llama_family_model(tiny_config, arch, **overrides):
    torch.manual_seed(0)
    return GPT(with_architecture(tiny_config(n_head=4, **overrides), arch))


@pytest.mark.parametrize("attention", ["flash", "explicit"])
@pytest.mark.parametrize("arch", ["llama", "llama-moe"])
@pytest.mark.parametrize("position", [1, 7, 15])
def test_llama_family_is_causal_through_rope_gqa_and_expert_routing(tiny_config, arch, attention, position):
    """A mixture of experts routes each token on its own vector, so routing cannot carry the future backwards."""
    model = llama_family_model(tiny_config, arch, attention=attention)
    assert not earlier_logits_change_when_a_future_token_changes(model, position)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "llama-moe"])
@pytest.mark.parametrize("broken", [_unmasked, _anti_causal])
def test_causality_check_catches_a_wrong_mask(tiny_config, monkeypatch, broken, arch):
    """The causality check above is not vacuous: a missing or anti-causal mask fails it, in every family."""
    monkeypatch.setattr(attention_module, "explicit_causal_attention", broken)
    model = llama_family_model(tiny_config, arch, attention="explicit")
    assert earlier_logits_change_when_a_future_token_changes(model, 7)


def test_explicit_attention_dropout_only_acts_when_asked():
    q, k, v = random_qkv(dtype=torch.float32)
    torch.testing.assert_close(explicit_causal_attention(q, k, v, dropout_p=0.0), explicit_causal_attention(q, k, v))
    torch.manual_seed(0)
    assert not torch.allclose(explicit_causal_attention(q, k, v, dropout_p=0.5), explicit_causal_attention(q, k, v))


def _scores_normalised_over_tokens(self, x):
    """Routing whose scores are a softmax over the tokens (as in expert-choice routing): each token's weights
    depend on every other token, the future included."""
    scores = self.router(x).softmax(dim=0)  # (N, E): normalised down the tokens, not across the experts
    chosen = scores.topk(self.top_k, dim=-1).indices
    weights = scores.gather(-1, chosen)
    return chosen, weights / weights.sum(-1, keepdim=True), scores


def test_causality_check_catches_routing_that_looks_at_other_tokens(tiny_config, monkeypatch):
    monkeypatch.setattr(MoE, "route", _scores_normalised_over_tokens)
    model = llama_family_model(tiny_config, "llama-moe")
    assert earlier_logits_change_when_a_future_token_changes(model, 7)
