"""Test-session defaults: tiny shapes for notebooks, printed results instead of widgets, the offline
mirror, and throwaway data and run folders.

The notebooks' kernels inherit this process's environment, so setting the variables here makes
`pytest` alone run every notebook under the `smoke` profile, offline, writing its prepared data and runs
into a temporary folder that is deleted at the end: a test session never touches the learner's data/
or runs/. Values already set win.
"""

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TINYLM_PROFILE", "smoke")
os.environ.setdefault("TINYLM_WIDGETS", "0")  # no widget front end here: the playground prints instead
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
_mirror = Path(__file__).resolve().parent.parent / "shared" / "data"
if "TINYLM_DATA_MIRROR" not in os.environ and (_mirror / "MANIFEST.md").is_file():
    os.environ["TINYLM_DATA_MIRROR"] = str(_mirror)
if "TIKTOKEN_CACHE_DIR" not in os.environ and os.environ.get("TINYLM_DATA_MIRROR"):
    os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(os.environ["TINYLM_DATA_MIRROR"]) / "tiktoken_cache")

_scratch = Path(tempfile.mkdtemp(prefix="tinylm-tests-"))
os.environ.setdefault("TINYLM_DATA_DIR", str(_scratch / "data"))
os.environ.setdefault("TINYLM_RUNS_DIR", str(_scratch / "runs"))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_scratch, ignore_errors=True)
