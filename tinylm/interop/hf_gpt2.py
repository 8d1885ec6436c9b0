"""Moving GPT-2 weights between tinylm and Hugging Face transformers' `GPT2LMHeadModel`.

tinylm's parameter names are GPT-2's own, so the mapping is key for key, except that transformers stores four
matrices (`TRANSPOSED`) as `Conv1D` weights, the transpose of nn.Linear's. Only GPT-2-style models export as GPT-2:
biases, a tied head, the tanh GELU, LayerNorm eps 1e-5 (`check_exportable`). transformers is needed only here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import GPTConfig
from ..model.gpt import GPT
from .hf_llama import (
    InteropError,
    import_transformers,
    load_pretrained,
    loaded_gpt,
    save_hf_folder,
    speedrun_problems,
)
from .vocab_export import ExportedVocab, hf_tokenizer_files

# Matrices stored transposed by transformers' Conv1D (weight (in, out)) relative to nn.Linear (weight (out, in)).
TRANSPOSED = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
# Non-parameter buffers some transformers versions put in a GPT-2 state dict: the causal mask, not weights.
# The leading dot matters: "h.0.attn.c_attn.bias" is a weight and must not match ".attn.bias".
HF_BUFFERS = (".attn.bias", ".attn.masked_bias")
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which tinylm's LayerNorms use
GPT2_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")  # transformers' names for GPT-2's GELU
# GPTConfig's field -> GPT2Config's, for the fields both have
GPT2_CONFIG_NAMES = {"vocab_size": "vocab_size", "block_size": "n_positions", "n_layer": "n_layer", "n_head": "n_head",
                     "n_embd": "n_embd"}


def hf_to_tinylm_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A GPT2LMHeadModel state dict in tinylm's layout: same keys, Conv1D weights transposed, mask buffers dropped."""
    return {key: value.t().contiguous() if key.endswith(TRANSPOSED) else value
            for key, value in hf_state.items() if not key.endswith(HF_BUFFERS)}


def tinylm_to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A tinylm GPT state dict in transformers' GPT-2 layout (the inverse of hf_to_tinylm_state_dict)."""
    return {key: value.t().contiguous() if key.endswith(TRANSPOSED) else value for key, value in state.items()}


def config_from_hf(hf_config) -> GPTConfig:
    """The tinylm GPTConfig of a transformers GPT2Config; refuses variants tinylm's GPT does not implement."""
    problems = []
    if hf_config.activation_function not in GPT2_TANH_GELUS:
        problems.append(f"activation_function={hf_config.activation_function!r} "
                        "(tinylm uses GPT-2's tanh GELU, 'gelu_new')")
    if abs(hf_config.layer_norm_epsilon - LAYER_NORM_EPS) > 1e-12:
        problems.append(f"layer_norm_epsilon={hf_config.layer_norm_epsilon} (tinylm's LayerNorm uses {LAYER_NORM_EPS})")
    if hf_config.n_inner not in (None, 4 * hf_config.n_embd):
        problems.append(f"n_inner={hf_config.n_inner} (tinylm's MLP is 4 * n_embd = {4 * hf_config.n_embd} wide)")
    if not getattr(hf_config, "scale_attn_weights", True):
        problems.append("scale_attn_weights=False (tinylm divides attention scores by sqrt(head_size))")
    for flag in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if getattr(hf_config, flag, False):
            problems.append(f"{flag}=True")
    if problems:
        raise InteropError("this GPT-2 variant has no tinylm equivalent: " + "; ".join(problems))
    return GPTConfig(**{ours: getattr(hf_config, theirs) for ours, theirs in GPT2_CONFIG_NAMES.items()},
                     dropout=0.0,  # for inference and fine-tuning; set dropout in the GPTConfig to train with it
                     bias=True, tie_weights=bool(getattr(hf_config, "tie_word_embeddings", True)))


