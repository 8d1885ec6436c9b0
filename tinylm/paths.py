"""Default folders for data and runs, relative to the repository, never to a machine.

In a clone of the repository (tinylm/ next to data/), data lands in the repository's data/ and
runs in its runs/, whatever the working directory: a notebook in notebooks/ and a CLI run from
the root share them. An installed package without a clone uses ./data and ./runs.
$TINYLM_DATA_DIR and $TINYLM_RUNS_DIR override both.
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
