"""A settings value: a frozen dataclass whose fields carry their command-line help, so that each option of every
command is declared once, beside its meaning, in the library module that uses it.

`option(help, default, **argparse)` makes such a field; tinylm/cli/options.py makes one flag per field. A field
without help is a flag several commands share, whose help tinylm/cli/flags.py declares. `minimum` (an int field's
least sensible value) and argparse's metavar, choices and type go in the field too. It imports nothing of tinylm,
so every stage may declare its settings values with it.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(help: str | None, default: Any = None, **argparse: Any) -> Any:
    """A field of a settings value with its command-line help (and argparse's metavar, choices, type, or `minimum`
    for an integer); no help: a flag that other commands share too, declared with its help in tinylm/cli/flags.py."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse})
