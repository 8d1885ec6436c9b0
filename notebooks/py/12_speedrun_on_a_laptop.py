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
# 3: from a new optimizer (Muon), a dozen small changes to the architecture and the schedule, and faster
# kernels too (FlexAttention, an FP8 head). Here you build Muon from scratch, then run the speedrun's method
# on the Shakespeare model of notebook 3: the package's speedrun recipe (Muon and a second block) against
# the default recipe, and changes on top of it, one at a time, at 70 s of training and three seeds each.
#
# **What you will learn**
# - why the measure is **loss per second** (seconds of training to a target loss), not tokens per second;
# - **Muon**: momentum, then an orthogonalised update; the **Newton–Schulz** iteration that orthogonalises
#   with matrix products alone, its quintic coefficients, and why the update has a fixed size; written by
#   hand and checked against `tinylm` and `torch.optim.Muon`;
# - which parameters Muon trains and which stay with AdamW, and why;
# - the modded-nanogpt changes: **ReLU²**, **QK-norm**, **zero-initialised projections**, an **untied
#   head**, **logit soft-capping** and the **warmup-stable-decay** schedule: what each is for;
# - a **record table**: the default recipe, the speedrun recipe, and changes on top of it, three seeds each,
#   with the seconds to a target loss, the loss at the end of the budget and a verdict by a stated rule;
# - why what wins on eight GPUs does not all win on two CPU cores.
#
# **How long it takes**: about 66 minutes of study.
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; the record table with 4 arms × 3 seeds of 20 steps of a tiny model | under a minute |
# | `cpu` (2-core laptop) | the record table: 4 arms × 3 seeds × 70 s of training on Shakespeare | the last cell prints it |
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

NOTEBOOK_STARTED = time.perf_counter()

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

import tinylm
from tinylm.bench.speedrun import RACE_DEFAULTS, seconds_to_target, validation_curve
from tinylm.course.ablation import Arm, train_arms
from tinylm.course.exercises import check
from tinylm.course.speedrun import SPEEDRUN_CHANGES, format_times, times_to_target
from tinylm.data.tokens import RandomWindowSampler
from tinylm.eval.uncertainty import compare, spread
from tinylm.runtime import bf16_is_fast
from tinylm.train.muon import NS_COEFFICIENTS, Muon, muon_scale, newton_schulz, newton_schulz_dtype
from tinylm.train.optim import learning_rate, muon_parameters
from tinylm.train.progress import TRAINING_TIME
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
# **seconds of training to a target loss** (here, as in `python -m tinylm.bench speedrun`, the Trainer's clock:
# the definition is printed below), and its second figure is the loss when a fixed budget runs out. Both are
# read off a validation curve: the whole validation split is scored every few steps, and the crossing of
# the target is interpolated between the two evaluations around it. The target for Shakespeare, printed
# below, is the bench's: about where nanoGPT's CPU recipe ends (its README: 2,000 steps of a 4-layer model
# 128 wide "runs in about ~3 minutes, but gets us a loss of only 1.88" on a laptop).

