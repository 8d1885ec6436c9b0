"""A GPT-2-style decoder-only transformer.

Reads top to bottom: an MLP, a Block (pre-norm attention and MLP, each added to a residual
stream), and the GPT (token + position embeddings, a stack of blocks, a final LayerNorm and a
linear head back to the vocabulary). Parameter names follow OpenAI's GPT-2 checkpoint
(`transformer.h.0.attn.c_attn.weight`, ...) so weights map key for key; GPT-2's Conv1D stores
its matrices transposed, which is the only difference an importer has to handle.

Generation passes a `KVCache` (`tinylm.kv_cache`): the model then takes only the new positions,
appends their keys and values to the cache, and returns the last position's logits.

Initialisation is GPT-2's: N(0, 0.02) everywhere, zeros for biases, and the projections that
write into the residual stream scaled by 1/√(2·n_layer) so the stream's variance does not grow
with depth.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import CausalSelfAttention
from .config import GPTConfig
from .kv_cache import KVCache, LayerCache
from .losses import next_token_loss


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)): attention lets positions talk, the MLP thinks per position."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        self.loss_fn = next_token_loss
        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, exclude_position_embeddings: bool = False) -> int:
        """Distinct parameters (a tied head counts once)."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.transformer.wpe.weight.numel() if exclude_position_embeddings else total

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, loss_mask: torch.Tensor | None = None,
                kv_cache: KVCache | None = None):
        """idx (B, T) token ids -> (logits (B, T, vocab), loss or None).

        With targets (B, T), the loss is `self.loss_fn(logits, targets, loss_mask)`. With a `kv_cache`
        (generation), idx holds only the positions not cached yet, they are appended to the cache, and
        only the last position's logits are computed: (B, 1, vocab).
        """
        B, T = idx.shape
        if kv_cache is not None:
            pos = kv_cache.begin(T, idx.device)  # (T,), or (B, T) when rows are left-padded; checks the space left
        elif T > self.config.block_size:
            raise ValueError(
                f"sequence of {T} tokens is longer than the context of {self.config.block_size}; "
                "crop it to the last block_size tokens (generation does this for you)"
            )
        else:
            pos = torch.arange(T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C) + (T or B, T; C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if kv_cache is None else kv_cache.layers[i])
        if kv_cache is None:
            logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)
        else:
            kv_cache.advance(T)
            x = self.transformer.ln_f(x[:, -1:])  # (B, 1, C): only the last position predicts the next token
            logits = kv_cache.project(x, self.lm_head)  # (B, 1, vocab), in the layout fastest for decoding
        loss = None if targets is None else self.loss_fn(logits, targets, loss_mask)
        return logits, loss

    def flops_per_token(self) -> int:
        """Training FLOPs per token (PaLM's count, as nanoGPT uses it): 6 per weight for the forward and backward
        matmuls, plus 12·n_layer·n_embd·block_size for attention's scores and weighted sums."""
        cfg = self.config
        matmul_params = self.num_parameters(exclude_position_embeddings=True)
        return 6 * matmul_params + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
