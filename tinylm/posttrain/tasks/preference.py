"""The preference task: instructions each with a chosen and a rejected answer that someone else wrote
(tinylm.data.preference: the course's 1,100 instructions, or your JSON/JSONL file), for DPO, split three ways as the
instruction task splits the same instructions. The validation pairs' DPO loss chooses best.pt; a report counts the
greedy replies closer to the chosen answer than to the rejected one by token F1.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import TrainConfig
from ...data.preference import load_preferences, prompt_messages, split_preferences
from ...eval.overlap import token_f1
from ..chat_task import ChatTask
from ..recipes import DPORecipe
from ..task import HeldOut, Score

RECIPES = {
    "dpo": {  # from the instruction task's SFT run
        "smoke": DPORecipe(base="sft-instruct", beta=0.1, held_out=8, lora_learning_rate=1e-2,
                           train=TrainConfig(batch_size=8, max_steps=10, warmup_steps=2, learning_rate=1e-3,
                                             min_lr=1e-4, eval_interval=5, log_interval=5, eval_batch_size=32,
                                             dtype="float32")),
        # about two passes over the cpu SFT run's ~990 training pairs
        "cpu": DPORecipe(base="sft-instruct", beta=0.1, lora_learning_rate=3e-3,
                         train=TrainConfig(batch_size=16, max_steps=120, warmup_steps=10, learning_rate=3e-4,
                                           min_lr=3e-5, beta2=0.99, weight_decay=0.0, eval_interval=20,
                                           log_interval=10, eval_batch_size=32, dtype="float32")),
        # GPT-2 124M chat: a small learning rate, as DPO recipes for models of this size use (not measured)
        "gpu": DPORecipe(base="sft-instruct", beta=0.1, lora_learning_rate=5e-5,
                         train=TrainConfig(batch_size=8, grad_accum_steps=4, max_steps=300, warmup_steps=20,
                                           learning_rate=5e-6, min_lr=5e-7, weight_decay=0.0, eval_interval=50,
                                           log_interval=10, eval_batch_size=16)),
    },
}


@dataclass(frozen=True)
class PreferenceProblem:
    """A preference record as a problem: its `prompt` is the user's turn; its reference answer the chosen one."""

    source: dict

    @property
    def prompt(self) -> str:
        return prompt_messages(self.source)[-1]["content"]

    def record(self) -> dict:
        return {"instruction": self.source["instruction"], "input": self.source.get("input", ""),
                "output": self.source["chosen"]}


class Preference(ChatTask):
    name = "preference"
    recipes = RECIPES
    reply_tokens = 200
    takes_data = True
    default_data = "preference"
    choose_by_pass_rate = False
    measure_name = "replies closer to the chosen answer than to the rejected one (token F1)"

    def __init__(self, profile: str, data: str | None = None, system_prompt: str | None = None):
        super().__init__(profile, data, system_prompt)
        records, self.read_from = load_preferences(self.data)
        self.split = split_preferences(records)

    def train_problems(self) -> list[PreferenceProblem]:
        return [PreferenceProblem(r) for r in self.split.train]

    def pair_records(self) -> dict[str, list[dict]]:
        """The pairs DPO trains on (train), chooses by (validation) and reports on (test)."""
        return {"train": self.split.train, "validation": self.split.validation, "test": self.split.test}

    def held_out(self, validation: int | None, test: int | None) -> HeldOut:
        return HeldOut([PreferenceProblem(r) for r in self.split.validation[:validation]],
                       [PreferenceProblem(r) for r in self.split.test[:test]])

    def score_replies(self, problems, texts: list[str], ended: list[bool]) -> list[Score]:
        """correct: the reply is closer to the chosen answer than to the rejected one (token F1; a tie is not)."""
        scores = []
        for problem, text, stop in zip(problems, texts, ended):
            chosen, rejected = token_f1(text, problem.source["chosen"]), token_f1(text, problem.source["rejected"])
            figures = {"f1_chosen": chosen, "f1_rejected": rejected, "tie": float(chosen == rejected)}
            scores.append(Score(reward=float(chosen > rejected), correct=chosen > rejected, well_formed=stop,
                                figures=figures))
        return scores


TASK = Preference
