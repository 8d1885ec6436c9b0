"""A second decode step for tinylm's GPT: the arithmetic of `GPT.decode_step`, value for value, with fewer Python calls.

The readable step walks the modules. For one new token, each Block calls its norm, its attention (which asks the
KVCache for position ids and appends to it, building small tensors on the way) and its MLP, and every nn.Module call
and every small tensor costs Python and dispatcher time. For a batch-1 token of a small model that bookkeeping costs
about as much as the arithmetic: llama2.c's stories15M shape spends ~4 ms per token reading its 61 MB of float32
weights, and the module walk adds a few more on a laptop CPU.

`FastDecodeStep` does the same arithmetic with the same functions (`F.linear`, `F.rms_norm`, `apply_rotary`,
`fast_causal_attention`, ...) on the model's own weight tensors in the same order, so every logit is bit for bit the
one `GPT.decode_step` computes and decoding picks the same tokens, greedy or sampled (tests/test_fast_decode.py). What
it leaves out is the bookkeeping: no module calls, the position as a Python int, each layer's keys and values
written straight into the cache's storage.

It serves the decode loop's steps after the prefill: one new position per row, rows without left padding, the model
in eval mode. Anything else (the prefill itself, padded batches) goes to `GPT.decode_step`. `fast_decode_step(model)`
is None for a model whose parts it does not know (a mixture of experts, LoRA adapters, a model that is not tinylm's
GPT): the loop then walks the modules throughout.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..model.attention import explicit_causal_attention, fast_causal_attention, repeat_kv
from ..model.gpt import GPT
from ..model.kv_cache import KVCache
from ..model.mlp import MLP, ReLUSquared, SwiGLU
from ..model.rope import apply_rotary

Function = Callable[[torch.Tensor], torch.Tensor]


def _linear(module: nn.Module) -> Function | None:
    if type(module) is not nn.Linear:  # a LoRA-wrapped layer adds its adapters: not this arithmetic
        return None
    weight, bias = module.weight, module.bias
    return lambda x: F.linear(x, weight, bias)


def _norm(module: nn.Module) -> Function | None:
    """The function nn.RMSNorm or nn.LayerNorm applies (their forward, without the module call)."""
    if type(module) is nn.RMSNorm:
        return lambda x: F.rms_norm(x, module.normalized_shape, module.weight, module.eps)
    if type(module) is nn.LayerNorm:
        return lambda x: F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)
    return None


def _mlp(module: nn.Module) -> Function | None:
    """SwiGLU's c_proj(silu(c_gate(x)) * c_fc(x)), or the MLP's c_proj(act(c_fc(x))), as their forward computes them."""
    if type(module) is SwiGLU:
        gate, up, down = _linear(module.c_gate), _linear(module.c_fc), _linear(module.c_proj)
        if None in (gate, up, down):
            return None
        return lambda x: down(F.silu(gate(x)) * up(x))
    if type(module) is MLP:
        up, down = _linear(module.c_fc), _linear(module.c_proj)
        if type(module.act) is ReLUSquared:
            act = lambda x: F.relu(x).square()  # noqa: E731
        elif type(module.act) is nn.GELU:
            approximate = module.act.approximate
            act = lambda x: F.gelu(x, approximate=approximate)  # noqa: E731
        else:
            return None
        return None if None in (up, down) else lambda x: down(act(up(x)))
    return None  # a mixture of experts routes each token: not served here


class _Layer:
    """One Block's parts as plain functions and its attention's shape."""

    def __init__(self, block: nn.Module):
        attn = block.attn
        self.ln_1, self.ln_2, self.mlp = _norm(block.ln_1), _norm(block.ln_2), _mlp(block.mlp)
        self.c_attn, self.c_proj = _linear(attn.c_attn), _linear(attn.c_proj)
        self.n_head, self.n_kv_head, self.head_size, self.n_embd = attn.n_head, attn.n_kv_head, attn.head_size, \
            attn.n_embd
        self.qk_norm = attn.qk_norm
        self.attend = fast_causal_attention if attn.use_flash else explicit_causal_attention

    @property
    def complete(self) -> bool:
        return None not in (self.ln_1, self.ln_2, self.mlp, self.c_attn, self.c_proj)

    def __call__(self, x: torch.Tensor, rope, keys: torch.Tensor, values: torch.Tensor, pos: int) -> torch.Tensor:
        """Block.forward for x (B, 1, C) at position `pos`, its key and value stored at `pos` of keys, values."""
        B, hs = x.size(0), self.head_size
        kv_width = self.n_kv_head * hs
        q, k, v = self.c_attn(self.ln_1(x)).split([self.n_embd, kv_width, kv_width], dim=2)
        q = q.view(B, 1, self.n_head, hs).transpose(1, 2)
        k = k.view(B, 1, self.n_kv_head, hs).transpose(1, 2)
        v = v.view(B, 1, self.n_kv_head, hs).transpose(1, 2)
        if self.qk_norm:
            q, k = F.rms_norm(q, (hs,)), F.rms_norm(k, (hs,))
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        keys[:, :, pos : pos + 1] = k
        values[:, :, pos : pos + 1] = v
        n_rep = self.n_head // self.n_kv_head
        y = self.attend(q, repeat_kv(keys[:, :, : pos + 1], n_rep), repeat_kv(values[:, :, : pos + 1], n_rep))
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, 1, self.n_embd))
        return x + self.mlp(self.ln_2(x))


class FastDecodeStep:
    """Called as `GPT.decode_step(idx, cache, head)` is, with the same result (see the module docstring)."""

    def __init__(self, model: GPT):
        self.model = model
        self.layers = [_Layer(block) for block in model.transformer.h]
        self.ln_f = _norm(model.transformer.ln_f)
        self.wte = model.transformer.wte
        self.wpe = model.transformer.wpe.weight if "wpe" in model.transformer else None

    @property
    def complete(self) -> bool:
        return (self.ln_f is not None and type(self.wte) is nn.Embedding and type(self.model.transformer.drop) is
                nn.Dropout and all(layer.complete for layer in self.layers))

    def __call__(self, idx: torch.Tensor, cache: KVCache, head: Function | None = None) -> torch.Tensor:
        pos = cache.length
        storage = cache.layers[0].keys
        if (idx.size(1) != 1 or cache.pad_lengths is not None or storage is None or pos >= cache.capacity
                or self.model.training):
            return self.model.decode_step(idx, cache, head)
        x = F.embedding(idx, self.wte.weight)  # (B, 1, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe[pos : pos + 1]
        else:
            rope = (self.model.rope.cos[pos : pos + 1], self.model.rope.sin[pos : pos + 1])
        for layer, layer_cache in zip(self.layers, cache.layers):
            x = layer(x, rope, layer_cache.keys, layer_cache.values, pos)
        cache.length, cache.mask = pos + 1, None
        return self.model._cap((head or self.model.lm_head)(self.ln_f(x[:, -1])))


def fast_decode_step(model) -> FastDecodeStep | None:
    """The fast step for `model`, or None where it has parts the fast step does not know (see the module docstring)."""
    if not isinstance(model, GPT):
        return None
    step = FastDecodeStep(model)
    return step if step.complete else None
