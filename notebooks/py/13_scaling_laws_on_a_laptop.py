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
# # 13 · Scaling laws on a laptop
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/13_scaling_laws_on_a_laptop.ipynb)
#
# You have a fixed amount of compute. Should it buy a bigger model, or more training tokens for a smaller
# one? [Kaplan et al. (2020)](https://arxiv.org/abs/2001.08361) answered "mostly a bigger model": the
# loss-optimal size grew as `N_opt ∝ C^0.73`. [Hoffmann et al. (2022)](https://arxiv.org/abs/2203.15556)
# fitted the learning-rate schedule to each run's length, measured again, and found both should grow
# about equally, `N_opt ∝ C^0.5` and `D_opt ∝ C^0.5`, about 20 tokens per parameter; their 70B-parameter
# Chinchilla, trained on 1.4T tokens, beat the 280B Gopher trained with the same compute. Laws like these
# are how a lab decides the size of a run it can afford only once: fit them on small runs, extrapolate,
# and check.
#
# This notebook does all of that on two CPU cores, with Hoffmann et al.'s **approach 2** (IsoFLOP
# profiles): train five model sizes at each of three compute budgets, find the best size per budget,
# fit the power laws, compare the exponents with Chinchilla's by a stated rule, and then **predict the loss
# of two larger budgets before running them**. The models are tiny, the data is 2 MiB and three budgets
# give a slope one degree of freedom: saying what such a sweep can and cannot tell is half of the lesson.
#
# **What you will learn**
# - compute accounting: `C = 6·N·D` by hand, why `N` counts the non-embedding parameters, and what
#   `6N` leaves out (attention, the head) for models this small;
# - why a budget is a number of optimizer steps, never seconds, and how a budget becomes steps;
# - IsoFLOP profiles: several sizes at equal FLOPs, and a parabola in `log N` whose vertex is the
#   loss-optimal size (least squares and the vertex by hand);
# - power laws as lines in log-log space, a slope's t-interval (Student's t, by hand for one degree of
#   freedom) and a residual bootstrap (by hand, then the package's);
# - the comparison with Chinchilla (approach 2) and Kaplan by a stated rule, and the ways a tiny sweep
#   could differ, ordered by what its own tables show;
# - a loss law with a floor beside a plain power law, predictions printed before the runs, and the runs that
#   check them; an experiment of your own against the bootstrap's noise model.
#
# **How long it takes**: about 70 minutes: reading, code and three exercises by the course's formula, with
# the cpu profile's run of about 10 minutes (the last cell prints it).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; 3 tiny budgets × 4 tiny sizes (too small to be sure of a minimum: a fit may run on a bound) and the two prediction runs | ~35 s (measured under pytest on a busy shared machine) |
# | `cpu` (2-core laptop) | 3 budgets × 5 sizes on the 2 MiB TinyStories sample, as characters, and the prediction runs at 2 and 4 times the largest budget | about 10 minutes on an idle 2-core machine: the last cell prints it |
#
# On a GPU (`gpu` profile) the notebook runs the cpu profile's sweep by default (`FULL_RECIPE = False`);
# `FULL_RECIPE = True` runs 4 larger budgets × 6 sizes on the first 300,000 stories of the full TinyStories
# (a download). What that costs is in [Running on a GPU](README.md#running-on-a-gpu).
#
# **Papers**: Kaplan et al., 2020, [Scaling Laws for Neural Language Models](https://arxiv.org/abs/2001.08361);
# Hoffmann et al., 2022, [Training Compute-Optimal Large Language Models](https://arxiv.org/abs/2203.15556)
# ("Chinchilla"); Besiroglu et al., 2024, [Chinchilla Scaling: A replication attempt](https://arxiv.org/abs/2404.10102);
# Muennighoff et al., 2023, [Scaling Data-Constrained Language Models](https://arxiv.org/abs/2305.16264)
# (what repeating data costs).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import dataclasses
import math
import os
import statistics
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import tinylm
import tinylm.data.corpora
from tinylm.course.exercises import check
from tinylm.course.scaling import (
    CHINCHILLA_APPROACH_2,
    KAPLAN_2020,
    LADDER,
    bootstrap,
    fit_parabola,
    fit_power_law,
    isoflop_minima,
    isoflop_minimum,
    loss_opt_law,
    model_sizes,
    non_embedding_parameters,
    predict,
    profiles,
    run_sweep,
    steps_for_budget,
    t_quantile,
    train_size,
)

