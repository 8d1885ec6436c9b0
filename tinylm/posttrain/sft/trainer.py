"""`SFTTrainer`: the one Trainer, validating on the answer tokens of held-out conversations.

The Trainer scores a token array; SFT needs the loss on the validation conversations' answer tokens
(`tinylm.eval.loss.answer_loss_sum`), and that is the only change: same loop, checkpoints, metrics, resume and
DDP. Batches of conversations with the loss on answers only, and mixtures of data sources, are
tinylm.data.conversations'. On a task a verifier scores, `VerifiedSFTTrainer` chooses best.pt by the pass rate of
greedy replies to the validation instructions instead (`story_replies`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...data.story_instructions import StoryInstruction
from ...distributed import all_reduce_sum
from ...eval.loss import answer_loss_sum
from ...runtime import autocast
from ...tokenizers.chat_template import ChatTemplate, RenderedChat
from ...train.trainer import Trainer
from ..replies import chat_replies
from ..stories import STORY_REPLY_TOKENS, story_prompts
from ..verifier import Verifier, pass_rate


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


def story_replies(model, template: ChatTemplate, instructions: Sequence[StoryInstruction],
                  system_prompt: str) -> list[str]:
    """Greedy replies to `instructions`, each the user's turn after `system_prompt` as SFT trained on it, up to
    <|im_end|> or STORY_REPLY_TOKENS."""
    return chat_replies(model, template, story_prompts(instructions, system_prompt),
                        max_new_tokens=STORY_REPLY_TOKENS)[0]


class VerifiedSFTTrainer(SFTTrainer):
    """SFTTrainer on a task a verifier scores: best.pt is the evaluation with the highest pass rate of greedy replies
    to the validation instructions (`pass_rate`); the validation answer loss (val_loss) is kept beside it. The loss
    can turn up while the pass rate still climbs: it grades every token of one reference story, the verifier
    whether the reply meets the instruction. Under DDP every rank writes the same replies (the same weights)."""

    score = "pass_rate"
    higher_is_better = True

    def __init__(self, *args, verifier: Verifier, val_instructions: Sequence[StoryInstruction], system_prompt: str,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.verifier, self.val_instructions, self.system_prompt = verifier, list(val_instructions), system_prompt

    def evaluate(self) -> dict[str, float]:
        replies = story_replies(self.model, self.template, self.val_instructions, self.system_prompt)
        measured = pass_rate(self.verifier.check(replies, self.val_instructions))
        return {**super().evaluate(), "pass_rate": measured["pass_rate"]}
