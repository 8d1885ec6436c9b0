"""Self-checking exercises: not attempted, correct, or a failing assert shown to the learner; and every notebook's
exercises ready for the solved copies nbval runs."""

import nbformat
import pytest

from tests import notebook_solutions
from tinylm.course.exercises import check


def test_placeholder_reports_not_attempted(capsys):
    def test_todo():
        raise NotImplementedError

    check(test_todo)
    assert "not attempted yet: replace the `raise NotImplementedError`" in capsys.readouterr().out


def test_experiment_placeholder_shows_its_hint(capsys):
    my_answer = None

    def test_measured():
        if my_answer is None:
            raise NotImplementedError("set my_answer to the loss you measured")

    check(test_measured)
    printed = capsys.readouterr().out
    assert "test_measured: not attempted yet: set my_answer to the loss you measured, then run" in printed


def test_passing_test_reports_correct(capsys):
    check(lambda: None, name="add")
    assert "add: correct" in capsys.readouterr().out


def test_wrong_answer_lets_the_assertion_through():
    def test_wrong():
        assert 1 + 1 == 3, "1 + 1 should be 2"

    with pytest.raises(AssertionError, match="should be 2"):
        check(test_wrong)


# The notebooks as nbval runs them (tests/notebook_solutions.py): every exercise solved, checked, and refused once.
NOTEBOOKS = sorted(notebook_solutions.NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_exercise_has_a_solution_to_run_and_one_wrong_answer(notebook):
    nb = nbformat.read(notebook, as_version=4)
    found = notebook_solutions.exercises(nb.cells)
    checks = [notebook_solutions.CHECK_CALL.search(notebook_solutions.source(cell)) for cell in nb.cells]
    assert found and len(found) == sum(1 for c in checks if c), "each check(...) needs a <details> solution after it"
    for _, test, code in found:
        assert code.strip(), f"the solution of {test} has no ```python block the test can run"
    assert sorted(notebook_solutions.wrong_answers(notebook)) == sorted(test for _, test, _ in found), (
        f"tests/exercise_wrong_answers/{notebook.stem}.py: one wrong answer per check")
    solved = notebook_solutions.solved_notebook(notebook)
    assert len(solved.cells) == len(nb.cells) + 3 * len(found)


def test_the_wrong_answer_cell_reports_refusal_and_acceptance_and_restores_the_solution(capfd):
    namespace = {"__builtins__": __builtins__}
    exec("def double(x):\n    return 2 * x\n\ndef test_double():\n    assert double(3) == 6, 'double(3)'", namespace)
    exec(notebook_solutions.wrong_answer_cell("test_double", "def double(x):\n    print('hi')\n    return x + 2"),
         namespace)
    assert capfd.readouterr().out == f"{notebook_solutions.REJECTED}\n"
    assert namespace["double"](3) == 6
    exec(notebook_solutions.wrong_answer_cell("test_double", "def double(x):\n    return x + 3"), namespace)
    assert capfd.readouterr().out == "WRONG ANSWER ACCEPTED\n"
