"""The notebooks as nbval runs them: each with every exercise solved, so that one run under smoke checks the lesson's
stable outputs, every hidden solution against its check, and every check against a plausible wrong answer.

`write_solved_copies` writes notebooks/solved/<notebook>.ipynb (git ignores it), and the root conftest.py has pytest
collect those in place of the notebooks. After each exercise's `<details>` block come three cells: the solution's
```python code; `check(test_...)`, whose output must read "correct"; and a wrong answer from
`tests/exercise_wrong_answers/<notebook>.py` (an off-by-one, the wrong normalisation, an unconverged value), which
the test must refuse. The last two carry NBVAL_CHECK_OUTPUT with the line they must print. They run after the
check's own cell, so an experiment's answer (`my_answer = None` there) is set as a learner sets it.
"""

from __future__ import annotations

import ast
import os
import re
import runpy
import tempfile
import textwrap
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOLVED = NOTEBOOKS / "solved"
WRONG = Path(__file__).resolve().parent / "exercise_wrong_answers"  # <stem>.py: WRONG_ANSWERS = {test: code}
CHECK_CALL = re.compile(r"^check\((\w+)", re.M)
SOLUTION = re.compile(r"<details><summary>Solution</summary>(.*?)</details>", re.S)
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
REJECTED = "wrong answer rejected"


def source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def exercises(cells) -> list[tuple[int, str, str]]:
    """(index of the solution's markdown cell, the check's test function, the solution's code) per exercise."""
    start = next(i for i, cell in enumerate(cells)
                 if cell.cell_type == "markdown" and re.search(r"^#+ Exercises", source(cell), re.M))
    found, test = [], None
    for index, cell in enumerate(cells[start:], start):
        if cell.cell_type == "code" and CHECK_CALL.search(source(cell)):
            test = CHECK_CALL.search(source(cell)).group(1)
        elif cell.cell_type == "markdown" and SOLUTION.search(source(cell)) and test is not None:
            code = "\n".join(PYTHON_BLOCK.findall(SOLUTION.search(source(cell)).group(1)))
            found.append((index, test, code))
            test = None
    return found


def wrong_answers(notebook: Path) -> dict[str, str]:
    answers = WRONG / f"{notebook.stem}.py"
    return runpy.run_path(str(answers))["WRONG_ANSWERS"] if answers.is_file() else {}


def defined_names(code: str) -> list[str]:
    """The top-level names a piece of code binds (functions, classes, assignments), to restore after it."""
    names = []
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return names


def wrong_answer_cell(test: str, wrong: str) -> str:
    """Run `wrong` in place of the solution (what it prints or displays set aside), call the test, print whether
    it refused, then put the solution back."""
    return "\n".join([
        "# NBVAL_CHECK_OUTPUT",
        "from IPython.utils.capture import capture_output",
        f"_saved = {{name: globals()[name] for name in {defined_names(wrong)!r} if name in globals()}}",
        "_verdict = 'WRONG ANSWER ACCEPTED'",
        "with capture_output():",
        textwrap.indent(wrong.strip("\n"), "    "),
        "    try:",
        f"        {test}()",
        "    except NotImplementedError:",
        "        _verdict = 'WRONG ANSWER ACCEPTED as not attempted'",
        "    except Exception as refusal:",
        f"        _verdict = {REJECTED!r}",
        "globals().update(_saved)",
        "print(_verdict)",
    ])


def stdout(text: str) -> list:
    return [nbformat.v4.new_output("stream", name="stdout", text=text)]


def solved_notebook(notebook: Path):
    """The notebook with, after each exercise, its solution, its check (must print correct) and a wrong answer
    (must be refused)."""
    nb = nbformat.read(notebook, as_version=4)
    wrong = wrong_answers(notebook)
    for index, test, code in reversed(exercises(nb.cells)):  # from the end, so the earlier indices stay put
        if test not in wrong:
            continue  # tests/test_exercises.py fails on it
        nb.cells[index + 1:index + 1] = [
            nbformat.v4.new_code_cell(code),
            nbformat.v4.new_code_cell(f"check({test})  # NBVAL_CHECK_OUTPUT", outputs=stdout(f"{test}: correct\n"),
                                      execution_count=1),  # nbval compares the outputs of cells that have run
            nbformat.v4.new_code_cell(wrong_answer_cell(test, wrong[test]), outputs=stdout(f"{REJECTED}\n"),
                                      execution_count=1),
        ]
    return nb


def write_solved_copies() -> None:
    """notebooks/solved/<notebook>.ipynb for every notebook, each replaced whole (a session killed mid-write leaves
    the old copy), and none left for a notebook that is gone."""
    SOLVED.mkdir(exist_ok=True)
    names = set()
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        names.add(notebook.name)
        handle, temporary = tempfile.mkstemp(dir=SOLVED, prefix=f".{notebook.stem}.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            nbformat.write(solved_notebook(notebook), out)
        os.replace(temporary, SOLVED / notebook.name)
    for stale in SOLVED.glob("*.ipynb"):
        if stale.name not in names:
            stale.unlink(missing_ok=True)
