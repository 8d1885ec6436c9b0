"""`python -m module args` in a new process, without paying for `import torch` every time.

A command line spends its first two to four seconds importing torch (and torch._dynamo, which PyTorch's optimizers
import when the first one is built), and the suite runs dozens of commands. So on Linux each pytest worker keeps a
Python process that has imported both and waits for requests; for each command it forks a child, which becomes what
`python -m module args` (or `python script args`) would be from there on: its own working folder, environment,
arguments, path and standard streams (standard input /dev/null; output and errors in files, read back as
`subprocess.run(capture_output=True, text=True)` returns them), random generators reseeded (torch's, numpy's,
Python's), `__main__` run by `runpy` as Python runs it, and the interpreter's exit (its status, a traceback on stderr
for an error nothing caught, other threads joined, atexit handlers, the streams flushed; not the teardown of every
module, which takes over a second after torch and does nothing tinylm's commands are known to rely on). On the
2-core AMD EPYC (AVX2), `python -m tinylm.train --help` took 2.4 s as a new interpreter and 0.3 s forked.

What the child shares with the server: the modules the server imported (torch, numpy and what they load, each
already initialised, so that it read its environment variables when the server started) and Python's string-hash
seed. So the variables that torch or its libraries read when they are imported (the threads of OpenMP, MKL and
OpenBLAS, the CPU kind, CUDA's devices, PyTorch's and tqdm's settings, the locale, Python's own) are the server's: a
command whose environment gives them other values gets another server, started in those. Off Linux a command is a
plain Python process. Tests that give a command standard input, send it signals or read its output as it streams,
and the few that need a fresh interpreter, start their own processes.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT_TIME_VARIABLES = ("OMP_", "MKL_", "KMP_", "GOMP_", "ATEN_", "ONEDNN_", "DNNL_", "TORCH", "PYTORCH_", "CUDA_",
                         "NVIDIA_", "LD_", "PYTHON", "OPENBLAS_", "TQDM_", "LC_", "LANG")
STARTUP_SECONDS = 120  # for the server to import torch (the first time) and fork the child

SERVER = r"""
import atexit, json, os, random, runpy, signal, sys, tempfile, threading
import numpy, torch, torch._dynamo  # the part of every command's start that is shared

