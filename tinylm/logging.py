"""Turning the trainer's records, and the command lines' errors, into lines a person reads in a terminal."""

from __future__ import annotations

import sys
from typing import Any, Callable


def format_record(record: dict[str, Any]) -> str:
    event = record.get("event")
    if event == "train":
        line = (f"step {record['step']:>6} | loss {record['loss']:.4f} | lr {record['lr']:.2e} | "
                f"{record['tokens_per_s'] / 1000:.1f}k tok/s | {record['elapsed']:.0f}s")
        if "mfu" in record:
            line += f" | MFU {100 * record['mfu']:.1f}%"
        if record.get("max_violation"):  # a mixture of experts: its worst-balanced layer (0 is perfectly even)
            line += f" | expert max-violation {max(record['max_violation']):.2f}"
        return line + (f" | {record['skipped_steps']} fp16 steps skipped" if record.get("skipped_steps") else "")
    if event in ("eval", "final"):
        line = f"{event:>5} step {record['step']:>6} | val loss {record['val_loss']:.4f} | best {record['best_val_loss']:.4f}"
        if "hellaswag_acc_norm" in record:
            line += f" | HellaSwag acc_norm {record['hellaswag_acc_norm']:.4f} ({record['hellaswag_examples']:.0f} examples)"
        return line
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
