"""The one verifier of the story task: which constraints a reply meets, and whether it passes.

A reply passes when every constraint of its instruction holds (tinylm.data.story_instructions), it has at least
MIN_SENTENCES sentences and ends as a sentence ends, and it reads as a story in two ways. It is fluent: the base
model (the story model SFT starts from, which never saw an instruction) finds it no less likely per token than
`max_loss`, the 95th percentile of its loss on real held-out story openings; that stops word lists.
And it is varied: its share of word 3-grams that repeat an earlier one is at most `max_repeats`, the 99th
percentile over real training openings; that stops loops, which a model finds likely. SFT, DPO and GRPO are all
scored by this one verifier, on the same test instructions, so their pass rates compare. `Verifier(guards=False)`
checks the constraints alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.conversations import pad_conversations
from ..data.story_instructions import MIN_SENTENCES, StoryInstruction, count_sentences, ends_properly
from ..eval.loss import target_losses
from ..runtime import evaluating, model_device
from ..tokenizers.chat_template import RenderedChat

FLUENCY_QUANTILE = 0.95  # of the base's per-token loss on held-out story openings: max_loss
REPEATS_QUANTILE = 0.99  # of the repeated 3-gram share of real openings: max_repeats
WORD = re.compile(r"[a-z0-9']+")


def repeated_share(text: str, n: int = 3) -> float:
    """The share of the text's word n-grams (lower-cased) that repeat an earlier one of the same text: 0 for a text
    that never repeats itself, near 1 for a loop."""
    words = WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


@dataclass(frozen=True)
class Verdict:
    holds: dict[str, bool]  # constraint kind -> whether it holds
    ends: bool  # the reply has MIN_SENTENCES sentences or more and ends as a sentence does
    loss: float  # the base model's mean loss per token of the reply, in nats (nan when not measured)
    fluent: bool
    repeats: float  # repeated_share of the reply
    varied: bool
    passed: bool


@torch.no_grad()
def loss_per_token(model, tokenizer, texts: Sequence[str], batch_size: int = 64) -> list[float]:
    """Each text's mean next-token loss under `model`, in nats: the text's tokens after <|endoftext|> (the token a
    story follows in pretraining). An empty text costs infinity."""
    device = model_device(model)
    rows = [[tokenizer.eot_token, *tokenizer.encode(text)] for text in texts]
    losses = [float("inf")] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    with evaluating(model):
        for start in range(0, len(order), batch_size):
            batch = [i for i in order[start : start + batch_size] if len(rows[i]) > 1]
            if not batch:
                continue
            cut = [rows[i][: model.config.block_size + 1] for i in batch]  # every token a target: all "answer"
            x, y = pad_conversations([RenderedChat(ids, [True] * len(ids)) for ids in cut], pad_id=0)
            logits, _ = model(x.to(device))
            y = y.to(device)
            token_losses = target_losses(logits[..., : tokenizer.vocab_size], y)  # no <unk> penalty, as calibrated
            for row, i in enumerate(batch):
                losses[i] = (token_losses[row].sum() / (y[row] != -1).sum()).item()
    return losses


class Verifier:
    """Checks replies against their instructions; `model` and `tokenizer` are the base's (the fluency guard)."""

    def __init__(self, model, tokenizer, max_loss: float | None = None, max_repeats: float | None = None,
                 guards: bool = True):
        self.model, self.tokenizer, self.guards = model, tokenizer, guards
        self.max_loss, self.max_repeats = max_loss, max_repeats

    def calibrate(self, held_out: Sequence[str], train: Sequence[str]) -> None:
        """Set max_loss to the FLUENCY_QUANTILE of the base's loss per token on real held-out story openings (the
        base trained on the others), and max_repeats to the REPEATS_QUANTILE of the repeated share of `train`'s."""
        self.max_loss = _quantile(loss_per_token(self.model, self.tokenizer, held_out), FLUENCY_QUANTILE)
        self.max_repeats = _quantile([repeated_share(story) for story in train], REPEATS_QUANTILE)

    def check(self, replies: Sequence[str], instructions: Sequence[StoryInstruction]) -> list[Verdict]:
        if self.guards and (self.max_loss is None or self.max_repeats is None):
            raise ValueError("the guards need max_loss and max_repeats: pass them, or calibrate() on real stories")
        losses = loss_per_token(self.model, self.tokenizer, replies) if self.guards else [float("nan")] * len(replies)
        verdicts = []
        for reply, instruction, loss in zip(replies, instructions, losses):
            holds = {c.kind: c.holds(reply) for c in instruction.constraints}
            ends = ends_properly(reply) and count_sentences(reply) >= MIN_SENTENCES
            repeats = repeated_share(reply)
            fluent = not self.guards or loss <= self.max_loss
            varied = not self.guards or repeats <= self.max_repeats
            passed = all(holds.values()) and (not self.guards or (ends and fluent and varied))
            verdicts.append(Verdict(holds, ends, loss, fluent, repeats, varied, passed))
        return verdicts


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
