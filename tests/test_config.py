"""GPTConfig / TrainConfig: validation with messages that name the field, and dict round trips."""

import dataclasses
import json
import re

import pytest

from tinylm.config import (
    ARCHITECTURES,
    GPT2_124M,
    LLAMA2C_STORIES15M,
    ConfigError,
    GPTConfig,
    TrainConfig,
    swiglu_hidden_size,
    with_architecture,
)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_defaults_are_gpt2_small():
    assert GPTConfig() == GPT2_124M
    assert (GPT2_124M.n_layer, GPT2_124M.n_head, GPT2_124M.n_embd) == (12, 12, 768)
    assert (GPT2_124M.vocab_size, GPT2_124M.block_size) == (50257, 1024)
    assert GPT2_124M.head_size == 64


@pytest.mark.parametrize(
    "values, field",
    [
        (dict(n_embd=30, n_head=4), "n_embd"),
        (dict(n_embd=30, n_head=4), "n_head"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(block_size=-16), "block_size"),
        (dict(n_layer=-1), "n_layer"),
        (dict(n_head=0), "n_head"),
        (dict(n_embd=-32, n_head=2), "n_embd"),
        (dict(n_layer=2.0), "n_layer"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(dropout=float("nan")), "dropout"),
        (dict(attention="sdpa"), "attention"),
        (dict(norm="batchnorm"), "norm"),
        (dict(norm_eps=0.0), "norm_eps"),
        (dict(position="alibi"), "position"),
        (dict(rope_theta=-1.0), "rope_theta"),
        (dict(mlp="relu"), "mlp"),
        (dict(mlp_hidden=0), "mlp_hidden"),
        (dict(mlp_multiple_of=0), "mlp_multiple_of"),
        (dict(n_kv_head=0), "n_kv_head"),
        (dict(n_kv_head=2.0), "n_kv_head"),
        (dict(n_experts=-1), "n_experts"),
        (dict(n_experts=4, n_experts_active=0), "n_experts_active"),
        (dict(n_shared_experts=-1), "n_shared_experts"),
        (dict(expert_hidden=0), "expert_hidden"),
        (dict(router="topk"), "router"),
        (dict(balancing="auxiliary"), "balancing"),
        (dict(aux_loss_coef=-0.1), "aux_loss_coef"),
        (dict(bias_update_rate=-1e-3), "bias_update_rate"),
    ],
)
def test_gpt_config_rejects_bad_values_naming_the_field(values, field):
    base = dict(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32)
    with pytest.raises(ConfigError, match=re.escape(field)):
        GPTConfig(**{**base, **values})


def test_indivisible_width_message_suggests_a_multiple_of_n_head():
    with pytest.raises(ConfigError) as info:
        GPTConfig(n_embd=100, n_head=12)
    suggestion = int(re.search(r"n_embd=(\d+)\)", str(info.value)).group(1))
    assert suggestion % 12 == 0


@pytest.mark.parametrize(
    "values, field",
    [
        (dict(warmup_steps=100, max_steps=100), "warmup_steps"),
        (dict(warmup_steps=200, max_steps=100), "warmup_steps"),
        (dict(dtype="fp8"), "dtype"),
        (dict(dtype="float64"), "dtype"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=-4), "batch_size"),
        (dict(grad_accum_steps=0), "grad_accum_steps"),
        (dict(max_steps=-1), "max_steps"),
        (dict(eval_interval=-1), "eval_interval"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(min_lr=1.0, learning_rate=0.1), "min_lr"),
        (dict(min_lr=-1e-5), "min_lr"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(beta1=1.0), "beta1"),
        (dict(beta2=-0.5), "beta2"),
        (dict(grad_clip=0.0), "grad_clip"),
        (dict(max_seconds=0), "max_seconds"),
        (dict(muon_ns_steps=0), "muon_ns_steps"),
    ],
)
def test_train_config_rejects_bad_values_naming_the_field(values, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        TrainConfig(**values)


@pytest.mark.parametrize("cls", [GPTConfig, TrainConfig])
def test_from_dict_rejects_unknown_keys_naming_them(cls):
    values = {**cls().to_dict(), "n_embed": 3}
    with pytest.raises(ConfigError, match="n_embed"):
        cls.from_dict(values)


@pytest.mark.parametrize(
    "config",
    [GPTConfig(vocab_size=65, block_size=32, n_layer=3, n_head=4, n_embd=64, dropout=0.1, bias=False,
               tie_weights=False, attention="explicit"),
     TrainConfig(batch_size=3, grad_accum_steps=2, max_seconds=12.5, grad_clip=None, dtype="bfloat16")],
)
def test_to_dict_from_dict_round_trip_through_json(config):
    values = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(values) == config


def test_from_dict_validates_values_too():
    with pytest.raises(ConfigError, match="dropout"):
        GPTConfig.from_dict({**GPTConfig().to_dict(), "dropout": 2.0})


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GPTConfig().n_layer = 3


def test_booleans_are_not_accepted_as_integers():
    with pytest.raises(ConfigError, match="n_layer"):
        GPTConfig(n_layer=True)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=True)


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(n_experts=4, n_experts_active=5), "n_experts_active=5 must be between 1 and n_experts=4"),
        (dict(n_head=4, n_kv_head=3), r"n_head=4 is not divisible by n_kv_head=3.*divisors of n_head \(\[1, 2, 4\]\)"),
        (dict(n_head=2, n_embd=30, position="rope"), r"head size \(n_embd // n_head = 15\) must be even"),
        (dict(norm="LayerNorm"), r"GPTConfig.norm must be one of \('layernorm', 'rmsnorm'\), got 'LayerNorm'"),
        (dict(balancing="loss-free"), r"balancing must be one of \('none', 'aux_loss', 'loss_free'\)"),
    ],
)
def test_architecture_errors_say_what_to_choose(values, message):
    base = dict(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32)
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**{**base, **values})


