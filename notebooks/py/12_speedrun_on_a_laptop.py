# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 12 · Speedrun on a laptop: Muon and the modded-nanogpt changes, one at a time
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/12_speedrun_on_a_laptop.ipynb)
#
# Notebook 3 made a training step fast; this notebook makes *learning* fast. The two are different
# goals: a step that runs 5% faster buys 5% more steps, while an optimizer that gets twice as much out of
# each step halves the wait. The record that shows it is the
# [modded-nanogpt speedrun](https://github.com/KellerJordan/modded-nanogpt): GPT-2 small trained to a
# FineWeb validation loss of 3.28 on eight H100s, first in 45 minutes with llm.c's recipe, then in under
# 3, almost all of it from a new optimizer (Muon) and a dozen small changes to the architecture and the
# schedule, not from faster kernels. Here you build Muon from scratch, then run the speedrun's method on
# the Shakespeare model of notebook 3: try one change at a time on top of the current record, at equal
# training time and two seeds, and keep it only if it wins by more than the noise.
#
# **What you will learn**
# - why the measure is **loss per second** (seconds of training to a target loss), not tokens per second;
# - **Muon**: momentum, then an orthogonalised update; the **Newton–Schulz** iteration that orthogonalises
#   with matrix products alone, its quintic coefficients, and why the update has a fixed size; written by
#   hand and checked against `tinylm` and `torch.optim.Muon`;
# - which parameters Muon trains and which stay with AdamW, and why;
# - the modded-nanogpt changes: **ReLU²**, **QK-norm**, **zero-initialised projections**, an **untied
#   head**, **logit soft-capping** and the **warmup-stable-decay** schedule: what each is for;
# - a **record table**: each change tried on top of the record, kept only when every seed beats every seed
#   of the record, with the seconds to the target and the loss at the end of the budget;
# - why what wins on eight GPUs does not all win on two CPU cores.
#
# **How long it takes**: about 60 minutes of study.
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; the record table with 9 attempts × 2 seeds of 20 steps of a tiny model | ~30 s (estimated) |
# | `cpu` (2-core laptop) | the record table: 9 attempts × 2 seeds × 25 s of training on Shakespeare | just under 10 minutes (README has the measured time) |
#
# On a GPU (`gpu` profile) the notebook runs the same table with shorter budgets unless you set
# `FULL_RECIPE = True` (see [Running on a GPU](README.md#running-on-a-gpu)). `python -m tinylm.bench
# speedrun` races the default and speedrun recipes for 70 s each at three seeds (README, "The laptop speedrun").
#
# **Papers and posts**: Muon ([Jordan et al., 2024](https://kellerjordan.github.io/posts/muon/);
# at scale: [Liu et al., 2025, "Muon is scalable for LLM training"](https://arxiv.org/abs/2502.16982)),
# Newton–Schulz for the polar decomposition ([Higham, 2008, *Functions of Matrices*, ch. 8](https://doi.org/10.1137/1.9780898717778)),
# the [modded-nanogpt](https://github.com/KellerJordan/modded-nanogpt) record history,
# ReLU² ([So et al., 2021, "Primer"](https://arxiv.org/abs/2109.08668)),
# QK-norm ([Dehghani et al., 2023](https://arxiv.org/abs/2302.05442)),
# logit soft-capping ([Gemma 2, 2024](https://arxiv.org/abs/2408.00118)),
# warmup-stable-decay ([Hu et al., 2024, "MiniCPM"](https://arxiv.org/abs/2404.06395)),
# and [nanochat](https://github.com/karpathy/nanochat), which uses most of them.

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import dataclasses
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

import tinylm
from tinylm.bench.speedrun import RACE_DEFAULTS, seconds_to_target, validation_curve
from tinylm.course.exercises import check
from tinylm.course.speedrun import (
    SPEEDRUN_CHANGES,
    attempt_verdicts,
    kept_changes,
    record_table,
    times_to_target,
    try_changes,
)
from tinylm.data.tokens import RandomWindowSampler
from tinylm.eval.uncertainty import spread
from tinylm.train.muon import NS_COEFFICIENTS, Muon, muon_scale, newton_schulz
from tinylm.train.optim import learning_rate, muon_parameters
from tinylm.train.recipes import SHAKESPEARE_CHAR

