"""Seeded ablation arms: one architectural change at a time, several seeds per arm, equal training budget.

Notebook 8 asks which of the changes from GPT-2's block to a Llama-style block, and then to a mixture
of experts, pay for themselves at equal training time. An honest answer needs three things, which this
module provides:

- a chain of configurations in which every arm differs from the arm it is measured against by one
  change only (`architecture_chain`); the changes are taken from `ARCHITECTURES`, so the chain's dense
  end is exactly the "llama" family and its experts exactly "llama-moe";
- every arm trained at several seeds under the same Trainer budget (`train_arms`), the seeds interleaved
  across arms (seed 0 of every arm, then seed 1, ...) so that a machine that slows down half-way, as a
  shared one does, slows every arm alike rather than one arm's seeds;
- a table and verdicts computed from the runs (`ablation_table`, `verdicts`, on tinylm.eval.uncertainty),
  so that no figure a re-run could change has to be typed into prose.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..config import GPTConfig, TrainConfig, with_architecture
from ..eval.uncertainty import compare, separated, spread
from ..model.gpt import GPT
from ..train.trainer import Trainer

# The dense steps from GPT-2's block to Llama's, in order: (arm, what changed, the GPTConfig fields it copies from
# the "llama" family). RMSNorm also drops the biases: LayerNorm's shift is a bias, and RMSNorm is LayerNorm without
# the centring and the shift, so "no additive terms" is one idea; separating them would cost a ninth arm. Weight
# tying is not in the chain: both families tie the head to the embedding at this size.
DENSE_STEPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("+RMSNorm", "LayerNorm -> RMSNorm, biases dropped", ("norm", "bias")),
    ("+RoPE", "learned position table -> rotary embeddings", ("position",)),
    ("+SwiGLU", "GELU MLP (4C wide) -> SwiGLU (~8C/3 wide)", ("mlp",)),
    ("+GQA", "half as many key/value heads", ("n_kv_head",)),
)
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
    the training seconds they took, every record the Trainer emitted, and the trained model."""

    arm: str
    seed: int
    val_loss: float
    steps: int
    elapsed: float
    records: list[dict[str, Any]]
    model: torch.nn.Module


def architecture_chain(config: GPTConfig, balancing: Sequence[str] = tuple(BALANCING_NAMES)) -> list[Arm]:
    """`config`'s shape as GPT-2's block, then one change at a time up to the "llama" family, then that block with
    the "llama-moe" experts under each `balancing` mode. Each dense arm is measured against the previous one; every
    mixture-of-experts arm against the dense Llama block (they are alternatives, not further steps)."""
    llama, moe = with_architecture(config, "llama"), with_architecture(config, "llama-moe")
    current = with_architecture(config, "gpt2")
    arms = [Arm("GPT-2", "GPT-2's block", current, None)]
    for name, change, fields in DENSE_STEPS:
        current = dataclasses.replace(current, **{field: getattr(llama, field) for field in fields})
        arms.append(Arm(name, change, current, arms[-1].name))
    dense = arms[-1]
    for mode in balancing:
        moe_config = dataclasses.replace(dense.config, balancing=mode, **{f: getattr(moe, f) for f in MOE_FIELDS})
        arms.append(Arm(f"+MoE, {BALANCING_NAMES[mode]}", f"MLP -> {moe.n_experts} experts, top-"
                        f"{moe.n_experts_active}, {moe.n_shared_experts} shared; {BALANCING_NAMES[mode]}",
                        moe_config, dense.name))
    return arms


def print_run(run: ArmRun) -> None:
    print(f"{run.arm:<26} seed {run.seed}: {run.steps:>5} steps in {run.elapsed:>4.0f} s of training, "
          f"val loss {run.val_loss:.3f}")


def train_arms(arms: Sequence[Arm], seeds: Sequence[int], train_config: TrainConfig, train_data, val_data, *,
               device: torch.device, tokenizer=None, report: Callable[[ArmRun], None] | None = print_run,
               progress: Callable[[Sequence], Any] | None = None) -> dict[str, list[ArmRun]]:
    """Train every arm at every seed with `train_config` (its seed replaced, samples off, the arm's train_options
    set), seeds interleaved across arms; returns each arm's runs in seed order. The seed sets the initial weights
    (torch.manual_seed before the model is built) and the order of the batches (the Trainer's sampler). Nothing is
    written to disk. `report` is called after each run; `progress` wraps the list of (seed, arm) pairs, e.g. tqdm."""
    plan = [(seed, arm) for seed in seeds for arm in arms]
    runs: dict[str, list[ArmRun]] = {arm.name: [] for arm in arms}
    for seed, arm in (progress(plan) if progress else plan):
        records: list[dict[str, Any]] = []
        torch.manual_seed(seed)
        run_config = dataclasses.replace(train_config, seed=seed, sample_interval=0, **dict(arm.train_options))
        trainer = Trainer(GPT(arm.config), run_config, train_data, val_data, out_dir=None, tokenizer=tokenizer,
                          device=device, callbacks=[records.append])
        final = trainer.fit()
        run = ArmRun(arm.name, seed, final["val_loss"], trainer.step, trainer.elapsed, records, trainer.model)
        runs[arm.name].append(run)
        if report:
            report(run)
    return runs


def losses(runs: dict[str, list[ArmRun]], arm: str) -> list[float]:
    return [run.val_loss for run in runs[arm]]


def parameter_counts(config: GPTConfig) -> tuple[int, int]:
    """(all parameters, those one token uses), counted on the meta device: no memory, no initialisation."""
    with torch.device("meta"):
        model = GPT(config)
    return model.num_parameters(), model.num_active_parameters()


def ablation_table(arms: Sequence[Arm], runs: dict[str, list[ArmRun]],
                   bits_per_byte: Callable[[float], float] | None = None, digits: int = 3) -> str:
    """A markdown table, one row per arm: what changed, parameters (used per token), mean steps, validation loss
    mean ± half its range over seeds, bits per byte of the mean (when `bits_per_byte` converts a loss), the
    difference of means from the arm's baseline, and whether that difference is larger than the seed spread
    (the ranges over seeds do not overlap)."""
    header = ["arm", "what changed", "parameters (per token)", "steps (mean)", "val loss",
              *(["bits per byte"] if bits_per_byte else []), "Δ vs baseline", "beyond the seed spread?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in arms:
        values, (total, active) = losses(runs, arm.name), parameter_counts(arm.config)
        summary = spread(values)
        steps = sum(run.steps for run in runs[arm.name]) / len(runs[arm.name])
        row = [arm.name, arm.change, f"{total:,} ({active:,})", f"{steps:,.0f}", summary.format(digits)]
        if bits_per_byte:
            row.append(f"{bits_per_byte(summary.mean):.{digits}f}")
        if arm.baseline is None:
            row += ["(first arm)", ""]
        else:
            reference = losses(runs, arm.baseline)
            delta = summary.mean - spread(reference).mean
            row += [f"{delta:+.{digits}f} vs {arm.baseline}", "yes" if separated(values, reference) else "no"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def verdicts(arms: Sequence[Arm], runs: dict[str, list[ArmRun]], digits: int = 3) -> list[str]:
    """One sentence per arm with a baseline (tinylm.eval.uncertainty.compare): who won, by how much, and whether
    the gap is larger than the seed spread."""
    return [compare(arm.name, losses(runs, arm.name), arm.baseline, losses(runs, arm.baseline), digits=digits)
            for arm in arms if arm.baseline is not None]
