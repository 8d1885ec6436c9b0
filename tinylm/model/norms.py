"""Normalisation layers: GPT-2's LayerNorm and Llama's RMSNorm.

LayerNorm (Ba et al., 2016, https://arxiv.org/abs/1607.06450) subtracts each vector's mean, divides
by its standard deviation, then scales and shifts: y = (x - mean) / sqrt(var + eps) * weight + bias.
RMSNorm (Zhang & Sennrich, 2019, https://arxiv.org/abs/1910.07467) drops the re-centring and divides
by the root mean square: y = x / sqrt(mean(x²) + eps) * weight. It has no shift either, as Llama uses it;
the shift is a bias, a separate matter from the centring (a LayerNorm with bias=False has none). Zhang &
Sennrich hypothesise that the re-centring is dispensable, and report performance comparable to
LayerNorm's on their tasks. RMSNorm computes one reduction instead of two, holds half
the parameters of a LayerNorm with a shift, and is what Llama, Mistral, Qwen and DeepSeek use.

`rms_norm` is the readable version (it normalises in at least float32, as Hugging Face's Llama does,
because squares of bf16 values lose too much); the model uses `torch.nn.RMSNorm`, which computes the
same (a test compares them).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import GPTConfig


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """x (..., C) / root-mean-square over C, times weight (C,)."""
    wide = torch.promote_types(x.dtype, torch.float32)  # bf16/fp16 -> float32; float32 and float64 stay
    xw = x.to(wide)
    normed = xw * torch.rsqrt(xw.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (normed * weight.to(wide)).to(x.dtype)


def make_norm(config: GPTConfig) -> nn.Module:
    """The norm the config asks for, over n_embd channels. Its parameters are `weight` (and `bias` for a
    LayerNorm with bias=True), the names GPT-2's and Llama's checkpoints use."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
