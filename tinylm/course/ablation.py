"""Seeded ablation arms for notebooks 8a and 8b: which changes from GPT-2's block to Llama's, then to a mixture of
experts, pay for themselves. `architecture_chain` and `mixture_chain` change one thing per arm; `train_arms` trains
every arm at several seeds under one budget, the arms' order rotated from seed to seed, and under a budget of seconds
re-runs a run more than `STEP_TOLERANCE` off its arm's median steps; `hold_out_test` keeps a test split nothing was
chosen on; `ablation_table` and `verdicts` compute the table and the verdicts by tinylm.eval.uncertainty's rule (at
least 3 seeds per arm, ranges that do not overlap), so that no figure a re-run could change is typed into prose.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..config import GPTConfig, TrainConfig, with_architecture
from ..errors import InputError
from ..eval.loss import evaluate_loss
from ..eval.uncertainty import compare, spread, told_apart
from ..model.gpt import GPT
from ..runtime import autocast
from ..train.trainer import Trainer

# The dense steps from GPT-2's block to Llama's, in order: (arm, what changed, the GPTConfig fields it copies from
# the "llama" family). The biases go first, LayerNorm's shift with them (the shift is a bias, not part of the
# centring), so that +RMSNorm then changes the norm alone: LayerNorm without its shift -> RMSNorm. Weight tying is
# not in the chain: both families tie the head to the embedding at this size.
DENSE_STEPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("+no-bias", "every bias dropped (LayerNorm's shift too)", ("bias",)),
    ("+RMSNorm", "LayerNorm (no shift) -> RMSNorm", ("norm",)),
    ("+RoPE", "learned position table -> rotary embeddings", ("position",)),
    ("+SwiGLU", "GELU MLP (4C wide) -> SwiGLU (~8C/3 wide)", ("mlp",)),
    ("+GQA", "half as many key/value heads", ("n_kv_head",)),
)
# A run whose steps are more than this share off its arm's median steps ran on a machine of another speed for a
# while (the step time depends on the arm, not on the seed): the table flags it.
STEP_TOLERANCE = 0.10
MOE_FIELDS = ("n_experts", "n_experts_active", "n_shared_experts")
BALANCING_NAMES = {"none": "no balancing", "aux_loss": "auxiliary loss", "loss_free": "loss-free bias"}


@dataclass(frozen=True)
class Arm:
    """One arm: its model, the arm it is measured against (None for the first of the chain), and the TrainConfig
    fields it trains with on top of the shared ones (an optimizer or a schedule is a change too)."""

    name: str
    change: str
    config: GPTConfig
    baseline: str | None
    train_options: tuple[tuple[str, Any], ...] = ()


@dataclass
class ArmRun:
    """One seed of one arm: the final validation loss over the whole split, the steps the budget allowed,
    the training seconds they took, every record the Trainer emitted, the trained model, and the loss over the
    whole test split (None when the run was given none)."""

    arm: str
    seed: int
    val_loss: float
    steps: int
    elapsed: float
    records: list[dict[str, Any]]
    model: torch.nn.Module
    test_loss: float | None = None

    def loss(self, split: str = "val") -> float:
        """The final loss on "val" or "test"."""
        if split not in ("val", "test"):
            raise InputError(f"split must be 'val' or 'test', got {split!r}")
        value = self.val_loss if split == "val" else self.test_loss
        if value is None:
            raise InputError(f"{self.arm} seed {self.seed} has no test loss: train_arms needs test_data for it")
        return value


def hold_out_test(tokens, size: int, boundary: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the rest, a test split): the last `size` tokens of `tokens` (a training split) held out as a test split that
    no run trains on and no earlier choice was scored on. With `boundary` (an end-of-text id) the cut moves forward
    to just after the first boundary at or past it, so that no document is split between the two; the test split
    then starts a document, and holds at most `size` tokens. Fixed: the same tokens every time."""
    tokens = np.asarray(tokens)
    if not 2 <= size < len(tokens):
        raise InputError(f"a test split of {size:,} tokens needs at least 2, and fewer than the {len(tokens):,} given")
    cut = len(tokens) - size
    if boundary is not None:
        after = np.flatnonzero(tokens[cut:] == boundary)
        if len(after) == 0 or cut + after[0] + 1 > len(tokens) - 2:
            raise InputError(f"no end-of-text token ({boundary}) leaves a test split of 2 tokens or more in the "
                             f"last {size:,} tokens")
        cut += int(after[0]) + 1
    return tokens[:cut], tokens[cut:]


