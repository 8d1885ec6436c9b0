"""The notebooks' plots. `LiveLossPlot`, a Trainer callback that redraws one figure in place in Jupyter (at most every
`REDRAW_SECONDS`, so plotting never dominates training) and prints each record elsewhere; the figures of a notebook's
runs: `plot_loss_and_grad_norm` (loss beside gradient norm and the share of steps clipped), `plot_per_block` and
`plot_loss_panels` (2b), `plot_token_bars`, `plot_effective_choices` and `plot_token_times` (7's samplers and cache),
`plot_arms` and `plot_balancing` (8a's and 8b's ablations over seeds, and how a mixture of experts shares its
tokens) and `plot_fine_tuning` (9's SFT runs); and `use_projector_style`, fonts readable on a projector for every
figure a notebook draws.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..errors import InputError
from ..train.progress import format_record

PROJECTOR_STYLE = {"font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "legend.fontsize": 12,
                   "xtick.labelsize": 12, "ytick.labelsize": 12}
REDRAW_SECONDS = 2.0  # LiveLossPlot's fewest seconds between two drawings of its figure


def use_projector_style() -> None:
    """Fonts readable from the back of a lecture room, for every figure drawn after this call."""
    plt.rcParams.update(PROJECTOR_STYLE)


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ != "TerminalInteractiveShell"


def plot_losses(records: list[dict[str, Any]], ax=None, title: str | None = None):
    """Training loss per step and validation loss per evaluation, from trainer or metrics.jsonl records."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    train = [(r["step"], r["loss"]) for r in records if r.get("event") == "train"]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("event") in ("eval", "final")]
    if train:
        ax.plot(*zip(*train), label="train (batch)", alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="validation (whole split)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.grid(alpha=0.3)
    if train or val:  # the live plot's first draw may come before any loss (a plan record)
        ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_loss_and_grad_norm(records: list[dict[str, Any]], grad_clip: float, axes=None):
    """Two panels from trainer records: the loss (each train record's batch, and at each evaluation the validation
    split and, when the records carry `train_slice_loss`, a slice of the training split scored the same way), and
    the gradient norm before clipping against `grad_clip`, with the percentage of steps clipped on a second axis.
    Returns the two axes."""
    train = [r for r in records if r.get("event") == "train"]
    evals = [r for r in records if r.get("event") in ("eval", "final")]
    if not train:
        raise InputError("no train record: plot_loss_and_grad_norm needs the records of a run that took steps")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    loss_ax, norm_ax = axes
    steps, eval_steps = [r["step"] for r in train], [r["step"] for r in evals]
    loss_ax.plot(steps, [r["loss"] for r in train], lw=1, alpha=0.5, label="train (one batch)")
    if evals and all("train_slice_loss" in r for r in evals):
        loss_ax.plot(eval_steps, [r["train_slice_loss"] for r in evals], "s-", lw=2, label="train (slice, evaluated)")
    loss_ax.plot(eval_steps, [r["val_loss"] for r in evals], "o-", lw=2, label="validation (whole split)")
    loss_ax.set_ylabel("loss (nats/token)")
    loss_ax.set_title("loss")
    norm_ax.plot(steps, [r["grad_norm"] for r in train], ".-", lw=1, label="gradient norm before clipping")
    norm_ax.axhline(grad_clip, color="black", ls="--", lw=1.5, label=f"grad_clip = {grad_clip}")
    norm_ax.set_ylim(0, 1.5 * max(grad_clip, max(r["grad_norm"] for r in train)))  # room for the legend
    norm_ax.set_title("gradient norm")
    share = norm_ax.twinx()
    share.plot(steps, [100 * r["clipped"] for r in train], color="tab:red", lw=1.5, alpha=0.7)
    share.set_ylabel("% of steps clipped", color="tab:red")
    share.set_ylim(0, 105)
    for ax in (loss_ax, norm_ax):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
    return axes


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file, or of a run folder's."""
    path = Path(path)
    path = path / "metrics.jsonl" if path.is_dir() else path
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_fine_tuning(reports: dict[int, dict], records: dict[int, list[dict[str, Any]]], pass_rates: bool = True,
                     say=print):
    """SFT runs by seed, from each run's report and metrics records: validation and training answer loss per epoch
    (left) and, where the task has a verifier (`pass_rates`), the validation pass rate that chose best.pt (right, ★);
    says each run's gap between validation and training loss and where its best evaluations were; returns both axes."""
    fig, (loss_ax, rate_ax) = plt.subplots(1, 2, figsize=(12, 4.2))
    for (seed, report), color in zip(reports.items(), ("tab:blue", "tab:orange", "tab:green")):
        before = report["before"]  # measured before the first step
        evals = [{"chat_epochs": 0.0, "step": 0, "val_loss": before["validation_answer_loss"],
                  "train_answer_loss": before["train_answer_loss"]}]
        evals += [r for r in records[seed] if r.get("event") in ("eval", "final")]
        epochs = [r["chat_epochs"] for r in evals]
        loss_ax.plot(epochs, [r["val_loss"] for r in evals], "o-", color=color, ms=3, label=f"validation, seed {seed}")
        loss_ax.plot(epochs, [r["train_answer_loss"] for r in evals], "--", color=color, label=f"training, seed {seed}")
        start, last, lowest = evals[0], evals[-1], min(evals[1:], key=lambda r: r["val_loss"])
        say(f"seed {seed}: validation minus training answer loss {start['val_loss'] - start['train_answer_loss']:+.3f} "
            f"nats before the first step, {last['val_loss'] - last['train_answer_loss']:+.3f} at the end (epoch "
            f"{last['chat_epochs']:.2f}); the lowest validation loss {lowest['val_loss']:.3f} at step "
            f"{lowest['step']}, {last['val_loss']:.3f} at the end")
        if pass_rates:
            best = next(r for r in evals if r["step"] == report["after"]["step"])
            rate_ax.plot(epochs[1:], [100 * r["pass_rate"] for r in evals[1:]], "o-", color=color, ms=3,
                         label=f"seed {seed}")
            rate_ax.plot(best["chat_epochs"], 100 * best["pass_rate"], "*", color=color, ms=16, mec="black")
            say(f"    validation pass rate {100 * best['pass_rate']:.1f}% at step {best['step']} (best.pt), "
                f"{100 * last['pass_rate']:.1f}% at the end")
    loss_ax.set(xlabel="epochs", ylabel="answer-token cross-entropy (nats)", title="validation vs training")
    rate_ax.set(xlabel="epochs", ylabel="validation pass rate (%)", title="what chooses best.pt (★)")
    loss_ax.legend(fontsize=9)
    rate_ax.legend(fontsize=9) if pass_rates else rate_ax.axis("off")
    fig.tight_layout()
    return loss_ax, rate_ax


def plot_per_block(series: dict[str, Sequence[float]], ylabel: str, title: str | None = None):
    """One value per block of a stack (block 0 nearest the input), a line per entry of `series`, on a log scale."""
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for label, values in series.items():
        ax.semilogy(values, lw=2.5, label=label)
    ax.set(xlabel="block (0 = nearest the input)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_loss_panels(panels: dict[str, dict[str, Sequence[float]]], reference: tuple[float, str] | None = None,
                     ylim: tuple[float, float] | None = None):
    """Training losses side by side: each panel's title -> {a curve's label: its loss at each step}. A loss that is
    not a number leaves a gap; one above `ylim` leaves the plot at the top. `reference`: (a loss, its label), drawn
    as a dashed line in every panel."""
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 4.2), sharey=True, squeeze=False)
    for ax, (panel_title, curves) in zip(axes[0], panels.items()):
        for label, losses in curves.items():
            ax.plot(losses, lw=2, label=label)
        if reference:
            ax.axhline(reference[0], color="grey", ls="--", lw=1, label=reference[1])
        ax.set(title=panel_title, xlabel="step", ylim=ylim)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss (nats/char)")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def plot_token_bars(panels: dict[str, Sequence[float]], labels: Sequence[str], kept: Sequence | None = None,
                    title: str | None = None):
    """Next-token probabilities as bars, one panel per entry of `panels` (its title -> the probabilities of the tokens
    `labels` names, in that order); with `kept`, one boolean mask per panel, the tokens a sampler cut are grey."""
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.5), sharey=True, squeeze=False)
    for i, (ax, (panel_title, probs)) in enumerate(zip(axes[0], panels.items())):
        colours = "tab:blue" if kept is None else ["tab:green" if k else "lightgray" for k in kept[i]]
        ax.bar(range(len(labels)), probs, color=colours)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_title(panel_title)
    axes[0][0].set_ylabel("probability")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_effective_choices(temperatures: Sequence[float], choices: Sequence[float], vocab_size: int,
                           title: str | None = None):
    """The effective number of choices e^H against temperature, on log axes, between greedy's one choice and the
    vocabulary's uniform `vocab_size`."""
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(temperatures, choices)
    ax.axhline(vocab_size, color="gray", ls="--", label=f"uniform over {vocab_size} characters")
    ax.axhline(1, color="gray", ls=":", label="greedy: one choice")
    ax.axvline(1, color="tab:red", alpha=0.4, label="T = 1: the model's own distribution")
    ax.set(xscale="log", yscale="log", xlabel="temperature T", ylabel="effective choices, e^H", title=title)
    ax.legend(loc="upper left", fontsize=10)
    fig.tight_layout()
    return fig


