"""Hugging Face Llama interop: weights into tinylm and back out, checked on logits against transformers itself
(a random grouped-query Llama built offline), RoPE tables, the key mapping, refusals, and the command line."""

import dataclasses
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding  # noqa: E402

from tests.helpers import hf_logits, tinylm_logits  # noqa: E402
from tinylm.cli.interop import cli, main  # noqa: E402
from tinylm.config import GPTConfig, with_architecture  # noqa: E402
from tinylm.interop.hf_llama import (  # noqa: E402  # noqa: E402
    InteropError,
    config_from_hf_llama,
    from_hf_llama,
    hf_llama_to_tinylm_state_dict,
    tinylm_to_hf_llama_state_dict,
    to_hf_llama,
)
from tinylm.interop.llama2c import from_llama2c  # noqa: E402
from tinylm.model.gpt import GPT  # noqa: E402
from tinylm.model.rope import RotaryEmbedding  # noqa: E402
from tinylm.train.checkpoint import load_checkpoint, load_model  # noqa: E402

# Grouped-query attention (4 query heads, 2 key/value heads), a non-default eps and RoPE base, so each must map.
HF_SHAPE = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=101,
                intermediate_size=96, max_position_embeddings=32, rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "rope_theta": 500.0}, bos_token_id=None, eos_token_id=None)
TOL = 1e-5


