"""Direct preference optimisation (DPO; Rafailov et al., 2023, arXiv:2305.18290): the loss and its measurements.

A preference record holds a prompt x, a preferred answer y_w and a dispreferred one y_l. The KL-constrained optimum
of RLHF, π*(y|x) ∝ π_ref(y|x)·exp(r(x, y)/β), makes β·log(π(y|x)/π_ref(y|x)) a policy's implicit reward; put into the
Bradley–Terry likelihood it gives the loss, with no reward model and no sampling:

    L = −log σ(β·[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))])

log π(y|x) sums the answer tokens' log-probabilities (the chat template's answer mask); π_ref is the frozen starting
model, so at the start every margin is 0 and L = ln 2. A small β lets the policy move far for the same loss.
`preference_summary` measures a model on pairs: the loss, the preference accuracy (chosen reward higher; a tie counts
half, so the reference scores 50%) with its Wilson interval, the mean margin and rewards, and the model's own
preference (chosen more likely). The loss depends on the margin alone, so it also falls when both answers become less
likely ("likelihood displacement", Razin et al., 2024, arXiv:2410.08847): a negative chosen reward on the pairs it
trained on shows it. On held-out answers sampled from π_ref the rewards fall under any update, E = −β·KL(π_ref‖π).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...data.preference import PreferencePair, pad_pairs
from ...errors import InputError
from ...eval.loss import target_losses
from ...eval.uncertainty import wilson_interval
from ...runtime import evaluating


@dataclass(frozen=True)
class DPOStats:
    """One batch's loss and what it measures: implicit rewards β·log(π/π_ref) of the chosen and rejected
    answers, their margin, and the share of pairs whose chosen answer has the higher reward."""

    loss: torch.Tensor
    chosen_reward: torch.Tensor  # (batch,)
    rejected_reward: torch.Tensor  # (batch,)

    @property
    def margin(self) -> torch.Tensor:
        return self.chosen_reward - self.rejected_reward

    @property
    def accuracy(self) -> float:
        return (self.margin > 0).float().mean().item()


def answer_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over each row of log p(target) for the targets that count (target != -1): (B, T, V), (B, T) -> (B,), in
    fp32 (sums of hundreds of log-probs lose digits in bf16): minus tinylm.eval.loss.target_losses."""
    return -target_losses(logits, targets).sum(dim=-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> DPOStats:
    """The DPO loss (mean over the batch) from the four (batch,) sums of answer log-probabilities."""
    if beta <= 0:
        raise InputError(f"DPO's beta must be positive, got {beta}: try 0.1")
    chosen_reward = beta * (policy_chosen - reference_chosen)
    rejected_reward = beta * (policy_rejected - reference_rejected)
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    return DPOStats(loss=loss, chosen_reward=chosen_reward.detach(), rejected_reward=rejected_reward.detach())


@torch.no_grad()
def pair_logprobs(model, pairs: Sequence[PreferencePair], pad_id: int, batch_size: int, device,
                  vocab_limit: int | None = None) -> torch.Tensor:
    """(N, 2) float32: each pair's log π(chosen | prompt) and log π(rejected | prompt), summed over answer tokens,
    in eval mode (and in the caller's autocast, where it has one). Pairs are scored in length order (little
    padding); logits past vocab_limit are left out."""
    result = torch.zeros(len(pairs), 2)
    order = np.argsort([len(p) for p in pairs], kind="stable")
    with evaluating(model):
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            x, y = pad_pairs([pairs[i] for i in batch], pad_id)
            logits, _ = model(x.to(device))
            logp = answer_logprobs(logits[..., :vocab_limit], y.to(device)).cpu()
            result[torch.as_tensor(batch)] = logp.view(2, -1).T
    return result


SUMS = ("loss", "wins", "ties", "margin", "chosen_reward", "rejected_reward", "likelihood_wins", "pairs")


def preference_sums(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> list[float]:
    """SUMS over these pairs ((N, 2) log-probabilities, chosen first): sums, so that ranks and batches add up."""
    if not len(policy):
        return [0.0] * len(SUMS)
    stats = dpo_loss(policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1], beta)
    margin = stats.margin
    return [stats.loss.item() * len(policy), (margin > 0).sum().item(), (margin == 0).sum().item(),
            margin.sum().item(), stats.chosen_reward.sum().item(), stats.rejected_reward.sum().item(),
            (policy[:, 0] > policy[:, 1]).sum().item(), len(policy)]


def preference_summary(sums: Sequence[float]) -> dict[str, float]:
    """Means of `preference_sums` (added over ranks): DPO loss, preference accuracy (ties count half) with its
    95% Wilson interval, ties, mean margin and rewards, the model's own preference (likelihood_accuracy), pairs."""
    totals = dict(zip(SUMS, sums))
    n = totals["pairs"]
    successes = totals["wins"] + totals["ties"] / 2
    low, high = wilson_interval(successes, n)
    return {"loss": totals["loss"] / n, "accuracy": successes / n, "accuracy_low": low, "accuracy_high": high,
            "ties": int(totals["ties"]), "margin": totals["margin"] / n, "chosen_reward": totals["chosen_reward"] / n,
            "rejected_reward": totals["rejected_reward"] / n, "likelihood_accuracy": totals["likelihood_wins"] / n,
            "pairs": int(n)}
