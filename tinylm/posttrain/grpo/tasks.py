"""Problems whose answers a program checks: the data of reinforcement learning with verifiable rewards.

A task draws problems (each with a `prompt` text), says how the policy reads a prompt and where a completion ends
(`prompt_ids`, `generation`), scores completions (`score_completions`), and names its held-out problems (`held_out`)
and the rewards it pays (`rewarded_by`). The reward needs no learned judge: the completion is parsed and checked, so
it cannot be argued with, only hacked through what the check forgets (`FormatOnly` pays any well-formed answer).

- arithmetic: "347+58=" → "405": sums and differences of numbers of 1 to `digits` digits.
- countdown: "3 5 8 2>24:" → an expression that reaches the target with + - * / and each number at most once (each
  problem is built from a random expression, so it has a solution).
- stories (tinylm.posttrain.grpo.story_writing): a story that meets an instruction, checked by the story verifier.

Arithmetic and countdown read a completion up to its first newline and fix their held-out problems by seed
(`held_out_split`): validation (choosing best.pt) and test (reported). `ProblemStream` draws training problems, never
one with a held-out prompt, with a state a checkpoint can keep.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import torch

from ...errors import InputError

ALPHABET = "\n ()*+-/0123456789:=>"  # every character a prompt or a well-formed answer of either task uses
END = "\n"


class TaskError(InputError):
    """An unknown task or a setting it cannot use."""


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str  # one correct completion (without the newline); countdown accepts any expression that checks
    numbers: tuple[int, ...] = ()
    target: int | None = None


@dataclass(frozen=True)
class Score:
    reward: float
    correct: bool
    well_formed: bool


class GeneratedTask:
    """What arithmetic and countdown share: prompts and answers are characters of the policy's own tokenizer, a
    completion ends at the newline, and the held-out problems are drawn by seed. A subclass gives `name`, `sample`
    and `score(problem, completion)`."""

    rewards = ("correct", "format")

    def prompt_ids(self, tokenizer, problem: Problem) -> list[int]:
        return tokenizer.encode(problem.prompt)

    def generation(self, tokenizer) -> dict:
        """What `tinylm.generate.decode.decode` needs beyond the sampling: where a completion stops."""
        return {"stop_tokens": tokenizer.encode(END)}

    def score_completions(self, tokenizer, problems: list[Problem], completions: list[list[int]]) -> list[Score]:
        """Each completion's score: its ids (the stop token included when it came) read as text."""
        return [self.score(problem, tokenizer.decode(ids)) for problem, ids in zip(problems, completions)]

    def held_out(self, validation: int, test: int) -> "HeldOut":
        return held_out_split(self, validation, test)

    def rewarded_by(self, reward: str):
        """This task paying `reward`: correct (its check) or format (`FormatOnly`)."""
        if reward not in self.rewards:
            raise TaskError(f"reward {reward!r}: {self.name} pays {' or '.join(self.rewards)}")
        return FormatOnly(self) if reward == "format" else self


def _answer_text(completion: str) -> tuple[str, bool]:
    """The completion up to its first newline, and whether a newline ended it."""
    text, newline, _ = completion.partition(END)
    return text.strip(), bool(newline)


class ArithmeticTask(GeneratedTask):
    """a+b= and a-b= with numbers of 1 to `digits` digits; the answer is the exact integer."""

    name = "arithmetic"

    def __init__(self, digits: int = 3, operators: str = "+-"):
        if digits < 1 or not operators or set(operators) - set("+-"):
            raise TaskError(f"arithmetic needs digits >= 1 and operators among + and -, got {digits}, {operators!r}")
        self.digits, self.operators = digits, operators

    def sample(self, rng: random.Random) -> Problem:
        a, b = (rng.randrange(10 ** rng.randint(1, self.digits)) for _ in range(2))
        operator = rng.choice(self.operators)
        result = a + b if operator == "+" else a - b
        return Problem(prompt=f"{a}{operator}{b}=", answer=str(result))

    def score(self, problem: Problem, completion: str, format_weight: float = 0.1) -> Score:
        text, ended = _answer_text(completion)
        well_formed = ended and re.fullmatch(r"-?[0-9]+", text) is not None
        correct = well_formed and int(text) == int(problem.answer)
        return Score(reward=1.0 if correct else (format_weight if well_formed else 0.0), correct=correct,
                     well_formed=well_formed)


_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.Div: lambda a, b: a / b}