def random_llama(seed=0, **overrides):
    """A randomly initialised transformers Llama (no download), its weights large enough that logits spread over
    several units and its norms (initialised to 1) and biases (to 0) made non-trivial."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**HF_SHAPE, **overrides})).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1 + 0.2 * torch.randn_like(param))
            else:
                param.copy_(0.15 * torch.randn_like(param))
    return model


@pytest.fixture
def ids():
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, HF_SHAPE["vocab_size"], (3, HF_SHAPE["max_position_embeddings"]), generator=generator)


@pytest.mark.parametrize("theta", [500.0, 10000.0])
def test_rope_tables_are_bit_for_bit_transformers_own(theta):
    config = LlamaConfig(**{**HF_SHAPE, "rope_parameters": {"rope_type": "default", "rope_theta": theta}})
    positions = torch.arange(HF_SHAPE["max_position_embeddings"])
    cos, sin = LlamaRotaryEmbedding(config)(torch.zeros(1), positions[None])
    ours = RotaryEmbedding(config.head_dim, HF_SHAPE["max_position_embeddings"], theta)
    assert torch.equal(ours.cos, cos[0]) and torch.equal(ours.sin, sin[0])


@pytest.mark.parametrize("tie", [False, True])
def test_hf_llama_imports_with_equal_logits(ids, tie):
    hf = random_llama(tie_word_embeddings=tie)
    model = from_hf_llama(hf)
    cfg = model.config
    assert (cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.kv_heads, cfg.n_embd, cfg.mlp_hidden_size) \
        == (101, 32, 2, 4, 2, 64, 96)
    assert (cfg.norm, cfg.position, cfg.mlp, cfg.bias, cfg.norm_eps, cfg.rope_theta) == \
        ("rmsnorm", "rope", "swiglu", False, 1e-6, 500.0)
    assert cfg.tie_weights == tie and (model.lm_head.weight is model.transformer.wte.weight) == tie
    expected = hf_logits(hf, ids)
    assert expected.std() > 1  # logits that differ, so that a wrong weight would show
    torch.testing.assert_close(tinylm_logits(model, ids), expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("tie", [False, True])
def test_export_loads_in_transformers_with_equal_logits(tmp_path, ids, tie):
    torch.manual_seed(2)
    config = dataclasses.replace(with_architecture(GPTConfig(vocab_size=101, block_size=32, n_layer=2, n_head=4,
                                                             n_embd=64), "llama"), tie_weights=tie, rope_theta=500.0)
    model = GPT(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(1 + 0.2 * torch.randn_like(param) if ".ln_" in name else 0.15 * torch.randn_like(param))
    folder = to_hf_llama(model, tmp_path / "hf")
    saved = json.loads((folder / "config.json").read_text())
    assert (saved["model_type"], saved["num_key_value_heads"], saved["intermediate_size"], saved["head_dim"]) == \
        ("llama", 2, config.mlp_hidden_size, 16)
    assert saved["rope_parameters"] == {"rope_type": "default", "rope_theta": 500.0}
    assert (saved["tie_word_embeddings"], saved["attention_bias"], saved["mlp_bias"]) == (tie, False, False)
    loaded = LlamaForCausalLM.from_pretrained(folder).eval()
    torch.testing.assert_close(hf_logits(loaded, ids), tinylm_logits(model, ids), atol=TOL, rtol=0)
    again = from_hf_llama(folder)  # and back again, from the folder's path
    torch.testing.assert_close(tinylm_logits(again, ids), tinylm_logits(model, ids), atol=TOL, rtol=0)


def test_biases_on_attention_and_mlp_travel_both_ways(tmp_path, ids):
    hf = random_llama(seed=3, attention_bias=True, mlp_bias=True)
    model = from_hf_llama(hf)
    assert model.config.bias and model.transformer.h[0].attn.c_attn.bias is not None
    torch.testing.assert_close(tinylm_logits(model, ids), hf_logits(hf, ids), atol=TOL, rtol=0)
    loaded = LlamaForCausalLM.from_pretrained(to_hf_llama(model, tmp_path / "hf")).eval()
    torch.testing.assert_close(hf_logits(loaded, ids), hf_logits(hf, ids), atol=TOL, rtol=0)


def test_mapping_stacks_q_k_v_into_c_attn_and_renames_the_rest_key_for_key():
    hf = random_llama(seed=4, attention_bias=True, mlp_bias=True)
    hf_state = hf.state_dict()
    config = config_from_hf_llama(hf.config)
    mapped = hf_llama_to_tinylm_state_dict(hf_state, config)
    tiny_state = GPT(config).state_dict()
    assert set(mapped) == set(tiny_state) and all(mapped[k].shape == tiny_state[k].shape for k in mapped)
    layer = "model.layers.1.self_attn."
    assert torch.equal(mapped["transformer.h.1.attn.c_attn.weight"],
                       torch.cat([hf_state[layer + p + "_proj.weight"] for p in "qkv"]))
    assert torch.equal(mapped["transformer.h.1.mlp.c_gate.bias"], hf_state["model.layers.1.mlp.gate_proj.bias"])
    assert torch.equal(mapped["transformer.h.0.ln_2.weight"],
                       hf_state["model.layers.0.post_attention_layernorm.weight"])
    inverse = tinylm_to_hf_llama_state_dict(mapped, config)
    assert set(inverse) == set(hf_state) and all(torch.equal(inverse[k], hf_state[k]) for k in hf_state)


@pytest.mark.parametrize("change, phrase", [
    (dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}), "rope_type='linear'"),
    (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                           "high_freq_factor": 4.0, "original_max_position_embeddings": 16}), "rope_type='llama3'"),
    (dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}),
     "partial_rotary_factor=0.5"),
    (dict(attention_bias=True, mlp_bias=False), "attention_bias=True but mlp_bias=False"),
    (dict(hidden_act="gelu"), "hidden_act='gelu'"),
    (dict(head_dim=32), "head_dim=32"),
])
def test_import_refuses_llama_options_tinylm_lacks(change, phrase):
    with pytest.raises(InteropError, match=phrase):
        config_from_hf_llama(LlamaConfig(**{**HF_SHAPE, **change}))


def test_every_unsupported_option_is_named_at_once_and_before_any_weight_loads(tmp_path):
    random_llama(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
                 hidden_act="gelu").save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()  # were the weights read first, this would be a missing file
    with pytest.raises(InteropError) as info:
        from_hf_llama(tmp_path / "hf")
    assert "rope_type='linear'" in str(info.value) and "hidden_act='gelu'" in str(info.value)
    with pytest.raises(InteropError, match="model_type 'llama'"):
        config_from_hf_llama(GPT2Config())


@pytest.mark.parametrize("arch, phrase", [
    ("gpt2", "norm='layernorm'.*position='learned'.*mlp='gelu'"),
    ("llama-moe", "n_experts=8"),
])
def test_export_refuses_models_that_are_not_llama_style(tmp_path, arch, phrase):
    model = GPT(with_architecture(GPTConfig(vocab_size=101, block_size=32, n_layer=1, n_head=4, n_embd=64), arch))
    with pytest.raises(InteropError, match=phrase):
        to_hf_llama(model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_cli_detects_llama_imports_its_tokenizer_and_exports_both_formats(tmp_path, ids, capsys, sentencepiece_model):
    from tinylm.tokenizers.llama import SentencePieceTokenizer

    # run.c's eps and RoPE base, so that the llama2.c export below is possible; a vocabulary as large as the tokenizer's
    hf = random_llama(seed=5, vocab_size=400, rms_norm_eps=1e-5,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    hf.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "tokenizer.model").write_bytes(sentencepiece_model.read_bytes())
    ckpt = main(["import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "llama.pt")])
    assert load_checkpoint(ckpt)["source"] == f"transformers Llama: {tmp_path / 'hf'}"
    model, tokenizer, _ = load_model(ckpt)
    assert isinstance(tokenizer, SentencePieceTokenizer) and tokenizer.vocab_size == 400  # the folder's own
    torch.testing.assert_close(tinylm_logits(model, ids), hf_logits(hf, ids), atol=TOL, rtol=0)

    folder = main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "exported")])
    exported = LlamaForCausalLM.from_pretrained(folder).eval()
    torch.testing.assert_close(hf_logits(exported, ids), hf_logits(hf, ids), atol=TOL, rtol=0)
    assert (folder / "tokenizer.model").read_bytes() == (tmp_path / "hf" / "tokenizer.model").read_bytes()
    assert (exported.config.bos_token_id, exported.config.eos_token_id) == (1, 2)

    binary = main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "llama.bin"), "--format", "llama2c"])
    torch.testing.assert_close(tinylm_logits(from_llama2c(binary), ids), hf_logits(hf, ids), atol=TOL, rtol=0)
    out = capsys.readouterr().out
    assert "LlamaForCausalLM.from_pretrained" in out and "run.c" in out


def test_cli_refuses_a_folder_that_is_neither_gpt2_nor_llama(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(SystemExit) as info:
        cli(["import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "x.pt")])
    assert "'bert'" in str(info.value.code) and "'gpt2' and 'llama'" in str(info.value.code)
    with pytest.raises(SystemExit) as info:
        cli(["import", "--hf", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.pt")])
    assert str(info.value.code).startswith("error: could not read a Hugging Face config")
    assert not (tmp_path / "x.pt").exists()


def test_cached_greedy_generation_matches_transformers_generate():
    """Two independent KV caches with RoPE at absolute positions, one answer: ragged prompts, left-padded in both."""
    from tinylm.generate.decode import generate_batch

    reference = random_llama(seed=6).double()
    model = from_hf_llama(reference).double()
    prompts = [[5, 17, 3], [42, 8, 99, 1, 63, 7, 20], [11]]
    ours = generate_batch(model, prompts, 12, temperature=0)
    assert len({tuple(row) for row in ours}) == 3

    longest = max(map(len, prompts))
    input_ids = torch.tensor([[0] * (longest - len(p)) + p for p in prompts])
    attention_mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        theirs = reference.generate(input_ids, attention_mask=attention_mask, max_new_tokens=12, do_sample=False,
                                    pad_token_id=0, use_cache=True)
    assert ours == theirs[:, longest:].tolist()
