"""One code path for one process and many: DDP when launched by torchrun, plain training otherwise.

`torchrun --nproc_per_node=8 -m tinylm.train ...` starts one process per GPU and tells each its
RANK, LOCAL_RANK and WORLD_SIZE through the environment (and, across nodes, where to meet:
--nnodes, --rdzv-endpoint). `init_distributed` reads them, joins the process group (NCCL on
GPUs, gloo on CPUs) and pins each process to its GPU. Without those variables it returns a
world of one and nothing else changes.

A process group has a timeout, so a rank that dies mid-collective does not leave the others
waiting forever; torchrun also stops the remaining ranks when one exits with an error.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_distributed(timeout_minutes: float = 10.0) -> World:
    """Join the torchrun process group if this process was started by torchrun."""
    if dist.is_initialized():
        return current_world()
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return World()
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return current_world()


def current_world() -> World:
    if not dist.is_initialized():
        return World()
    return World(rank=dist.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                 size=dist.get_world_size())


def device_for(world: World, requested: str | None = None) -> str | None:
    """Each rank's device: its own GPU under torchrun with CUDA, else what was asked for."""
    if world.distributed and torch.cuda.is_available():
        return f"cuda:{world.local_rank}"
    return requested


def teardown(finished: bool = True) -> None:
    """Leave the process group. After a normal finish all ranks first wait for each other, so none
    destroys the group while another is still using it; after an error torchrun stops the rest.
    DistributedDataParallel's reducer sits in reference cycles, so it outlives its last name until the garbage
    collector runs: collect first, so that it goes while the group it talks to still exists, not at exit."""
    if dist.is_initialized():
        gc.collect()
        if finished:
            dist.barrier()
        dist.destroy_process_group()


Result = TypeVar("Result")


def run_in_world(work: Callable[[World, contextlib.ExitStack], Result]) -> Result:
    """work(world, held) inside the torchrun world (a world of one without torchrun), then leave it. `held`
    releases what the work took (a run folder's lock) however it ends; only a normal finish waits for the other
    ranks before the group is destroyed. A command line's main() is this around its own work."""
    world = init_distributed()
    finished = False
    try:
        with contextlib.ExitStack() as held:
            result = work(world, held)
        finished = True
        return result
    finally:
        teardown(finished)


def all_reduce_sum(values: list[float], device) -> list[float]:
    """Element-wise sum over ranks (identity in a world of one)."""
    if not dist.is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_to_main(value):
    """Every rank's `value` (any picklable object), as a list on rank 0 and None elsewhere;
    [value] in a world of one."""
    if not dist.is_initialized():
        return [value]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast_from_main(value: float, device) -> float:
    """Rank 0's value on every rank: decisions such as 'out of time' must be the same everywhere."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.item()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
