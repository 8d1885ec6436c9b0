"""What a training process holds outside its model and optimizer, for a run that stops and resumes exactly.

Three things: the dropout randomness of each process (`rng_state` saves it, `restore_rng` puts it back on the
rank that saved it), the Ctrl-C that asks the loop to stop (`interrupt_between_steps` turns it into a request
the loop honours between optimizer steps, so that the checkpoint it then saves is a consistent state), and the
run's `metrics.jsonl` (`MetricsLog`: a new run replaces it, a resumed one continues it without repeating a step).
tinylm.train.trainer uses them; they live here so that trainer.py holds the loop.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from pathlib import Path
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


class MetricsLog:
    """A run's metrics.jsonl, one JSON line per record; `path` None keeps no file.

    A new run's first record replaces what an old run left there (one file, one run's history); `resume_at(step)`
    continues the file instead, cut after its last record up to that step: an interrupted run logged steps that
    are about to be trained and logged again, and no step may appear twice. Records are in step order, so the cut
    truncates the file in place (no disk space needed).
    """

    def __init__(self, path: Path | None):
        self.path = path
        self.started = False

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a" if self.started else "w", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.started = True

    def resume_at(self, step: int) -> None:
        self.started = True
        if self.path is None or not self.path.is_file():
            return
        with open(self.path, "r+b") as f:
            keep = 0
            for line in f:
                try:
                    if not line.endswith(b"\n") or json.loads(line).get("step", 0) > step:
                        break
                except ValueError:  # a record cut short when the process died
                    break
                keep += len(line)
            f.truncate(keep)
