"""The laptop speedrun's record table: changes tried one at a time on top of the current record, each kept only if
it beats the record by more than the seed spread at equal training time.

An adaptation of the modded-nanogpt speedrun (https://github.com/KellerJordan/modded-nanogpt): there the target
loss is fixed and the clock is raced, a record may bundle several changes, and a record is accepted by a t-test
over several runs that its mean loss is below the target. Here the budget of training seconds is fixed, one change
at a time is tried on top of the record so far (changes interact: Muon takes larger steps, which is what a soft cap
or QK-norm may then pay for), and a change is kept by the course's rule (every seed beats every seed of the record).
Notebook 12 measures changes on top of the package's speedrun recipe instead (`tinylm.course.ablation.train_arms`,
three seeds, `race_table` and `race_verdicts` for its table); this greedy search is for a learner's own attempts:

- `SPEEDRUN_CHANGES` lists the changes in the order they are tried, each as GPTConfig and TrainConfig fields;
- `try_changes` trains the baseline, then record + change for each change (through `tinylm.course.ablation`'s
  seeded arms, the seeds of one attempt back to back), and keeps a change when every seed of the attempt beats
  every seed of the record (`tinylm.eval.uncertainty.separated`) with a lower mean, and no run of either strayed;
- `record_table` and `attempt_verdicts` print what happened (seconds to the target loss and the loss at the end of
  the budget, mean ± half the range), so that no figure a re-run could change has to be typed into prose.

The busy-machine rule, applied by every function here: in a race of equal seconds a run's steps depend on the arm and
the machine, not on the seed, so a run whose steps stray more than `STEP_TOLERANCE` (10%) from its arm's median
had a machine of another speed for part of its budget (`tinylm.course.ablation.step_outliers`). Its arm is flagged
(⚑) in the tables, and no comparison involving that arm gives a verdict: it prints "not told apart (a run strayed:
re-run on a quiet machine)", and `try_changes` keeps no change on such runs.

A greedy search in a fixed order can miss a change that only helps with another one; the order here follows the
speedrun's own history (optimizer first, then architecture, then the schedule), with one change of size after
Muon: at equal steps, Muon trains a second block far better than AdamW does (course guide, "The laptop speedrun"), so
whether the deeper model now pays for its slower steps is a question of the budget.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..bench.speedrun import seconds_to_target, validation_curve
from ..config import GPTConfig, TrainConfig
from ..eval.uncertainty import compare, separated, spread
from ..runtime import busy_elsewhere, cpu_name
from ..train.progress import TRAINING_TIME
from .ablation import STEP_TOLERANCE, Arm, ArmRun, step_outliers, train_arms

STRAYED = "not told apart (a run strayed: re-run on a quiet machine)"


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

    def strayed(self, tolerance: float = STEP_TOLERANCE) -> bool:
        """Whether a run's steps are more than `tolerance` off the attempt's median steps (the busy-machine rule)."""
        return bool(step_outliers({self.name: self.runs}, tolerance))


def times_to_target(runs: Sequence[ArmRun], target: float) -> list[float | None]:
    """Each run's seconds of training to reach `target` (None: not within its budget)."""
    return [seconds_to_target(validation_curve(run.records), target) for run in runs]


def try_changes(config: GPTConfig, train_config: TrainConfig, changes: Sequence[Change], seeds: Sequence[int],
                train_data, val_data, *, device: torch.device, tokenizer=None,
                report: Callable[[Attempt], None] | None = None, progress: Callable | None = None) -> list[Attempt]:
    """The baseline (`config` trained with `train_config`), then each change on top of the record so far, every
    attempt at every seed under the same budget; a change joins the record when all its seeds beat all the record's
    seeds and no run of either strayed (`Attempt.strayed`: a strayed attempt is not kept, and a strayed record keeps
    nothing on top of it). `report` is called after each attempt; `progress` wraps the list of attempts (e.g.
    tqdm)."""
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
                              and separated(attempt.losses, record.losses)
                              and not attempt.strayed() and not record.strayed()):
            attempt.kept = True
            record, record_model, record_train = attempt, model_fields, train_fields
        attempts.append(attempt)
        if report:
            report(attempt)
    return attempts


