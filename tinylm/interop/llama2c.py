"""llama2.c's checkpoint format: the legacy (version 0) `.bin` files that its run.c reads, read and written.

llama2.c (https://github.com/karpathy/llama2.c) trains small Llama 2 models and runs them with a few hundred lines
of C; its TinyStories models (stories15M, 42M, 110M, https://huggingface.co/karpathy/tinyllamas) use Llama 2's
SentencePiece tokenizer. A file is seven int32 (`HEADER`) then float32 arrays in `Llama2cHeader.shapes`' order.
llama2.c pairs interleaved RoPE channels (2i, 2i+1) where tinylm pairs j with j + head_size/2, so W_q and W_k are
permuted within each head both ways. Files of other versions, or of a size their header does not imply, are refused.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import GPTConfig
from ..download import RemoteFile, fetch
from ..errors import MissingFile
from ..model.gpt import GPT
from ..model.rope import interleaved_to_rotate_half, rope_frequencies, rotate_half_to_interleaved
from ..paths import atomic_write, data_dir
from ..tokenizers.llama import SentencePieceTokenizer
from .hf_llama import InteropError, llama_shape_problems, loaded_gpt

HEADER = struct.Struct("<7i")  # dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (< 0: unshared), seq_len
# GPTConfig's field -> the header's, for the fields both have (n_kv_head is None where it equals n_head)
HEADER_NAMES = {"n_embd": "dim", "mlp_hidden": "hidden_dim", "n_layer": "n_layers", "n_head": "n_heads",
                "vocab_size": "vocab_size", "block_size": "seq_len"}
# A layer's arrays (each stacked over the layers in the file) -> tinylm's names inside transformer.h.i; wq, wk and
# wv are stacked into attn.c_attn, q and k with their RoPE pairs reordered
LAYER_ARRAYS = {"rms_att_weight": "ln_1.weight", "wo": "attn.c_proj.weight", "rms_ffn_weight": "ln_2.weight",
                "w1": "mlp.c_gate.weight", "w3": "mlp.c_fc.weight", "w2": "mlp.c_proj.weight"}
MAGIC = 0x616B3432  # "ak42": how version-1 and version-2 files begin
RUN_C_NORM_EPS = 1e-5  # run.c's rmsnorm
RUN_C_ROPE_THETA = 10000.0  # run.c's RoPE base

# Published files are not in the offline mirror (it carries the course's data), so they need the network. Their
# sha256 digests are the ones other projects pin for these exact files (stories15M.bin: 60,816,028 bytes, which is
# what its header implies; tokenizer.model: Llama 2's, 499,723 bytes); they could not be checked by downloading on
# the offline machine this was written on. Should one be wrong, fetch refuses the file and names the digest it got.
STORIES15M = RemoteFile(
    url="https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin",
    sha256="cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a",
    mirror_path=None,
)
LLAMA2_TOKENIZER = RemoteFile(
    url="https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.model",
    sha256="9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347",
    mirror_path=None,
)


class Llama2cFormatError(InteropError):
    """A file that is not a legacy (version 0) llama2.c checkpoint, or a damaged one."""


@dataclass(frozen=True)
class Llama2cHeader:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int  # positive; the file stores -vocab_size when the classifier is not shared
    seq_len: int
    shared_classifier: bool

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every array of the file, in file order, with its shape."""
        L, hs, dim, hidden = self.n_layers, self.head_size, self.dim, self.hidden_dim
        shapes = {
            "token_embedding_table": (self.vocab_size, dim),
            "rms_att_weight": (L, dim),
            "wq": (L, self.n_heads * hs, dim),
            "wk": (L, self.n_kv_heads * hs, dim),
            "wv": (L, self.n_kv_heads * hs, dim),
            "wo": (L, dim, self.n_heads * hs),
            "rms_ffn_weight": (L, dim),
            "w1": (L, hidden, dim),
            "w2": (L, dim, hidden),
            "w3": (L, hidden, dim),
            "rms_final_weight": (dim,),
            "freq_cis_real": (self.seq_len, hs // 2),
            "freq_cis_imag": (self.seq_len, hs // 2),
        }
        if not self.shared_classifier:
            shapes["wcls"] = (self.vocab_size, dim)
        return shapes

    def file_size(self) -> int:
        """Bytes of the whole file: the header and 4 per float."""
        return HEADER.size + 4 * sum(math.prod(shape) for shape in self.shapes().values())

    def pack(self) -> bytes:
        vocab = self.vocab_size if self.shared_classifier else -self.vocab_size
        return HEADER.pack(self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.n_kv_heads, vocab, self.seq_len)

    def describe(self) -> str:
        return (f"dim {self.dim}, hidden_dim {self.hidden_dim}, {self.n_layers} layers, {self.n_heads} heads "
                f"({self.n_kv_heads} key/value), vocabulary {self.vocab_size:,}, context {self.seq_len}, "
                f"{'shared' if self.shared_classifier else 'separate'} classifier")


def parse_header(raw: bytes, path: str | Path = "the file") -> Llama2cHeader:
    """The header of a legacy llama2.c file from its first 28 bytes; refuses versions 1-2 and impossible values."""
    if len(raw) < HEADER.size:
        raise Llama2cFormatError(f"{path} has only {len(raw)} bytes: too short for a llama2.c checkpoint, "
                                 f"whose header alone is {HEADER.size}")
    if struct.unpack_from("<I", raw)[0] == MAGIC:
        version = struct.unpack_from("<i", raw, 4)[0]
        raise Llama2cFormatError(
            f"{path} is a llama2.c version-{version} file (it starts with 'ak42'); tinylm reads the legacy version-0 "
            "format that run.c reads: re-export it with llama2.c's `python export.py OUT.bin --version 0 ...`")
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = HEADER.unpack_from(raw)
    problems = [f"{name}={value}" for name, value in (("dim", dim), ("hidden_dim", hidden_dim), ("n_layers", n_layers),
                                                      ("n_heads", n_heads), ("n_kv_heads", n_kv_heads),
                                                      ("seq_len", seq_len)) if value <= 0]
    if vocab_size == 0:
        problems.append("vocab_size=0")
    if not problems:
        if dim % n_heads:
            problems.append(f"dim={dim} is not divisible by n_heads={n_heads}")
        elif (dim // n_heads) % 2:
            problems.append(f"an odd head size {dim // n_heads}, which RoPE cannot split into pairs")
        if n_heads % n_kv_heads:
            problems.append(f"n_heads={n_heads} is not divisible by n_kv_heads={n_kv_heads}")
    if problems:
        raise Llama2cFormatError(f"{path} is not a legacy llama2.c checkpoint: its header has "
                                 + ", ".join(problems))
    return Llama2cHeader(dim, hidden_dim, n_layers, n_heads, n_kv_heads, abs(vocab_size), seq_len, vocab_size > 0)


def read_llama2c(path: str | Path) -> tuple[Llama2cHeader, dict[str, np.ndarray]]:
    """(header, the file's arrays by name in file order): read-only views of the memory-mapped file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no llama2.c checkpoint at {path}; check the path (e.g. stories15M.bin)")
    with open(path, "rb") as f:
        header = parse_header(f.read(HEADER.size), path)
    size, expected = path.stat().st_size, header.file_size()
    if size != expected:
        raise Llama2cFormatError(
            f"{path} has {size:,} bytes but its header ({header.describe()}) implies {expected:,}: the file is "
            "truncated, or not a legacy (version 0) llama2.c checkpoint")
    data = np.memmap(path, dtype="<f4", mode="r", offset=HEADER.size)
    arrays, start = {}, 0
    for name, shape in header.shapes().items():
        count = math.prod(shape)
        arrays[name] = data[start : start + count].reshape(shape)
        start += count
    return header, arrays


def config_of(header: Llama2cHeader) -> GPTConfig:
    """The tinylm GPTConfig of a llama2.c model: Llama's block, with run.c's eps and θ."""
    return GPTConfig(
        **{ours: getattr(header, theirs) for ours, theirs in HEADER_NAMES.items()},
        n_kv_head=None if header.n_kv_heads == header.n_heads else header.n_kv_heads,
        bias=False,
        tie_weights=header.shared_classifier,
        norm="rmsnorm",
        norm_eps=RUN_C_NORM_EPS,
        position="rope",
        rope_theta=RUN_C_ROPE_THETA,
        mlp="swiglu",
    )


def state_dict_from_llama2c(header: Llama2cHeader, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The file's arrays under tinylm's names, with W_q and W_k turned from interleaved to rotate-half RoPE pairs."""
    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(arrays[name], dtype=np.float32))  # a copy: the mapped file stays read-only

    embedding = tensor("token_embedding_table")
    state = {"transformer.wte.weight": embedding, "transformer.ln_f.weight": tensor("rms_final_weight"),
             "lm_head.weight": embedding if header.shared_classifier else tensor("wcls")}
    wq, wk, wv = tensor("wq"), tensor("wk"), tensor("wv")
    layers = {ours: tensor(theirs) for theirs, ours in LAYER_ARRAYS.items()}  # (n_layers, ...) each
    for i in range(header.n_layers):
        q = interleaved_to_rotate_half(wq[i], header.n_heads)
        k = interleaved_to_rotate_half(wk[i], header.n_kv_heads)
        block = f"transformer.h.{i}."
        state[block + "attn.c_attn.weight"] = torch.cat([q, k, wv[i]])  # (n_head·hs + 2·n_kv·hs, dim)
        state.update({block + ours: stacked[i] for ours, stacked in layers.items()})
    return state


@torch.no_grad()
def from_llama2c(path: str | Path) -> GPT:
    """A tinylm GPT (eval mode, CPU, float32) with the weights of a legacy llama2.c checkpoint (.bin)."""
    header, arrays = read_llama2c(path)
    return loaded_gpt(config_of(header), state_dict_from_llama2c(header, arrays), "llama2.c")


def load_stories15m(folder: str | Path | None = None, model_file: RemoteFile = STORIES15M,
                    tokenizer_file: RemoteFile = LLAMA2_TOKENIZER) -> tuple[GPT, SentencePieceTokenizer]:
    """Karpathy's stories15M (eval mode, CPU, float32) and the Llama 2 tokenizer it was trained with, downloaded
    once into `folder` (default: tinyllamas/ in the data folder) and checked against their sha256.

    Offline this is a DownloadError within seconds. `model_file` and `tokenizer_file` name other published files.
    """
    folder = Path(folder) if folder is not None else data_dir() / "tinyllamas"
    tokenizer_path = fetch(tokenizer_file, folder / Path(tokenizer_file.url).name)
    model_path = fetch(model_file, folder / Path(model_file.url).name)
    return from_llama2c(model_path), SentencePieceTokenizer.from_file(tokenizer_path)


def check_llama2c_exportable(model: GPT) -> None:
    """Raise InteropError unless run.c can run `model`: Llama's block without biases, eps 1e-5, θ 10000."""
    if not isinstance(model, GPT):
        raise InteropError(f"only tinylm GPT models can be exported, got {type(model).__name__}")
    cfg = model.config
    problems = llama_shape_problems(cfg)
    if cfg.bias:
        problems.append("bias=True (llama2.c's layers have no biases)")
    if cfg.norm_eps != RUN_C_NORM_EPS:
        problems.append(f"norm_eps={cfg.norm_eps} (run.c's RMSNorm uses {RUN_C_NORM_EPS})")
    if cfg.rope_theta != RUN_C_ROPE_THETA:
        problems.append(f"rope_theta={cfg.rope_theta:g} (run.c's RoPE uses {RUN_C_ROPE_THETA:g})")
    if problems:
        raise InteropError("llama2.c's format cannot hold this model: " + "; ".join(problems))


def llama2c_arrays(model: GPT) -> tuple[Llama2cHeader, dict[str, np.ndarray]]:
    """The header and float32 arrays (file order) of a llama2.c checkpoint of `model`; the inverse of reading one."""
    check_llama2c_exportable(model)
    cfg = model.config
    header = Llama2cHeader(cfg.n_embd, cfg.mlp_hidden_size, cfg.n_layer, cfg.n_head, cfg.kv_heads, cfg.vocab_size,
                           cfg.block_size, cfg.tie_weights)
    state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    q_rows, kv_rows = cfg.n_head * cfg.head_size, cfg.kv_heads * cfg.head_size

    def layers(name: str) -> torch.Tensor:
        return torch.stack([state[f"transformer.h.{i}.{name}"] for i in range(cfg.n_layer)])  # (n_layers, ...)

    q, k, v = layers("attn.c_attn.weight").split([q_rows, kv_rows, kv_rows], dim=1)
    # RoPE's tables as llama2.c's model.py computes them: angle = position · θ_i, in float32
    angles = torch.outer(torch.arange(cfg.block_size, dtype=torch.float32),
                         rope_frequencies(cfg.head_size, cfg.rope_theta))
    tensors = {
        "token_embedding_table": state["transformer.wte.weight"],
        "wq": torch.stack([rotate_half_to_interleaved(w, cfg.n_head) for w in q]),
        "wk": torch.stack([rotate_half_to_interleaved(w, cfg.kv_heads) for w in k]),
        "wv": v,
        **{theirs: layers(ours) for theirs, ours in LAYER_ARRAYS.items()},
        "rms_final_weight": state["transformer.ln_f.weight"],
        "freq_cis_real": angles.cos(),
        "freq_cis_imag": angles.sin(),
    }
    if not header.shared_classifier:
        tensors["wcls"] = state["lm_head.weight"]
    return header, {name: tensors[name].contiguous().numpy() for name in header.shapes()}


def write_llama2c(model: GPT, path: str | Path) -> Path:
    """Write `model` as a legacy llama2.c checkpoint that run.c reads (float32); returns the path.

    The file appears whole or not at all. Refuses models run.c cannot run (see check_llama2c_exportable).
    """
    header, arrays = llama2c_arrays(model)
    path = Path(path)
    with atomic_write(path) as f:
        f.write(header.pack())
        for name in header.shapes():  # file order
            f.write(arrays[name].astype("<f4", copy=False).tobytes())
    return path
