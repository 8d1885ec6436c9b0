"""The optimizers (AdamW with GPT-2's weight-decay split, or Muon beside AdamW) and the learning-rate schedules.

Weight decay applies to matrices (Linear weights, embeddings), which hold the capacity, not to biases or norm
gains. With `optimizer="muon"` the blocks' weight matrices train with Muon (`tinylm.train.muon`) and everything else
with AdamW (the embedding and head, whose rows are looked up one token at a time, and the norms and biases), as the
modded-nanogpt speedrun and nanochat split them. Both live in one `MuonWithAdamW`, so the Trainer, the gradient
scaler and checkpoints see one optimizer; each group's `lr_ratio` (its peak over `TrainConfig.learning_rate`) lets
one schedule drive both. The schedule warms up linearly to the peak, then decays by a cosine to `min_lr`, or holds
the peak and cools down linearly over the last `cooldown_fraction` (warmup-stable-decay; Hu et al., 2024).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import InputError
from .muon import Muon, newton_schulz_dtype


def muon_parameters(model: torch.nn.Module) -> list[str]:
    """The names of the parameters Muon trains: the 2-D weights inside the blocks (not the embeddings, the head,
    norms, biases, or a mixture of experts' router, which scores experts rather than mixing features)."""
    return [name for name, p in model.named_parameters()
            if p.requires_grad and p.ndim == 2 and name.startswith("transformer.h.") and ".router." not in name]


class MuonWithAdamW:
    """Muon for some parameters and AdamW for the others, stepped together and saved as one.

    `param_groups` lists both optimizers' groups (the same dicts, so setting a group's "lr" reaches the optimizer
    that owns it); `step`, `zero_grad`, `state_dict` and `load_state_dict` act on both. This is all that
    `torch.amp.GradScaler` and the Trainer ask of an optimizer."""

    def __init__(self, muon: Muon, adamw: torch.optim.AdamW):
        self.muon, self.adamw = muon, adamw

    @property
    def param_groups(self) -> list[dict]:
        return self.muon.param_groups + self.adamw.param_groups  # loading a state replaces the group dicts

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"muon", "adamw"}:
            raise InputError("this checkpoint's optimizer state is AdamW's alone, and the run now asks for Muon: "
                             "resume it with the optimizer it was trained with, or start a new run")
        ratios = [group["lr_ratio"] for group in self.param_groups]  # this run's rates win over the saved run's
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])
        for group, ratio in zip(self.param_groups, ratios):
            group["lr_ratio"] = ratio


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
    """AdamW over every trainable parameter (matrices decayed, the rest not), or with cfg.optimizer == "muon" a
    MuonWithAdamW: Muon over `muon_parameters` at cfg.muon_learning_rate, its Newton–Schulz in bfloat16 where that is
    fast on `device` and float32 elsewhere (`newton_schulz_dtype`), AdamW over the rest."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    for_muon = set(muon_parameters(model)) if cfg.optimizer == "muon" else set()
    rest = [p for name, p in named if name not in for_muon]
    # The fused kernel updates every tensor in one pass instead of a Python loop over them: faster on CUDA, and a few
    # percent faster on a CPU too.
    adamw = torch.optim.AdamW([
        {"params": [p for p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay, "lr_ratio": 1.0},
        {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0, "lr_ratio": 1.0},
    ], lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=device.type in ("cuda", "cpu"))
    if not for_muon:
        return adamw
    muon = Muon([{"params": [p for name, p in named if name in for_muon],
                  "lr_ratio": cfg.muon_learning_rate / cfg.learning_rate}],
                lr=cfg.muon_learning_rate, weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum,
                ns_steps=cfg.muon_ns_steps, ns_dtype=newton_schulz_dtype(device))
    return MuonWithAdamW(muon, adamw)


def set_learning_rate(optimizer, lr: float) -> None:
    """Every group of `optimizer` at `lr` times its own `lr_ratio` (1 where a group has none)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_ratio", 1.0)


def learning_rate(step: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """The rate for optimizer step `step` (0-based).

    After warmup the decay follows whichever budget is further used up: steps
    (step - warmup) / (max_steps - 1 - warmup), so the last step runs at min_lr, or training time
    `time_fraction` = elapsed / max_seconds (the Trainer's elapsed leaves evaluations out).
    """
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    step_fraction = (step - cfg.warmup_steps) / max(1, cfg.max_steps - 1 - cfg.warmup_steps)  # 1.0 on the last step
    progress = min(1.0, max(step_fraction, time_fraction))
    if cfg.schedule == "wsd":  # the peak until the cooldown starts, then a straight line down to min_lr
        cooldown_progress = max(0.0, progress - (1.0 - cfg.cooldown_fraction)) / cfg.cooldown_fraction
        return cfg.learning_rate - cooldown_progress * (cfg.learning_rate - cfg.min_lr)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)