def kept_changes(attempts: Sequence[Attempt]) -> list[Change]:
    return [attempt.change for attempt in attempts if attempt.kept and attempt.change is not None]


def format_times(times: Sequence[float | None]) -> str:
    """Seconds to a target over seeds: mean ± half the range, or how many seeds reached it."""
    reached = [t for t in times if t is not None]
    if len(reached) < len(times):
        return f"{len(reached)} of {len(times)} seeds reached it"
    return spread(reached).format(1)


def record_table(attempts: Sequence[Attempt], target: float, budget: str) -> str:
    """A markdown table, one row per attempt: the change, what it does, its fewest and most steps (⚑ when a run
    strayed), the seconds of training to `target` and the validation loss at the end of the `budget` (mean ± half
    the range over seeds), the change in mean loss against the record it was tried on, and whether it was kept."""
    header = ["change", "what it does", "steps (min–max)", f"seconds to {target}", f"val loss at {budget}",
              "Δ vs record", "kept?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    record: Attempt | None = None
    for attempt in attempts:
        loss = spread(attempt.losses)
        delta = "" if record is None else f"{loss.mean - spread(record.losses).mean:+.3f}"
        lines.append("| " + " | ".join([
            attempt.name, attempt.change.what if attempt.change else "the cpu recipe", steps_cell(attempt.runs),
            format_times(times_to_target(attempt.runs, target)), loss.format(3), delta,
            "yes" if attempt.kept else "no"]) + " |")
        if attempt.kept:
            record = attempt
    flags = stray_lines({attempt.name: attempt.runs for attempt in attempts})
    return "\n".join([*lines, *([""] + flags if flags else []), "", f"Times and budgets: {TRAINING_TIME}."])


def attempt_verdicts(attempts: Sequence[Attempt]) -> list[str]:
    """One sentence per change: by how much it moved the mean loss of the record it was tried on, and why it was
    kept or not."""
    sentences, record, record_name = [], None, ""
    for attempt in attempts:
        if record is not None:
            ours, theirs = spread(attempt.losses), spread(record.losses)
            gap = ours.mean - theirs.mean
            if attempt.strayed() or record.strayed():
                why = f"not kept: {STRAYED}"
            elif attempt.kept:
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


def steps_cell(runs: Sequence[ArmRun], tolerance: float = STEP_TOLERANCE) -> str:
    """The fewest and most steps over seeds, with ⚑ when a run strayed more than `tolerance` from the median."""
    steps = [run.steps for run in runs]
    flag = " ⚑" if step_outliers({"arm": list(runs)}, tolerance) else ""
    return f"{min(steps):,}–{max(steps):,}{flag}"


def stray_lines(runs: dict[str, Sequence[ArmRun]], tolerance: float = STEP_TOLERANCE) -> list[str]:
    """One line per run whose steps stray more than `tolerance` from its arm's median."""
    return [f"⚑ {run.arm} seed {run.seed}: {run.steps:,} steps, {run.steps / median - 1:+.0%} off its arm's median "
            f"of {median:,.0f} (the rule: at most {tolerance:.0%}): the machine ran at another speed during it"
            for run, median in step_outliers({name: list(arm_runs) for name, arm_runs in runs.items()}, tolerance)]


def evaluation_spacing(runs: Sequence[ArmRun]) -> float:
    """The mean seconds of training between two evaluations of the validation split, over `runs`."""
    gaps = []
    for run in runs:
        seconds = [s for s, _ in validation_curve(run.records)]
        gaps += [later - earlier for earlier, later in zip(seconds, seconds[1:])]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def ms_per_step(runs: Sequence[ArmRun]) -> str:
    """Milliseconds of training per step over seeds: mean ± half the range."""
    per_step = spread([1000 * run.elapsed / run.steps for run in runs])
    return f"{per_step.mean:.1f} ± {per_step.half_range:.1f}"


def race_table(arms: Sequence[Arm], runs: dict[str, list[ArmRun]], target: float, budget: str,
               tolerance: float = STEP_TOLERANCE) -> str:
    """A markdown table of a race of equal training seconds, one row per arm: what it is, its fewest and most steps
    (⚑ when a run strayed more than `tolerance` from the arm's median), the milliseconds per step and the seconds
    of training between two evaluations, the seconds to `target` and the validation loss at the end of `budget`
    (mean ± half the range over seeds). Under it, one line per strayed run and the clock's definition."""
    header = ["arm", "what it is", "steps (min–max)", "ms per step", "s between evaluations", f"seconds to {target}",
              f"val loss at {budget}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in arms:
        arm_runs = runs[arm.name]
        lines.append("| " + " | ".join([
            arm.name, arm.change, steps_cell(arm_runs, tolerance),
            ms_per_step(arm_runs),
            f"{evaluation_spacing(arm_runs):.1f}", format_times(times_to_target(arm_runs, target)),
            spread([run.val_loss for run in arm_runs]).format(3)]) + " |")
    flags = stray_lines({arm.name: runs[arm.name] for arm in arms}, tolerance)
    rule = (f"⚑: an arm with a run more than {tolerance:.0%} off its arm's median steps (the busy-machine rule: no "
            "verdict on that arm)")
    return "\n".join([*lines, "", rule, *flags, "", f"{TRAINING_TIME}."])


def race_verdicts(arms: Sequence[Arm], runs: dict[str, list[ArmRun]], target: float, budget: str,
                  tolerance: float = STEP_TOLERANCE) -> list[str]:
    """For every arm with a baseline, two sentences by the rule of tinylm.eval.uncertainty.compare: on the loss at the
    end of `budget`, and on the seconds to `target` (when every seed of both reached it). When a run of either arm
    strayed more than `tolerance` from its arm's median steps, the sentence gives the means and no verdict: "not
    told apart (a run strayed: re-run on a quiet machine)"."""
    strayed = {run.arm for run, _ in step_outliers({arm.name: runs[arm.name] for arm in arms}, tolerance)}
    sentences = []
    for arm in arms:
        if arm.baseline is None:
            continue
        ours, theirs = runs[arm.name], runs[arm.baseline]
        metrics = [(f"val loss at {budget}", [r.val_loss for r in ours], [r.val_loss for r in theirs], 3)]
        times_ours, times_theirs = times_to_target(ours, target), times_to_target(theirs, target)
        if None in times_ours or None in times_theirs:
            sentences.append(f"{arm.name} vs {arm.baseline} on seconds to {target}: not every seed reached it "
                             f"({format_times(times_ours)} vs {format_times(times_theirs)}): no verdict")
        else:
            metrics.append((f"seconds to {target}", times_ours, times_theirs, 1))
        for metric, a, b, digits in metrics:
            if strayed & {arm.name, arm.baseline}:
                sentences.append(f"{arm.name} vs {arm.baseline} on {metric}: means {spread(a).mean:.{digits}f} vs "
                                 f"{spread(b).mean:.{digits}f}: {STRAYED}")
            else:
                sentences.append(compare(arm.name, a, arm.baseline, b, metric=metric, digits=digits))
    return sentences


def machine_line(device: torch.device | str) -> str:
    """The machine a timing ran on: the CPU (`tinylm.runtime.cpu_name`: model, cores, vector instructions) or the
    GPU's name, PyTorch's threads, and how many other processes are running on the CPU right now
    (`tinylm.runtime.busy_elsewhere`)."""
    device = torch.device(device)
    name = cpu_name()
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} (host CPU: {name})"
    return (f"machine: {name}, {torch.get_num_threads()} PyTorch threads; "
            f"other processes running now: {busy_elsewhere():.0f}")