def test_odd_head_size_is_fine_with_learned_positions():
    assert GPTConfig(vocab_size=37, block_size=16, n_layer=1, n_head=2, n_embd=30).head_size == 15


@pytest.mark.parametrize("n_embd, multiple_of, expected", [(4096, 256, 11008), (288, 32, 768), (768, 32, 2048)])
def test_swiglu_hidden_size_follows_llamas_rule(n_embd, multiple_of, expected):
    """2/3 of 4·n_embd, rounded up to the multiple: Llama 7B's 11008 and llama2.c stories15M's 768."""
    assert swiglu_hidden_size(n_embd, multiple_of) == expected
    assert expected % multiple_of == 0 and 0 <= expected - 8 * n_embd / 3 < multiple_of


def test_derived_widths():
    cfg = GPTConfig(n_embd=288, n_head=6, mlp="swiglu")
    assert (cfg.head_size, cfg.kv_heads, cfg.mlp_hidden_size) == (48, 6, 768)
    assert GPTConfig(n_embd=288, n_head=6).mlp_hidden_size == 4 * 288  # GELU: GPT-2's 4x
    assert GPTConfig(n_embd=288, n_head=6, mlp="swiglu", mlp_hidden=1000).mlp_hidden_size == 1000
    assert GPTConfig(n_head=12, n_kv_head=4).kv_heads == 4
    moe = GPTConfig(mlp="swiglu", n_embd=288, n_head=6, n_experts=8, n_experts_active=2, n_shared_experts=1)
    assert moe.expert_hidden_size * (2 + 1) <= moe.mlp_hidden_size  # what a token uses is at most one dense MLP
    assert dataclasses.replace(moe, expert_hidden=64).expert_hidden_size == 64


def test_llama2c_stories15m_preset_is_a_llama_block():
    cfg = LLAMA2C_STORIES15M
    assert (cfg.norm, cfg.position, cfg.mlp, cfg.bias) == ("rmsnorm", "rope", "swiglu", False)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.mlp_hidden_size) == (6, 6, 288, 32000, 768)
    assert cfg.mlp_hidden_size == swiglu_hidden_size(288, 32)


def test_with_architecture_keeps_the_shape_and_sets_the_block():
    shape = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.1)
    llama = with_architecture(shape, "llama")
    assert (llama.norm, llama.position, llama.mlp, llama.bias) == ("rmsnorm", "rope", "swiglu", False)
    assert llama.n_experts == 0
    assert llama.kv_heads == 2  # half the query heads
    assert (llama.vocab_size, llama.block_size, llama.n_layer, llama.n_head, llama.n_embd, llama.dropout) == (
        37, 16, 2, 4, 32, 0.1)
    moe = with_architecture(shape, "llama-moe")
    assert moe.n_experts > moe.n_experts_active >= 1 and moe.balancing in ("none", "aux_loss", "loss_free")
    assert with_architecture(llama, "gpt2") == shape  # back to GPT-2's block
    assert with_architecture(shape, "gpt2") == shape
    assert with_architecture(dataclasses.replace(shape, n_head=3, n_embd=48), "llama").kv_heads == 3  # odd: no halving
    assert set(ARCHITECTURES) >= {"gpt2", "llama", "llama-moe"}
    with pytest.raises(ConfigError, match="unknown architecture 'mamba'; choose one of gpt2, llama"):
        with_architecture(shape, "mamba")


def test_architecture_fields_round_trip_through_json():
    config = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32, norm="rmsnorm", position="rope",
                       rope_theta=500.0, mlp="swiglu", mlp_hidden=96, n_kv_head=2, n_experts=4, n_experts_active=1,
                       n_shared_experts=1, expert_hidden=24, router="sigmoid", balancing="aux_loss", aux_loss_coef=0.02)
    assert GPTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
