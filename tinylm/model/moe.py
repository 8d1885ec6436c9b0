"""Mixture of experts: many MLPs per layer, of which each token uses only its router's top k, so that parameters grow
with the experts and compute per token only with k.

As in DeepSeekMoE (arXiv:2401.06066) the experts are narrow and shared experts serve every token. Left alone, routing
tends to collapse (early winners train more and win more), so `balancing` is "none", "aux_loss" (Switch/GShard's
coef·E·Σ f_i·P_i) or "loss_free" (DeepSeek-V3: a per-expert bias, used only to choose the top k, moves against its
load error after each optimizer step). Eagerly each expert runs once on the tokens that chose it, which needs a host
sync; under torch.compile every expert runs on every token (fixed shapes, E/k times the FLOPs).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..config import GPTConfig
from .mlp import feed_forward


class MoE(nn.Module):
    """A block's MLP as routed experts plus shared ones. aux_loss's gradient moves each token's scores toward the
    experts loaded below its weighted mean; the loss-free bias moves by `bias_update_rate` in `end_of_step`."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_experts, self.top_k = config.n_experts, config.n_experts_active
        self.router_kind, self.balancing = config.router, config.balancing
        self.aux_loss_coef, self.bias_update_rate = config.aux_loss_coef, config.bias_update_rate
        self.router = nn.Linear(config.n_embd, config.n_experts, bias=False)
        self.experts = nn.ModuleList(feed_forward(config, config.expert_hidden_size) for _ in range(config.n_experts))
        self.shared = (feed_forward(config, config.n_shared_experts * config.expert_hidden_size)
                       if config.n_shared_experts else None)
        # The loss-free bias is state, not a weight: no gradient, but saved in checkpoints so a resumed run goes on.
        self.register_buffer("expert_bias", torch.zeros(config.n_experts))
        self.register_buffer("step_counts", torch.zeros(config.n_experts), persistent=False)
        self.register_buffer("window_counts", torch.zeros(config.n_experts), persistent=False)
        self.aux_loss: torch.Tensor | None = None  # the last training forward's balancing loss (aux_loss mode)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, C) -> chosen experts (N, k), their weights (N, k) summing to 1, and every score (N, E)."""
        logits = self.router(x)  # (N, E)
        # at least float32 (bf16 -> float32, float64 stays), so that ties and tiny scores behave the same in bf16
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        scores = logits.softmax(dim=-1) if self.router_kind == "softmax" else logits.sigmoid()
        selection = scores + self.expert_bias if self.balancing == "loss_free" else scores
        chosen = selection.topk(self.top_k, dim=-1).indices  # (N, k): the bias decides who is chosen...
        weights = scores.gather(-1, chosen)  # ...but not how much they count
        return chosen, weights / weights.sum(dim=-1, keepdim=True), scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        flat = x.reshape(B * T, C)  # (N, C): routing is per token
        chosen, weights, scores = self.route(flat)
        # (E,) assignments per expert; a comparison rather than bincount, whose output size depends on the data
        counts = (chosen.flatten()[:, None] == torch.arange(self.n_experts, device=x.device)).sum(dim=0)
        if self.training:
            # add_, not +=, which also assigns the attribute: a module with an assigned attribute cannot be
            # walked (balancing_loss) in the same torch.compile graph
            self.step_counts.add_(counts)
            if self.balancing == "aux_loss":
                fraction = counts.float() / chosen.numel()  # f_i, no gradient
                mean_score = (scores / scores.sum(dim=-1, keepdim=True)).mean(dim=0)  # P_i, differentiable
                self.aux_loss = self.aux_loss_coef * self.n_experts * (fraction * mean_score).sum()
        if torch.compiler.is_compiling():
            out = self._dispatch_dense(flat, chosen, weights)
        else:
            out = self._dispatch_sorted(flat, chosen, weights, counts)
        if self.shared is not None:
            out = out + self.shared(flat)
        return out.view(B, T, C)

    def _dispatch_sorted(self, flat: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor,
                         counts: torch.Tensor) -> torch.Tensor:
        """Each expert once, on the tokens that chose it: (N, C) -> (N, C), the weighted sum of each token's experts."""
        # Sort the N·k assignments by expert: each expert then takes one contiguous slice of token ids.
        order = chosen.flatten().argsort()  # (N·k,)
        token_ids = order // self.top_k  # the token each sorted assignment belongs to
        assignment_weights = weights.flatten()[order]  # (N·k,)
        out = torch.zeros_like(flat)
        start = 0
        for expert, count in zip(self.experts, counts.tolist()):
            if count:
                ids = token_ids[start : start + count]
                y = expert(flat[ids]) * assignment_weights[start : start + count, None]  # (count, C)
                out.index_add_(0, ids, y.to(out.dtype))
            start += count
        return out

    def _dispatch_dense(self, flat: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Every expert on every token, times the token's gate for it (0 unless chosen): what _dispatch_sorted
        computes, in shapes that do not depend on the routing."""
        gates = torch.zeros(flat.size(0), self.n_experts, dtype=weights.dtype, device=flat.device)
        gates = gates.scatter(-1, chosen, weights)  # (N, E): each row holds the token's k weights
        out = torch.zeros_like(flat)
        for expert, gate in zip(self.experts, gates.unbind(dim=-1)):
            out = out + (expert(flat) * gate[:, None]).to(out.dtype)
        return out

    @torch.no_grad()
    def end_of_step(self) -> None:
        """After an optimizer step: move the loss-free biases by the step's load error, and keep the counts."""
        counts = self.step_counts
        if dist.is_initialized():
            dist.all_reduce(counts)  # every rank sees the global load, so the biases stay identical
        if self.balancing == "loss_free" and counts.sum() > 0:
            self.expert_bias += self.bias_update_rate * torch.sign(counts.mean() - counts)
        self.window_counts += counts
        self.step_counts.zero_()


def moe_layers(model: nn.Module) -> list[MoE]:
    return [module for module in model.modules() if isinstance(module, MoE)]


def balancing_loss(model: nn.Module) -> torch.Tensor | None:
    """The sum of every layer's auxiliary loss from the last training forward (None without aux_loss layers)."""
    losses = [layer.aux_loss for layer in moe_layers(model) if layer.aux_loss is not None]
    for layer in moe_layers(model):
        layer.aux_loss = None
    return torch.stack(losses).sum() if losses else None


def end_of_step(model: nn.Module) -> None:
    for layer in moe_layers(model):
        layer.end_of_step()


def max_violation(load: list[float]) -> float:
    """max load / mean load − 1 for loads that sum to 1: 0 when balanced, E − 1 when one expert takes everything.
    Under top-k routing no expert's load exceeds 1/k, so a layer's max-violation is at most E/k − 1."""
    mean = sum(load) / len(load)
    return max(load) / mean - 1 if mean > 0 else 0.0


def read_expert_load(model: nn.Module) -> dict[str, list] | None:
    """Per layer, the fraction of assignments each expert got since the last call, and its max-violation."""
    layers = moe_layers(model)
    if not layers or float(layers[0].window_counts.sum()) == 0:
        return None
    loads = []
    for layer in layers:
        counts = layer.window_counts
        loads.append((counts / counts.sum()).tolist())
        counts.zero_()
    return {"expert_load": loads, "max_violation": [max_violation(load) for load in loads]}