def architecture_chain(config: GPTConfig, balancing: Sequence[str] = tuple(BALANCING_NAMES)) -> list[Arm]:
    """`config`'s shape as GPT-2's block, then one change at a time up to the "llama" family, then that block with
    the "llama-moe" experts under each `balancing` mode. Each dense arm is measured against the previous one; every
    mixture-of-experts arm against the dense Llama block (they are alternatives, not further steps)."""
    current = with_architecture(config, "gpt2")
    arms = [Arm("GPT-2", "GPT-2's block", current, None)]
    llama = with_architecture(config, "llama")
    for name, change, fields in DENSE_STEPS:
        current = dataclasses.replace(current, **{field: getattr(llama, field) for field in fields})
        arms.append(Arm(name, change, current, arms[-1].name))
    return arms + _mixture_arms(arms[-1], config, balancing)


def mixture_chain(config: GPTConfig, balancing: Sequence[str] = tuple(BALANCING_NAMES)) -> list[Arm]:
    """The mixture-of-experts half of `architecture_chain` on its own: `config`'s shape as the dense "llama" block
    (the first arm, measured against nothing), then that block with the "llama-moe" experts under each `balancing`
    mode, each measured against the dense block."""
    dense = Arm("Llama (dense)", "the dense Llama block", with_architecture(config, "llama"), None)
    return [dense, *_mixture_arms(dense, config, balancing)]


def _mixture_arms(dense: Arm, config: GPTConfig, balancing: Sequence[str]) -> list[Arm]:
    """`dense` with its MLP replaced by "llama-moe"'s experts, one arm per balancing mode."""
    moe = with_architecture(config, "llama-moe")
    return [Arm(f"+MoE, {BALANCING_NAMES[mode]}", f"MLP -> {moe.n_experts} experts, top-{moe.n_experts_active}, "
                f"{moe.n_shared_experts} shared; {BALANCING_NAMES[mode]}",
                dataclasses.replace(dense.config, balancing=mode, **{f: getattr(moe, f) for f in MOE_FIELDS}),
                dense.name)
            for mode in balancing]


def print_run(run: ArmRun) -> None:
    test = "" if run.test_loss is None else f", test loss {run.test_loss:.3f}"
    print(f"{run.arm:<26} seed {run.seed}: {run.steps:>5} steps in {run.elapsed:>4.0f} s of training, "
          f"val loss {run.val_loss:.3f}{test}")


