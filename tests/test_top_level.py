"""The repository's top level holds what CONTRIBUTING.md's layout names and nothing else, so that a stray note or
scratch file committed there fails CI instead of greeting every reader of the repository."""

import fnmatch
import subprocess

import pytest

from tests.helpers import REPO

# Top-level entries a commit may hold (shell patterns).
ALLOWED = (".ci", ".github", ".gitattributes", ".gitignore", "README.md", "CONTRIBUTING.md", "LICENSE*",
           "requirements*.txt", "pyproject.toml", "conftest.py", "data", "docs", "notebooks", "scripts", "tests",
           "tinylm")


def unexpected_top_level(paths: list[str]) -> list[str]:
    """The top-level entries of `paths` (paths from the repository's root, as `git ls-files` lists them) that no
    pattern of ALLOWED names."""
    entries = {path.split("/", 1)[0] for path in paths if path}
    return sorted(entry for entry in entries if not any(fnmatch.fnmatchcase(entry, pattern) for pattern in ALLOWED))


def tracked_paths() -> list[str]:
    """Every path git tracks here; the test is skipped outside a git checkout (an unpacked source archive)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("git is not installed: the tracked files cannot be listed")
    if listed.returncode != 0:
        pytest.skip(f"{REPO} is not a git checkout: {listed.stderr.strip()}")
    return listed.stdout.split("\0")


def test_the_top_level_holds_only_what_the_layout_names():
    stray = unexpected_top_level(tracked_paths())
    assert stray == [], f"unexpected top-level entries (git rm them, or add them to ALLOWED with a reason): {stray}"


def test_a_stray_top_level_file_or_folder_is_found():
    paths = ["README.md", "LICENSE", "requirements-dev.txt", "tinylm/course/notebooks.py", ".ci/run", "LEAD_NOTE.txt",
             "notes/todo.md", "scripts/claims.py", "README.md.orig"]
    assert unexpected_top_level(paths) == ["LEAD_NOTE.txt", "README.md.orig", "notes"]
