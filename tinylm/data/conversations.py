"""Batches of conversations: the loss on answers only, little padding, and mixtures of data sources.

Conversations are not packed: keeping packed conversations from attending to each other needs a block-diagonal mask
and restarted positions inside the model, a second attention path. Instead `ConversationLoader` sorts them by length
within buckets, which keeps padding small. `MixtureLoader` draws each batch from one of several loaders, so that SFT
can keep some pretraining text in the mix. Each loader saves its state, so a resumed run draws exactly the batches it
would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..distributed import World
from ..errors import InputError
from ..tokenizers.chat_template import RenderedChat
from .tokens import to_device

BUCKET_BATCHES = 50  # batches per length-sorted bucket: enough to find similar lengths, few enough to stay random


def pad_conversations(conversations: Sequence[RenderedChat], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y), each (B, longest - 1): inputs right-padded with pad_id, targets the next ids where they are answer
    text and -1 everywhere else (prompts, headers, padding), which the loss ignores. Padding goes on the right:
    attention is causal, so no real position sees it."""
    width = max(len(c) for c in conversations) - 1
    x = torch.full((len(conversations), width), pad_id, dtype=torch.long)
    y = torch.full((len(conversations), width), -1, dtype=torch.long)
    for row, conversation in enumerate(conversations):
        ids = torch.tensor(conversation.ids, dtype=torch.long)
        answer = torch.tensor(conversation.is_answer[1:], dtype=torch.bool)
        x[row, : len(ids) - 1] = ids[:-1]
        y[row, : len(ids) - 1] = ids[1:].masked_fill(~answer, -1)
    return x, y


class ConversationLoader:
    """Padded batches of conversations, each epoch in a new random order of length-sorted buckets.

    An epoch shuffles the conversations, cuts them into buckets of BUCKET_BATCHES global batches, sorts each
    bucket by length, cuts it into batches and shuffles the batches; the last incomplete batch is left out
    (a different one each epoch). Under DDP each rank takes its slice of every global batch.
    """

    def __init__(self, conversations: Sequence[RenderedChat], batch_size: int, pad_id: int, seed: int = 0,
                 world: World = World(), bucket_batches: int = BUCKET_BATCHES):
        self.conversations = list(conversations)
        self.batch_size, self.pad_id = batch_size, pad_id
        self.rank, self.world_size = world.rank, world.size
        self.global_batch = batch_size * world.size
        if len(self.conversations) < self.global_batch:
            raise InputError(f"{len(self.conversations)} conversations cannot fill one batch of {self.global_batch}; "
                             "use a smaller batch size or more data")
        self.bucket = bucket_batches * self.global_batch
        self.lengths = torch.tensor([len(c) for c in self.conversations])
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.cursor = 0, 0
        self.order = self._epoch_order()

    @property
    def longest(self) -> int:
        """The most tokens one of its rows holds: what a training step's memory is sized by."""
        return int(self.lengths.max())

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

    def next_indices(self) -> list[int]:
        """This rank's slice of the next global batch: indices into the conversations (a new epoch after the last)."""
        if self.cursor == len(self.order):
            self.epoch, self.cursor = self.epoch + 1, 0
            self.order = self._epoch_order()
        indices = self.order[self.cursor][self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        self.cursor += 1
        return indices.tolist()

    def next_batch(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        batch = [self.conversations[i] for i in self.next_indices()]
        return to_device(device, *pad_conversations(batch, self.pad_id))

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
            raise InputError(f"mixture weights {sorted(weights)} must name exactly the sources {sorted(loaders)}")
        if any(not w >= 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise InputError(f"mixture weights must be >= 0 and not all 0, got {weights}")
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
