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
# # 8b · Mixture of experts: routing, collapse and balancing
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/08b_mixture_of_experts.ipynb)
#
# Notebook 8a built the dense Llama block. Many of today's open models (Mixtral, DeepSeek-V3, Qwen's MoE
# models) replace its MLP by a **mixture of experts**: many MLPs per layer, of which each token uses only
# a few, so the parameters grow while the compute per token does not. The catch is the router that picks
# the experts: left alone it tends to send most tokens to a few of them. This notebook builds the layer and both
# cures for that collapse from scratch, checks each against `tinylm`, and measures the mixture: the dense block
# against a mixture with loss-free balancing, at equal steps, three seeds per arm, with a stated rule for when a
# difference counts.
#
# **What you will learn**
# - a **mixture-of-experts layer**: a router, top-k dispatch, shared experts, and what a token pays for;
# - **collapse**: why unbalanced routing piles onto a few experts, its ceiling `E/k − 1`, and a run without
#   balancing that shows how far it goes here;
# - the **auxiliary loss** of Switch Transformers and DeepSeek-V3's **loss-free bias update**, both
#   written from scratch and checked against the package, and how the update's rate trades speed for precision;
# - an **ablation, one change at a time**: the dense Llama block → +MoE with loss-free balancing, three seeds
#   of 3,000 steps each, scored on held-out test tokens, a sample from each arm and the mixture's load at the end,
#   the difference called by a stated rule or printed as "not told apart"; the three balancing modes in training
#   are an exercise.
#
# **How long it takes**: a lesson of about 86 minutes (reading, code and the `cpu` run's 18 min, by the course's
# formula), then a second sitting of about 124 minutes for the 5 exercises (10 minutes per function, 20 per
# experiment, and 34 min of training).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; 2 arms × 3 seeds of 12 steps and one unbalanced run of 12, of a tiny model, scored on 4,096 validation and at most 4,096 test tokens | the last cell prints it |
# | `cpu` (2 cores; timed on a shared Xeon VM) | 2 arms × 3 seeds of 3,000 steps and one unbalanced run of 1,000, then 7 timed rounds of 20 steps per arm, of notebook 8a's 4-layer model 96 wide (windows of 64 tokens, batches of 8) on the 2 MiB TinyStories sample | the last cell prints it |
#
# On a GPU (`gpu` profile) the notebook trains the same 7 runs of the `cpu` profile's model by default
# (`FULL_RECIPE = False`); see [Running on a GPU](README.md#running-on-a-gpu) for `FULL_RECIPE = True`.
#
# **Papers**: sparsely-gated mixtures of experts ([Shazeer et al., 2017](https://arxiv.org/abs/1701.06538)),
# GShard ([Lepikhin et al., 2020](https://arxiv.org/abs/2006.16668)), Switch Transformers
# ([Fedus et al., 2021](https://arxiv.org/abs/2101.03961)), Mixtral ([Jiang et al., 2024](https://arxiv.org/abs/2401.04088)), DeepSeekMoE
# ([Dai et al., 2024](https://arxiv.org/abs/2401.06066)), loss-free balancing
# ([Wang et al., 2024](https://arxiv.org/abs/2408.15664)) as used in DeepSeek-V3
# ([DeepSeek-AI, 2024](https://arxiv.org/abs/2412.19437)).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import time

NOTEBOOK_STARTED = time.perf_counter()
import dataclasses
import statistics

import matplotlib.pyplot as plt
import torch
from tqdm.auto import tqdm

import tinylm
from tinylm.config import with_architecture
from tinylm.course.ablation import (
    STEP_TOLERANCE,
    ablation_table,
    hold_out_test,
    losses,
    mixture_chain,
    parameter_counts,
    train_arms,
    verdicts,
)
from tinylm.course.exercises import check
from tinylm.course.plotting import plot_arms, plot_balancing, use_projector_style
from tinylm.course.speedrun import machine_line, measure_step_costs, step_cost_line
from tinylm.eval.uncertainty import MIN_SEEDS, compare, null_pass_rate, spread
from tinylm.model.moe import MoE, end_of_step, read_expert_load

PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
use_projector_style()
print(f"profile {PROFILE}, device {DEVICE}, {torch.get_num_threads()} CPU threads for PyTorch")
# On a GPU, False trains the cpu profile's model and data, the same steps; True trains the gpu recipe's model and
# data, for much longer (see README's "Running on a GPU"). It changes nothing on the cpu and smoke profiles.
FULL_RECIPE = False
SCALE = "gpu-bounded" if PROFILE == "gpu" and not FULL_RECIPE else PROFILE  # what this notebook trains
RECIPE_PROFILE = "cpu" if SCALE == "gpu-bounded" else PROFILE  # whose data, model shape and recipe
if SCALE != PROFILE:
    print(f"FULL_RECIPE is False: training the {RECIPE_PROFILE} profile's data, shape and recipe on {DEVICE}")

# %% [markdown]
# ## The layer
#
# A dense model spends every parameter on every token. A mixture-of-experts layer replaces the MLP by
# `E` small MLPs (experts) and a **router**, a linear layer that scores the experts for each token; the
# token goes through its top-`k` experts only, and their outputs are added, weighted by their scores
# (renormalised over the chosen ones). Parameters grow with `E`, compute with `k`. This sparsely-gated
# layer, in which each token uses only a few of many experts, comes from [Shazeer et al. (2017)](https://arxiv.org/abs/1701.06538):
# they introduced noisy top-k gating (noise added to the router's logits before the top-k and the softmax) and two
# balancing losses, one on each expert's share of the router's weight (its importance) and one on its load. DeepSeekMoE
# ([Dai et al., 2024](https://arxiv.org/abs/2401.06066)) uses many narrow experts (more combinations to
# choose from) plus **shared** experts that every token passes through, for what all tokens need:
#
# ```
#                    token x (C channels)
#                          │
#            router: a score per expert, softmax(W_r·x)      (E scores)
#                          │ keep the top k (here k = 2 of E = 8)
#           ┌──────────────┼─────────────────────┐
#       expert 3       expert 6            shared expert
#     (a SwiGLU MLP)  (a SwiGLU MLP)       (every token)
#           │ × w₃         │ × w₆                 │
#           └───────────── + ────────────────────┘      w₃ + w₆ = 1: the two scores, renormalised
#                          │
#                      out (C channels)
# ```
#
# `tinylm`'s `llama-moe` has 8 routed experts, 2 active, and 1 shared, each a third of the dense MLP's width, so a
# token costs about the dense model's multiply-adds (plus the router's `C·E`). The readable version loops over
# tokens. Eagerly, as here unless a GPU runs `FULL_RECIPE = True`, the package sorts the (token, expert) pairs by
# expert and runs each expert once on its tokens; compiled, as that recipe is, it runs every expert on every token,
# weighted 0 where not chosen (fixed shapes): `E/k` = 4 times the routed experts' multiply-adds. The bias in the
# code is the loss-free balancing of a later section, added only under that balancing (`llama-moe`'s default, the
# layer's here); the cell gives it small random values so that the check covers it, and it only changes which experts
# are chosen:

