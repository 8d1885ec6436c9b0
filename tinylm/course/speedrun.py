"""The laptop speedrun's record table: changes tried one at a time on top of the current record, each kept only if
it beats the record by more than the seed spread at equal training time.

This is how the modded-nanogpt speedrun grew its record (https://github.com/KellerJordan/modded-nanogpt): a
change enters the record only when it makes the same budget reach a lower loss, and the next change is tried on
top of the new record, not on the original baseline, because changes interact (Muon takes larger steps, which is
what a soft cap or QK-norm may then pay for). Notebook 12 runs it at two seeds per attempt:

- `SPEEDRUN_CHANGES` lists the changes in the order they are tried, each as GPTConfig and TrainConfig fields;
- `try_changes` trains the baseline, then record + change for each change (through `tinylm.course.ablation`'s
  seeded arms, the seeds of one attempt back to back), and keeps a change when every seed of the attempt beats
  every seed of the record (`tinylm.eval.uncertainty.separated`) with a lower mean;
- `record_table` and `attempt_verdicts` print what happened (seconds to the target loss and the loss at the end of
  the budget, mean ± half the range), so that no figure a re-run could change has to be typed into prose.

A greedy search in a fixed order can miss a change that only helps with another one; the order here follows the
speedrun's own history (optimizer first, then architecture, then the schedule), with one change of size after
Muon: at equal steps, Muon trains a second block far better than AdamW does (README, "The laptop speedrun"), so
whether the deeper model now pays for its slower steps is a question of the budget.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..bench.speedrun import seconds_to_target, validation_curve
from ..config import GPTConfig, TrainConfig
from ..eval.uncertainty import separated, spread
from ..train.progress import TRAINING_TIME
from .ablation import Arm, ArmRun, train_arms


@dataclass(frozen=True)
class Change:
    """One change of the speedrun: its name, what it does, and the GPTConfig and TrainConfig fields it sets."""

    name: str
    what: str
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: dict[str, Any] = dataclasses.field(default_factory=dict)


SPEEDRUN_CHANGES: tuple[Change, ...] = (
    Change("+Muon", "AdamW -> Muon for the blocks' matrices", train={"optimizer": "muon"}),
    Change("+2 blocks", "a second block: better steps, each slower", model={"n_layer": 2}),
    Change("+ReLU²", "GELU -> relu(x)² in the MLP", model={"mlp": "relu2"}),
    Change("+QK-norm", "queries and keys RMS-normalised per head", model={"qk_norm": True}),
    Change("+zero-init", "output projections start at zero", model={"zero_init_projections": True}),
    Change("+untied head", "the head gets its own matrix", model={"tie_weights": False}),
    Change("+soft-cap", "logits squashed by 15·tanh(logits/15)", model={"logit_softcap": 15.0}),
    Change("+WSD", "cosine -> warmup, stable, linear cooldown (last 40%)", train={"schedule": "wsd"}),
)


@dataclass
class Attempt:
    """One row of the record table: the change tried (None for the baseline), its runs, and whether it was kept."""

    change: Change | None
    runs: list[ArmRun]
    kept: bool

    @property
    def name(self) -> str:
        return "baseline" if self.change is None else self.change.name

    @property
    def losses(self) -> list[float]:
        return [run.val_loss for run in self.runs]


def times_to_target(runs: Sequence[ArmRun], target: float) -> list[float | None]:
    """Each run's seconds of training to reach `target` (None: not within its budget)."""
    return [seconds_to_target(validation_curve(run.records), target) for run in runs]


def try_changes(config: GPTConfig, train_config: TrainConfig, changes: Sequence[Change], seeds: Sequence[int],
                train_data, val_data, *, device: torch.device, tokenizer=None,
                report: Callable[[Attempt], None] | None = None, progress: Callable | None = None) -> list[Attempt]:
    """The baseline (`config` trained with `train_config`), then each change on top of the record so far, every
    attempt at every seed under the same budget; a change joins the record when all its seeds beat all the record's
    seeds. `report` is called after each attempt; `progress` wraps the list of attempts (e.g. tqdm)."""
    record_model, record_train = {}, {}
    attempts: list[Attempt] = []
    record: Attempt | None = None
    for change in (progress or list)([None, *changes]):
        model_fields = {**record_model, **(change.model if change else {})}
        train_fields = {**record_train, **(change.train if change else {})}
        arm = Arm(change.name if change else "baseline", change.what if change else "the cpu recipe",
                  dataclasses.replace(config, **model_fields), None, tuple(train_fields.items()))
        runs = train_arms([arm], seeds, train_config, train_data, val_data, device=device, tokenizer=tokenizer,
                          report=None)[arm.name]
        attempt = Attempt(change, runs, kept=False)
        if record is None or (spread(attempt.losses).mean < spread(record.losses).mean
                              and separated(attempt.losses, record.losses)):
            attempt.kept = True
            record, record_model, record_train = attempt, model_fields, train_fields
        attempts.append(attempt)
        if report:
            report(attempt)
    return attempts


def kept_changes(attempts: Sequence[Attempt]) -> list[Change]:
    return [attempt.change for attempt in attempts if attempt.kept and attempt.change is not None]


def _format_times(times: Sequence[float | None]) -> str:
    reached = [t for t in times if t is not None]
    if len(reached) < len(times):
        return f"{len(reached)} of {len(times)} seeds reached it"
    return spread(reached).format(1)


def record_table(attempts: Sequence[Attempt], target: float, budget: str) -> str:
    """A markdown table, one row per attempt: the change, what it does, the seconds of training to `target` and the
    validation loss at the end of the `budget` (mean ± half the range over seeds), the change in mean loss against
    the record it was tried on, and whether it was kept."""
    header = ["change", "what it does", f"seconds to {target}", f"val loss at {budget}", "Δ vs record", "kept?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    record: Attempt | None = None
    for attempt in attempts:
        loss = spread(attempt.losses)
        delta = "" if record is None else f"{loss.mean - spread(record.losses).mean:+.3f}"
        lines.append("| " + " | ".join([
            attempt.name, attempt.change.what if attempt.change else "the cpu recipe",
            _format_times(times_to_target(attempt.runs, target)), loss.format(3), delta,
            "yes" if attempt.kept else "no"]) + " |")
        if attempt.kept:
            record = attempt
    return "\n".join([*lines, "", f"Times and budgets: {TRAINING_TIME}."])


def attempt_verdicts(attempts: Sequence[Attempt]) -> list[str]:
    """One sentence per change: by how much it moved the mean loss of the record it was tried on, and why it was
    kept or not."""
    sentences, record, record_name = [], None, ""
    for attempt in attempts:
        if record is not None:
            ours, theirs = spread(attempt.losses), spread(record.losses)
            gap = ours.mean - theirs.mean
            if attempt.kept:
                why = "kept: every seed beat every seed of the record"
            elif gap < 0:
                why = "not kept: lower on average, but within the seed spread"
            else:
                why = "not kept: no better than the record"
            sentences.append(f"{attempt.name} on top of ({record_name}): {gap:+.3f} in mean val loss "
                             f"({ours.mean:.3f} ± {ours.half_range:.3f} vs {theirs.mean:.3f} ± "
                             f"{theirs.half_range:.3f}); {why}")
        if attempt.kept:
            record = attempt
            record_name = f"{record_name} {attempt.name}".strip()
    return sentences
