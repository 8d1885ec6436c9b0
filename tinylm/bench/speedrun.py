"""The laptop speedrun: how fast a recipe reaches a validation loss, raced against another on the same machine.

Tokens per second says how fast a step runs; what a learner waits for is a good model, so the speedrun measures
**loss per second**, as the modded-nanogpt record does for GPT-2 on eight GPUs: the seconds of training a recipe
needs to reach a target validation loss, and the loss it has when its budget of seconds runs out. A recipe's schedule
follows its budget, so a run with a longer budget crosses later than one tuned to stop at the target: the figures
compare recipes at the same budget. `Race` is what `bench speedrun` is told.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from statistics import fmean
from typing import Any, Callable, Sequence

import torch

from ..distributed import World
from ..errors import InputError
from ..model.gpt import GPT
from ..runtime import resolve_profile
from ..settings import option
from ..train.options import RunOptions
from ..train.recipes import RECIPE_NAMES, TrainOptions, get_track, resolve_recipe
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


def _per_track(setting: str) -> str:
    return ", ".join(f"{values[setting]:g} for {track}" for track, values in RACE_DEFAULTS.items())


@dataclass(frozen=True)
class Race:
    """A track's recipes raced (bench speedrun): `seeds` seeds each, `seconds` of training per run, the whole
    validation split scored every `eval_interval` steps; what is not given is the track's (RACE_DEFAULTS)."""

    track: str = option(None, "shakespeare-char")
    profile: str | None = option(None)
    target: float | None = option(f"the validation loss to reach (default: {_per_track('target')})", metavar="LOSS",
                                  type=float)
    seeds: int = option("seeds per recipe", 3, metavar="N", minimum=1)
    seconds: float | None = option(f"seconds of training per run (default: {_per_track('seconds')})", metavar="S",
                                   type=float)
    eval_interval: int | None = option("steps between whole-split evaluations (default: the track's)", metavar="N",
                                       minimum=1)
    device: str | None = option(None)

    def __post_init__(self):
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise InputError(f"--seconds must be positive, got {self.seconds}")
        if self.target is not None and not (math.isfinite(self.target) and self.target > 0):
            raise InputError(f"--target must be a positive validation loss, got {self.target}; {self.track}'s "
                             f"default is {RACE_DEFAULTS[self.track]['target']}")

    def settled(self) -> Race:
        """Every setting filled in: the track's where none was given, and the profile (the speedrun recipes exist for
        cpu and smoke: on a machine with CUDA too, cpu's unless told)."""
        profile, track = resolve_profile(self.profile, default="cpu"), get_track(self.track)
        if profile not in track.speedruns:
            raise InputError(f"{self.track} has speedrun recipes for the {' and '.join(track.speedruns)} profiles, "
                             f"not for {profile}: add --profile cpu")
        given = {name: value for name, value in RACE_DEFAULTS[self.track].items() if getattr(self, name) is None}
        return dataclasses.replace(self, profile=profile, **given)


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


def race(plan: Race, seeds: Sequence[int] | None = None, recipes: Sequence[str] = RECIPE_NAMES,
         on_run: Callable[[RaceRun, int, int], None] | None = None) -> dict[str, list[RaceRun]]:
    """Train each of `recipes` of the plan's track for its seconds of training at every seed (`seeds`, else 0 to
    plan.seeds - 1; the order alternating from seed to seed) and return each recipe's runs in seed order.
    `on_run(run, done, total)` is called after each run. A run trains in memory (nothing written) under a budget of
    training seconds (the Trainer's clock, which leaves evaluations out) and evaluates the whole validation split
    every eval_interval steps."""
    plan = plan.settled()
    seeds = range(plan.seeds) if seeds is None else seeds
    changes = {"eval_interval": plan.eval_interval, "sample_interval": 0}
    resolved = {name: [resolve_recipe(plan.track, RunOptions(profile=plan.profile, seed=seed, max_seconds=plan.seconds,
                                                             set=changes), TrainOptions(recipe=name)) for seed in seeds]
                for name in recipes}
    first = resolved[recipes[0]][0]
    data = first.track.prepare(first.run.profile)
    runs: dict[str, list[RaceRun]] = {name: [] for name in recipes}
    order = [(name, i) for i in range(len(seeds)) for name in (recipes if i % 2 == 0 else recipes[::-1])]
    for done, (name, i) in enumerate(order, start=1):
        recipe = resolved[name][i]
        records: list[dict[str, Any]] = []
        torch.manual_seed(recipe.train.seed)  # the initial weights
        model = GPT(recipe.model_config(data.tokenizer))
        batches = recipe.track.training_data(data, model.config.block_size, recipe.train.batch_size, World(),
                                             recipe.train.seed)
        trainer = Trainer(model, recipe.train, batches, data.val, tokenizer=data.tokenizer, device=plan.device,
                          callbacks=[records.append])
        final = trainer.fit()
        curve = validation_curve(records)
        run = RaceRun(name, seeds[i], curve, final["val_loss"], trainer.step, seconds_to_target(curve, plan.target))
        runs[name].append(run)
        if on_run is not None:
            on_run(run, done, len(order))
    return runs


def compared(runs: dict[str, list[RaceRun]]) -> tuple[float, float | None]:
    """The speedrun recipe's mean final loss less the default's, and how many times as fast it reached the target
    (mean seconds; None unless every run reached it)."""
    loss = {name: fmean([run.val_loss for run in recipe_runs]) for name, recipe_runs in runs.items()}
    times = {name: [run.seconds_to_target for run in recipe_runs] for name, recipe_runs in runs.items()}
    reached = all(t is not None for values in times.values() for t in values)
    return loss["speedrun"] - loss["default"], fmean(times["default"]) / fmean(times["speedrun"]) if reached else None
