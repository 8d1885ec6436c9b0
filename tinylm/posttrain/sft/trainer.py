"""`SFTTrainer`: the one Trainer, validating on the answer tokens of held-out conversations.

The Trainer scores a token array; SFT needs the loss on the validation conversations' answer tokens
(`tinylm.eval.loss.answer_loss_sum`), and that is the only change: same loop, checkpoints, metrics, resume and DDP.
A task whose replies a program checks chooses best.pt by their pass rate instead (the Trainer's `chooser`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...distributed import all_reduce_sum
from ...eval.loss import answer_loss_sum
from ...runtime import autocast
from ...tokenizers.chat_template import ChatTemplate, RenderedChat
from ...train.trainer import Trainer


class SFTTrainer(Trainer):
    """The Trainer, validating on the answer tokens of held-out conversations instead of a token array.

    val_conversations: RenderedChat list; everything else is Trainer's (leave val_tokens out).
    """

    def __init__(self, *args, val_conversations: Sequence[RenderedChat], template: ChatTemplate, **kwargs):
        super().__init__(*args, **kwargs)
        self.val_conversations, self.template = list(val_conversations), template

    def evaluate(self) -> dict[str, float]:
        return {"val_loss": self.answer_loss(self.val_conversations)}

    def answer_loss(self, conversations: Sequence[RenderedChat]) -> float:
        """The mean loss over the answer tokens of `conversations`; under DDP every rank must call it."""
        total, count = answer_loss_sum(self.model, conversations, self.cfg.eval_batch_size, self.device,
                                       self.template.pad, autocast(self.device, self.dtype), self.tokenizer,
                                       rank=self.world.rank, world_size=self.world.size)
        total, count = all_reduce_sum([total, count], self.device)
        return total / count