# %%
# NBVAL_CHECK_OUTPUT
curve = [(2.0, 2.4), (4.0, 2.0), (6.0, 1.8)]
print(f"a curve at 2.0 after 4 s and 1.8 after 6 s reaches 1.886 at {seconds_to_target(curve, 1.886):.2f} s")
print(f"shakespeare-char's target in the bench: {RACE_DEFAULTS['shakespeare-char']['target']}")
print(f"{TRAINING_TIME}")

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
# 1.5. Keller Jordan's quintic `(3.4445, −4.7750, 2.0315)` has slope 3.4 at 0, so five steps lift the small
# singular values into a band around 1 (the cell prints the band for a matrix whose columns are scaled over a
# factor of 100). Not exactly 1: training does not
# mind, and five steps are cheap (in bfloat16 on a GPU or a CPU with native bf16, in float32 elsewhere).

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
band = torch.linalg.svdvals(mine.double())
print(f"quintic {NS_COEFFICIENTS}, 5 steps: equal to tinylm.train.muon.newton_schulz (float32); its singular values "
      f"lie in [{band.min():.2f}, {band.max():.2f}]")

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
# With `newton_schulz`, the optimizer is a few lines. The scale `√max(1, out/in)` sets the size of each
# entry of the update: an orthogonalised (out × in) matrix has a root-mean-square entry of about
# 1/√max(out, in), and the scale lifts a tall matrix's to 1/√in, its fan-in, the same as a wide or square
# matrix of the same fan-in (the cell prints both). Ten steps on three matrices (wide, tall, square) with the
# same gradients must give exactly what `tinylm.train.muon.Muon` and PyTorch's own `torch.optim.Muon` give:

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
for s in shapes:  # the root-mean-square entry of one scaled, orthogonalised update
    update = muon_scale(s) * newton_schulz(torch.randn(s, generator=generator)).float()
    print(f"{s}: RMS entry {update.pow(2).mean().sqrt():.3f}, 1/√fan-in = {s[1] ** -0.5:.3f}")

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
#   second; the README's one-seed probes ("The laptop speedrun") suggest Muon trains it better per step. Does
#   that pay for the slower steps within the budget?
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
# The speedrun's method: a record, and one change at a time tried **on top of it** at the same budget of
# training seconds, over seeds. Here the first row is the default `cpu` recipe of notebook 3 (one block,
# 128 wide, AdamW, a cosine); the record is the package's speedrun recipe (`--recipe speedrun`: the same
# recipe with Muon for the blocks' matrices and a second block, the combination that won the README's
# probes); then two changes on top of the record, one of the architecture (QK-norm) and one of the schedule
# (WSD). Every arm trains for 70 s at three seeds, the seeds interleaved across arms so that a slow minute
# of the machine hits every arm alike; the whole validation split is scored every few hundred steps.
#
# **The verdict rule** (`tinylm.eval.uncertainty.compare`): two arms are **told apart** only with at least
# three seeds each and ranges that do not overlap (every seed of one beats every seed of the other); two
# arms with no real difference pass that test 1 time in 10 at three seeds. Otherwise: **not told apart**.
#
# **Predict, then run.** Muon adds five Newton–Schulz iterations per matrix per step, and the second block
# doubles the step; on a CPU without fast bfloat16 (the cell says which this one is) Newton–Schulz runs in
# float32. Will the better steps outweigh the fewer steps in 70 s?

# %%
# Seconds of training per arm and seed (smoke: a fixed number of steps instead), and how often the whole
# validation split is scored (in steps).
ARM_SECONDS = {"smoke": None, "cpu": 70, "gpu-bounded": 20, "gpu": 120}[SCALE]
EVAL_INTERVAL = {"smoke": 5, "cpu": 400, "gpu-bounded": 400, "gpu": 250}[SCALE]
SEEDS = [0, 1, 2]
TARGET = RACE_DEFAULTS["shakespeare-char"]["target"] if SCALE != "smoke" else 3.0
BUDGET = f"{ARM_SECONDS} s" if ARM_SECONDS else "20 steps"
arm_recipe = dataclasses.replace(recipe, max_seconds=ARM_SECONDS, eval_interval=EVAL_INTERVAL,
                                 max_steps=20 if SCALE == "smoke" else recipe.max_steps, log_interval=10_000)
speedrun_shape = dataclasses.replace(shape, **track.speedruns.get(RECIPE_PROFILE, track.speedruns["cpu"]))
if RECIPE_PROFILE in track.speedruns:  # the record is the package's speedrun recipe, nothing else
    assert (speedrun_shape, dataclasses.replace(recipe, optimizer="muon")) == track.speedrun(RECIPE_PROFILE)
speedrun_config, muon = speedrun_shape.config(data.tokenizer.vocab_size), (("optimizer", "muon"),)
arms = [Arm("default", "the cpu recipe: AdamW, 1 block", config, None),
        Arm("speedrun", "the speedrun recipe: Muon, 2 blocks", speedrun_config, "default", muon)]
for change in [c for c in SPEEDRUN_CHANGES if c.name in ("+QK-norm", "+WSD")]:
    arms.append(Arm(change.name, change.what, dataclasses.replace(speedrun_config, **change.model), "speedrun",
                    muon + tuple(change.train.items())))
print(f"bfloat16 fast on this {DEVICE.type} ({torch.backends.cpu.get_cpu_capability() if DEVICE.type == 'cpu' else DEVICE}):"
      f" {bf16_is_fast(DEVICE)}, so Newton–Schulz runs in {newton_schulz_dtype(DEVICE)}")
started = time.perf_counter()
runs = train_arms(arms, SEEDS, arm_recipe, data.train, data.val, device=DEVICE, tokenizer=data.tokenizer,
                  report=None, progress=lambda plan: tqdm(plan, desc="runs"))
print(f"{len(arms)} arms x {len(SEEDS)} seeds in {time.perf_counter() - started:.0f} s")

# %%
print(f"| arm | what it is | steps | seconds to {TARGET} | val loss at {BUDGET} |\n|---|---|---|---|---|")
for arm in arms:
    steps = [run.steps for run in runs[arm.name]]
    print(f"| {arm.name} | {arm.change} | {min(steps):,}-{max(steps):,} | "
          f"{format_times(times_to_target(runs[arm.name], TARGET))} | "
          f"{spread([run.val_loss for run in runs[arm.name]]).format(3)} |")
