"""Muon: SGD with momentum whose update for each weight matrix is orthogonalised (Jordan et al., 2024).

For a 2-D weight W (out × in) with gradient G: momentum M ← μ·M + (1 − μ)·G (Nesterov: U = (1 − μ)·G + μ·M, else
U = M); U's singular values pushed toward 1 by a few Newton–Schulz iterations (`newton_schulz`: matrix products
only, no SVD); then W ← W·(1 − lr·λ) − lr·√max(1, out/in)·U. A hidden layer's raw gradient is dominated by a few
directions; orthogonalising gives the rare ones as large a step as the common ones. The quintic coefficients
(3.4445, −4.7750, 2.0315) maximise the slope at 0, so five iterations lift every singular value above a small
fraction of the norm to between about 0.7 and 1.2, which training does not mind. The iteration needs directions,
not digits, so it runs in bfloat16 where bf16 is fast and in float32 elsewhere (`newton_schulz_dtype`, by
`tinylm.runtime.bf16_is_fast`). Muon is for 2-D hidden weights; embeddings, the head, norms and biases stay with
AdamW (`tinylm.train.optim`).

`Muon` follows `torch.optim.Muon`'s arithmetic (same defaults and order of operations, bfloat16 by default), so the
two agree step for step; this module is the readable version the course teaches.
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
