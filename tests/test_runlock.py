"""One run per run folder: run.lock is claimed atomically, names its owner, is removed however the run
ends, and is taken over only when its process is known to be gone."""

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import mounted_tmpfs
from tinylm.cli.errors import describe
from tinylm.train import runlock
from tinylm.train.runlock import LOCK_FILE, RunFolderBusy, run_lock


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_lock_names_its_owner_refuses_a_second_claim_and_goes_however_the_block_ends(tmp_path):
    folder = tmp_path / "run"
    with run_lock(folder) as path:
        holder = json.loads(path.read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname()) and holder["started"]
        with pytest.raises(RunFolderBusy, match=rf"{folder} is in use by another run \(process {os.getpid()} on "):
            with run_lock(folder):
                pass
        assert json.loads(path.read_text()) == holder, "a refused claim leaves the owner's lock alone"
        (folder / "metrics.jsonl").write_text("{}\n")
    assert not path.exists() and folder.is_dir(), "the lock goes, what the run wrote stays"
    with pytest.raises(KeyboardInterrupt):
        with run_lock(folder):
            raise KeyboardInterrupt
    assert not path.exists()
    with run_lock(tmp_path / "unused"):
        pass
    assert not (tmp_path / "unused").exists(), "a folder the lock created and nothing used is removed again"


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


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_note(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    pid = dead_pid()
    (folder / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "yesterday"}))
    notes = []
    with run_lock(folder, say=notes.append) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert notes == [f"note: {path} was left by process {pid} (started yesterday), which is no longer running; "
                     "taking the run folder over"]


def test_a_lock_of_a_live_process_or_of_another_host_is_not_taken_over(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for holder in ({"pid": live.pid, "host": socket.gethostname(), "started": "now"},
                       {"pid": dead_pid(), "host": "another-machine", "started": "now"}):  # its pid cannot be checked
            folder = tmp_path / holder["host"]
            folder.mkdir()
            (folder / LOCK_FILE).write_text(json.dumps(holder))
            with pytest.raises(RunFolderBusy, match=rf"process {holder['pid']} on {holder['host']}, started now.*"
                                                    rf"If no run is using it, delete {folder / LOCK_FILE}"):
                with run_lock(folder):
                    pass
            assert json.loads((folder / LOCK_FILE).read_text()) == holder
    finally:
        live.kill()
        live.wait()


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 KiB file system (tmpfs), mounted for the test and unmounted after it."""
    with mounted_tmpfs(tmp_path / "disk", "64k") as mount_point:
        yield mount_point


def fill(folder) -> None:
    """Write into `folder` until its file system is full."""
    with open(folder / "filler", "wb", buffering=0) as f:
        with pytest.raises(OSError) as full:
            while True:
                f.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC


def test_a_full_disk_at_the_start_is_a_one_line_error_and_leaves_no_lock_behind(small_disk):
    folder = small_disk / "run"
    folder.mkdir()
    fill(small_disk)
    with pytest.raises(OSError) as full:
        with run_lock(folder):
            pass
    assert list(folder.iterdir()) == [], "no lock (and no temporary file) is left"
    assert describe(full.value) == (f"No space left on device: {folder / LOCK_FILE}; the disk is full: free some "
                                    "space, or write elsewhere (--out), and run again; a file that was being replaced "
                                    "(a checkpoint, a token file) keeps its previous version")
    (small_disk / "filler").unlink()
    with run_lock(folder) as path:  # space again: the next run starts
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_write_that_fails_leaves_no_lock_behind(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    folder = tmp_path / "run"
    folder.mkdir()
    with monkeypatch.context() as patch:
        patch.setattr(runlock.json, "dump", disk_full)
        with pytest.raises(OSError, match="No space left on device") as full:
            with run_lock(folder):
                pass
    assert full.value.filename == str(folder / LOCK_FILE) and list(folder.iterdir()) == []
    with run_lock(folder):
        pass


def test_an_empty_lock_is_taken_over_once_it_is_a_few_seconds_old(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / LOCK_FILE
    lock.touch()
    os.utime(lock, (time.time() - 60, time.time() - 60))
    notes = []
    with run_lock(folder, say=notes.append) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert notes == [f"note: {lock} named no owner (a run that could not write it, e.g. on a full disk, left it "
                     "behind); taking the run folder over"]

    # A young empty lock may be an owner about to write its name (a tinylm that wrote the file after creating it):
    # it is waited for, and then it counts.
    monkeypatch.setattr(runlock, "EMPTY_LOCK_SECONDS", 2.0)
    lock.touch()
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}
    writer = threading.Timer(0.3, lambda: lock.write_text(json.dumps(owner)))
    writer.start()
    with pytest.raises(RunFolderBusy, match=f"process {os.getpid()} on "):
        with run_lock(folder):
            pass
    writer.join()