PROFILE = tinylm.resolve_profile()
DEVICE = tinylm.resolve_device()
tinylm.configure_backend(DEVICE)  # process-wide speed settings for training: TF32 on CUDA, freed memory kept on a CPU
SEED = 42
plt.rcParams.update({"font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "legend.fontsize": 11})
print(f"profile {PROFILE}, device {DEVICE}")
# On a GPU, False runs the cpu recipe's table with shorter budgets; True runs the gpu recipe's model for minutes per
# attempt (see README's "Running on a GPU"). It changes nothing on the cpu and smoke profiles.
FULL_RECIPE = False
SCALE = "gpu-bounded" if PROFILE == "gpu" and not FULL_RECIPE else PROFILE  # what this notebook trains
RECIPE_PROFILE = "cpu" if SCALE == "gpu-bounded" else PROFILE  # whose data, model shape and recipe
if SCALE != PROFILE:
    print(f"FULL_RECIPE is False: training the {RECIPE_PROFILE} profile's shape and recipe on {DEVICE}, "
          "with shorter budgets")

# %% [markdown]
# ## Loss per second
#
# A training run is a race to a validation loss. Tokens per second says how fast the engine turns; the
# time to reach the target also depends on how far each step goes. The speedrun's unit is therefore
# **seconds of training to a target loss** (here, as in `python -m tinylm.bench speedrun`, the Trainer's clock,
# which leaves evaluations out), and its second figure is the loss when a fixed budget runs out. Both are
# read off a validation curve: the whole validation split is scored every few steps, and the crossing of
# the target is interpolated between the two evaluations around it. The target for Shakespeare is 1.886,
# what nanoGPT's own CPU recipe reaches after its 70 seconds.

# %%
# NBVAL_CHECK_OUTPUT
curve = [(2.0, 2.4), (4.0, 2.0), (6.0, 1.8)]
print(f"a curve at 2.0 after 4 s and 1.8 after 6 s reaches 1.886 at {seconds_to_target(curve, 1.886):.2f} s")
print(f"shakespeare-char's target in the bench: {RACE_DEFAULTS['shakespeare-char']['target']}")

# %% [markdown]
# ## Muon, from scratch
#
# Take a hidden layer's weight matrix `W` (out × in) and its gradient `G`. Adam scales each entry of the
# update by its own running size. Muon treats the matrix as a matrix:
#
# 1. **momentum**: `M ← μ·M + (1 − μ)·G`, and with Nesterov the direction is `U = (1 − μ)·G + μ·M`;
# 2. **orthogonalise**: write `U = A·S·Bᵀ` (its singular value decomposition) and replace it by `A·Bᵀ`,
#    every singular value set to 1;
# 3. **step**: `W ← W·(1 − lr·λ) − lr·√max(1, out/in)·A·Bᵀ`.
#
# Why step 2? A gradient of a hidden layer is nearly low-rank: a few directions carry almost all of it.
# SGD and Adam then move the weights mostly along those few directions, and the rare directions, which
# may matter just as much for learning, barely move. An orthogonal update moves every direction the
# gradient has by the same amount. Here is a real gradient, of the first MLP matrix of the Shakespeare
# model on one batch:

# %%
track = SHAKESPEARE_CHAR
data = track.prepare(RECIPE_PROFILE)
shape, recipe = track.recipe(RECIPE_PROFILE)
config = shape.config(data.tokenizer.vocab_size)
torch.manual_seed(SEED)
model = tinylm.GPT(config)
x, y = RandomWindowSampler(data.train, config.block_size, 32, seed=SEED).next_batch("cpu")
model(x, y)[1].backward()
gradient = model.transformer.h[0].mlp.c_fc.weight.grad  # (4·C, C)
singular_values = torch.linalg.svdvals(gradient)
energy = singular_values.pow(2).cumsum(0) / singular_values.pow(2).sum()
print(f"gradient of transformer.h.0.mlp.c_fc.weight: {tuple(gradient.shape)}, {len(singular_values)} singular values")
print(f"the largest {int((energy < 0.9).sum()) + 1} directions hold 90% of its squared size; the largest is "
      f"{singular_values[0] / singular_values[len(singular_values) // 2]:.0f}x the median")

fig, ax = plt.subplots(figsize=(9, 4.5))
ax.semilogy(singular_values.numpy(), "o-", ms=3, label="the gradient")
ax.semilogy(torch.linalg.svdvals(newton_schulz(gradient).float()).numpy(), "o-", ms=3,
            label="after Newton–Schulz (5 steps)")
ax.set_xlabel("singular value, largest first")
ax.set_ylabel("size (log scale)")
ax.set_title("Muon's update moves every direction about equally")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ### Newton–Schulz: orthogonalising with matrix products
#
# An SVD per matrix per step is slow on a GPU. The polar factor `A·Bᵀ` is also the limit of an iteration
# that needs only matrix products. Scale `X₀ = U / ‖U‖_F` so that every singular value lies in (0, 1], then
# repeat `X ← a·X + b·(X·Xᵀ)·X + c·(X·Xᵀ)²·X`. Each step applies the odd polynomial
# `p(σ) = a·σ + b·σ³ + c·σ⁵` to every singular value and leaves the singular vectors alone. The classical
# choice `(a, b, c) = (1.5, −0.5, 0)` converges to exactly 1, but slowly for small σ: its slope at 0 is
# 1.5. Keller Jordan's quintic `(3.4445, −4.7750, 2.0315)` has slope 3.4 at 0, so five steps lift every
# singular value above ~1/300 of the largest into roughly 0.7 to 1.2. Not exactly 1: training does not
# mind, and five steps in bfloat16 are cheap.

# %%
def my_newton_schulz(update: torch.Tensor, steps: int, coefficients: tuple[float, float, float]) -> torch.Tensor:
    a, b, c = coefficients
    x = update / update.norm()  # Frobenius norm >= the largest singular value
    tall = x.size(0) > x.size(1)
    if tall:  # X·Xᵀ of the wide orientation is the smaller matrix
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


matrix = torch.randn(48, 96, dtype=torch.float64) @ torch.diag(torch.logspace(-2, 0, 96, dtype=torch.float64))
u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
polar = u @ vh
cubic = my_newton_schulz(matrix, 60, (1.5, -0.5, 0.0))
assert torch.allclose(cubic, polar, atol=1e-8), "the classical iteration converges to the polar factor"
mine = my_newton_schulz(matrix.float(), 5, NS_COEFFICIENTS)
assert torch.allclose(mine, newton_schulz(matrix.float(), dtype=torch.float32), atol=1e-5)
print(f"cubic, 60 steps: max |X - A·Bᵀ| = {(cubic - polar).abs().max():.1e}")
print("quintic, 5 steps: equal to tinylm.train.muon.newton_schulz (float32)")

fig, (ax_poly, ax_steps) = plt.subplots(1, 2, figsize=(15, 4.8))
sigma = torch.linspace(0, 1.2, 300, dtype=torch.float64)
for label, (a, b, c) in (("cubic (1.5, −0.5, 0)", (1.5, -0.5, 0.0)), ("quintic " + str(NS_COEFFICIENTS), NS_COEFFICIENTS)):
    ax_poly.plot(sigma, a * sigma + b * sigma**3 + c * sigma**5, label=label)
ax_poly.plot(sigma, sigma, "k:", lw=1, label="p(σ) = σ")
ax_poly.axhline(1, color="grey", lw=0.8)
ax_poly.set_xlabel("singular value σ before a step")
ax_poly.set_ylabel("after one step, p(σ)")
ax_poly.set_title("one Newton–Schulz step")
ax_poly.legend(fontsize=10)
start = torch.logspace(-3, 0, 7, dtype=torch.float64)  # singular values of X₀
for coefficients, style in (((1.5, -0.5, 0.0), "--"), (NS_COEFFICIENTS, "-")):
    a, b, c = coefficients
    history = [start]
    for _ in range(6):
        history.append(a * history[-1] + b * history[-1] ** 3 + c * history[-1] ** 5)
    ax_steps.plot(torch.stack(history).numpy(), style, color="C0" if style == "--" else "C1")
ax_steps.set_yscale("log")
ax_steps.set_xlabel("Newton–Schulz step")
ax_steps.set_ylabel("singular value")
ax_steps.set_title("seven singular values: cubic (dashed) vs quintic")
ax_steps.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### A Muon step, checked twice
#
# With `newton_schulz`, the optimizer is a few lines. The scale `√max(1, out/in)` gives a tall matrix the
# same update size per entry as a wide one. Ten steps on three matrices (wide, tall, square) with the same
# gradients must give exactly what `tinylm.train.muon.Muon` and PyTorch's own `torch.optim.Muon` give:

# %%
def my_muon_step(weights, gradients, buffers, lr: float, momentum: float = 0.95, weight_decay: float = 0.1):
    for w, g, m in zip(weights, gradients, buffers):
        m.lerp_(g, 1 - momentum)  # M = μ·M + (1 − μ)·G
        direction = newton_schulz(g.lerp(m, momentum))  # Nesterov: (1 − μ)·G + μ·M, orthogonalised
        w.mul_(1 - lr * weight_decay)
        w.add_(direction.to(w.dtype), alpha=-lr * muon_scale(w.shape))


torch.manual_seed(SEED)
shapes = [(16, 48), (48, 16), (32, 32)]
mine = [torch.randn(s) for s in shapes]
ours = [torch.nn.Parameter(w.clone()) for w in mine]
theirs = [torch.nn.Parameter(w.clone()) for w in mine]
buffers = [torch.zeros(s) for s in shapes]
ours_optimizer = Muon(ours, lr=0.02, weight_decay=0.1, momentum=0.95)
torch_optimizer = torch.optim.Muon(theirs, lr=0.02, weight_decay=0.1, momentum=0.95)
generator = torch.Generator().manual_seed(SEED)
for _ in range(10):
    gradients = [torch.randn(s, generator=generator) for s in shapes]
    my_muon_step(mine, gradients, buffers, lr=0.02)
    for p, q, g in zip(ours, theirs, gradients):
        p.grad, q.grad = g.clone(), g.clone()
    ours_optimizer.step()
    torch_optimizer.step()
gap_tinylm = max((a - b).abs().max().item() for a, b in zip(mine, ours))
gap_torch = max((a - b).abs().max().item() for a, b in zip(mine, theirs))
assert gap_tinylm == 0.0 and gap_torch == 0.0
print(f"10 steps: max |mine - tinylm Muon| = {gap_tinylm}, max |mine - torch.optim.Muon| = {gap_torch}")

# %% [markdown]
# **Which parameters.** Muon is for the matrices that mix features inside the blocks. The token embedding
# is a lookup table (each step touches a few rows, and orthogonalising the whole table would move rows
# no token asked for), the head reads out a probability per token, and norms and biases are vectors: these
# stay with AdamW, at AdamW's learning rate. `TrainConfig(optimizer="muon")` makes that split
# (`tinylm.train.optim.muon_parameters`) and steps both halves as one optimizer, on one schedule, with
# Muon's peak rate (`muon_learning_rate`, 0.02) set apart from AdamW's: an orthogonalised update has a
# fixed size, so its rate means something else than Adam's.

# %%
chosen = muon_parameters(model)
print("Muon:  ", ", ".join(chosen))
print("AdamW: ", ", ".join(name for name, _ in model.named_parameters() if name not in chosen))

# %% [markdown]
# ## The other changes
#
# Each is one field of `GPTConfig` or `TrainConfig`:
#
# - **A second block** (`n_layer=2`): not one of the speedrun's changes, but the question Muon raises. The cpu
#   recipe has one block because with AdamW a second one barely helps per step and halves the steps per
#   second; Muon trains it much better per step (README, "The laptop speedrun"). Does that pay for the slower
#   steps within the budget?
# - **ReLU²** (`mlp="relu2"`): `relu(x)²` instead of GELU. As cheap as ReLU, exactly zero for half the
#   inputs, smooth where it is not; Primer found it by searching over activations.
# - **QK-norm** (`qk_norm=True`): queries and keys RMS-normalised per head before the scores, so a score is
#   a scaled cosine and cannot blow up as the weights grow; it lets the optimizer run hotter.
# - **Zero-initialised projections** (`zero_init_projections=True`): the matrices that write into the
#   residual stream start at 0, so every block starts as the identity and the model as a bigram model.
# - **An untied head** (`tie_weights=False`): the head gets its own matrix instead of sharing the
#   embedding's, more parameters for the same compute.
# - **Logit soft-capping** (`logit_softcap=15`): `15·tanh(logits/15)`, so no logit can run away early.
# - **Warmup-stable-decay** (`schedule="wsd"`): hold the peak rate, then a straight line down over the last
#   40% of the budget; the long plateau explores, the cooldown settles.

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
inputs = torch.linspace(-3, 3, 200)
axes[0].plot(inputs, torch.nn.functional.gelu(inputs, approximate="tanh"), label="GELU (GPT-2)")
axes[0].plot(inputs, torch.relu(inputs) ** 2, label="ReLU²")
axes[0].set_ylim(-0.5, 4)
axes[0].set_title("MLP activation")
logits = torch.linspace(-60, 60, 200)
axes[1].plot(logits, logits, "k:", label="raw")
axes[1].plot(logits, 15 * torch.tanh(logits / 15), label="15·tanh(x/15)")
axes[1].set_title("logit soft-cap")
demo = dataclasses.replace(recipe, max_steps=1000, warmup_steps=50)
steps = range(demo.max_steps)
for schedule in ("cosine", "wsd"):
    axes[2].plot(steps, [learning_rate(s, dataclasses.replace(demo, schedule=schedule)) for s in steps],
                 label=schedule)
axes[2].set_title("schedule (1,000 steps)")
axes[2].set_xlabel("step")
for ax in axes:
    ax.legend(fontsize=10)
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The record table
#
# The baseline is the `cpu` recipe of notebook 3 (one block, 128 wide, AdamW, a cosine), the fastest
# learner per second on two cores that AdamW found. Then, in the speedrun's order, each change is tried
# **on top of the current record** (changes interact: Muon's larger steps are what QK-norm or a soft cap
# might pay for), at the same budget of training seconds and two seeds. A change is **kept** when every
# seed of the attempt beats every seed of the record; the next change is then tried on the new record.
# The validation split is scored every few steps, which times the crossing of the target.
#
# **Predict, then run.** Muon costs five Newton–Schulz iterations per matrix per step on top of the
# forward and backward pass. On one block 128 wide, will the better steps outweigh the fewer steps? And
# which of the architecture changes, designed for a 12-layer model on GPUs, will survive?

# %%
# Seconds of training per attempt and seed (smoke: a fixed number of steps instead), and how often the whole
# validation split is scored (in steps: about every 2 s of training at the cpu recipe's speed).
ARM_SECONDS = {"smoke": None, "cpu": 25, "gpu-bounded": 10, "gpu": 120}[SCALE]
EVAL_INTERVAL = {"smoke": 5, "cpu": 150, "gpu-bounded": 150, "gpu": 250}[SCALE]
SEEDS = [0, 1]
TARGET = RACE_DEFAULTS["shakespeare-char"]["target"] if SCALE != "smoke" else 3.0
BUDGET = f"{ARM_SECONDS} s" if ARM_SECONDS else "20 steps"
attempt_recipe = dataclasses.replace(recipe, max_seconds=ARM_SECONDS, eval_interval=EVAL_INTERVAL,
                                     max_steps=20 if SCALE == "smoke" else recipe.max_steps, log_interval=50)
started = time.perf_counter()


def report(attempt):
    losses = spread(attempt.losses)
    print(f"{attempt.name:<14} val loss {losses.format(3)}, {np.mean([r.steps for r in attempt.runs]):,.0f} steps"
          f" -> {'kept' if attempt.kept else 'not kept'}")


attempts = try_changes(config, attempt_recipe, SPEEDRUN_CHANGES, SEEDS, data.train, data.val, device=DEVICE,
                       tokenizer=data.tokenizer, report=report, progress=lambda plan: tqdm(plan, desc="attempts"))
print(f"{len(attempts)} attempts x {len(SEEDS)} seeds in {time.perf_counter() - started:.0f} s")

# %%
print(record_table(attempts, TARGET, BUDGET))
print()
for sentence in attempt_verdicts(attempts):
    print("-", sentence)
kept = kept_changes(attempts)
print(f"\nthe record after this run: baseline {' '.join(change.name for change in kept) or '(no change kept)'}")

# %% [markdown]
# The validation curves of the baseline and of every attempt that was kept (each seed a line): how much
# sooner the record reaches the target, and how much lower it ends.

# %%
fig, ax = plt.subplots(figsize=(11, 5.5))
shown_attempts = [a for a in attempts if a.kept]
for i, attempt in enumerate(shown_attempts):
    for seed_index, run in enumerate(attempt.runs):
        seconds, losses = zip(*validation_curve(run.records))
        ax.plot(seconds, losses, color=f"C{i}", alpha=0.85, label=attempt.name if seed_index == 0 else None)
ax.axhline(TARGET, color="black", ls=":", lw=1, label=f"target {TARGET}")
ax.set_xlabel("seconds of training (evaluations not counted)")
ax.set_ylabel("validation loss (nats per character)")
ax.set_title(f"the record, change by change ({SCALE} profile, {len(SEEDS)} seeds)")
final_losses = [loss for a in attempts for loss in a.losses]
ax.set_ylim(min(final_losses) - 0.05, max(TARGET, max(final_losses)) + 0.5)
ax.grid(alpha=0.3)
ax.legend()
plt.show()
baseline, record = attempts[0], [a for a in attempts if a.kept][-1]
times = {a.name: times_to_target(a.runs, TARGET) for a in (baseline, record)}
if all(t is not None for values in times.values() for t in values) and record is not baseline:
    speedup = spread(times[baseline.name]).mean / spread(times[record.name]).mean
    print(f"seconds to {TARGET}: baseline {spread(times[baseline.name]).format(1)}, record "
          f"{spread(times[record.name]).format(1)}: {speedup:.2f}x as fast")
print(f"val loss at {BUDGET}: baseline {spread(baseline.losses).format(3)}, record {spread(record.losses).format(3)}")

# %% [markdown]
# ## What did not help here, and why
#
# The table decides; the reasons are worth knowing, because they say when a change *will* help. A table that
# keeps little or nothing is a result too: at this budget the baseline, tuned for AdamW on this machine, is
# hard to beat, and a change has to win by more than two seeds disagree.
#
# - **The budget decides Muon and depth together.** At equal *steps* Muon beats AdamW, and it trains a
#   second block far better than AdamW does (README, "The laptop speedrun", has the probes). At equal
#   *seconds* both cost steps: Newton–Schulz adds matrix products to every step, a second block doubles
#   the step. In a short budget the lost steps can outweigh the better ones; in a longer one the better
#   steps win, which is what `python -m tinylm.bench speedrun` measures at 70 s. And a greedy table that
#   rejects Muon early never tries the second block *with* Muon: the combination the package's recipe uses.
#
# - **Per-step cost is the price of every change.** On a CPU a one-block model is so small that fixed costs
#   dominate a step; anything that adds operations (Newton–Schulz's matrix products, a square, a norm, a
#   tanh over the logits) takes a visible share of each step, where on a GPU running a 124M model it
#   disappears into the matrix multiplies. A change must buy more per step than it costs per step.
# - **Changes built for depth.** Zero-initialised projections and QK-norm keep a *deep* residual stream
#   and attention well-behaved at high learning rates; with one block there is little depth to protect.
# - **Changes built for long runs.** WSD's advantage is a long plateau that explores before the cooldown,
#   and the freedom to stop at any time; in a budget of seconds the cosine already spends its time well.
# - **Parameters that need tokens.** An untied head adds a matrix to learn from the same few million
#   characters; at 65 characters of vocabulary it is also tiny, so there is little to gain either way.
# - **Two seeds and a greedy order.** A change within the seed spread is *not shown* to help, which is not
#   the same as shown not to help; and a change rejected early might have helped on top of a later record.
#
# The package's speedrun recipe (`python -m tinylm.train shakespeare-char --recipe speedrun`) was chosen from
# probes and races at 70 s (README, "The laptop speedrun"); this run's table asks the same questions at a
# shorter budget, one change at a time:

# %%
speedrun_shape, speedrun_train = track.speedrun("cpu")  # the default recipe, trained with Muon, its shape changed
in_recipe = {**dataclasses.asdict(speedrun_shape.config(data.tokenizer.vocab_size)), **dataclasses.asdict(speedrun_train)}
print(f"the package's cpu speedrun recipe: optimizer {speedrun_train.optimizer}, schedule {speedrun_train.schedule}, "
      f"{speedrun_shape.n_layer} block(s) {speedrun_shape.n_embd} wide")
agree = [c.name for c in SPEEDRUN_CHANGES if all(in_recipe[k] == v for k, v in {**c.model, **c.train}.items())]
print("changes in the package's recipe:", ", ".join(agree) or "none")
print("changes this run kept:          ", ", ".join(c.name for c in kept) or "none")

# %% [markdown]
# ## What you learned
#
# - The measure of a recipe is **loss per second**: the seconds of training to a target loss, and the loss
#   at the end of a budget. A faster step is worth only what it adds in steps.
# - **Muon** orthogonalises each hidden matrix's momentum with a few **Newton–Schulz** steps, matrix
#   products only; every direction of the gradient then moves by the same amount. Embeddings, the head,
#   norms and biases stay with AdamW.
# - The speedrun's method: one change at a time **on top of the record**, at equal budget, over seeds, kept
#   only when it beats the noise. What survives depends on the model and the hardware: changes that pay at
#   124M parameters on GPUs may cost more than they give to a one-block model on two cores.
#
# ## Exercises
#
# **1. One quintic step.** Write one Newton–Schulz step `X ← a·X + b·(X·Xᵀ)·X + c·(X·Xᵀ)²·X` for a wide `X`.
# The check runs five of your steps from a normalised random matrix and compares with `newton_schulz`.

# %%
def my_quintic_step(x: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    raise NotImplementedError


def test_my_quintic_step():
    g = torch.randn(24, 64, generator=torch.Generator().manual_seed(1))
    x = g / g.norm()
    for _ in range(5):
        x = my_quintic_step(x, *NS_COEFFICIENTS)
    assert torch.allclose(x, newton_schulz(g, dtype=torch.float32), atol=1e-5)


check(test_my_quintic_step)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_quintic_step(x, a, b, c):
#     gram = x @ x.T
#     return a * x + (b * gram + c * gram @ gram) @ x
# ```
# </details>
#
# **2. Seconds to a target.** Given a curve of (seconds, loss) pairs, return the seconds at which the loss
# first reaches `target`, interpolating linearly between the evaluation before and the first one at or below
# it (None if never). The check compares with `tinylm.bench.speedrun.seconds_to_target` on random curves.

# %%
def my_seconds_to_target(curve: list[tuple[float, float]], target: float) -> float | None:
    raise NotImplementedError


def test_my_seconds_to_target():
    rng = np.random.default_rng(0)
    for _ in range(50):
        seconds = np.cumsum(rng.uniform(0.5, 2.0, 8))
        losses = 3.0 - np.cumsum(rng.uniform(-0.05, 0.4, 8))
        curve = list(zip(seconds.tolist(), losses.tolist()))
        target = float(rng.uniform(losses.min() - 0.2, losses.max()))
        expected = seconds_to_target(curve, target)
        got = my_seconds_to_target(curve, target)
        assert (got is None) == (expected is None) and (got is None or abs(got - expected) < 1e-9), (curve, target)


check(test_my_seconds_to_target)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_seconds_to_target(curve, target):
#     previous = None
#     for seconds, loss in curve:
#         if loss <= target:
#             if previous is None or previous[1] == loss:
#                 return seconds
#             (s0, l0) = previous
#             return s0 + (l0 - target) / (l0 - loss) * (seconds - s0)
#         previous = (seconds, loss)
#     return None
# ```
# </details>
#
# **3. Experiment: the size of an orthogonalised update.** Adam's update size depends on the gradient's
# history; Muon's does not. Take a random 64 × 256 gradient, scale it by 1,000, orthogonalise it with
# `newton_schulz`, and measure the largest singular value of the result. Predict first: about 1000, about 1,
# or about 0.001? Set `my_largest_singular_value` to what you measured; the check compares it with the
# value at scale 1 and at scale 0.001.

# %%
my_largest_singular_value = None  # replace with the value you measured


def test_my_largest_singular_value():
    if my_largest_singular_value is None:
        raise NotImplementedError("set my_largest_singular_value to the largest singular value you measured")
    g = torch.randn(64, 256, generator=torch.Generator().manual_seed(2))
    others = [torch.linalg.svdvals(newton_schulz(g * scale).float())[0].item() for scale in (1.0, 1e-3)]
    assert 0.5 < my_largest_singular_value < 1.5, "an orthogonalised matrix has singular values near 1"
    assert all(abs(my_largest_singular_value - other) < 0.1 for other in others)
    print(f"yours {my_largest_singular_value:.3f}; at scale 1 and 0.001: {others[0]:.3f}, {others[1]:.3f}: "
          "the update's size does not follow the gradient's, which is why Muon needs its own learning rate")


check(test_my_largest_singular_value)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# g = torch.randn(64, 256) * 1000
# my_largest_singular_value = torch.linalg.svdvals(newton_schulz(g).float())[0].item()  # about 1
# ```
# </details>
#
# **Going further: your own attempt.** Pick one knob the table did not try (Muon's `muon_learning_rate`
# at 0.01 or 0.04, `muon_momentum` 0.9, `cooldown_fraction` 0.2, two blocks instead of one...), run it on
# top of the record with `try_changes([...], ...)` and a `Change` of your own at two seeds, and read its
# verdict. Is the gap larger than the seed spread? (No check: the table's rule is the check.)
