"""The speedrun's model options: ReLU², QK-norm, zero-initialised projections and the logit soft cap, each against
a reference written out by hand, through the training forward and the KV-cache decode alike, and refused by the
export formats that cannot hold them."""

import math

import pytest
import torch
import torch.nn.functional as F

from tinylm.config import ConfigError
from tinylm.interop.hf_gpt2 import check_exportable
from tinylm.interop.hf_llama import InteropError, check_llama_exportable
from tinylm.model.kv_cache import KVCache

SPEEDRUN_OPTIONS = dict(mlp="relu2", qk_norm=True, zero_init_projections=True, logit_softcap=15.0)


def test_relu_squared_mlp_is_the_projection_of_the_squared_relu(make_model):
    mlp = make_model(mlp="relu2").transformer.h[0].mlp
    x = torch.randn(3, 5, 32)
    expected = mlp.c_proj(torch.clamp(mlp.c_fc(x), min=0) ** 2)
    assert torch.allclose(mlp(x), expected, atol=1e-6)
    assert mlp.c_fc.out_features == 4 * 32  # as wide as GPT-2's MLP


def _reference_attention(attn, x, normalise: bool):
    """Causal attention written out: split q, k, v into heads, optionally RMS-normalise q and k per head (no gain),
    softmax of masked scores, heads side by side, output projection."""
    B, T, C = x.shape
    hs = C // attn.n_head
    q, k, v = attn.c_attn(x).split(C, dim=2)
    q, k, v = (t.view(B, T, attn.n_head, hs).transpose(1, 2) for t in (q, k, v))
    if normalise:
        q = q / q.pow(2).mean(-1, keepdim=True).add(torch.finfo(q.dtype).eps).sqrt()
        k = k / k.pow(2).mean(-1, keepdim=True).add(torch.finfo(k.dtype).eps).sqrt()
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
    return attn.c_proj(y)


@pytest.mark.parametrize("attention", ["flash", "explicit"])
def test_qk_norm_normalises_each_heads_queries_and_keys_before_the_scores(make_model, attention):
    x = torch.randn(2, 7, 32) * 5
    normed = make_model(qk_norm=True, attention=attention).transformer.h[0].attn
    plain = make_model(qk_norm=False, attention=attention).transformer.h[0].attn
    with torch.no_grad():
        assert torch.allclose(normed(x), _reference_attention(normed, x, normalise=True), atol=1e-5)
        assert torch.allclose(plain(x), _reference_attention(plain, x, normalise=False), atol=1e-5)
        assert not torch.allclose(normed(x), plain(x), atol=1e-3)  # same weights (seed 0): the option does something


def test_qk_norm_makes_the_scores_independent_of_the_scale_of_queries_and_keys(make_model):
    attn = make_model(qk_norm=True).transformer.h[0].attn
    q, k, _ = attn.heads(torch.randn(1, 6, 32))
    assert torch.allclose(q.pow(2).mean(-1), torch.ones(1, 2, 6), atol=1e-4)
    assert torch.allclose(k.pow(2).mean(-1), torch.ones(1, 2, 6), atol=1e-4)


def test_zero_initialised_projections_make_every_block_start_as_the_identity(make_model):
    model = make_model(zero_init_projections=True, dropout=0.0)
    projections = [p for name, p in model.named_parameters() if name.endswith("c_proj.weight")]
    assert len(projections) == 2 * 2 and all(torch.count_nonzero(p) == 0 for p in projections)
    idx = torch.randint(37, (2, 9))
    with torch.no_grad():
        logits, _ = model(idx)
        embedded = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(9))
        expected = model.lm_head(model.transformer.ln_f(embedded))  # the blocks add nothing yet
    assert torch.allclose(logits, expected, atol=1e-6)
    default = make_model(zero_init_projections=False)
    assert all(torch.count_nonzero(p) > 0 for name, p in default.named_parameters() if name.endswith("c_proj.weight"))


def test_the_soft_cap_is_cap_times_tanh_of_the_raw_logits(make_model):
    capped, raw = make_model(logit_softcap=2.0), make_model()  # seed 0 both: the same weights
    idx = torch.randint(37, (2, 16))
    with torch.no_grad():
        for model in (capped, raw):
            model.lm_head.weight.mul_(40)  # logits far beyond the cap, so that it bites
        capped_logits, raw_logits = capped(idx)[0], raw(idx)[0]
    assert torch.allclose(capped_logits, 2.0 * torch.tanh(raw_logits / 2.0), atol=1e-6)
    assert capped_logits.abs().max() <= 2.0 < raw_logits.abs().max()


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_decoding_with_the_kv_cache_equals_the_full_forward_with_every_option(make_model, position):
    model = make_model(position=position, **{**SPEEDRUN_OPTIONS, "zero_init_projections": False}).eval()
    idx = torch.randint(37, (2, 12))
    with torch.no_grad():
        full = model(idx)[0]
        cache = KVCache(model.config, batch_size=2)
        steps = [model.decode_step(idx[:, :5], cache)] + [model.decode_step(idx[:, t:t + 1], cache)
                                                           for t in range(5, 12)]
    assert torch.allclose(torch.stack(steps, 1), full[:, 4:], atol=1e-5)


def test_a_model_with_every_option_learns(make_model, train_config, tokens):
    from tinylm.train.trainer import Trainer

    train, val = tokens
    losses = []
    trainer = Trainer(make_model(**SPEEDRUN_OPTIONS), train_config(max_steps=40, learning_rate=1e-2), train, val,
                      device="cpu", callbacks=[lambda r: losses.append(r["loss"]) if r["event"] == "train" else None])
    trainer.fit()
    assert losses[-1] < 0.6 * losses[0]


def test_export_refuses_what_gpt2_and_llama_cannot_hold(make_model):
    with pytest.raises(InteropError, match="qk_norm=True.*logit_softcap=15.0"):
        check_exportable(make_model(qk_norm=True, logit_softcap=15.0))
    with pytest.raises(InteropError, match="ReLUSquared"):
        check_exportable(make_model(mlp="relu2"))
    check_exportable(make_model(zero_init_projections=True))  # where the weights started does not matter
    llama = dict(norm="rmsnorm", position="rope", mlp="swiglu", bias=False)
    check_llama_exportable(make_model(**llama))
    with pytest.raises(InteropError, match="qk_norm"):
        check_llama_exportable(make_model(**llama, qk_norm=True))


@pytest.mark.parametrize("bad, message", [
    (dict(logit_softcap=0.0), "logit_softcap must be positive"),
    (dict(logit_softcap=-3.0), "logit_softcap must be positive"),
    (dict(mlp="relu3"), "mlp must be one of"),
])
def test_bad_options_are_refused_with_what_to_use(tiny_config, bad, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**bad)


def test_relu_squared_is_sparse_where_gelu_is_not(make_model):
    x = torch.randn(4, 8, 32)
    relu2, gelu = make_model(mlp="relu2").transformer.h[0].mlp, make_model().transformer.h[0].mlp
    with torch.no_grad():
        assert (relu2.act(relu2.c_fc(x)) == 0).float().mean() > 0.3
        assert (F.gelu(gelu.c_fc(x), approximate="tanh") == 0).float().mean() < 0.01
