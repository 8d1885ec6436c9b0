"""Moving Llama weights between tinylm and Hugging Face transformers' `LlamaForCausalLM`.

A `--arch llama` model is transformers' Llama under GPT-2's parameter names (`LINEARS`, `NORMS`, `QKV`, `TOP_LEVEL`;
q, k and v stacked into attn.c_attn); both sides pair RoPE channels the same way, so nothing is transposed or
permuted. `config_from_hf_llama` refuses, in one InteropError naming them all, the options tinylm lacks. InteropError
and `load_pretrained` (both families' folders, a damaged or unsafe file refused in one line) live here because
GPT-2's module and the command line import this one.
"""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path

import torch
from torch import nn

from ..config import GPTConfig
from ..errors import InputError, MissingFile
from ..model.gpt import GPT
from ..paths import atomic_folder
from .vocab_export import ExportedVocab, hf_tokenizer_files


class InteropError(InputError):
    """A model or file that cannot be converted; the message says what differs and what is expected."""


# tinylm name -> Hugging Face name: block modules (inside transformer.h.i / model.layers.i), then the rest.
NORMS = {"ln_1": "input_layernorm", "ln_2": "post_attention_layernorm"}
LINEARS = {"attn.c_proj": "self_attn.o_proj", "mlp.c_gate": "mlp.gate_proj", "mlp.c_fc": "mlp.up_proj",
           "mlp.c_proj": "mlp.down_proj"}
QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")  # stacked in this order into attn.c_attn
TOP_LEVEL = {"transformer.wte.weight": "model.embed_tokens.weight", "transformer.ln_f.weight": "model.norm.weight",
             "lm_head.weight": "lm_head.weight"}
# Buffers older transformers versions saved with the weights: RoPE's frequencies, which follow from the config.
HF_BUFFERS = (".rotary_emb.inv_freq",)


