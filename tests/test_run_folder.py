"""A run folder: one run at a time (the kernel's lock, an owner file that names the holder and is gone however the
run ends), and an --overwrite that leaves the old run in place, where a person's `ls` finds it, until the new run
has its first checkpoint, also when either is killed with SIGKILL."""

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import REPO, mounted_tmpfs, run_cli
from tinylm.cli.errors import describe
from tinylm.errors import InputError
from tinylm.paths import atomic_write
from tinylm.train.checkpoint import find_checkpoint
from tinylm.train.options import RunOptions
from tinylm.train.run_folder import (
    OWNER_FILE,
    STAGED,
    SWAPPING,
    RunFolderBusy,
    Staging,
    claim_run_folder,
    run_file,
    run_lock,
)

HOLD = """
import sys, time
from tinylm.train.run_folder import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def holder(folder):
    """A process that holds `folder`'s lock until it is killed (it says when it holds it)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    return process


def test_the_lock_names_its_owner_refuses_a_second_claim_and_goes_however_the_block_ends(tmp_path):
    folder = tmp_path / "run"
    with run_lock(folder) as path:
        owner = json.loads(path.read_text())
        assert (owner["pid"], owner["host"]) == (os.getpid(), socket.gethostname()) and owner["started"]
        with pytest.raises(RunFolderBusy, match=rf"{folder} is in use by another run \(process {os.getpid()} on "):
            with run_lock(folder):
                pass
        assert json.loads(path.read_text()) == owner, "a refused claim leaves the owner's file alone"
        (folder / "metrics.jsonl").write_text("{}\n")
    assert not path.exists() and (folder / "metrics.jsonl").is_file(), "the owner goes, what the run wrote stays"
    with pytest.raises(KeyboardInterrupt):
        with run_lock(folder):
            raise KeyboardInterrupt
    assert not path.exists()
    with run_lock(folder):  # free again
        pass
    with run_lock(tmp_path / "unused"):
        pass
    assert not (tmp_path / "unused").exists(), "a folder the lock created and nothing used is removed again"


def test_a_run_that_fails_before_writing_leaves_no_folder_it_created_through_claim_run_folder(tmp_path):
    """A bad --resume or no network before the first step left the empty run folder behind: claim_run_folder made it
    (checking it as an output folder) before run_lock looked whether it was new. The folders the claim made, parents
    included, go again; one that already was there stays."""
    nested = tmp_path / "new" / "runs" / "run"
    with pytest.raises(InputError, match="has no last.pt to continue from"):
        with contextlib.ExitStack() as held:
            claim_run_folder(RunOptions(out=nested, resume=True), held, True, files=FILES)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "there").mkdir()
    with pytest.raises(ConnectionError):  # e.g. the data's download, after the claim
        with contextlib.ExitStack() as held:
            claim_run_folder(RunOptions(out=tmp_path / "there" / "run"), held, True, files=FILES)
            raise ConnectionError("offline")
    assert [p.name for p in tmp_path.iterdir()] == ["there"] and list((tmp_path / "there").iterdir()) == []
    with contextlib.ExitStack() as held:
        claim_run_folder(RunOptions(out=nested), held, True, files=FILES)
        (nested / "metrics.jsonl").write_text("{}\n")
    assert sorted(p.name for p in nested.iterdir()) == ["metrics.jsonl", "run.lock"], "what a run wrote stays"


def test_of_threads_racing_for_the_lock_exactly_one_wins(tmp_path):
    start, outcomes = threading.Barrier(8), []

    def claim():
        start.wait()
        try:
            with run_lock(tmp_path / "run"):
                outcomes.append("won")
                start.wait()  # hold the lock until every other thread has tried
        except RunFolderBusy:
            outcomes.append("busy")
            start.wait()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["busy"] * 7 + ["won"]


def test_a_live_process_keeps_the_folder_and_a_killed_ones_lock_is_taken_over_with_a_note(tmp_path):
    folder = tmp_path / "run"
    process = holder(folder)
    try:
        with pytest.raises(RunFolderBusy, match=rf"process {process.pid} on {socket.gethostname()}, started "):
            with run_lock(folder):
                pass
    finally:
        process.send_signal(signal.SIGKILL)  # no chance to remove its owner file
        process.wait()
    notes = []
    with run_lock(folder, say=notes.append) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    [note] = notes
    assert note.startswith(f"note: the run of process {process.pid} on ") and "taking the run folder over" in note


