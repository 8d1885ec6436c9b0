"""A tinylm model and its tokenizer as one GGUF file, the format llama.cpp (and Ollama, LM Studio, ...) runs.

The `gguf` package, from llama.cpp's authors, writes the file; this module names what goes in. A GPT-2-style model is
llama.cpp's "gpt2"; a Llama-style one its "llama", whose RoPE pairs channels 2i and 2i + 1, so the query and key rows
are permuted as llama.cpp's own converter does. A byte-level BPE is its "gpt2" tokenizer, characters its "rwkv" one
(a longest match over the tokens' bytes). Weights are float32.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..model.gpt import GPT
from ..model.rope import rotate_half_to_interleaved
from ..paths import atomic_folder
from ..tokenizers.pretrained import pre_tokenizer_name
from .hf_gpt2 import check_exportable
from .hf_llama import InteropError, llama_shape_problems
from .vocab_export import ExportedVocab

GGUF_MODELS = "GPT-2-style (LayerNorm, learned positions, GELU, biases) and dense Llama-style (RMSNorm, RoPE, SwiGLU)"


def gguf_architecture(model: GPT) -> str:
    """"gpt2" or "llama": the llama.cpp architecture that holds `model`; InteropError naming what can be written."""
    problems = llama_shape_problems(model.config)
    if not problems:
        return "llama"
    try:
        check_exportable(model)
    except InteropError as error:
        raise InteropError(f"GGUF export writes {GGUF_MODELS} models; this one is neither (as Llama: "
                           f"{'; '.join(problems)}. As GPT-2: {str(error).split(': ', 1)[-1]})") from None
    return "gpt2"


def gguf_tensors(model: GPT, architecture: str) -> dict[str, torch.Tensor]:
    """llama.cpp's tensor name -> tensor, for every weight of `model` (a tied head is stored once)."""
    cfg, state = model.config, model.state_dict()
    out = {"token_embd.weight": state["transformer.wte.weight"]}
    if "transformer.wpe.weight" in state:
        out["position_embd.weight"] = state["transformer.wpe.weight"]
    if not cfg.tie_weights:
        out["output.weight"] = state["lm_head.weight"]
    kinds = ("weight", "bias") if cfg.bias else ("weight",)
    norm_kinds = ("weight", "bias") if architecture == "gpt2" else ("weight",)
    for kind in norm_kinds:
        out[f"output_norm.{kind}"] = state[f"transformer.ln_f.{kind}"]
    for i in range(cfg.n_layer):
        ours, theirs = f"transformer.h.{i}.", f"blk.{i}."
        names = {"attn.c_proj": "attn_output", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
        if architecture == "llama":
            names["mlp.c_gate"] = "ffn_gate"
        for kind in norm_kinds:
            out[f"{theirs}attn_norm.{kind}"] = state[f"{ours}ln_1.{kind}"]
            out[f"{theirs}ffn_norm.{kind}"] = state[f"{ours}ln_2.{kind}"]
        for kind in kinds:
            for tiny, name in names.items():
                out[f"{theirs}{name}.{kind}"] = state[f"{ours}{tiny}.{kind}"]
            qkv = state[f"{ours}attn.c_attn.{kind}"]
            if architecture == "gpt2":
                out[f"{theirs}attn_qkv.{kind}"] = qkv
                continue
            sizes = [cfg.n_head * cfg.head_size] + 2 * [cfg.kv_heads * cfg.head_size]
            q, k, v = qkv.split(sizes)
            # llama.cpp rotates adjacent pairs, as its convert_hf_to_gguf.py permutes a Llama's q and k
            out[f"{theirs}attn_q.{kind}"] = rotate_half_to_interleaved(q, cfg.n_head)
            out[f"{theirs}attn_k.{kind}"] = rotate_half_to_interleaved(k, cfg.kv_heads)
            out[f"{theirs}attn_v.{kind}"] = v
    return out


def rwkv_escaped(token: str) -> str:
    """A token as llama.cpp's "rwkv" tokenizer reads its vocabulary: backslash, newline, tab and return escaped."""
    return token.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _add_tokenizer(writer, vocab: ExportedVocab) -> None:
    import gguf

    if vocab.kind == "chars":
        writer.add_tokenizer_model("rwkv")
        writer.add_token_list([rwkv_escaped(token) for token in vocab.tokens])
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre_tokenizer_name(vocab.tokenizer_json))
        writer.add_token_list(vocab.tokens)
        writer.add_token_merges([f"{left} {right}" for left, right in vocab.merges])
    types = [gguf.TokenType.NORMAL] * len(vocab.tokens)
    for token, i in vocab.special.items():
        types[i] = gguf.TokenType.UNKNOWN if i == vocab.unk else gguf.TokenType.CONTROL
    writer.add_token_types(types)
    ids = {token: i for i, token in enumerate(vocab.tokens)}
    for add, token in ((writer.add_bos_token_id, vocab.bos), (writer.add_eos_token_id, vocab.eos)):
        if token is not None or vocab.eot is not None:
            add(ids[token] if token is not None else vocab.eot)
    if vocab.pad is not None:
        writer.add_pad_token_id(ids[vocab.pad])
    if vocab.unk is not None:
        writer.add_unk_token_id(vocab.unk)
    if vocab.chat_template is not None:
        writer.add_chat_template(vocab.chat_template)
    writer.add_add_bos_token(False)  # tinylm's prompts start with their own text
    writer.add_add_eos_token(False)


@torch.no_grad()
def write_gguf(model: GPT, vocab: ExportedVocab, path: str | Path, name: str = "tinylm") -> Path:
    """Write `model` (its rows already `with_rows(model, vocab.rows)`) and `vocab` as the GGUF file `path`, all of it
    or nothing (a full disk leaves what was there)."""
    import gguf

    architecture = gguf_architecture(model)
    if vocab.kind == "bpe" and pre_tokenizer_name(vocab.tokenizer_json) is None:
        raise InteropError("this BPE cuts text in a way llama.cpp has no name for (GGUF export writes GPT-2's, "
                           "SmolLM's and Llama 3's pre-tokenizers)")
    cfg, path = model.config, Path(path)
    with atomic_folder(path.parent) as staging:
        writer = gguf.GGUFWriter(staging / path.name, architecture)
        writer.add_name(name)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_context_length(cfg.block_size)
        writer.add_embedding_length(cfg.n_embd)
        writer.add_feed_forward_length(cfg.mlp_hidden_size)
        writer.add_block_count(cfg.n_layer)
        writer.add_head_count(cfg.n_head)
        writer.add_head_count_kv(cfg.kv_heads)
        writer.add_vocab_size(cfg.vocab_size)
        if architecture == "gpt2":
            writer.add_layer_norm_eps(cfg.norm_eps)
        else:
            writer.add_layer_norm_rms_eps(cfg.norm_eps)
            writer.add_rope_freq_base(cfg.rope_theta)
            writer.add_rope_dimension_count(cfg.head_size)
        _add_tokenizer(writer, vocab)
        for tensor_name, tensor in gguf_tensors(model, architecture).items():
            writer.add_tensor(tensor_name, tensor.detach().to("cpu", torch.float32).contiguous().numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path
