"""Long runs a class can replay. A notebook cell that trains or times for minutes under the `cpu` profile puts its
work in a function and calls `recorded(notebook, name, run, replay=REPLAY, profile=PROFILE)`. Live (the default),
it runs the function and shows what it prints; under `cpu` it also records the result, that printed text, the date
and the seconds it took, in the package (`tinylm/course/recordings/`: a non-editable install has them); which
machine made them is the teacher's page's to say (notebooks/TEACHING.md), beside the command.
With the notebook's `REPLAY = True` it runs nothing: it prints the recorded text and returns the recorded result,
so a lesson shows the committed run's figures in seconds. A result is JSON: `encode` and `decode` turn richer
objects (trained runs, timed costs) into plain lists and dicts and back.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..paths import write_json

RECORDINGS = Path(__file__).resolve().parent / "recordings"
MACHINE_PREFIX = "machine: "  # a printed line naming the machine (speedrun.machine_line): never recorded


def without_machine_lines(printed: str) -> str:
    """`printed` less its lines that name the machine: a recording lives in the package, the machine in TEACHING.md."""
    return "".join(line for line in printed.splitlines(keepends=True) if not line.startswith(MACHINE_PREFIX))


def recording_path(notebook: str, name: str) -> Path:
    """Where `notebook`'s (its file stem, e.g. "12_speedrun_on_a_laptop") result `name` is recorded."""
    return RECORDINGS / notebook / f"{name}.json"


def read_recording(notebook: str, name: str) -> dict[str, Any]:
    """The recording as written: {"date", "seconds", "printed", "result"}; a one-line error if there is
    none."""
    path = recording_path(notebook, name)
    try:
        recording = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no recorded result {name!r} for notebook {notebook} ({path}): set REPLAY = False and run "
                         "the cell live under the cpu profile to record one") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path} is not valid JSON ({error}): run the cell live under cpu to record it "
                         "again") from None
    missing = {"date", "seconds", "printed", "result"} - set(recording)
    if missing:
        raise InputError(f"{path} lacks {', '.join(sorted(missing))}: run the cell live under cpu to record it again")
    return recording


class _Tee(io.StringIO):
    """Keeps what is printed and passes it on to the real output."""

    def __init__(self, out):
        super().__init__()
        self._out = out

    def write(self, text: str) -> int:
        self._out.write(text)
        return super().write(text)


def recorded(notebook: str, name: str, run: Callable[[], Any], *, replay: bool, profile: str,
             encode: Callable[[Any], Any] = lambda result: result,
             decode: Callable[[Any], Any] = lambda data: data) -> Any:
    """`run()`'s result, live or replayed as the module docstring says."""
    if replay:
        recording = read_recording(notebook, name)
        if profile != "cpu":
            raise InputError(f"the recorded {name!r} is a cpu run, and this notebook runs under {profile}: set "
                             "TINYLM_PROFILE=cpu, or REPLAY = False")
        print(f"[replayed: recorded {recording['date']} (notebooks/TEACHING.md says on which machine); REPLAY = False "
              "runs it live]")
        print(recording["printed"], end="")
        return decode(recording["result"])
    tee = _Tee(sys.stdout)
    started = time.perf_counter()
    with contextlib.redirect_stdout(tee):
        result = run()
    if profile == "cpu":
        recording = {"date": datetime.date.today().isoformat(),
                     "seconds": round(time.perf_counter() - started, 1),
                     "printed": without_machine_lines(tee.getvalue()), "result": encode(result)}
        write_json(recording_path(notebook, name), recording)
    return result
