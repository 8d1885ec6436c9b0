"""A second decode step for tinylm's GPT: what `GPT.decode_step` computes for one new token, in fewer and faster calls.

At batch 1 a token of a small model costs two things: reading every weight once (llama2.c's stories15M shape reads
61 MB of float32 per token, a few milliseconds for one CPU core) and a few hundred small operations, each paying
Python's and PyTorch's dispatch. The readable step, `GPT.decode_step`, walks the modules and pays both in full: every
Block calls its norm, its attention (which asks the KVCache for position ids, repeats the grouped keys and runs the
fused attention kernel) and its MLP. This step computes the same function of the same weights with less of both:
- **Weights in the layout the CPU reads fastest.** PyTorch's CPU matrix-vector product reads an (out, in) weight with
  more outputs than inputs slower than its (in, out) transpose (stories15M's shapes on a 2-core AVX2 CPU: 1.6 to 2.8
  times the time), and the one with fewer (the MLP's down projection) faster as it is. So on a CPU the weights with
  more outputs (the fused query/key/value projection, the MLP's up and gate projections) are read from a transposed
  copy made when the step is built; the others keep their layout, and on a GPU all do. `tinylm.generate.decode` gives
  the head the same treatment for both steps. `scripts/decode_vs_llama2c.py` times the whole step.
- **Fewer products and operations.** SwiGLU's gate and up projections are one matrix; queries and keys are normed
  and rotated together, the rotate-half turn as one gather and one multiply-add (the sign folded into the sine
  table); the one query's attention is written out (scores, softmax, weighted sum) with each group of query heads
  reading its shared key/value head in place rather than from a repeated copy; no module calls, the position a
  Python int, keys and values written straight into the cache's storage.

The copies are made once per step object: build one per generation (`tinylm.generate.decode` does), since a step
built before the weights change keeps the old ones. They cost memory, 16.6 MB beside stories15M's 61 MB.

Products in another layout, and softmax written out, add the same numbers in another order: the logits agree with
the readable step's to float rounding, not bit for bit. Decoding picked the same tokens, greedy and sampled, in every
test (tests/test_fast_decode.py, every block family this step serves) and on stories15M's shape
(`scripts/decode_vs_llama2c.py --readable`); a near-tie between two logits could still go the other way.

It serves the decode loop's steps after the prefill: one new position per row, rows without left padding, the model
in eval mode. Anything else (the prefill itself, padded batches) goes to `GPT.decode_step`. `fast_decode_step(model)`
is None for a model whose parts it does not know (a mixture of experts, LoRA adapters, a model that is not tinylm's
GPT) or that carries forward hooks (a probe, a test's pacing), which only module calls would run: the loop then walks
the modules throughout.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..model.gpt import GPT
from ..model.kv_cache import KVCache
from ..model.mlp import MLP, ReLUSquared, SwiGLU

Function = Callable[[torch.Tensor], torch.Tensor]


def _product(*linears: nn.Module) -> Function | None:
    """x (B, in) -> the nn.Linear layers' outputs side by side, (B, sum of out): one product for layers that read the
    same input. A weight with more outputs than inputs is read transposed on a CPU (see the module docstring)."""
    if any(type(linear) is not nn.Linear for linear in linears):  # a LoRA-wrapped layer adds its adapters
        return None
    weight = torch.cat([linear.weight.detach() for linear in linears]) if len(linears) > 1 else linears[0].weight
    bias = linears[0].bias
    if bias is not None and len(linears) > 1:
        bias = torch.cat([linear.bias.detach() for linear in linears])
    if weight.device.type != "cpu" or weight.size(0) <= weight.size(1):
        return lambda x: F.linear(x, weight, bias)
    transposed = weight.t().contiguous()  # (in, out)
    return (lambda x: x @ transposed) if bias is None else (lambda x: torch.addmm(bias, x, transposed))


def _norm(module: nn.Module) -> Function | None:
    """The function nn.RMSNorm or nn.LayerNorm applies (their forward, without the module call)."""
    if type(module) is nn.RMSNorm:
        return lambda x: F.rms_norm(x, module.normalized_shape, module.weight, module.eps)
    if type(module) is nn.LayerNorm:
        return lambda x: F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)
    return None


def _activation(module: nn.Module) -> Function | None:
    if type(module) is ReLUSquared:
        return lambda x: F.relu(x).square()
    if type(module) is nn.GELU:
        return lambda x: F.gelu(x, approximate=module.approximate)
    return None


def _mlp(module: nn.Module) -> Function | None:
    """SwiGLU's c_proj(silu(c_gate(x)) * c_fc(x)) with gate and up as one product, or the MLP's c_proj(act(c_fc(x)))."""
    if type(module) is SwiGLU:
        gate_up, down = _product(module.c_gate, module.c_fc), _product(module.c_proj)
        hidden = module.c_fc.out_features
        if None in (gate_up, down):
            return None

        def swiglu(x: torch.Tensor) -> torch.Tensor:
            gate, up = gate_up(x).split(hidden, dim=-1)  # (B, hidden) each
            return down(F.silu(gate) * up)

        return swiglu
    if type(module) is MLP:
        up, act, down = _product(module.c_fc), _activation(module.act), _product(module.c_proj)
        return None if None in (up, act, down) else lambda x: down(act(up(x)))
    return None  # a mixture of experts routes each token: not served here


class _Layer:
    """One Block's parts as plain functions, and its attention's shape."""

    def __init__(self, block: nn.Module):
        attn = block.attn
        self.ln_1, self.ln_2, self.mlp = _norm(block.ln_1), _norm(block.ln_2), _mlp(block.mlp)
        self.qkv, self.c_proj = _product(attn.c_attn), _product(attn.c_proj)
        self.n_head, self.n_kv_head, self.head_size = attn.n_head, attn.n_kv_head, attn.head_size
        self.qk_norm = attn.qk_norm
        self.scale = 1 / math.sqrt(attn.head_size)

    @property
    def complete(self) -> bool:
        return None not in (self.ln_1, self.ln_2, self.mlp, self.qkv, self.c_proj)

    def __call__(self, x: torch.Tensor, turn, keys: torch.Tensor, values: torch.Tensor, pos: int) -> torch.Tensor:
        """Block.forward for x (B, C), the tokens at position `pos`, their keys and values stored at `pos` of keys and
        values (B, n_kv_head, capacity, hs). `turn`: RoPE's (cos, signed sin, rotate-half gather) at pos, or None."""
        B, hs, n_kv = x.size(0), self.head_size, self.n_kv_head
        qkv = self.qkv(self.ln_1(x))  # (B, (n_head + 2 n_kv) hs): queries, keys, values side by side
        qk = qkv[:, : (self.n_head + n_kv) * hs].view(B, self.n_head + n_kv, hs)  # q's heads, then k's
        if self.qk_norm:
            qk = F.rms_norm(qk, (hs,))
        if turn is not None:
            cos, signed_sin, rotate_half = turn
            qk = torch.addcmul(qk * cos, qk[..., rotate_half], signed_sin)  # apply_rotary, for q and k at once
        keys[:, :, pos] = qk[:, self.n_head :]
        values[:, :, pos] = qkv[:, (self.n_head + n_kv) * hs :].view(B, n_kv, hs)
        # query head h reads key/value head h // n_rep (repeat_kv's order): group the queries by the head they read
        q = qk[:, : self.n_head].view(B, n_kv, self.n_head // n_kv, hs)
        scores = (q @ keys[:, :, : pos + 1].transpose(-2, -1)) * self.scale  # (B, n_kv, n_rep, pos + 1)
        y = torch.softmax(scores, dim=-1) @ values[:, :, : pos + 1]  # (B, n_kv, n_rep, hs): every cached key visible
        x = x + self.c_proj(y.view(B, self.n_head * hs))  # (B, C): heads side by side, in order
        return x + self.mlp(self.ln_2(x))


class FastDecodeStep:
    """Called as `GPT.decode_step(idx, cache, head)` is; its result equals that one's to float rounding."""

    def __init__(self, model: GPT):
        self.model = model
        self.layers = [_Layer(block) for block in model.transformer.h]
        self.ln_f = _norm(model.transformer.ln_f)
        self.wte = model.transformer.wte
        self.wpe = model.transformer.wpe.weight if "wpe" in model.transformer else None
        self.rope = None
        if model.rope is not None:
            dtype = model.lm_head.weight.dtype
            cos, sin = model.rope.cos.to(dtype), model.rope.sin.to(dtype)  # (block_size, hs)
            half = cos.size(1) // 2
            # rotate_half(x) = (-x2, x1) is a gather of x's channels, every first half negated: the sign goes into sin
            rotate_half = torch.cat([torch.arange(half, 2 * half), torch.arange(half)]).to(cos.device)
            self.rope = (cos, torch.cat([-sin[:, :half], sin[:, half:]], dim=1), rotate_half)

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
        turn = None
        if self.wpe is not None:
            x = x + self.wpe[pos]
        else:
            cos, signed_sin, rotate_half = self.rope
            turn = (cos[pos], signed_sin[pos], rotate_half)
        for layer, layer_cache in zip(self.layers, cache.layers):
            x = layer(x, turn, layer_cache.keys, layer_cache.values, pos)
        cache.length, cache.mask = pos + 1, None
        return self.model._cap((head or self.model.lm_head)(self.ln_f(x)))  # (B, vocab)


def _has_forward_hooks(model: nn.Module) -> bool:
    from torch.nn.modules import module as torch_module  # the hooks registered for every module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def fast_decode_step(model) -> FastDecodeStep | None:
    """The fast step for `model`, or None where it has parts the fast step does not know or forward hooks that it
    would skip (see the module docstring)."""
    if not isinstance(model, GPT) or _has_forward_hooks(model):
        return None
    step = FastDecodeStep(model)
    return step if step.complete else None
