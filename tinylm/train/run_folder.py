"""A run folder: one run at a time in it, and an --overwrite that never loses the old run.

One run at a time. Two trainings writing into one folder would interleave their metrics.jsonl and replace each
other's checkpoints, and both would report success. `run_lock(folder)` holds the operating system's lock on
`run.lock` (filelock: `flock` on Unix), which the kernel releases when the process ends however it ends (an error,
Ctrl-C, `kill -9`, a power cut), so a crashed run never blocks the folder. Beside it, `run.owner` names the holder
(pid, host, start time) for the message a second run gets (`RunFolderBusy`); it is removed when the run ends, so
an owner file found by the next run means that its process died, which that run says in a note. `run.lock` itself
stays in the folder (removing a lock file that another process may have just opened would let two runs lock two
different files of that name); its presence means nothing.

An --overwrite that never loses the old run. The new run starts with the old run's files moved into
`.previous-run` (`overwriting`); once the new run has saved a checkpoint of its own (last.pt), the old files are
deleted, and until then they come back: when the new run ends without one (an error, Ctrl-C, a divergence at step
2), and also when it never ended at all (`kill -9`, a power cut), because `claim_run_folder` settles a
`.previous-run` it finds before anything else happens. Restoring moves last.pt back last, so a restore that is
itself interrupted is finished by the next start. A second --overwrite therefore always sets aside the original
run, never a failed attempt's leftovers.

`claim_run_folder` is what every run does first (tinylm.train.run): the lock, temporary files that interrupted
saves left, the set-aside files of an interrupted --overwrite, and the --resume / --overwrite rules.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import filelock

from ..errors import InputError, TinyLMError
from ..paths import check_output_folder, remove_stale_temporaries

LOCK_FILE = "run.lock"
OWNER_FILE = "run.owner"
SET_ASIDE = ".previous-run"  # where --overwrite keeps the old run's files until the new run has a checkpoint
CHECKPOINT = "last.pt"  # the file whose presence says that the new run saved a state of its own


class RunFolderBusy(TinyLMError, RuntimeError):
    """Another process holds the run folder's lock."""


@contextlib.contextmanager
def run_lock(folder: str | Path, say: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold `folder`'s run.lock for the duration of the block (creating the folder if needed; a folder this created
    and the run wrote nothing into is removed again at the end). Yields the owner file's path."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock, owner_path = filelock.FileLock(folder / LOCK_FILE, timeout=0), folder / OWNER_FILE
    try:
        lock.acquire()
    except filelock.Timeout:
        raise RunFolderBusy(f"{folder} is in use by another run ({_describe(_read_owner(owner_path))}): wait for it "
                            "to end or stop it, or train into another --out folder") from None
    try:
        if (dead := _read_owner(owner_path)) is not None:
            say(f"note: the run of {_describe(dead)} in {folder} ended without releasing it (killed, or the machine "
                "stopped); taking the run folder over")
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        _write_owner(owner_path, owner)  # a full disk fails here, and the lock is released below
        try:
            yield owner_path
        finally:
            owner_path.unlink(missing_ok=True)
    finally:
        lock.release()
        if {p.name for p in folder.iterdir()} == {LOCK_FILE}:  # the run wrote nothing: leave no trace of it
            (folder / LOCK_FILE).unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _write_owner(path: Path, owner: dict) -> None:
    """Write the owner file whole (a temporary file renamed over it), without fsync: other processes read the page
    cache, and an owner file a power cut loses only means no note at the next start."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(owner, f)
        os.replace(temporary, path)
    except OSError as error:
        if error.errno is not None:  # the temporary file's name would mean nothing to the reader
            error.filename, error.filename2 = str(path), None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _read_owner(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none, or unreadable: nobody is named
        return None
    return owner if isinstance(owner, dict) else None


def _describe(owner: dict | None) -> str:
    if owner is None:
        return "a process that has not written its name yet"
    return f"process {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}"


def claim_run_folder(out: Path, held: contextlib.ExitStack, is_main: bool, resume: bool, overwrite: bool,
                     say: Callable[[str], None] = print) -> None:
    """Check that `out` can hold a run and take it for this run until `held` closes (rank 0 speaks for all ranks):
    settle what an interrupted --overwrite left, then refuse a folder that holds a run unless resuming or
    overwriting it, and --resume without a last.pt."""
    check_output_folder(out)  # now, not at the first save
    if is_main:  # before the folder is read or changed
        held.enter_context(run_lock(out, say))
        if stale := remove_stale_temporaries(out):
            say(f"removed {len(stale)} temporary file(s) that interrupted saves left in {out}")
        if (out / SET_ASIDE).is_dir():
            _settle(out, say)
    if (out / CHECKPOINT).exists() and not (resume or overwrite):
        raise InputError(f"{out} already holds a run. Pass --resume to continue it, --overwrite to start afresh "
                         "(its checkpoints will be replaced), or --out to use another folder.")
    if resume and not (out / CHECKPOINT).exists():
        raise InputError(f"--resume: {out} has no last.pt to continue from; drop --resume to start a new run "
                         "(or the --out, or the options such as --arch, that named the run's folder).")


@contextlib.contextmanager
def overwriting(out: Path, files: Iterable[str], enabled: bool = True, say: Callable[[str], None] = print):
    """For the block, the old run's `files` wait in out/SET_ASIDE; after it they are deleted if the new run saved a
    checkpoint and put back (over anything the new run began, such as its metrics.jsonl) if it did not. Disabled,
    the block runs as it is (a resume, or a rank that does not write)."""
    if not enabled:
        yield
        return
    folder = out / SET_ASIDE
    folder.mkdir()  # claim_run_folder settled any earlier one
    for name in files:
        if (out / name).exists():
            (out / name).replace(folder / name)
    try:
        yield
    finally:
        _settle(out, say, quiet=True)


def _settle(out: Path, say: Callable[[str], None], quiet: bool = False) -> None:
    """Retire the set-aside old run if the new one has a checkpoint, else restore it (last.pt last)."""
    folder = out / SET_ASIDE
    if (out / CHECKPOINT).exists():
        shutil.rmtree(folder)
        return
    old = sorted(folder.iterdir(), key=lambda path: path.name == CHECKPOINT)  # last.pt moves last
    for path in old:
        path.replace(out / path.name)
    folder.rmdir()
    if not quiet and old:
        say(f"note: an --overwrite of {out} ended before its first checkpoint; the previous run is back")