def evaluate_expression(text: str) -> tuple[Fraction, list[int]]:
    """The exact value of an expression of integers, + - * / and parentheses, and the integers it uses.
    ValueError for anything else (names, calls, powers, division by zero): the reward never runs `eval`."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise InputError(f"not an expression: {text!r}") from error
    used: list[int] = []

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise InputError("division by zero")
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return Fraction(node.value)
        raise InputError(f"only integers, + - * / and parentheses are allowed, got {ast.dump(node)[:40]}")

    return value(tree.body), used


class CountdownTask(GeneratedTask):
    """Reach the target with + - * / and each of `count` numbers (1 to `largest`) at most once."""

    name = "countdown"

    def __init__(self, count: int = 3, largest: int = 9, max_target: int = 99):
        if count < 2 or largest < 2 or max_target < 1:
            raise TaskError(f"countdown needs count >= 2, largest >= 2, max_target >= 1; got {count}, {largest}, "
                            f"{max_target}")
        self.count, self.largest, self.max_target = count, largest, max_target

    def sample(self, rng: random.Random) -> Problem:
        while True:
            numbers = [rng.randint(1, self.largest) for _ in range(self.count)]
            parts = [str(n) for n in numbers]
            rng.shuffle(parts)
            while len(parts) > 1:  # join two random parts until one expression is left
                i, j = rng.sample(range(len(parts)), 2)
                joined = f"({parts[i]}{rng.choice('+-*/')}{parts[j]})"
                parts = [p for k, p in enumerate(parts) if k not in (i, j)] + [joined]
            try:
                target, _ = evaluate_expression(parts[0])
            except ValueError:
                continue
            if target.denominator == 1 and 1 <= target <= self.max_target:
                expression = parts[0][1:-1]  # the outer parentheses are not needed
                return Problem(prompt=f"{' '.join(map(str, numbers))}>{int(target)}:", answer=expression,
                               numbers=tuple(numbers), target=int(target))

    def score(self, problem: Problem, completion: str, format_weight: float = 0.1) -> Score:
        text, ended = _answer_text(completion)
        try:
            result, used = evaluate_expression(text)
        except ValueError:
            return Score(reward=0.0, correct=False, well_formed=False)
        well_formed = ended and not Counter(used) - Counter(problem.numbers)
        correct = well_formed and result == problem.target
        return Score(reward=1.0 if correct else (format_weight if well_formed else 0.0), correct=correct,
                     well_formed=well_formed)


TASKS = {"arithmetic": ArithmeticTask, "countdown": CountdownTask}  # the generated tasks
TASK_NAMES = (*TASKS, "stories")  # stories: a StoryWritingTask, built from an SFT run's verifier (story_writing)


def check_task_name(name: str) -> None:
    if name not in TASK_NAMES:
        raise TaskError(f"unknown task {name!r}: choose {', '.join(TASK_NAMES)}")


def get_task(name: str, **settings) -> ArithmeticTask | CountdownTask:
    """A generated task by name, with its settings."""
    if name not in TASKS:
        check_task_name(name)
        raise TaskError(f"{name} is not a generated task: build it with tinylm.posttrain.grpo.story_writing")
    return TASKS[name](**settings)


def held_out_problems(task, count: int, seed: int = 1234) -> list[Problem]:
    """`count` problems with distinct prompts, the same for the same task, count and seed."""
    rng, problems, seen = random.Random(seed), [], set()
    for _ in range(100 * count):
        problem = task.sample(rng)
        if problem.prompt not in seen:
            seen.add(problem.prompt)
            problems.append(problem)
            if len(problems) == count:
                return problems
    raise TaskError(f"{task.name} has fewer than {count} distinct problems at these settings: ask for fewer")


@dataclass(frozen=True)
class HeldOut:
    """The problems no training step draws: `validation` chooses (every evaluation; best.pt is the best of them),
    `test` reports (once before training, once on best.pt after it)."""

    validation: list[Problem]
    test: list[Problem]

    @property
    def problems(self) -> list[Problem]:
        """Both splits: what training must never see."""
        return self.validation + self.test


def held_out_split(task, validation: int, test: int, seed: int = 1234) -> HeldOut:
    """`held_out_problems(task, validation + test, seed)` cut in two: the first `validation` problems, then `test`."""
    problems = held_out_problems(task, validation + test, seed)
    return HeldOut(problems[:validation], problems[validation:])


def training_problems(task, held_out: list[Problem], seed: int = 0) -> Iterator[Problem]:
    """An endless stream of problems, none with a held-out prompt."""
    rng, excluded = random.Random(seed), {p.prompt for p in held_out}
    while True:
        problem = task.sample(rng)
        if problem.prompt not in excluded:
            yield problem


class ProblemStream:
    """`training_problems` with a position a checkpoint can hold: the generator's state as a tensor (the
    Mersenne Twister's 625 words), so that a resumed run draws exactly the problems the interrupted one would have."""

    def __init__(self, task, held_out: list[Problem], seed: int = 0):
        self.task, self.rng = task, random.Random(seed)
        self.excluded = {p.prompt for p in held_out}
        self.drawn = 0

    def take(self, count: int) -> list[Problem]:
        problems = []
        while len(problems) < count:
            problem = self.task.sample(self.rng)
            if problem.prompt not in self.excluded:
                problems.append(problem)
        self.drawn += count
        return problems

    def state_dict(self) -> dict:
        version, words, gauss = self.rng.getstate()
        return {"generator": torch.tensor(words, dtype=torch.int64), "version": version, "gauss": gauss,
                "drawn": self.drawn}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate((state["version"], tuple(int(w) for w in state["generator"].tolist()), state["gauss"]))
        self.drawn = state["drawn"]


class FormatOnly(GeneratedTask):
    """A task whose reward pays for a well-formed answer alone, right or wrong: the reward a careless check
    gives, to show reward hacking. `correct` is still measured, so the damage shows."""

    def __init__(self, task):
        self.task, self.name = task, f"{task.name} (format-only reward)"

    def sample(self, rng: random.Random) -> Problem:
        return self.task.sample(rng)

    def score(self, problem: Problem, completion: str, format_weight: float = 0.1) -> Score:
        score = self.task.score(problem, completion, format_weight)
        return Score(reward=float(score.well_formed), correct=score.correct, well_formed=score.well_formed)
