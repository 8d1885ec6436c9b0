"""GPTConfig / TrainConfig: validation with messages that name the field, and dict round trips."""

import dataclasses
import json
import re

import pytest

from tinylm.config import GPT2_124M, ConfigError, GPTConfig, TrainConfig


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
