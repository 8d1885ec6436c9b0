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
# Notebook 6b made a training *step* fast; this one makes *learning* fast. The
# [modded-nanogpt speedrun](https://github.com/KellerJordan/modded-nanogpt) took GPT-2 small to a FineWeb validation
# loss of 3.28 on eight H100s in 45 minutes with llm.c's recipe, then, by January 2025, in under 3 with a new
# optimizer (Muon), model and schedule changes, and faster kernels. You build Muon, then race notebook 3b's Shakespeare model for a
# fixed budget of seconds, one change at a time.
#
# **What you will learn**
# - why the measure is **loss per second**;
# - **Muon** and its **Newton–Schulz** iteration, by hand;
# - the modded-nanogpt model changes and what each is for;
# - a **record table** of single changes, its budget of seconds priced in steps.
#
# **How long it takes**: a lesson of about 83 minutes (reading, code and the `cpu` run's 4 s with `REPLAY = True`, 20
# min live, by the course's formula), then a second sitting of about 30 minutes for the 2 exercises (10 minutes per
# function, 20 per experiment).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; the record table with 8 arms × 3 seeds of a tiny model, priced at what 20 steps of the slowest arm cost, scored on 8,192 held-out test characters | the last cell prints it |
# | `cpu` (2-core laptop) | the record table: 10 arms × 3 seeds × 20 s of training on Shakespeare (two arms 5 seeds), priced at each arm's timed step cost, scored on a held-out test split | the last cell prints it |
#
# On a GPU: shorter budgets unless `FULL_RECIPE = True` ([Running on a GPU](README.md#running-on-a-gpu)).
#
# **Papers and posts**: Muon ([Jordan et al., 2024](https://kellerjordan.github.io/posts/muon/);
# [Liu et al., 2025](https://arxiv.org/abs/2502.16982)), Newton–Schulz ([Higham, 2008, ch. 8](https://doi.org/10.1137/1.9780898717778)),
# [modded-nanogpt](https://github.com/KellerJordan/modded-nanogpt), ReLU² ([So et al., 2021](https://arxiv.org/abs/2109.08668)),
# QK-norm ([Dehghani et al., 2023](https://arxiv.org/abs/2302.05442); [Wortsman et al., 2023](https://arxiv.org/abs/2309.14322)),
# soft-capping ([Gemma 2, 2024](https://arxiv.org/abs/2408.00118)), warmup-stable-decay ([Hu et al., 2024](https://arxiv.org/abs/2404.06395)).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import dataclasses
import time

NOTEBOOK_STARTED = time.perf_counter()

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

import tinylm
from tinylm.bench.speedrun import RACE_DEFAULTS, seconds_to_target
from tinylm.course.ablation import Arm, hold_out_test, runs_from_json, runs_to_json, train_arms
from tinylm.course.exercises import check
from tinylm.course.recorded import recorded
from tinylm.course.speedrun import (
    MODEL_CHANGES,
    costs_from_json,
    costs_to_json,
    equal_steps_verdicts,
    machine_line,
    measure_step_costs,
    priced_curve,
    race_table,
    race_verdicts,
    within_budget,
)
from tinylm.data.tokens import RandomWindowSampler
from tinylm.eval.uncertainty import null_pass_rate
from tinylm.train.muon import NS_COEFFICIENTS, Muon, muon_scale, newton_schulz
from tinylm.train.optim import muon_parameters
from tinylm.train.progress import TRAINING_TIME
from tinylm.train.recipes import SHAKESPEARE_CHAR

PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
SEED = 42
plt.rcParams.update({"font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "legend.fontsize": 11})
print(f"profile {PROFILE}, device {DEVICE}")
# On a GPU, False runs the cpu recipe's table with shorter budgets; True runs the gpu recipe's model for minutes per
# attempt (see README's "Running on a GPU"). It changes nothing on the cpu and smoke profiles.
FULL_RECIPE = False
# True: the record table's cell loads what the committed cpu run printed and measured instead of training for
# 20 minutes (notebooks/TEACHING.md, "Long runs"); False runs it live.
REPLAY = False
SCALE = "gpu-bounded" if PROFILE == "gpu" and not FULL_RECIPE else PROFILE  # what this notebook trains
RECIPE_PROFILE = "cpu" if SCALE == "gpu-bounded" else PROFILE  # whose data, model shape and recipe
if SCALE != PROFILE:
    print(f"FULL_RECIPE is False: training the {RECIPE_PROFILE} profile's shape and recipe on {DEVICE}, "
          "with shorter budgets")

# %% [markdown]
# ## Loss per second
#
# Tokens per second says how fast the engine turns, not how far each step goes. The speedrun counts **seconds to
# a target loss**, interpolated between evaluations, and the loss when the budget runs out. The target is near
# where nanoGPT's CPU recipe ends (its README: "gets us a loss of only 1.88").

# %%
# NBVAL_CHECK_OUTPUT
curve = [(2.0, 2.4), (4.0, 2.0), (6.0, 1.8)]
print(f"a curve at 2.0 after 4 s and 1.8 after 6 s reaches 1.886 at {seconds_to_target(curve, 1.886):.2f} s")
print(f"shakespeare-char's target in the bench: {RACE_DEFAULTS['shakespeare-char']['target']}")
print(f"{TRAINING_TIME}")

# %% [markdown]
# ## Muon, from scratch
#
# Take a hidden layer's weight matrix `W` (out × in) and its gradient `G`. Adam scales each entry of the update by
# its own running size; Muon treats the matrix as a matrix, through its **singular value decomposition** (SVD)
# `U = A·S·Bᵀ`: `A` and `B` have orthonormal columns (directions), `S` is diagonal, holding the **singular values**
# σ ≥ 0 (how far `U` stretches along each). `A·Bᵀ` keeps the directions with every σ set to 1. The Frobenius norm
# `‖U‖_F` (the root of the sum of squared entries) is `√(Σσ²)`, at least the largest σ; and `U·Uᵀ·U = A·S³·Bᵀ`, so
# such products act on each σ alone.
#
# 1. **momentum**: `M ← μ·M + (1 − μ)·G`; with Nesterov, the direction `U = (1 − μ)·G + μ·M`;
# 2. **orthogonalise**: replace `U = A·S·Bᵀ` (its SVD) by `A·Bᵀ`, every singular value set to 1;
# 3. **step**: `W ← W·(1 − lr·λ) − lr·√max(1, out/in)·A·Bᵀ`.
#
# Why step 2? A hidden layer's gradient is nearly low-rank: SGD moves the weights mostly along a few directions,
# while the orthogonalised update moves all but the weakest about equally. Here is one batch's gradient of the
# first MLP matrix at initialisation, orthogonalised in bfloat16. Its last singular value is zero but for rounding
# (the matrix reads LayerNorm's output, which then averages zero over features, so each row of `G` sums to zero);
# the orange line's last point is bfloat16's rounding of that empty direction:

# %%
track = SHAKESPEARE_CHAR
data = track.prepare(RECIPE_PROFILE)
if SCALE == "smoke":  # CI checks the code: the first 8,192 validation characters
    data = dataclasses.replace(data, val=data.val[:8192])
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
orthogonalised = torch.linalg.svdvals(newton_schulz(gradient).float())
print(f"after Newton–Schulz: {int((orthogonalised >= 0.5).sum())} of {len(orthogonalised)} singular values are "
      "0.5 or more; the rest are the gradient's weakest directions (the tail of the orange line)")

fig, ax = plt.subplots(figsize=(9, 4.5))
ax.semilogy(singular_values.numpy(), "o-", ms=3, label="the gradient")
ax.semilogy(orthogonalised.numpy(), "o-", ms=3, label="after Newton–Schulz (5 steps)")
ax.set_xlabel("singular value, largest first")
ax.set_ylabel("size (log scale)")
ax.set_title("Muon's update moves most directions about equally")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ### Newton–Schulz: orthogonalising with matrix products
#
# An SVD per step is slow on a GPU; an iteration of matrix products also converges to `A·Bᵀ`. Scale
# `X₀ = U / ‖U‖_F` so every singular value lies in (0, 1], then repeat `X ← a·X + b·(X·Xᵀ)·X + c·(X·Xᵀ)²·X`: each
# step applies `p(σ) = a·σ + b·σ³ + c·σ⁵` to every singular value. The classical `(1.5, −0.5, 0)` converges to
# exactly 1, slowly for small σ (slope 1.5 at 0). Keller Jordan's quintic `(3.4445, −4.7750, 2.0315)` has slope
# 3.4 at 0: in five steps every singular value above a small threshold reaches a band around 1, which
# modded-nanogpt reports does not hurt training.

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
print(f"quintic {NS_COEFFICIENTS}, 5 steps: equal to tinylm.train.muon.newton_schulz (float32); the demo matrix's "
      f"singular values span a factor of {s.max() / s.min():.0f}, and after five steps lie in "
      f"[{band.min():.2f}, {band.max():.2f}]")
a, b, c = NS_COEFFICIENTS
sigma0 = torch.logspace(-6, 0, 100_001, dtype=torch.float64)  # a singular value of X₀ = U / ‖U‖_F
after = sigma0.clone()
for _ in range(5):
    after = a * after + b * after**3 + c * after**5
# 0.68: the band's lower edge, p's local minimum p(1.0501) = 0.6818 (p'(σ) = 0 there) rounded down; its upper edge is
# the local maximum p(0.5545) = 1.2024
threshold = sigma0[(after < 0.68).nonzero().max() + 1].item()
print(f"five steps take every singular value of X₀ at or above {threshold:.4f} (1/{1 / threshold:.0f} of ‖U‖_F) "
      f"into [{after[sigma0 >= threshold].min():.2f}, {after[sigma0 >= threshold].max():.2f}]; smaller ones end lower")
print(f"the gradient above: {int((singular_values < threshold * gradient.norm()).sum())} of its "
      f"{len(singular_values)} singular values lie below that threshold")

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
# An orthogonal (out × in) matrix's entries have RMS 1/√max(out, in); the scale `√max(1, out/in)` lifts a tall
# matrix's to 1/√in, its fan-in, like a wide one's; Newton–Schulz leaves them a little smaller. Ten steps on
# three shapes must match `tinylm`'s and PyTorch's Muon exactly:

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
    rms = update.pow(2).mean().sqrt().item()
    print(f"{s}: RMS entry {rms:.3f}, 1/√fan-in = {s[1] ** -0.5:.3f}, ratio {rms * s[1] ** 0.5:.2f}")

# %% [markdown]
# **Which parameters.** Muon trains the matrices inside the blocks. Embeddings and the tied head (tables indexed
# by token), norms and biases stay with AdamW, as the Muon post recommends. Muon gets its own peak rate: its
# update's entries are about lr/√fan-in, Adam's `m/√v` of order 1.

# %%
chosen = muon_parameters(model)
print("Muon:  ", ", ".join(chosen))
print("AdamW: ", ", ".join(name for name, _ in model.named_parameters() if name not in chosen))
print(f"peak rates: Muon {recipe.muon_learning_rate}, AdamW {recipe.learning_rate}")

# %% [markdown]
# ## The other changes
#
# QK-norm and the soft cap are meant for stability. Wortsman et al. (2023) provoke large models' instabilities in
# small ones by raising the learning rate, so the model changes race at raised rates.
#
# | change | field | meant to buy |
# |---|---|---|
# | batch 32 | `batch_size=32` | Newton–Schulz's fixed cost per step shared by more tokens ([dated note](../docs/notes/2026-11-26-laptop-speedrun.md)) |
# | ReLU² | `mlp="relu2"` | `relu(x)²`: as cheap as ReLU, slope continuous at 0 (Primer's search) |
# | QK-norm | `qk_norm=True` | queries and keys RMS-normalised per head: scores cannot blow up |
# | zero-init | `zero_init_projections=True` | residual-stream projections start at 0, so each block starts as the identity |
# | untied head | `tie_weights=False` | more freedom, few parameters |
# | logit soft-cap | `logit_softcap=15` | `15·tanh(logits/15)`: no logit can run away |
# | warmup-stable-decay | `schedule="wsd"` | peak rate held, then decayed: cooldowns can branch off it (not raced) |

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
inputs = torch.linspace(-3, 3, 200)
axes[0].plot(inputs, torch.nn.functional.gelu(inputs, approximate="tanh"), label="GELU (GPT-2)")
axes[0].plot(inputs, torch.relu(inputs) ** 2, label="ReLU²")
axes[0].set_ylim(-0.5, 4)
axes[0].set_title("MLP activation")
logits = torch.linspace(-60, 60, 200)
axes[1].plot(logits, logits, "k:", label="raw")
axes[1].plot(logits, 15 * torch.tanh(logits / 15), label="15·tanh(x/15)")
axes[1].set_title("logit soft-cap")
for ax in axes:
    ax.legend(fontsize=10)
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The record table
#
# Each arm changes one thing in its baseline (the cell prints them). The chain runs from notebook 3b's `cpu`
# recipe (one block, 128 wide, AdamW, batch 12) to batch 32, then Muon: the package's speedrun recipe. `deep`,
# that recipe on 4 blocks at ten times both peak rates, is the model changes' baseline. Three seeds per arm; five
# for +Muon and batch 32.
#
# **A test split.** The recipe was chosen on the validation split, so the table scores the training split's last
# characters, held out before any run (`hold_out_test`, as in notebooks 8a and 8b).
#
# **Pricing the budget.** Stopped by its clock, a run loses steps, and loss, to a slow spell. So
# `measure_step_costs` times all arms in rotating rounds of steps, and each arm's seeds train the steps that its
# median round's price buys. Zero-init changes only the initial weights, so it takes `deep`'s price.
# Verdicts are also read at **equal steps**, where no price enters.
#
# **The verdict rule**: **told apart** only with at least three seeds each and non-overlapping ranges.
#
# **Predict.** Muon adds five Newton–Schulz iterations per matrix per step, whatever the batch. Which changes buy
# loss within the budget? Which model changes should help at ten times the rates?

# %%
# Seconds per arm and seed (smoke: 20 steps of the slowest arm, so every arm gets past its warmup), seconds of
# training between two evaluations of the test split, how each step cost is timed.
ARM_SECONDS = {"smoke": None, "cpu": 20, "gpu-bounded": 10, "gpu": 60}[SCALE]
EVAL_SECONDS = {"smoke": None, "cpu": 2.5, "gpu-bounded": 1, "gpu": 5}[SCALE]
TIMING = {"rounds": 3, "steps": 2, "warmup": 1} if SCALE == "smoke" else {"rounds": 9, "steps": 20, "warmup": 5}
SEEDS, HEADLINE_SEEDS = [0, 1, 2], [3, 4]  # the headline comparison (+Muon against its baseline) gets two more
TARGET = RACE_DEFAULTS["shakespeare-char"]["target"] if SCALE != "smoke" else 3.0
train_tokens, test_tokens = hold_out_test(data.train, len(data.val))  # the training split's last characters
print(f"characters: {len(train_tokens):,} to train on, {len(test_tokens):,} test (held out), {len(data.val):,} "
      "validation (not used here)")
arm_recipe = dataclasses.replace(recipe, log_interval=10_000)
# The speedrun recipe, one change at a time: the batch first (where the recipe changes it), then Muon. A GPU
# profile has no measured speedrun recipe: Muon alone there.
speedrun_changes = (track.speedrun_changes(RECIPE_PROFILE) if RECIPE_PROFILE in track.speedruns
                    else {"optimizer": "muon"})
arms = [Arm("default", f"the {RECIPE_PROFILE} recipe: AdamW, batch {recipe.batch_size}", config, None)]
options = {}
if "batch_size" in speedrun_changes:
    options["batch_size"] = speedrun_changes["batch_size"]
    arms.append(Arm(f"batch {options['batch_size']}", f"{recipe.batch_size} -> {options['batch_size']} sequences "
                    "per step", config, "default", tuple(options.items())))
options["optimizer"] = "muon"
arms.append(Arm("+Muon", "AdamW -> Muon for the blocks' matrices: the speedrun recipe", config, arms[-1].name,
                tuple(options.items())))
if "batch_size" in options:  # Muon without the batch change: does the bigger batch matter under Muon?
    arms.append(Arm(f"Muon, batch {recipe.batch_size}", "AdamW -> Muon, the default's batch", config, "default",
                    (("optimizer", "muon"),)))
assert options == speedrun_changes  # the chain ends at the speedrun recipe
if RECIPE_PROFILE in track.speedruns:
    assert track.speedrun(RECIPE_PROFILE) == (shape, dataclasses.replace(recipe, **options))
# The model changes where they are meant to pay: the speedrun recipe on a deeper model at raised rates
DEPTH, RATE_SCALE = 4, 10
deep, raised = dataclasses.replace(config, n_layer=DEPTH), (*options.items(), *{
    "learning_rate": RATE_SCALE * recipe.learning_rate, "muon_learning_rate": RATE_SCALE * recipe.muon_learning_rate}.items())
arms.append(Arm("deep", f"+Muon on {DEPTH} blocks, both rates x{RATE_SCALE}", deep, None, raised))
arms += [Arm(change.name, change.what, dataclasses.replace(deep, **change.model), "deep", raised)
         for change in MODEL_CHANGES]
for arm in arms:
    print(f"{arm.name:<13} against {arm.baseline or '-':<8} {arm.change}")


def race():
    """Time every arm's step, train every arm for the budget at that price, and return (costs, runs, budget)."""
    print(machine_line(DEVICE), "(before training)")
    started = time.perf_counter()
    same_cost_as = {change.name: "deep" for change in MODEL_CHANGES if change.same_step_cost}  # no compute changed
    costs = measure_step_costs(arms, arm_recipe, train_tokens, test_tokens, device=DEVICE, tokenizer=data.tokenizer,
                               same_cost_as=same_cost_as, **TIMING)
    budget_seconds = ARM_SECONDS or 20 * max(cost.seconds for cost in costs.values())
    eval_seconds = EVAL_SECONDS or budget_seconds / 4
    print(f"step costs timed in {time.perf_counter() - started:.0f} s ({TIMING['rounds']} rounds of "
          f"{TIMING['steps']} steps per arm); the budget of {budget_seconds:.3g} s buys: " + ", ".join(
              f"{arm.name} {costs[arm.name].steps_within(budget_seconds):,} steps" for arm in arms))
    started = time.perf_counter()
    # The Trainer scores the split it is given as its validation split: here the test split, at every evaluation
    budgeted = within_budget(arms, costs, budget_seconds, eval_seconds)
    runs = train_arms(budgeted, SEEDS, arm_recipe, train_tokens, test_tokens, device=DEVICE,
                      tokenizer=data.tokenizer, report=None, progress=lambda plan: tqdm(plan, desc="runs"))
    muon_baseline = next(arm.baseline for arm in arms if arm.name == "+Muon")
    headline = [arm for arm in budgeted if arm.name in ("+Muon", muon_baseline)]
    more = train_arms(headline, HEADLINE_SEEDS, arm_recipe, train_tokens, test_tokens, device=DEVICE,
                      tokenizer=data.tokenizer, report=None, progress=lambda plan: tqdm(plan, desc="headline seeds"))
    for name, extra in more.items():
        runs[name] += extra
    print(f"{len(arms)} arms x {len(SEEDS)} seeds, then {len(headline)} x {len(HEADLINE_SEEDS)} more, in "
          f"{time.perf_counter() - started:.0f} s")
    print(machine_line(DEVICE), "(after training)")
    return costs, runs, budget_seconds


costs, runs, budget_seconds = recorded(
    "12_speedrun_on_a_laptop", "race", race, replay=REPLAY, profile=SCALE,
    encode=lambda result: [costs_to_json(result[0]), runs_to_json(result[1]), result[2]],
    decode=lambda data: (costs_from_json(data[0]), runs_from_json(data[1]), data[2]))
BUDGET = f"{budget_seconds:.3g} s"

# %%
print(race_table(arms, runs, costs, TARGET, BUDGET, split="test"), "\n")
verdicts = race_verdicts(arms, runs, costs, TARGET, BUDGET, split="test")
print("At equal seconds (the price above):")
for sentence in verdicts:
    print("-", sentence)
print("At equal steps (no price: each pair read at the fewest steps either arm trained):")
for sentence in equal_steps_verdicts(arms, runs, split="test"):
    print("-", sentence)
judged = [sentence for sentence in verdicts if "no verdict" not in sentence]
chance = null_pass_rate(len(SEEDS), len(SEEDS))
print(f"\nwith no real difference, {len(SEEDS)} seeds against {len(SEEDS)} are told apart {chance:.0%} of the time; "
      f"over the {len(judged)} equal-seconds comparisons with a verdict, at least one false 'told apart' "
      f"{1 - (1 - chance) ** len(judged):.0%} of the time were they independent, at most "
      f"{min(1.0, len(judged) * chance):.0%} whatever their dependence")

# %% [markdown]
# Each arm's test loss minus its baseline's mean, per seed: below zero, the change is ahead.

# %%
fig, axes = plt.subplots(1, 2, figsize=(15, 5))
split = [arm.name for arm in arms].index("deep")
for ax, group in zip(axes, (arms[1:split], arms[split + 1:])):
    for i, arm in enumerate(group):
        baseline = [priced_curve(run.records, costs[arm.baseline].seconds) for run in runs[arm.baseline]]
        for seed_index, run in enumerate(runs[arm.name]):
            seconds, losses = map(np.array, zip(*priced_curve(run.records, costs[arm.name].seconds)))
            mean = np.mean([np.interp(seconds, *zip(*curve)) for curve in baseline], axis=0)  # baseline's seeds
            ax.plot(seconds, losses - mean, color=f"C{i}", label=f"{arm.name} − {arm.baseline}" if not seed_index else None)
    ax.axhline(0, color="black", lw=1)
    ax.set_xlabel("seconds of training at the arm's measured step cost")
    ax.grid(alpha=0.3)
    ax.legend()
axes[0].set_ylabel("test loss minus its baseline's (mean of seeds)")
axes[0].set_title("the speedrun recipe, one change at a time")
axes[1].set_title(f"model changes on {DEPTH} blocks at rates x{RATE_SCALE}")
plt.show()

# %% [markdown]
# ## What the table says, and why
#
# Every arm trained slower than priced (the two ms columns), by shares that differ from arm to arm; the cause was
# not measured, and the losses are unaffected, as the steps were fixed.
#
# | comparison | at 20 s | at equal steps |
# |---|---|---|
# | batch 32 vs default (AdamW) | not told apart | batch 32 lower |
# | +Muon vs batch 32 (5 seeds each) | not told apart | +Muon lower |
# | Muon at batch 12 vs default | Muon lower | Muon lower |
# | +QK-norm, +untied head vs deep | each lower | each lower |
# | +ReLU² vs deep | ReLU² higher | ReLU² higher |
# | +soft-cap, +zero-init vs deep | not told apart | not told apart |
#
# - **The speedrun recipe ends below the default.** +Muon's 1.704 ± 0.003 (5 seeds; ± is half the range) and the
#   default's 1.724 ± 0.001 (3 seeds) put every seed of one below every seed of the other, a pair no verdict line
#   prints. Neither of the recipe's two changes is told apart at 20 s; Muon at the default's batch is, on test loss
#   only, in one 3-against-3 verdict: a lead. No verdict line says whether batch 32 still pays under Muon. Every
#   change of the chain wins at equal steps, as each spends more per step.
# - **At ten times the rates** no deep seed reached the target: `deep` ends at 2.365, far above the 1-block recipe's
#   1.704 and not far below notebook 1's bigram, a weak baseline for the model changes. QK-norm's lead (0.381) is
#   the largest, consistent with Wortsman et al.'s account of attention scores growing at high rates (not measured
#   here: no arm ran 4 blocks at the recipe's own rates, so the table cannot say the rates are what weaken `deep`
#   or make QK-norm pay); the untied head's (0.166) has the widest range.
#
# The deep runs are short, much of them warmup: they rank changes at these rates and this length only.
# Over 11 verdicts a false "told apart" is likely somewhere: read one alone as a lead (the last line's 69% prices
# each at the 3-against-3 rate; the 5-seed pairs mislead less often).

# %% [markdown]
# ## What you learned
#
# - A recipe is measured by **loss per second**: seconds to a target, and the loss at the budget's end.
# - **Muon** orthogonalises each hidden matrix's Nesterov momentum with a few **Newton–Schulz** steps; the other
#   parameters stay with AdamW.
# - A record is built **one change at a time**, over seeds, on a test split, the budget **priced** in steps so
#   that a slow spell cannot move a loss, and read again at equal steps.
#
# ## Exercises
#
# **1. Seconds to a target.** Given a curve of (seconds, loss) pairs, return the seconds at which the loss
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
# **2. Experiment: the size of an orthogonalised gradient.** Take the real gradient of the Muon section
# (`gradient`, cell "Muon, from scratch"), scale it by 1,000, orthogonalise it with
# `newton_schulz(..., dtype=torch.float32)`, and measure the largest and the smallest singular value of the
# result. Predict first: how does each compare with the same measurement at scale 1 and at scale 0.001, and is
# the smallest near 1? Set `my_singular_values` to (largest, smallest) as you measured them; the check
# measures both at scales 1 and 0.001.

# %%
my_singular_values = None  # replace with (largest, smallest) as you measured them


def test_my_singular_values():
    if my_singular_values is None:
        raise NotImplementedError("set my_singular_values to the (largest, smallest) singular values you measured")
    for scale in (1.0, 1e-3):
        values = torch.linalg.svdvals(newton_schulz(gradient * scale, dtype=torch.float32).double())
        assert abs(my_singular_values[0] - values[0].item()) < 0.01, f"the largest at scale {scale}"
        assert abs(my_singular_values[1] - values[-1].item()) < 0.01, f"the smallest at scale {scale}"
    print(f"yours: largest {my_singular_values[0]:.3f}, smallest {my_singular_values[1]:.3f}, the same at every "
          "scale: the update's size does not follow the gradient's, and the weakest directions stay short of 1")


check(test_my_singular_values)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# values = torch.linalg.svdvals(newton_schulz(gradient * 1000, dtype=torch.float32).double())
# my_singular_values = (values[0].item(), values[-1].item())
# ```
#
# Newton–Schulz divides by the Frobenius norm first, so the scale cancels. The largest lies in the band; the
# smallest belongs to a direction below the threshold of the Newton–Schulz cell and stays well short of 1.
# </details>
#
# **Going further: your own arm, and WSD's real use.** Add a change the table did not try (two model changes
# together; Muon's rate, `muon_learning_rate=0.01` or `0.04`) as an `Arm` on top of `+Muon`,
# time its step with `measure_step_costs` (together with `+Muon`, in the same rounds), train it with
# `train_arms(within_budget(...))` at the same three seeds, and print `race_verdicts` against `+Muon`. Then
# WSD: its plateau does not depend on where the run will end, so WSD runs of `+Muon` at three seeds, one of the
# budget's steps and one of half as many, share every step up to the shorter one's cooldown: two cooldowns
# branched off one plateau. Race each against a cosine run of its own length. (No check: the verdict rule is
# the check.)

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
