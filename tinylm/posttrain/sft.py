"""Supervised fine-tuning (SFT): the Trainer that validates on held-out answers, the stop rate of greedy replies, and
each profile's SFT recipe.

Batches of conversations with the loss on answers only, and mixtures of data sources, are tinylm.data.conversations'.

Validation. The Trainer scores a token array; SFT needs the loss on the held-out conversations' answer
tokens. `ChatTrainer` is the Trainer with that evaluation (`tinylm.eval.loss.answer_loss_sum`) and nothing else changed:
same loop, checkpoints, metrics, resume and DDP.

Recipes. `SFT_RECIPES` holds each profile's fine-tuning recipe (default base, Trainer settings, the share of
pretraining text, how many held-out prompts measure the stop rate), which `python -m tinylm.finetune` runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config import TrainConfig
from ..distributed import all_reduce_sum
from ..errors import InputError
from ..eval.loss import answer_loss_sum
from ..generate.decode import generate_batch
from ..runtime import autocast
from ..tokenizers.chat_template import ChatTemplate, RenderedChat
from ..train.trainer import Trainer


@dataclass(frozen=True)
class FinetuneRecipe:
    base: str  # the default --base
    train: TrainConfig
    epochs: float | None  # if set, max_steps covers this many passes over the training conversations
    pretraining_share: float  # share of batches drawn from pretraining text
    eval_prompts: int | None  # held-out prompts for the stop rate (None: all of them)
    lora_learning_rate: float  # peak rate when only LoRA adapters train: they start at zero and need larger steps


SFT_RECIPES = {  # the recipe of each profile; the base model's own recipes are tinylm.posttrain.chat_base's
    "smoke": FinetuneRecipe("pretrain", TrainConfig(
        batch_size=8, max_steps=20, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4, eval_interval=10, log_interval=5,
        eval_batch_size=64, dtype="float32"), None, 0.2, 8, 1e-2),
    # ~10 epochs over the 991 training conversations (80% of 800 steps of 16), best.pt chosen on held-out answers
    "cpu": FinetuneRecipe("pretrain", TrainConfig(
        batch_size=16, max_steps=800, warmup_steps=20, learning_rate=1e-3, min_lr=1e-4, beta2=0.99,
        eval_interval=50, log_interval=25, eval_batch_size=64, dtype="float32"), None, 0.2, None, 1e-2),
    # GPT-2 124M: two epochs at a small learning rate, as in most SFT recipes for models of this size
    "gpu": FinetuneRecipe("gpt2", TrainConfig(
        batch_size=16, max_steps=1000, warmup_steps=20, learning_rate=5e-5, min_lr=5e-6, weight_decay=0.1,
        eval_interval=50, log_interval=10, eval_batch_size=32), 2.0, 0.1, None, 5e-4),
}


def text_vocab_limit(tokenizer) -> int:
    """The ids a reply may use: all but a trimmed vocabulary's <unk>, its last id. <unk> stands for every dropped
    GPT-2 token at once, so a small base gives it a large probability (greedy decoding then writes nothing but
    <unk>), and it cannot become text."""
    unk_id = getattr(tokenizer, "unk_id", None)
    if unk_id is None:
        return tokenizer.vocab_size
    if unk_id != tokenizer.vocab_size - 1:
        raise InputError(f"<unk> is id {unk_id}, not the last of {tokenizer.vocab_size}: a limit cannot exclude it")
    return unk_id


def stop_rate(model, template: ChatTemplate, prompts: Sequence[list[dict]], max_new_tokens: int = 200,
              batch_size: int = 32, **sampling) -> tuple[float, list[list[int]]]:
    """(share of prompts whose reply ends with <|im_end|> within max_new_tokens, the replies' ids).

    Greedy unless sampler options are given; never <unk> (`text_vocab_limit`). A reply that stopped is shorter
    than max_new_tokens (the stop token itself is not returned).
    """
    sampling = {"temperature": 0.0, **sampling}
    replies = []
    for start in range(0, len(prompts), batch_size):
        ids = [template.render_prompt(p) for p in prompts[start : start + batch_size]]
        replies += generate_batch(model, ids, max_new_tokens, stop_tokens=(template.im_end,),
                                  vocab_limit=text_vocab_limit(template.tokenizer), **sampling)
    return sum(len(r) < max_new_tokens for r in replies) / max(1, len(replies)), replies


class ChatTrainer(Trainer):
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
