"""Default data and run folders: the repository's own, unless the environment says otherwise."""

import os
from pathlib import Path

from tinylm import paths


def test_environment_overrides_the_default_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("TINYLM_RUNS_DIR", str(tmp_path / "r"))
    assert paths.data_dir() == tmp_path / "d"
    assert paths.runs_dir() == tmp_path / "r"


def test_in_a_clone_the_folders_are_the_repositorys(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYLM_DATA_DIR", raising=False)
    monkeypatch.delenv("TINYLM_RUNS_DIR", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "tinylm").mkdir()
    monkeypatch.setattr(paths, "_REPO", tmp_path)
    monkeypatch.chdir(Path("/"))
    assert paths.data_dir() == tmp_path / "data"
    assert paths.runs_dir() == tmp_path / "runs"


def test_without_a_clone_the_folders_follow_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYLM_DATA_DIR", raising=False)
    monkeypatch.setattr(paths, "_REPO", tmp_path / "site-packages")
    monkeypatch.chdir(tmp_path)
    assert paths.data_dir() == tmp_path / "data"


def test_shown_prints_repository_paths_relative_to_the_working_directory_and_others_as_they_are(tmp_path,
                                                                                                 monkeypatch):
    repo = Path(paths.__file__).resolve().parent.parent
    monkeypatch.chdir(repo / "notebooks")  # where a notebook runs
    assert paths.shown(repo / "runs" / "x") == os.path.join("..", "runs", "x")
    monkeypatch.chdir(repo)  # where a command runs
    assert paths.shown(repo / "runs" / "x") == os.path.join("runs", "x")
    assert paths.shown(tmp_path / "y") == str(tmp_path / "y")  # outside the repository: no ../../ chains


def test_write_json_replaces_the_file_whole_in_utf8_and_leaves_it_when_the_payload_fails(tmp_path):
    import json

    import pytest

    path = tmp_path / "deep" / "report.json"
    assert paths.write_json(path, {"loss": 2.5, "note": "± 0.1"}) == path
    assert path.read_text(encoding="utf-8") == '{\n "loss": 2.5,\n "note": "± 0.1"\n}\n'
    with pytest.raises(TypeError):
        paths.write_json(path, {"loss": object()})  # not JSON: the old file stays, no temporary left
    assert json.loads(path.read_text(encoding="utf-8"))["loss"] == 2.5
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]
