"""Supervised fine-tuning (SFT): batches of conversations with the loss on answers only, mixtures of data
sources, the held-out answer loss, and the Trainer that uses it.

Batches. A conversation's ids become inputs x = ids[:-1] and targets y = ids[1:]; a target that is not answer
text (system prompt, user turns, role headers) is -1, which `tinylm.model.losses.next_token_loss` ignores. Rows are
right-padded with <|pad|> to the longest row of the batch, their targets -1 too. Right padding changes
nothing for the real tokens: attention is causal, so no real position ever sees a padding position after it.
The loss is the mean over every answer token of the batch (a long answer weighs more than a short one, per
token equally, as in pretraining); over the micro-batches of one optimizer step and over DDP ranks the Trainer
keeps it so, weighing each micro-batch by its share of the step's answer tokens (tinylm.train.trainer).

No packing. Packing several conversations into one window without attention crossing between them needs a
block-diagonal attention mask and positions that restart at each conversation, inside the model's forward
pass. Fast kernels exist for it (FlashAttention's variable-length API with cumulative sequence lengths,
PyTorch's FlexAttention with a document mask), but they would be a second attention path in the model, and with
length buckets padding costs about 1% here (a dense boolean mask, the simple way, would leave
`scaled_dot_product_attention`'s fused causal kernel). Instead, `ConversationLoader` sorts
conversations by length within buckets of 50 batches, so a batch holds conversations of similar lengths and
padding stays small (`padding_fraction` measures it: the 991 training conversations of the 1,100-record set,
in batches of 16, are 1.2% padding with buckets and 27% without). Packing without the mask would let answers
attend to unrelated conversations and change the loss, which is not acceptable.

Mixtures. `MixtureLoader` draws each batch from one of several loaders (chat conversations, pretraining
windows, ...) with given probabilities, from a generator of its own, so SFT can keep some pretraining text in
the mix. Every loader here follows the Trainer's protocol: next_batch(device) -> (x, y), state_dict(),
load_state_dict(); a resumed run draws exactly the batches it would have drawn.

Validation. The Trainer scores a token array; SFT needs the loss on the held-out conversations' answer
tokens. `ChatTrainer` is the Trainer with that evaluation (`answer_loss_sum`) and nothing else changed:
same loop, checkpoints, metrics, resume and DDP.

Recipes. `SFT_RECIPES` holds each profile's fine-tuning recipe (default base, Trainer settings, the share of
pretraining text, how many held-out prompts measure the stop rate), which `python -m tinylm.finetune` runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..generate.decode import generate_batch
from ..runtime import autocast
from ..train.distributed import all_reduce_sum
from ..train.trainer import Trainer
from .template import ChatTemplate, RenderedChat

BUCKET_BATCHES = 50  # batches per length-sorted bucket: enough to find similar lengths, few enough to stay random


@dataclass(frozen=True)
class FinetuneRecipe:
    base: str  # the default --base
    train: TrainConfig
    epochs: float | None  # if set, max_steps covers this many passes over the training conversations
    pretraining_share: float  # share of batches drawn from pretraining text
    eval_prompts: int | None  # held-out prompts for the stop rate (None: all of them)
    lora_learning_rate: float  # peak rate when only LoRA adapters train: they start at zero and need larger steps


SFT_RECIPES = {  # the recipe of each profile; the base model's own recipes are tinylm.chat.base's
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


def pad_conversations(conversations: Sequence[RenderedChat], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y), each (B, longest - 1): inputs right-padded with pad_id, targets the next ids where they are answer
    text and -1 everywhere else (prompts, headers, padding)."""
    width = max(len(c) for c in conversations) - 1
    x = torch.full((len(conversations), width), pad_id, dtype=torch.long)
    y = torch.full((len(conversations), width), -1, dtype=torch.long)
    for row, conversation in enumerate(conversations):
        ids = torch.tensor(conversation.ids, dtype=torch.long)
        answer = torch.tensor(conversation.is_answer[1:], dtype=torch.bool)
        x[row, : len(ids) - 1] = ids[:-1]
        y[row, : len(ids) - 1] = ids[1:].masked_fill(~answer, -1)
    return x, y


def _to(device, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if torch.device(device).type == "cuda":
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)
    return tuple(t.to(device) for t in tensors)


