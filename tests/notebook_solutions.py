"""Every exercise's hidden solution passes its check, and its check rejects a plausible wrong answer: what the
tests/test_solutions_*.py files run, a group of notebooks each so that parallel workers share them.

Each notebook runs under smoke with two cells added after each exercise's solution (the code of its
`<details>` block): the solution, then `check(test_...)`, which must print "correct"; then a wrong answer from
`tests/exercise_wrong_answers/<notebook>.py` (an off-by-one, the wrong normalisation, an unconverged value),
which the test function must refuse with an error. The solution and the wrong answer run after the check's own
cell, so an experiment's answer (`my_answer = None` there) is set as a learner sets it.
"""

from __future__ import annotations

import ast
import os
import re
import runpy

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CHECK_CALL = re.compile(r"^check\((\w+)", re.M)
SOLUTION = re.compile(r"<details><summary>Solution</summary>(.*?)</details>", re.S)
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
WRONG = REPO / "tests" / "exercise_wrong_answers"  # <notebook stem>.py: WRONG_ANSWERS = {test name: code}
REJECTED, ACCEPTED = "wrong answer rejected", "WRONG ANSWER ACCEPTED"


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
        elif cell.cell_type == "markdown" and SOLUTION.search(source(cell)):
            assert test is not None, f"cell {index}: a solution before any check"
            code = "\n".join(PYTHON_BLOCK.findall(SOLUTION.search(source(cell)).group(1)))
            assert code.strip(), f"the solution of {test} has no ```python block the test can run"
            found.append((index, test, code))
            test = None
    return found


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
    """Run `wrong` in place of the solution, call the test, report whether it refused, then put the solution back."""
    names = defined_names(wrong)
    return "\n".join([
        f"_saved = {{name: globals()[name] for name in {names!r} if name in globals()}}",
        wrong,
        "try:",
        f"    {test}()",
        "except NotImplementedError:",
        f"    print({ACCEPTED!r}, 'as not attempted')",
        "except Exception as refusal:",
        f"    print({REJECTED!r}, type(refusal).__name__, str(refusal)[:200])",
        "else:",
        f"    print({ACCEPTED!r})",
        "globals().update(_saved)",
    ])


def printed(cell) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output.output_type == "stream")


# The notebooks of each tests/test_solutions_<group>.py, by the start of their names: every notebook in one group.
# The long groups (their exercises train for minutes in all, under smoke) run when TINYLM_TEST_SOLUTIONS=all: beside
# nbval's own run of every notebook they would take CI past its 15 minutes.
GROUPS = {"lessons_1_to_5": ("01", "02", "03", "04", "05"), "lessons_7_12_13": ("07", "12", "13"),
          "lessons_6_and_8": ("06", "08"), "lessons_9_10_11_14": ("09", "10", "11", "14")}
LONG_GROUPS = {"lessons_6_and_8", "lessons_9_10_11_14"}


def group(name: str) -> list:
    """The notebooks of group `name`, as pytest parameters named by their stems (a long group's skipped unless
    TINYLM_TEST_SOLUTIONS=all)."""
    skip = name in LONG_GROUPS and os.environ.get("TINYLM_TEST_SOLUTIONS") != "all"
    marks = [pytest.mark.skip(reason="a long group: set TINYLM_TEST_SOLUTIONS=all to run it")] if skip else []
    return [pytest.param(path, id=path.stem, marks=marks) for path in NOTEBOOKS if path.name.startswith(GROUPS[name])]


def run_solutions(notebook) -> None:
    nb = nbformat.read(notebook, as_version=4)
    found = exercises(nb.cells)
    assert found, "a notebook without exercises"
    answers = WRONG / f"{notebook.stem}.py"
    wrong = runpy.run_path(str(answers))["WRONG_ANSWERS"] if answers.is_file() else {}
    assert sorted(wrong) == sorted(test for _, test, _ in found), f"{answers.relative_to(REPO)}: one per check"
    for index, test, code in reversed(found):  # from the end, so the earlier indices stay put
        solution = nbformat.v4.new_code_cell(f"{code}\ncheck({test})", metadata={"exercise": [test, "solution"]})
        refused = nbformat.v4.new_code_cell(wrong_answer_cell(test, wrong[test]),
                                            metadata={"exercise": [test, "wrong"]})
        nb.cells[index + 1:index + 1] = [solution, refused]
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    failures = []
    for cell in nb.cells:
        test, role = cell.metadata.get("exercise", (None, None))
        out = printed(cell)
        if role == "solution" and f"{test}: correct" not in out:
            failures.append(f"{test}: the solution did not pass its check: {out.strip()[-300:]!r}")
        if role == "wrong" and REJECTED not in out:
            failures.append(f"{test}: the check accepted the wrong answer: {out.strip()[-300:]!r}")
    assert not failures, "\n".join(failures)