print(f"\n{TRAINING_TIME}.\n")
for arm in arms[1:]:
    print("-", compare(arm.name, [r.val_loss for r in runs[arm.name]],
                       arm.baseline, [r.val_loss for r in runs[arm.baseline]], metric=f"val loss at {BUDGET}"))

# %% [markdown]
# The validation curves of every arm (each seed a line): when each reaches the target, and where it ends.

# %%
fig, ax = plt.subplots(figsize=(11, 5.5))
for i, arm in enumerate(arms):
    for seed_index, run in enumerate(runs[arm.name]):
        seconds, losses = zip(*validation_curve(run.records))
        ax.plot(seconds, losses, color=f"C{i}", alpha=0.85, label=arm.name if seed_index == 0 else None)
ax.axhline(TARGET, color="black", ls=":", lw=1, label=f"target {TARGET}")
ax.set_xlabel("seconds of training (evaluations not counted)")
ax.set_ylabel("validation loss (nats per character)")
ax.set_title(f"default, speedrun and changes on top ({SCALE} profile, {len(SEEDS)} seeds)")
final_losses = [run.val_loss for arm_runs in runs.values() for run in arm_runs]
ax.set_ylim(min(final_losses) - 0.05, max(TARGET, max(final_losses)) + 0.5)
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## What the table says, and why
#
# Read the steps column first: a time budget is only fair when the machine is the same for every run. If one
# seed of an arm made far fewer steps than its others, the machine was busy during that run (other programs
# took the cores), its loss measures the machine, not the recipe, and the table must be run again on a quiet
# machine before any verdict means anything. Then read the verdicts, not the means alone: a gap within the
# seeds' spread is *not shown*, which is not the same as shown not to exist.
#
# - **Muon and depth pay together, and only with a long enough budget.** In 70 s of training the default
#   recipe makes the most steps (the steps column); the speedrun recipe pays for every step with
#   Newton–Schulz's matrix products and a second block, and wins only if each step learns enough more to
#   cover that. The README's probes (one seed each: hints, not results) found that with AdamW a second
#   block buys little per step, and with Muon it buys more; this table is the measurement at 70 s.
# - **What it needs from the hardware.** Newton–Schulz is cheap in bfloat16 where the CPU has native bf16
#   (AVX-512 with bf16) or on a GPU; where it does not, the package runs it in float32, which on this
#   model costs a few milliseconds per step: the first line of the table cell says which kind this was.
# - **Changes built for depth and for long runs.** QK-norm keeps attention well-behaved in a *deep* model
#   at high learning rates, and zero-initialised projections protect a deep residual stream; with two
#   blocks there is little depth to protect. WSD's advantage is a long plateau that explores before the
#   cooldown, and the freedom to stop at any time; in a budget of seconds the cosine already spends its
#   time well.
# - **Parameters that need tokens.** An untied head adds a matrix to learn from the same few million
#   characters; at 65 characters of vocabulary it is also tiny, so there is little to gain either way.
#
# ReLU², zero-init, the untied head and the soft cap are left for you (Going further, below): four more arms
# at three seeds would double this notebook's run.

# %% [markdown]
# ## What you learned
#
# - The measure of a recipe is **loss per second**: the seconds of training to a target loss, and the loss
#   at the end of a budget. A faster step is worth only what it adds in steps.
# - **Muon** orthogonalises each hidden matrix's momentum with a few **Newton–Schulz** steps, matrix
#   products only; every direction of the gradient then moves by the same amount. Embeddings, the head,
#   norms and biases stay with AdamW.
# - The speedrun's method: one change at a time **on top of the record**, at equal budget, over at least
#   three seeds, called only when the seeds' ranges do not overlap. What survives depends on the model, the
#   budget and the hardware: changes that pay at 124M parameters on GPUs may cost more than they give to a
#   two-block model on two cores.
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
# **3. Experiment: the size of an orthogonalised update.** Neither Adam's update nor Muon's follows the
# gradient's scale (Adam divides each entry by its own running size, `m/√v`); Muon's also has a fixed size
# per matrix, whatever the gradient's history. Take a random 64 × 256 gradient, scale it by 1,000, orthogonalise it with
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
          "the update's size does not follow the gradient's: the learning rate alone sets the step")


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
# **Going further: your own arm.** Add one change the table did not try (ReLU², zero-init, the untied head
# or the soft cap from `SPEEDRUN_CHANGES`; Muon's rate, `muon_learning_rate=0.01` or `0.04`) as an `Arm` on top
# of `speedrun`, train it with `train_arms` at the same three seeds, and print its `compare` verdict against
# the speedrun arm. (No check: the verdict rule is the check.)

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