# %%
def moe_from_scratch(x: torch.Tensor, layer: MoE) -> torch.Tensor:
    out = torch.zeros_like(x)
    for t in range(x.size(0)):  # one token at a time
        scores = layer.router(x[t]).softmax(dim=-1)  # (E,)
        bias = layer.expert_bias if layer.balancing == "loss_free" else 0  # as the package: loss-free balancing only
        chosen = (scores + bias).topk(layer.top_k).indices  # the bias only chooses...
        weights = scores[chosen] / scores[chosen].sum()  # ...the weights come from the scores
        for e, w in zip(chosen.tolist(), weights):
            out[t] += w * layer.experts[e](x[t])
        out[t] += layer.shared(x[t])
    return out


torch.manual_seed(0)
cfg_small = with_architecture(tinylm.GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=4, n_embd=48), "llama")
moe_cfg = with_architecture(cfg_small, "llama-moe")
E, k = moe_cfg.n_experts, moe_cfg.n_experts_active
layer = MoE(moe_cfg).eval()
with torch.no_grad():
    layer.expert_bias.copy_(torch.randn(E) * 0.05)
x = torch.randn(12, 48)
assert torch.allclose(moe_from_scratch(x, layer), layer(x[None])[0], atol=1e-5)
chosen, weights, scores = layer.route(x)
routing = torch.zeros(12, E).scatter(1, chosen, weights)  # (tokens, experts)

fig, ax = plt.subplots(figsize=(7, 4))
image = ax.imshow(routing.detach(), cmap="Blues", vmin=0, vmax=1)
ax.set_xlabel("routed expert")
ax.set_ylabel("token")
ax.set_title(f"each token's top-{k} experts and their weights (+ 1 shared expert for all)")
fig.colorbar(image, ax=ax, label="weight")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Balancing: collapse, the auxiliary loss, and loss-free balancing
#
# Nothing in the language-modelling loss asks the router to spread tokens. An expert that happens to
# be picked a little more early on gets more gradient, becomes better, gets picked more: routing
# **collapses** onto a few experts, and the others are parameters that do nothing (on a cluster, with
# one expert per GPU, the busy GPUs also set everyone's pace). Some such systems (GShard, Switch) also cap each
# expert's tokens per batch (the **capacity factor** times an even share) and **drop** the overflow, which then
# passes on through the residual alone; DeepSeek-V3 drops none. ST-MoE's **router z-loss** keeps the router's logits small, for stability
# ([Zoph et al., 2022](https://arxiv.org/abs/2202.08906)). `tinylm` caps and drops nothing, and has no z-loss.
#
# We measure balance as the **max-violation**: the busiest expert's load (its share of the assignments)
# over the mean load, minus 1. 0 is perfect. With top-`k` routing a token gives each expert at most one of
# its `k` assignments, so no expert's load exceeds `1/k` and the max-violation is at most `E/k − 1`: 3 for
# top-2 of 8 experts (`E − 1` would need top-1). Exercise 3 measures that ceiling.
#
# ### The auxiliary loss
#
# Switch Transformers ([Fedus et al., 2021](https://arxiv.org/abs/2101.03961)), after GShard
# ([Lepikhin et al., 2020](https://arxiv.org/abs/2006.16668)), add
# `α · E · Σᵢ fᵢ·Pᵢ` to the loss, where `fᵢ` is the fraction of the assignments expert `i` got (counted,
# so it carries no gradient) and `Pᵢ` its mean router score (in `tinylm` each token's scores are divided by
# their sum first: softmax scores already sum to 1, sigmoid scores do not). It is 1 when both are uniform.
# If `f` and `P` were free it could be near 0 (the assignments on some experts, all the score on others), but the
# chosen experts are the ones these same scores rank highest, which ties the two together: each token's first choice
# holds at least `1/E` of its score, so an expert that is the first choice of `nᵢ` of the `N` tokens has
# `Pᵢ ≥ nᵢ/(NE)` and `fᵢ ≥ nᵢ/(Nk)`; since `Σ nᵢ² ≥ N²/E`, the loss never falls below `1/(kE)`. Nor can it exceed
# `E/k` (no expert gets more than `1/k` of the assignments), the value it takes when `k` experts take every token
# and all the score. Its value is not what balances; its gradient through `P` is: `∂/∂Pᵢ = α·E·fᵢ`, so it lowers
# each token's scores on the experts whose load is above that token's score-weighted mean load and raises them on
# the others, so the busiest experts lose score. That gradient competes with the language-modelling loss, the trade-off
# [Wang et al.](https://arxiv.org/abs/2408.15664) set out to remove: a larger `α` balances better and can
# model worse. `tinylm`'s auxiliary-loss mode uses Switch's `α` (`aux_loss_coef`, which the cell prints) in each
# mixture-of-experts layer, so a model's balancing term is the sum of one such loss per layer.

