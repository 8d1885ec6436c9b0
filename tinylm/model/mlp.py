"""The per-position feed-forward networks: GPT-2's GELU MLP, Primer's ReLU² MLP and Llama's SwiGLU.

ReLU² (So et al., 2021, "Primer") is as cheap as ReLU, sparse, and smooth where it is not 0. SwiGLU (Shazeer, 2020,
"GLU Variants Improve Transformer") lets one projection gate another; with three matrices instead of two, Llama
makes it 2/3 as wide (`swiglu_hidden_size`) to keep the parameter count. The output projection is `c_proj` in all of
them, so that GPT-2's scaled initialisation of the projections into the residual stream applies to each.
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
