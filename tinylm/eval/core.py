"""DCLM's CORE score (Li et al., 2024, https://arxiv.org/abs/2406.11794), the metric nanochat reports for a base model.

CORE averages 22 tasks, each with its own shots, after centring its accuracy by the accuracy of guessing,
(acc − b)/(1 − b): 0 is chance and 1 is perfect, so tasks with two choices and tasks with four weigh alike. This module
runs the tasks the mirror holds, says which are missing (squad and coqa), and averages the centred accuracies of
those present, which is why a score over fewer than 22 tasks is not the published one. A task counts only where at
least a third of the items asked fit the model's context (COUNTED_SHARE): the items left out are the longest, so a
few that fit are no sample of the task, and one item scored (1.000 or 0.000) would move the average as a whole task.
Between two models on the same items, `compare_results` gives McNemar's paired test and the items that changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InputError
from .benchmarks import NOT_MIRRORED, core_benchmark, core_specs
from .scoring import BenchmarkResult, evaluate_benchmark
from .uncertainty import Paired, paired

COUNTED_SHARE = 1 / 3  # a task counts in CORE where at least this share of the items asked fit the context
COUNTED_RULE = "a task counts where at least a third of its items fit the context"


def counted(result: BenchmarkResult) -> bool:
    """Whether a task's scored items are enough of it to count in CORE's average (COUNTED_SHARE)."""
    return bool(result.correct) and len(result.correct) >= COUNTED_SHARE * (len(result.correct) + result.left_out)


@dataclass
class CoreResult:
    results: list[BenchmarkResult]
    missing: list[str]

    @property
    def scored(self) -> list[BenchmarkResult]:
        """The tasks that count: enough of their items fit the context (`counted`)."""
        return [result for result in self.results if counted(result)]

    @property
    def left_out_share(self) -> float:
        """The share of the items asked that no task could score (too long for the context even without shots)."""
        left = sum(result.left_out for result in self.results)
        return left / max(1, left + sum(len(result.correct) for result in self.results))

    @property
    def score(self) -> float:
        """The mean centred accuracy over the tasks that count."""
        return sum(result.centred for result in self.scored) / len(self.scored)

    def to_dict(self) -> dict[str, Any]:
        return {"core": self.score, "tasks_scored": len(self.scored), "rule": COUNTED_RULE, "missing": self.missing,
                "unscored": [result.task for result in self.results if not counted(result)],
                "left_out_share": self.left_out_share, "tasks": [result.to_dict() for result in self.results]}


def evaluate_core(model, tokenizer, *, limit: int | None = None, tasks: list[str] | None = None,
                  progress: Callable[[str], Callable] | None = None) -> CoreResult:
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
        results.append(evaluate_benchmark(model, tokenizer, core_benchmark(spec), limit=limit,
                                          progress=progress(spec.name) if progress else None))
    core = CoreResult(results, missing)
    if not core.scored:
        raise InputError(f"no CORE task was scored: the mirror holds none of those asked for, or too few items fit "
                         f"the model's context ({COUNTED_RULE})")
    return core


@dataclass
class Comparison:
    task: str
    test: Paired
    gained: list[int]  # items the second model got right and the first wrong
    lost: list[int]


def compare_results(first: BenchmarkResult, second: BenchmarkResult) -> Comparison:
    """McNemar's exact test of two models' verdicts on the items both scored, and which items changed."""
    mine, theirs = dict(zip(first.indices, first.correct)), dict(zip(second.indices, second.correct))
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        raise InputError(f"{first.task}: the two models scored no item in common (their contexts differ too much)")
    a, b = [mine[i] for i in shared], [theirs[i] for i in shared]
    return Comparison(first.task, paired(a, b), [i for i in shared if not mine[i] and theirs[i]],
                      [i for i in shared if mine[i] and not theirs[i]])