def test_a_full_disk_at_the_start_is_a_one_line_error_and_leaves_no_owner_behind(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "64k") as disk:
        folder = disk / "run"
        folder.mkdir()
        with open(disk / "filler", "wb", buffering=0) as f:
            with pytest.raises(OSError) as full:
                while True:
                    f.write(b"\0" * 4096)
        assert full.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as full:
            with run_lock(folder):
                pass
        assert not (folder / OWNER_FILE).exists()
        assert describe(full.value).startswith(f"No space left on device: {folder / OWNER_FILE}; the disk is full")
        (disk / "filler").unlink()
        with run_lock(folder, say=pytest.fail):  # space again: the next run starts, with no note of a dead owner
            pass


FILES = ("best.pt", "last.pt", "metrics.jsonl")


def old_run(folder, files=FILES):
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).write_text(f"old {name}")
    return {name: f"old {name}" for name in files}


def contents(folder):
    return {p.name: p.read_text() for p in folder.iterdir() if p.is_file() and p.name not in ("run.lock", OWNER_FILE)}


def seen(folder):
    """The run's files as readers see them (run_file), and the checkpoint find_checkpoint gives them."""
    view = {name: run_file(folder, name).read_text() for name in FILES if run_file(folder, name).is_file()}
    checkpoint = find_checkpoint(folder).read_text() if ("best.pt" in view or "last.pt" in view) else None
    return view, checkpoint


def write_new(staging, name):
    with atomic_write(staging.path / name) as f:
        f.write(f"new {name}".encode())
    if name == "last.pt":  # as tinylm.train.run.training's hook on the Trainer's saves does
        staging.swap()


def test_an_overwrite_writes_beside_the_old_run_and_swaps_at_its_first_checkpoint(tmp_path):
    folder = tmp_path / "run"
    old = old_run(folder)
    staging = Staging(folder, FILES, enabled=True)
    for name in ("metrics.jsonl", "best.pt"):
        write_new(staging, name)
    assert contents(folder) == old and seen(folder)[0] == old  # the folder, and readers, still hold the old run
    staging.discard()  # diverged before its first last.pt
    assert contents(folder) == old and not (folder / STAGED).exists()
    staging = Staging(folder, FILES, enabled=True)
    write_new(staging, "last.pt")
    assert contents(folder) == {"last.pt": "new last.pt"} and staging.path == folder  # the old best.pt, metrics: gone
    assert not {STAGED, SWAPPING} & {p.name for p in folder.iterdir()}
    fresh = Staging(tmp_path / "new", FILES, enabled=True)
    assert fresh.path == tmp_path / "new" and not fresh.staged  # nothing to replace: the run writes in place


def claim(folder, say=print, **rules):
    with contextlib.ExitStack() as held:
        claim_run_folder(RunOptions(out=folder, **rules), held, True, files=FILES, say=say)


def test_a_killed_overwrite_that_saved_no_checkpoint_is_gone_at_the_next_start(tmp_path):
    folder = tmp_path / "run"
    old = old_run(folder)
    staging = Staging(folder, FILES, enabled=True)  # then killed: the process never discards it
    write_new(staging, "metrics.jsonl")
    notes = []
    with pytest.raises(InputError, match="already holds a run"):  # the old run is all there is; a plain run refuses it
        claim(folder, say=notes.append)
    assert contents(folder) == old and not (folder / STAGED).exists()
    assert notes == [f"note: an --overwrite of {folder} ended before its first checkpoint; the previous run is as it "
                     "was"]


