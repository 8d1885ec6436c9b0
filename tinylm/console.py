"""What the command lines show in a terminal: the trainer's records as lines, and --help with defaults and examples.

A train line reads `step  200/6000 | loss 1.2345 | lr 3.00e-04 | 12.3k tok/s | 35s | ETA 17m30s`: the step
of the total, the loss, learning rate, training tokens per second, the training time so far (evaluations
excluded), and how long the run has left, evaluations included.

Named `console`, not `logging`, so that it never shadows the standard library's module. Errors have their own
module, `tinylm.errors`.
"""

from __future__ import annotations

import argparse
from typing import Any

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
        line = (f"{event:>5} step {record['step']:>6} | val loss {record['val_loss']:.4f} "
                f"| best {record['best_val_loss']:.4f}")
        if "hellaswag_acc_norm" in record:
            line += (f" | HellaSwag acc_norm {record['hellaswag_acc_norm']:.4f} "
                     f"({record['hellaswag_examples']:.0f} examples)")
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help as every tinylm command line shows it: each option with its default, and the description and the
    examples (the epilog) laid out as written. A default that is None or False is not shown: an option whose
    absence means something says so in its own help ("default: ...")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


def examples(*command_lines: str) -> str:
    """An epilog: example invocations, one per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in command_lines)


def describe_parameters(total: int, active: int) -> str:
    """'N parameters', and for a mixture of experts how many of them one token uses."""
    return f"{total:,} parameters" + (f" ({active:,} active per token)" if active != total else "")
