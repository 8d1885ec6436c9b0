"""DCLM's CORE score (Li et al., 2024, https://arxiv.org/abs/2406.11794), the metric nanochat reports for a base model.

CORE averages 22 tasks, each with its own shots, after centring its accuracy by the accuracy of guessing,
(acc − b)/(1 − b): 0 is chance and 1 is perfect, so tasks with two choices and tasks with four weigh alike. This module
runs the tasks the mirror holds, says which are missing (squad and coqa), and averages the centred accuracies of
those present, which is why a score over fewer than 22 tasks is not the published one. Between two models on the
same items, `compare_results` gives McNemar's paired test and the items that changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InputError
from .benchmarks import NOT_MIRRORED, core_specs, core_task
from .scoring import TaskResult, evaluate_task
from .uncertainty import Paired, paired


@dataclass
class CoreResult:
    results: list[TaskResult]
    missing: list[str]

    @property
    def scored(self) -> list[TaskResult]:
        """The tasks with at least one item scored (a task none of whose items fits the context has none)."""
        return [result for result in self.results if result.correct]

    @property
    def score(self) -> float:
        """The mean centred accuracy over the tasks scored."""
        return sum(result.centred for result in self.scored) / len(self.scored)

    def to_dict(self) -> dict[str, Any]:
        return {"core": self.score, "tasks_scored": len(self.scored), "missing": self.missing,
                "unscored": [result.task for result in self.results if not result.correct],
                "tasks": [result.to_dict() for result in self.results]}


def evaluate_core(model, tokenizer, *, limit: int | None = None, tasks: list[str] | None = None,
                  progress: Callable[[str], Callable] | None = None, device=None) -> CoreResult:
    """Every CORE task the mirror holds (or those named in `tasks`), each cut to its first `limit` items.
    `progress(task name)` returns a wrapper for that task's items (e.g. a tqdm with the name)."""
    specs = core_specs()
    if tasks is not None:
        unknown = sorted(set(tasks) - {spec.name for spec in specs})
        if unknown:
            raise InputError(f"not CORE tasks: {', '.join(unknown)}; CORE's are {', '.join(s.name for s in specs)}")
        specs = [spec for spec in specs if spec.name in tasks]
    results, missing = [], []
    for spec in specs:
        if spec.name in NOT_MIRRORED:
            missing.append(spec.name)
            continue
        results.append(evaluate_task(model, tokenizer, core_task(spec), limit=limit, device=device,
                                     progress=progress(spec.name) if progress else None))
    core = CoreResult(results, missing)
    if not core.scored:
        raise InputError("no CORE task was scored: the mirror holds none of those asked for, or no item fits the "
                         "model's context")
    return core


@dataclass
class Comparison:
    task: str
    test: Paired
    gained: list[int]  # items the second model got right and the first wrong
    lost: list[int]


def compare_results(first: TaskResult, second: TaskResult) -> Comparison:
    """McNemar's exact test of two models' verdicts on the items both scored, and which items changed."""
    mine, theirs = dict(zip(first.indices, first.correct)), dict(zip(second.indices, second.correct))
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        raise InputError(f"{first.task}: the two models scored no item in common (their contexts differ too much)")
    a, b = [mine[i] for i in shared], [theirs[i] for i in shared]
    return Comparison(first.task, paired(a, b), [i for i in shared if not mine[i] and theirs[i]],
                      [i for i in shared if mine[i] and not theirs[i]])