def plot_token_times(timings: dict[str, dict[bool, Sequence[float]]]):
    """Milliseconds per generated token, one panel per model: `timings` maps a model's name to {cached: seconds of
    each new token} with and without the KV cache."""
    fig, axes = plt.subplots(1, len(timings), figsize=(12, 3.5), squeeze=False)
    for ax, (name, seconds) in zip(axes[0], timings.items()):
        for cached, label in ((False, "without cache"), (True, "with cache")):
            ax.plot([1e3 * s for s in seconds[cached]], label=label)
        ax.set(title=f"{name}, first round", xlabel="new token", ylabel="ms per token", yscale="log")
        ax.legend()
    fig.tight_layout()
    return fig


def trailing_mean(values: Sequence[float], width: int) -> np.ndarray:
    """Each value averaged with up to `width - 1` before it: one logged step's batch loss is noisy."""
    values = np.asarray(values, dtype=float)
    return np.array([values[max(0, i - width + 1) : i + 1].mean() for i in range(len(values))])


def arm_colours(arms: Sequence[str]) -> dict[str, str]:
    """One colour per arm, by its place in the ablation, so that every figure of the ablation draws an arm alike."""
    return {arm: f"C{i}" for i, arm in enumerate(arms)}


def plot_arms(runs: dict[str, list], title: str | None = None, smooth: int = 4, split: str = "val"):
    """An ablation's runs, `runs` mapping each arm's name to its runs over seeds (objects with `val_loss` and the
    Trainer's `records`, as tinylm.course.ablation.ArmRun, and `test_loss` for `split="test"`). Left: each arm's final
    loss on `split` ("val" or "test"), its mean over seeds (a dot) with the range (a bar) and each seed (a tick).
    Right: each run's training loss against seconds of training (a trailing mean over `smooth` logged steps), in its
    arm's colour (`arm_colours`). Returns the figure."""
    fig, (final, curves) = plt.subplots(1, 2, figsize=(16, 5.5), gridspec_kw={"width_ratios": [1, 1.2]})
    colours = arm_colours(list(runs))
    for i, (arm, arm_runs) in enumerate(runs.items()):
        values = [getattr(run, f"{split}_loss") for run in arm_runs]
        mean = sum(values) / len(values)
        final.errorbar(mean, i, xerr=[[mean - min(values)], [max(values) - mean]], fmt="o", color=colours[arm],
                       capsize=5, ms=8)
        final.plot(values, [i] * len(values), "|", color="black", ms=12)
        for seed_index, run in enumerate(arm_runs):
            logged = [r for r in run.records if r.get("event") == "train"]
            curves.plot([r["elapsed"] for r in logged], trailing_mean([r["loss"] for r in logged], smooth),
                        color=colours[arm], alpha=0.8, lw=1.2, label=arm if seed_index == 0 else None)
    final.set_yticks(range(len(runs)), list(runs))
    final.invert_yaxis()
    final.set_xlabel(f"final {'validation' if split == 'val' else split} loss (nats per token)")
    final.set_title("mean over seeds (dot), range (bar), each seed (tick)")
    final.grid(alpha=0.3)
    curves.set_xlabel("seconds of training (evaluations not counted)")
    curves.set_ylabel(f"training loss (trailing mean of {smooth} logs)")
    if title:
        curves.set_title(title)
    losses = [getattr(run, f"{split}_loss") for arm_runs in runs.values() for run in arm_runs]
    curves.set_ylim(min(losses) - 0.3, max(losses) + 1.5)  # the end of training, not the first steps' loss
    curves.grid(alpha=0.3)
    curves.legend(fontsize=10, ncol=2)
    fig.tight_layout()
    return fig


