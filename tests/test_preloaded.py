"""tests/preloaded.py: a command run as a forked child of a preloaded process ends as the same command in a process of
its own ends: the same exit status, standard output and error, folder, path, environment and randomness."""

import os
import subprocess
import sys

import pytest

from tests import preloaded
from tests.preloaded import run_module, run_python

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="off Linux run_python is subprocess.run itself")

SCRIPTS = {
    "prints and ends": "import os, sys; print('out', os.getcwd(), os.environ['PROBE']); print('err', file=sys.stderr)",
    "exit status 3": "import sys; print('before'); sys.exit(3)",
    "exit status -2": "import sys; sys.exit(-2)",
    "exit status 256": "import sys; sys.exit(256)",
    "exit None": "import sys; sys.exit(None)",
    "exit with a message": "import sys; sys.exit('error: a message')",
    "an uncaught error": "print('partial'); raise RuntimeError('a bug')",
    "an uncaught Ctrl-C": "raise KeyboardInterrupt",
    "a thread still running": "import threading, time\n"
                              "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()",
    "atexit handlers": "import atexit; atexit.register(print, 'handler ran')",
    "an error in an atexit handler": "import atexit; atexit.register(lambda: 1 / 0); print('registered')",
    "arguments, path and name": "import sys; print(sys.argv[1:], sys.path[0], __name__, __file__)",
    "standard input": "import sys; print(repr(sys.stdin.read()))",
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_forked_command_ends_as_its_own_process_ends(tmp_path, name):
    (tmp_path / "probe_module.py").write_text(SCRIPTS[name])
    env = {**os.environ, "PROBE": "set", "OMP_NUM_THREADS": "1"}
    for command in ([sys.executable, "-m", "probe_module", "a", "b"], [sys.executable, "probe_module.py", "a", "b"]):
        own = subprocess.run(command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=60)
        forked = run_python(command, cwd=tmp_path, env=env, timeout=60)
        assert (forked.returncode, forked.stdout) == (own.returncode, own.stdout)
        # a traceback names other frames above the script's: its last line is compared
        assert forked.stderr.splitlines()[-1:] == own.stderr.splitlines()[-1:], forked.stderr


def test_a_package_runs_its_main_module(tmp_path):
    """`python -m tinylm` runs tinylm/__main__.py."""
    (tmp_path / "probe_package").mkdir()
    (tmp_path / "probe_package" / "__init__.py").write_text("")
    (tmp_path / "probe_package" / "__main__.py").write_text("import sys; print('main of the package', sys.argv[1:])")
    command = [sys.executable, "-m", "probe_package", "x"]
    own = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (run_python(command, cwd=tmp_path, timeout=60).stdout, own.stdout) == ("main of the package ['x']\n",) * 2


def test_every_forked_command_draws_other_random_numbers(tmp_path):
    (tmp_path / "draw.py").write_text("import random, numpy, torch\n"
                                      "print(torch.rand(1).item(), numpy.random.random(), random.random())")
    draws = [run_module("draw", [], cwd=tmp_path, timeout=60).stdout for _ in range(2)]
    assert all(draws) and draws[0] != draws[1]
    assert len(set(draws[0].split()) & set(draws[1].split())) == 0, "each generator draws anew"


def test_a_command_past_its_timeout_is_killed_and_the_server_runs_the_next_one(tmp_path):
    """The child waits on a pipe no one writes to, for a minute (so that a broken kill fails the test rather than
    hanging it), then says it ended: the kill at its 10-second timeout comes first."""
    (tmp_path / "waiter.py").write_text("import os, pathlib, select\n"
                                        "pathlib.Path('pid').write_text(str(os.getpid()))\n"
                                        "print('started', flush=True)\n"
                                        "read_end, _ = os.pipe()\n"
                                        "select.select([read_end], [], [], 60)\n"
                                        "print('ended', flush=True)\n")
    key = tuple(sorted((name, value) for name, value in os.environ.items()
                       if name.startswith(preloaded.IMPORT_TIME_VARIABLES)))
    run_module("json.tool", ["--help"], cwd=tmp_path, timeout=60)
    server = preloaded._servers[key]  # the one that ran it
    with pytest.raises(subprocess.TimeoutExpired) as timed_out:
        run_module("waiter", [], cwd=tmp_path, timeout=10)
    assert timed_out.value.output == b"started\n"
    with pytest.raises(ProcessLookupError):  # killed, and reaped by the server
        os.kill(int((tmp_path / "pid").read_text()), 0)
    done = run_module("json.tool", ["--help"], cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage:")
    assert preloaded._servers[key] is server and server.process.poll() is None, "the same server ran it"