class ConversationLoader:
    """Padded batches of conversations, each epoch in a new random order of length-sorted buckets.

    An epoch shuffles the conversations, cuts them into buckets of BUCKET_BATCHES global batches, sorts each
    bucket by length, cuts it into batches and shuffles the batches; the last incomplete batch is left out
    (a different one each epoch). Under DDP each rank takes its slice of every global batch.
    """

    def __init__(self, conversations: Sequence[RenderedChat], batch_size: int, pad_id: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, bucket_batches: int = BUCKET_BATCHES):
        self.conversations = list(conversations)
        self.batch_size, self.pad_id = batch_size, pad_id
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size
        if len(self.conversations) < self.global_batch:
            raise ValueError(f"{len(self.conversations)} conversations cannot fill one batch of {self.global_batch}; "
                             "use a smaller batch size or more data")
        self.bucket = bucket_batches * self.global_batch
        self.lengths = torch.tensor([len(c) for c in self.conversations])
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.cursor = 0, 0
        self.order = self._epoch_order()

    def _epoch_order(self) -> torch.Tensor:
        """(batches, global_batch) conversation indices for one epoch."""
        shuffled = torch.randperm(len(self.conversations), generator=self.generator)
        batches = []
        for start in range(0, len(shuffled), self.bucket):
            bucket = shuffled[start : start + self.bucket]
            bucket = bucket[torch.argsort(self.lengths[bucket], stable=True)]
            usable = len(bucket) // self.global_batch * self.global_batch
            batches += list(bucket[:usable].view(-1, self.global_batch))
        batches = torch.stack(batches)
        return batches[torch.randperm(len(batches), generator=self.generator)]

    def next_batch(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        if self.cursor == len(self.order):
            self.epoch, self.cursor = self.epoch + 1, 0
            self.order = self._epoch_order()
        indices = self.order[self.cursor][self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        self.cursor += 1
        return _to(device, *pad_conversations([self.conversations[i] for i in indices.tolist()], self.pad_id))

    def padding_fraction(self) -> float:
        """The share of input positions of one epoch's batches that are padding."""
        lengths = self.lengths[self.order] - 1  # (batches, global_batch)
        widths = lengths.max(dim=1, keepdim=True).values
        return float(1 - lengths.sum() / (widths * lengths.size(1)).sum())

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "epoch": self.epoch, "cursor": self.cursor,
                "order": self.order.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.epoch, self.cursor, self.order = state["epoch"], state["cursor"], state["order"].clone()


class MixtureLoader:
    """Each batch from one of several loaders, chosen at random with the given weights (normalised to sum to 1).

    Every rank holds the same generator, so under DDP all ranks draw from the same source at each step.
    `counts` says how many batches each source gave.
    """

    def __init__(self, loaders: dict[str, Any], weights: dict[str, float], seed: int = 0):
        if set(loaders) != set(weights):
            raise ValueError(f"mixture weights {sorted(weights)} must name exactly the sources {sorted(loaders)}")
        if any(not w >= 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"mixture weights must be >= 0 and not all 0, got {weights}")
        self.loaders = dict(loaders)
        self.names = list(loaders)
        self.weights = torch.tensor([float(weights[n]) for n in self.names], dtype=torch.float64)
        self.weights /= self.weights.sum()
        self.generator = torch.Generator().manual_seed(seed)
        self.counts = dict.fromkeys(self.names, 0)

    def next_batch(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        name = self.names[int(torch.multinomial(self.weights, 1, generator=self.generator))]
        self.counts[name] += 1
        return self.loaders[name].next_batch(device)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "counts": dict(self.counts),
                "loaders": {name: loader.state_dict() for name, loader in self.loaders.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.counts = dict(state["counts"])
        for name, loader in self.loaders.items():
            loader.load_state_dict(state["loaders"][name])


@torch.no_grad()
def answer_loss_sum(model, conversations: Sequence[RenderedChat], batch_size: int, device, pad_id: int,
                    autocast_ctx=None, tokenizer=None, rank: int = 0, world_size: int = 1) -> tuple[float, int]:
    """(total nats, answer tokens) of next-token cross-entropy over the answer tokens of `conversations`.

    Conversations are scored in length order (little padding); under DDP rank r scores batches r, r + world_size,
    .... As in `tinylm.eval.loss.evaluate_loss_sum`, logits past the tokenizer's vocabulary are excluded and a trimmed
    vocabulary's <unk> targets cost its unk_penalty more.
    """
    vocab_limit = tokenizer.vocab_size if tokenizer is not None else None
    unk_id = getattr(tokenizer, "unk_id", None)
    was_training = model.training
    model.eval()
    order = np.argsort([len(c) for c in conversations], kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)][rank::world_size]
    total, count = 0.0, 0
    for batch in batches:
        x, y = _to(device, *pad_conversations([conversations[i] for i in batch], pad_id))
        with autocast_ctx or contextlib.nullcontext():
            logits, _ = model(x)
        logits = logits[..., :vocab_limit].float()
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1, reduction="none").view_as(y)
        if unk_id is not None:
            losses = losses + tokenizer.unk_penalty * (y == unk_id)
        total += losses[y != -1].sum().item()
        count += int((y != -1).sum())
    model.train(was_training)
    return total, count


def text_vocab_limit(tokenizer) -> int:
    """The ids a reply may use: all but a trimmed vocabulary's <unk>, its last id. <unk> stands for every dropped
    GPT-2 token at once, so a small base gives it a large probability (greedy decoding then writes nothing but
    <unk>), and it cannot become text."""
    unk_id = getattr(tokenizer, "unk_id", None)
    if unk_id is None:
        return tokenizer.vocab_size
    if unk_id != tokenizer.vocab_size - 1:
        raise ValueError(f"<unk> is id {unk_id}, not the last of {tokenizer.vocab_size}: a limit cannot exclude it")
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

    val_conversations: RenderedChat list; everything else is Trainer's (pass val_tokens=None).
    """

    def __init__(self, *args, val_conversations: Sequence[RenderedChat], template: ChatTemplate, **kwargs):
        super().__init__(*args, **kwargs)
        self.val_conversations, self.template = list(val_conversations), template

    def evaluate(self) -> float:
        return self.answer_loss(self.val_conversations)

    def answer_loss(self, conversations: Sequence[RenderedChat]) -> float:
        """The mean loss over the answer tokens of `conversations`; under DDP every rank must call it."""
        total, count = answer_loss_sum(self.model, conversations, self.cfg.eval_batch_size, self.device,
                                       self.template.pad, autocast(self.device, self.dtype), self.tokenizer,
                                       rank=self.world.rank, world_size=self.world.size)
        total, count = all_reduce_sum([total, count], self.device)
        return total / count
