"""Muon: SGD with momentum whose update for each weight matrix is orthogonalised (Jordan et al., 2024).

For a 2-D weight W (out × in) with gradient G, one step is:

1. momentum: M ← μ·M + (1 − μ)·G, and with Nesterov the update direction is U = (1 − μ)·G + μ·M, else U = M;
2. orthogonalise: replace U = A·S·Bᵀ (its singular value decomposition) by roughly A·Bᵀ, every singular value
   pushed toward 1, with a few Newton–Schulz iterations (`newton_schulz`): matrix products only, no SVD;
3. W ← W·(1 − lr·λ) − lr·√max(1, out/in)·U (decoupled weight decay λ; the scale keeps tall matrices' updates
   as large per entry as wide ones').

Why it helps: a raw gradient of a hidden layer is dominated by a few directions (a few large singular values);
orthogonalising gives the rare directions as large a step as the common ones. The Newton–Schulz polynomial
p(x) = a·x + b·x³ + c·x⁵ applied to the singular values, with the quintic coefficients (3.4445, −4.7750,
2.0315), maximises the slope at 0 (a⁵ ≈ 490 over five iterations), so that five iterations lift every singular
value above ~1/300 of the matrix's norm to between ~0.7 and ~1.2: not exactly 1, which training does not mind.
The iteration only needs the directions, not many digits, so it may run in bfloat16 where that is fast (a GPU
from Ampere on, a CPU with native bf16); a CPU without native bf16 computes bf16 products ~30x slower than
float32 ones, so training runs it in float32 there (`newton_schulz_dtype`, which asks
`tinylm.runtime.bf16_is_fast`). Muon is for 2-D hidden weights; embeddings, the output head, norms and biases stay
with AdamW.

`Muon` follows `torch.optim.Muon`'s arithmetic (same defaults, the same order of operations, bfloat16 by default),
so the two agree step for step; with `ns_dtype=torch.float32` it is the same arithmetic in float32. This module is
the readable version the course teaches.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from ..errors import InputError
from ..runtime import bf16_is_fast

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic: the largest slope at 0 that still converges
NS_STEPS = 5


def newton_schulz(update: torch.Tensor, steps: int = NS_STEPS,
                  coefficients: tuple[float, float, float] = NS_COEFFICIENTS, eps: float = 1e-7,
                  dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """An approximately orthogonal matrix with the singular vectors of `update` (2-D), in `dtype`."""
    if update.ndim != 2:
        raise InputError(f"Newton-Schulz orthogonalises matrices; got a tensor of shape {tuple(update.shape)}")
    a, b, c = coefficients
    x = update.to(dtype)
    tall = update.size(0) > update.size(1)
    if tall:  # iterate on the wide orientation: X·Xᵀ is then the smaller Gram matrix
        x = x.T
    x = x / x.norm().clamp(min=eps)  # Frobenius norm >= spectral norm, so every singular value is now <= 1
    for _ in range(steps):
        gram = x @ x.T  # (r, r) with r = min(out, in)
        # b·gram + c·gram² then a·x + (...)·x: p(x) = a·x + b·x·xᵀ·x + c·(x·xᵀ)²·x, as torch.addmm fuses it
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def newton_schulz_dtype(device: str | torch.device) -> torch.dtype:
    """The dtype training runs Newton–Schulz in on `device`: bfloat16 where it is fast, else float32."""
    return torch.bfloat16 if bf16_is_fast(device) else torch.float32


def muon_scale(shape: torch.Size) -> float:
    """√max(1, out/in): the factor on the learning rate of an (out × in) matrix (Keller Jordan's "original")."""
    rows, cols = shape[:2]
    return math.sqrt(max(1.0, rows / cols))


class Muon(torch.optim.Optimizer):
    """Momentum + Newton–Schulz orthogonalisation for 2-D parameters (see the module docstring).

    `ns_dtype`: what Newton–Schulz computes in; bfloat16 (the default) is torch.optim.Muon's arithmetic, and
    `build_optimizer` passes `newton_schulz_dtype(device)` so that a CPU without native bf16 runs float32. It is the
    machine's choice, not the run's: it stays out of the state dict, so a run resumed elsewhere uses the new
    machine's."""

    def __init__(self, params: Iterable, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = NS_STEPS, ns_dtype: torch.dtype = torch.bfloat16):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise InputError(f"Muon needs lr, momentum and weight_decay >= 0; got {lr}, {momentum}, {weight_decay}")
        if not ns_dtype.is_floating_point:
            raise InputError(f"Muon's ns_dtype must be a floating-point dtype (bfloat16 or float32), got {ns_dtype}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_steps=ns_steps))
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise InputError(f"Muon updates 2-D weight matrices only; a parameter of shape {tuple(p.shape)} "
                                     "belongs with AdamW (embeddings' rows, norms and biases too)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buffer = state["momentum_buffer"]
                buffer.lerp_(p.grad, 1 - mu)  # M = μ·M + (1 − μ)·G
                update = p.grad.lerp(buffer, mu) if group["nesterov"] else buffer  # (1 − μ)·G + μ·M
                update = newton_schulz(update, group["ns_steps"], dtype=self.ns_dtype)
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-lr * muon_scale(p.shape))
        return loss