def train_arms(arms: Sequence[Arm], seeds: Sequence[int], train_config: TrainConfig, train_data, val_data, *,
               device: torch.device, tokenizer=None, report: Callable[[ArmRun], None] | None = print_run,
               progress: Callable[[Sequence], Any] | None = None, test_data=None) -> dict[str, list[ArmRun]]:
    """Train every arm at every seed with `train_config` (its seed replaced, samples off, the arm's train_options
    set); returns each arm's runs in seed order. Seed after seed, every arm once, the arms' order rotated by one
    place each seed (seed 0 starts with the first arm, seed 1 with the second, ...), so that load that comes and goes
    falls on no arm's seeds alone. The seed sets the initial weights (torch.manual_seed before the model is built) and
    the order of the batches (the Trainer's sampler). Under a budget of seconds (`max_seconds`), every run that
    `step_outliers` flags is trained again once and replaces the flagged one, which is never counted (an
    equal-steps budget needs none: its loss does not depend on the machine's speed). Nothing is written to disk.
    With `test_data` (e.g. from `hold_out_test`) each trained model is also scored on every target of it, as the
    Trainer scores the validation split. `report` is called after each run; `progress` wraps the list of
    (seed, arm) pairs, e.g. tqdm."""
    plan = [(seed, arms[(place + turn) % len(arms)]) for turn, seed in enumerate(seeds) for place in range(len(arms))]
    runs: dict[str, list[ArmRun]] = {arm.name: [] for arm in arms}
    train = functools.partial(_train_one, train_config=train_config, train_data=train_data, val_data=val_data,
                              device=device, tokenizer=tokenizer, test_data=test_data)
    for seed, arm in (progress(plan) if progress else plan):
        runs[arm.name].append(train(arm, seed))
        if report:
            report(runs[arm.name][-1])
    clocked = {arm.name: arm for arm in arms
               if dict(arm.train_options).get("max_seconds", train_config.max_seconds) is not None}
    for flagged, median in step_outliers({name: runs[name] for name in clocked}):
        if report:
            print(f"{flagged.arm} seed {flagged.seed}: {flagged.steps:,} steps, more than {STEP_TOLERANCE:.0%} off "
                  f"its arm's median of {median:,.0f}: trained again, the first run not counted")
        arm_runs = runs[flagged.arm]
        index = arm_runs.index(flagged)
        arm_runs[index] = train(clocked[flagged.arm], flagged.seed)
        if report:
            report(arm_runs[index])
    for arm_runs in runs.values():
        arm_runs.sort(key=lambda run: run.seed)
    return runs


def _train_one(arm: Arm, seed: int, *, train_config: TrainConfig, train_data, val_data, device, tokenizer,
               test_data) -> ArmRun:
    """One seed of one arm, as `train_arms` describes."""
    records: list[dict[str, Any]] = []
    torch.manual_seed(seed)
    run_config = dataclasses.replace(train_config, seed=seed, sample_interval=0, **dict(arm.train_options))
    trainer = Trainer(GPT(arm.config), run_config, train_data, val_data, out_dir=None, tokenizer=tokenizer,
                      device=device, callbacks=[records.append])
    final = trainer.fit()
    test_loss = None
    if test_data is not None:
        test_loss = evaluate_loss(trainer.model, np.asarray(test_data), arm.config.block_size,
                                  run_config.eval_batch_size, trainer.device, autocast(trainer.device, trainer.dtype),
                                  tokenizer)
    return ArmRun(arm.name, seed, final["val_loss"], trainer.step, trainer.elapsed, records, trainer.model, test_loss)


def runs_to_json(runs: dict[str, list[ArmRun]]) -> dict[str, list[dict[str, Any]]]:
    """Each arm's runs as plain dicts (tinylm.course.recorded), without the trained models."""
    kept = [field.name for field in dataclasses.fields(ArmRun) if field.name != "model"]
    return {arm: [{name: getattr(run, name) for name in kept} for run in arm_runs] for arm, arm_runs in runs.items()}


def runs_from_json(data: dict[str, list[dict[str, Any]]]) -> dict[str, list[ArmRun]]:
    """`runs_to_json`'s inverse; the runs come back without their models (None)."""
    return {arm: [ArmRun(**run, model=None) for run in arm_runs] for arm, arm_runs in data.items()}


def losses(runs: dict[str, list[ArmRun]], arm: str, split: str = "val") -> list[float]:
    """`arm`'s final loss on `split` ("val" or "test"), one per seed."""
    return [run.loss(split) for run in runs[arm]]