for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
        continue
    # the child: from here on what `python -m module` or `python script` would be, in its own folder, environment
    # and streams, and with random generators of its own (forked, it would share the server's states)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # read from TMPDIR again
    for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                           (2, request["stderr"], os.O_WRONLY)):
        opened = os.open(path, mode)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(os.devnull)
    torch.seed()
    numpy.random.seed()
    random.seed()
    exec(request["prelude"], {"__name__": "__prelude__"})
    code, interrupted = 0, False
    try:
        if request["module"]:  # `python -m`: the working folder first on the path
            sys.argv, sys.path[0] = [request["module"], *request["args"]], os.getcwd()
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        else:  # `python script`: the script's folder first on the path, its name made absolute
            script = os.path.abspath(request["script"])
            sys.argv, sys.path[0] = [request["script"], *request["args"]], os.path.dirname(script)
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exit:
        code = exit.code
    except BaseException as error:  # what nothing caught: the traceback, as the interpreter prints it
        sys.excepthook(type(error), error, error.__traceback__)
        code, interrupted = 1, isinstance(error, KeyboardInterrupt)
    # The interpreter's exit: SystemExit's code (a message goes to stderr, status 1), other threads joined, atexit
    # handlers run, the streams flushed; then no teardown of every module (over a second with torch loaded, and
    # nothing tinylm's commands are known to rely on). An uncaught Ctrl-C ends by SIGINT, as Python ends then.
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)
"""


class PreloadedPython:
    """One waiting process that has imported torch in an environment, and the commands run as its forked children."""

    def __init__(self, env: dict[str, str]):
        # unbuffered: select() then sees every reply line that has not been read
        self.process = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, bufsize=0)

    def _reply(self, deadline: float | None) -> dict | None:
        """The server's next line, or None if `deadline` (time.monotonic()) passes first."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the preloaded Python process ended")
        return json.loads(line)

    def run(self, command: list[str], cwd: Path, env: dict[str, str], timeout: float | None,
            prelude: str) -> subprocess.CompletedProcess:
        """command: [python, "-m", module, *args] or [python, script, *args]."""
        if command[1] == "-m":
            module, script, args = command[2], None, command[3:]
        else:
            module, script, args = None, command[1], command[2:]
        with tempfile.TemporaryDirectory() as folder:
            stdout, stderr = Path(folder, "stdout"), Path(folder, "stderr")
            stdout.touch()
            stderr.touch()
            request = {"module": module, "script": script, "args": args, "cwd": str(cwd), "env": env,
                       "stdout": str(stdout), "stderr": str(stderr), "prelude": prelude}
            pid = None
            try:
                unsent = memoryview((json.dumps(request) + "\n").encode())
                while unsent:  # an unbuffered write may take part of a long request
                    unsent = unsent[self.process.stdin.write(unsent):]
                started = self._reply(time.monotonic() + STARTUP_SECONDS)
                if started is None:
                    raise RuntimeError(f"the preloaded Python process did not start {command} in {STARTUP_SECONDS} s")
                pid = started["pid"]  # the child has started: its time starts
                reply = self._reply(None if timeout is None else time.monotonic() + timeout)
                if reply is None:
                    with contextlib.suppress(ProcessLookupError):  # it may end by itself meanwhile
                        os.kill(pid, signal.SIGKILL)
                    self._reply(None)
            except BaseException:  # a Ctrl-C, say: stop the child, and the next command gets a new server
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait()
                raise
            if reply is None:  # as subprocess.run(text=True) raises it: the output so far, in bytes
                raise subprocess.TimeoutExpired(command, timeout, stdout.read_bytes(), stderr.read_bytes())
            return subprocess.CompletedProcess(command, reply["returncode"], stdout.read_text(), stderr.read_text())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


_servers: dict[tuple, PreloadedPython] = {}  # by the variables of IMPORT_TIME_VARIABLES and their values


def run_python(command: list, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float | None = None, prelude: str = "") -> subprocess.CompletedProcess:
    """What `subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
    timeout=timeout)` returns (or raises: TimeoutExpired past `timeout`) for the command [sys.executable, "-m",
    module, *args] or [sys.executable, script, *args]; cwd: this process's, env: its environment. On Linux it runs as
    the forked child of a server started in the same values of the variables read at import (see the module
    docstring). `prelude`, Python code, runs in the new process before the module or script (a test's fault)."""
    command, cwd = [str(part) for part in command], Path(cwd or os.getcwd()).resolve()
    env = dict(os.environ if env is None else env)
    assert command[0] == sys.executable and len(command) > 1 + (command[1] == "-m"), command
    assert command[1] == "-m" or not command[1].startswith("-"), f"no interpreter options here: {command}"
    if sys.platform == "linux":
        key = tuple(sorted((name, value) for name, value in env.items() if name.startswith(IMPORT_TIME_VARIABLES)))
        if key not in _servers or _servers[key].process.poll() is not None:
            unread = {name: value for name, value in os.environ.items() if not name.startswith(IMPORT_TIME_VARIABLES)}
            _servers[key] = PreloadedPython({**unread, **dict(key)})
            atexit.register(_servers[key].close)
        return _servers[key].run(command, cwd, env, timeout, prelude)
    if prelude:  # the prelude first, then the module or script as Python runs it
        module = command[1] == "-m"
        run = "run_module(sys.argv[0], alter_sys=True" if module else "run_path(sys.argv[0]"
        code = f"{prelude}\nimport runpy, sys\nsys.argv = sys.argv[1:]\nrunpy.{run}, run_name='__main__')"
        command = [command[0], "-c", code, *command[1 + module:]]
    return subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def run_module(module: str, args, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float | None = None, prelude: str = "") -> subprocess.CompletedProcess:
    """`python -m module args`, as `run_python` runs it."""
    return run_python([sys.executable, "-m", module, *args], cwd, env, timeout, prelude)
