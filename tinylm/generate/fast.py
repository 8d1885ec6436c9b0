"""A second decode step for tinylm's GPT: what `GPT.decode_step` computes for one new token, in fewer and faster calls.

At batch 1 a small model's token costs reading every weight once and a few hundred small operations, each paying
Python's and PyTorch's dispatch. The readable step walks the modules; this one computes the same function, to float
rounding, from weight copies laid out as its products read them fastest, with joined products and no module calls.
The copies are made when the step is built, so build one per generation (`tinylm.generate.decode` does);
`scripts/decode_ablation.py` measures what each choice gains.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..model.gpt import GPT
from ..model.kv_cache import KVCache
from ..model.mlp import MLP, ReLUSquared, SwiGLU

Function = Callable[[torch.Tensor], torch.Tensor]
SPLIT_OUTPUTS = 4096  # a product this wide (an LM head's vocabulary) is split by threads along its outputs,
SPLIT_WEIGHTS = 1 << 18  # and a narrower one with this many weights (1 MiB in float32) along its inputs


def _huge_page_bytes() -> int:
    """The transparent huge page's size as Linux reports it; 2 MiB (x86-64's, arm64's with 4 KiB pages) elsewhere."""
    try:
        return int(Path("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size").read_text())
    except (OSError, ValueError):
        return 2 << 20


HUGE_PAGE = _huge_page_bytes()


