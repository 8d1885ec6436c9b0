"""Fully sharded data parallelism on PyTorch's own engine (FSDP2, `torch.distributed.fsdp.fully_shard`).

DDP keeps the whole model, its gradients and AdamW's moments on every rank. `shard_model` instead gives each rank
1/N of every parameter: each block, then the whole model, becomes a unit that all-gathers its weights just before its
forward (and again before its backward) and frees them after, and reduce-scatters its gradients so that each rank
keeps its shard of their average. Weights, gradients and moments then take about 1/N per rank, for the cost of the
all-gathers. On a GPU that computes bf16 the gathered weights are bf16 and gradients are reduced in fp32.

Checkpoints stay in the format every command reads: `full_model_state` and `full_optimizer_state` gather the shards
(every rank takes part) into the state a plain model and a plain AdamW would have, and loading scatters it back, so
a sharded run resumes with any number of processes, sharded or not, and `sample`, `eval` and `interop export` read it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

WHOLE = StateDictOptions(full_state_dict=True)  # every rank gets (or gives) the whole tensors
WHOLE_ON_MAIN = StateDictOptions(full_state_dict=True, cpu_offload=True)  # rank 0 alone gets them, on the CPU


def shard_model(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Shard `model` (a GPT) in place over the process group: each block its own unit, then the rest."""
    mixed = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if (
        device.type == "cuda" and dtype == torch.bfloat16) else MixedPrecisionPolicy()
    for block in model.transformer.h:
        fully_shard(block, mp_policy=mixed)
    fully_shard(model, mp_policy=mixed)


def local_value(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor of a sharded one's whole value (a collective: every rank must call it), else itself."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole weights of a sharded model on every rank, under the names a plain model has (a collective)."""
    return get_model_state_dict(model, options=WHOLE)


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load whole weights (every rank has them) into a sharded model, each rank keeping its shard."""
    set_model_state_dict(model, state, options=WHOLE)


def _names_in_order(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters in the order a plain optimizer numbers them (group by group)."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """The optimizer's state as `optimizer.state_dict()` of a plain model gives it (parameters numbered 0, 1, ...
    group by group), gathered on rank 0 (None elsewhere; a collective)."""
    by_name = get_optimizer_state_dict(model, optimizer, options=WHOLE_ON_MAIN)
    if not by_name:  # the other ranks get an empty dict
        return None
    number = {name: i for i, name in enumerate(_names_in_order(model, optimizer))}
    return {"state": {number[name]: state for name, state in by_name["state"].items()},
            "param_groups": [{**group, "params": [number[name] for name in group["params"]]}
                             for group in by_name["param_groups"]]}


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a plain optimizer's state (every rank has it) into the optimizer of a sharded model."""
    names = _names_in_order(model, optimizer)
    by_name = {"state": {names[i]: value for i, value in state["state"].items()},
               "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                                for group in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=WHOLE)