def plot_balancing(runs: dict[str, list], top_k: int):
    """Expert load in the mixture-of-experts arms of an ablation (`runs` as for `plot_arms`; arms whose records
    carry no expert load, as a dense arm's, are left out but keep their colour). Left: the worst layer's
    max-violation at every logged step, each seed (the first solid, the others dashed), under the ceiling E/k − 1
    that top-`top_k` routing allows. Then one heatmap per arm: the first seed's load in the last logging window,
    layer by expert, on one colour scale from 0 to 1/k. Returns the figure."""
    colours = arm_colours(list(runs))
    moe_runs = {}
    for arm, arm_runs in runs.items():
        carried = [any(r.get("event") == "train" and "max_violation" in r for r in run.records) for run in arm_runs]
        if any(carried) and not all(carried):
            raise InputError(f"{arm}: {carried.count(False)} of its {len(carried)} runs carry no expert load "
                             "(max_violation): give each arm only runs of its own model")
        if carried and all(carried):
            moe_runs[arm] = arm_runs
    if not moe_runs:
        raise InputError(f"{', '.join(runs)}: no train record carries max_violation: a mixture-of-experts run is "
                         "needed")
    fig, axes = plt.subplots(1, 1 + len(moe_runs), figsize=(5 + 4 * len(moe_runs), 4.2), layout="constrained",
                             gridspec_kw={"width_ratios": [1.6] + [1] * len(moe_runs)})
    for heatmap, (arm, arm_runs) in zip(axes[1:], moe_runs.items()):
        for seed_index, run in enumerate(arm_runs):
            logged = [r for r in run.records if r.get("event") == "train" and "max_violation" in r]
            axes[0].plot([r["step"] for r in logged], [max(r["max_violation"]) for r in logged], color=colours[arm],
                         ls="-" if seed_index == 0 else "--", label=f"{arm}, seed {run.seed}")
        load = np.array(_last_load(arm_runs[0]))  # (layers, experts)
        image = heatmap.imshow(load, cmap="magma", vmin=0, vmax=1 / top_k, aspect="auto")
        heatmap.set_title(f"{arm.split(', ')[-1]}: last load", fontsize=12)
        heatmap.set_xticks(range(load.shape[1]))
        heatmap.set_yticks(range(load.shape[0]))
        heatmap.set_xlabel("expert")
    axes[1].set_ylabel("layer")
    ceiling = load.shape[1] / top_k - 1
    axes[0].axhline(ceiling, color="gray", ls=":")
    axes[0].text(0, ceiling, f"ceiling E/k − 1 = {ceiling:g}", color="gray", va="bottom")  # above every curve
    axes[0].set_ylim(top=ceiling * 1.15)
    axes[0].set_xlabel("optimizer step")
    axes[0].set_ylabel("max-violation (worst layer)")
    axes[0].set_title("expert load over training")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    fig.colorbar(image, ax=axes[1:], label=f"fraction of assignments (at most 1/k = {1 / top_k:g})")
    return fig


def _last_load(run) -> list[list[float]]:
    """The expert load (layers × experts) of a run's last logging window."""
    return [r for r in run.records if r.get("event") == "train" and "expert_load" in r][-1]["expert_load"]


class LiveLossPlot:
    def __init__(self, title: str | None = None):
        self.title = title
        self.records: list[dict[str, Any]] = []
        self.notebook = in_notebook()
        self._handle = None
        self._last_draw = 0.0

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if not self.notebook:
            print(format_record(record), flush=True)
            return
        if record.get("event") == "sample":
            print(format_record(record), flush=True)
        final = record.get("event") == "final"
        if final or time.monotonic() - self._last_draw >= REDRAW_SECONDS:
            self.draw()

    def draw(self) -> None:
        from IPython.display import display

        fig, ax = plt.subplots(figsize=(7, 3.5))
        plot_losses(self.records, ax=ax, title=self.title)
        fig.tight_layout()
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)
        self._last_draw = time.monotonic()
