"""ZeRO stage 1 from scratch (Rajbhandari et al., 2020): AdamW's state sharded over the ranks of a data-parallel run.

Under DDP every rank holds the whole of AdamW's two moments, 8 bytes per parameter, and makes the same update. Here the
parameters become views of one flat buffer, cut into one shard per rank. A step lays the gradients end to end (freeing
each one as it goes), reduce-scatters them (each rank receives the sum over ranks of its own shard only), updates its
shard of the buffer in place with the moments of that shard alone, and all-gathers the shards back into the buffer, so
that every rank has the whole model again without a copy of the weights. The communication is that of DDP's all-reduce
(a reduce-scatter then an all-gather); the moments take 1/N of the memory. The update is torch.optim.AdamW's, element by
element, with `build_optimizer`'s weight-decay split (matrices decayed, the rest not) and the gradient norm clipped over
the whole model, so a run gives DDP's losses (every parameter must have a gradient at every step, as AdamW would skip
one without: tinylm.train.parallel refuses a mixture of experts). `state_dict` gathers a plain AdamW's state on rank 0
and `load_state_dict` cuts this rank's shard out of one, so checkpoints resume with or without ZeRO, on any number of
processes. Run under torchrun; in a world of one it is plain AdamW.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.distributed as dist

from ..errors import TinyLMError

# torch 2.13 renamed these two collectives (the old names warn); the torch range the package accepts has one or both
all_gather_single = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
reduce_scatter_single = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)


class ZeroAdamW(torch.optim.Optimizer):
    """AdamW whose moments each rank keeps for its own shard of the parameters, which live in one flat buffer."""

    def __init__(self, model: torch.nn.Module, lr: float, betas=(0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.1, grad_clip: float | None = 1.0):
        trainable = [p for p in model.parameters() if p.requires_grad]
        super().__init__([{"params": [p for p in trainable if p.dim() >= 2], "weight_decay": weight_decay},
                          {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0}],
                         dict(lr=lr, betas=betas, eps=eps))
        self.grad_clip = grad_clip
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.params = trainable  # the buffer's order
        self.offsets = [0, *itertools.accumulate(p.numel() for p in trainable)]  # each one's start in the buffer
        self.shard_size = math.ceil(sum(p.numel() for p in trainable) / self.world)
        # padded so that it cuts into equal shards
        self.flat = torch.zeros(self.shard_size * self.world, device=trainable[0].device)
        for p, view in zip(trainable, self._views(self.flat)):
            view.copy_(p.detach())
            p.data = view  # the parameter now lives in the buffer; its own storage is freed
        if self.world > 1:
            dist.broadcast(self.flat, 0)  # every rank starts from rank 0's weights, as DDP makes sure
        self.shard = self.flat[self.rank * self.shard_size:(self.rank + 1) * self.shard_size]
        # True where weight decay applies (matrices), False elsewhere and in the padding: a byte per number of the shard
        self.decay = torch.zeros(self.shard_size, dtype=torch.bool, device=self.flat.device)
        for p, in_shard, _ in self._pieces():
            self.decay[in_shard] = p.dim() >= 2
        self.exp_avg = torch.zeros_like(self.shard)  # the moments of this rank's shard alone
        self.exp_avg_sq = torch.zeros_like(self.shard)
        self.steps = 0

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """`flat` (laid out as the buffer) cut into one view per parameter, shaped like it."""
        return [flat[start:end].view_as(p) for p, start, end in zip(self.params, self.offsets, self.offsets[1:])]

    def _pieces(self):
        """(parameter, its slice of this rank's shard, the same numbers' slice of the flattened parameter) for every
        parameter that has numbers in this rank's shard."""
        start, end, offset = self.rank * self.shard_size, (self.rank + 1) * self.shard_size, 0
        for p in self.params:
            first, last = max(start, offset), min(end, offset + p.numel())
            if first < last:
                yield p, slice(first - start, last - start), slice(first - offset, last - offset)
            offset += p.numel()

    @torch.no_grad()
    def step(self, closure=None) -> torch.Tensor:
        """Average the gradients over the ranks, clip, update this rank's shard, share it; returns the gradient norm
        before clipping. The parameters' gradients are used up (set to None)."""
        base, size = self.flat.data_ptr(), self.flat.element_size()
        if any(p.data_ptr() != base + start * size for p, start in zip(self.params, self.offsets)):
            # model.to(another dtype or device) gives the parameters storage of their own: the buffer would no longer
            # be the model, and the steps would train nothing
            raise TinyLMError("ZeRO-1's parameters left its flat buffer (the model was moved or cast after the "
                              "optimizer was made): make the optimizer after model.to(...)")
        grad = self._mean_gradient_shard()
        squares = torch.dot(grad, grad)  # the shard's sum of squares, without a shard-size temporary
        if self.world > 1:
            dist.all_reduce(squares)  # the whole model's squared norm, summed from the shards
        norm = squares.sqrt()
        if self.grad_clip is not None:
            grad *= torch.clamp(self.grad_clip / (norm + 1e-6), max=1.0)  # clip_grad_norm_'s rule
        # torch.optim.AdamW's update, on the shard: decoupled weight decay, the moments, bias-corrected step. One rate
        # for the shard: the two groups differ in weight decay alone, which the mask applies.
        group = self.param_groups[0]
        lr, (beta1, beta2) = group["lr"], group["betas"]
        self.steps += 1
        self.shard.mul_(1 - lr * group["weight_decay"] * self.decay)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = self.exp_avg_sq.sqrt().div_(math.sqrt(1 - beta2 ** self.steps)).add_(group["eps"])
        self.shard.addcdiv_(self.exp_avg, denom, value=-lr / (1 - beta1 ** self.steps))
        if self.world > 1:
            all_gather_single(self.flat, self.shard)  # every rank's shard into its place, this one's in place
        return norm

    def _mean_gradient_shard(self) -> torch.Tensor:
        """This rank's shard of the gradient averaged over the ranks. The flat gradient the reduce-scatter reads, the
        step's one full-size buffer (DDP keeps its gradient buckets throughout), takes the place of the parameters' own
        gradients: it is made whole first, so until they are copied in and freed one by one both exist."""
        flat_grad = torch.zeros_like(self.flat)
        for p, view in zip(self.params, self._views(flat_grad)):
            if p.grad is not None:
                view.copy_(p.grad)
                p.grad = None
        if self.world == 1:
            return flat_grad
        grad = torch.empty_like(self.shard)
        reduce_scatter_single(grad, flat_grad)  # the sum over ranks of this rank's shard
        return grad.div_(self.world)

    def state_dict(self) -> dict[str, Any] | None:
        """torch.optim.AdamW's state of these parameters (numbered group by group, as AdamW numbers them), gathered on
        rank 0; None on the others. A collective: every rank must call it."""
        exp_avg, exp_avg_sq = self._gathered(self.exp_avg), self._gathered(self.exp_avg_sq)
        if exp_avg is None:
            return None
        moments = dict(zip(map(id, self.params), zip(self._views(exp_avg), self._views(exp_avg_sq))))
        numbered = [p for group in self.param_groups for p in group["params"]]
        # AdamW has no state before its first step; its "step" is a tensor of each parameter's own
        state = {i: {"step": torch.tensor(float(self.steps)), "exp_avg": moments[id(p)][0],
                     "exp_avg_sq": moments[id(p)][1]} for i, p in enumerate(numbered)} if self.steps else {}
        groups, first = [], 0
        for group in self.param_groups:
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": list(range(first, first + len(group["params"])))})
            first += len(group["params"])
        return {"state": state, "param_groups": groups}

    def _gathered(self, shard: torch.Tensor) -> torch.Tensor | None:
        """Every rank's `shard` end to end, laid out as the buffer, on rank 0 (None elsewhere)."""
        if self.world == 1:
            return shard
        whole = torch.empty_like(self.flat) if self.rank == 0 else None
        dist.gather(shard, list(whole.chunk(self.world)) if whole is not None else None, dst=0)
        return whole

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """This rank's shard of the moments from AdamW's state of the same parameters (ZeroAdamW's or a plain
        AdamW's, whole on every rank); the learning rate and the other settings stay this optimizer's."""
        numbered = [p for group in self.param_groups for p in group["params"]]
        saved = {id(p): state["state"][i] for i, p in enumerate(numbered) if i in state["state"]}
        self.steps = int(next(iter(saved.values()))["step"]) if saved else 0
        self.exp_avg.zero_()
        self.exp_avg_sq.zero_()
        for p, in_shard, in_param in self._pieces():
            if id(p) in saved:
                self.exp_avg[in_shard] = saved[id(p)]["exp_avg"].reshape(-1)[in_param]
                self.exp_avg_sq[in_shard] = saved[id(p)]["exp_avg_sq"].reshape(-1)[in_param]

    def state_bytes(self) -> int:
        """The bytes of optimizer state this rank holds: its shard's two moments and weight-decay mask."""
        return self.exp_avg.nbytes + self.exp_avg_sq.nbytes + self.decay.nbytes
