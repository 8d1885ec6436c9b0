"""tests/preloaded.py: a command run as a forked child of a preloaded process ends as the same command in a process of
its own ends: the same exit status, standard output and error, folder and environment."""

import os
import subprocess
import sys

import pytest

from tests.preloaded import run_module, run_python

SCRIPTS = {
    "prints and ends": "import os, sys; print('out', os.getcwd(), os.environ['PROBE']); print('err', file=sys.stderr)",
    "exit status 3": "import sys; print('before'); sys.exit(3)",
    "exit with a message": "import sys; sys.exit('error: a message')",
    "an uncaught error": "print('partial'); raise RuntimeError('a bug')",
    "an uncaught Ctrl-C": "raise KeyboardInterrupt",
    "a thread still running": "import threading, time\n"
                              "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()",
    "atexit handlers": "import atexit; atexit.register(print, 'handler ran')",
    "arguments": "import sys; print(sys.argv[1:], __name__)",
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_forked_command_ends_as_its_own_process_ends(tmp_path, name):
    (tmp_path / "probe_module.py").write_text(SCRIPTS[name])
    env = {**os.environ, "PROBE": "set", "OMP_NUM_THREADS": "1"}
    for command in ([sys.executable, "-m", "probe_module", "a", "b"],
                    [sys.executable, str(tmp_path / "probe_module.py"), "a", "b"]):
        own = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        forked = run_python(command, cwd=tmp_path, env=env, timeout=60)
        assert (forked.returncode, forked.stdout) == (own.returncode, own.stdout)
        # a traceback names other frames above the script's: its last line is compared
        assert forked.stderr.splitlines()[-1:] == own.stderr.splitlines()[-1:], forked.stderr


def test_a_command_past_its_timeout_is_killed_and_the_next_one_runs(tmp_path):
    (tmp_path / "sleeper.py").write_text("import time; print('started', flush=True); time.sleep(60)")
    with pytest.raises(subprocess.TimeoutExpired) as timed_out:
        run_module("sleeper", [], cwd=tmp_path, timeout=3)
    assert timed_out.value.output == "started\n"
    done = run_module("sleeper", [], cwd=tmp_path, timeout=60, prelude="import time; time.sleep = lambda seconds: None")
    assert (done.returncode, done.stdout) == (0, "started\n")