def import_transformers():
    try:
        import transformers
    except ImportError as error:
        raise ImportError("Hugging Face interop needs transformers: pip install transformers") from error
    return transformers


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' own warnings and progress bars off: a load that fails ends in one InteropError line that says
    what its multi-line report would, and one that works needs no report."""
    logging = import_transformers().utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def load_pretrained(model_class, source, family: str) -> nn.Module:
    """model_class.from_pretrained(source), refusing, as an InteropError or OSError of one line, what transformers
    reports in a traceback or lets pass with a warning: a weights file that is cut short or damaged, a
    pytorch_model.bin whose pickle holds code (torch's weights_only load refuses it), and weights that do not fit
    the config (transformers would initialise those at random). `family` ("GPT-2", "Llama") names the model."""
    from safetensors import SafetensorError

    redo = "download or export the model again"
    try:
        with _quiet_transformers():
            model, report = model_class.from_pretrained(str(source), ignore_mismatched_sizes=True,
                                                        output_loading_info=True)
    except SafetensorError as error:
        raise InteropError(f"{source}: its model.safetensors is damaged or cut short ({_first_line(error)}); "
                           f"{redo}") from None
    except pickle.UnpicklingError:
        raise InteropError(f"{source}: its pytorch_model.bin holds Python objects other than tensors (loading it "
                           "could run arbitrary code) or is damaged, so it was not loaded; use a model.safetensors "
                           "of the model instead (transformers' save_pretrained writes one)") from None
    except OSError as error:
        if error.errno is not None and Path(source).is_dir():  # the system's error reading a damaged file
            raise InteropError(f"{source}: its weights file could not be read ({_first_line(error)}): it is "
                               f"damaged or cut short; {redo}") from None
        raise MissingFile(f"could not load a {family} model from {str(source)!r}: it is neither a local folder with "
                      "config.json and model.safetensors (or pytorch_model.bin) nor a Hub name that can be "
                      f"downloaded now (offline?). Details: {_first_line(error)}") from error
    problems = [f"{key} has shape {tuple(saved)}, the config gives {tuple(expected)}"
                for key, saved, expected in sorted(report["mismatched_keys"])]
    problems += [f"{key} is missing" for key in sorted(report["missing_keys"])]
    problems += [f"{key} is not part of the model" for key in sorted(report["unexpected_keys"])]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InteropError(f"{source}: its {family} weights do not fit its config.json: {'; '.join(problems[:3])}"
                           f"{more}; use the config.json that came with the weights")
    return model


def check_keys(given, expected, mismatch: str) -> None:
    """InteropError, `mismatch` followed by a few of the names that differ, unless `given` and `expected` name the
    same tensors."""
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or unexpected:
        raise InteropError(f"{mismatch}: missing {missing[:5]}, unexpected {unexpected[:5]}")


def loaded_gpt(config: GPTConfig, state: dict[str, torch.Tensor], family: str) -> GPT:
    """A tinylm GPT(config) holding `state`, in eval mode; InteropError naming the keys that do not fit."""
    model = GPT(config)
    check_keys(state, model.state_dict(), f"the {family} weights do not match tinylm's GPT")
    model.load_state_dict(state)
    return model.eval()


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def llama_shape_problems(config: GPTConfig) -> list[str]:
    """What keeps a tinylm config from being a Llama: each a phrase for an error message (empty: it is one)."""
    problems = []
    if config.norm != "rmsnorm":
        problems.append(f"norm={config.norm!r} (Llama uses 'rmsnorm')")
    if config.position != "rope":
        problems.append(f"position={config.position!r} (Llama uses 'rope' and has no position table)")
    if config.mlp != "swiglu":
        problems.append(f"mlp={config.mlp!r} (Llama uses 'swiglu')")
    if config.n_experts:
        problems.append(f"n_experts={config.n_experts} (Llama has one dense MLP per block, not a mixture of experts)")
    return problems + speedrun_problems(config)


def speedrun_problems(config: GPTConfig) -> list[str]:
    """The speedrun's changes that neither GPT-2's nor Llama's format can hold (a zero initialisation is only where
    the weights started, so it is not among them)."""
    problems = []
    if config.qk_norm:
        problems.append("qk_norm=True (queries and keys are used as they come, not RMS-normalised)")
    if config.logit_softcap is not None:
        problems.append(f"logit_softcap={config.logit_softcap} (the logits are not capped)")
    return problems


def _renames(config: GPTConfig) -> dict[str, str]:
    """tinylm key -> Hugging Face key, for every tensor but attn.c_attn (q, k and v stacked; see `_qkv_keys`)."""
    names = dict(TOP_LEVEL)
    for i in range(config.n_layer):
        ours, theirs = f"transformer.h.{i}.", f"model.layers.{i}."
        for tiny, hf in NORMS.items():
            names[f"{ours}{tiny}.weight"] = f"{theirs}{hf}.weight"  # RMSNorm has no bias
        for tiny, hf in LINEARS.items():
            for kind in ("weight", "bias") if config.bias else ("weight",):
                names[f"{ours}{tiny}.{kind}"] = f"{theirs}{hf}.{kind}"
    return names


def _qkv_keys(config: GPTConfig) -> dict[str, list[str]]:
    """tinylm's attn.c_attn key -> the three Hugging Face keys it stacks (q, k, v)."""
    return {f"transformer.h.{i}.attn.c_attn.{kind}": [f"model.layers.{i}.{name}.{kind}" for name in QKV]
            for i in range(config.n_layer) for kind in (("weight", "bias") if config.bias else ("weight",))}


