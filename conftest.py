"""Test-session defaults: tiny shapes for notebooks, printed results instead of widgets, the offline
mirror, and throwaway data and run folders.

The notebooks' kernels inherit this process's environment, so setting the variables here makes
`pytest` alone run every notebook under the `smoke` profile, offline, writing its prepared data and runs
into a temporary folder that is deleted at the end: a test session never touches the learner's data/
or runs/. Values already set win.

In parallel (`pytest -n auto --dist loadfile`, pytest-xdist), each worker process writes into a scratch folder
of its own, so two notebooks that prepare the same dataset at once never write the same files. `--dist loadfile`
sends a file's tests to one worker: a notebook's cells run in order in its one kernel, and a module-scoped
fixture (a trained run, a server, a browser) is built once.

nbval runs each notebook with its exercises solved (tests/notebook_solutions.py writes the copies into
notebooks/solved/ and collects them in place of the notebooks), so that one run checks the lesson and its
exercises; a notebook named on the command line runs as it is.
"""

import os
import shutil
import signal
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
# An xdist worker inherits the environment of the session that started it, that session's scratch folders
# included (TINYLM_TESTS_SCRATCH names them); it replaces those with its own, and keeps folders the user chose.
_parent = os.environ.get("TINYLM_TESTS_SCRATCH")
for _variable, _name in (("TINYLM_DATA_DIR", "data"), ("TINYLM_RUNS_DIR", "runs")):
    if _variable not in os.environ or (_parent and os.environ[_variable] == str(Path(_parent) / _name)):
        os.environ[_variable] = str(_scratch / _name)
os.environ["TINYLM_TESTS_SCRATCH"] = str(_scratch)
# A session started in the background by a shell without job control (`nohup pytest &`, some CI runners) inherits
# SIGINT ignored, and passes that on to every command a test starts: the tests of what Ctrl-C does need it delivered.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers run side by side, about one per core: a second PyTorch thread in a worker, its notebook kernels or its
    # commands would wait for a core that another worker holds (tinylm.runtime.configure_backend says why).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    # Once per session: xdist's workers (which carry workerinput) start after the controller has written the copies.
    nbval = config.getoption("nbval_lax", False) or config.getoption("nbval", False)
    if nbval and not hasattr(config, "workerinput"):
        from tests.notebook_solutions import write_solved_copies

        write_solved_copies()


def pytest_ignore_collect(collection_path, config):
    """The notebooks themselves, when their solved copies run (a notebook named on the command line still runs)."""
    from tests.notebook_solutions import NOTEBOOKS

    if collection_path.suffix == ".ipynb" and collection_path.parent == NOTEBOOKS:
        return True
    return None


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_scratch, ignore_errors=True)
