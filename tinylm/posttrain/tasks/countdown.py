"""Countdown: "3 5 8 2>24:" -> an expression that reaches the target with + - * / and each number at most once,
for GRPO. Each problem is built from a random expression, so it has a solution; the settings are the smallest that
still make a search (3 numbers up to 9, targets up to 99). The check parses the expression, never runs it."""

from __future__ import annotations

import ast
import random
from collections import Counter
from fractions import Fraction

from ...errors import InputError
from ..task import Score, TaskError
from ._generated import GeneratedTask, Problem, answer_text, checked

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


class Countdown(GeneratedTask):
    """Reach the target with + - * / and each of `count` numbers (1 to `largest`) at most once."""

    name = "countdown"
    settings = {profile: {"count": 3, "largest": 9, "max_target": 99} for profile in ("smoke", "cpu", "gpu")}
    reply_tokens = 16

    def configure(self, count: int = 3, largest: int = 9, max_target: int = 99) -> None:
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

    def score(self, problem: Problem, completion: str) -> Score:
        text, ended = answer_text(completion)
        try:
            result, used = evaluate_expression(text)
        except ValueError:
            return checked(False, False)
        well_formed = ended and not Counter(used) - Counter(problem.numbers)
        correct = well_formed and result == problem.target
        return checked(correct, well_formed)


TASK = Countdown
