"""Causal multi-head self-attention, in a readable form and a fast form.

`explicit_causal_attention` spells out what attention is: scores q·kᵀ/√d, a lower-triangular mask
so position t only sees positions ≤ t, a softmax over the visible positions, and a weighted sum of
the values. It materialises the (T, T) score matrix, which is what the notebooks look at.

`F.scaled_dot_product_attention` computes the same thing with fused kernels (FlashAttention on
recent GPUs, a memory-efficient kernel elsewhere) that never store the full score matrix. The
model uses it by default; a test proves the two paths agree.

Both take queries for the last positions only, keys for all of them: that is what a key/value
cache (`tinylm.kv_cache`) hands them when one new token attends to a cached past.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPTConfig
from .kv_cache import LayerCache


def explicit_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0, return_weights: bool = False,
    mask: torch.Tensor | None = None,
):
    """Attention for q (B, n_head, Tq, head_size) and k, v (B, n_head, Tk, head_size); returns (B, n_head, Tq, head_size).

    The Tq queries are the last Tq of the Tk positions (Tq < Tk when earlier keys come from a cache).
    `mask` (bool, True = may attend, broadcastable to (B, n_head, Tq, Tk)) replaces the causal mask.
    """
    Tq, Tk = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, nh, Tq, Tk)
    if mask is None:
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - Tq)
    scores = scores.masked_fill(~mask, float("-inf"))  # future positions get zero weight after softmax
    weights = F.softmax(scores, dim=-1)
    out = F.dropout(weights, p=dropout_p) @ v  # (B, nh, Tq, Tk) @ (B, nh, Tk, hs) -> (B, nh, Tq, hs)
    return (out, weights) if return_weights else out


def fast_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
                          mask: torch.Tensor | None = None) -> torch.Tensor:
    """The same contract as `explicit_causal_attention`, through PyTorch's fused kernels."""
    Tq, Tk = q.size(-2), k.size(-2)
    if mask is None and Tq == Tk:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    if mask is None and Tq == 1:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)  # one new query sees every cached key
    if mask is None:  # is_causal would align the mask top-left, which is wrong when Tq < Tk
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - Tq)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


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

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> q, k, v, each (B, nh, T, hs): heads become a batch dimension."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        # (B, T, C) -> (B, T, nh, hs) -> (B, nh, T, hs)
        return tuple(t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.heads(x)
        mask = None
        if cache is not None:
            k, v = cache.append(k, v)  # (B, nh, cached + T, hs): the past positions' keys are not recomputed
            mask = cache.mask
        dropout_p = self.dropout if self.training else 0.0
        if self.use_flash:
            y = fast_causal_attention(q, k, v, dropout_p=dropout_p, mask=mask)
        else:
            y = explicit_causal_attention(q, k, v, dropout_p=dropout_p, mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, nh, T, hs) -> (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y))

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention pattern this layer applies to x (B, T, C): (B, nh, T, T), each row summing to 1."""
        q, k, v = self.heads(x)
        return explicit_causal_attention(q, k, v, return_weights=True)[1]
