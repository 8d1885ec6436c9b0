"""Multistep: arithmetic word problems a program writes from a seed, with worked solutions in GSM8K's format, for
teaching a chat model to call a calculator (tinylm.generate.calculator) and RL to make it better at the steps.

A problem starts from a product of two `digits`-digit numbers ("Ava has 47 boxes with 36 pencils each.") and takes
`steps` more operations (giving some away, buying more, sharing equally, selling): products a small model cannot do in
its head, divisions that come out even, and a question about the last quantity. The held-out problems are the first
HELD_OUT distinct ones of one seed; training problems come from another seed and never repeat a held-out question.
"""

from __future__ import annotations

import random

from ..task import HeldOut, TaskError
from ._generated import held_out_problems
from ._tool_use import ToolTask, WordProblem, tool_recipes

HELD_OUT = 600  # problems set aside: validation first, then test
TRAIN_PROBLEMS = 4000  # distinct training problems SFT trains on (GRPO draws fresh ones)
NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lena", "Mateo",
         "Nora", "Omar", "Priya")
THINGS = (("boxes", "pencils"), ("packs", "stickers"), ("trays", "cookies"), ("cartons", "eggs"), ("bags", "marbles"),
          ("crates", "apples"), ("shelves", "books"), ("rows", "seeds"))


def _number(rng: random.Random, digits: int) -> int:
    """A number of exactly `digits` digits, never ending in 0 (a round number is easy in the head)."""
    while (n := rng.randrange(10 ** (digits - 1), 10**digits)) % 10 == 0 or n < 3:
        pass
    return n


def _divisor(rng: random.Random, value: int) -> int | None:
    """A divisor of value between 3 and 40, or None where it has none."""
    divisors = [d for d in range(3, 41) if value % d == 0 and value // d > 1]
    return rng.choice(divisors) if divisors else None


class Multistep(ToolTask):
    name = "multistep"
    recipes = tool_recipes("multistep")
    reply_tokens = 160
    settings = {"smoke": {"digits": 2, "steps": 2}, "cpu": {"digits": 2, "steps": 2},
                "gpu": {"digits": 2, "steps": 3}}

    def __init__(self, profile: str, data: str | None = None, system_prompt: str | None = None, **settings):
        super().__init__(profile, data, system_prompt)
        settings = {**self.settings[profile], **settings}
        self.digits, self.steps = settings["digits"], settings["steps"]
        if not (1 <= self.digits <= 4 and 1 <= self.steps <= 4):
            raise TaskError(f"multistep needs digits and steps from 1 to 4, got {self.digits} and {self.steps}")
        self.read_from = f"multistep problems ({self.digits}-digit numbers, {self.steps} steps after the first)"
        self._held_out = held_out_problems(self, HELD_OUT)
        self._train: list[WordProblem] = []

    def sample(self, rng: random.Random) -> WordProblem:
        name, (containers, things) = rng.choice(NAMES), rng.choice(THINGS)
        a, b = _number(rng, self.digits), _number(rng, self.digits)
        value = a * b
        question = [f"{name} has {a} {containers} with {b} {things} each."]
        solution = [f"{name} starts with {a}*{b} = <<{a}*{b}={value}>>{value} {things}."]
        asked = f"How many {things} does {name} have now?"
        for step in range(self.steps):
            last = step == self.steps - 1
            kind = rng.choice(("give", "buy", "share", "sell") if last else ("give", "buy"))
            if kind == "share" and (k := _divisor(rng, value)):
                question.append(f"{name} shares the {things} equally among {k} friends.")
                asked = f"How many {things} does each friend get?"
                solution.append(f"Each friend gets {value}/{k} = <<{value}/{k}={value // k}>>{value // k} {things}.")
                value //= k
            elif kind == "sell":
                price = rng.randrange(2, 10 ** min(self.digits, 2))
                question.append(f"{name} sells every one of them for ${price}.")
                asked = f"How many dollars does {name} make?"
                solution.append(f"{name} makes {value}*{price} = <<{value}*{price}={value * price}>>{value * price} "
                                "dollars.")
                value *= price
            elif kind == "buy":
                more = _number(rng, max(1, self.digits - 1))
                added = more * b
                question.append(f"Then {name} buys {more} more {containers} with {b} {things} each.")
                solution.append(f"The new {containers} hold {more}*{b} = <<{more}*{b}={added}>>{added} {things}, so "
                                f"{name} has {value}+{added} = <<{value}+{added}={value + added}>>{value + added}.")
                value += added
            else:
                given = rng.randrange(value // 10 + 1, value // 2 + 2)
                question.append(f"{name} gives away {given} {things}.")
                solution.append(f"{name} has {value}-{given} = <<{value}-{given}={value - given}>>{value - given} "
                                f"{things} left.")
                value -= given
        solution.append(f"#### {value}")
        return self.word_problem(" ".join(question + [asked]), "\n".join(solution))

    def held_out(self, validation: int | None, test: int | None) -> HeldOut:
        validation = HELD_OUT // 2 if validation is None else validation
        test = HELD_OUT - validation if test is None else test
        if validation + test > HELD_OUT:
            raise TaskError(f"multistep holds out {HELD_OUT} problems; ask for fewer than {validation} + {test}")
        return HeldOut(self._held_out[:validation], self._held_out[HELD_OUT - test:])

    def train_problems(self) -> list[WordProblem]:
        rng, excluded = random.Random(7), {p.prompt for p in self._held_out}
        while len(self._train) < TRAIN_PROBLEMS:
            problem = self.sample(rng)
            if problem.prompt not in excluded:
                excluded.add(problem.prompt)
                self._train.append(problem)
        return self._train


TASK = Multistep
