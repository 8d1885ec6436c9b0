"""Atomic writes: complete or untouched, with ordinary file permissions."""

import os
import stat

import pytest

from tinylm.files import atomic_write


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
