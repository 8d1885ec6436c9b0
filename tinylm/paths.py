"""Default folders for data and runs, relative to the repository, never to a machine.

In a clone of the repository (tinylm/ next to data/), data lands in the repository's data/ and
runs in its runs/, whatever the working directory: a notebook in notebooks/ and a CLI run from
the root share them. An installed package without a clone uses ./data and ./runs.
$TINYLM_DATA_DIR and $TINYLM_RUNS_DIR override both. `shown` is how messages print such paths.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _default(env: str, name: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    if (_REPO / "data").is_dir() and (_REPO / "tinylm").is_dir():
        return _REPO / name
    return Path.cwd() / name


def data_dir() -> Path:
    return _default("TINYLM_DATA_DIR", "data")


def runs_dir() -> Path:
    return _default("TINYLM_RUNS_DIR", "runs")


def shown(path: str | Path) -> str:
    """A path as messages print it: relative to the working directory when it lies in this repository (so a
    command prints runs/x and a notebook ../runs/x, never one machine's absolute path), else as it is."""
    resolved = Path(path).resolve()
    return os.path.relpath(resolved) if resolved.is_relative_to(_REPO) else str(path)
