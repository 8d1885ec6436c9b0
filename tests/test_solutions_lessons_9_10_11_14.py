"""Notebooks 9, 10, 11 and 14: every exercise's solution passes its check, and every check refuses a plausible wrong
answer (tests/notebook_solutions.py)."""

import pytest

from tests.notebook_solutions import group, run_solutions


@pytest.mark.parametrize("notebook", group("lessons_9_10_11_14"))
def test_every_solution_passes_its_check_and_every_check_rejects_a_wrong_answer(notebook):
    run_solutions(notebook)
