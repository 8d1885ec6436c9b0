"""Causal multi-head self-attention, in a readable form and a fast form.

`explicit_causal_attention` spells out what attention is: scores q·kᵀ/√d, a lower-triangular mask
so position t only sees positions ≤ t, a softmax over the visible positions, and a weighted sum of
the values. It materialises the (T, T) score matrix, which is what the notebooks look at.

`F.scaled_dot_product_attention` computes the same thing with fused kernels (FlashAttention on
recent GPUs, a memory-efficient kernel elsewhere) that never store the full score matrix. The
model uses it by default; a test proves the two paths agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPTConfig


def explicit_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0, return_weights: bool = False
):
    """Attention for q, k, v of shape (B, n_head, T, head_size); returns (B, n_head, T, head_size)."""
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, nh, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, float("-inf"))  # future positions get zero weight after softmax
    weights = F.softmax(scores, dim=-1)
    out = F.dropout(weights, p=dropout_p) @ v  # (B, nh, T, T) @ (B, nh, T, hs) -> (B, nh, T, hs)
    return (out, weights) if return_weights else out


class CausalSelfAttention(nn.Module):
    """All heads at once: one Linear makes q, k and v for every head, one Linear mixes the heads' outputs."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.use_flash = config.attention == "flash"
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        # (B, T, C) -> (B, T, nh, hs) -> (B, nh, T, hs): heads become a batch dimension
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        dropout_p = self.dropout if self.training else 0.0
        if self.use_flash:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:
            y = explicit_causal_attention(q, k, v, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, nh, T, hs) -> (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y))
