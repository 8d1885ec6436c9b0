"""How a run spreads over torchrun's processes, chosen once from its config: alone, DDP, ZeRO-1 or FSDP.

As torchtitan's `parallelize` does, `Parallel` wraps the model for the run's way and answers all that the training
loop asks about it: the module the forward pass runs (`train_model`); `gradient_sync`, so that gradients are reduced
once per optimizer step, on its last micro-batch; the optimizer (ZeRO-1's shards AdamW's moments, tinylm.train.zero)
and its step, clipped (ZeRO-1's step clips itself, once it has averaged the gradients); the whole model to evaluate,
sample from and save (under FSDP one plain copy, given the gathered weights once per step); the whole optimizer state
to save and load, in a plain AdamW's format whatever the way, so that a run resumes in any of them; and `shares`,
what one rank holds of the weights, gradients and moments, for the memory account (tinylm.train.memory).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..config import TrainConfig
from ..distributed import World
from ..errors import InputError
from ..model.moe import moe_layers
from ..runtime import needs_grad_scaler
from .memory import Shares
from .optim import build_optimizer
from .sharded import (
    full_model_state,
    full_optimizer_state,
    load_model_state,
    load_optimizer_state,
    local_value,
    shard_model,
)
from .zero import ZeroAdamW


def choose_way(cfg: TrainConfig, world: World, device: torch.device, dtype: torch.dtype, pretraining: bool) -> str:
    """The way to train: "fsdp" or "zero" where the config asks for it, else "ddp" under torchrun with more than one
    process, else "single"; a one-line error for a combination that cannot train."""
    if cfg.fsdp and not dist.is_initialized():
        raise InputError("--fsdp shards the model over torchrun's processes: start the run with torchrun "
                         "--standalone --nproc_per_node=N -m tinylm.train ... (N=1 measures FSDP's own cost)")
    if cfg.fsdp and not pretraining:  # post-training samples and scores with the model itself, which FSDP shards
        raise InputError("--set fsdp=true: only pretraining (python -m tinylm.train) shards the model; post-"
                         "training keeps the whole model on each process: DDP, or ZeRO-1 (--set zero=true)")
    name = "--fsdp" if cfg.fsdp else "ZeRO-1 (--set zero=true)"
    if (cfg.fsdp or cfg.zero) and cfg.optimizer != "adamw":
        raise InputError(f"{name} trains with AdamW: {cfg.optimizer} works on whole matrices, which a rank holds a "
                         "shard of; drop --set optimizer")
    # ZeRO-1's ranks would each find their own overflows in gradients not yet averaged, and disagree on skipping
    if (cfg.fsdp or cfg.zero) and needs_grad_scaler(device, dtype):
        raise InputError(f"{name} does not train in float16 with a gradient scaler: use --dtype float32")
    if cfg.fsdp or cfg.zero:
        return "fsdp" if cfg.fsdp else "zero"
    return "ddp" if world.distributed else "single"


class Parallel:
    """`model` made ready to train in the way `choose_way` picks; `train_model` is what the forward pass runs."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, world: World, device: torch.device,
                 dtype: torch.dtype, pretraining: bool = True):
        self.way = choose_way(cfg, world, device, dtype, pretraining)
        self.model, self.cfg, self.device, self.ranks = model, cfg, device, world.size
        self._ddp = None
        self._copy, self._copy_step = None, None  # FSDP: the plain copy to evaluate and save, and its step
        self._plain_class = type(model)  # before fully_shard gives the model a class of its own
        if self.way == "zero" and moe_layers(model):  # AdamW skips a parameter without a gradient; ZeRO-1 cannot
            raise InputError("ZeRO-1 (--set zero=true) needs a gradient for every parameter at every step, and a "
                             "mixture of experts leaves the experts no token chose without one: train it under DDP")
        if self.way == "fsdp":
            shard_model(model, device, dtype)
        if self.way == "ddp":
            # A routed expert that no token of a micro-batch chose gets no gradient; DDP must be told to expect that.
            self._ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                find_unused_parameters=bool(moe_layers(model)))
        wrapped = self._ddp if self._ddp is not None else model
        self.train_model = torch.compile(wrapped) if cfg.compile else wrapped

    @property
    def shares(self) -> Shares:
        """What one rank holds of the weights, gradients and AdamW's moments."""
        if self.way == "fsdp":
            return Shares(1 / self.ranks, 1 / self.ranks, 1 / self.ranks)
        return Shares(moments=1 / self.ranks) if self.way == "zero" else Shares()

    def gradient_sync(self, last: bool):
        """The context of a micro-batch's backward pass: DDP and FSDP reduce gradients over the ranks only on the last
        micro-batch of a step (ZeRO-1 reduces them in its optimizer step)."""
        if self.way == "fsdp":
            self.model.set_requires_gradient_sync(last)
        return self._ddp.no_sync() if self._ddp is not None and not last else contextlib.nullcontext()

    def optimizer(self) -> torch.optim.Optimizer:
        """ZeRO-1's AdamW, or `build_optimizer`'s (under FSDP its moments are sharded like the weights)."""
        cfg = self.cfg
        if self.way == "zero":
            return ZeroAdamW(self.model, cfg.learning_rate, (cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
                             grad_clip=cfg.grad_clip)
        return build_optimizer(self.model, cfg, self.device)

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None
             ) -> torch.Tensor | None:
        """Clip the gradients' norm to the config's grad_clip and step `optimizer` (through `scaler` where given,
        which skips a step whose fp16 gradients overflowed); returns the norm before clipping, on the device (None
        without clipping)."""
        clip = self.cfg.grad_clip
        if self.way == "zero":
            norm = optimizer.step()
            return norm if clip is not None else None
        norm = None
        if clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            norm = local_value(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        if scaler is not None:
            scaler.step(optimizer)
        else:
            optimizer.step()
        return norm

    def whole_model(self, step: int) -> torch.nn.Module:
        """The model to evaluate, sample from and save: the model itself, or under FSDP one plain copy holding the
        weights gathered at `step` (once per step, so every rank must call it at the same steps)."""
        if self.way != "fsdp":
            return self.model
        if self._copy is None:
            with torch.random.fork_rng(devices=[]):  # its random init must not move the run's stream (exact resume)
                self._copy = self._plain_class(self.model.config).to(self.device)
        if self._copy_step != step:
            self._copy.load_state_dict(full_model_state(self.model))
            self._copy_step = step
        return self._copy

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """A plain model's weights into the model (under FSDP each rank keeps its shard)."""
        if self.way == "fsdp":
            load_model_state(self.model, weights)
        else:
            self.model.load_state_dict(weights)
        self._copy_step = None

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """The optimizer's whole state, as a plain AdamW (or Muon beside it) of the plain model gives it; sharded
        ways gather it on rank 0 (None elsewhere; a collective)."""
        if self.way == "fsdp":
            return full_optimizer_state(self.model, optimizer)
        return optimizer.state_dict()

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """A whole state (any way's checkpoint, on every rank) into the optimizer, each rank keeping its shard."""
        if self.way == "fsdp":
            load_optimizer_state(self.model, optimizer, state)
            return
        # how this run's AdamW computes (its fused kernel) is this run's, whatever wrote the state (ZeRO-1 saves none)
        fused = [group.get("fused") for group in optimizer.param_groups]
        optimizer.load_state_dict(state)
        for group, kernel in zip(optimizer.param_groups, fused):
            if kernel is not None:
                group["fused"] = kernel
