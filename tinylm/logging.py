"""Turning the trainer's records, and the command lines' errors, into lines a person reads in a terminal.

A train line reads `step  200/6000 | loss 1.2345 | lr 3.00e-04 | 12.3k tok/s | 35s | ETA 17m30s`: the step
of the total, the loss, learning rate, training tokens per second, the training time so far (evaluations
excluded), and how long the run has left, evaluations included.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from .progress import format_duration


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
        line = f"{event:>5} step {record['step']:>6} | val loss {record['val_loss']:.4f} | best {record['best_val_loss']:.4f}"
        if "hellaswag_acc_norm" in record:
            line += f" | HellaSwag acc_norm {record['hellaswag_acc_norm']:.4f} ({record['hellaswag_examples']:.0f} examples)"
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
        return f"interrupted at step {record['step']}; saved {record['checkpoint']} (resume with --resume)"
    return str(record)


def print_record(record: dict[str, Any]) -> None:
    print(format_record(record), flush=True)


def run_cli(main: Callable, errors: tuple[type[BaseException], ...], argv=None):
    """Run a command line's main(argv): an anticipated error ends it with a one-line message and exit
    status 1 instead of a traceback, Ctrl-C with status 130 (the shell's code for SIGINT) once main
    has said what it saved; anything else keeps its traceback."""
    try:
        return main(argv)
    except errors as error:
        sys.exit(format_error(error))
    except KeyboardInterrupt:
        sys.exit(130)


def format_error(error: BaseException) -> str:
    """`error: <message>` on one line: the message up to its first line break (torch's load errors run on for paragraphs)."""
    lines = str(error).strip().splitlines()
    return f"error: {lines[0] if lines else type(error).__name__}"
