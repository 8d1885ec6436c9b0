"""A run folder: one run at a time in it, and an --overwrite that readers never see half-done.

`run_lock` holds the kernel's lock on run.lock (freed however the process ends) and names the holder in run.owner.
--overwrite sets the old run's files aside in .previous-run until the new run saves its first last.pt, then deletes
them; a new run that ends without one gets them back, at once or, after a SIGKILL, when `claim_run_folder` (what
every run does first, under the lock) settles the folder. Files move one at a time through .previous-run.moving,
which one rename turns into .previous-run or makes from it. What readers see (`run_file`, behind find_checkpoint):
- .previous-run.moving exists (setting aside, or putting back): each file from there where it is, else from the
  folder; the new run has written nothing yet or its files are gone, so this is the complete old run;
- .previous-run exists and the folder has no last.pt (the new run before its first last.pt, even with a best.pt of
  its own, as GRPO writes at step 0): the old run, from .previous-run;
- otherwise (no overwrite, or the new run's last.pt saved while .previous-run is deleted): the folder itself.
A SIGKILL between any two renames or deletions leaves one of these three states, which the next start settles.
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
CHECKPOINT = "last.pt"  # the file whose presence says that the new run saved a state of its own
SET_ASIDE = ".previous-run"  # the old run's files, all of them, until the new run has its CHECKPOINT
MOVING = ".previous-run.moving"  # the old run's files on their way into SET_ASIDE or back out of it


class RunFolderBusy(TinyLMError, RuntimeError):
    """Another process holds the run folder's lock."""


@contextlib.contextmanager
def run_lock(folder: str | Path, say: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold `folder`'s run.lock for the duration of the block (checking and creating the folder if needed: the
    folders this created are removed again at the end if the run wrote nothing into them). Yields the owner file's
    path.

    The lock is the kernel's (filelock: `flock` on Unix), released when the process ends however it ends, so a
    crashed run never blocks the folder. run.owner (pid, host, start time) names the holder for the message a second
    run gets (`RunFolderBusy`) and is removed when the run ends: one found at the start means its run died, which a
    note says. run.lock itself stays (removing a lock file that another process may have just opened would let two
    runs lock two different files of that name)."""
    folder = Path(folder)
    created = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    check_output_folder(folder)
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
            with contextlib.suppress(OSError):  # a folder that something else wrote into meanwhile stays
                for path in created:
                    path.rmdir()


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
                     files: Iterable[str], say: Callable[[str], None] = print) -> None:
    """Check that `out` can hold a run and take it for this run until `held` closes (rank 0 speaks for all ranks):
    settle what an interrupted --overwrite left (`files`: what this run writes, which a new run that never saved a
    last.pt may have begun), then refuse a folder that holds a run unless resuming or overwriting it, and --resume
    without a last.pt."""
    if not is_main:
        check_output_folder(out)  # now, not at the first save
    else:  # before the folder is read or changed
        held.enter_context(run_lock(out, say))  # which checks `out` first
        if stale := remove_stale_temporaries(out):
            say(f"removed {len(stale)} temporary file(s) that interrupted saves left in {out}")
        _settle(out, files, say)
    if (out / CHECKPOINT).exists() and not (resume or overwrite):
        raise InputError(f"{out} already holds a run. Pass --resume to continue it, --overwrite to start afresh "
                         "(its checkpoints will be replaced), or --out to use another folder.")
    if resume and not (out / CHECKPOINT).exists():
        raise InputError(f"--resume: {out} has no last.pt to continue from; drop --resume to start a new run "
                         "(or the --out, or the options such as --arch, that named the run's folder).")


def run_file(folder: str | Path, name: str) -> Path:
    """Where readers find the run's file `name` in `folder`, whatever state an --overwrite left (module docstring)."""
    folder = Path(folder)
    moving = folder / MOVING
    if moving.is_dir():
        return moving / name if (moving / name).exists() else folder / name
    if (folder / SET_ASIDE).is_dir() and not (folder / CHECKPOINT).exists():
        return folder / SET_ASIDE / name
    return folder / name


@contextlib.contextmanager
def overwriting(out: Path, files: Iterable[str], enabled: bool = True, say: Callable[[str], None] = print):
    """For the block, the old run's `files` wait in out/SET_ASIDE; after it they are deleted if the new run saved a
    last.pt, and put back (what the new run began of `files` deleted first) if it did not. Disabled, the block runs
    as it is (a resume, or a rank that does not write)."""
    if not enabled:
        yield
        return
    files = tuple(files)
    moving = out / MOVING
    moving.mkdir()  # claim_run_folder settled any earlier one
    for name in files:
        if (out / name).exists():
            (out / name).replace(moving / name)
    moving.rename(out / SET_ASIDE)  # the old run is whole in SET_ASIDE, and the folder is the new run's
    try:
        yield
    finally:
        _settle(out, files, say, quiet=True)


def _settle(out: Path, files: Iterable[str], say: Callable[[str], None], quiet: bool = False) -> None:
    """Finish what an --overwrite left, each step keeping one of the states of the module docstring: SET_ASIDE is
    deleted if the new run has its last.pt; else the new run's files go, SET_ASIDE becomes MOVING again, and MOVING's
    files move back into the folder."""
    set_aside, moving = out / SET_ASIDE, out / MOVING
    if set_aside.is_dir():
        if (out / CHECKPOINT).exists():
            shutil.rmtree(set_aside)
            return
        for name in {*files, *(path.name for path in set_aside.iterdir())}:
            (out / name).unlink(missing_ok=True)
        set_aside.rename(moving)
    if not moving.is_dir():
        return
    old = list(moving.iterdir())
    for path in old:
        path.replace(out / path.name)
    moving.rmdir()
    if not quiet and old:
        say(f"note: an --overwrite of {out} ended before its first checkpoint; the previous run is back")
