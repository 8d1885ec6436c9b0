"""Normalisation layers: GPT-2's LayerNorm and Llama's RMSNorm.

LayerNorm (Ba et al., 2016, https://arxiv.org/abs/1607.06450) subtracts each vector's mean, divides by its standard
deviation, then scales and shifts. RMSNorm (Zhang & Sennrich, 2019, https://arxiv.org/abs/1910.07467) only divides by
the root mean square and scales: one reduction instead of two, and half the parameters of a LayerNorm with a shift.
`rms_norm` is the readable version; the model uses `torch.nn.RMSNorm`, which computes the same (a test compares them).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import GPTConfig


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """x (..., C) / root-mean-square over C, times weight (C,): x / sqrt(mean(x²) + eps) * weight, computed in at
    least float32 as Hugging Face's Llama does, because squares of bf16 values lose too much."""
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