def cpu_buffer(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """An empty CPU tensor of `numel` elements. Where it spans a huge page and Python's mmap can advise one (Linux),
    its memory is a private anonymous mapping advised MADV_HUGEPAGE, and it starts on a huge page's boundary, so that
    the kernel may back it with huge pages; elsewhere it is torch.empty's.

    Why: every address goes through the page table, whose translations the CPU caches in its TLB, which holds a few
    thousand entries. A token reads all the weights, tens of thousands of 4 KiB pages for a small model, so nearly
    every page misses the TLB; in 2 MiB pages they are a few dozen. The kernel grants huge pages where transparent
    huge pages are `always` or `madvise` (`AnonHugePages` in /proc/<pid>/smaps shows what it granted)."""
    size = numel * dtype.itemsize
    if size < HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(numel, dtype=dtype)
    # Private: mmap.mmap(-1, n) alone maps shared memory, which the kernel keeps as a file (shmem), whose huge pages
    # follow another setting (shmem_enabled, often `never`). The advice comes before any write, since a page's size
    # is chosen when it is first written; one huge page more, to start on a boundary.
    mapping = mmap.mmap(-1, size + HUGE_PAGE, flags=mmap.MAP_PRIVATE)
    try:
        mapping.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # a kernel built without transparent huge pages: ordinary pages
        pass
    raw = torch.frombuffer(mapping, dtype=torch.uint8)  # shares the mapping's memory and keeps it alive
    start = -raw.data_ptr() % HUGE_PAGE
    return raw[start : start + size].view(dtype)


class WeightCopies:
    """Contiguous copies of weights carved one after another from a `cpu_buffer` of at least `numel` elements; a copy
    that does not fit in what is left, or of another dtype, opens a new buffer."""

    def __init__(self, numel: int):
        self.numel, self.buffer, self.used = numel, None, 0

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        """A contiguous copy of `weight` (any layout), a view of the current buffer."""
        n = weight.numel()
        if self.buffer is None or self.buffer.dtype != weight.dtype or self.used + n > self.buffer.numel():
            # a new buffer; the views of the last one keep it alive
            self.buffer, self.used = cpu_buffer(max(n, self.numel), weight.dtype), 0
        copy = self.buffer[self.used : self.used + n].view(weight.shape)
        copy.copy_(weight)
        self.used += n
        return copy


def fused_linear(*linears: nn.Module, copies: WeightCopies | None = None) -> Function | None:
    """x (B, in), 2-D -> the nn.Linear layers' outputs side by side, (B, sum of out). On a CPU the weight is read from
    a copy made by `copies` (by default a buffer of its own): the layers that read the same input are one product, and
    a weight with more outputs than inputs is copied transposed; one with at least SPLIT_OUTPUTS outputs is split by
    threads along its outputs, a narrower one with at least SPLIT_WEIGHTS weights along its inputs; on a GPU each
    layer keeps its own weight and nothing is copied. None unless
    every layer is a plain nn.Linear (a LoRA-wrapped one adds its adapters) and all or none have a bias.
    `tinylm.generate.decode` reads the LM head through it too.

    Why the layout: at batch 1, PyTorch's CPU matrix-vector product reads an (out, in) weight with more outputs than
    inputs slower than its (in, out) transpose, and one with fewer outputs faster as it is. Every weight is copied,
    even those kept in their layout, so that a token reads all of them from one buffer, in order, on huge pages."""
    if any(type(linear) is not nn.Linear for linear in linears):
        return None
    biases = [linear.bias for linear in linears]
    if any(bias is None for bias in biases) and any(bias is not None for bias in biases):
        return None
    if linears[0].weight.device.type != "cpu":
        if len(linears) == 1:
            return lambda x: F.linear(x, linears[0].weight, linears[0].bias)
        return lambda x: torch.cat([F.linear(x, linear.weight, linear.bias) for linear in linears], dim=-1)
    weight, bias = linears[0].weight.detach(), biases[0]  # (out, in), (out,) or None
    if len(linears) > 1:
        weight = torch.cat([linear.weight.detach() for linear in linears])
        bias = None if bias is None else torch.cat([b.detach() for b in biases])
    n_out, n_in = weight.shape
    split = (n_out > n_in and n_out >= SPLIT_OUTPUTS) or weight.numel() >= SPLIT_WEIGHTS
    threads = torch.get_num_threads() if split else 1
    copies = copies or WeightCopies(n_in * threads * -(-n_out // threads))
    if threads > 1 and n_out < SPLIT_OUTPUTS and n_in % threads == 0:
        return _split_inputs(weight.t(), bias, threads, copies)
    if threads > 1:
        return _split_outputs(weight.t(), bias, threads, copies)
    if n_out <= n_in:
        weight = copies(weight)
        return lambda x: F.linear(x, weight, bias)
    transposed = copies(weight.t())  # (in, out)
    return (lambda x: x @ transposed) if bias is None else (lambda x: torch.addmm(bias, x, transposed))


def _split_outputs(transposed: torch.Tensor, bias: torch.Tensor | None, threads: int,
                   copies: WeightCopies) -> Function:
    """x (B, in) -> x @ transposed + bias (B, out), computed as one batched product of one slice of the outputs per
    thread. A one-row product may hardly use a second thread (how it threads depends on PyTorch's BLAS library);
    the batch of a batched product runs on all of them."""
    n_in, n_out = transposed.shape
    width = -(-n_out // threads)  # outputs per slice, rounded up: the last slice ends in zero columns
    padded = F.pad(transposed, (0, threads * width - n_out))  # (in, threads·width)
    slices = copies(padded.view(n_in, threads, width).transpose(0, 1))  # (threads, in, width)

    def sliced(x: torch.Tensor) -> torch.Tensor:
        rows = x.size(0)
        y = torch.bmm(x.expand(threads, rows, n_in), slices)  # (threads, B, width)
        y = y.transpose(0, 1).reshape(rows, threads * width)[:, :n_out]  # (B, out): the slices side by side
        return y if bias is None else y + bias

    return sliced


def _split_inputs(transposed: torch.Tensor, bias: torch.Tensor | None, threads: int,
                  copies: WeightCopies) -> Function:
    """x (B, in) -> x @ transposed + bias (B, out), as one batched product of one slice of the inputs per thread
    (each reads whole rows of the (in, out) layout), whose partial sums are then added: at batch 1 on a CPU, faster
    than slicing the outputs of a block's products (`scripts/decode_ablation.py --ckpt RUN`; the figures are in
    docs/notes/2026-11-26-decoding-on-a-cpu.md)."""
    n_in, n_out = transposed.shape
    part = n_in // threads
    slices = copies(transposed.reshape(threads, part, n_out))  # (threads, in/threads, out)

    def summed(x: torch.Tensor) -> torch.Tensor:
        parts = torch.bmm(x.reshape(x.size(0), threads, part).transpose(0, 1), slices)  # (threads, B, out)
        y = parts.sum(0)  # (B, out)
        return y if bias is None else y + bias

    return summed


def _norm(module: nn.Module) -> Function | None:
    """The function nn.RMSNorm or nn.LayerNorm applies to x (B, C) (their forward, without the module call)."""
    if type(module) is nn.RMSNorm:
        weight = module.weight
        if weight is None or weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.float64):
            return lambda x: F.rms_norm(x, module.normalized_shape, weight, module.eps)
        # On a CPU F.rms_norm runs about ten operations (pow, mean, add, rsqrt, two products, dtype copies); this is
        # four: x·rsqrt(mean(x²) + eps)·weight, with the mean of the squares plus eps as one batched product added to
        # eps: baddbmm(eps, x (B, 1, C), x (B, C, 1), alpha=1/C) = eps + Σx²/C, (B, 1, 1) (the unsqueezes and the view
        # compute nothing).
        n = module.normalized_shape[0]
        eps = torch.full((1, 1, 1), torch.finfo(weight.dtype).eps if module.eps is None else module.eps,
                         dtype=weight.dtype)

        def rms_norm(x: torch.Tensor) -> torch.Tensor:
            mean_square = torch.baddbmm(eps, x.unsqueeze(1), x.unsqueeze(2), alpha=1 / n)  # (B, 1, 1), eps included
            return x * mean_square.view(-1, 1).rsqrt_() * weight

        return rms_norm
    if type(module) is nn.LayerNorm:
        return lambda x: F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)
    return None


def _activation(module: nn.Module) -> Function | None:
    if type(module) is ReLUSquared:
        return lambda x: F.relu(x).square()
    if type(module) is nn.GELU:
        return lambda x: F.gelu(x, approximate=module.approximate)
    return None


def _mlp(module: nn.Module, copies: WeightCopies) -> Function | None:
    """SwiGLU's c_proj(silu(c_gate(x)) * c_fc(x)) with gate and up as one product, or the MLP's c_proj(act(c_fc(x)))."""
    if type(module) is SwiGLU:
        gate_up = fused_linear(module.c_gate, module.c_fc, copies=copies)
        down = fused_linear(module.c_proj, copies=copies)
        if None in (gate_up, down):
            return None

        def swiglu(x: torch.Tensor) -> torch.Tensor:
            gate, up = gate_up(x).chunk(2, dim=-1)  # (B, hidden) each
            return down(F.silu(gate) * up)

        return swiglu
    if type(module) is MLP:
        up, act = fused_linear(module.c_fc, copies=copies), _activation(module.act)
        down = fused_linear(module.c_proj, copies=copies)
        return None if None in (up, act, down) else lambda x: down(act(up(x)))
    return None  # a mixture of experts routes each token: not served here


class _Layer:
    """One Block's parts as plain functions, and its attention's shape."""

    def __init__(self, block: nn.Module, copies: WeightCopies):
        attn = block.attn
        self.ln_1, self.ln_2 = _norm(block.ln_1), _norm(block.ln_2)
        # the weights copied in the order a token reads them
        self.qkv, self.c_proj = fused_linear(attn.c_attn, copies=copies), fused_linear(attn.c_proj, copies=copies)
        self.mlp = _mlp(block.mlp, copies)
        self.n_head, self.n_kv_head, self.head_size = attn.n_head, attn.n_kv_head, attn.head_size
        self.qk_norm = attn.qk_norm

    @property
    def complete(self) -> bool:
        return None not in (self.ln_1, self.ln_2, self.mlp, self.qkv, self.c_proj)

    def __call__(self, x: torch.Tensor, rotation: torch.Tensor | None, keys: torch.Tensor,
                 values: torch.Tensor, pos: int) -> torch.Tensor:
        """Block.forward for x (B, C), the tokens at position `pos`; their keys and values are stored at `pos` of keys
        and values (B, n_kv_head, capacity, hs). rotation: RoPE at pos as an (hs, hs) matrix, or None without RoPE."""
        B, hs, n_kv = x.size(0), self.head_size, self.n_kv_head
        qkv = self.qkv(self.ln_1(x))  # (B, (n_head + 2 n_kv) hs): queries, keys, values side by side
        values_start = (self.n_head + n_kv) * hs
        qk = qkv[:, :values_start].view(B, self.n_head + n_kv, hs)  # q's heads, then k's
        if self.qk_norm:
            qk = F.rms_norm(qk, (hs,))
        if rotation is not None:
            qk = qk @ rotation  # q's heads and k's at once
        keys[:, :, pos] = qk[:, self.n_head :]
        values[:, :, pos] = qkv[:, values_start:].view(B, n_kv, hs)
        # query head h reads key/value head h // n_rep (repeat_kv's order): group the queries by the head they read
        q = qk[:, : self.n_head].view(B, n_kv, self.n_head // n_kv, hs)
        # the n_rep queries of a group are its query rows; no mask: every cached key is visible to the new position
        y = F.scaled_dot_product_attention(q, keys[:, :, : pos + 1], values[:, :, : pos + 1])  # (B, n_kv, n_rep, hs)
        x = x + self.c_proj(y.reshape(B, self.n_head * hs))  # (B, C): heads side by side (a GPU's y may be strided)
        return x + self.mlp(self.ln_2(x))


class FastDecodeStep:
    """Called as `GPT.decode_step(idx, cache, head)` is: the logits (B, vocab) of the new position, equal to that
    step's to float rounding, with the position's keys and values written into `cache` and its length advanced as
    that step writes them. Falls back on `GPT.decode_step` for a prefill, left-padded rows, a full cache or a model
    in training mode."""

    def __init__(self, model: GPT):
        self.model = model
        # on a CPU every block's product weights are copied into one buffer, sized for all the blocks' parameters (the
        # norms' are not copied: pages never written are never given memory)
        copies = WeightCopies(sum(p.numel() for p in model.transformer.h.parameters()))
        self.layers = [_Layer(block, copies) for block in model.transformer.h]
        self.ln_f = _norm(model.transformer.ln_f)
        self.wte = model.transformer.wte
        self.wpe = model.transformer.wpe.weight if "wpe" in model.transformer else None
        if self.wpe is None:  # RoPE
            cos = model.rope.cos  # (block_size, hs)
            eye = torch.eye(cos.size(1), dtype=cos.dtype, device=cos.device)
            self.half_turn = torch.cat([eye[cos.size(1) // 2 :], -eye[: cos.size(1) // 2]])  # x @ it = rotate_half(x)

    @property
    def complete(self) -> bool:
        return (self.ln_f is not None and type(self.wte) is nn.Embedding and type(self.model.transformer.drop) is
                nn.Dropout and all(layer.complete for layer in self.layers))

    def __call__(self, idx: torch.Tensor, cache: KVCache, head: Function | None = None) -> torch.Tensor:
        pos = cache.length
        if (idx.size(1) != 1 or cache.pad_lengths is not None or cache.layers[0].keys is None
                or pos >= cache.capacity or self.model.training):
            return self.model.decode_step(idx, cache, head)
        x = F.embedding(idx[:, 0], self.wte.weight)  # (B, C)
        rotation = None
        if self.wpe is not None:
            x = x + self.wpe[pos]
        else:  # x·cos + rotate_half(x)·sin = x @ (diag(cos) + half_turn·diag(sin)): one (hs, hs) matrix for every block
            cos, sin = self.model.rope.cos[pos], self.model.rope.sin[pos]  # (hs,) each
            rotation = (torch.diag(cos) + self.half_turn * sin).to(x.dtype)
        for layer, layer_cache in zip(self.layers, cache.layers):
            x = layer(x, rotation, layer_cache.keys, layer_cache.values, pos)
        cache.length, cache.mask = pos + 1, None  # what KVCache.begin sets for unpadded rows
        return self.model._cap((head or self.model.lm_head)(self.ln_f(x)))  # (B, vocab)


def _has_forward_hooks(model: nn.Module) -> bool:
    from torch.nn.modules import module as torch_module  # the hooks registered for every module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def fast_decode_step(model) -> FastDecodeStep | None:
    """The fast step for `model`, or None where it has parts the fast step does not know (a mixture of experts, LoRA,
    a model that is not tinylm's GPT) or forward hooks, which only module calls would run."""
    if not isinstance(model, GPT) or _has_forward_hooks(model):
        return None
    step = FastDecodeStep(model)
    return step if step.complete else None