def step_outliers(runs: dict[str, list[ArmRun]], tolerance: float = STEP_TOLERANCE) -> list[tuple[ArmRun, float]]:
    """(run, its arm's median steps) for every run whose steps are more than `tolerance` off that median. In a race
    of equal seconds the steps depend on the arm and on the machine, not on the seed, so such a run had a machine
    of another speed for part of its budget (most likely something else ran), and its loss is not comparable with
    its arm's other seeds."""
    flagged = []
    for arm_runs in runs.values():
        median = statistics.median(run.steps for run in arm_runs)
        flagged += [(run, median) for run in arm_runs if abs(run.steps - median) > tolerance * median]
    return flagged


def parameter_counts(config: GPTConfig) -> tuple[int, int]:
    """(all parameters, those one token uses), counted on the meta device: no memory, no initialisation."""
    with torch.device("meta"):
        model = GPT(config)
    return model.num_parameters(), model.num_active_parameters()


def ablation_table(arms: Sequence[Arm], runs: dict[str, list[ArmRun]],
                   bits_per_byte: Callable[[float], float] | None = None, digits: int = 3, split: str = "val",
                   tolerance: float = STEP_TOLERANCE) -> str:
    """A markdown table, one row per arm: what changed, parameters (used per token), the fewest and most steps over
    seeds (⚑ when a run is more than `tolerance` off its arm's median steps), the median over seeds of the
    milliseconds a step took (its price on this machine, as busy as it was), the loss on `split` ("val" or "test") as
    mean ± half its range over seeds, bits per byte of the mean (when `bits_per_byte` converts a loss), the
    difference of means from the arm's baseline, and whether the two are told apart by the rule of
    tinylm.eval.uncertainty.told_apart (at least 3 seeds per arm, and ranges over seeds that do not overlap).
    Under the table, one line per flagged run."""
    header = ["arm", "what changed", "parameters (per token)", "steps (min–max)", "ms per step", f"{split} loss",
              *(["bits per byte"] if bits_per_byte else []), "Δ vs baseline", "told apart?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    flagged = step_outliers(runs, tolerance)
    flagged_arms = {run.arm for run, _ in flagged}
    for arm in arms:
        values, (total, active) = losses(runs, arm.name, split), parameter_counts(arm.config)
        summary = spread(values)
        steps = [run.steps for run in runs[arm.name]]
        steps_cell = f"{min(steps):,}–{max(steps):,}" + (" ⚑" if arm.name in flagged_arms else "")
        step_ms = statistics.median(1000 * run.elapsed / run.steps for run in runs[arm.name])
        row = [arm.name, arm.change, f"{total:,} ({active:,})", steps_cell, f"{step_ms:.0f}", summary.format(digits)]
        if bits_per_byte:
            row.append(f"{bits_per_byte(summary.mean):.{digits}f}")
        if arm.baseline is None:
            row += ["(first arm)", ""]
        else:
            reference = losses(runs, arm.baseline, split)
            delta = summary.mean - spread(reference).mean
            row += [f"{delta:+.{digits}f} vs {arm.baseline}", "yes" if told_apart(values, reference) else "no"]
        lines.append("| " + " | ".join(row) + " |")
    if flagged:
        lines.append("")
    for run, median in flagged:
        lines.append(f"⚑ {run.arm} seed {run.seed}: {run.steps:,} steps, {run.steps / median - 1:+.0%} off its arm's "
                     f"median of {median:,.0f} (more than {tolerance:.0%}); an equal-time run's steps depend on the "
                     "arm and the machine, not the seed, so the machine most likely ran at another speed during it, "
                     "and its loss is not comparable with its arm's other seeds")
    return "\n".join(lines)


def verdicts(arms: Sequence[Arm], runs: dict[str, list[ArmRun]], digits: int = 3, split: str = "val") -> list[str]:
    """One sentence per arm with a baseline (tinylm.eval.uncertainty.compare) on the loss on `split`: who won, by
    how much, and whether the two are told apart (at least 3 seeds per arm and ranges that do not overlap) or not."""
    return [compare(arm.name, losses(runs, arm.name, split), arm.baseline, losses(runs, arm.baseline, split),
                    metric=f"{split} loss", digits=digits)
            for arm in arms if arm.baseline is not None]
