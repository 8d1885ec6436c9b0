"""The per-position feed-forward networks: GPT-2's GELU MLP, Primer's ReLU² MLP and Llama's SwiGLU.

GPT-2's MLP widens each position's vector 4x, applies GELU and projects back: c_proj(gelu(c_fc(x))). ReLU² (So et
al., 2021, "Primer") uses relu(x)² instead: as cheap as ReLU, sparse, smooth where it is not 0 (the modded-nanogpt
speedrun and nanochat use it). SwiGLU (Shazeer, 2020, "GLU Variants Improve Transformer") lets one projection gate
another, c_proj(silu(c_gate(x)) * c_fc(x)); with three matrices instead of two, Llama makes it 2/3 as wide
(`swiglu_hidden_size`) to keep the parameter count. `tinylm.model.gpt.make_mlp` returns whichever the config asks
for, or a mixture of experts built from narrower copies. The output projection is `c_proj` in all of them, so GPT-2's
scaled initialisation of the projections into the residual stream applies to each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import GPTConfig


class ReLUSquared(nn.Module):
    """relu(x)²."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


class MLP(nn.Module):
    """c_proj(act(c_fc(x))) with GPT-2's tanh GELU, or ReLU² when config.mlp == "relu2"."""

    def __init__(self, config: GPTConfig, hidden: int | None = None):
        super().__init__()
        hidden = hidden or config.mlp_hidden_size
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.act = ReLUSquared() if config.mlp == "relu2" else nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class SwiGLU(nn.Module):
    """c_proj(silu(c_gate(x)) * c_fc(x)): Llama's gate_proj, up_proj and down_proj, in GPT-2's naming."""

    def __init__(self, config: GPTConfig, hidden: int | None = None):
        super().__init__()
        hidden = hidden or config.mlp_hidden_size
        self.c_gate = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.silu(self.c_gate(x)) * self.c_fc(x)))


def feed_forward(config: GPTConfig, hidden: int | None = None) -> nn.Module:
    """A dense MLP of the config's kind (GELU, ReLU² or SwiGLU), `hidden` wide (default: the config's width)."""
    return SwiGLU(config, hidden) if config.mlp == "swiglu" else MLP(config, hidden)
