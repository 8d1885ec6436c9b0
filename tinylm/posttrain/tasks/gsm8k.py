"""GSM8K (Cobbe et al. 2021, https://arxiv.org/abs/2110.14168): grade-school word problems whose worked solutions
carry calculator calls (`<<48/2=24>>`) and end `#### N`. Training problems are its train split but its last
VALIDATION problems, which choose best.pt; the test split reports. The check is exact match of the final number.
"""

from __future__ import annotations

from ...eval.benchmarks import eval_file, read_jsonl
from ..task import HeldOut
from ._tool_use import ToolTask, WordProblem, tool_recipes

VALIDATION = 500  # the train split's last problems, held out to choose best.pt


class GSM8K(ToolTask):
    name = "gsm8k"
    recipes = tool_recipes("gsm8k")

    def __init__(self, profile: str, data: str | None = None, system_prompt: str | None = None):
        super().__init__(profile, data, system_prompt)
        self.read_from = "GSM8K's train split (tinylm.eval.benchmarks)"
        self._train = self._problems("train")

    def train_problems(self) -> list[WordProblem]:
        return self._train[:-VALIDATION]

    def held_out(self, validation: int | None, test: int | None) -> HeldOut:
        return HeldOut(self._train[-VALIDATION:][:validation], self._problems("test")[:test])

    def _problems(self, split: str) -> list[WordProblem]:
        return [self.word_problem(r["question"], r["answer"]) for r in read_jsonl(eval_file(f"gsm8k/{split}.jsonl"))]


TASK = GSM8K
