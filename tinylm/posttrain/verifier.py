"""The one verifier of the story task: which constraints a reply meets, and whether it passes.

A reply passes when every constraint of its instruction holds (tinylm.data.story_instructions), it has at least
MIN_SENTENCES sentences and ends as a sentence ends, and it is fluent: the base model (the story model SFT starts
from, which never saw an instruction) finds it no less likely per token than `max_loss`, by default the 99th
percentile of its loss on the openings of real held-out stories. The guard is what stops the cheap passes: "Zoe
kite." names the character and the word, and a small model finds such a list far less likely than any story. SFT,
DPO and GRPO are all scored by this one verifier, on the same test instructions, so their pass rates compare.
`Verifier(fluency=False)` checks the constraints alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.story_instructions import MIN_SENTENCES, StoryInstruction, count_sentences, ends_properly
from ..runtime import model_device

FLUENCY_QUANTILE = 0.99  # of the base's per-token loss on held-out story openings: the default max_loss


@dataclass(frozen=True)
class Verdict:
    holds: dict[str, bool]  # constraint kind -> whether it holds
    ends: bool  # the reply has MIN_SENTENCES sentences or more and ends as a sentence does
    loss: float  # the base model's mean loss per token of the reply, in nats (nan when not measured)
    fluent: bool
    passed: bool


@torch.no_grad()
def loss_per_token(model, tokenizer, texts: Sequence[str], batch_size: int = 64) -> list[float]:
    """Each text's mean next-token loss under `model`, in nats: the text's tokens after <|endoftext|> (the token a
    story follows in pretraining). An empty text costs infinity."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    rows = [[tokenizer.eot_token, *tokenizer.encode(text)] for text in texts]
    losses = [float("inf")] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for start in range(0, len(order), batch_size):
        batch = [i for i in order[start : start + batch_size] if len(rows[i]) > 1]
        if not batch:
            continue
        width = min(max(len(rows[i]) for i in batch), model.config.block_size + 1)
        x = torch.zeros(len(batch), width - 1, dtype=torch.long)
        y = torch.full((len(batch), width - 1), -1, dtype=torch.long)
        for row, i in enumerate(batch):
            ids = torch.tensor(rows[i][:width])
            x[row, : len(ids) - 1], y[row, : len(ids) - 1] = ids[:-1], ids[1:]
        logits, _ = model(x.to(device))
        y = y.to(device)
        token_losses = F.cross_entropy(logits[..., : tokenizer.vocab_size].float().flatten(0, 1), y.flatten(),
                                       ignore_index=-1, reduction="none").view_as(y)
        for row, i in enumerate(batch):
            losses[i] = (token_losses[row].sum() / (y[row] != -1).sum()).item()
    model.train(was_training)
    return losses


class Verifier:
    """Checks replies against their instructions; `model` and `tokenizer` are the base's (the fluency guard)."""

    def __init__(self, model, tokenizer, max_loss: float | None = None, fluency: bool = True):
        self.model, self.tokenizer, self.max_loss, self.fluency = model, tokenizer, max_loss, fluency

    def calibrate(self, stories: Sequence[str], quantile: float = FLUENCY_QUANTILE) -> float:
        """Set max_loss to the `quantile` of the base's loss per token on these real stories (held-out openings)."""
        losses = sorted(loss_per_token(self.model, self.tokenizer, stories))
        self.max_loss = losses[min(len(losses) - 1, int(quantile * len(losses)))]
        return self.max_loss

    def check(self, replies: Sequence[str], instructions: Sequence[StoryInstruction]) -> list[Verdict]:
        if self.fluency and self.max_loss is None:
            raise ValueError("the fluency guard needs max_loss: pass it, or calibrate() on held-out stories")
        losses = loss_per_token(self.model, self.tokenizer, replies) if self.fluency else [float("nan")] * len(replies)
        verdicts = []
        for reply, instruction, loss in zip(replies, instructions, losses):
            holds = {c.kind: c.holds(reply) for c in instruction.constraints}
            ends = ends_properly(reply) and count_sentences(reply) >= MIN_SENTENCES
            fluent = not self.fluency or loss <= self.max_loss
            passed = all(holds.values()) and (not self.fluency or (ends and fluent))
            verdicts.append(Verdict(holds, ends, loss, fluent, passed))
        return verdicts
