"""How long a run has left, and durations written the way people read them.

The trainer's ETA is the steps still to go times the measured seconds per training step, plus what
evaluations, checkpoints and samples cost, charged per step at the rate measured so far in the
session. With a time budget (`max_seconds`, which counts training time only) the steps still to go
are also bounded by the training time left, so the ETA follows whichever budget runs out first.
"""

from __future__ import annotations


def steps_left(step: int, max_steps: int, seconds_per_step: float, elapsed: float = 0.0,
               max_seconds: float | None = None) -> float:
    """Optimizer steps until the run stops: at max_steps, or when `elapsed` training seconds reach max_seconds
    (a fraction of a step then)."""
    left = max(0, max_steps - step)
    if max_seconds is not None and seconds_per_step > 0:
        return min(left, max(0.0, max_seconds - elapsed) / seconds_per_step)
    return left


def remaining_seconds(step: int, max_steps: int, seconds_per_step: float, overhead_per_step: float = 0.0,
                      elapsed: float = 0.0, max_seconds: float | None = None) -> float:
    """Seconds until the run stops: the steps left at the measured training time plus overhead per step."""
    return steps_left(step, max_steps, seconds_per_step, elapsed, max_seconds) * (seconds_per_step + overhead_per_step)


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
