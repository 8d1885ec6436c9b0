"""AdamW with GPT-2's weight-decay split, and the learning-rate schedule.

Weight decay pulls weights toward zero. It is applied to matrices (Linear weights, embeddings),
which hold the model's capacity, and not to biases or LayerNorm gains, which are few and for
which shrinking toward zero only hurts.

The schedule is a linear warmup to the peak rate, then a cosine decay to `min_lr`: large steps
while the loss falls fast, small steps at the end to settle into a minimum.
"""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused kernel updates every tensor in one pass instead of a Python loop over them: faster on
    # CUDA, and a few percent faster on a CPU too.
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=fused)


def learning_rate(step: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """The rate for optimizer step `step` (0-based).

    After warmup the cosine follows whichever budget is further used up: steps
    (step - warmup) / (max_steps - 1 - warmup), so the last step runs at min_lr, or training time
    `time_fraction` = elapsed / max_seconds (the Trainer's elapsed leaves evaluations out).
    """
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    step_fraction = (step - cfg.warmup_steps) / max(1, cfg.max_steps - 1 - cfg.warmup_steps)  # 1.0 on the last step
    progress = min(1.0, max(step_fraction, time_fraction))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)
