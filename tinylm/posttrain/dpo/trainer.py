"""`DPOTrainer`: the one Trainer (tinylm.train.trainer) with DPO's loss, and `PairLoader`, its batches.

A micro-batch is B preference pairs (the B chosen conversations, then the B rejected ones) with the reference's
log-probabilities of both answers, weighed by its pairs. Those are computed once, before training: the reference
never changes, so this equals a frozen copy run beside the policy, without a second model in memory, and the
checkpoint keeps them for a resumed run. Dropout is off (as TRL's default): with it, the policy would differ from
the reference at step 0 by noise alone. best.pt is chosen by the task's pass rate where a program checks its
replies, else by the validation pairs' DPO loss.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...data.conversations import ConversationLoader
from ...data.preference import PreferencePair, pad_pairs
from ...distributed import World, all_reduce_sum
from ...errors import InputError
from ...runtime import autocast
from ...tokenizers.chat_template import ChatTemplate
from ...train.trainer import Trainer
from .objective import answer_logprobs, dpo_loss, pair_logprobs, preference_summary, preference_sums


class PairLoader(ConversationLoader):
    """ConversationLoader's order (length-sorted buckets, by a pair's longer conversation) over preference pairs:
    next_batch(device) -> (x, y, reference), x and y as `pad_pairs` stacks them, reference the (B, 2) reference
    log-probabilities of the batch's pairs. Its state is ConversationLoader's; the reference is the run's."""

    def __init__(self, pairs: Sequence[PreferencePair], reference: torch.Tensor, batch_size: int, pad_id: int,
                 seed: int = 0, world: World = World()):
        if len(reference) != len(pairs):
            raise InputError(f"{len(reference)} reference log-probabilities for {len(pairs)} pairs")
        super().__init__(pairs, batch_size, pad_id, seed=seed, world=world)
        self.reference = reference

    @property
    def longest(self) -> int:
        """A pair trains as two rows: for the memory a step needs, one row twice as long as its longer one."""
        return 2 * super().longest

    def next_batch(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        indices = self.next_indices()
        x, y = pad_pairs([self.conversations[i] for i in indices], self.pad_id)
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
        self.val_preference: dict[str, float] = {}  # the last evaluation's preference_summary
        self.evaluators["preference"] = lambda _: {k: v for k, v in self.val_preference.items() if k != "loss"}

    def batch_weight(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.tensor(len(batch[2]), device=self.device)

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y, reference = batch
        logits, _ = self.train_model(x)
        logp = answer_logprobs(logits[..., : self.vocab_limit], y)
        chosen, rejected = logp.view(2, -1)
        return dpo_loss(chosen, rejected, reference[:, 0], reference[:, 1], self.beta).loss

    def evaluate(self) -> dict[str, float]:
        self.val_preference = self.preference(self.val_pairs, self.val_reference)
        return {"val_loss": self.val_preference["loss"]}

    def preference(self, pairs: Sequence[PreferencePair], reference: torch.Tensor) -> dict[str, float]:
        """`preference_summary` of the model on these pairs; under DDP each rank scores every world_size-th pair
        and every rank must call it."""
        mine = list(range(self.world.rank, len(pairs), self.world.size))
        with autocast(self.device, self.dtype):
            policy = pair_logprobs(self.model, [pairs[i] for i in mine], self.template.pad, self.cfg.eval_batch_size,
                                   self.device, self.vocab_limit)
        sums = preference_sums(policy, reference[mine], self.beta)
        return preference_summary(all_reduce_sum(sums, self.device))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "dpo": {"beta": self.beta, "reference": self.sampler.reference,
                                                "val_reference": self.val_reference,
                                                "test_reference": self.test_reference}}
