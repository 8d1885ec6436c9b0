"""One run at a time in a run folder: a lock file that names who holds it.

Two trainings writing into one folder would interleave their metrics.jsonl and replace each other's
checkpoints, and both would report success. `run_lock(folder)` writes the owner's pid, host and start
time into a temporary file and hard-links it to `run.lock`, which fails if that name exists: of two
processes racing for it exactly one succeeds, and the lock appears with its content complete, so a disk
that is full at the start leaves no lock behind, only the error. The lock is removed when the run ends
however it ends (a normal exit, an error, Ctrl-C). A lock whose process is gone (same host, pid not
running: a crash or `kill -9`) is taken over with a printed note, and so is an empty or unreadable lock
older than EMPTY_LOCK_SECONDS (tinylm before the hard link could leave one on a full disk). A lock of a
live process stops the new run with `RunFolderBusy`, which names the owner. A process on another host
cannot be checked from here, so its lock counts as live; the message says which file to delete once that
run is known to be over (the same holds for a pid that a new process has reused since a crash, which this
check cannot tell from the run that died).

`claim_run_folder` is what every command that trains into a run folder (train, finetune) does first: the
lock, stale temporary files, and the --resume / --overwrite rules; the old run's files are deleted only by
`clear_old_run`, which a command calls once its start has succeeded, so a failed start keeps the old run.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import InputError, TinyLMError
from ..paths import check_output_folder, remove_stale_temporaries

LOCK_FILE = "run.lock"
EMPTY_LOCK_SECONDS = 5.0  # an empty lock this old has no owner that is about to write its name


class RunFolderBusy(TinyLMError, RuntimeError):
    """Another process holds the run folder's lock."""


@contextlib.contextmanager
def run_lock(folder: str | Path, say: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold `folder`'s run.lock for the duration of the block (creating the folder if needed; a folder
    this created and nothing was written to is removed again at the end)."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    _acquire(path, owner, say)
    try:
        yield path
    finally:
        if _read(path) == owner:  # never remove a lock that someone else has taken over since
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):  # not empty: the run wrote something, keep it
                folder.rmdir()


def _acquire(path: Path, owner: dict[str, Any], say: Callable[[str], None]) -> None:
    for _ in range(3):  # a retry after removing a stale lock, in case another process was quicker
        if _create(path, owner):
            return
        holder = _read(path, patience=_until_stale(path))
        if holder is None and not path.exists():  # released in the meantime
            continue
        if holder is None:  # empty or unreadable for EMPTY_LOCK_SECONDS: no run will ever write its name
            if _read(path) is None and path.exists():
                path.unlink(missing_ok=True)
                say(f"note: {path} named no owner (a run that could not write it, e.g. on a full disk, left it "
                    "behind); taking the run folder over")
            continue
        if _alive(holder):
            raise RunFolderBusy(f"{path.parent} is in use by another run (process {holder.get('pid')} on "
                                f"{holder.get('host')}, started {holder.get('started')}): wait for it to end or "
                                f"stop it, or train into another --out folder. If no run is using it, delete "
                                f"{path}")
        if _read(path) == holder:  # still the same dead owner: take it over
            path.unlink(missing_ok=True)
            say(f"note: {path} was left by process {holder.get('pid')} (started {holder.get('started')}), "
                "which is no longer running; taking the run folder over")
    raise RunFolderBusy(f"could not take {path} over from a stopped run (other processes keep claiming it); "
                        "make sure only one run uses this folder, then start again")


def _create(path: Path, owner: dict[str, Any]) -> bool:
    """Create the lock holding `owner`, whole (False: a lock exists). A write that fails (a full disk) raises
    with the lock's name and leaves nothing behind."""
    temporary = None
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # no fsync: other processes see the page cache, and a
            json.dump(owner, f)  # lock that a power cut left empty is stale in seconds
        os.chmod(temporary, 0o644)
        os.link(temporary, path)  # unlike a rename, never replaces an existing lock
        return True
    except FileExistsError:
        return False
    except OSError as error:
        if temporary is not None and not os.path.exists(temporary):  # the lock's holder just cleared stale
            return False  # temporary files away, this one among them
        if error.errno is not None:  # the temporary file's name would mean nothing to the reader
            error.filename, error.filename2 = str(path), None
        raise
    finally:
        if temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def _until_stale(path: Path) -> float:
    """Seconds until a lock that names no owner counts as stale (EMPTY_LOCK_SECONDS after it was written)."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
    return min(EMPTY_LOCK_SECONDS, max(0.0, EMPTY_LOCK_SECONDS - age))  # a skewed clock (network disk): no longer


def _read(path: Path, patience: float = 0.0) -> dict[str, Any] | None:
    """The lock's owner, or None. `patience`: seconds to wait for a lock that names no owner yet (written by
    a tinylm that created the file first and wrote into it after)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            holder = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(holder, dict):
                return holder
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the lock's process may still run: only a pid on this host that no longer exists is known dead."""
    if holder.get("host") != socket.gethostname() or os.name == "nt":  # Windows' os.kill would end the process
        return True
    try:
        os.kill(int(holder["pid"]), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (KeyError, TypeError, ValueError):  # no usable pid: nothing is known, so it is not taken over
        return True
    return True


def claim_run_folder(out: Path, held: contextlib.ExitStack, is_main: bool, resume: bool, overwrite: bool,
                     say: Callable[[str], None] = print) -> None:
    """Check that `out` can hold a run and take it for this run until `held` closes (rank 0 speaks for all ranks);
    refuse a folder that holds a run unless resuming or overwriting it, and --resume without a last.pt."""
    check_output_folder(out)  # now, not at the first save
    if is_main:  # before the folder is read or changed
        held.enter_context(run_lock(out, say))
        if stale := remove_stale_temporaries(out):
            say(f"removed {len(stale)} temporary file(s) that interrupted saves left in {out}")
    if (out / "last.pt").exists() and not (resume or overwrite):
        raise InputError(f"{out} already holds a run. Pass --resume to continue it, --overwrite to start afresh "
                         "(its checkpoints will be replaced), or --out to use another folder.")
    if resume and not (out / "last.pt").exists():
        raise InputError(f"--resume: {out} has no last.pt to continue from; drop --resume to start a new run "
                         "(or the --out, or the options such as --arch, that named the run's folder).")


def clear_old_run(out: Path, names: Iterable[str]) -> None:
    """Delete the old run's files (all of them, so that no old best.pt outlives it) before the new run writes."""
    for name in names:
        (out / name).unlink(missing_ok=True)