def hf_llama_to_tinylm_state_dict(hf_state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """A LlamaForCausalLM state dict as a tinylm GPT(config) state dict; refuses missing or unexpected keys."""
    hf_state = {k: v for k, v in hf_state.items() if not k.endswith(HF_BUFFERS)}
    renames, stacked = _renames(config), _qkv_keys(config)
    if config.tie_weights:
        hf_state.setdefault("lm_head.weight", hf_state.get("model.embed_tokens.weight"))  # a tied head is saved once
    expected = set(renames.values()) | {key for keys in stacked.values() for key in keys}
    check_keys(hf_state, expected, "the Llama weights do not match its config")
    state = {ours: hf_state[theirs] for ours, theirs in renames.items()}
    for ours, (q, k, v) in stacked.items():
        state[ours] = torch.cat([hf_state[q], hf_state[k], hf_state[v]])  # (n_head·hs + 2·n_kv·hs, C)
    return state


def tinylm_to_hf_llama_state_dict(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """A Llama-style tinylm state dict in LlamaForCausalLM's layout (the inverse of hf_llama_to_tinylm_state_dict)."""
    hf_state = {theirs: state[ours] for ours, theirs in _renames(config).items()}
    sizes = [config.n_head * config.head_size] + 2 * [config.kv_heads * config.head_size]  # rows of q, k, v
    for ours, keys in _qkv_keys(config).items():
        for key, part in zip(keys, state[ours].split(sizes)):
            hf_state[key] = part.contiguous()
    return hf_state


def config_from_hf_llama(hf_config) -> GPTConfig:
    """The tinylm GPTConfig of a transformers LlamaConfig; refuses, naming every one, options tinylm lacks."""
    def get(name, default=None):
        return getattr(hf_config, name, default)  # configs written by older transformers lack some fields

    if get("model_type") != "llama":
        raise InteropError(f"expected a Llama model (model_type 'llama'), got {get('model_type')!r}")
    problems = []
    if get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={get('hidden_act')!r} (tinylm's SwiGLU gates with SiLU, 'silu')")
    heads, hidden = get("num_attention_heads"), get("hidden_size")
    head_dim = get("head_dim") or hidden // heads
    if head_dim * heads != hidden:
        problems.append(f"head_dim={head_dim} with {heads} heads of a {hidden}-wide model "
                        f"(tinylm's heads are hidden_size / num_attention_heads = {hidden / heads:g} wide)")
    # transformers 5 keeps RoPE's settings in rope_parameters; 4.x had rope_theta and rope_scaling beside them
    rope = dict(get("rope_parameters") or get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        problems.append(f"RoPE scaling rope_type={rope_type!r} (tinylm implements only the original, unscaled RoPE)")
    if rope.get("partial_rotary_factor", get("partial_rotary_factor")) not in (None, 1, 1.0):
        problems.append(f"partial_rotary_factor={rope.get('partial_rotary_factor', get('partial_rotary_factor'))} "
                        "(tinylm rotates every channel of a head)")
    if bool(get("attention_bias", False)) != bool(get("mlp_bias", False)):
        problems.append(f"attention_bias={get('attention_bias')} but mlp_bias={get('mlp_bias')} "
                        "(tinylm's bias switch turns both on or both off)")
    if get("sliding_window") is not None:
        problems.append(f"sliding_window={get('sliding_window')} (tinylm's attention sees the whole context)")
    if problems:
        raise InteropError("this Llama variant has no tinylm equivalent: " + "; ".join(problems))
    kv_heads = get("num_key_value_heads") or heads
    return GPTConfig(
        vocab_size=get("vocab_size"),
        block_size=get("max_position_embeddings"),
        n_layer=get("num_hidden_layers"),
        n_head=heads,
        n_embd=hidden,
        n_kv_head=None if kv_heads == heads else kv_heads,
        mlp_hidden=get("intermediate_size"),
        dropout=0.0,  # for inference and fine-tuning; set dropout in the GPTConfig to train with it
        bias=bool(get("attention_bias", False)),
        tie_weights=bool(get("tie_word_embeddings", False)),
        norm="rmsnorm",
        norm_eps=float(get("rms_norm_eps")),
        position="rope",
        rope_theta=float(rope.get("rope_theta", get("rope_theta", 10000.0))),
        mlp="swiglu",
    )


def hf_config(source):
    """The transformers config of a Hugging Face folder (its config.json) or Hub model; MissingFile in one line where
    there is none."""
    try:
        return import_transformers().AutoConfig.from_pretrained(str(source))
    except (OSError, ValueError) as error:  # no config.json, a Hub name offline, or a model_type transformers lacks
        raise MissingFile(f"could not read a Hugging Face config from {str(source)!r}: it is neither a local folder "
                          f"with config.json nor a Hub name that can be downloaded now (offline?). "
                          f"Details: {_first_line(error)}") from error


@torch.no_grad()
def from_hf_llama(source) -> GPT:
    """A tinylm GPT (eval mode, CPU, float32) with the weights of a transformers Llama.

    `source`: a LlamaForCausalLM, a local folder that LlamaForCausalLM.from_pretrained reads, or a Hub
    name when online. Unsupported options raise InteropError before anything is built (a folder's or Hub model's
    config is checked before its weights load).
    """
    if isinstance(source, nn.Module):
        hf_model, config = source, config_from_hf_llama(source.config)
    else:
        config = config_from_hf_llama(hf_config(source))
        hf_model = load_pretrained(import_transformers().LlamaForCausalLM, source, "Llama")
    hf_state = {k: v.detach().to("cpu", torch.float32) for k, v in hf_model.state_dict().items()}
    return loaded_gpt(config, hf_llama_to_tinylm_state_dict(hf_state, config), "Llama")


def check_llama_exportable(model: GPT) -> None:
    """Raise InteropError unless `model` is a Llama-style tinylm GPT (RMSNorm, RoPE, SwiGLU, no experts)."""
    if not isinstance(model, GPT):
        raise InteropError(f"only tinylm GPT models can be exported, got {type(model).__name__}")
    problems = llama_shape_problems(model.config)
    if problems:
        raise InteropError("this model is not Llama-style, so transformers' Llama cannot hold it: "
                           + "; ".join(problems) + " (a GPT-2-style model exports as GPT-2)")


def hf_llama_config_of(model: GPT, tokenizer=None):
    """The transformers LlamaConfig describing a Llama-style tinylm model (bos/eos ids from a SentencePiece
    tokenizer or an ExportedVocab's <|endoftext|> when one is given)."""
    transformers = import_transformers()
    cfg = model.config
    bos = eos = None
    if isinstance(tokenizer, ExportedVocab):  # an imported model's own ends where it has them, else <|endoftext|>
        bos = tokenizer.tokens.index(tokenizer.bos) if tokenizer.bos is not None else tokenizer.eot
        eos = tokenizer.tokens.index(tokenizer.eos) if tokenizer.eos is not None else tokenizer.eot
    return transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.mlp_hidden_size,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_size,
        hidden_act="silu",
        max_position_embeddings=cfg.block_size,
        rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        attention_bias=cfg.bias,
        mlp_bias=cfg.bias,
        tie_word_embeddings=cfg.tie_weights,
        bos_token_id=getattr(tokenizer, "bos_token", bos),
        eos_token_id=getattr(tokenizer, "eos_token", eos),
        architectures=["LlamaForCausalLM"],
    )


@torch.no_grad()
def to_hf_llama(model: GPT, folder: str | Path, tokenizer=None) -> Path:
    """Save a Llama-style tinylm model as a transformers folder (config.json, model.safetensors); returns it.

    `transformers.LlamaForCausalLM.from_pretrained(folder)` loads it. Weights keep their dtype. A
    SentencePiece `tokenizer` (tinylm.tokenizers) is saved beside them as tokenizer.model; an ExportedVocab
    (tinylm.interop.vocab_export, the model's rows already `with_rows(model, vocab.rows)`) as tokenizer.json
    and its config, which AutoTokenizer.from_pretrained(folder) loads.
    """
    check_llama_exportable(model)
    transformers = import_transformers()
    state = tinylm_to_hf_llama_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()}, model.config)
    hf_model = transformers.LlamaForCausalLM(hf_llama_config_of(model, tokenizer))
    hf_model.to(next(model.parameters()).dtype)
    if getattr(tokenizer, "model_proto", None) is not None:
        extra = {"tokenizer.model": tokenizer.model_proto}
    elif isinstance(tokenizer, ExportedVocab):
        extra = hf_tokenizer_files(tokenizer, model.config.block_size)
    else:
        extra = {}
    return save_hf_folder(hf_model, state, folder, "Llama", extra)


def save_hf_folder(hf_model, state: dict, folder: str | Path, family: str, extra: dict[str, bytes] | None = None
                   ) -> Path:
    """Load `state` (transformers' names) into `hf_model`, checking that the names match exactly, and save it as a
    transformers folder (config.json + model.safetensors, a tied head saved once) with the `extra` files, all of them
    or none: a full disk leaves the folder as it was."""
    check_keys(state, hf_model.state_dict(), f"tinylm's weights do not match transformers' {family}")
    hf_model.load_state_dict(state)
    folder = Path(folder)
    with atomic_folder(folder) as staging:
        hf_model.save_pretrained(staging)
        for name, content in (extra or {}).items():
            (staging / name).write_bytes(content)
    return folder
