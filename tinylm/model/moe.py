"""Mixture of experts: many MLPs per layer, of which each token uses only a few.

A router scores every expert for every token (a Linear from n_embd to n_experts, then softmax as in
Switch/Mixtral or independent sigmoids as in DeepSeek-V3); the token goes to its top-k experts and
their outputs are summed, weighted by the (renormalised) scores. Parameters grow with the number of
experts while the compute per token grows only with k: a model can know more at the same cost.
DeepSeekMoE (https://arxiv.org/abs/2401.06066) makes the experts fine-grained (many narrow ones; here
by default each is mlp_hidden / (k + shared) wide, so what a token uses costs about one dense MLP)
and adds shared experts that every token uses, which hold what all tokens need so routed experts
can specialise.

Left alone, routing collapses: experts that happen to win early get trained more, win more, and the
rest starve. Three `balancing` modes:
- "none": watch it collapse (notebook 8b).
- "aux_loss": Switch/GShard (https://arxiv.org/abs/2101.03961): add coef · E · Σ_i f_i · P_i to the
  loss, where f_i is the fraction of assignments expert i received and P_i its mean router score.
  It is 1 when both are uniform, and not its minimum: the chosen experts are the top-k of the same scores, so
  f and P rise together, and the loss lies between 1/(kE) and E/k (notebook 8b). What balances is its
  gradient, which lowers the scores of the experts that received the most assignments, and that gradient also
  pulls against the language-modelling loss.
- "loss_free": DeepSeek-V3 (https://arxiv.org/abs/2412.19437, §2.1.2): a per-expert bias is added to
  the scores for choosing the top-k only (the weights still come from the unbiased scores), and after
  every optimizer step each bias moves by `bias_update_rate` against the sign of its expert's load
  error: up for underloaded, down for overloaded experts. The bias changes which experts run, so it
  changes the forward pass; what it avoids is a gradient that competes with the language-modelling loss.
  DeepSeek-V3 pairs it with sigmoid scores, a rate of 1e-3 over trillions of tokens, and a very small
  sequence-wise auxiliary loss. tinylm keeps Switch's and Mixtral's softmax router by default, for all three
  modes alike (router="sigmoid" is there), and a rate of 1e-2, since its runs are hundreds of steps.

Dispatch, two ways to the same result. Eagerly, it sorts the (token, expert) assignments by expert, so each
expert runs once on all its tokens (a Python loop over experts, never over tokens): the compute follows the
routing, but the slices' sizes do too, so the host reads them (a sync with the GPU) and no compiler can know the
shapes ahead. Under torch.compile, every expert runs on every token, weighted by a gate that is 0 for the experts
the token did not choose: fixed shapes, no sync, one graph, at E/k times the routed experts' FLOPs (and an expert
no token chose gets a zero gradient rather than none). Large systems get both at once from grouped matrix
multiplies, one kernel over all experts' slices.

Load statistics: in training mode each layer counts the assignments per expert. `end_of_step(model)`
(the Trainer calls it after every optimizer step) sums the counts over processes, moves the
loss-free biases, and adds the counts to a window that `read_expert_load(model)` returns and clears
(the Trainer logs it into metrics.jsonl). Load is the fraction of assignments per expert; the
max-violation is max load / mean load − 1: 0 when perfectly balanced, and at most E/k − 1, since with
top-k routing an expert receives at most one of each token's k assignments (a load of 1/k).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..config import GPTConfig
from .mlp import feed_forward


class MoE(nn.Module):
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
