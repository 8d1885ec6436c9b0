"""A run that another run starts from and that tinylm makes where it is missing (a story base, a task-format model):
reused when finished, resumed when interrupted, started otherwise, in its own folder under runs/, before
the run that needs it takes its own folder. What the next run starts from is its best.pt. `plan` is the line a run's
start prints for it, so that nobody waits for a base without having been told.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..distributed import World
from ..paths import shown
from .checkpoint import load_checkpoint
from .options import RunOptions
from .run import Job, run_job
from .run_folder import run_file


@dataclass(frozen=True)
class Prerequisite:
    label: str  # what it is, as the plan says it: "story base"
    out: Path  # its run folder
    profile: str
    steps: int  # the step limit that finishes it
    job: Callable[[RunOptions], Job]  # the Job that trains it, for these options (its folder, resume, device)
    model: Callable[[], Any] | None = None  # the network it will train, for checks before it trains

    @property
    def checkpoint(self) -> Path:
        return run_file(self.out, "best.pt")

    def progress(self) -> int | None:
        """The step its last.pt holds, None where it has none."""
        last = run_file(self.out, "last.pt")
        return load_checkpoint(last)["step"] if last.is_file() else None

    def plan(self) -> str:
        step = self.progress()
        where = f"{self.label}: {shown(self.out)}"
        if step is None:
            return f"{where}, none yet: trains first ({self.steps:,} steps; its progress shows the time)"
        if step >= self.steps:
            return f"{where}, finished ({step:,} steps)"
        return f"{where}, interrupted at step {step:,} of {self.steps:,}: resumes first"

    def ensure(self, *, world: World | None = None, device: str | None = None,
               say: Callable[[str], None] = print) -> Path:
        """Its best.pt, after training or finishing it where it is missing or interrupted."""
        step = self.progress()
        if step is None or step < self.steps:  # resumed: to its own step limit, whatever stopped it
            run = RunOptions(out=self.out, resume=step is not None, profile=self.profile, device=device,
                             max_steps=self.steps if step is not None else None)
            run_job(self.job(run), world=world, say=say)
        return self.checkpoint
