"""A notebook's long cell, live or replayed (tinylm.course.recorded): live under cpu it records what it printed and
returned; replayed it prints the same and returns the same without running; every recording a notebook reads exists
and parses, so that REPLAY = True works on a fresh clone."""

import re
from pathlib import Path

import pytest

from tinylm.course import recorded as module
from tinylm.course.speedrun import machine_line
from tinylm.errors import InputError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks" / "py"


def test_a_live_cpu_run_is_recorded_and_a_replay_prints_and_returns_it_without_running(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(module, "RECORDINGS", tmp_path)
    calls = []

    def run():
        calls.append(1)
        print("trained 3 arms in 12 s")
        return {"loss": (1.5, 1.25)}

    encode = lambda result: {"loss": list(result["loss"])}  # noqa: E731
    decode = lambda data: {"loss": tuple(data["loss"])}  # noqa: E731
    live = module.recorded("99_demo", "race", run, replay=False, profile="cpu", encode=encode, decode=decode)
    assert capsys.readouterr().out == "trained 3 arms in 12 s\n"
    recording = module.read_recording("99_demo", "race")
    assert recording["printed"] == "trained 3 arms in 12 s\n" and recording["result"] == {"loss": [1.5, 1.25]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", recording["date"]) and "machine" not in recording  # TEACHING.md says

    replayed = module.recorded("99_demo", "race", run, replay=True, profile="cpu", encode=encode, decode=decode)
    out = capsys.readouterr().out
    assert replayed == live and len(calls) == 1  # the replay ran nothing
    assert out.startswith("[replayed: recorded ") and out.endswith("trained 3 arms in 12 s\n")


def test_only_the_cpu_profile_records_and_a_missing_recording_is_one_line_that_says_what_to_do(tmp_path,
                                                                                              monkeypatch):
    monkeypatch.setattr(module, "RECORDINGS", tmp_path)
    assert module.recorded("99_demo", "race", lambda: 7, replay=False, profile="smoke") == 7
    assert not list(tmp_path.rglob("*.json"))
    with pytest.raises(InputError, match="REPLAY = False") as error:
        module.recorded("99_demo", "race", lambda: 7, replay=True, profile="cpu")
    assert "\n" not in str(error.value)
    (tmp_path / "99_demo").mkdir()
    (tmp_path / "99_demo" / "race.json").write_text("{\"date\": ")
    with pytest.raises(InputError, match="not valid JSON"):
        module.read_recording("99_demo", "race")
    module.recorded("99_demo", "race", lambda: 7, replay=False, profile="cpu")
    with pytest.raises(InputError, match="a cpu run, and this notebook runs under smoke"):
        module.recorded("99_demo", "race", lambda: 7, replay=True, profile="smoke")


def test_every_recording_a_notebook_replays_exists_and_parses():
    calls = []
    for path in sorted(NOTEBOOKS.glob("*.py")):
        calls += [(path.stem, notebook, name) for notebook, name in
                  re.findall(r'recorded\(\s*"([^"]+)",\s*"([^"]+)"', path.read_text(encoding="utf-8"))]
    assert calls, "no notebook replays a recorded result"
    for stem, notebook, name in calls:
        assert notebook == stem, f"{stem} reads another notebook's recording {notebook}"
        recording = module.read_recording(notebook, name)
        assert isinstance(recording["printed"], str) and recording["seconds"] > 0
        assert recording["printed"] or recording["result"] is not None, f"{notebook} {name}: empty"


def test_a_recording_keeps_no_line_that_names_the_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(module, "RECORDINGS", tmp_path / "recordings")
    module.recorded("99_demo", "timed", lambda: print(machine_line("cpu") + "\nsteps: 10"), replay=False,
                    profile="cpu")
    assert module.read_recording("99_demo", "timed")["printed"] == "steps: 10\n"
