"""The editable install of README's first command, used from outside the clone.

A learner who cloned into a folder named tinylm and then went up one folder ran `python -m tinylm.train` and got
`No module named 'tinylm.data.corpora'`: there, the clone folder is a namespace package named tinylm, which won
over setuptools' editable import hook. pyproject.toml's package-dir makes the install a .pth file that puts the clone
on sys.path instead, where its tinylm/__init__.py wins over any namespace folder. The test reproduces that folder
with a link named tinylm to this repository, for the tinylm that is installed editable from this repository; an
install of another kind, or from another clone, is not what it can check.
"""

import importlib.metadata
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO


def editable_install_of_this_repository() -> None:
    """Skip unless tinylm is installed editable from this repository."""
    # what pip installed (a tinylm.egg-info that a build left in the clone is no install)
    found = [text for dist in importlib.metadata.distributions(name="tinylm")
             if (text := dist.read_text("direct_url.json"))]
    if not found:
        pytest.skip("tinylm is not installed here by pip (imported through PYTHONPATH or the working folder)")
    origin = json.loads(found[0])
    if not origin.get("dir_info", {}).get("editable"):
        pytest.skip(f"tinylm is installed from {origin.get('url')}, not editable")
    folder = Path(urllib.request.url2pathname(urllib.parse.urlparse(origin["url"]).path))
    if folder.resolve() != REPO.resolve():
        pytest.skip(f"tinylm is installed editable from {folder}, not from this repository ({REPO})")


def test_the_installed_clone_imports_from_its_parent_folder_and_from_a_script_beside_it(tmp_path):
    editable_install_of_this_repository()
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "tinylm").symlink_to(REPO, target_is_directory=True)  # the clone, seen from the folder above it
    probe = "import tinylm.data.corpora, tinylm; print(tinylm.GPT.__name__, tinylm.__file__)"
    (parent / "script.py").write_text(probe + "\n")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}  # the install alone
    expected = f"GPT {REPO / 'tinylm' / '__init__.py'}\n"
    for command, cwd in (([sys.executable, "-c", probe], parent), ([sys.executable, "script.py"], parent),
                         ([sys.executable, str(parent / "script.py")], tmp_path)):
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stdout) == (0, expected), result.stderr
    result = subprocess.run([sys.executable, "-m", "tinylm.train", "--help"], cwd=parent, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m tinylm.train "), result.stderr
