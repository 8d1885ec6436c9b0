"""A run folder: one run at a time in it, and an --overwrite that leaves the old run in place until the new one has
its first checkpoint.

`run_lock` holds the kernel's lock on run.lock and names the holder in run.owner. An --overwrite writes the new run
in .next-run and swaps when an evaluation saves its first last.pt (a Ctrl-C before then saves nothing): renaming
.next-run (with the names of its files) to .next-run.swapping commits the swap, then the old files are replaced.
Until the commit every reader (`run_file`, or a person's `ls`) sees the old run; a SIGKILL at any point leaves a
state the next start settles (`claim_run_folder`): an uncommitted .next-run is deleted, a committed swap finished.
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

from ..distributed import barrier
from ..errors import InputError, TinyLMError
from ..paths import atomic_write, check_output_folder, remove_stale_temporaries
from .options import RunOptions

LOCK_FILE = "run.lock"
OWNER_FILE = "run.owner"
CHECKPOINT = "last.pt"  # the file whose saving commits the swap
STAGED = ".next-run"  # the new run's files until its first CHECKPOINT
SWAPPING = ".next-run.swapping"  # STAGED once committed, while its files replace the old run's
COMMITTED = ".files"  # in SWAPPING: the names of the new run's files


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


def claim_run_folder(run: RunOptions, held: contextlib.ExitStack, is_main: bool, files: Iterable[str],
                     say: Callable[[str], None] = print) -> None:
    """Take the run's folder (run.out) until `held` closes (rank 0 speaks for all ranks): settle what an interrupted
    --overwrite left (`files`: what a run writes), then refuse a folder that holds a run unless resuming or
    overwriting it, and --resume without a last.pt."""
    out = Path(run.out)
    if is_main:  # before the folder is read or changed
        held.enter_context(run_lock(out, say))  # which checks `out` first
        if stale := remove_stale_temporaries(out):
            say(f"removed {len(stale)} temporary file(s) that interrupted saves left in {out}")
        _settle(out, files, say)
    barrier()  # the other ranks look at the folder once rank 0 has settled it (it may remove an empty one)
    if not is_main:
        check_output_folder(out)  # now, not at the first save
    # its test file must be gone before rank 0 goes on: claiming the folder again, rank 0 removes stale temporaries
    barrier()
    check_run_folder(out, run.resume, run.overwrite)


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """An InputError for a folder that holds a run unless resuming or overwriting it, and for --resume without a
    last.pt: what every run checks before anything (a base model included) is trained."""
    if run_file(out, CHECKPOINT).exists() and not (resume or overwrite):
        raise InputError(f"{out} already holds a run. Pass --resume to continue it, --overwrite to start afresh "
                         "(its checkpoints will be replaced), or --out to use another folder.")
    if resume and not run_file(out, CHECKPOINT).exists():
        raise InputError(f"--resume: {out} has no last.pt to continue from; drop --resume to start a new run "
                         "(or the --out, or the options such as --arch, that named the run's folder).")


def run_file(folder: str | Path, name: str) -> Path:
    """Where readers find the run's file `name` in `folder`: during a committed swap, the new run's alone (in the
    swap where it still is); otherwise the folder's (module docstring)."""
    folder = Path(folder)
    swapping = folder / SWAPPING
    new = _committed(swapping)
    if new is None:
        return folder / name
    return swapping / name if name not in new or (swapping / name).exists() else folder / name


def _committed(swapping: Path) -> set[str] | None:
    """The names of the new run's files that a committed swap moves in, None where no swap is under way."""
    try:
        return set((swapping / COMMITTED).read_text(encoding="utf-8").split("\n")) - {""}
    except FileNotFoundError:
        return None


class Staging:
    """Where a run writes: `out` itself, or under --overwrite of a run there, out/STAGED until `swap` (when the new
    run saves its first last.pt) moves its files over the old run's. `path` is the folder to write into now."""

    def __init__(self, out: Path, files: Iterable[str], enabled: bool):
        self.out, self.files = out, tuple(files)
        self.staged = enabled and any((out / name).exists() for name in self.files)  # a run is there to replace
        self.path = out / STAGED if self.staged else out
        if self.staged:
            self.path.mkdir()  # claim_run_folder settled any earlier one

    def swap(self) -> None:
        """Commit the new run (one rename of its folder, which names its files), then replace the old run's files
        with its own."""
        if not self.staged:
            return
        names = [p.name for p in self.path.iterdir()]
        with atomic_write(self.path / COMMITTED) as f:
            f.write("\n".join(names).encode("utf-8"))
        (self.out / STAGED).rename(self.out / SWAPPING)
        self.staged, self.path = False, self.out
        _finish_swap(self.out, self.files)

    def discard(self) -> bool:
        """A run that ends without a checkpoint of its own: its staged files go, the old run stays as it was. True
        where there were staged files."""
        if not self.staged:
            return False
        shutil.rmtree(self.out / STAGED, ignore_errors=True)
        self.staged, self.path = False, self.out
        return True


def _finish_swap(out: Path, files: Iterable[str]) -> None:
    """The committed swap's files replace the old run's, one atomic rename each, after the old run's files that the
    new run has none of are deleted; a swap killed half-way finishes the same way, as its names say what is new."""
    swapping = out / SWAPPING
    new = _committed(swapping)
    if new is not None:
        for name in set(files) - new:
            (out / name).unlink(missing_ok=True)
        for name in new:
            if (swapping / name).exists():
                (swapping / name).replace(out / name)
    shutil.rmtree(swapping)


def _settle(out: Path, files: Iterable[str], say: Callable[[str], None]) -> None:
    """Finish what an --overwrite left: a committed swap is completed, an uncommitted .next-run deleted."""
    if (out / SWAPPING).is_dir():
        _finish_swap(out, files)
    if (out / STAGED).is_dir():
        shutil.rmtree(out / STAGED)
        say(f"note: an --overwrite of {out} ended before its first checkpoint; the previous run is as it was")
