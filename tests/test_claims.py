"""Every sentence true and every lesson one sitting: each figure in a notebook's prose is printed by its saved
outputs or listed with its source in notebooks/SOURCES.md, and each notebook's lesson by the course's formula
(study_time in scripts/claims.py) is at most 90 minutes, its runtime included, as its header says."""

import json
import re
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tinylm.course import recorded as recorded_module

sys.path.insert(0, str(REPO / "scripts"))  # claims.py and course_guide.py: repository tooling, not the package
from claims import (  # noqa: E402
    LESSON_LIMIT_MINUTES,
    figures,
    moved_figures,
    notebook_cells,
    read_sources,
    study_time,
    unsupported_figures,
    unsupported_guide_figures,
)
from course_guide import rewrite_time_paragraph, time_paragraph  # noqa: E402

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SOURCES = REPO / "notebooks" / "SOURCES.md"


def write_notebook(path: Path, markdown: str, printed: str) -> Path:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": markdown},
             {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "print(...)",
              "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}]}]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_the_claims_check_flags_the_one_figure_no_output_or_source_supports(tmp_path):
    notebook = write_notebook(tmp_path / "99_demo.ipynb",
                              "The loss fell to 1.234 (printed above), **56.7%** of steps clipped, 2.5× faster; "
                              "`lr = 0.001` is code, $\\epsilon = 0.5$ is math, [a link](https://x.org/1.5), "
                              "arXiv:2402.03300, and 12 layers is an integer.",
                              "val loss 1.2345 | speed-up 2.50x")
    sources = tmp_path / "SOURCES.md"
    sources.write_text("| notebook | figure | source |\n|---|---|---|\n")
    assert unsupported_figures(notebook, read_sources(sources)) == ["56.7%"]
    sources.write_text("| notebook | figure | source |\n|---|---|---|\n| 99_demo | 56.7 | a paper's Table 2 |\n")
    assert unsupported_figures(notebook, read_sources(sources)) == []
    sources.write_text("| notebook | figure | source |\n|---|---|---|\n| 99_demo | 56.7 |  |\n")
    with pytest.raises(ValueError, match="names no source"):
        read_sources(sources)


def test_figures_are_decimals_percentages_and_ratios():
    assert figures("a 2,048-token context, 1,234.5 tokens/s, 3x, 64 × 64, 0.25, 93 %, v2.13.0 and 7 steps") == [
        "1,234.5", "3x", "0.25", "93 %"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_in_a_notebooks_prose_is_printed_or_sourced(notebook):
    assert unsupported_figures(notebook, read_sources(SOURCES)) == [], (
        "print these figures from the code, or list each with its source in notebooks/SOURCES.md")


def test_the_guide_check_takes_a_figure_from_a_notebook_a_source_or_the_command_beside_it(tmp_path):
    notebook = write_notebook(tmp_path / "01_demo.ipynb", "", "loss 2.4865")
    guide = tmp_path / "README.md"
    guide.write_text("The bigram reaches 2.4865 (notebook 1).\n\nUnder smoke it takes 3.5 s.\n\n"
                     "| run | loss |\n|---|---|\n| `python -m tinylm.train x` | 1.6566 |\n| by hand | 1.9459 |\n\n"
                     "Measured by `python scripts/x.py`:\n\n| a | b |\n|---|---|\n| 0.25 | 0.75 |\n\n"
                     "```\nloss 7.77 in a code block\n```\n\n"
                     "<!-- course-table:entries (generated) -->\n- you learn: 8.88 (its notebook's check)\n"
                     "<!-- /course-table -->\n")
    sources = tmp_path / "SOURCES.md"
    sources.write_text("| notebook | figure | source |\n|---|---|---|\n")
    assert unsupported_guide_figures(guide, [notebook], read_sources(sources)) == ["3.5", "1.9459"]
    sources.write_text("| notebook | figure | source |\n|---|---|---|\n| guide | 3.5 | a definition |\n")
    assert unsupported_guide_figures(guide, [notebook], read_sources(sources)) == ["1.9459"]


def test_every_figure_in_the_course_guide_is_printed_sourced_or_beside_its_command():
    """The course guide reports the notebooks' runs and the command lines': each figure is in a notebook's saved
    outputs, in notebooks/SOURCES.md (notebook "guide"), or in a row or paragraph naming the command that printed it.
    README, TEACHING and CONTRIBUTING state no measured figure at all (tests/test_docs.py)."""
    assert unsupported_guide_figures(REPO / "notebooks" / "README.md", NOTEBOOKS, read_sources(SOURCES)) == [], (
        "print it in a notebook, source it in notebooks/SOURCES.md, or name the command that measured it beside it")


def test_the_study_time_counts_the_lesson_before_the_exercises_and_the_exercises_apart(tmp_path):
    """A lesson of 300 words (3 min; a solution folded in <details> not counted) and 48 code lines (10 min) before
    the exercises heading, and a run of 120 s: 15 minutes. Then a function to write (10 min) and an experiment (20
    min) that the notebook says trains for 90 s: 31.5 minutes; nothing after the heading counts towards the lesson."""
    words = " ".join(["word"] * 100)
    cells = [("markdown", f"# Title\n\n{words}"), ("code", "x = 1\n\n" * 48),
             ("markdown", f"{words} <details>{words}</details>\n\n## What you learned\n\n" + " it" * 96
              + f"\n\n## Exercises\n\n{words}"),
             ("code", "y = 2\n" * 50), ("markdown", f"### Exercise 1: one\n\n{words}"),
             ("markdown", "### Exercise 2: an experiment"), ("code", "z = 3\n" * 16)]
    notebook = {"cells": [{"cell_type": kind, "metadata": {}, "source": source,
                           **({"execution_count": 1, "outputs": []} if kind == "code" else {})}
                          for kind, source in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    notebook["cells"][-1]["outputs"] = [{"output_type": "stream", "name": "stdout",
                                         "text": "exercise 2 trains for about 90 s here\nthis notebook ran in 120 s"}]
    path = tmp_path / "99_demo.ipynb"
    path.write_text(json.dumps(notebook))
    time = study_time(path)
    assert (time.prose_words, time.code_lines, time.runtime_seconds) == (300, 48, 120.0)
    assert time.reading_minutes == pytest.approx(300 / 90 + 48 / 4.5)  # 14: the rates CONTRIBUTING.md fits
    assert time.lesson_minutes == pytest.approx(16)  # and the 120 s run
    assert (time.exercises, time.experiments, time.exercise_run_seconds) == (2, 1, 90.0)
    assert time.exercise_minutes == pytest.approx(31.5)
    assert time_paragraph(time).startswith("**How long it takes**: a lesson of about 16 minutes")


def test_a_recorded_cell_counts_in_the_lesson_as_replayed(tmp_path, monkeypatch):
    """A notebook whose live cpu run took 700 s, 600 of them in a cell REPLAY = True replays: the class waits 100 s."""
    monkeypatch.setattr(recorded_module, "RECORDINGS", tmp_path / "recordings")
    recorded_module.recorded("99_demo", "race", lambda: 1, replay=False, profile="cpu")
    recording = recorded_module.recording_path("99_demo", "race")
    recording.write_text(recording.read_text().replace('"seconds": 0.0', '"seconds": 600.0'))
    call = 'race = recorded(\n    "99_demo", "race", run, replay=REPLAY, profile=PROFILE)'
    printed = [{"output_type": "stream", "name": "stdout", "text": "this notebook ran in 700 s"}]
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": 1, "source": source, "outputs": outputs}
             for source, outputs in [(call, []), ("print(1)", printed)]]
    path = tmp_path / "99_demo.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    time = study_time(path)
    assert (time.runtime_seconds, time.replayed_seconds, time.class_runtime_seconds) == (700.0, 600.0, 100.0)
    assert time.lesson_minutes == pytest.approx(time.reading_minutes + 100 / 60)
    assert "100 s with `REPLAY = True`, 12 min live" in " ".join(time_paragraph(time).split())

    # committed with REPLAY = True: the run printed 100 s, the recorded 600 s live ones were replayed
    replay_line = "[replayed: recorded 2026-11-29 (notebooks/TEACHING.md says on which machine)]\n"
    cells[0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": replay_line}]
    cells[1]["outputs"] = [{**printed[0], "text": "this notebook ran in 100 s"}]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert (study_time(path).runtime_seconds, study_time(path).class_runtime_seconds) == (700.0, 100.0)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_lesson_fits_one_sitting(notebook):
    time = study_time(notebook)
    assert time.runtime_seconds is not None, "the last cell prints 'this notebook ran in N s' (the cpu run's)"
    assert time.lesson_minutes <= LESSON_LIMIT_MINUTES, f"a lesson of {time.lesson_minutes:.0f} minutes: {time}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_header_states_the_two_sittings_by_the_formula(notebook):
    header = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
    assert time_paragraph(study_time(notebook)) in header, "run python scripts/course_tables.py"


def test_moved_figures_lists_each_changed_number_by_cell(tmp_path):
    old = notebook_cells(write_notebook(tmp_path / "old.ipynb", "prose", "loss 1.234 at step 100, 34.4% clipped"))
    new = notebook_cells(write_notebook(tmp_path / "new.ipynb", "prose", "loss 1.250 at step 100, 35.0% clipped"))
    assert moved_figures(old, new) == ["cell 1: 1.234 -> 1.250, 34.4% -> 35.0%"]
    assert moved_figures(old, old) == []


def test_the_refresh_script_compares_a_notebook_with_an_older_copy(tmp_path):
    """The maintainer's one-line regression check, in its compare-only mode (a real re-run takes minutes)."""
    import subprocess

    notebook = next((REPO / "notebooks").glob("01_*.ipynb"))
    cells = json.loads(notebook.read_text())
    index, cell = next((i, c) for i, c in enumerate(cells["cells"])
                       if c["cell_type"] == "code" and any("text" in o for o in c.get("outputs", [])))
    output = next(o for o in cell["outputs"] if "text" in o)
    text = "".join(output["text"])
    number = re.search(r"\d+", text).group(0)
    output["text"] = text.replace(number, str(int(number) + 1), 1)
    older = tmp_path / "older.ipynb"
    older.write_text(json.dumps(cells))
    done = subprocess.run([sys.executable, "scripts/refresh_notebook.py", "01", "--compare", str(older)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"cell {index}: {int(number) + 1} -> {number}" in done.stdout and "study time by the formula" in done.stdout


def test_the_time_paragraph_is_rewritten_in_both_twins_and_stays_put(tmp_path):
    header = "# 99 · Demo\n\n**How long it takes**: about 3 minutes,\nby an old rule.\n\n| profile | time |"
    printed = {"output_type": "stream", "name": "stdout", "text": "this notebook ran in 60 s"}
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": header},
                          {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "print(1)",
                           "outputs": [printed]}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "99_demo.ipynb"
    path.write_text(json.dumps(notebook))
    (tmp_path / "py").mkdir()
    twin = tmp_path / "py" / "99_demo.py"
    twin.write_text("# %% [markdown]\n" + "\n".join(f"# {line}".rstrip() for line in header.splitlines())
                    + "\n\n# %%\nprint(1)\n")
    assert rewrite_time_paragraph(path) and not rewrite_time_paragraph(path)
    paragraph = time_paragraph(study_time(path))
    assert paragraph.startswith("**How long it takes**: a lesson of about 2 ")  # 1 min run, 1 code line, its words
    assert paragraph + "\n\n| profile | time |" in "".join(json.loads(path.read_text())["cells"][0]["source"])
    assert "\n".join(f"# {line}" for line in paragraph.splitlines()) + "\n#\n# | profile | time |" in twin.read_text()
