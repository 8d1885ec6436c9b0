"""A plain GPT-2 with nothing to choose: the yardstick tinylm's GPT is timed and checked against.

tinylm's GPT carries options (RMSNorm, RoPE, SwiGLU, grouped-query attention, experts, a key/value cache), and none
of them may cost anything when it is not used. This is the same network written the shortest way, as nanoGPT's
model.py writes it, trained with AdamW as nanoGPT sets it up. Its parameter names are GPT-2's, as tinylm's are, so it
loads a tinylm GPT's weights key for key and `python -m tinylm.bench train --reference` can check that both compute
the same losses before it times them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, GPTConfig


def check_plain_gpt2(config: GPTConfig) -> None:
    """The reference is GPT-2's block only; any other choice of the config has no counterpart in it."""
    plain = dict(norm="layernorm", position="learned", mlp="gelu", n_experts=0, dropout=0.0)
    different = [f"{name}={getattr(config, name)!r}" for name, value in plain.items() if getattr(config, name) != value]
    if config.kv_heads != config.n_head:
        different.append(f"n_kv_head={config.n_kv_head}")
    if config.mlp_hidden_size != 4 * config.n_embd:
        different.append(f"an MLP {config.mlp_hidden_size} wide")
    if different:
        raise ConfigError(f"the reference GPT is GPT-2's block (LayerNorm, learned positions, GELU MLP 4x wide, "
                          f"every head its own keys, no dropout); this shape has {', '.join(different)}: "
                          f"use --arch gpt2 and the preset's MLP width")


class SelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class FeedForward(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
        self.mlp = FeedForward(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ReferenceGPT(nn.Module):
    """GPT-2 for training only: (idx, targets) -> (logits, mean cross-entropy). Its weights come from a tinylm GPT."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        check_plain_gpt2(config)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(idx.size(1), device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(positions)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def reference_optimizer(model: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float):
    """AdamW as nanoGPT configures it: decay on matrices (dim >= 2) only, the fused kernel on CUDA, and torch's
    default implementation elsewhere (on a CPU, a loop over the tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = {"fused": True} if params and params[0].device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **fused)
