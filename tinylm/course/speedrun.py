"""The laptop speedrun's record table (notebook 12), after modded-nanogpt's speedrun with the clock fixed instead of
the target: the default recipe, one change at a time up to the speedrun recipe, then each model change on top of it
(`MODEL_CHANGES`), raced at equal training time and judged by tinylm.eval.uncertainty's rule. A shared machine's
speed drifts by as much as the differences measured, so the race is priced: `measure_step_costs` times each arm's
step in rounds interleaved across arms (an arm that changes no per-step compute takes its baseline's price),
`within_budget` turns the seconds into steps at that cost, every seed trains exactly those steps, and `race_table`
and `race_verdicts` read the seconds to a target off each run's curve at that cost; `equal_steps_verdicts` reads the
same curves at equal steps, where the price cannot move the result.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from ..bench.speedrun import Curve, seconds_to_target
from ..config import TrainConfig
from ..errors import InputError
from ..eval.uncertainty import compare, separated, spread
from ..model.gpt import GPT
from ..runtime import busy_elsewhere, cpu_name
from ..train.progress import TRAINING_TIME
from ..train.trainer import Trainer
from .ablation import Arm, ArmRun
from .recorded import MACHINE_PREFIX


@dataclass(frozen=True)
class Change:
    """One model change of the speedrun: its name, what it does, and the GPTConfig fields it sets."""

    name: str
    what: str
    model: dict[str, Any]
    same_step_cost: bool = False  # True: only the initial weights change, so the step costs what its baseline's does


MODEL_CHANGES: tuple[Change, ...] = (
    Change("+ReLU²", "GELU -> relu(x)² in the MLP", model={"mlp": "relu2"}),
    Change("+QK-norm", "queries and keys RMS-normalised per head", model={"qk_norm": True}),
    Change("+zero-init", "output projections start at zero", model={"zero_init_projections": True},
           same_step_cost=True),
    Change("+untied head", "the head gets its own matrix", model={"tie_weights": False}),
    Change("+soft-cap", "logits squashed by 15·tanh(logits/15)", model={"logit_softcap": 15.0}),
)


def format_times(times: Sequence[float | None]) -> str:
    """Seconds to a target over seeds: mean ± half the range, or how many seeds reached it."""
    reached = [t for t in times if t is not None]
    if len(reached) < len(times):
        return f"{len(reached)} of {len(times)} seeds reached it"
    return spread(reached).format(1)


@dataclass(frozen=True)
class StepCost:
    """An arm's seconds per training step, timed in several rounds interleaved with the other arms' rounds. Its
    `seconds` is the median round: a slow spell of a shared machine moves one round, not the median."""

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
                       same_cost_as: Mapping[str, str] | None = None) -> dict[str, StepCost]:
    """Each arm's seconds per training step on this machine: every arm's Trainer is built once (seed 0, the arm's
    train_options), runs `warmup` steps untimed, then `rounds` rounds of `steps` steps each, the arms' order rotated
    from round to round, which spreads a slow spell across arms rather than onto one. A step is timed by the
    Trainer's own clock (`tinylm.train.progress.TRAINING_TIME`), the clock a budget counts, which is why this does
    not use `tinylm.bench.measure.interleaved_seconds` (wall time of whole calls, the Trainer's closing evaluation
    included). The validation split is cut to a few windows: the Trainer scores it at the end of every round. An arm
    named in `same_cost_as` is not timed: it takes the cost of the arm it names (timing it would add only noise)."""
    priced_as = dict(same_cost_as or {})
    arms = [arm for arm in arms if arm.name not in priced_as]  # the arms timed
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
    costs = {name: StepCost(tuple(seconds)) for name, seconds in timed.items()}
    return {**costs, **{name: costs[source] for name, source in priced_as.items()}}


def costs_to_json(costs: dict[str, StepCost]) -> dict[str, list[float]]:
    """Each arm's timed rounds, for tinylm.course.recorded."""
    return {name: list(cost.rounds) for name, cost in costs.items()}


def costs_from_json(data: dict[str, list[float]]) -> dict[str, StepCost]:
    return {name: StepCost(tuple(rounds)) for name, rounds in data.items()}


def step_cost_line(arms: Sequence[Arm], costs: dict[str, StepCost]) -> str:
    """Each arm's step cost (median, fastest and slowest round), then each later arm's against the first: the ratio
    of the medians, told apart only when the two arms' rounds do not overlap."""
    first = costs[arms[0].name]
    lines = [f"{arm.name}: {costs[arm.name].format()} ms per step (median of {len(costs[arm.name].rounds)} rounds; "
             "fastest–slowest)" for arm in arms]
    for arm in arms[1:]:
        cost = costs[arm.name]
        apart = separated(cost.rounds, first.rounds)
        lines.append(f"{arm.name} against {arms[0].name}: {cost.seconds / first.seconds:.2f}x the step cost; "
                     + ("told apart (the rounds do not overlap)" if apart else "not told apart (the rounds overlap)"))
    return "\n".join(lines)

