"""Atomic writes: complete or untouched, with ordinary file permissions."""

import os
import signal
import stat
import subprocess
import sys

import pytest

from tinylm.paths import atomic_write, remove_stale_temporaries


def test_a_written_file_gets_the_permissions_open_would_give(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f.bin") as f:
            f.write(b"data")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "f.bin").st_mode) == 0o644
    assert (tmp_path / "f.bin").read_bytes() == b"data"


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "f.bin") as f:
            f.write(b"partial")
            raise RuntimeError("crash")
    assert (tmp_path / "f.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_the_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    """A process killed mid-save cannot clean up after itself: its temporary stays until someone removes it."""
    script = ("import os, signal, sys\nfrom tinylm.paths import atomic_write\n"
              "with atomic_write(sys.argv[1]) as f:\n    f.write(b'partial')\n    os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "last.pt")], timeout=120)
    assert killed.returncode == -signal.SIGKILL
    [leftover] = tmp_path.glob(".last.pt.*.tmp")
    keep = ["best.pt", "notes.tmp", ".hidden", ".last.pt.tmp", ".x.toolongname.tmp"]  # not atomic_write's names
    for name in keep:
        (tmp_path / name).write_bytes(b"keep")
    assert remove_stale_temporaries(tmp_path) == [leftover]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
