"""Where the course's files live, and how they are written so that a reader never sees half a file.

In a clone (tinylm/ next to data/), data lands in the clone's data/ and runs in its runs/, whatever the working
directory, so a notebook and a command line share them; an installed package without a clone uses ./data and
./runs. $TINYLM_DATA_DIR and $TINYLM_RUNS_DIR override both.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

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
    """A path as messages print it: relative to the working directory when it lies in this repository or below the
    working directory (so a command prints runs/x and a notebook ../runs/x, never one machine's absolute path),
    else as it is."""
    resolved = Path(path).resolve()
    inside = resolved.is_relative_to(_REPO) or resolved.is_relative_to(Path.cwd())
    return os.path.relpath(resolved) if inside else str(path)


# What atomic_write's mkstemp names its temporary files: ".<name>.<8 random characters>.tmp".
_TEMPORARY_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask  # what open() would give; mkstemp's 0600 would hide data from other users


def write_json(path: str | Path, payload: Any, indent: int = 1) -> Path:
    """`payload` as UTF-8 JSON (with a final newline) at `path`, written through `atomic_write`: a reader sees the old
    file or the whole new one. Every JSON file tinylm writes goes through here."""
    with atomic_write(path) as f:
        f.write((json.dumps(payload, indent=indent, ensure_ascii=False) + "\n").encode("utf-8"))
    return Path(path)


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write `path` through, so that a reader sees the old file or the complete new one.

    The bytes go to a temporary file in the same folder, are flushed to disk and replace `path` in one `os.replace`;
    if anything fails first the temporary file is removed and `path` is untouched, and a system error that names no
    file (a full disk) gets `path`'s name. A process killed mid-write leaves its temporary file, which
    `remove_stale_temporaries` deletes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, _default_mode())
        os.replace(tmp_name, path)
    except OSError as error:
        if error.errno is not None and error.filename is None:  # the system's "[Errno 28] ...", from write or fsync
            error.filename = str(path)
        raise
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """A fresh hidden folder inside `folder` (created if need be; inside, so that it is on the same file system) for
    the block to write files into; if the block ends well, each of them replaces the file of its name in `folder` in
    one `os.replace`; if it fails, `folder` keeps what it held and the fresh folder goes. For writers that take a
    folder, not a file (transformers' save_pretrained). A full disk that a library reports in its own words
    (safetensors: "No space left on device (os error 28)") is raised as the OSError it is, naming `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".writing-", suffix=".tmp"))
    try:
        try:
            yield staging
        except Exception as error:
            if not isinstance(error, OSError) and ("os error 28" in str(error) or "No space left" in str(error)):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder)) from None
            raise
        for path in sorted(staging.iterdir()):
            os.chmod(path, _default_mode())  # what a file written in place would get
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed atomic writes left in `folder`; returns them.

    Only safe while no process writes into the folder (an atomic write in progress looks the same):
    a training run calls it holding the run folder's lock (tinylm.train.run_folder).
    """
    stale = [path for path in Path(folder).glob(".*.tmp") if _TEMPORARY_NAME.fullmatch(path.name) and path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def check_output_folder(folder: str | Path, option: str = "--out") -> Path:
    """Make `folder` (with its parents) and prove that a file can be created in it, so that a command fails on an
    unusable path before its work starts; the error names `option`."""
    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise NotADirectoryError(f"{option} {folder}: {blocker} is a file, not a folder; choose another {option}")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
    return folder
