"""One run per run folder: run.lock is claimed atomically, names its owner, is removed however the run
ends, and is taken over only when its process is known to be gone."""

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

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
