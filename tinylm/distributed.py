"""One code path for one process and many: DDP when launched by torchrun, plain training otherwise.

torchrun starts one process per GPU and tells each its RANK, LOCAL_RANK and WORLD_SIZE through the environment;
without them the world is one process and nothing else changes. A process group has a timeout ($TINYLM_DIST_TIMEOUT
seconds, else 10 minutes), so that a rank that hangs or dies mid-collective does not leave the others waiting
forever: `run_in_world` turns the timeout into a RankTimeout that says which rank waited, how long, and what to do.
"""

from __future__ import annotations

import datetime
import gc
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from .errors import InputError, TinyLMError

TIMEOUT_ENV = "TINYLM_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


class RankTimeout(TinyLMError, RuntimeError):
    """A collective operation that waited longer than the process group's timeout for another rank."""


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


def group_timeout() -> float:
    """Seconds a collective waits for the other ranks: $TINYLM_DIST_TIMEOUT, else DEFAULT_TIMEOUT_S."""
    value = os.environ.get(TIMEOUT_ENV) or str(DEFAULT_TIMEOUT_S)
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:  # NaN too
        raise InputError(f"{TIMEOUT_ENV}={value!r} is not a positive number of seconds; unset it for the default "
                         f"({DEFAULT_TIMEOUT_S:g})")
    return seconds


def init_distributed() -> World:
    """Join the torchrun process group, with group_timeout(), if this process was started by torchrun."""
    if dist.is_initialized():
        return current_world()
    if "RANK" not in os.environ:  # not started by torchrun (a world of one under torchrun still gets a group: FSDP)
        return World()
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=group_timeout()))
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


def run_in_world(work: Callable[[World], Result]) -> Result:
    """work(world) inside the torchrun world (a world of one without torchrun), then leave it; only a normal finish
    waits for the other ranks before the group is destroyed. A command line's main() is this around its own work."""
    world = init_distributed()
    finished = False
    try:
        result = work(world)
        finished = True
        return result
    except RuntimeError as error:
        if world.distributed and _timed_out(error):
            raise RankTimeout(_timeout_message(world)) from error
        raise
    finally:
        teardown(finished)


def _timed_out(error: RuntimeError) -> bool:
    """Whether a collective gave up waiting: gloo raises a RuntimeError "Timed out waiting 3000ms for recv operation
    to complete"; NCCL's errors (a DistBackendError) also name the timeout, where its watchdog does not end the
    process first."""
    return re.search(r"\btimed out\b|\btime ?out\b", str(error), re.IGNORECASE) is not None


def _timeout_message(world: World) -> str:
    others = f"rank {1 - world.rank}" if world.size == 2 else f"another of the {world.size} ranks"
    return (f"rank {world.rank} waited the process group's timeout ({group_timeout():g} s) for {others}, which did "
            "not join the collective operation in time: it hung or was far slower (its own output may say where); "
            f"run again (a training run with --resume), and if that rank is only slow, allow more time: "
            f"{TIMEOUT_ENV}=SECONDS")


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
