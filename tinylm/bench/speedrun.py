"""The laptop speedrun: how fast a recipe reaches a validation loss, raced against another on the same machine.

Tokens per second says how fast a step runs; what a learner waits for is a good model, so the speedrun measures
**loss per second**, as the modded-nanogpt record does for GPT-2 on eight GPUs: the seconds of training a recipe
needs to reach a target validation loss, and the loss it has when its budget of seconds runs out. A recipe's schedule
follows its budget, so a run with a longer budget crosses later than one tuned to stop at the target: the figures
compare recipes at the same budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..distributed import World
from ..model.gpt import GPT
from ..train.options import RunOptions
from ..train.recipes import RECIPE_NAMES, TrainOptions, resolve_recipe
from ..train.trainer import Trainer

Curve = list[tuple[float, float]]  # (seconds of training, whole-split validation loss), in order

# Per track: the loss to reach, the budget of training seconds, and the steps between evaluations (one and a half
# to three and a half seconds of training at the cpu recipes' speed). 1.886 is the course's target for shakespeare-char,
# set near the 1.88 that nanoGPT's README reports for its CPU recipe; 3.3 is a loss the tinystories cpu recipe reaches
# within its 300 s (it ends near 3.11, notebooks/README.md's Results).
RACE_DEFAULTS: dict[str, dict[str, float]] = {
    "shakespeare-char": {"target": 1.886, "seconds": 70.0, "eval_interval": 100},
    "tinystories": {"target": 3.3, "seconds": 300.0, "eval_interval": 25},
}


def validation_curve(records: Sequence[dict[str, Any]]) -> Curve:
    """The (elapsed, val_loss) pairs of a Trainer's eval and final records."""
    return [(r["elapsed"], r["val_loss"]) for r in records if r.get("event") in ("eval", "final")]


def seconds_to_target(curve: Curve, target: float) -> float | None:
    """The training seconds at which `curve` first reaches `target`, interpolated linearly between the evaluation
    before and the one at or below it (at the first evaluation itself if that one is already there); None if it
    never does."""
    previous = None
    for seconds, loss in curve:
        if loss <= target:
            if previous is None or previous[1] == loss:
                return seconds
            (s0, l0), (s1, l1) = previous, (seconds, loss)
            return s0 + (l0 - target) / (l0 - l1) * (s1 - s0)
        previous = (seconds, loss)
    return None


@dataclass
class RaceRun:
    """One recipe at one seed: its validation curve, the loss at the end of the budget, the steps it took, and the
    seconds it needed to reach the target (None: not within the budget)."""

    recipe: str
    seed: int
    curve: Curve
    val_loss: float
    steps: int
    seconds_to_target: float | None


def race(track: str, profile: str | None = None, *, seeds: Sequence[int] = (0, 1, 2), seconds: float = 70.0,
         target: float = 1.886, eval_interval: int = 100, recipes: Sequence[str] = RECIPE_NAMES,
         device: str | torch.device | None = None, on_run: Callable[[RaceRun, int, int], None] | None = None,
         ) -> dict[str, list[RaceRun]]:
    """Train each of `recipes` of `track` for `seconds` of training at every seed (the order alternating from seed
    to seed) and return each recipe's runs in seed order. `on_run(run, done, total)` is called after each run.
    A run trains in memory (nothing written) under a budget of training seconds (the Trainer's clock, which leaves
    evaluations out) and evaluates the whole validation split every `eval_interval` steps."""
    changes = {"eval_interval": eval_interval, "sample_interval": 0}
    resolved = {name: [resolve_recipe(track, RunOptions(profile=profile, seed=seed, max_seconds=seconds, set=changes),
                                      TrainOptions(recipe=name)) for seed in seeds]
                for name in recipes}
    first = resolved[recipes[0]][0]
    data = first.track.prepare(first.run.profile)
    runs: dict[str, list[RaceRun]] = {name: [] for name in recipes}
    plan = [(name, i) for i in range(len(seeds)) for name in (recipes if i % 2 == 0 else recipes[::-1])]
    for done, (name, i) in enumerate(plan, start=1):
        recipe = resolved[name][i]
        records: list[dict[str, Any]] = []
        torch.manual_seed(recipe.train.seed)  # the initial weights
        model = GPT(recipe.model_config(data.tokenizer))
        batches = recipe.track.training_data(data, model.config.block_size, recipe.train.batch_size, World(),
                                             recipe.train.seed)
        trainer = Trainer(model, recipe.train, batches, data.val, tokenizer=data.tokenizer, device=device,
                          callbacks=[records.append])
        final = trainer.fit()
        curve = validation_curve(records)
        run = RaceRun(name, seeds[i], curve, final["val_loss"], trainer.step, seconds_to_target(curve, target))
        runs[name].append(run)
        if on_run is not None:
            on_run(run, done, len(plan))
    return runs

