"""Verifiable rewards: every generated problem's own answer scores 1, wrong or malformed answers do not, the
expression checker refuses what is not arithmetic, and held-out prompts never reach training."""

import itertools
import random

import pytest

from tinylm.posttrain.task import ProblemStream, TaskError
from tinylm.posttrain.tasks import task_class
from tinylm.posttrain.tasks._generated import ALPHABET, held_out_problems
from tinylm.posttrain.tasks.arithmetic import Arithmetic
from tinylm.posttrain.tasks.countdown import Countdown, evaluate_expression


def get_task(name: str, **settings):
    return task_class(name)("smoke", **settings)


@pytest.mark.parametrize("name", ["arithmetic", "countdown"])
def test_own_answers_score_one_and_use_the_alphabet(name):
    task, rng = get_task(name), random.Random(0)
    for _ in range(300):
        problem = task.sample(rng)
        assert set(problem.prompt + problem.answer) <= set(ALPHABET)
        assert task.score(problem, problem.answer + "\nextra").reward == 1.0
        assert task.score(problem, problem.answer).reward == 0.0  # no newline: the answer never ended


def test_arithmetic_scores():
    task = Arithmetic("smoke", digits=3)
    problem = task.sample(random.Random(3))
    wrong = str(int(problem.answer) + 1)
    assert task.score(problem, wrong + "\n").reward == pytest.approx(0.1)  # well-formed, wrong: the format reward
    assert task.score(problem, "x\n").reward == 0.0 and task.score(problem, problem.answer + "\n").reward == 1.0
    for garbage in ("--5\n", "5-\n", "²\n", "\n", "1 2\n"):
        assert not task.score(problem, garbage).well_formed, garbage
    assert {Arithmetic("smoke", digits=2).sample(random.Random(i)).prompt[-1] for i in range(20)} == {"="}
    with pytest.raises(TaskError):
        Arithmetic("smoke", digits=0)


def test_expression_checker_is_exact_and_refuses_code():
    assert evaluate_expression("(8-5)*(2+3)") == (15, [8, 5, 2, 3])
    value, _ = evaluate_expression("7/2*2")
    assert value == 7  # exact fractions, no float rounding
    for bad in ("__import__('os')", "2**8", "x+1", "1/0", "3.5*2", "(1+2", ""):
        with pytest.raises(ValueError):
            evaluate_expression(bad)


def test_countdown_checks_numbers_and_target():
    task = Countdown("smoke", count=3)
    problem = task.sample(random.Random(0))
    a, b, c = problem.numbers
    extra = max(problem.numbers) + 1
    assert not task.score(problem, f"{a}+{b}+{c}+{extra}\n").well_formed  # a number not given
    assert not task.score(problem, f"{a}+{a}+{a}+{a}\n").well_formed  # used more often than given
    # Brute force over both tree shapes of three numbers: some expression reaches the target, as generated.
    def reaches(text):
        try:
            return evaluate_expression(text)[0] == problem.target
        except ValueError:  # a division by zero
            return False

    assert any(reaches(shape.format(x, o1, y, o2, z)) for x, y, z in itertools.permutations(problem.numbers)
               for o1 in "+-*/" for o2 in "+-*/" for shape in ("({}{}{}){}{}", "{}{}({}{}{})"))


def test_held_out_is_fixed_and_excluded_from_training():
    task = get_task("arithmetic", digits=2)
    held = held_out_problems(task, 50, seed=7)
    assert [p.prompt for p in held] == [p.prompt for p in held_out_problems(task, 50, seed=7)]
    assert len({p.prompt for p in held}) == 50
    stream = ProblemStream(task, held, seed=1)
    assert not {p.prompt for p in stream.take(2000)} & {p.prompt for p in held}
    with pytest.raises(TaskError, match="fewer than"):
        held_out_problems(Arithmetic("smoke", digits=1, operators="+"), 101)
    with pytest.raises(TaskError, match="unknown task"):
        get_task("chess")


def test_the_held_out_split_is_validation_then_test_and_both_are_excluded_from_training():
    task = get_task("arithmetic", digits=2)
    split = task.held_out(30, 20)
    assert len(split.validation) == 30 and len(split.test) == 20
    assert [p.prompt for p in split.problems] == [p.prompt for p in held_out_problems(task, 50)]
    assert not {p.prompt for p in split.validation} & {p.prompt for p in split.test}
    stream = ProblemStream(task, split.problems, seed=1)
    assert not {p.prompt for p in stream.take(2000)} & {p.prompt for p in split.problems}
