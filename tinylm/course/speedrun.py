"""The laptop speedrun's record table: changes tried one at a time on top of the current record, each kept only if
it beats the record by more than the seed spread at equal training time.

An adaptation of the modded-nanogpt speedrun (https://github.com/KellerJordan/modded-nanogpt): there the target
loss is fixed and the clock is raced, a record may bundle several changes, and a record is accepted by a t-test
over several runs that its mean loss is below the target. Here the budget of training seconds is fixed, one change
at a time is tried on top of the record so far (changes interact: Muon takes larger steps, which is what a soft cap
or QK-norm may then pay for), and a change is kept by the course's rule (every seed beats every seed of the record).
Notebook 12 measures changes on top of the package's speedrun recipe instead, in a race priced by step costs; this
greedy search is for a learner's own attempts.

The priced race (notebook 12): on a shared machine a run's speed drifts by more than the differences being
measured, so a race of equal wall-clock seconds mixes the machine's moods into the losses. Instead
`measure_step_costs` times every arm's step in short rounds interleaved across arms (median over rounds),
`within_budget` turns the budget of seconds into each arm's number of steps at that cost, and every seed of an
arm trains exactly those steps (`tinylm.course.ablation.train_arms`): the losses then depend on the seed alone.
`race_table` and `race_verdicts` read the seconds to a target off each run's curve at the measured cost
(`priced_curve`), and print the budget's definition beside the figures.

The greedy search:

- `SPEEDRUN_CHANGES` lists the changes in the order they are tried, each as GPTConfig and TrainConfig fields;
- `try_changes` trains the baseline, then record + change for each change (through `tinylm.course.ablation`'s
  seeded arms, the seeds of one attempt back to back), and keeps a change when every seed of the attempt beats
  every seed of the record (`tinylm.eval.uncertainty.separated`) with a lower mean, and no run of either strayed;
- `record_table` and `attempt_verdicts` print what happened (seconds to the target loss and the loss at the end of
  the budget, mean ± half the range), so that no figure a re-run could change has to be typed into prose.

The busy-machine rule, applied by the greedy search: in a race of equal seconds a run's steps depend on the arm and
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
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..bench.speedrun import Curve, seconds_to_target, validation_curve
from ..config import GPTConfig, TrainConfig
from ..eval.uncertainty import compare, separated, spread
from ..model.gpt import GPT
from ..runtime import busy_elsewhere, cpu_name
from ..train.progress import TRAINING_TIME
from ..train.trainer import Trainer
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


@dataclass(frozen=True)
class StepCost:
    """An arm's seconds per training step, timed in several rounds interleaved with the other arms' rounds. Its
    `seconds` is the median round: a slow spell of a shared machine moves one round, not the median."""

    arm: str
    rounds: tuple[float, ...]

    @property
    def seconds(self) -> float:
        return statistics.median(self.rounds)

    def steps_within(self, budget_seconds: float) -> int:
        """The steps that `budget_seconds` of training buy at this cost (at least one)."""
        return max(1, round(budget_seconds / self.seconds))

    def format(self) -> str:
        """Milliseconds per step: the median, and the fastest and slowest round."""
        return f"{1000 * self.seconds:.1f} ({1000 * min(self.rounds):.1f}–{1000 * max(self.rounds):.1f})"


def measure_step_costs(arms: Sequence[Arm], train_config: TrainConfig, train_data, val_data, *,
                       device: torch.device, tokenizer=None, rounds: int = 5, steps: int = 20, warmup: int = 5,
                       ) -> dict[str, StepCost]:
    """Each arm's seconds per training step on this machine: every arm's Trainer is built once (seed 0, the arm's
    train_options), runs `warmup` steps untimed, then `rounds` rounds of `steps` steps each, the arms in a rotated
    order from round to round, so that a slow spell lands on one round of every arm rather than on every round of
    one arm. A step is timed as the Trainer times it (`tinylm.train.progress.TRAINING_TIME`). The validation split
    is cut to a few windows: the Trainer evaluates it at the end of every round, outside the clock."""
    trainers = {}
    for arm in arms:
        torch.manual_seed(0)
        run_config = dataclasses.replace(train_config, **{
            **dict(arm.train_options), "seed": 0, "sample_interval": 0, "max_seconds": None,
            "max_steps": warmup + rounds * steps, "eval_interval": 10 ** 9, "log_interval": 10 ** 9})
        few_windows = val_data[: 4 * arm.config.block_size + 1]
        trainer = Trainer(GPT(arm.config), run_config, train_data, few_windows, out_dir=None, tokenizer=tokenizer,
                          device=device, callbacks=[])
        trainer.fit(stop_after=warmup)
        trainers[arm.name] = trainer
    timed: dict[str, list[float]] = {arm.name: [] for arm in arms}
    for round_index in range(rounds):
        shift = round_index % len(arms)
        for arm in [*arms[shift:], *arms[:shift]]:
            trainer = trainers[arm.name]
            before = trainer.elapsed
            trainer.fit(stop_after=steps)
            timed[arm.name].append((trainer.elapsed - before) / steps)
    return {name: StepCost(name, tuple(seconds)) for name, seconds in timed.items()}


def within_budget(arms: Sequence[Arm], costs: dict[str, StepCost], budget_seconds: float) -> list[Arm]:
    """`arms`, each set to train for the steps `budget_seconds` buy at its measured cost (max_steps; no clock)."""
    return [dataclasses.replace(arm, train_options=(*arm.train_options, ("max_seconds", None),
                                                    ("max_steps", costs[arm.name].steps_within(budget_seconds))))
            for arm in arms]


def priced_curve(records: Sequence[dict[str, Any]], seconds_per_step: float) -> Curve:
    """A run's validation curve in seconds of training at `seconds_per_step`: (step x cost, val_loss) per
    evaluation."""
    return [(r["step"] * seconds_per_step, r["val_loss"]) for r in records if r.get("event") in ("eval", "final")]


def priced_times(runs: Sequence[ArmRun], cost: StepCost, target: float) -> list[float | None]:
    """Each run's seconds to `target` at the arm's measured step cost (None: not within its steps)."""
    return [seconds_to_target(priced_curve(run.records, cost.seconds), target) for run in runs]


def ms_while_training(runs: Sequence[ArmRun]) -> str:
    """Milliseconds per step as the training runs themselves were timed, over seeds: mean ± half the range."""
    per_step = spread([1000 * run.elapsed / run.steps for run in runs])
    return f"{per_step.mean:.1f} ± {per_step.half_range:.1f}"


def budget_definition(costs: dict[str, StepCost], budget: str) -> str:
    """What a budget of seconds means in a race priced by measured step costs."""
    rounds = {len(cost.rounds) for cost in costs.values()}
    return (f"Budget: {budget} of training at each arm's median step cost, measured in {'/'.join(map(str, rounds))} "
            f"rounds interleaved across arms; every seed of an arm trains the same number of steps, so a slow spell "
            f"during training changes how long it takes, not its loss ({TRAINING_TIME})")


def race_table(arms: Sequence[Arm], runs: dict[str, list[ArmRun]], costs: dict[str, StepCost], target: float,
               budget: str) -> str:
    """A markdown table of a race priced by measured step costs, one row per arm: what it is, its ms per step as
    measured (median, fastest–slowest round) and as the training runs took them, the steps the budget buys, the
    seconds between two evaluations, the seconds to `target` and the validation loss at the end of the `budget`
    (mean ± half the range over seeds). Under it, the budget's definition."""
    header = ["arm", "what it is", "ms per step (rounds)", "ms per step while training", "steps",
              "s between evaluations", f"seconds to {target}", f"val loss at {budget}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in arms:
        arm_runs, cost = runs[arm.name], costs[arm.name]
        steps = [r["step"] for r in arm_runs[0].records if r.get("event") == "eval"]  # the final one may come early
        spacing = cost.seconds * (steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) > 1 else float("nan")
        lines.append("| " + " | ".join([
            arm.name, arm.change, cost.format(), ms_while_training(arm_runs),
            "–".join(sorted({f"{run.steps:,}" for run in arm_runs})), f"{spacing:.1f}",
            format_times(priced_times(arm_runs, cost, target)),
            spread([run.val_loss for run in arm_runs]).format(3)]) + " |")
    return "\n".join([*lines, "", budget_definition(costs, budget) + "."])


def race_verdicts(arms: Sequence[Arm], runs: dict[str, list[ArmRun]], costs: dict[str, StepCost], target: float,
                  budget: str) -> list[str]:
    """For every arm with a baseline, two sentences by the rule of tinylm.eval.uncertainty.compare: on the loss at the
    end of `budget`, and on the seconds to `target` at the measured step costs (when every seed of both reached it;
    else the sentence says so and gives no verdict)."""
    sentences = []
    for arm in arms:
        if arm.baseline is None:
            continue
        ours, theirs = runs[arm.name], runs[arm.baseline]
        sentences.append(compare(arm.name, [r.val_loss for r in ours], arm.baseline, [r.val_loss for r in theirs],
                                 metric=f"val loss at {budget}", digits=3))
        times_ours = priced_times(ours, costs[arm.name], target)
        times_theirs = priced_times(theirs, costs[arm.baseline], target)
        if None in times_ours or None in times_theirs:
            sentences.append(f"{arm.name} vs {arm.baseline} on seconds to {target}: not every seed reached it "
                             f"({format_times(times_ours)} vs {format_times(times_theirs)}): no verdict")
        else:
            sentences.append(compare(arm.name, times_ours, arm.baseline, times_theirs, metric=f"seconds to {target}",
                                     digits=1))
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
