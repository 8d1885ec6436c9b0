"""Tracks: preparing tinyshakespeare from the offline mirror, and the per-profile recipes."""

import dataclasses
import hashlib

import numpy as np
import pytest

from tinylm.config import GPTConfig, ModelShape, TrainConfig
from tinylm.data.corpora import TINY_SHAKESPEARE, prepare_shakespeare_char
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.recipes import TRACKS, build_model_config, get_track


@pytest.fixture(scope="module")
def prepared(data_root):
    return prepare_shakespeare_char(data_root / "shakespeare_char")


def test_mirror_copy_of_tinyshakespeare_has_the_expected_digest(prepared):
    assert hashlib.sha256((prepared.folder / "input.txt").read_bytes()).hexdigest() == TINY_SHAKESPEARE.sha256


def test_prepared_splits_decode_back_to_the_text(prepared):
    text = (prepared.folder / "input.txt").read_text(encoding="utf-8")
    tokenizer = prepared.tokenizer
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.chars == sorted(set(text))
    assert len(prepared.train) + len(prepared.val) == len(text)
    assert len(prepared.train) == int(len(text) * 0.9)
    assert tokenizer.decode(np.concatenate([prepared.train, prepared.val])) == text
    assert prepared.meta["train_tokens"] == len(prepared.train) and prepared.meta["val_tokens"] == len(prepared.val)


def test_preparing_again_reuses_the_files(prepared):
    before = (prepared.folder / "train.bin").stat().st_mtime_ns
    again = prepare_shakespeare_char(prepared.folder)
    assert (prepared.folder / "train.bin").stat().st_mtime_ns == before
    np.testing.assert_array_equal(again.val, prepared.val)


def test_unknown_track_lists_the_available_ones():
    with pytest.raises(ValueError, match="shakespeare-char"):
        get_track("no-such-track")


@pytest.mark.parametrize("name", sorted(TRACKS))
def test_every_track_has_a_valid_recipe_per_profile(name, monkeypatch):
    track = get_track(name)
    assert set(track.recipes) == {"smoke", "cpu", "gpu"}
    for profile in track.recipes:
        shape, train_cfg = track.recipe(profile)
        assert isinstance(shape, ModelShape) and isinstance(train_cfg, TrainConfig)
    monkeypatch.setenv("TINYLM_PROFILE", "smoke")
    assert track.recipe() == track.recipes["smoke"]


def test_build_model_config_takes_the_vocabulary_from_the_tokenizer():
    preset = get_track("shakespeare-char").recipes["smoke"][0]
    cfg = build_model_config(preset, CharTokenizer(list("abc")))
    assert cfg == GPTConfig(vocab_size=3, **dataclasses.asdict(preset))


def test_gpt2_124m_recipe_derives_accumulation_from_the_tokens_per_step():
    from tinylm.config import ConfigError

    preset, cfg = get_track("gpt2-124m").recipe("gpu")
    assert cfg.total_batch_tokens == 2**19
    assert cfg.accumulation_steps(preset.block_size, world_size=1) == 8
    assert cfg.accumulation_steps(preset.block_size, world_size=8) == 1
    with pytest.raises(ConfigError, match="total_batch_tokens"):
        cfg.accumulation_steps(preset.block_size, world_size=16)


def test_gpt2_124m_gpu_model_is_gpt2_small_with_the_vocabulary_padded_to_64():
    from tinylm.config import GPT2_124M
    from tinylm.model.gpt import GPT
    from tinylm.tokenizers.gpt2 import BPETokenizer

    preset, _ = get_track("gpt2-124m").recipe("gpu")
    cfg = build_model_config(preset, BPETokenizer("gpt2"), get_track("gpt2-124m").vocab_multiple)
    assert cfg.vocab_size == 50304
    padded, original = GPT(cfg).num_parameters(), GPT(GPT2_124M).num_parameters()
    assert original == 124_439_808
    assert padded - original == (50304 - 50257) * 768, "padding adds embedding rows only"


@pytest.mark.parametrize("arch", ["gpt2", "llama", "llama-moe"])
@pytest.mark.parametrize("name", sorted(TRACKS))
def test_every_recipe_builds_as_every_architecture(name, arch):
    from tinylm.config import ARCHITECTURES
    from tinylm.train.recipes import architecture_of

    for profile, (preset, _) in get_track(name).recipes.items():
        config = preset.config(65, arch)
        assert architecture_of(config) == arch, profile
        shape = ("block_size", "n_layer", "n_head", "n_embd", "dropout")
        assert [getattr(config, f) for f in shape] == [getattr(preset, f) for f in shape], "the recipe's shape is kept"
        assert all(getattr(config, field) == value for field, value in ARCHITECTURES[arch].items() if value != "half")
        assert config.kv_heads == (preset.n_head if arch == "gpt2" else preset.n_head // 2)


def test_a_shape_sets_a_mixture_of_experts_balancing_and_refuses_it_elsewhere():
    from tinylm.config import ConfigError
    from tinylm.train.recipes import architecture_of

    preset, _ = get_track("tinystories").recipe("cpu")
    assert preset.config(6912, "llama-moe").balancing == "loss_free"
    aux = preset.config(6912, "llama-moe", balancing="aux_loss")
    assert aux.balancing == "aux_loss" and architecture_of(aux) == "llama-moe"
    for arch in ("gpt2", "llama"):
        with pytest.raises(ConfigError, match=f"applies to a mixture of experts, and {arch} has none"):
            preset.config(6912, arch, balancing="none")
    mixed = dataclasses.replace(preset.config(6912), norm="rmsnorm")
    assert architecture_of(mixed) is None, "a mix of the families is no family"