def within_budget(arms: Sequence[Arm], costs: dict[str, StepCost], budget_seconds: float,
                  eval_seconds: float | None = None) -> list[Arm]:
    """`arms`, each set to train for the steps `budget_seconds` buy at its measured cost (max_steps; no clock), and
    with `eval_seconds`, to evaluate every time that many seconds of training have passed at that cost
    (eval_interval, at least 1 step), so that a cheap arm's crossing of a target is read as finely as a dear one's."""
    budgeted = []
    for arm in arms:
        cost = costs[arm.name]
        options = [("max_seconds", None), ("max_steps", cost.steps_within(budget_seconds))]
        if eval_seconds is not None:
            options.append(("eval_interval", cost.steps_within(eval_seconds)))
        budgeted.append(dataclasses.replace(arm, train_options=(*arm.train_options, *options)))
    return budgeted


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
    """What a budget of seconds means in a race priced by measured step costs (every arm timed in as many rounds)."""
    rounds = len(next(iter(costs.values())).rounds)
    return (f"Budget: {budget} of training at each arm's median step cost, measured in {rounds} rounds interleaved "
            f"across arms; every seed of an arm trains the same number of steps, so a slow spell during training "
            f"changes how long it takes, not its loss ({TRAINING_TIME})")


def race_table(arms: Sequence[Arm], runs: dict[str, list[ArmRun]], costs: dict[str, StepCost], target: float,
               budget: str, split: str = "val") -> str:
    """A markdown table of a race priced by measured step costs, one row per arm: what it is, its ms per step as
    measured (median, fastest–slowest round) and as the training runs took them, the steps the budget buys, the
    seconds between two evaluations, the seconds to `target` and the loss at the end of the `budget` (mean ± half
    the range over seeds), both on the split the runs evaluated, named by `split`. Under it, the budget's
    definition."""
    header = ["arm", "what it is", "ms per step (rounds)", "ms per step while training", "steps",
              "s between evaluations", f"seconds to {target}", f"{split} loss at {budget}"]
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
                  budget: str, split: str = "val") -> list[str]:
    """For every arm with a baseline, two sentences by the rule of tinylm.eval.uncertainty.compare: on the loss at the
    end of `budget` (on the split the runs evaluated, named by `split`), and on the seconds to `target` at the
    measured step costs (when every seed of both reached it; else the sentence says so and gives no verdict)."""
    sentences = []
    for arm in arms:
        if arm.baseline is None:
            continue
        ours, theirs = runs[arm.name], runs[arm.baseline]
        sentences.append(compare(arm.name, [r.val_loss for r in ours], arm.baseline, [r.val_loss for r in theirs],
                                 metric=f"{split} loss at {budget}", digits=3))
        times_ours = priced_times(ours, costs[arm.name], target)
        times_theirs = priced_times(theirs, costs[arm.baseline], target)
        if None in times_ours or None in times_theirs:
            sentences.append(f"{arm.name} vs {arm.baseline} on seconds to {target}: not every seed reached it "
                             f"({format_times(times_ours)} vs {format_times(times_theirs)}): no verdict")
        else:
            sentences.append(compare(arm.name, times_ours, arm.baseline, times_theirs, metric=f"seconds to {target}",
                                     digits=1))
    return sentences


def loss_at_step(records: Sequence[dict[str, Any]], step: float) -> float:
    """A run's evaluated loss at `step`, linearly interpolated between its evaluations (eval and final records)."""
    curve = [(r["step"], r["val_loss"]) for r in records if r.get("event") in ("eval", "final")]
    for (s0, l0), (s1, l1) in zip(curve, curve[1:]):
        if s0 <= step <= s1:
            return l0 if s1 == s0 else l0 + (l1 - l0) * (step - s0) / (s1 - s0)
    raise InputError(f"step {step} lies outside the evaluated steps {curve[0][0]}-{curve[-1][0]}")


def equal_steps_verdicts(arms: Sequence[Arm], runs: dict[str, list[ArmRun]], split: str = "val") -> list[str]:
    """For every arm with a baseline, one sentence by the rule of tinylm.eval.uncertainty.compare on the loss at the
    same step for both arms: the fewest steps any run of the two trained, read off each run's evaluations."""
    sentences = []
    for arm in arms:
        if arm.baseline is None:
            continue
        ours, theirs = runs[arm.name], runs[arm.baseline]
        step = min(run.steps for run in (*ours, *theirs))
        sentences.append(compare(arm.name, [loss_at_step(r.records, step) for r in ours], arm.baseline,
                                 [loss_at_step(r.records, step) for r in theirs],
                                 metric=f"{split} loss at step {step:,}", digits=3))
    return sentences


def machine_line(device: torch.device | str) -> str:
    """The machine a timing ran on: the CPU (`tinylm.runtime.cpu_name`: model, cores, vector instructions) or the
    GPU's name, PyTorch's threads, and how many other processes are running on the CPU right now
    (`tinylm.runtime.busy_elsewhere`)."""
    device = torch.device(device)
    name = cpu_name()
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} (host CPU: {name})"
    return (f"{MACHINE_PREFIX}{name}, {torch.get_num_threads()} PyTorch threads; "
            f"other processes running now: {busy_elsewhere():.0f}")
