"""Rotary position embeddings (RoPE; Su et al., 2021, https://arxiv.org/abs/2104.09864).

Instead of adding a learned vector per position, RoPE rotates every query and key: channel pair j at position m turns
by m·θ_j. Rotations compose, so a score depends on the positions only through the offset m − n, and nothing is
learned. The tables stop at block_size: offsets a model never saw are rotations it never learned to read (position
interpolation, NTK scaling and YaRN are not implemented). Checkpoints differ in which channels form a pair:
rotate-half (Hugging Face's Llama, and tinylm) pairs j with j + head_size/2, interleaved (Meta's Llama, llama2.c)
pairs 2j with 2j + 1; permuting the rows of W_q and W_k within each head turns one into the other.
"""

from __future__ import annotations

import torch
from torch import nn


def rope_frequencies(head_size: int, theta: float = 10000.0) -> torch.Tensor:
    """θ_j = theta^(-2j / head_size) for the head_size/2 channel pairs, (head_size/2,) float32."""
    return 1.0 / (theta ** (torch.arange(0, head_size, 2, dtype=torch.int64).float() / head_size))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension: a 90° turn of every pair (j, j + hs/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, heads, T, hs) by the angles whose cos and sin are given, broadcastable to x (rotate-half layout)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """cos and sin of every position's angles, (block_size, head_size) each, looked up by position ids."""

    def __init__(self, head_size: int, block_size: int, theta: float = 10000.0):
        super().__init__()
        angles = torch.outer(torch.arange(block_size, dtype=torch.float32), rope_frequencies(head_size, theta))
        angles = torch.cat((angles, angles), dim=-1)  # (block_size, hs): pair (j, j + hs/2) shares angle j
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (T,) -> cos, sin (T, hs); positions (B, T) -> (B, 1, T, hs), broadcast over the heads."""
        cos, sin = self.cos[positions], self.sin[positions]
        if positions.dim() == 2:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return cos, sin


def interleaved_to_rotate_half(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q or k projection (n_heads·hs, C) from interleaved pairs to rotate-half order, head by head."""
    rows, cols = weight.shape
    hs = rows // n_heads
    # (n_heads, hs/2, 2, C) -> (n_heads, 2, hs/2, C): first every pair's first channel, then every second channel
    return weight.view(n_heads, hs // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def rotate_half_to_interleaved(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of `interleaved_to_rotate_half`; also for a projection's bias (n_heads·hs,)."""
    hs = weight.shape[0] // n_heads
    return weight.reshape(n_heads, 2, hs // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)
