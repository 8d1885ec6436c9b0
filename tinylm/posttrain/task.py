"""What every post-training task gives the methods, and the one way a model is measured on it.

A task (one module of tinylm.posttrain.tasks) has problems, each with a `prompt` text; it encodes a problem for the
policy (`prompt_ids`), says where a completion stops (`generation`) and checks completions (`score_completions`:
`Score.correct` is its verdict, `Score.kinds` what each of its checks found). SFT, DPO and GRPO take a task, never
asking which one it is; `measure` is how every method reports on one: the pass rate of greedy completions with its
Wilson interval, the share of each check that held, and the loss of the reference answers where the task has them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import torch

from ..distributed import World, all_reduce_sum, gather_to_main
from ..errors import InputError
from ..eval.loss import answer_loss_sum
from ..eval.uncertainty import wilson_interval
from ..runtime import autocast, model_device
from .replies import SHOWN_REPLIES, greedy_completions

METHODS = ("sft", "dpo", "grpo")


class TaskError(InputError):
    """An unknown task, one a method cannot train on, or a setting it cannot use."""


@dataclass(frozen=True)
class Score:
    reward: float  # what GRPO pays for the completion
    correct: bool  # the task's verdict
    well_formed: bool  # the completion ended as the task's format ends
    kinds: dict[str, bool] = field(default_factory=dict)  # each check of this problem -> whether it held
    figures: dict[str, float] = field(default_factory=dict)  # per-completion figures a report averages


@dataclass(frozen=True)
class HeldOut:
    """The problems no training step draws: `validation` chooses best.pt, `test` reports."""

    validation: list
    test: list

    @property
    def problems(self) -> list:
        return self.validation + self.test


class ProblemStream:
    """Training problems drawn from `task.sample`, never one with a held-out prompt, with a position a checkpoint
    can hold (the generator's Mersenne Twister state), so a resumed run draws what the interrupted one would have."""

    def __init__(self, task: PostTrainingTask, held_out: Sequence, seed: int = 0):
        self.task, self.rng = task, random.Random(seed)
        self.excluded = {p.prompt for p in held_out}

    def take(self, count: int) -> list:
        problems = []
        while len(problems) < count:
            problem = self.task.sample(self.rng)
            if problem.prompt not in self.excluded:
                problems.append(problem)
        return problems

    def state_dict(self) -> dict:
        version, words, gauss = self.rng.getstate()
        return {"generator": torch.tensor(words, dtype=torch.int64), "version": version, "gauss": gauss}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate((state["version"], tuple(int(w) for w in state["generator"].tolist()), state["gauss"]))


class PostTrainingTask:
    """A post-training task. A subclass sets `name`, `recipes` (method -> profile -> that method's recipe, from
    tinylm.posttrain.recipes) and `reply_tokens`, and gives the hooks below that its methods use."""

    name: ClassVar[str]
    recipes: ClassVar[dict[str, dict[str, Any]]]
    reply_tokens: ClassVar[int]  # the longest completion, greedy or sampled
    rewards: ClassVar[tuple[str, ...]] = ("correct",)  # what GRPO may pay: the first is the task's own check
    takes_data: ClassVar[bool] = False  # whether --data chooses its records
    default_data: ClassVar[str | None] = None  # the records it reads when --data is not given
    choose_by_pass_rate: ClassVar[bool] = True  # the validation pass rate chooses best.pt, else the method's loss
    measure_name: ClassVar[str] = "pass rate"  # what its pass rate counts, as a report says it

    def __init__(self, data: str | None = None):
        if data is not None and not self.takes_data:
            raise TaskError(f"--data: the {self.name} task reads no data set of yours; leave --data out")
        self.data = data or self.default_data

    @classmethod
    def recipe(cls, method: str, profile: str):
        if method not in cls.recipes:
            raise TaskError(f"the {cls.name} task has no {method.upper()} recipe")
        if profile not in cls.recipes[method]:
            raise TaskError(f"the {cls.name} task has no {profile} recipe for {method.upper()}: use --profile "
                            + " or ".join(cls.recipes[method]))
        return cls.recipes[method][profile]

    # -- the model a method starts from --------------------------------------------------------------------------
    def prerequisite(self, method: str, base: str, profile: str, recipe) -> Any:
        """The run `base` names that this task makes when it is missing (a tinylm.train.prerequisite.Prerequisite),
        or None where `base` is a model to load as it is; `recipe` is the run's, its --set changes applied."""
        return None

    def check_start(self, model, tokenizer, where: str, method: str, recipe) -> None:
        """A TaskError where the model at `where` cannot start `method` on this task (with `recipe`, the run's)."""

    def prepare(self, start_path: str | None, device, method: str) -> None:
        """Ready the checks for a policy that `method` starts from `start_path` (a checkpoint or run folder; None for a
        model from elsewhere, such as GPT-2 from Hugging Face), on `device`: a story task's verifier."""

    def recorded(self) -> dict[str, Any]:
        """What a run's settings.json keeps of the task beyond its name (the verifier's base)."""
        return {}

    # -- problems -------------------------------------------------------------------------------------------------
    def held_out(self, validation: int | None, test: int | None) -> HeldOut:
        raise NotImplementedError

    def sample(self, rng: random.Random):
        """A training problem (GRPO's rollouts draw them)."""
        raise NotImplementedError

    def prompt_ids(self, tokenizer, problem) -> list[int]:
        raise NotImplementedError

    def generation(self, tokenizer) -> dict:
        """What tinylm.generate.decode.decode needs beyond the sampling: the stop tokens, the ids never drawn."""
        raise NotImplementedError

    def score_completions(self, tokenizer, problems: Sequence, completions: list[list[int]]) -> list[Score]:
        raise NotImplementedError

    def reply_texts(self, tokenizer, completions: list[list[int]]) -> list[str]:
        """Each completion as the text a report shows."""
        return [tokenizer.decode(ids) for ids in completions]

    def answers(self, tokenizer, problems: Sequence, block_size: int) -> list:
        """The problems' reference answers as RenderedChat (ids, which of them are the answer), for the answer loss;
        [] for a task without references."""
        return []

    def rewarded_by(self, reward: str) -> PostTrainingTask:
        """This task paying `reward` (one of `rewards`) in Score.reward; Score.correct stays its own check."""
        if reward not in self.rewards:
            raise TaskError(f"reward {reward!r}: {self.name} pays {' or '.join(self.rewards)}")
        return self

    # -- what a run says --------------------------------------------------------------------------------------------
    def describe(self, problem) -> str:
        """A problem as a report shows it."""
        return problem.prompt

    def example_command(self, out: str) -> str:
        """The command that tries a trained policy on one problem."""
        return f"python -m tinylm.chat --ckpt {out}"


def measure(model, tokenizer, task: PostTrainingTask, problems: Sequence, *, world: World = World(),
            batch_size: int = 64, dtype: torch.dtype = torch.float32, answer_loss: bool = True) -> dict[str, Any]:
    """The one report of a model on `problems`: greedy completions scored by the task, with the pass rate and its 95%
    Wilson interval, each check's share where it was asked ("kinds"), the means of the task's figures, each
    problem's verdict in order ("passed_each"), the first SHOWN_REPLIES replies, and the mean loss of the reference
    answers ("answer_loss", None without references). Under DDP each rank takes a share; every rank must call it;
    every rank gets the pass rate and the answer loss, rank 0 alone the rest."""
    device = model_device(model)
    mine, scores, completions = _scored_share(model, tokenizer, task, problems, world, batch_size)
    texts = task.reply_texts(tokenizer, completions)
    rows = [(i, s, t) for i, s, t in zip(mine, scores, texts)]
    gathered = gather_to_main(rows) if world.distributed else [rows]
    loss = None
    if answer_loss and (answers := task.answers(tokenizer, problems, model.config.block_size)):
        total, count = answer_loss_sum(model, answers, batch_size, device, 0, autocast(device, dtype), tokenizer,
                                       rank=world.rank, world_size=world.size)
        total, count = all_reduce_sum([total, count], device) if world.distributed else (total, count)
        loss = total / count
    passed = sum(s.correct for s in scores)
    passed = int(all_reduce_sum([passed], device)[0]) if world.distributed else passed
    if gathered is None:  # not rank 0
        return {"pass_rate": passed / len(problems), "passed": passed, "problems": len(problems), "answer_loss": loss}
    rows = sorted((row for part in gathered for row in part), key=lambda row: row[0])
    return {**summarize([task.describe(problems[i]) for i, _, _ in rows], [score for _, score, _ in rows],
                        [text for _, _, text in rows]), "answer_loss": loss}


def _scored_share(model, tokenizer, task: PostTrainingTask, problems: Sequence, world: World, batch_size: int
                  ) -> tuple[list[int], list[Score], list[list[int]]]:
    """This rank's share of `problems` (every world.size-th, from its rank): their indices, scores and greedy
    completions."""
    mine = list(range(world.rank, len(problems), world.size))
    if not mine:
        return [], [], []
    completions = greedy_completions(model, tokenizer, task, [problems[i] for i in mine], batch_size=batch_size)
    return mine, task.score_completions(tokenizer, [problems[i] for i in mine], completions), completions


def summarize(prompts: list[str], scores: list[Score], texts: list[str]) -> dict[str, Any]:
    """The report's figures of these scores (in the problems' order): the pass rate with its 95% Wilson interval, each
    check's share where it was asked, the means of the task's figures, each verdict, the first replies."""
    passed, n = sum(s.correct for s in scores), len(scores)
    low, high = wilson_interval(passed, n)
    kinds: dict[str, list[bool]] = {}
    figures: dict[str, list[float]] = {}
    for score in scores:
        for kind, held in score.kinds.items():
            kinds.setdefault(kind, []).append(held)
        for name, value in score.figures.items():
            figures.setdefault(name, []).append(value)
    return {"pass_rate": passed / n, "passed": passed, "problems": n, "low": low, "high": high,
            "kinds": {kind: {"held": sum(held) / len(held), "asked": len(held)} for kind, held in kinds.items()},
            "figures": {name: sum(values) / len(values) for name, values in figures.items()},
            "passed_each": [s.correct for s in scores],
            "replies": [{"prompt": p, "reply": t, "passed": s.correct, "kinds": s.kinds}
                        for p, s, t in list(zip(prompts, scores, texts))[:SHOWN_REPLIES]]}


def greedy_pass_rate(model, tokenizer, task: PostTrainingTask, problems: Sequence, *, world: World = World(),
                     batch_size: int = 64) -> dict[str, float]:
    """The shares of `problems` whose greedy completion the task passes ("pass_rate") and that ended in its format
    ("well_formed"): `measure`'s figure alone. Under DDP each rank takes a share; every rank must call it."""
    mine, scores, _ = _scored_share(model, tokenizer, task, problems, world, batch_size)
    totals = [sum(s.correct for s in scores), sum(s.well_formed for s in scores), len(mine)]
    correct, formed, n = all_reduce_sum(totals, model_device(model)) if world.distributed else totals
    return {"pass_rate": correct / n, "well_formed": formed / n}


def pass_rate_line(report: dict) -> str:
    """'70.3% [64.3, 75.6] (175 of 249)': a report's pass rate with its 95% Wilson interval in points."""
    return (f"{100 * report['pass_rate']:.1f}% [{100 * report['low']:.1f}, {100 * report['high']:.1f}] "
            f"({report['passed']} of {report['problems']})")


def kinds_line(report: dict, before: dict | None = None) -> str:
    """Each check's share where asked ('name 94%, word 88%'), with its share `before` where given."""
    return ", ".join(f"{kind} " + (f"{100 * before['kinds'][kind]['held']:.0f}% -> " if before and kind in
                                   before.get("kinds", {}) else "") + f"{100 * held['held']:.0f}%"
                     for kind, held in report["kinds"].items())


def pass_rate_table(reports: dict[str, dict], kinds: Sequence[str]) -> str:
    """A markdown table: per named report its pass rate (`pass_rate_line`) and the share of each check in `kinds`
    that held where asked (nan% where the report asked none)."""
    lines = ["| model | test pass rate [95% Wilson] | " + " | ".join(f"{kind} held" for kind in kinds) + " |",
             "|---" * (len(kinds) + 2) + "|"]
    for name, report in reports.items():
        held = " | ".join(f"{100 * report['kinds'].get(kind, {}).get('held', math.nan):.0f}%" for kind in kinds)
        lines.append(f"| {name} | {pass_rate_line(report)} | {held} |")
    return "\n".join(lines)


def clipped(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width] + " ..."