def test_a_killed_swap_is_finished_at_the_next_start(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    old_run(folder)
    staging = Staging(folder, FILES, enabled=True)
    for name in ("metrics.jsonl", "last.pt"):
        with atomic_write(staging.path / name) as f:
            f.write(f"new {name}".encode())
    with monkeypatch.context() as patched:
        patched.setattr("tinylm.train.run_folder._finish_swap", lambda out, files: (_ for _ in ()).throw(
            KeyboardInterrupt()))  # killed just after the commit
        with pytest.raises(KeyboardInterrupt):
            staging.swap()
    assert (folder / SWAPPING).is_dir()
    assert seen(folder)[0] == {"last.pt": "new last.pt", "metrics.jsonl": "new metrics.jsonl"}  # the new run alone
    claim(folder, resume=True)
    assert contents(folder) == {"last.pt": "new last.pt", "metrics.jsonl": "new metrics.jsonl"}


def quiet(line):
    pass


def sigkilled(action, at):
    """Run `action` in a forked child that sends itself SIGKILL just before its `at`-th change to the run's files (a
    file or folder created, renamed, replaced or deleted; the lock's files aside); returns whether the kill came
    (False: it ran to the end)."""
    pid = os.fork()
    if pid == 0:
        try:
            changes = 0

            def counted(change):
                def changing(path, *args, **kwargs):
                    nonlocal changes
                    if not Path(path).name.lstrip(".").startswith(("run.lock", "run.owner")):
                        if changes == at:
                            os.kill(os.getpid(), signal.SIGKILL)
                        changes += 1
                    return change(path, *args, **kwargs)
                return changing

            for name in ("open", "mkdir", "rename", "replace", "unlink", "rmdir"):  # os.open: only mkstemp creates
                setattr(os, name, counted(getattr(os, name)))
            action()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def new_run(folder, saves):
    """A new run under --overwrite (its folder claimed first, as every run's is): metrics.jsonl and best.pt, then
    last.pt if it `saves`, else it fails before its first last.pt."""
    with contextlib.ExitStack() as held:
        claim_run_folder(RunOptions(out=folder, overwrite=True), held, True, files=FILES, say=quiet)
        staging = Staging(folder, FILES, enabled=True)
        held.callback(staging.discard)
        with contextlib.suppress(RuntimeError):
            for name in ("metrics.jsonl", "best.pt", "last.pt" if saves else None):
                if name is None:
                    raise RuntimeError("diverged before its first last.pt")
                write_new(staging, name)


@pytest.mark.parametrize("old_files", [FILES, ("last.pt", "metrics.jsonl")], ids=["old", "old-without-best.pt"])
@pytest.mark.parametrize("saves", [True, False], ids=["saves-last.pt", "fails-first"])
def test_a_sigkill_between_any_two_changes_leaves_the_old_run_or_the_new_ones_first_checkpoint(
        tmp_path, old_files, saves):
    """Killed before each change an --overwrite makes (the new run's saves beside the old run, the swap, its
    deletions), and then again before each change of the next start's settling: readers see the whole old run or
    the new run with its last.pt, never a mix, and what they see is what the next start settles the folder into.
    Until the swap, the folder itself holds the old run."""
    old = {name: f"old {name}" for name in old_files}
    new = {name: f"new {name}" for name in FILES}
    at, outcomes = 0, set()
    while True:
        folder = tmp_path / f"run{at}"
        old_run(folder, old_files)
        killed = sigkilled(lambda: new_run(folder, saves), at)
        view, checkpoint = seen(folder)
        assert view in (old, new), f"killed before change {at}: readers see {view}"
        assert view == new or contents(folder) == old, f"killed before change {at}: the folder holds a mix"
        assert checkpoint == view.get("best.pt", view.get("last.pt"))
        settling = 0
        while sigkilled(lambda: claim(folder, say=quiet, overwrite=True), settling):  # the next start, killed too
            assert seen(folder) == (view, checkpoint), f"killed before change {at}, then {settling} of settling"
            settling += 1
        claim(folder, say=quiet, overwrite=True)
        assert contents(folder) == view and not {STAGED, SWAPPING} & {p.name for p in folder.iterdir()}
        outcomes.add("old" if view == old else "new")
        if not killed:
            break
        at += 1
    assert outcomes == ({"old", "new"} if saves else {"old"}) and at > 4


def test_train_overwrite_killed_in_its_first_steps_then_a_second_that_diverges_keep_the_original_run(
        tmp_path, data_root):
    """The probe's case end to end: SIGKILL during `--overwrite`, then an `--overwrite` that diverges at once."""
    out = tmp_path / "run"
    first = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", out, data_dir=data_root)
    assert first.returncode == 0, first.stderr
    original = {name: (out / name).read_bytes() for name in ("best.pt", "last.pt", "metrics.jsonl")}
    env = {**os.environ, "TINYLM_DATA_DIR": str(data_root), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "tinylm.train", "shakespeare-char", "--profile", "smoke",
                                "--out", str(out), "--overwrite", "--max-steps", "1000000"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith("step "):  # training, before its first evaluation: no checkpoint of its own yet
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    assert (out / STAGED).is_dir()  # the new run's beginnings, beside the original, which a person's ls sees:
    assert {name: (out / name).read_bytes() for name in original} == original
    second = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", out, "--overwrite",
                     "--learning-rate", "1e6", data_dir=data_root)
    assert second.returncode == 1 and "training diverged" in second.stderr, second.stderr
    assert {name: (out / name).read_bytes() for name in original} == original
    assert not (out / STAGED).exists()
