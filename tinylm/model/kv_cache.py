"""A key/value cache, so that generating a token costs one position's work instead of the whole context's.

The prompt runs once (the *prefill*) and every layer keeps its keys and values; each later step feeds one token whose
query attends to them. Storage for the full context is allocated once, so appending never copies the past, and
prompts of different lengths are left-padded, so that every row writes its next token into the same column and one
`length` describes the batch.
"""

from __future__ import annotations

import torch

from ..config import GPTConfig
from ..errors import InputError


class LayerCache:
    """One layer's keys and values, (B, n_kv_head, block_size, head_size) each, filled up to the parent's length."""

    def __init__(self, parent: KVCache):
        self.parent = parent
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' k, v (B, n_kv, T, hs); return every cached k, v so far (B, n_kv, length + T, hs)."""
        if self.keys is None:
            B, nh, _, hs = k.shape
            shape = (B, nh, self.parent.capacity, hs)
            self.keys = torch.empty(shape, dtype=k.dtype, device=k.device)
            self.values = torch.empty(shape, dtype=v.dtype, device=v.device)
        start = self.parent.length
        end = start + k.size(2)
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]

    @property
    def mask(self) -> torch.Tensor | None:
        return self.parent.mask


class KVCache:
    """Keys and values of every layer for a batch of B rows, plus what the padding implies.

    Use: `cache = KVCache(config, batch_size)`, then `model.decode_step(idx, cache)` with the prompt, then
    with one new token at a time. `reset(pad_lengths)` empties it for a new (cropped) context. Left padding is
    masked as keys and positions count from each row's first real token, so a padded row computes what it would
    alone.
    """

    def __init__(self, config: GPTConfig, batch_size: int, pad_lengths: torch.Tensor | None = None, *,
                 capacity: int | None = None):
        # positions it holds: the context, or fewer where a generation needs fewer (a long-context model's memory)
        self.capacity = config.block_size if capacity is None else min(capacity, config.block_size)
        self.batch_size = batch_size
        self.layers = [LayerCache(self) for _ in range(config.n_layer)]
        self.reset(pad_lengths)  # empty: no position cached yet

    def reset(self, pad_lengths: torch.Tensor | None = None) -> None:
        """Forget every cached position (the storage is kept). pad_lengths (B,): left padding of each row."""
        if pad_lengths is not None and pad_lengths.shape != (self.batch_size,):
            raise InputError(f"pad_lengths must have shape ({self.batch_size},), got {tuple(pad_lengths.shape)}")
        if pad_lengths is not None and int(pad_lengths.max()) == 0:
            pad_lengths = None  # no padding: the plain causal mask suffices, which the fast kernels prefer
        self.pad_lengths = pad_lengths
        self.length = 0
        self.mask: torch.Tensor | None = None

    def begin(self, num_new: int, device: torch.device) -> torch.Tensor:
        """Prepare a forward pass over `num_new` new positions; return their position ids, (T,) or (B, T)."""
        end = self.length + num_new
        if end > self.capacity:
            raise InputError(
                f"the cache holds {self.length} of {self.capacity} positions and cannot take {num_new} more; "
                "crop the context and reset the cache (tinylm.generate does this for you)"
            )
        positions = torch.arange(self.length, end, device=device)  # (T,)
        if self.pad_lengths is None:
            self.mask = None
            return positions
        pad = self.pad_lengths.to(device)
        keys = torch.arange(end, device=device)  # every cached position, after this pass
        key_is_real = keys[None, :] >= pad[:, None]  # (B, end)
        causal = keys[None, :] <= positions[:, None]  # (T, end): a query sees itself and the past
        # A padding query sees no real key; letting it see itself keeps its softmax finite. Nothing reads it.
        itself = keys[None, :] == positions[:, None]  # (T, end)
        self.mask = ((causal & key_is_real[:, None, :]) | itself)[:, None]  # (B, 1, T, end): broadcast over heads
        return (positions[None, :] - pad[:, None]).clamp(min=0)  # (B, T): each row counts from its first real token

    def advance(self, num_new: int) -> None:
        self.length += num_new

    def nbytes(self) -> int:
        """Bytes of key/value storage allocated so far (none before the first forward pass)."""
        return sum(t.numel() * t.element_size() for layer in self.layers for t in (layer.keys, layer.values)
                   if t is not None)


def bytes_per_token(config: GPTConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """Cache bytes one position of one sequence needs: keys and values, n_kv_head heads, every layer."""
    return 2 * config.n_layer * config.kv_heads * config.head_size * torch.tensor([], dtype=dtype).element_size()
