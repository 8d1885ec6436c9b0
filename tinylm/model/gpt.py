"""A decoder-only transformer: GPT-2's, and the Llama-style family built from the same parts.

It reads top to bottom: a Block (pre-norm attention and MLP, each added to a residual stream), then the GPT.
Parameter names follow OpenAI's GPT-2 checkpoint (`transformer.h.0.attn.c_attn.weight`, ...), so that GPT-2's
weights load key for key and `tinylm.interop` maps Llama's onto them. `forward` is training's path, logits for every
position; `decode_step` is generation's, which feeds only the positions not cached yet.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import GPTConfig
from ..errors import InputError
from .attention import CausalSelfAttention
from .kv_cache import KVCache, LayerCache
from .losses import next_token_loss
from .mlp import feed_forward
from .moe import MoE, balancing_loss, moe_layers
from .norms import make_norm
from .rope import RotaryEmbedding


class Block(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)): attention lets positions talk, the MLP thinks per position."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MoE(config) if config.n_experts else feed_forward(config)  # experts, or one dense MLP

    def forward(self, x: torch.Tensor, rope=None, cache: LayerCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """Token embeddings, positions, a stack of Blocks, a final norm and a linear head.

    Initialisation is GPT-2's: N(0, 0.02), zero biases, and the projections into the residual stream scaled by
    1/√(2·n_layer) so that its variance does not grow with depth (`zero_init_projections` starts them at zero)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        layers = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if config.position == "learned":
            layers["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        layers.update(
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config),
        )
        self.transformer = nn.ModuleDict(layers)
        # RoPE's cos/sin tables follow from the config: buffers, not weights, and not saved in checkpoints.
        self.rope = (RotaryEmbedding(config.head_size, config.block_size, config.rope_theta)
                     if config.position == "rope" else None)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        self.loss_fn = next_token_loss
        self.activation_checkpointing = False  # training's option: trade a second forward pass per block for memory
        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                if config.zero_init_projections:
                    nn.init.zeros_(param)
                else:
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
        if exclude_position_embeddings and "wpe" in self.transformer:
            total -= self.transformer.wpe.weight.numel()
        return total

    def num_active_parameters(self, exclude_position_embeddings: bool = False) -> int:
        """Parameters one token uses: the total less the routed experts it does not visit."""
        inactive = 0
        for layer in moe_layers(self):
            per_expert = sum(p.numel() for p in layer.experts[0].parameters())
            inactive += (layer.n_experts - layer.top_k) * per_expert
        return self.num_parameters(exclude_position_embeddings) - inactive

    def _embed(self, idx: torch.Tensor, pos: torch.Tensor):
        """Token embeddings plus learned positions, or with RoPE the (cos, sin) that attention rotates by."""
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.rope is None:
            x = x + self.transformer.wpe(pos)  # + (T, C), or (B, T, C) for left-padded rows
            return self.transformer.drop(x), None
        return self.transformer.drop(x), self.rope(pos)

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids -> (B, T, C): the forward pass up to the head, after the last norm (a loss that
        fuses the head with the cross-entropy starts here)."""
        x, rope = self._embed(idx, torch.arange(idx.size(1), dtype=torch.long, device=idx.device))
        for block in self.transformer.h:
            if self.activation_checkpointing and torch.is_grad_enabled():  # keep x alone; rebuild the rest in backward
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope)
        return self.transformer.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, loss_mask: torch.Tensor | None = None):
        """idx (B, T) token ids -> (logits (B, T, vocab), loss or None).

        With targets (B, T), the loss is `self.loss_fn(logits, targets, loss_mask)`; in training mode a
        mixture of experts with balancing="aux_loss" adds its balancing loss to it.
        """
        T = idx.size(1)
        if T > self.config.block_size:
            raise InputError(
                f"sequence of {T} tokens is longer than the context of {self.config.block_size}; "
                "crop it to the last block_size tokens (generation does this for you)"
            )
        logits = self.head(self.hidden_states(idx))  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = self.loss_fn(logits, targets, loss_mask)
            aux = balancing_loss(self) if self.training else None
            if aux is not None:
                loss = loss + aux
        return logits, loss

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., C) from `hidden_states` -> logits (..., vocab): the output layer and the soft cap.
        Scoring applies it only where a loss is wanted, e.g. a benchmark's answer tokens."""
        return self._cap(self.lm_head(hidden))

    def decode_step(self, idx: torch.Tensor, kv_cache: KVCache,
                    head: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Generation: idx (B, T) holds the positions not cached yet (the prompt, then one token at a time).

        Their keys and values are appended to `kv_cache`, and only the last position's logits are computed:
        (B, vocab). `head` replaces lm_head for that (generation passes one in the layout fastest to read).
        """
        pos = kv_cache.begin(idx.size(1), idx.device)  # (T,), or (B, T) when rows are left-padded; checks the space
        x, rope = self._embed(idx, pos)
        for block, layer_cache in zip(self.transformer.h, kv_cache.layers):
            x = block(x, rope, layer_cache)
        kv_cache.advance(idx.size(1))
        x = self.transformer.ln_f(x[:, -1])  # (B, C): only the last position predicts the next token
        return self._cap((head or self.lm_head)(x))  # (B, vocab)

    def _cap(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits through the soft cap, if the config has one."""
        cap = self.config.logit_softcap
        return logits if cap is None else cap * torch.tanh(logits / cap)

    def flops_per_token(self) -> int:
        """Training FLOPs per token (PaLM's count, as nanoGPT uses it): 6 per weight a token uses for the forward and
        backward matmuls (active parameters: a mixture of experts counts only the experts a token visits), plus
        12·n_layer·n_embd·block_size for attention's scores and weighted sums."""
        cfg = self.config
        matmul_params = self.num_active_parameters(exclude_position_embeddings=True)
        return 6 * matmul_params + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size

