"""Loss curves: a live plot that redraws in place in Jupyter and prints lines elsewhere.

`LiveLossPlot` is a Trainer callback. In a notebook with IPython it keeps one matplotlib figure
in one output and replaces it as records arrive (at most every `every_seconds`, so plotting never
dominates training); the committed notebook then holds just the final picture. Without IPython,
in a terminal or a plain script, it falls back to printing each record as a line.
"""

from __future__ import annotations

import time
from typing import Any

import matplotlib.pyplot as plt

from .logging import format_record


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ != "TerminalInteractiveShell"


def plot_losses(records: list[dict[str, Any]], ax=None, title: str | None = None):
    """Training loss per step and validation loss per evaluation, from trainer or metrics.jsonl records."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    train = [(r["step"], r["loss"]) for r in records if r.get("event") == "train"]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("event") in ("eval", "final")]
    if train:
        ax.plot(*zip(*train), label="train (batch)", alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="validation (whole split)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


class LiveLossPlot:
    def __init__(self, title: str | None = None, every_seconds: float = 2.0, print_samples: bool = True):
        self.title = title
        self.every_seconds = every_seconds
        self.print_samples = print_samples
        self.records: list[dict[str, Any]] = []
        self.notebook = in_notebook()
        self._handle = None
        self._last_draw = 0.0

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if not self.notebook:
            print(format_record(record), flush=True)
            return
        if record.get("event") == "sample" and self.print_samples:
            print(format_record(record), flush=True)
        final = record.get("event") == "final"
        if final or time.monotonic() - self._last_draw >= self.every_seconds:
            self.draw()

    def draw(self) -> None:
        from IPython.display import display

        fig, ax = plt.subplots(figsize=(7, 3.5))
        plot_losses(self.records, ax=ax, title=self.title)
        fig.tight_layout()
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)
        self._last_draw = time.monotonic()
