"""Group-relative policy optimisation (GRPO; Shao et al., 2024, DeepSeekMath, arXiv:2402.03300): the objective.

For each prompt the policy samples a group of G completions and a program rewards each one. A completion's advantage
is its reward against its own group, A_i = (r_i − mean(r)) / (std(r) + eps) (`group_advantages`), so no value
network is needed and a group whose rewards are all equal teaches nothing. The update is PPO's clipped surrogate
(Schulman et al., 2017, arXiv:1707.06347) per completion token, with ratio ρ = π_θ(token) / π_old(token):
min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A), which stops paying for moving a probability further than ±ε, so several updates
can reuse one rollout. An optional penalty β·KL(π_θ || π_ref), added to that loss, keeps the policy near the
starting model, estimated per token with Schulman's k3 = exp(q) − q − 1, q = log π_ref − log π_θ (`kl_estimate`, as
in the GRPO paper; exact in expectation only over tokens sampled from π_θ). The loss is the mean over every completion
token of the batch (DAPO's token-level loss, arXiv:2503.14476), not the paper's mean per completion, which weighs a
token of a short completion more than one of a long completion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import InputError
from ...eval.loss import target_losses


@dataclass(frozen=True)
class PolicyLoss:
    loss: torch.Tensor
    clip_fraction: float  # share of completion tokens whose ratio the clip held back
    kl: float = 0.0  # mean k3 estimate of KL(π_θ || π_ref) per completion token (0 without a penalty)


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6, scale: bool = True) -> torch.Tensor:
    """(prompts, G) rewards -> advantages: minus the group mean, divided by the group's std when `scale`
    (DeepSeekMath; `scale=False` is the variant of Liu et al., 2025, "Dr. GRPO", arXiv:2503.20783)."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise InputError(f"group_advantages needs (prompts, group) rewards with a group of at least 2, "
                         f"got shape {tuple(rewards.shape)}: a group of one has nothing to be compared with")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    return centred / (rewards.std(dim=1, keepdim=True) + eps) if scale else centred


def token_logprobs(model, sequences: torch.Tensor) -> torch.Tensor:
    """log π(sequences[:, t+1] | sequences[:, :t+1]) for every t: (B, T) ids -> (B, T-1) log-probabilities, in fp32
    (minus tinylm.eval.loss.target_losses)."""
    logits, _ = model(sequences[:, :-1])
    return -target_losses(logits, sequences[:, 1:])


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        clip_eps: float = 0.2) -> PolicyLoss:
    """The negated clipped objective, averaged over the tokens where `mask` is true.

    logp, old_logp, mask: (B, T) per completion token; advantages: (B,) one per completion."""
    mask = mask.float()
    tokens = mask.sum().clamp(min=1)
    ratio = torch.exp(logp - old_logp)
    advantage = advantages.unsqueeze(1)  # (B,) -> (B, 1): every token of a completion shares its advantage
    unclipped = ratio * advantage
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantage
    objective = torch.minimum(unclipped, clipped)
    clip_fraction = (((clipped < unclipped).float() * mask).sum() / tokens).item()
    return PolicyLoss(loss=-(objective * mask).sum() / tokens, clip_fraction=clip_fraction)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean k3 estimate of KL(π_θ || π_ref) over the tokens where `mask` is true: (B, T) each -> a scalar."""
    mask = mask.float()
    q = ref_logp - logp
    return ((torch.exp(q) - q - 1) * mask).sum() / mask.sum().clamp(min=1)
