"""ZeRO stage 1 from scratch (Rajbhandari et al., 2020): AdamW's state sharded over the ranks of a data-parallel run.

Under DDP every rank holds the whole of AdamW's two moments, 8 bytes per parameter, and makes the same update. Here
the parameters are laid end to end in one flat vector cut into one shard per rank. A step reduce-scatters the
gradients (each rank receives the sum over ranks of its own shard only), lets each rank update its shard with the
moments of that shard alone, and all-gathers the updated shards so that every rank has the whole model again. The
communication is that of DDP's all-reduce (which is a reduce-scatter then an all-gather); the moments take 1/N of
the memory. The update is torch.optim.AdamW's, element by element, with the same weight-decay split as
`build_optimizer` (matrices decayed, the rest not), and the gradient norm clipped over the whole model, so a run
gives DDP's losses (a test holds them within 1e-5). Run under torchrun; in a world of one it is plain AdamW.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


class ZeroAdamW:
    """AdamW whose moments each rank keeps for its own shard of the parameters only."""

    def __init__(self, model: torch.nn.Module, lr: float, betas=(0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.1, grad_clip: float | None = 1.0):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.lr, self.betas, self.eps, self.weight_decay, self.grad_clip = lr, betas, eps, weight_decay, grad_clip
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        total = sum(p.numel() for p in self.params)
        self.shard_size = math.ceil(total / self.world)
        self.padded = self.shard_size * self.world  # the flat vector, padded so that it cuts into equal shards
        mine = slice(self.rank * self.shard_size, (self.rank + 1) * self.shard_size)
        device = self.params[0].device
        # True where weight decay applies (matrices), False elsewhere and in the padding: one byte per number of this
        # rank's shard, a copy (a view would keep the whole model's mask alive)
        decay = torch.cat([torch.full((p.numel(),), p.dim() >= 2, device=device) for p in self.params])
        self.decay = torch.nn.functional.pad(decay, (0, self.padded - total))[mine].clone()
        self.exp_avg = torch.zeros(self.shard_size, device=device)  # the moments of this rank's shard alone
        self.exp_avg_sq = torch.zeros(self.shard_size, device=device)
        self.steps = 0

    def _flat(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        flat = torch.cat([t.reshape(-1) for t in tensors])
        return torch.nn.functional.pad(flat, (0, self.padded - flat.numel()))

    @torch.no_grad()
    def step(self) -> torch.Tensor:
        """Average the gradients over the ranks, clip, update this rank's shard, share it; returns the gradient norm
        before clipping."""
        grads = self._flat([p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params])
        grad = torch.empty(self.shard_size, device=grads.device)
        if self.world > 1:
            dist.reduce_scatter_tensor(grad, grads)  # the sum over ranks of this rank's shard
            grad /= self.world
        else:
            grad.copy_(grads)
        squares = (grad * grad).sum()
        if self.world > 1:
            dist.all_reduce(squares)  # the whole model's squared norm, summed from the shards
        norm = squares.sqrt()
        if self.grad_clip is not None:
            grad *= torch.clamp(self.grad_clip / (norm + 1e-6), max=1.0)  # clip_grad_norm_'s rule
        # torch.optim.AdamW's update, on the shard: decoupled weight decay, the moments, bias-corrected step
        self.steps += 1
        beta1, beta2 = self.betas
        start = self.rank * self.shard_size
        weights = self._flat([p.detach() for p in self.params])[start:start + self.shard_size]
        weights.mul_(1 - self.lr * self.weight_decay * self.decay)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** self.steps)).add_(self.eps)
        weights.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - beta1 ** self.steps))
        updated = torch.empty(self.padded, device=weights.device)
        if self.world > 1:
            dist.all_gather_into_tensor(updated, weights)  # every rank's shard, end to end
        else:
            updated.copy_(weights)
        offset = 0
        for p in self.params:
            p.copy_(updated[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return norm

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_bytes(self) -> int:
        """The bytes of optimizer state this rank holds: its shard's two moments and weight-decay mask."""
        return self.exp_avg.nbytes + self.exp_avg_sq.nbytes + self.decay.nbytes
