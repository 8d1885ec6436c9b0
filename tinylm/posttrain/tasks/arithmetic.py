"""Arithmetic: "347+58=" -> "405", sums and differences of numbers of 1 to `digits` digits, for GRPO. On a laptop
the task-format model (2 layers, 64 wide, 1,500 steps of answer-only SFT) solves a minority of the held-out 2-digit
problems greedily, which leaves GRPO room to gain and gives it groups with mixed rewards (a group whose completions
are all right or all wrong teaches nothing); 3-digit problems start far lower."""

from __future__ import annotations

import random
import re

from ..task import Score, TaskError
from ._generated import GeneratedTask, Problem, answer_text, checked


class Arithmetic(GeneratedTask):
    """a+b= and a-b= with numbers of 1 to `digits` digits; the answer is the exact integer."""

    name = "arithmetic"
    settings = {"smoke": {"digits": 2}, "cpu": {"digits": 2}, "gpu": {"digits": 3}}
    reply_tokens = 8

    def configure(self, digits: int = 3, operators: str = "+-") -> None:
        if digits < 1 or not operators or set(operators) - set("+-"):
            raise TaskError(f"arithmetic needs digits >= 1 and operators among + and -, got {digits}, {operators!r}")
        self.digits, self.operators = digits, operators

    def sample(self, rng: random.Random) -> Problem:
        a, b = (rng.randrange(10 ** rng.randint(1, self.digits)) for _ in range(2))
        operator = rng.choice(self.operators)
        result = a + b if operator == "+" else a - b
        return Problem(prompt=f"{a}{operator}{b}=", answer=str(result))

    def score(self, problem: Problem, completion: str) -> Score:
        text, ended = answer_text(completion)
        well_formed = ended and re.fullmatch(r"-?[0-9]+", text) is not None
        correct = well_formed and int(text) == int(problem.answer)
        return checked(correct, well_formed)


TASK = Arithmetic