# %%
# NBVAL_CHECK_OUTPUT
def aux_loss_from_scratch(scores: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Switch's balancing loss without its coefficient, E · Σᵢ fᵢ·Pᵢ, from every token's scores (N, E) and chosen
    experts (N, k)."""
    f = torch.bincount(chosen.flatten(), minlength=scores.size(-1)).float() / chosen.numel()  # a count: no gradient
    P = (scores / scores.sum(dim=-1, keepdim=True)).mean(dim=0)  # differentiable
    return scores.size(-1) * (f * P).sum()


tokens = torch.randn(40, moe_cfg.n_embd)
for router in ("softmax", "sigmoid"):
    aux_layer = MoE(dataclasses.replace(moe_cfg, balancing="aux_loss", router=router)).train()
    with torch.no_grad():
        aux_layer.router.weight.normal_(0, 0.5)  # scores far from uniform
    aux_layer(tokens[None])  # in training, the layer keeps its auxiliary loss for the Trainer to add
    chosen, _, scores = aux_layer.route(tokens)
    assert torch.allclose(aux_loss_from_scratch(scores, chosen), aux_layer.aux_loss / aux_layer.aux_loss_coef, atol=1e-6)
    assert aux_loss_from_scratch(scores, chosen).requires_grad  # through P
uniform = aux_loss_from_scratch(torch.full((8, E), 1 / E), torch.arange(8 * k).remainder(E).view(8, k))
piled = torch.zeros(8, E)
piled[:, :k] = 1 / k  # experts 0..k-1 hold all the score, and every token chooses them
print(f"aux loss == the package's, for both routers; uniform routing: {uniform:.2f}; k experts take every token "
      f"and all the score: {aux_loss_from_scratch(piled, torch.arange(k).expand(8, k)):.2f} (E/k = {E / k:g}); "
      f"α = aux_loss_coef = {moe_cfg.aux_loss_coef:g}")

# %% [markdown]
# ### Loss-free balancing
#
# [Wang et al.](https://arxiv.org/abs/2408.15664), used in DeepSeek-V3: keep a bias per expert, add it to
# the scores *only to choose the top-k*, and after every optimizer step move it by a fixed rate `u`
# against the sign of the expert's load error: `bᵢ ← bᵢ + u·sign(mean load − loadᵢ)`. Overloaded experts
# become less likely to be chosen, underloaded ones more. The bias does change the forward pass (which
# experts run for a token is the whole point), so it can help or hurt the loss like any routing decision;
# what it avoids is the auxiliary loss's extra gradient, since the bias is not learned and the chosen
# experts' weights still come from the unbiased scores. Here is the update, checked against the one the
# Trainer calls after every step (`MoE.end_of_step`):

# %%
# NBVAL_CHECK_OUTPUT
def bias_update_from_scratch(bias: torch.Tensor, counts: torch.Tensor, rate: float) -> torch.Tensor:
    """The loss-free biases after an optimizer step, from the step's assignment counts per expert (E,)."""
    load = counts / counts.sum()  # fractions of the assignments (the sign is the same for counts)
    return bias + rate * torch.sign(load.mean() - load)


free_layer = MoE(dataclasses.replace(moe_cfg, balancing="loss_free")).train()
generator = torch.Generator().manual_seed(0)
for counts in (torch.randint(0, 50, (E,), generator=generator).float(), torch.tensor([4.0, 4, 4, 4, 0, 8, 4, 4]),
               torch.full((E,), 3.0)):
    before = free_layer.expert_bias.clone()
    free_layer.step_counts.copy_(counts)  # as if a training step had made these assignments
    free_layer.end_of_step()
    mine = bias_update_from_scratch(before, counts, free_layer.bias_update_rate)
    assert torch.allclose(mine, free_layer.expert_bias, atol=1e-7), (counts, mine, free_layer.expert_bias)
print(f"bias update == the package's (rate u = {free_layer.bias_update_rate:g}); after the last counts, all equal, "
      f"no bias moved: {torch.equal(free_layer.expert_bias, before)}")

# %% [markdown]
# How fast does it balance? A bias has to move by about the gap between two experts' scores before it
# changes a choice, and it moves by `u` per step. Below, a router is tilted towards experts 0 and 1 (so
# that the layer starts far from balance), frozen, and fed the same tokens step after step while only the
# biases move, at DeepSeek-V3's rate and at `tinylm`'s; the cell prints how many steps each takes to bring
# the max-violation under 0.5, and where it settles (the mean over the last 50 steps):

# %%
def balance(rate: float, steps: int = 400, tilt: float = 0.02) -> list[float]:
    """The max-violation at every step of a loss-free layer whose router prefers experts 0 and 1 by `tilt`."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # the caller's random state stays as it was
        torch.manual_seed(1)  # the same layer and tokens at every call
        tilted = MoE(dataclasses.replace(moe_cfg, balancing="loss_free", bias_update_rate=rate)).train()
        tokens = torch.randn(256, moe_cfg.n_embd) + 1  # every token shares a direction...
        tilted.router.weight.normal_(0, 0.05)
        tilted.router.weight[:2] += tilt  # ...which experts 0 and 1 score higher
        violations = []
        for _ in range(steps):
            tilted(tokens[None])
            end_of_step(tilted)  # the update, as after an optimizer step
            violations.append(read_expert_load(tilted)["max_violation"][0])
    return violations


for rate in (1e-3, 1e-2):  # DeepSeek-V3's rate, tinylm's
    violations = balance(rate)
    under = next((step for step, v in enumerate(violations) if v < 0.5), None)
    settled = sum(violations[-50:]) / 50
    print(f"u = {rate:g}: max-violation {violations[0]:.2f} at the first step, under 0.5 after "
          f"{under if under is not None else 'more than 400'} steps, settles at {settled:.2f}")
    assert settled < violations[0], "the update must move the load towards balance"

# %% [markdown]
# The faster rate gets there sooner and settles coarser: every step it moves every bias by the full `u`, so once
# the load is near even the biases keep stepping past the balance point by up to `u`, and the load swings with them,
# more at the larger `u` (0.30 against 0.05). DeepSeek-V3 does not use the bias
# alone: its router scores experts with independent **sigmoids** (normalised over the chosen experts to
# give the weights), the bias moves at `u = 1e-3` for most of training (the report's hyper-parameters), and
# a **sequence-wise auxiliary loss** with a very small weight (`α = 1e-4`) keeps any single sequence from
# piling onto a few experts. To differ in balancing only, the three modes must share one router, and either
# router would do that; `tinylm` takes the **softmax** router of Switch and Mixtral
# ([Jiang et al., 2024](https://arxiv.org/abs/2401.04088)), the one the auxiliary loss was designed with,
# for all three, although loss-free balancing came with sigmoids (`router="sigmoid"` is there). It uses `u = 1e-2`,
# ten times DeepSeek-V3's rate: on the tilted layer above it balanced in 9 steps instead of 93, and settled coarser.
#
# ## The experiment: the dense block against a mixture
#
# Two arms, one change: the dense Llama block that notebook 8a builds (RMSNorm, RoPE, SwiGLU, grouped-query
# attention), and the same block with its MLP replaced by the mixture above under loss-free balancing,
# DeepSeek-V3's method and `llama-moe`'s default. Both arms train notebook 8a's model shape and recipe, 3,000 steps
# per run, at three seeds, the arms' order rotated from seed to seed, and are scored on a held-out test split. Two
# arms, not one per balancing mode: at 1,000 steps a run of this size ended before its samples read as stories
# and 3,000 fixed that (one seed, on 8a's GPT-2 arm: [a dated note](../docs/notes/2026-11-27-story-levers.md)); 3,000
# steps for four arms would not fit the lesson. Comparing the balancing modes in training is exercise 4.
#
# - **Equal steps, 3,000 per run**: a budget of seconds would let a busy machine pick the winner. The
#   mixture's step may be slower: dispatch (sorting, gathering and scattering tokens for each expert), and nine
#   narrow MLPs where the dense block runs one wide one. A line after training prices the step (both arms timed in
#   seven alternating rounds); the table's ms per step is what a step cost during the runs.
# - **A test split for the verdicts**: the training split's last stories, at most as many tokens as the validation
#   split (the cut moves to a story's end), held out (the same tokens as in 8a) so that no arm trains on them and
#   no choice in this notebook was scored on them (the dated note chose the 3,000 steps, for both arms alike, partly
#   by this split's loss on 8a's GPT-2 arm).
# - **The verdict rule.** Two arms are **told apart** only when each has at least three seeds and every
#   seed of one beats every seed of the other (`tinylm.eval.uncertainty.told_apart`); "not told apart" says
#   the experiment is too small to see a difference, not that there is none.
#
# **Predict, then run.** Will the mixture beat the dense block at equal steps, by a margin the rule can tell from
# the seeds' disagreement? What will its step cost against the dense block's? And where will its max-violation end
# under the loss-free biases: near 0, near 1, or near the ceiling of 3?

# %%
track = tinylm.get_track("tinystories")
data = track.prepare(RECIPE_PROFILE)
if SCALE == "smoke":  # CI checks the code: 4,096 validation tokens (so the test split below is cut as long)
    data = dataclasses.replace(data, val=data.val[:4096])
preset, recipe = track.recipe(RECIPE_PROFILE)
if SCALE in ("cpu", "gpu-bounded"):  # notebook 8a's shape: 96 wide on windows of 64 tokens
    preset = dataclasses.replace(preset, n_embd=96, block_size=64)
base_cfg = tinylm.train.recipes.build_model_config(preset, data.tokenizer, track.vocab_multiple)
arms = mixture_chain(base_cfg, balancing=("loss_free",))  # the dense block, then the mixture with loss-free biases
for arm in arms:
    total, active = parameter_counts(arm.config)
    print(f"{arm.name:<22} {arm.change:<50} {total:>9,} parameters, {active:>9,} used per token")

# Notebook 8a's recipe, 3,000 optimizer steps per run (the dated note above), the same for every arm and seed.
ARM_STEPS = {"smoke": 12, "cpu": 3000, "gpu-bounded": 3000, "gpu": 1000}[SCALE]
ARM_BATCH = {"smoke": recipe.batch_size, "cpu": 8, "gpu-bounded": 8, "gpu": recipe.batch_size}[SCALE]
SEEDS = [0, 1, 2]
arm_recipe = dataclasses.replace(recipe, max_seconds=None, max_steps=ARM_STEPS, batch_size=ARM_BATCH,
                                 warmup_steps=min(recipe.warmup_steps, ARM_STEPS // 4), eval_interval=0,
                                 log_interval={"smoke": 4, "cpu": 25, "gpu-bounded": 25, "gpu": 10}[SCALE])
# Test split as in 8a: the training split's last stories, at most as many tokens as validation (cut at a story's end)
train_tokens, test_tokens = hold_out_test(data.train, len(data.val), boundary=data.tokenizer.eot_token)
print(f"tokens: {len(train_tokens):,} to train on, {len(data.val):,} validation, {len(test_tokens):,} test (held "
      f"out); peak learning rate {arm_recipe.learning_rate:.0e} after {arm_recipe.warmup_steps} warmup steps")
print(f"{len(arms)} arms × {len(SEEDS)} seeds × {ARM_STEPS:,} steps = {len(arms) * len(SEEDS) * ARM_STEPS:,} "
      f"optimizer steps of {ARM_BATCH} windows of {base_cfg.block_size} tokens")
runs = train_arms(arms, SEEDS, arm_recipe, train_tokens, data.val, device=DEVICE, tokenizer=data.tokenizer,
                  test_data=test_tokens, progress=lambda plan: tqdm(plan, desc="runs (seed, arm)"))
trained = sum(run.elapsed for arm_runs in runs.values() for run in arm_runs)
print(f"training took {trained:,.0f} s in all: {1000 * trained / (len(arms) * len(SEEDS) * ARM_STEPS):.0f} ms per "
      f"step on average")
# What a step costs, timed apart from training: both arms in alternating rounds (notebook 12's measure_step_costs)
TIMING = {"rounds": 3, "steps": 2, "warmup": 1} if SCALE == "smoke" else {"rounds": 7, "steps": 20, "warmup": 5}
costs = measure_step_costs(arms, arm_recipe, train_tokens, data.val, device=DEVICE, tokenizer=data.tokenizer,
                           **TIMING)
print(machine_line(DEVICE))
print(step_cost_line(arms, costs))

# %% [markdown]
# The table gives each arm's steps, what a step cost during its runs, its test loss (nats per token) as mean ± half its
# range over the seeds, its difference from the dense block, and whether the two are told apart; then every run's
# training loss against its seconds of training (a long straight segment is the machine stalling, not the model), the
# verdict, and a sample from each arm's seed 0 (the same prompt and sampling seed):

# %%
print(ablation_table(arms, runs, split="test"))
plot_arms(runs, title=f"TinyStories, {SCALE} profile: every arm, every seed", split="test")
plt.show()
print(f"the rule: at least {MIN_SEEDS} seeds per arm, and every seed of one arm beats every seed of the other; "
      f"two arms with no real difference pass it {null_pass_rate(len(SEEDS), len(SEEDS)):.0%} of the time at "
      f"{len(SEEDS)} seeds each\n")
for sentence in verdicts(arms, runs, split="test"):
    print(f"- {sentence}\n")
for arm in arms:
    text = tinylm.generate_text(runs[arm.name][0].model, data.tokenizer, "Once upon a time", max_new_tokens=60,
                                temperature=0.8, top_k=40, seed=0)
    print(f"{arm.name}: {' '.join(text.split('<|endoftext|>')[0].split())}\n")

# %% [markdown]
# At equal steps the mixture beat the dense block by the rule: 3.212 against 3.238 in test loss, 0.026 lower, every
# seed of the mixture below every seed of the dense block, and each arm's seeds agree to within 0.007 (the widest
# range). Were there no real difference, three seeds a side would still pass the rule 10% of the time (2 of the
# 20 equally likely orderings of six exchangeable results; the arms share seeds, and so batch orders, which this does
# not model): this is evidence, not proof. The gain was bought with 1,659,360 parameters against
# 1,069,920, at about the dense block's parameters used per token.
#
# Its price is the step. Timed apart from training, in seven rounds of 20 steps that alternate the arms, the
# mixture took 69.7 ms a step against the dense block's 40.6 (medians): 1.72 times, and every round of the mixture
# was slower than every round of the dense block. During the training runs (the table) it took 65 ms against 44,
# about one and a half times. Whether the gain survives that price is a race at equal seconds: exercise 5.
#
# The samples share a prompt and a sampling seed, so they open with the same sentence, then part. At 3,000 steps
# most sentences read like TinyStories (not all: "Emma loved to go on a way to sail", "she saw that her mommy asked
# her"), and the mixture's sample stays with a girl, the park or garden and her friends for three sentences, where
# the dense block's goes from sailing to glowing to "something pink"; neither keeps its
# names (Sarah becomes Emma, then Daisy, in both). Two samples cannot show a gain of 0.026 nats per token; the table
# can.
#
# ### What the loss-free biases did to the load
#
# The expert load the Trainer logged every 25 steps, summed over those steps (which averages out much of the
# step-to-step overshoot the tilted layer showed), per layer: the mixture's worst layer's max-violation over
# training for each seed, seed 0's load in the last logging window layer by layer, a table, and each seed's worst
# layer at its highest and at the end:

# %%
mixture = arms[1].name
ceiling = E / k - 1  # the same 8 experts, top-2, as the layer above
plot_balancing(runs, top_k=k)  # the mixture, in its colour of the figure above
plt.show()


def final_violations(run) -> list[float]:
    """Each layer's max-violation in the run's last logging window."""
    return [r for r in run.records if r.get("event") == "train" and "max_violation" in r][-1]["max_violation"]


def final_loads(run) -> list[list[float]]:
    """Each layer's load per expert (its share of the assignments) in the run's last logging window."""
    return [r for r in run.records if r.get("event") == "train" and "expert_load" in r][-1]["expert_load"]


def balance_row(name: str, arm_runs: list) -> str:
    """One arm's row of the balance table below."""
    per_layer = "; ".join(", ".join(f"{v:.2f}" for v in final_violations(run)) for run in arm_runs)
    worst = [max(final_violations(run)) / ceiling for run in arm_runs]
    idle = "; ".join(", ".join(str(sum(share == 0 for share in layer)) for layer in final_loads(run))
                     for run in arm_runs)
    return (f"| {name.removeprefix('+MoE, ')} | {per_layer} | {spread(worst).format(2)} | {idle} "
            f"| {spread([run.test_loss for run in arm_runs]).format()} |")


BALANCE_HEADER = (f"| balancing | max-violation at the end, per layer (one group per seed) | worst layer, share of the "
                  f"ceiling {ceiling:g} | experts with no assignment at the end, of {E} per layer (per seed, over the "
                  f"layers) | test loss |\n|---|---|---|---|---|")
print(BALANCE_HEADER)
print(balance_row(mixture, runs[mixture]))
worst = [max(final_violations(run)) for run in runs[mixture]]  # each seed's worst layer at the end


def worst_layer_line(label: str, run) -> str:
    """The run's worst layer at its highest and every layer's max-violation in its last logging window."""
    logged = [(r["step"], r["max_violation"]) for r in run.records if r.get("event") == "train" and "max_violation" in r]
    step, layers = max(logged, key=lambda pair: max(pair[1]))
    last_step, last = logged[-1]
    return (f"{label}: worst layer {max(layers):.2f} at its highest (step {step}); per layer at step {last_step:,}: "
            f"{', '.join(f'{v:.2f}' for v in last)}")


for run in runs[mixture]:
    print(worst_layer_line(f"seed {run.seed}", run))

# %% [markdown]
# The biases kept the load near even: at the end every layer of every seed was within 0.08 of a perfect balance
# (the worst layers 0.08, 0.05 and 0.05: on average a fiftieth of the ceiling, 0.02 ± 0.01), and no expert was
# idle; the heatmap shows seed 0's last load, every expert near 1/8 of its layer's assignments. It did not get there
# at once: by step 50, the end of the warmup, when the learning rate peaks, the worst layer had reached 1.88 and 1.87
# in two seeds (0.84 in the third), more than half of the ceiling in those two, and it came down within a few hundred
# steps (the left panel). One guess, not tested here, is that the router's score gaps then moved faster than biases
# stepping by `u` could follow: the 9 steps of the tilted layer, whose router was frozen, do not carry over to a
# learning one.
#
# ### Without balancing
#
# Does an unbalanced router collapse here? One run shows it: the mixture with no balancing, seed 0, for 1,000 steps
# (its schedule fitted to 1,000 steps, so it decays sooner than the lesson's runs), beside the loss-free run of seed 0
# over its first 1,000 steps (blue in this figure is the unbalanced mixture). One seed is an illustration of what can
# happen, not a measure of how often.

# %%
unbalanced_arm = mixture_chain(base_cfg)[1]  # the same mixture, no balancing
assert unbalanced_arm.config.balancing == "none"
COLLAPSE_STEPS = {"smoke": 12, "cpu": 1000, "gpu-bounded": 1000, "gpu": 1000}[SCALE]
collapse_recipe = dataclasses.replace(arm_recipe, max_steps=COLLAPSE_STEPS,
                                      warmup_steps=min(recipe.warmup_steps, COLLAPSE_STEPS // 4))
collapse_run = train_arms([unbalanced_arm], [0], collapse_recipe, train_tokens, data.val, device=DEVICE,
                          tokenizer=data.tokenizer, report=None)[unbalanced_arm.name][0]
free_start = dataclasses.replace(runs[mixture][0], records=[  # the loss-free run of seed 0, up to the same step
    r for r in runs[mixture][0].records if r.get("step", 0) <= COLLAPSE_STEPS])
plot_balancing({unbalanced_arm.name: [collapse_run], f"{mixture} to step {COLLAPSE_STEPS}": [free_start]},
               top_k=k)
plt.show()
print(worst_layer_line(unbalanced_arm.name, collapse_run))
print(worst_layer_line(f"{mixture}, seed 0", free_start))
shares = final_loads(collapse_run)  # (layers, experts): each expert's share of the layer's assignments
print(f"{unbalanced_arm.name} at step {COLLAPSE_STEPS:,}, per layer: the busiest expert's share "
      f"{', '.join(f'{max(layer):.2f}' for layer in shares)}, the quietest's "
      f"{', '.join(f'{min(layer):.3f}' for layer in shares)} (an even load: {1 / E:.3f} each)")

# %% [markdown]
# Without balancing the router collapsed at once: seed 0's worst layer reached the ceiling of 3 by step 100, the
# point where one expert is among the two picks of every token, and was still at 2.84 at step 1,000, that expert
# taking 0.48 of the layer's assignments; the other layers ended at 1.03, 1.59 and 2.00, and in two of them the
# quietest expert took 0.004, a thirtieth of an even share. Over the same steps the
# loss-free run's worst layer peaked at 1.88 (step 50) and ended at 0.11. This is one seed on a 1,000-step schedule:
# an illustration of what the biases prevent here, not a measure of how often or how fast.
#
# What these runs cannot say is what balancing costs or buys in loss, and how the auxiliary loss compares. Exercise 4
# trains the other two modes at the lesson's seeds and steps; its cell prints what that costs here.
#
# ## What you learned
#
# - A **mixture of experts** routes each token to its top-k experts (plus shared ones): parameters grow
#   with the number of experts, compute per token with k.
# - Without balancing nothing in the loss asks for an even load: here one layer's router reached the ceiling `E/k − 1`
#   within 100 steps (seed 0), one expert in every token's top-2, and that expert still took 0.48 of the layer's
#   assignments at step 1,000.
# - The **auxiliary loss** `α·E·Σ fᵢPᵢ` balances through its gradient, which competes with the
#   language-modelling loss; DeepSeek-V3's **loss-free bias** balances through the choice alone, moving
#   each expert's bias by `u` per step against its load error: a larger `u` balances sooner and settles coarser.
# - At equal steps the mixture with loss-free balancing beat the dense block by the rule, with about the dense
#   block's parameters used per token, at one and a half to 1.72 times its step cost here; whether the gain pays for that is a race of
#   equal seconds (exercise 5).
# - A change is measured one at a time, at equal budget, over three seeds, and called only by the stated rule;
#   "not told apart" is a result too.
#
# ## Exercises
#
# **1. What a token pays for.** For one mixture-of-experts layer with a SwiGLU expert of width `h`
# (three `C × h` matrices, no biases), `E` routed experts of which `k` are active, `s` shared experts
# (one SwiGLU of width `s·h`) and a router (`C × E`), return `(total, active)` parameters.

# %%
def moe_layer_parameters(C: int, h: int, E: int, k: int, s: int) -> tuple[int, int]:
    raise NotImplementedError


def test_moe_layer_parameters():
    for E, k, s in [(8, 2, 1), (16, 4, 0), (4, 1, 2)]:
        cfg = with_architecture(cfg_small, "llama-moe")
        cfg = dataclasses.replace(cfg, n_experts=E, n_experts_active=k, n_shared_experts=s)
        layer = MoE(cfg)
        total = sum(p.numel() for p in layer.parameters())
        routed_unused = (E - k) * sum(p.numel() for p in layer.experts[0].parameters())
        assert moe_layer_parameters(48, cfg.expert_hidden_size, E, k, s) == (total, total - routed_unused), (E, k, s)


check(test_moe_layer_parameters)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def moe_layer_parameters(C, h, E, k, s):
#     expert = 3 * C * h
#     router = C * E
#     return router + E * expert + s * expert, router + k * expert + s * expert
# ```
# </details>
#
# **2. Experiment: the rate of the bias update.** A bias has to move by about the score gap between two
# experts before it changes a choice, and it moves by `u` per step; so the steps the tilted layer above
# needs to get under a max-violation of 0.5 should scale as `1/u`, and `steps · u` should stay about the
# same, as long as a step of `u` is small next to those gaps. Measure it: run `balance(rate)` for at least
# three rates spanning a factor of ten or more (say `1e-3`, `3e-3`, `1e-2`, `3e-2`, `1e-1`), find the first
# step under 0.5 in each as its index in `balance(rate)` (0 for the first update, as the lesson's `under` counts;
# None if it never gets there), and fill `my_steps_by_rate = {rate: steps}`. The check
# compares each with a run of its own and prints `steps · u`, the mean max-violation of the last 50 steps,
# and the last four steps' values. Where does the prediction stop holding, and why?

# %%
my_steps_by_rate = None  # replace with {rate: the first step whose max-violation is under 0.5, or None}


def test_my_steps_by_rate():
    if my_steps_by_rate is None:
        raise NotImplementedError("set my_steps_by_rate to {rate: steps} from your runs of balance(rate)")
    rates = sorted(my_steps_by_rate)
    assert len(rates) >= 3 and rates[-1] / rates[0] >= 10, "three rates or more, a factor of 10 apart"
    for rate in rates:
        steps = my_steps_by_rate[rate]
        violations = balance(rate)
        measured = next((step for step, v in enumerate(violations) if v < 0.5), None)
        assert steps == measured, f"at u = {rate:g} the layer got under 0.5 after {measured} steps, not {steps}"
        reached = f"{steps} steps, steps · u = {steps * rate:.3f}" if steps is not None else "never under 0.5"
        print(f"u = {rate:g}: {reached}; the last 50 steps average {sum(violations[-50:]) / 50:.2f}, the last four: "
              + ", ".join(f"{v:.2f}" for v in violations[-4:]))


check(test_my_steps_by_rate)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# my_steps_by_rate = {rate: next((step for step, v in enumerate(balance(rate)) if v < 0.5), None)
#                     for rate in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)}
# ```
#
# The check prints, for your rates, the steps, `steps · u` and where each settles. The two rates the lesson ran
# already agree (93 steps at `1e-3`, 9 at `1e-2`): while `u` is small next to the score gaps, `steps · u` stays
# about the same, because the time to balance is set by how far the biases must move. Every step moves every bias by
# the full `u`, so once the load is near even the max-violation cycles through a few values (the last four steps)
# with a swing that grows with `u`. The prediction stops holding where one step of `u` is as large as the score
# gaps: a single step then pushes the biases beyond the balance point, and these tokens, which all share one
# preference, switch experts together, so the layer may never get under 0.5, and at a large enough `u` it ends
# less balanced than it began. That is the price of speed, and one
# reason to move the biases slowly over a long run.
# </details>
#
# **3. Experiment: the ceiling of the max-violation.** Take an MoE layer with no balancing, change its
# router so that every token prefers the same experts (all tokens below have positive channels; one way
# is to zero the router and give `k` experts' rows the same positive constant), run the tokens through it, and
# read the max-violation the layer logs. Write the number you measured into `my_ceiling`; the check runs
# the same tokens through your layer again, and passes only when your number is what the layer measures and
# equals the bound `E/k − 1` for this layer's `E` and `k`; then it says how close the lesson's loss-free mixture came.

# %%
ceiling_layer = MoE(dataclasses.replace(moe_cfg, balancing="none")).train()
positive_tokens = torch.rand(1, 256, moe_cfg.n_embd)
with torch.no_grad():
    pass  # your change to ceiling_layer.router.weight
ceiling_layer(positive_tokens)
tinylm.model.moe.end_of_step(ceiling_layer)
print("max-violation of this layer:", tinylm.model.moe.read_expert_load(ceiling_layer)["max_violation"])
my_ceiling = None  # replace with the max-violation you measured


def test_my_ceiling():
    if my_ceiling is None:
        raise NotImplementedError("set my_ceiling to the max-violation you measured")
    with torch.no_grad():
        ceiling_layer(positive_tokens)  # the same tokens through your layer again: the check measures it itself
    tinylm.model.moe.end_of_step(ceiling_layer)
    measured = tinylm.model.moe.read_expert_load(ceiling_layer)["max_violation"][0]
    assert abs(my_ceiling - measured) < 0.01, f"your layer measures {measured:.2f}, not {my_ceiling}"
    bound = moe_cfg.n_experts / moe_cfg.n_experts_active - 1
    assert abs(measured - bound) < 0.01, (f"your layer reaches {measured:.2f}, not the ceiling E/k - 1 = {bound:g}: "
                                          "is every token sent to the same k experts?")
    print(f"your measured ceiling equals E/k − 1 = {bound:g}; the loss-free mixture's worst layer ended at "
          f"{max(worst) / ceiling:.0%} of its own ceiling")


check(test_my_ceiling)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# with torch.no_grad():
#     ceiling_layer.router.weight.zero_()
#     ceiling_layer.router.weight[:2] = 1.0  # experts 0 and 1 score sum(x) > 0, the rest 0: every token picks them
# ceiling_layer(positive_tokens)
# tinylm.model.moe.end_of_step(ceiling_layer)
# my_ceiling = tinylm.model.moe.read_expert_load(ceiling_layer)["max_violation"][0]
# ```
#
# The printed max-violation is `E/k − 1` = 8/2 − 1 = 3: each token gives experts 0 and 1 one assignment each,
# so each has half of all assignments, four times the mean of 1/8. No routing can do worse, because an expert
# appears at most once in a token's top-k.
# </details>
#
# **4. Experiment: the three balancing modes in training.** The lesson trained one mixture, under loss-free
# biases. Train the mixture under the other two modes, no balancing and the auxiliary loss (`balancing_arms[:2]`
# below), as the experiment trained its arms: `train_arms` with `SEEDS`, `arm_recipe`, `train_tokens`, `data.val`
# and `test_data=test_tokens`; set `balancing_runs` to what it returns. The loss-free runs are the lesson's
# (`runs`): at equal steps a run depends on its seed, not on when it ran (on the same number of threads). Predict
# first: the lesson's unbalanced run (seed 0, 1,000 steps) left its worst layer at 2.84, near the ceiling of 3; after
# 3,000 steps on the lesson's schedule, will every seed's worst layer end near the ceiling, or will some come down? Will either
# balancing mode cost test loss that the rule can tell from the seeds' disagreement? The check prints the balance
# table of all three modes and the verdicts between them, on the worst layer's max-violation and on test loss.
# The same arms from the command line, on the same test split, without the balance table, each judged against the
# dense block only (which is why `"Llama (dense)"` is named too: an arm whose baseline is not trained gets no verdict):
# `python scripts/architecture_ablation.py --part moe --profile cpu --steps 3000 --n-embd 96 --block-size 64
# --batch-size 8 --arms "Llama (dense)" "+MoE, no balancing" "+MoE, auxiliary loss"`.

# %%
balancing_arms = mixture_chain(base_cfg)[1:]  # the mixture under no balancing, the auxiliary loss, loss-free biases
unbalanced, aux, free = (arm.name for arm in balancing_arms)
mixture_step = costs[free].seconds  # timed in rounds above; the other two modes' steps assumed to cost the same
print(f"exercise 4 trains for about {2 * len(SEEDS) * ARM_STEPS * mixture_step:,.0f} s here: "
      f"{2 * len(SEEDS)} runs of {ARM_STEPS:,} steps at the mixture's {1000 * mixture_step:.0f} ms per step above")
balancing_runs = None  # replace with train_arms(...) of the no-balancing and auxiliary-loss arms


def test_balancing_modes():
    if balancing_runs is None:
        raise NotImplementedError("set balancing_runs to your runs of the no-balancing and auxiliary-loss arms")
    missing = [name for name in (unbalanced, aux) if name not in balancing_runs]
    assert not missing, f"no runs of {', '.join(missing)}: train balancing_arms[:2]"
    modes = {unbalanced: balancing_runs[unbalanced], aux: balancing_runs[aux], free: runs[free]}
    for name, arm_runs in modes.items():
        assert [run.seed for run in arm_runs] == SEEDS and all(run.steps == ARM_STEPS for run in arm_runs), (
            f"{name}: train the seeds {SEEDS}, {ARM_STEPS:,} steps each, as the lesson's mixture")
    print(BALANCE_HEADER)
    for name, arm_runs in modes.items():
        print(balance_row(name, arm_runs))
    worst_of = {name: [max(final_violations(run)) for run in arm_runs] for name, arm_runs in modes.items()}
    sentences = []
    for a, b in [(aux, unbalanced), (free, unbalanced), (free, aux)]:
        sentences.append(compare(a, worst_of[a], b, worst_of[b], metric="worst-layer max-violation"))
        sentences.append(compare(a, losses(modes, a, "test"), b, losses(modes, b, "test"), metric="test loss"))
    print("\n" + "\n".join(f"- {sentence}" for sentence in sentences))
    null, n = null_pass_rate(len(SEEDS), len(SEEDS)), len(sentences)
    print(f"over these {n} verdicts, were no difference real, the chance that at least one still reads 'told apart' "
          f"is 1 − (1 − {null:.0%})^{n} = {1 - (1 - null) ** n:.0%} (treating them as independent)")


check(test_balancing_modes)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# balancing_runs = train_arms(balancing_arms[:2], SEEDS, arm_recipe, train_tokens, data.val, device=DEVICE,
#                             tokenizer=data.tokenizer, test_data=test_tokens)
# ```
#
# Read the table against the lesson's section on balancing. Without balancing, nothing in the loss asks for an even
# load: look for layers whose max-violation climbed towards the ceiling, and whether every seed's did. The
# auxiliary loss balances through its gradient, so a layer can stay less
# balanced where that gradient loses to the language-modelling loss's; the biases balance through the choice alone.
# On the loss, read the verdicts as they come: a cost and a gain of balancing both exist in principle (the
# auxiliary loss's gradient pulls the router away from what the language-modelling loss wants, the bias sends some
# tokens to experts that score lower for them, and balancing puts a collapsed layer's idle experts to work);
# "told apart" says which one outweighed the seeds' disagreement here, "not told apart" that neither did, not that
# there is none.
# With six verdicts, the last line says how often at least one would read "told apart" by chance alone.
# </details>
#
# **5. Experiment: equal time instead of equal steps.** The lesson's table is a race of equal steps, which does not
# charge the mixture for a slower step. Race the dense block and the mixture again at equal
# *seconds*: three seeds each (`SEEDS`), every run the same seconds of training (say the median the dense arm took
# above: `max_seconds`, with a step limit it never reaches), everything else as `arm_recipe`, and the same
# training and test tokens. `train_arms` re-runs a run whose steps fall more than 10% off its arm's median (most
# likely the machine was busy during it) and counts the re-run instead, without checking it again. Does the
# mixture's per-step gain survive the seconds a slower step would cost? The check prints both verdicts side by side,
# on the test split.

# %%
dense_seconds = statistics.median(run.elapsed for run in runs[arms[0].name])  # a stalled run does not move it
print(f"exercise 5 trains for about {2 * len(SEEDS) * dense_seconds:,.0f} s here: {2 * len(SEEDS)} runs of "
      f"{dense_seconds:.0f} s, and a re-run of any whose steps fall more than {STEP_TOLERANCE:.0%} off its arm's median")
moe_equal_time_runs = None  # replace with train_arms(...) of the dense arm and the mixture at equal seconds


def test_moe_equal_time():
    if moe_equal_time_runs is None:
        raise NotImplementedError("set moe_equal_time_runs to your runs of the dense arm and the mixture")
    dense, moe = moe_equal_time_runs[arms[0].name], moe_equal_time_runs[mixture]
    for run in dense + moe:  # a step limit that a run reaches first would end it before its clock
        limit = next(r["max_steps"] for r in run.records if r["event"] == "train")
        assert limit > ARM_STEPS and run.steps < limit, (
            f"{run.arm} seed {run.seed}: lift max_steps above {ARM_STEPS:,}, so that its clock ends every run")
    seconds = [run.elapsed for run in dense + moe]
    # a clock ends a run at the end of the step that passes it: the runs may differ by up to a step
    longest_step = max(run.elapsed / run.steps for run in dense + moe)
    assert max(seconds) - min(seconds) < 0.1 * min(seconds) + longest_step, (
        f"every run must train for the same seconds, not {seconds}")
    assert min(len(dense), len(moe)) >= MIN_SEEDS, f"a verdict needs at least {MIN_SEEDS} seeds per arm"
    print(f"equal steps ({ARM_STEPS:,}):", compare(mixture, losses(runs, mixture, "test"), arms[0].name,
                                                 losses(runs, arms[0].name, "test"), metric="test loss"))
    steps = {name: [run.steps for run in moe_equal_time_runs[name]] for name in (arms[0].name, mixture)}
    print(f"equal time ({sum(seconds) / len(seconds):.0f} s; steps {steps}):",
          compare(mixture, losses(moe_equal_time_runs, mixture, "test"), arms[0].name,
                  losses(moe_equal_time_runs, arms[0].name, "test"), metric="test loss"))


check(test_moe_equal_time)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# moe_equal_time_runs = train_arms(arms, SEEDS, dataclasses.replace(arm_recipe, max_seconds=dense_seconds,
#                                                                    max_steps=100 * ARM_STEPS),
#                                  train_tokens, data.val, device=DEVICE, tokenizer=data.tokenizer,
#                                  test_data=test_tokens)
# ```
#
# With a clock the learning-rate schedule follows the seconds, so each run still ends its decay. If the mixture is
# still told apart ahead at equal seconds, its per-step gain paid for any slower step on this machine; if the dense
# block is told apart ahead, it did not; if they are not told apart, this race cannot say.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