@torch.no_grad()
def from_hf_gpt2(source) -> GPT:
    """A tinylm GPT (eval mode, CPU, float32) with the weights of a transformers GPT-2.

    `source`: a GPT2LMHeadModel, a local folder that GPT2LMHeadModel.from_pretrained reads, or a
    Hub name ("gpt2", "gpt2-medium", ...) when online.
    """
    hf_model = source
    if not isinstance(hf_model, nn.Module):  # a folder or a Hub name
        hf_model = load_pretrained(import_transformers().GPT2LMHeadModel, source, "GPT-2")
    model_type = getattr(hf_model.config, "model_type", None)
    if model_type != "gpt2":
        raise InteropError(f"expected a GPT-2 model (model_type 'gpt2'), got {model_type!r}")
    config = config_from_hf(hf_model.config)
    state = hf_to_tinylm_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in hf_model.state_dict().items()})
    if config.tie_weights:
        state.setdefault("lm_head.weight", state["transformer.wte.weight"])  # a tied head may be saved once
    return loaded_gpt(config, state, "GPT-2")


def check_exportable(model: GPT) -> None:
    """Raise InteropError unless `model` is GPT-2-shaped: biases, a tied head, tanh GELU, LayerNorm eps 1e-5."""
    if not isinstance(model, GPT):
        raise InteropError(f"only tinylm GPT models can be exported, got {type(model).__name__}")
    cfg = model.config
    problems = []
    if not cfg.bias:
        problems.append("bias=False (GPT-2 has biases in every Linear and LayerNorm layer)")
    if not cfg.tie_weights or model.lm_head.weight is not model.transformer.wte.weight:
        problems.append("an untied LM head (GPT-2 shares it with the token embedding)")
    for i, block in enumerate(model.transformer.h):
        activation = getattr(block.mlp, "act", None)
        if not (isinstance(activation, nn.GELU) and activation.approximate == "tanh"):
            problems.append(f"block {i}'s activation is {activation!r}, not GPT-2's GELU(approximate='tanh')")
            break
    problems += speedrun_problems(cfg)
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    if any(abs(m.eps - LAYER_NORM_EPS) > 1e-12 for m in norms):
        problems.append(f"a LayerNorm eps other than {LAYER_NORM_EPS}")
    if problems:
        raise InteropError("this model is not GPT-2-style, so transformers' GPT-2 cannot hold it: "
                           + "; ".join(problems))


def hf_config_of(model: GPT, vocab: ExportedVocab | None = None):
    """The transformers GPT2Config describing a GPT-2-style tinylm model; bos/eos are the vocabulary's <|endoftext|>,
    or without one GPT-2's (50256) when the model has that many rows."""
    cfg = model.config
    eot = vocab.eot if vocab is not None else (50256 if cfg.vocab_size > 50256 else None)
    return import_transformers().GPT2Config(
        **{theirs: getattr(cfg, ours) for ours, theirs in GPT2_CONFIG_NAMES.items()},
        n_inner=None,  # 4 * n_embd, as tinylm's MLP
        activation_function="gelu_new",  # GPT-2's tanh-approximated GELU = nn.GELU(approximate="tanh")
        layer_norm_epsilon=LAYER_NORM_EPS,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=eot,
    )


def is_gpt2_style(config: GPTConfig) -> bool:
    """Whether a model exports as GPT-2 (learned positions and LayerNorm) rather than as Llama."""
    return config.position == "learned" and config.norm == "layernorm"


@torch.no_grad()
def to_hf_gpt2(model: GPT, folder: str | Path, vocab: ExportedVocab | None = None) -> Path:
    """Save a GPT-2-style tinylm model as a transformers folder (config.json, model.safetensors); returns the folder.

    `transformers.GPT2LMHeadModel.from_pretrained(folder)` loads it. Weights are saved in their
    current dtype; the vocabulary keeps the model's size (an embedding padded to a multiple of 64
    stays padded). With `vocab` (the model's rows already `with_rows(model, vocab.rows)`), the
    tokenizer files are written too and AutoTokenizer.from_pretrained(folder) loads them.
    """
    check_exportable(model)
    state = tinylm_to_hf_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    hf_model = import_transformers().GPT2LMHeadModel(hf_config_of(model, vocab)).to(next(model.parameters()).dtype)
    files = hf_tokenizer_files(vocab, model.config.block_size) if vocab else {}
    return save_hf_folder(hf_model, state, folder, "GPT-2", files)
