"""How long a run has left, and durations written the way people read them.

`SessionTiming` keeps the clock of one training session from the Trainer's timings. The ETA is the steps still to
go at the pace measured after the first step (which also compiles and warms up), plus what evaluations, checkpoints
and samples cost per step so far; with a time budget it follows whichever budget runs out first. A train record
reads `step  200/6000 | loss 1.2345 | lr 3.00e-04 | 12.3k tok/s | 35s | ETA 17m30s` (`format_record`).
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch

from ..eval.uncertainty import wilson_interval

# What the seconds of a time budget count, defined once: `max_seconds` (`python -m tinylm.train --max-seconds`), the
# time-based schedule, the Trainer's `elapsed`, tokens/s, `python -m tinylm.bench speedrun` and notebook 12's
# budgets all count this, and the figures that depend on it print it beside them.
TRAINING_TIME = ("training time = the optimizer steps' own seconds (batches, forward, backward, update); evaluations, "
                 "checkpoints and samples are not counted")


# The command line that resumes the run being trained, where a command line started it (tinylm.cli.console.begin sets
# it): the line of an interrupted run that saved a checkpoint ends with it.
RESUME_COMMAND: ContextVar[str | None] = ContextVar("RESUME_COMMAND", default=None)


@dataclass
class SessionTiming:
    """The clock of one training session, given its timings (seconds from `time.perf_counter`): where the session
    started, the window of steps since the last train record, and the pace and ETA they give."""

    started: float  # the wall clock when the session began
    elapsed_at_start: float  # the run's training seconds before it
    max_steps: int
    max_seconds: float | None = None
    steps: int = 0  # optimizer steps this session
    first_step_seconds: float = 0.0
    window_seconds: float = 0.0  # training seconds, steps and tokens since the last train record
    window_steps: int = 0
    window_tokens: int = 0

    def count_step(self, seconds: float, tokens: int) -> None:
        """One optimizer step of `seconds` that trained on `tokens` input positions (every rank's)."""
        if self.steps == 0:
            self.first_step_seconds = seconds
        self.steps += 1
        self.window_seconds += seconds
        self.window_steps += 1
        self.window_tokens += tokens

    def new_window(self) -> None:
        """A train record was made: the next one covers the steps from here."""
        self.window_seconds, self.window_steps, self.window_tokens = 0.0, 0, 0

    @property
    def before_first_record(self) -> bool:
        """No train record yet this session: the window holds every step of it."""
        return self.window_steps == self.steps

    @property
    def tokens_per_s(self) -> float:
        return self.window_tokens / self.window_seconds

    @property
    def seconds_per_step(self) -> float:
        """The window's mean, as measured."""
        return self.window_seconds / self.window_steps

    def pace(self) -> float:
        """Seconds per step to expect from here: the window's mean, without the session's first step while the window
        holds it and later steps (on a GPU with --compile, that step takes many times a later one)."""
        if self.before_first_record and self.window_steps > 1:
            return (self.window_seconds - self.first_step_seconds) / (self.window_steps - 1)
        return self.seconds_per_step

    def steps_left(self, step: int, pace: float, elapsed: float) -> float:
        """Optimizer steps until the run stops at `pace` seconds a step: at max_steps, or when `elapsed` training
        seconds reach max_seconds (a fraction of a step then)."""
        left = max(0, self.max_steps - step)
        if self.max_seconds is not None and pace > 0:
            return min(left, max(0.0, self.max_seconds - elapsed) / pace)
        return left

    def eta(self, now: float, step: int, elapsed: float) -> float:
        """Seconds until the run stops, at `step` with `elapsed` training seconds: the steps left at the pace, plus
        the time outside steps so far this session (evaluations, checkpoints, samples) per step."""
        overhead = max(0.0, now - self.started - (elapsed - self.elapsed_at_start))
        pace = self.pace()
        return self.steps_left(step, pace, elapsed) * (pace + overhead / self.steps)

    def plan(self, step: int, elapsed: float) -> dict[str, Any]:
        """The plan record: at this pace, the step and the training time at which the run will stop."""
        pace = self.pace()
        left = self.steps_left(step, pace, elapsed)
        return {"event": "plan", "step": step, "max_steps": self.max_steps, "max_seconds": self.max_seconds,
                "step_seconds": pace, "expected_steps": step + left, "expected_seconds": elapsed + left * pace}


def format_duration(seconds: float) -> str:
    """4.2s, 45s, 1m05s, 2h03m, 3d04h: tenths below ten seconds, then the two largest units in whole numbers."""
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_record(record: dict[str, Any]) -> str:
    event = record.get("event")
    if event == "train":
        total = record.get("max_steps")
        step = f"{record['step']:>{len(str(total))}}/{total}" if total else f"{record['step']:>6}"
        line = (f"step {step} | loss {record['loss']:.4f} | lr {record['lr']:.2e} | "
                f"{record['tokens_per_s'] / 1000:.1f}k tok/s | {format_duration(record['elapsed'])}")
        if "mfu" in record:
            line += f" | MFU {100 * record['mfu']:.1f}%"
        if "eta" in record:
            line += f" | ETA {format_duration(record['eta'])}"
        if record.get("max_violation"):  # a mixture of experts: its worst-balanced layer (0 is perfectly even)
            line += f" | expert max-violation {max(record['max_violation']):.2f}"
        return line + (f" | {record['skipped_steps']} fp16 steps skipped" if record.get("skipped_steps") else "")
    if event in ("eval", "final"):
        line = (f"{event:>5} step {record['step']:>6} | val loss {record['val_loss']:.4f} "
                f"| best {record['best_val_loss']:.4f}")
        if "hellaswag_acc_norm" in record:  # with its 95% interval: a few examples say little
            examples = round(record["hellaswag_examples"])
            low, high = wilson_interval(round(record["hellaswag_acc_norm"] * examples), examples)
            line += (f" | HellaSwag acc_norm {record['hellaswag_acc_norm']:.4f} [95% interval {low:.2f}-{high:.2f}] "
                     f"({examples} examples)")
        return line
    if event == "plan":
        speed = f"{record['step_seconds']:.3g} s/step measured"
        if record["expected_steps"] < record["max_steps"]:  # the time budget ends training first
            line = (f"expected: the max_seconds budget ends training after {format_duration(record['max_seconds'])}, "
                    f"near step {record['expected_steps']:,.0f} of {record['max_steps']:,} ({speed})")
        else:
            line = (f"expected: about {format_duration(record['expected_seconds'])} of training for "
                    f"{record['max_steps']:,} steps ({speed})")
        return line + "; evaluations, checkpoints and samples come on top"
    if event == "sample":
        return f"--- sample at step {record['step']} ---\n{record['text']}\n---"
    if event == "interrupted":
        if record["checkpoint"] is None:  # stopped at once, mid-step (or a Trainer without a run folder)
            return f"interrupted at step {record['step']}; nothing saved"
        saved, resume = f"interrupted at step {record['step']}; saved {record['checkpoint']}", RESUME_COMMAND.get()
        return f"{saved}; to resume: {resume}" if resume else saved
    return str(record)


def print_record(record: dict[str, Any]) -> None:
    print(format_record(record), flush=True)


def describe_threads(count: int) -> str:
    """'1 thread' or 'N threads'."""
    return f"{count} thread" + ("" if count == 1 else "s")


def cpu_threads_note(device: torch.device) -> str:
    """' (N threads)' on a CPU, where a time budget's steps depend on PyTorch's threads; nothing elsewhere."""
    return f" ({describe_threads(torch.get_num_threads())})" if device.type == "cpu" else ""


def describe_parameters(total: int, active: int) -> str:
    """'N parameters', and for a mixture of experts how many of them one token uses."""
    return f"{total:,} parameters" + (f" ({active:,} active per token)" if active != total else "")
