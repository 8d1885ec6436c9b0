"""What the command lines show in a terminal: the trainer's records as lines, and --help with defaults and examples.

Named `console`, not `logging`, so that it never shadows the standard library's module. Errors have their own
module, `tinylm.errors`.
"""

from __future__ import annotations

import argparse
from typing import Any


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
