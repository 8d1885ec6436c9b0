"""Direct preference optimisation (DPO; Rafailov et al., 2023, arXiv:2305.18290): the loss, its measurements and
the trainer.

A preference record holds a prompt x, a preferred answer y_w and a dispreferred one y_l. RLHF would fit
a reward model r(x, y) with the Bradley–Terry likelihood σ(r(x, y_w) − r(x, y_l)) and then maximise the
reward under a KL penalty β·KL(π || π_ref). The KL-constrained optimum is π*(y|x) ∝ π_ref(y|x)·exp(r(x, y)/β),
so a policy defines its own "implicit reward" r(x, y) = β·log(π(y|x) / π_ref(y|x)) (up to a term of x alone,
which cancels in the difference). Putting it into the Bradley–Terry likelihood gives the loss, with no reward
model and no sampling:

    L = −log σ(β·[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))])

log π(y|x) is the sum of the answer tokens' log-probabilities (the chat template's answer mask: the prompt
and padding are not scored). π_ref is the frozen starting model (the SFT run); its log-probabilities need
no gradient. β sets how far the policy may move from the reference: a small β lets it move far for the same
loss. At the start π = π_ref, every margin is 0 and L = ln 2.

Training (`DPOTrainer`) is tinylm.train.trainer's loop with DPO's loss: a micro-batch is B preference pairs
(tinylm.data.preference.pad_pairs: the B chosen conversations, then the B rejected ones) with the reference's
log-probabilities of both answers, and it weighs in its step by its pairs, so that the step's gradient is that of
the mean over every pair of the step, whatever the micro-batches and ranks. The reference's log-probabilities are
computed once, before training, for every pair (`pair_logprobs`): the reference never changes, so this equals a
frozen copy run beside the policy, costs one forward pass per pair instead of one per step, needs no second model
in memory, and goes into the checkpoint, so a resumed run uses the very same numbers. Dropout is off in DPO (the
policy is built with dropout 0, as TRL does by default): with it, the policy would differ from the reference at
step 0 by noise alone, and the implicit rewards would measure the noise.

Measurements (`preference_summary`): the DPO loss, the preference accuracy (the share of pairs whose chosen
answer has the higher implicit reward; a tie counts half, so the reference itself, where every margin is 0, scores
50%), its 95% Wilson interval, the mean margin and rewards, and the model's own preference: the share of pairs to
which it gives the chosen answer a higher log-probability than the rejected one (the reference scores whatever its
SFT taught it; implicit rewards cannot show that). Validation is the DPO loss on the validation pairs (best.pt is
the lowest); the test pairs, which choose nothing, are scored only before training and on best.pt after it
(tinylm.posttrain.dpo_run).

What the loss does not promise: it depends on the margin alone, so it also falls when both answers' log-probabilities
fall, the rejected one faster (a negative `chosen_reward` shows it). The probability then goes to other text, and
greedy replies can get worse while the preference accuracy rises ("likelihood displacement"; Razin et al., 2024,
arXiv:2410.08847). A larger β reaches the same loss with a smaller move away from the reference.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..data.conversations import ConversationLoader
from ..data.preference import PreferencePair, pad_pairs
from ..distributed import all_reduce_sum
from ..errors import InputError
from ..eval.uncertainty import wilson_interval
from ..runtime import autocast
from ..tokenizers.chat_template import ChatTemplate
from ..train.trainer import Trainer


@dataclass(frozen=True)
class DPORecipe:
    train: TrainConfig
    beta: float  # the default --beta
    eval_prompts: int | None  # held-out prompts answered greedily before and after (None: all of them)
    lora_learning_rate: float  # peak rate when only LoRA adapters train: they start at zero and need larger steps


DPO_RECIPES = {  # the recipe of each profile, run on top of that profile's SFT run (python -m tinylm.finetune)
    "smoke": DPORecipe(TrainConfig(
        batch_size=8, max_steps=10, warmup_steps=2, learning_rate=1e-3, min_lr=1e-4, eval_interval=5, log_interval=5,
        eval_batch_size=32, dtype="float32"), 0.1, 8, 1e-2),
    # about two passes over the cpu SFT run's ~990 training pairs, on top of runs/chat-cpu
    "cpu": DPORecipe(TrainConfig(
        batch_size=16, max_steps=120, warmup_steps=10, learning_rate=3e-4, min_lr=3e-5, beta2=0.99, weight_decay=0.0,
        eval_interval=20, log_interval=10, eval_batch_size=32, dtype="float32"), 0.1, None, 3e-3),
    # GPT-2 124M chat: a small learning rate, as DPO recipes for models of this size use (not measured)
    "gpu": DPORecipe(TrainConfig(
        batch_size=8, grad_accum_steps=4, max_steps=300, warmup_steps=20, learning_rate=5e-6, min_lr=5e-7,
        weight_decay=0.0, eval_interval=50, log_interval=10, eval_batch_size=16), 0.1, None, 5e-5),
}


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
    """Sum over each row of log p(target) for the targets that count (target != -1): (B, T, V), (B, T) -> (B,)."""
    counted = targets != -1
    logp = torch.log_softmax(logits.float(), dim=-1)  # fp32: sums of hundreds of log-probs lose digits in bf16
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T); -1 gathers row 0, masked next
    return (picked * counted).sum(dim=-1)


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
                  autocast_ctx=None, vocab_limit: int | None = None) -> torch.Tensor:
    """(N, 2) float32: each pair's log π(chosen | prompt) and log π(rejected | prompt), summed over answer tokens,
    in eval mode. Pairs are scored in length order (little padding); logits past vocab_limit are left out."""
    was_training = model.training
    model.eval()
    result = torch.zeros(len(pairs), 2)
    order = np.argsort([len(p) for p in pairs], kind="stable")
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        x, y = pad_pairs([pairs[i] for i in batch], pad_id)
        with autocast_ctx or contextlib.nullcontext():
            logits, _ = model(x.to(device))
        logp = answer_logprobs(logits[..., :vocab_limit], y.to(device)).cpu()
        result[torch.as_tensor(batch)] = logp.view(2, -1).T
    model.train(was_training)
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


class PairLoader(ConversationLoader):
    """ConversationLoader's order (length-sorted buckets, by a pair's longer conversation) over preference pairs:
    next_batch(device) -> (x, y, reference), x and y as `pad_pairs` stacks them, reference the (B, 2) reference
    log-probabilities of the batch's pairs. Its state is ConversationLoader's; the reference is the run's."""

    def __init__(self, pairs: Sequence[PreferencePair], reference: torch.Tensor, batch_size: int, pad_id: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        if len(reference) != len(pairs):
            raise InputError(f"{len(reference)} reference log-probabilities for {len(pairs)} pairs")
        super().__init__(pairs, batch_size, pad_id, seed=seed, rank=rank, world_size=world_size)
        self.reference = reference

    def next_batch(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        if self.cursor == len(self.order):
            self.epoch, self.cursor = self.epoch + 1, 0
            self.order = self._epoch_order()
        indices = self.order[self.cursor][self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        self.cursor += 1
        x, y = pad_pairs([self.conversations[i] for i in indices.tolist()], self.pad_id)
        return x.to(device), y.to(device), self.reference[indices].to(device)


class DPOTrainer(Trainer):
    """The Trainer with DPO's loss, weighed by pairs, and validation on the validation pairs (the DPO loss, which
    best.pt follows; each eval record adds the rest of `preference_summary` as preference_<key>).

    train_data: a PairLoader; val_pairs and val_reference: the validation pairs and their reference
    log-probabilities; test_pairs and test_reference (optional): pairs no evaluation scores, for the figures a run
    reports (`preference(trainer.test_pairs, trainer.test_reference)`); everything else is Trainer's (leave
    val_tokens out). The checkpoint keeps beta and the three references (`dpo`), so a resumed run scores against
    the very same numbers."""

    def __init__(self, *args, beta: float, template: ChatTemplate, val_pairs: Sequence[PreferencePair],
                 val_reference: torch.Tensor, test_pairs: Sequence[PreferencePair] = (),
                 test_reference: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if beta <= 0:
            raise InputError(f"DPO's beta must be positive, got {beta}: try 0.1")
        if test_reference is not None and len(test_reference) != len(test_pairs):
            raise InputError(f"{len(test_reference)} reference log-probabilities for {len(test_pairs)} test pairs")
        self.beta, self.template = beta, template
        self.val_pairs, self.val_reference = list(val_pairs), val_reference
        self.test_pairs, self.test_reference = list(test_pairs), test_reference
        self.vocab_limit = self.tokenizer.vocab_size  # the rows past it (padding to a multiple of 64) are no token
        self.held_out: dict[str, float] = {}  # the last evaluation's preference_summary
        self.evaluators["preference"] = lambda _: {k: v for k, v in self.held_out.items() if k != "loss"}

    def batch_weight(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.tensor(len(batch[2]), device=self.device)

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y, reference = batch
        logits, _ = self.train_model(x)
        logp = answer_logprobs(logits[..., : self.vocab_limit], y)
        chosen, rejected = logp.view(2, -1)
        return dpo_loss(chosen, rejected, reference[:, 0], reference[:, 1], self.beta).loss

    def evaluate(self) -> dict[str, float]:
        self.held_out = self.preference(self.val_pairs, self.val_reference)
        return {"val_loss": self.held_out["loss"]}

    def preference(self, pairs: Sequence[PreferencePair], reference: torch.Tensor) -> dict[str, float]:
        """`preference_summary` of the model on these pairs; under DDP each rank scores every world_size-th pair
        and every rank must call it."""
        mine = list(range(self.world.rank, len(pairs), self.world.size))
        policy = pair_logprobs(self.model, [pairs[i] for i in mine], self.template.pad, self.cfg.eval_batch_size,
                               self.device, autocast(self.device, self.dtype), self.vocab_limit)
        sums = preference_sums(policy, reference[mine], self.beta)
        return preference_summary(all_reduce_sum(sums, self.device))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "dpo": {"beta": self.beta, "reference": self.sampler.reference,
                                                "held_out_reference": self.val_reference,  # the validation pairs'
                                                "test_reference": self.test_reference}}
