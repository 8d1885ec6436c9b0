"""What a training process holds outside its model and optimizer, for a run that stops and resumes exactly.

Two things: the dropout randomness of each process (`rng_state` saves it, `restore_rng` puts it back on the
rank that saved it), and the Ctrl-C that asks the loop to stop (`interrupt_between_steps` turns it into a request
the loop honours between optimizer steps, so that the checkpoint it then saves is a consistent state).
tinylm.train.trainer uses both; they live here so that the loop's module holds the loop.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import SimpleNamespace
from typing import Any

import torch


@contextlib.contextmanager
def interrupt_between_steps():
    """Turn the first Ctrl-C (SIGINT; Jupyter's interrupt button too) into a request the loop honours
    between optimizer steps, so the checkpoint it saves is a consistent state. A second Ctrl-C
    interrupts at once."""
    interrupt = SimpleNamespace(requested=False)
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield interrupt
        return
    previous = signal.getsignal(signal.SIGINT)

    def request_stop(signum, frame):
        if interrupt.requested:
            raise KeyboardInterrupt
        interrupt.requested = True
        print("\nstopping after this step (Ctrl-C again to stop at once)", flush=True)

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)


def rng_state(device: torch.device) -> dict[str, torch.Tensor | None]:
    """This process's dropout randomness: the CPU generator's state and, on a GPU, that GPU's own."""
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_rng(saved: list[dict[str, Any]], rank: int, seed: int, device: torch.device) -> None:
    """Rank r continues the stream rank r saved; a rank the saved run did not have starts afresh, seeded as
    a new run's rank r is (seed + rank), so the result is still repeatable."""
    if rank >= len(saved):
        torch.manual_seed(seed + rank)
        return
    torch.set_rng_state(saved[rank]["torch"])
    if device.type == "cuda" and saved[rank].get("cuda") is not None:
        torch.cuda.set_rng_state(saved[rank]["cuda"], device)
