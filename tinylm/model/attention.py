"""Causal multi-head self-attention, in a readable form and a fast form that a test proves equal.

`explicit_causal_attention` spells out the scores, the causal mask, the softmax and the weighted sum, and keeps the
(T, T) scores the notebooks look at; `fast_causal_attention`, the default, gets the same from fused kernels that
never store them. Grouped-query attention (Ainslie et al., 2023) shares each key/value head among a group of query
heads, so the key/value cache, which dominates decoding memory, shrinks by n_head / n_kv_head. QK-norm (Dehghani et
al., 2023) RMS-normalises each head's queries and keys, so that a score cannot grow without bound as the weights grow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import GPTConfig
from .kv_cache import LayerCache
from .rope import apply_rotary


def explicit_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0, return_weights: bool = False,
    mask: torch.Tensor | None = None,
):
    """Attention for q (B, n_head, Tq, head_size) and k, v (B, n_head, Tk, head_size);
    returns (B, n_head, Tq, head_size).

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


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv_head, T, hs) -> (B, n_kv_head * n_rep, T, hs): each key/value head serves n_rep query heads in a row."""
    if n_rep == 1:
        return x
    B, n_kv, T, hs = x.shape
    return x[:, :, None].expand(B, n_kv, n_rep, T, hs).reshape(B, n_kv * n_rep, T, hs)


class CausalSelfAttention(nn.Module):
    """All heads at once: one Linear makes q, k and v for every head, one Linear mixes the heads' outputs."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.kv_heads, config.head_size
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.use_flash = config.attention == "flash"
        self.qk_norm = config.qk_norm
        # q for n_head heads, then k and v for n_kv_head heads each (all three n_embd wide without GQA)
        qkv_width = (config.n_head + 2 * config.kv_heads) * config.head_size  # queries, then keys and values
        self.c_attn = nn.Linear(config.n_embd, qkv_width, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def heads(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (B, T, C) -> q (B, nh, T, hs) and k, v (B, n_kv, T, hs): heads become a batch dimension.

        rope: (cos, sin) at these positions, to rotate q and k with (None for learned positions)."""
        B, T, C = x.shape
        kv_width = self.n_kv_head * self.head_size
        q, k, v = self.c_attn(x).split([self.n_embd, kv_width, kv_width], dim=2)  # (B, T, C), 2 x (B, T, n_kv·hs)
        # (B, T, heads·hs) -> (B, T, heads, hs) -> (B, heads, T, hs)
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)
        if self.qk_norm:  # each head's vectors to root-mean-square 1, before RoPE rotates them (a rotation keeps it)
            q, k = F.rms_norm(q, (self.head_size,)), F.rms_norm(k, (self.head_size,))
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        return q, k, v

    def forward(self, x: torch.Tensor, rope=None, cache: LayerCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.heads(x, rope)
        mask = None
        if cache is not None:
            k, v = cache.append(k, v)  # (B, n_kv, cached + T, hs): the past positions' keys are not recomputed
            mask = cache.mask
        n_rep = self.n_head // self.n_kv_head
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, nh, Tk, hs)
        dropout_p = self.dropout if self.training else 0.0
        if self.use_flash:
            y = fast_causal_attention(q, k, v, dropout_p=dropout_p, mask=mask)
        else:
            y = explicit_causal_attention(q, k, v, dropout_p=dropout_p, mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, nh, T, hs) -> (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y))

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor, rope=None) -> torch.Tensor:
        """The attention pattern this layer applies to x (B, T, C): (B, nh, T, T), each row summing to 1."""
        q, k, v = self.heads(x, rope)
        n_rep = self.n_head // self.n_kv_head
        return explicit_causal_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), return_weights=True)[1]