NOTEBOOK_STARTED = time.perf_counter()
PROFILE = tinylm.resolve_profile()
DEVICE = tinylm.resolve_device()
note = tinylm.configure_backend(DEVICE)  # one thread per free core on a CPU: a busy machine stalls extra threads
SEED = 0
plt.rcParams.update({"font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "legend.fontsize": 11})
print(f"profile {PROFILE}, device {DEVICE}" + (f"; {note}" if note else ""))
# On a GPU, False runs the cpu profile's sweep (minutes); True runs larger budgets and sizes on the first 300,000
# stories of the full TinyStories (about an hour, estimated). It changes nothing on the cpu and smoke profiles.
FULL_RECIPE = False
SCALE = "gpu-bounded" if PROFILE == "gpu" and not FULL_RECIPE else PROFILE  # what this notebook trains
RECIPE_PROFILE = "cpu" if SCALE == "gpu-bounded" else PROFILE  # whose data, sizes and budgets
if SCALE != PROFILE:
    print(f"FULL_RECIPE is False: running the {RECIPE_PROFILE} profile's sweep on {DEVICE}")

# %% [markdown]
# ## The data: TinyStories as characters
#
# The sweep trains on the same 2 MiB TinyStories sample as notebooks 5 and 8, with the same 5% of stories
# held out for validation, but tokenized as **characters**, not GPT-2 tokens. Two reasons, both about
# making `N` and `C` mean what the laws mean:
#
# - **The embedding.** The laws are about the parameters that compute: Kaplan et al. found clean laws only
#   once they left out the embedding tables, which a token merely looks up. With GPT-2's vocabulary
#   trimmed to the sample (notebook 5), the token table alone is several times larger than the whole
#   transformer of a sweep-sized model, and the head (tied to it) costs most of each token's FLOPs. With
#   under a hundred characters, both are small.
# - **The tokens.** A character is about a quarter of a GPT-2 token, so the same text gives about four
#   times as many training tokens. Small models are hungry: at these budgets the smallest sizes read the
#   sample several times over (the plan below prints how often), and with GPT-2 tokens they would read it
#   four times as often.
#
# `prepare_tinystories_chars` uses `prepare_tinystories`'s own split of the sample, and ends every story
# with a blank line.

# %%
sample = tinylm.data.corpora.prepare_tinystories_chars(source="sample")
gpt2_trimmed = tinylm.get_track("tinystories").prepare("cpu")  # the sample's GPT-2 ids (notebooks 5 and 8)
if SCALE == "gpu":  # FULL_RECIPE: the first 300,000 stories of Hugging Face's TinyStories, its validation split whole
    data = tinylm.data.corpora.prepare_tinystories_chars(source="hf", max_train_stories=300_000)
else:
    data = sample

# %%
# NBVAL_CHECK_OUTPUT
stories = sample.meta['train_stories'] + sample.meta['val_stories']
print(f"the sample: {sample.meta['train_stories']:,} training stories, {sample.meta['val_stories']:,} held-out stories "
      f"({sample.meta['val_stories'] / stories:.0%})")
print(f"as characters: {len(sample.train):,} training and {len(sample.val):,} validation tokens, vocabulary "
      f"{sample.tokenizer.vocab_size}")
print(f"as GPT-2 tokens (trimmed): {len(gpt2_trimmed.train):,} training tokens, vocabulary "
      f"{gpt2_trimmed.tokenizer.vocab_size:,} ({len(sample.train) / len(gpt2_trimmed.train):.1f} characters per token)")
print(repr(sample.tokenizer.decode(sample.val[:160])))

# %% [markdown]
# ## Compute: `C = 6·N·D`, by hand
#
# Training a model of `N` parameters on one token costs about `2N` FLOPs in the forward pass (one multiply
# and one add per weight) and `4N` in the backward pass (gradients for the activations and for the weights),
# so `D` tokens cost `C ≈ 6·N·D` (notebook 6a). Here `N` is the **non-embedding** count: every weight of the
# blocks and the final LayerNorm, not the token and position tables. A GPT-2 block of width `d` holds
# `12d² + 13d` of them: `3d²` for the query, key and value projections, `d²` for attention's output,
# `8d²` for the MLP's two matrices, and `13d` for their biases and two LayerNorms' gains and shifts.
#
# The sweep's sizes are one family: **two layers, a head size of 8, and widths from 16 up** (a
# `ModelSize` per width, `tinylm.course.scaling.LADDER`). One depth for every size, so that sizes differ
# in one way only; two layers, because a single layer cannot form the two-step circuits (induction heads)
# that copy from earlier in the context.

# %%
# NBVAL_CHECK_OUTPUT
def non_embedding_by_hand(n_layer: int, width: int) -> int:
    per_block = 12 * width**2 + 13 * width  # 3d² + d² attention, 8d² MLP; biases and two LayerNorms
    return n_layer * per_block + 2 * width  # + the final LayerNorm


# The family over the sample's characters, with the cpu sweep's context of 64 characters; the table does not depend
# on the profile.
family = model_sizes(LADDER, sample.tokenizer.vocab_size, block_size=64)
for size in family:
    assert non_embedding_by_hand(size.config.n_layer, size.config.n_embd) == size.parameters
    assert non_embedding_parameters(size.config) == size.parameters
    with torch.device("meta"):
        model = tinylm.GPT(size.config)
    tables = model.num_parameters() - size.parameters
    print(f"{size.name:>6}: N = {size.parameters:>7,} (+ {tables:>6,} in the tables, {tables / model.num_parameters():4.0%} "
          f"of all); 6N = {6 * size.parameters / 1e6:5.2f} MFLOP per token, the full count "
          f"{model.flops_per_token() / (6 * size.parameters):.2f} x 6N")
narrow = next(size for size in family if size.name == "2x32")
with torch.device("meta"):
    bpe_model = tinylm.GPT(dataclasses.replace(narrow.config, vocab_size=gpt2_trimmed.tokenizer.vocab_size))
tables = bpe_model.num_parameters() - narrow.parameters
print(f"\n{narrow.name} over the trimmed GPT-2 vocabulary instead: {tables:,} parameters in the tables, "
      f"{tables / bpe_model.num_parameters():.0%} of all; the full count {bpe_model.flops_per_token() / (6 * narrow.parameters):.1f} x 6N")

# %% [markdown]
# The last column is `GPT.flops_per_token()` over `6N`. `6N` leaves out two costs that the full count
# keeps: attention's scores and weighted sums (`12·n_layer·d·T` per token for a context of `T`), and the
# head's matrix, which a token multiplies by even though as a table it is not in `N`. For the narrowest
# models they add a large share: a small width makes the blocks' `12d²` small next to attention's `d·T`.
# The laws below are written in `6ND`, as Kaplan's and Hoffmann's are, so read "compute" as "6ND": the
# real FLOPs of the smallest models are higher, and the clock's cost of a FLOP is higher still for them
# (a tiny model's step is mostly overhead).
#
# ### A budget is a number of steps
#
# At budget `C`, a model of `N` parameters trains `D = C / (6N)` tokens: with `B` sequences of `T`
# characters per step, `C / (6N·B·T)` optimizer steps, rounded to a whole step. Every run's cosine
# schedule ends at its own last step (Hoffmann et al.'s correction to Kaplan: a schedule longer than the
# run leaves the run at a high learning rate and makes longer runs look better than they are). A budget
# of steps, not seconds, means a busy machine changes how long the sweep takes, never what it measures.

# %%
block_size = 32 if RECIPE_PROFILE == "smoke" else 64  # characters of context
ladder = model_sizes([(2, 8), *LADDER] if RECIPE_PROFILE == "smoke" else LADDER, data.tokenizer.vocab_size,
                     block_size)  # every size a prediction may ask for (smoke adds a narrower one)
SWEEPS = {  # widths of the sweep's sizes (2 layers each), budgets in FLOPs (6ND), batch of B sequences of T characters
    "smoke": dict(widths=(8, 16, 24, 32), budgets=(1e8, 2e8, 4e8), batch_size=4, warmup_steps=10),
    "cpu": dict(widths=(16, 24, 32, 48, 64), budgets=(1e11, 2e11, 4e11), batch_size=8, warmup_steps=100),
    "gpu": dict(widths=(24, 32, 48, 64, 96, 128), budgets=(8e11, 1.6e12, 3.2e12, 6.4e12), batch_size=8,
                warmup_steps=100),
}
sweep = SWEEPS[RECIPE_PROFILE]
sizes = [size for size in ladder if size.config.n_embd in sweep["widths"]]
budgets = list(sweep["budgets"])
# One peak rate for every size and budget, chosen in short probes of the cpu sweep (1e-2 beat 3e-3 and 2e-2 at
# 1e11 FLOPs); a tenth of it at the end of each cosine. Weight decay and clipping: the Trainer's defaults.
template = tinylm.TrainConfig(batch_size=sweep["batch_size"], learning_rate=1e-2, min_lr=1e-3,
                              warmup_steps=sweep["warmup_steps"])
tokens_per_step = template.batch_size * block_size

by_hand = round(budgets[0] / (6 * sizes[0].parameters * tokens_per_step))
assert by_hand == steps_for_budget(budgets[0], sizes[0].parameters, tokens_per_step)
print(f"{budgets[0]:.2g} FLOPs for {sizes[0].name}: {budgets[0]:.2g} / (6 x {sizes[0].parameters:,} x "
      f"{template.batch_size} x {block_size}) = {by_hand:,} steps\n")
print("steps per run (tokens per parameter, epochs of the training split):")
print("size     N       " + "".join(f"C = {budget:<18.2g}" for budget in budgets))
for size in sizes:
    cells = []
    for budget in budgets:
        steps = steps_for_budget(budget, size.parameters, tokens_per_step)
        tokens = steps * tokens_per_step
        cells.append(f"{steps:>6,} ({tokens / size.parameters:>4.0f}, {tokens / len(data.train):4.1f})")
    print(f"{size.name:<6} {size.parameters:>7,}  " + "  ".join(cells))
print(f"\n{len(sizes) * len(budgets)} runs, {len(sizes) * sum(budgets):.2e} FLOPs (6ND) in all")

# %% [markdown]
# Read the table before running it: at each budget the smallest model gets many steps and passes over
# the data more than once, the largest gets few steps and sees a fraction of it. Somewhere between, a size
# spends the budget best. **Predict**: at the smallest budget, which size wins? Does the winner move to
# larger sizes as the budget grows, and by how much per doubling?
#
# ## The sweep
#
# Every size at every budget, one seed, each run in memory and scored at its end on the whole held-out
# split. The progress bar counts FLOPs; its time estimate assumes the FLOPs still to come run at the rate
# of those done, which the small models' slower FLOPs make rough.

# %%
sweep_start = time.perf_counter()
runs = run_sweep(sizes, budgets, template, data.train, data.val, device=DEVICE, seed=SEED)
sweep_seconds = time.perf_counter() - sweep_start
print(f"sweep: {len(runs)} runs in {sweep_seconds:.0f} s of wall time ({sum(run.seconds for run in runs):.0f} s "
      f"of them training, the rest evaluating and building models)")
print(f"\n{'budget':>8} {'size':>6} {'N':>8} {'steps':>7} {'D/N':>6} {'epochs':>6} {'val loss':>9} {'seconds':>8}")
for run in runs:
    print(f"{run.budget:>8.2g} {run.size:>6} {run.parameters:>8,} {run.steps:>7,} {run.tokens / run.parameters:>6.0f} "
          f"{run.tokens / len(data.train):>6.2f} {run.val_loss:>9.4f} {run.seconds:>8.1f}")

# %% [markdown]
# ## IsoFLOP profiles and their minima
#
# Plot each budget's losses against `log N`: a valley. Too small a model cannot hold what the text
# offers; too large a one is still early in its training when the budget runs out. Near its bottom any
# smooth valley looks like a parabola, so Hoffmann et al. fit `loss = c₂·x² + c₁·x + c₀` with `x = ln N`
# and read the optimum off the vertex, where the slope `2c₂x + c₁` is zero: `x* = −c₁ / (2c₂)`. The fit
# is least squares: the coefficients that minimise the squared distances to the points, which solve the
# linear system of the design matrix `[x², x, 1]`. Here it is by hand for the largest budget, checked
# against the package:

# %%
largest = profiles(runs)[budgets[-1]]
x = np.log([run.parameters for run in largest])
design = np.stack([x**2, x, np.ones_like(x)], axis=1)  # one row per size: (ln N)², ln N, 1
(c2, c1, c0), *_ = np.linalg.lstsq(design, np.array([run.val_loss for run in largest]), rcond=None)
vertex = -c1 / (2 * c2)
print(f"C = {budgets[-1]:.2g}: loss ≈ {c2:.4f}·x² {c1:+.4f}·x {c0:+.4f}; vertex at x = {vertex:.3f}, "
      f"N = e^x = {math.exp(vertex):,.0f}")
assert np.allclose([c2, c1, c0], np.polyfit(x, [run.val_loss for run in largest], 2))  # numpy's least squares agrees
if c2 > 0:  # a valley: the package's vertex must be ours
    package = fit_parabola([run.parameters for run in largest], [run.val_loss for run in largest])
    assert math.isclose(math.exp(vertex), package.n_opt, rel_tol=1e-6)
    assert math.isclose(c0 - c1**2 / (4 * c2), package.loss_opt, rel_tol=1e-9)
else:
    print("this profile curves downwards: its vertex is a maximum, and there is no optimum to read")

# %% [markdown]
# The same fit for every budget (`isoflop_minima`). A vertex counts only when the sizes **bracket** it,
# with trained sizes on both sides. When they do not (the profile has no bottom, or its vertex lies
# beyond the smallest or the largest size) the package refuses to extrapolate a parabola to a size
# nobody trained and keeps the best size trained, as a bound (the smoke profile's tiny budgets can do this).

# %%
minima = isoflop_minima(runs)
for minimum in minima:
    where = "bracketed" if minimum.bracketed else "NOT bracketed: a bound at the best size trained"
    print(f"C = {minimum.budget:.2g}: N_opt = {minimum.n_opt:>8,.0f}, D_opt = {minimum.tokens_opt:>11,.0f} tokens "
          f"({minimum.tokens_opt / minimum.n_opt:>4.0f} per parameter, {minimum.tokens_opt / len(data.train):.2f} "
          f"epochs), L_opt = {minimum.loss_opt:.4f} ({where})")

colours = plt.cm.viridis(np.linspace(0.1, 0.85, len(budgets)))
fig, ax = plt.subplots(figsize=(9, 5.5))
n_grid = np.geomspace(sizes[0].parameters / 1.3, sizes[-1].parameters * 1.3, 200)
for colour, minimum, (budget, profile) in zip(colours, minima, profiles(runs).items()):
    ax.plot([run.parameters for run in profile], [run.val_loss for run in profile], "o", color=colour, ms=8,
            label=f"C = {budget:.2g} FLOPs")
    ax.plot(n_grid, minimum.parabola(n_grid), "-", color=colour, alpha=0.7)
    ax.plot(minimum.n_opt, minimum.loss_opt, "*", color=colour, ms=18, markeredgecolor="black")
ax.set_xscale("log")
ax.set_xlabel("non-embedding parameters N (log scale)")
ax.set_ylabel("validation loss (nats per character)")
ax.set_title("IsoFLOP profiles: each colour one budget, ★ its fitted minimum")
ax.grid(alpha=0.3, which="both")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The laws: `N_opt ∝ C^a` and `D_opt ∝ C^b`
#
# A power law `y = k·x^a` is a straight line in log-log space, `ln y = ln k + a·ln x`, so its exponent is
# the slope of a least-squares line through `(u, v) = (ln C, ln N_opt)`: `a = Σ(u − ū)(v − v̄) / Σ(u − ū)²`.
# How sure is a slope from three points? Two answers:
#
# - the **t-interval**. The slope's standard error is `s / sqrt(Σ(u − ū)²)`, with `s² = Σ residual² / (n − 2)`
#   the points' scatter about the line. It rests on `n − 2` degrees of freedom, one with three budgets, so
#   the interval is `a ± t·SE` with `t` a quantile of Student's t distribution for that many degrees of
#   freedom, not the normal's: the table below shows how wide one degree of freedom makes a 95% interval.
# - a **residual bootstrap** (`tinylm.course.scaling.bootstrap`): add to every fitted parabola residuals
#   drawn again from the runs' own, refit everything, repeat a thousand times, and read the spread of the
#   refitted exponents. It measures one source of error only, the runs' scatter about their parabolas,
#   and trusts the parabolas' and the line's shapes, which three points cannot test.
#
# `b` is not a second measurement: `D_opt = C / (6·N_opt)`, so `ln D_opt = ln C − ln 6 − ln N_opt` and
# `b = 1 − a` exactly, with the same uncertainty.

# %%
# NBVAL_CHECK_OUTPUT
# With one degree of freedom Student's t is the Cauchy distribution, whose quantile has a closed form: tan(π(q − ½)).
assert math.isclose(math.tan(math.pi * (0.975 - 0.5)), t_quantile(0.975, 1), rel_tol=1e-9)
print("half-width of a 95% interval, in standard errors, by degrees of freedom (Student's t, 0.975 quantile):")
print("  ".join(f"{df}: {t_quantile(0.975, df):.3f}" for df in (1, 2, 3, 5, 10, 30))
      + f"; the normal's: {statistics.NormalDist().inv_cdf(0.975):.3f}")

# %%
budget_axis = np.array([minimum.budget for minimum in minima])
log_c, log_n = np.log(budget_axis), np.log([minimum.n_opt for minimum in minima])
centred = log_c - log_c.mean()  # the slope and its standard error by hand, then the package's
a = (centred * (log_n - log_n.mean())).sum() / (centred**2).sum()
df = len(minima) - 2
se = math.sqrt(((log_n - log_n.mean() - a * centred) ** 2).sum() / df / (centred**2).sum())
n_law = fit_power_law(budget_axis, [minimum.n_opt for minimum in minima])
d_law = fit_power_law(budget_axis, [minimum.tokens_opt for minimum in minima])
assert math.isclose(a, n_law.exponent, abs_tol=1e-9) and math.isclose(se, n_law.exponent_se, abs_tol=1e-9)
assert math.isclose(n_law.exponent + d_law.exponent, 1.0, abs_tol=1e-9)  # b = 1 - a, as derived above
t_low, t_high = n_law.exponent_interval(0.95)
assert np.allclose([t_low, t_high], [a - t_quantile(0.975, df) * se, a + t_quantile(0.975, df) * se])

held_out_budgets = [2 * budgets[-1], 4 * budgets[-1]]  # the predictions' budgets, below: the bootstrap refits them too
resampled = bootstrap(runs, held_out_budgets, resamples=1000, seed=SEED)
# The bootstrap by hand, for its first 200 resamples: the same residuals, scale and draws as the package's.
grouped = list(profiles(runs).values())
fitted = [minimum.parabola(np.array([run.parameters for run in p], float)) for minimum, p in zip(minima, grouped)]
pool = np.concatenate([np.array([run.val_loss for run in p]) - curve for p, curve in zip(grouped, fitted)])
pool *= math.sqrt(len(pool) / (len(pool) - 3 * len(minima)))  # each parabola fitted 3 numbers to its own points
generator = np.random.default_rng(SEED)
my_exponents = []
for _ in range(200):
    drawn = [isoflop_minimum(minimum.budget, [run.parameters for run in p], curve + generator.choice(pool, len(curve)))
             for minimum, p, curve in zip(minima, grouped, fitted)]
    my_exponents.append(fit_power_law(budget_axis, [minimum.n_opt for minimum in drawn]).exponent)
assert np.allclose(my_exponents, resampled.exponents[:200], rtol=1e-9, atol=1e-12)
a_low, a_high = np.percentile(resampled.exponents, [2.5, 97.5])
a_10, a_90 = np.percentile(resampled.exponents, [10, 90])

print(f"N_opt ∝ C^a: a = {a:.3f} ± {se:.3f} (standard error); 95% t-interval ({df} degree(s) of freedom, "
      f"t = {t_quantile(0.975, df):.3f}): [{t_low:.3f}, {t_high:.3f}]")
print(f"  bootstrap of a: 95% (2.5th-97.5th percentiles) [{a_low:.3f}, {a_high:.3f}]; 10th-90th [{a_10:.3f}, "
      f"{a_90:.3f}] (the percentiles Hoffmann et al. quote)")
print(f"D_opt ∝ C^b: b = 1 - a = {d_law.exponent:.3f}, its intervals 1 minus a's")
print("verdict rule: a published a is told apart from ours only if it lies outside BOTH 95% intervals")
for name, reference in (("Chinchilla (approach 2)", CHINCHILLA_APPROACH_2), ("Kaplan et al. 2020", KAPLAN_2020)):
    outside = [not low <= reference["a"] <= high for low, high in ((t_low, t_high), (a_low, a_high))]
    print(f"  {name}, a = {reference['a']}: {'outside' if outside[0] else 'inside'} the t-interval, "
          f"{'outside' if outside[1] else 'inside'} the bootstrap's: {'told apart' if all(outside) else 'not told apart'}")

fig, ax = plt.subplots(figsize=(9, 5.5))
c_grid = np.geomspace(budget_axis[0] / 1.5, held_out_budgets[-1] * 1.2, 100)
middle = len(minima) // 2
for law, key, marker, label in ((n_law, "a", "o", "N_opt (parameters)"), (d_law, "b", "s", "D_opt (tokens)")):
    points = [minimum.n_opt if key == "a" else minimum.tokens_opt for minimum in minima]
    line = ax.loglog(budget_axis, points, marker, ms=9, label=f"{label}: ours, slope {law.exponent:.2f}")[0]
    ax.loglog(c_grid, law(c_grid), "-", color=line.get_color())
    chinchilla = points[middle] * (c_grid / budget_axis[middle]) ** CHINCHILLA_APPROACH_2[key]
    ax.loglog(c_grid, chinchilla, ":", color=line.get_color(), label=f"slope {CHINCHILLA_APPROACH_2[key]} "
              "(Chinchilla), through our middle point")
ax.set_xlabel("compute C = 6ND (FLOPs)")
ax.set_ylabel("loss-optimal N and D")
ax.set_title("the compute-optimal frontier, in log-log space")
ax.grid(alpha=0.3, which="both")
ax.legend(fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What three budgets can say
#
# Read the verdict lines first. One degree of freedom makes the t-interval wide, so a sweep this small
# cannot pin the exponent down; where an interval holds a published value, the honest answer is "not told
# apart", not "different". The bootstrap's interval can be narrower, since it leaves out the error of
# the shapes; Hoffmann et al.'s own three approaches gave `a` from 0.46 to 0.50, and
# [Besiroglu et al. (2024)](https://arxiv.org/abs/2404.10102) refitted their approach 3 and found its
# published intervals far too narrow: even at scale these exponents are hard to pin down.
#
# Should a larger sweep of this kind find another exponent, these are the ways it differs from
# Hoffmann et al.'s (budgets from about 6·10¹⁸ to 3·10²¹ FLOPs, sizes from 70M to 16B parameters): first
# what this run's own tables show at work, then what it does not test, and last one it checks against a
# published bound.
#
# - **Short runs** (the sweep's steps column). The largest sizes at the smallest budget take a few hundred
#   steps, early in training, where the loss depends on the step count as much as on the size: the right
#   side of each valley is partly a statement about steps.
# - **What `6N` counts** (the first table). It undercounts the real FLOPs of the narrowest models most,
#   which makes small models look cheaper than they are.
# - **One learning rate**, not tested here. Every size trains at the same peak rate, picked in short probes;
#   wider models usually want a smaller one (the idea behind μP), and a rate tuned per size could move the
#   vertices.
# - **The family's shape**, not tested here. All sizes have two layers, so the large ones are wide and
#   shallow; at this scale depth changes what a model can learn at all (one layer cannot form an induction
#   head), so another family could find other optima.
# - **Tokens per parameter.** A character carries about a quarter of what a GPT-2 token does, so the
#   optimum's tokens per parameter are not comparable with Chinchilla's 20.
# - **Repeated data.** The training split is 2 MiB; the line below prints how often the loss-optimal runs
#   read it, against the about 4 epochs up to which Muennighoff et al. (2023) found repeats worth almost as
#   much as new data. Repeats weigh most on the smallest sizes at the largest budgets, away from the
#   optimum; an optimum several doublings further out would read the split more often.

# %%
epochs = [minimum.tokens_opt / len(data.train) for minimum in minima]
print(f"the loss-optimal runs read the training split {min(epochs):.2f} to {max(epochs):.2f} times "
      f"({'under' if max(epochs) < 4 else 'not under'} the 4 epochs of nearly free repeats); the most any run of the "
      f"sweep read it: {max(run.tokens for run in runs) / len(data.train):.2f} times")

# %% [markdown]
# ## Predictions, then the runs
#
# Now use the fits as a lab would: for budgets past the sweep, predict the optimal size and its loss,
# **print them, and only then train**. The loss-optimal losses `L_opt(C)` cannot follow a plain power law
# for ever, since no amount of compute takes the loss below the entropy of the text; Hoffmann et al.'s law
# has a floor, `L_opt(C) = E + A·C^(−α)` (`fit_loss_law`: the floor `E` on a grid, a line in log-log space
# through the rest). With three budgets and three parameters it can pass through all three minima, and
# nothing is left over to test it: the runs below do that.
#
# A disclosure: this notebook's first version predicted one budget, twice the largest, and took the floor
# after a plain power law had missed that point. A point that chose a law's form cannot test it. So both
# laws predict here, at that budget and at four times the largest, a budget added with these predictions
# (their code was committed before the budget's first run on the cpu profile). The size to train is the
# ladder's size nearest to the predicted `N_opt`; its loss adds what the profiles' mean curvature charges for
# the distance.
# The rule: a law's prediction **passes** when the measured loss lies inside its 95% prediction interval,
# the bootstrap's 2.5th to 97.5th percentiles, which hold one run's noise as well as the fits'.

# %%
losses_opt = [minimum.loss_opt for minimum in minima]
floored, plain = loss_opt_law(budget_axis, losses_opt, floor=True), loss_opt_law(budget_axis, losses_opt, floor=False)
print(f"with a floor: L_opt(C) = {floored.floor:.3f} + {floored.scale:.3g}·C^-{floored.decay:.3f}; "
      f"plain: L_opt(C) = {plain.coefficient:.3g}·C^{plain.exponent:.3f}")
print("predictions, written before the runs:")
predictions = {}
for i, budget in enumerate(held_out_budgets):
    cells = []
    for law, samples in (("floor", resampled.losses), ("plain", resampled.plain_losses)):
        prediction = predict(minima, budget, ladder, floor=law == "floor")
        low, high = np.percentile(samples[:, i], [2.5, 97.5]) + prediction.off_optimum
        predictions[budget, law] = (prediction, low, high)
        cells.append(f"{law} {prediction.loss:.4f} [{low:.4f}, {high:.4f}]")
    size = prediction.size
    print(f"  C = {budget:.2g}: N_opt = {prediction.n_opt:,.0f}, train {size.name} (N = {size.parameters:,}) for "
          f"{steps_for_budget(budget, size.parameters, tokens_per_step):,} steps; " + "; ".join(cells))

# %%
held_out = [train_size(predictions[budget, "floor"][0].size, budget, template, data.train, data.val, device=DEVICE,
                       seed=SEED) for budget in held_out_budgets]
for run in held_out:
    print(f"C = {run.budget:.2g}, {run.size}: measured {run.val_loss:.4f} after {run.steps:,} steps "
          f"({run.seconds:.0f} s of training)")
    for law in ("floor", "plain"):
        prediction, low, high = predictions[run.budget, law]
        verdict = "passes" if low <= run.val_loss <= high else "fails"
        print(f"  {law:>5}: predicted {prediction.loss:.4f}, error {run.val_loss / prediction.loss - 1:+.2%}: {verdict}")

fig, ax = plt.subplots(figsize=(9, 5.5))
ax.plot(budget_axis, losses_opt, "o", ms=9, color="C0", label="L_opt of each profile")
for colour, law, curve, shift in (("C0", "floor", floored, 0.97), ("C2", "plain", plain, 1.03)):
    ax.plot(c_grid, curve(c_grid), "-", color=colour, label=f"{law} law")
    for budget in held_out_budgets:
        prediction, low, high = predictions[budget, law]
        ax.errorbar([budget * shift], [prediction.loss], yerr=[[prediction.loss - low], [high - prediction.loss]],
                    fmt="D", color=colour, ms=8, capsize=6)
ax.axhline(floored.floor, color="gray", ls="--", lw=1, label=f"the floor E = {floored.floor:.3f}")
ax.plot(held_out_budgets, [run.val_loss for run in held_out], "*", color="C3", ms=18, markeredgecolor="black",
        label="measured (◆ the predictions, 95% intervals)")
ax.set_xscale("log")
ax.set_xlabel("compute C = 6ND (FLOPs, log scale)")
ax.set_ylabel("validation loss (nats per character)")
ax.set_title("two loss laws, extrapolated two doublings past the sweep")
ax.grid(alpha=0.3, which="both")
ax.legend(fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the verdicts by the rule (the measured loss inside a law's 95% prediction interval), not by the size of the
# errors. Where both laws pass at a budget, that run cannot rank them; where one fails, it is one run at one seed:
# a reason to doubt that law's extrapolation there, not a measurement of how far off it is. And two doublings are a short extrapolation: labs
# extrapolate by factors of a thousand from sweeps of hundreds of runs, and even they check with
# intermediate runs.
#
# ## Closing note
#
# Everything this run measured, in one place (the wall times depend on the machine and on what else ran on it;
# the 1-minute load average says how busy it was: above the number of cores, other work shared them):

# %%
print(f"profile {PROFILE} ({SCALE}), device {DEVICE}, {torch.get_num_threads()} thread(s)")
print(f"sweep: {len(budgets)} budgets x {len(sizes)} sizes = {len(runs)} runs in {sweep_seconds:.0f} s")
print(f"a = {a:.3f} ± {se:.3f} (standard error), 95% t-interval [{t_low:.3f}, {t_high:.3f}], bootstrap 95% "
      f"[{a_low:.3f}, {a_high:.3f}]; Chinchilla (approach 2) {CHINCHILLA_APPROACH_2['a']}, Kaplan {KAPLAN_2020['a']}")
for run in held_out:
    print(f"C = {run.budget:.2g} ({run.size}): measured {run.val_loss:.4f}; predicted "
          + ", ".join(f"{law} {predictions[run.budget, law][0].loss:.4f}" for law in ("floor", "plain")))
print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

# %% [markdown]
# ## What you learned
#
# - **Compute** is counted as `C = 6·N·D`, with `N` the non-embedding parameters; for tiny models `6N`
#   misses a large share of the real FLOPs (attention, the head), so say which count you use.
# - A **budget is steps**: `D = C / (6N)` tokens, a schedule that ends with the run, and results that do not
#   depend on how busy the machine was.
# - An **IsoFLOP profile** is a valley in `log N`; its parabola's vertex `x* = −c₁ / (2c₂)` is the
#   loss-optimal size, and it counts only when trained sizes bracket it.
# - **Power laws are lines** in log-log space. A slope from `n` points has `n − 2` degrees of freedom, and
#   its interval takes Student's t: with three budgets, one degree of freedom and a wide interval. A
#   bootstrap measures the runs' noise but trusts the shapes. `b = 1 − a` is an identity of `C = 6ND`.
# - A verdict follows a **stated rule**: a sweep of three budgets may not tell its exponent apart from
#   Chinchilla's or Kaplan's, and the reasons a small sweep could differ (short runs, what `6N` counts, one
#   learning rate, the family's shape) come after that, not before.
# - A law earns trust by **predicting a run before it happens**, and a law chosen after seeing a point is
#   tested only by the next one.
#
# ## Exercises
#
# **1. Parameters by hand, for any depth.** Return the non-embedding parameters of a GPT-2 block model with
# `n_layer` layers of width `width` (biases and LayerNorms included, as above, but write it yourself). The
# check compares with `non_embedding_parameters` for several shapes.

# %%
def my_non_embedding_parameters(n_layer: int, width: int) -> int:
    raise NotImplementedError


def test_my_non_embedding_parameters():
    for n_layer, width in [(1, 8), (2, 48), (3, 64), (6, 96), (12, 768)]:
        config = tinylm.GPTConfig(vocab_size=87, block_size=64, n_layer=n_layer, n_head=width // 8, n_embd=width)
        assert my_non_embedding_parameters(n_layer, width) == non_embedding_parameters(config), (n_layer, width)


# %%
# NBVAL_CHECK_OUTPUT
check(test_my_non_embedding_parameters)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_non_embedding_parameters(n_layer, width):
#     attention = 3 * width * width + 3 * width + width * width + width  # q, k, v and the output, with biases
#     mlp = 4 * width * width + 4 * width + 4 * width * width + width
#     norms = 2 * 2 * width  # two LayerNorms per block, a gain and a shift each
#     return n_layer * (attention + mlp + norms) + 2 * width  # + the final LayerNorm
# ```
# </details>
#
# **2. Chinchilla's rule of thumb.** With `C = 6·N·D` and `D = 20·N` (Chinchilla's 20 tokens per
# parameter), return the compute-optimal `N` and `D` for a budget `C`. The check compares with the sizes
# Hoffmann et al. chose for Chinchilla, 70B parameters and 1.4T tokens, at `C = 6 · 70e9 · 1.4e12`. Then
# compare with the tokens per parameter of this notebook's minima, printed above, and say why characters
# need more.

# %%
def my_chinchilla_allocation(compute: float, tokens_per_parameter: float = 20) -> tuple[float, float]:
    raise NotImplementedError


def test_my_chinchilla_allocation():
    n, d = my_chinchilla_allocation(6 * 70e9 * 1.4e12)
    assert math.isclose(n, 70e9, rel_tol=0.01) and math.isclose(d, 1.4e12, rel_tol=0.01), (n, d)
    n, d = my_chinchilla_allocation(1e21, tokens_per_parameter=5)
    assert math.isclose(6 * n * d, 1e21, rel_tol=1e-9) and math.isclose(d / n, 5, rel_tol=1e-9)


# %%
# NBVAL_CHECK_OUTPUT
check(test_my_chinchilla_allocation)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_chinchilla_allocation(compute, tokens_per_parameter=20):
#     n = math.sqrt(compute / (6 * tokens_per_parameter))  # C = 6·N·(r·N) = 6r·N²
#     return n, tokens_per_parameter * n
# ```
#
# A character carries about a quarter of the information of a GPT-2 token, so a model needs more of them
# for what it learns; and the small models here still gain from steps more than from width.
# </details>
#
# **3. An experiment: a size the sweep skipped.** A budget's parabola predicts the loss of every size,
# trained or not. On the cpu profile, train `2x40` (in `ladder`, between the sweep's `2x32` and `2x48`) at
# the middle budget, `budgets[1]`, with `train_size` and a fresh seed, and predict its loss first from that
# budget's parabola. The theory to test is the bootstrap's: each run is its parabola plus one residual like
# those in `pool`, so your run should land within 3 of `pool`'s standard deviations of the parabola. The check
# takes your run and measures that distance. Which side of the parabola does your run land on, and on which
# side do its neighbours' residuals lie?

# %%
my_run = None  # replace with the SweepRun that train_size returns for your run


def test_a_skipped_size_lands_on_its_parabola():
    if my_run is None:
        raise NotImplementedError("set my_run to the SweepRun of your run")
    assert my_run.budget in budgets and my_run.size not in [size.name for size in sizes], "a sweep budget, a new size"
    minimum = minima[budgets.index(my_run.budget)]
    assert minimum.bracketed, "this budget's sizes bracket no minimum (the smoke profile's often do not): use the cpu one"
    predicted, noise = float(minimum.parabola(my_run.parameters)), float(np.sqrt(np.mean(pool**2)))
    print(f"{my_run.size}: the parabola predicts {predicted:.4f}, you measured {my_run.val_loss:.4f}: "
          f"{(my_run.val_loss - predicted) / noise:+.1f} residual standard deviations")
    assert abs(my_run.val_loss - predicted) <= 3 * noise, "further off the parabola than the bootstrap's noise allows"


# %%
# NBVAL_CHECK_OUTPUT
check(test_a_skipped_size_lands_on_its_parabola)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# skipped = next(size for size in ladder if size.name == "2x40")
# print(f"predicted {float(minima[1].parabola(skipped.parameters)):.4f}")
# my_run = train_size(skipped, budgets[1], template, data.train, data.val, device=DEVICE, seed=1)
# ```
#
# Compare the sign of your miss with the residuals of the sizes on either side (measured minus parabola,
# from the sweep table and `minima[1].parabola`). When neighbours miss on the same side at every budget, the
# parabola is the wrong shape there, not only noisy: a valley steeper on one side than on the other does
# that, and it moves the vertex that the laws are fitted to.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
