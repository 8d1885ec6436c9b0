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
# # 11 · Reinforcement learning with verifiable rewards: GRPO from scratch
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/11_rl_verifiable_rewards.ipynb)
#
# Supervised fine-tuning shows a model the answer. Reinforcement learning only tells it, after it has answered,
# how good the answer was. When a program can check the answer (a sum, a unit test, a proof checker) that score
# is cheap, exact and cannot be flattered: a **verifiable reward**. DeepSeek-R1 was trained this way, and many
# open reasoning models since, with GRPO (group-relative policy optimisation): sample several answers to the same prompt, reward each,
# and push up the answers that beat their own group. This notebook builds every piece on 2-digit arithmetic
# with a tiny character-level GPT, checks each against `tinylm.posttrain.grpo` and its trainer, trains, and shows
# what happens when the reward checks the wrong thing.
#
# **What you will learn**
# - a **verifiable reward**: a completion parsed and checked by a program (correct, well-formed, or neither);
# - why RL needs a **starting model** that is sometimes right (answer-only SFT on the task's format), and how often
#   a group of samples is mixed, predicted from the model's accuracy and measured;
# - **group advantages**: each reward against its group's mean and spread, no value network;
# - the **clipped objective** of PPO and GRPO (its true shape for A > 0 and A < 0), averaged per token rather than
#   per completion, the **k3 estimate** of the KL penalty and when it is unbiased, all written by hand and checked
#   against the package's `GRPOTrainer` on the same rollout;
# - a **training run** that chooses its checkpoint on validation problems and reports on separate test problems,
#   with Wilson intervals, and the reward, length and clip curves;
# - **reward hacking**: a reward that pays for the format alone, against the right one at three seeds each, with a
#   verdict by a stated rule.
#
# **How long it takes**: a lesson of about 45 minutes (reading, code and the `cpu` run's 314 s, by the course's
# formula), then a second sitting of about 40 minutes for the 4 exercises (10 minutes each).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; a 1-layer model, 30 SFT steps, 6 GRPO steps, 2 × 3 × 4 steps for reward hacking | seconds |
# | `cpu` (2-core laptop) | a 2-layer, 64-wide model: 1,500 SFT steps; GRPO, the recipe's 5,000 steps (one update each, 2,500 rollouts) or 300 s of training, whichever ends first; 2 rewards × 3 seeds × 100 steps | the last cell prints the measured time |
# | `gpu` | the gpu recipe (not measured) | see [Running on a GPU](README.md#running-on-a-gpu) |
#
# **Papers**: PPO ([Schulman et al., 2017](https://arxiv.org/abs/1707.06347)), the clipped surrogate objective;
# GRPO in DeepSeekMath ([Shao et al., 2024](https://arxiv.org/abs/2402.03300)), group advantages instead of a
# value network; DeepSeek-R1 ([DeepSeek-AI, 2025](https://arxiv.org/abs/2501.12948)), reasoning learned from
# verifiable rewards; DAPO ([Yu et al., 2025](https://arxiv.org/abs/2503.14476)), the per-token loss used here;
# Dr. GRPO ([Liu et al., 2025](https://arxiv.org/abs/2503.20783)), advantages without the std; Schulman's note
# [Approximating KL divergence](http://joschu.net/blog/kl-approx.html), the k3 estimate; DPO
# ([Rafailov et al., 2023](https://arxiv.org/abs/2305.18290)), preference tuning without RL, for contrast
# (notebook 10).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import copy
import random
import re
import time

import matplotlib.pyplot as plt
import torch

import tinylm
import tinylm.course.plotting
from tinylm.course.exercises import check
from tinylm.course.plotting import read_metrics
from tinylm.eval.uncertainty import compare, spread, wilson_interval
from tinylm.paths import runs_dir
from tinylm.posttrain.grpo.objective import clipped_policy_loss, group_advantages, token_logprobs
from tinylm.posttrain.grpo.recipes import GRPO_RECIPES
from tinylm.posttrain.grpo.rollout import greedy_accuracy, sample_groups
from tinylm.posttrain.grpo.run import GRPOOptions, describe, grpo
from tinylm.posttrain.grpo.task_base import pretrain_task_base
from tinylm.posttrain.grpo.tasks import Problem, get_task, held_out_split
from tinylm.posttrain.grpo.trainer import GRPOTrainer, print_grpo_record
from tinylm.train.checkpoint import load_checkpoint, load_model
from tinylm.train.options import RunOptions

NOTEBOOK_STARTED = time.perf_counter()
PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
tinylm.course.plotting.use_projector_style()
print(f"profile {PROFILE}, device {DEVICE}")
# False: GRPO for at most BOUNDED_SECONDS of training on the cpu profile (Colab-safe on any profile: never
# unbounded); True: the profile's whole recipe (cpu: 5,000 steps; gpu: README's "Running on a GPU").
FULL_RECIPE = False
BOUNDED_SECONDS = 300.0

# %% [markdown]
# ## The task and its reward
#
# A problem is a prompt such as `23+34=`; a completion is whatever the model writes after it, read up to the
# first newline. The reward is a program: 1 for the right integer followed by a newline, 0.1 for a well-formed
# integer that is wrong, 0 for anything else (no newline within the budget, stray characters). The 0.1 is a
# small nudge towards the format; the last section shows what happens when the format alone pays.

# %%
# NBVAL_CHECK_OUTPUT
recipe = GRPO_RECIPES[PROFILE]
settings, MAX_NEW = recipe.tasks["arithmetic"]
task = get_task("arithmetic", **settings)
problem = task.sample(random.Random(0))
print(f"settings {settings}, at most {MAX_NEW} new tokens")
for completion in [problem.answer + "\n", str(int(problem.answer) + 1) + "\n", problem.answer, "1+1\n"]:
    print(f"{problem.prompt!r} + {completion!r:10} -> {task.score(problem, completion)}")

# %% [markdown]
# **Held-out problems, two splits.** No training step ever sees a held-out problem. They come in two sets with
# two jobs. The **validation** problems are scored at every evaluation, and the checkpoint kept (`best.pt`) is
# the best of those scores; a best-of-many is biased upward, since some of its lead over the others is the luck
# of those very problems. A run scores the **test** problems twice only, on the starting model and on `best.pt`:
# they choose nothing, so their figures are the ones reported.

# %%
held_out = held_out_split(task, recipe.validation, recipe.test)
print(f"{len(held_out.validation)} validation problems (they choose best.pt), {len(held_out.test)} test problems "
      f"(reported), e.g. {held_out.test[0].prompt!r} -> {held_out.test[0].answer!r}")

# %% [markdown]
# ## The starting model
#
# A policy gradient reinforces what the policy already does sometimes. A random model practically never writes
# `57⏎` after `23+34=`: a reward for correctness alone would pay it nothing. The 0.1 nudge pays its rare
# well-formed answers, so it would learn the format, slowly; supervised training skips that. So RL starts from a
# model that knows the format: a small GPT over the characters the tasks use, trained from random initialisation
# with the loss on the answer only (notebook 9's trick) on fresh training problems. `python -m tinylm.grpo --base pretrain` does
# exactly this, through the same Trainer as every other run (checkpoints, resume, metrics). Until the training
# report, this notebook looks at the validation problems only.

# %%
RUN = runs_dir() / f"notebook-11-{PROFILE}"
base_checkpoint = pretrain_task_base(recipe, task, held_out, MAX_NEW, RUN / f"base-arithmetic-{PROFILE}",
                                     on_record=lambda record: None)
model, tokenizer, _ = load_model(base_checkpoint, DEVICE)
start_accuracy, start_formed = greedy_accuracy(model, tokenizer, task, held_out.validation, MAX_NEW)
low, high = wilson_interval(round(start_accuracy * len(held_out.validation)), len(held_out.validation))
print(f"starting model: greedy validation accuracy {100 * start_accuracy:.1f}% (95% interval {100 * low:.1f}-"
      f"{100 * high:.1f}%), well-formed {100 * start_formed:.1f}%")

# %% [markdown]
# ## Sampling a group
#
# **Predict first**: the model samples 8 answers at temperature 1 for each of 16 problems. Groups whose rewards all
# match teach nothing; a group that holds *both* a right and a wrong answer always teaches. If each sample were right with the same probability p, a group
# of G would be all right with probability pᴳ, all wrong with (1 − p)ᴳ, and mixed otherwise. Write down your
# guess for the share of mixed groups, then run the cell: it measures p and the mixed share, and prints what
# the formula predicts from that p, for groups of 8 and of 2.

# %%
problems = held_out.validation[:16]
rollout = sample_groups(model, tokenizer, task, problems, group_size=8, max_new_tokens=MAX_NEW, seed=0)
for i in range(2):
    print(problems[i].prompt, [c.replace("\n", "⏎") for c in rollout.completions[8 * i : 8 * i + 8]],
          [round(r, 2) for r in rollout.rewards[i].tolist()])  # float32 0.1 would print as 0.10000000149011612
p = rollout.correct.float().mean().item()
mixed = (rollout.correct.any(dim=1) & ~rollout.correct.all(dim=1)).float().mean().item()
predicted_mixed = {G: 1 - p**G - (1 - p) ** G for G in (2, 8)}
print(f"sampled completions correct: p = {p:.3f}; mean completion length {rollout.mean_length:.2f} tokens")
print(f"mixed groups of 8: {100 * mixed:.0f}% of {len(problems)} measured, {100 * predicted_mixed[8]:.1f}% "
      f"predicted from p; a pair would be mixed {100 * predicted_mixed[2]:.1f}% of the time (2·p·(1 − p))")

# %% [markdown]
# The formula treats every problem alike. Real problems are not: some are easy (p near 1), some hard (p near 0),
# and both kinds make uniform groups. The mixed share is concave in p, so for a given mean p, problems of uneven
# difficulty can only lower the expected share below the formula's (Jensen's inequality); the measurement fits. With
# 16 groups it is itself coarse: a Wilson interval on 7 of 16 runs from about a quarter to two thirds. Exercise 4
# asks what a group of two does to training.
#
# The rollout is one right-padded batch: each row is prompt + completion, and `completion_mask` marks the
# positions whose *next* token is a completion token. Only those positions train. The padding is token id 0,
# which is the newline, so in the printout below a row's ⏎ after its answer's own ⏎ is padding, not output.

# %%
row = 0
shown_tokens = [tokenizer.decode([t]).replace("\n", "⏎") for t in rollout.sequences[row].tolist()]
print("tokens:    ", shown_tokens)
print("trains on: ", [shown_tokens[t + 1] for t in range(len(shown_tokens) - 1) if rollout.completion_mask[row, t]])

# %% [markdown]
# ## Group advantages
#
# GRPO needs no learned value function: an answer's advantage is how much better it did than its own group,
# $A_i = (r_i - \mathrm{mean}(r)) / (\mathrm{std}(r) + \epsilon)$. A group where every answer earns the same has
# all advantages 0: groups whose rewards all match (all right, all well-formed and wrong, or all malformed) teach
# nothing. Groups of wrong answers still teach when some are malformed: the well-formed ones earn 0.1 and move up.

# %%
def my_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(prompts, G) rewards -> each reward against its group's mean, in units of the group's std."""
    return (rewards - rewards.mean(dim=1, keepdim=True)) / (rewards.std(dim=1, keepdim=True) + 1e-6)


assert torch.allclose(my_advantages(rollout.rewards), group_advantages(rollout.rewards))
print("rewards:   ", [round(r, 2) for r in rollout.rewards[0].tolist()])
print("advantages:", [round(a, 2) for a in my_advantages(rollout.rewards)[0].tolist()])

# %% [markdown]
# ## The clipped objective, by hand
#
# The update reuses one batch of samples for several optimizer steps. After the first, the policy π_θ is no
# longer the one that sampled (π_old), so each token's term is weighted by the ratio ρ = π_θ / π_old. PPO's
# clip stops paying once ρ has moved more than ε in the advantage's direction:
#
# $$\text{objective} = \min\big(\rho A,\ \mathrm{clip}(\rho, 1-\varepsilon, 1+\varepsilon)\,A\big)$$
#
# The minimum makes it a pessimistic bound. For A > 0 the objective rises with ρ up to 1 + ε and is flat after:
# pushing a good token further pays nothing. For A < 0 it is flat at (1 − ε)·A below 1 − ε (pushing a bad token
# further down pays nothing), then falls as ρA from 1 − ε on, and past 1 + ε the clip never stops it: a bad token
# whose probability went *up* is always penalised in full. The plot computes both curves with the package's loss; the table prints a few of
# their values by hand and by the package:

# %%
# NBVAL_CHECK_OUTPUT
EPS = recipe.clip_eps


def my_objective(ratio: torch.Tensor, advantage: float) -> torch.Tensor:
    return torch.minimum(ratio * advantage, ratio.clamp(1 - EPS, 1 + EPS) * advantage)


def package_objective(ratio: torch.Tensor, advantage: float) -> torch.Tensor:
    """Each ratio as a one-token completion: the package's objective is minus its loss."""
    return torch.stack([-clipped_policy_loss(r.log().view(1, 1), torch.zeros(1, 1), torch.tensor([advantage]),
                                             torch.ones(1, 1, dtype=torch.bool), EPS).loss for r in ratio])


ratios = torch.linspace(0.05, 2.0, 79)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for ax, advantage in zip(axes, (1.0, -1.0)):
    assert torch.allclose(my_objective(ratios, advantage), package_objective(ratios, advantage), atol=1e-6)
    ax.plot(ratios, ratios * advantage, ":", color="gray", label="ρ·A (unclipped)")
    ax.plot(ratios, package_objective(ratios, advantage), color="tab:blue", lw=3, label="min(ρA, clip(ρ)·A)")
    for edge in (1 - EPS, 1 + EPS):
        ax.axvline(edge, color="tab:red", lw=0.8, ls="--")
    ax.set(title=f"A = {advantage:+.0f}", xlabel="ratio ρ = π_θ / π_old", ylabel="objective (per token)")
    ax.legend(fontsize=10)
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
shown_ratios = torch.tensor([0.5, 0.8, 1.0, 1.2, 1.5])
print(f"ε = {EPS}; ρ:            " + "  ".join(f"{r:6.2f}" for r in shown_ratios.tolist()))
for advantage in (1.0, -1.0):
    values = package_objective(shown_ratios, advantage)
    assert torch.allclose(values, my_objective(shown_ratios, advantage), atol=1e-6)
    print(f"objective at A = {advantage:+.0f}: " + "  ".join(f"{v:6.2f}" for v in values.tolist()))

# %% [markdown]
# **Averaged per token, not per completion.** The GRPO paper averages each completion's token terms (a factor
# 1/|oᵢ|), then averages over completions. `tinylm` averages over every completion token of the batch at once, as
# DAPO argues for (Dr. GRPO also drops the 1/|oᵢ|). The difference is weight: per completion, each token of a
# 2-token answer counts three times as much as a token of a 6-token one; per token, all count the same, so a long
# wrong answer is pushed down as hard per token as a short one. On this task completions are all short (the
# sampled mean was 2.89 tokens), so the two weightings differ little; on long reasoning outputs they differ a lot
# (Dr. GRPO's length bias). Two completions at ρ = 1, advantages +1 and −1:

# %%
# NBVAL_CHECK_OUTPUT
toy_mask = torch.tensor([[True, True, False, False, False, False], [True] * 6])  # lengths 2 and 6
toy_advantages = torch.tensor([1.0, -1.0])
terms = torch.stack([my_objective(torch.ones(6), a) for a in toy_advantages.tolist()])  # ρ = 1: each term is A
per_token = (terms * toy_mask).sum() / toy_mask.sum()
per_completion = ((terms * toy_mask).sum(dim=1) / toy_mask.sum(dim=1)).mean()
package = clipped_policy_loss(torch.zeros(2, 6), torch.zeros(2, 6), toy_advantages, toy_mask, EPS).loss
assert torch.isclose(-package, per_token)
print(f"objective per token (tinylm, DAPO): {per_token:+.3f}   per completion (the GRPO paper): {per_completion:+.3f}")

# %% [markdown]
# The clip fraction, the share of tokens where the clipped term is the smaller one, is a health gauge: near 0 when the policy barely moves per batch, large when the learning rate is too high. The whole loss,
# written by hand and checked on the rollout above with random ratios:

# %%
def clipped_loss_by_hand(logp, old_logp, advantages, mask, eps=EPS):
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    objective = torch.minimum(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a)
    clipped = (ratio.clamp(1 - eps, 1 + eps) * a < ratio * a).float()
    return -(objective * mask).sum() / mask.sum(), (clipped * mask).sum() / mask.sum()


with torch.no_grad():
    old = token_logprobs(model, rollout.sequences)
moved = old + 0.3 * torch.randn(old.shape, generator=torch.Generator().manual_seed(0))  # as if after an update
advantages = group_advantages(rollout.rewards).flatten()
mask = rollout.completion_mask.float()
loss, clip_fraction = clipped_loss_by_hand(moved, old, advantages, mask)
package = clipped_policy_loss(moved, old, advantages, rollout.completion_mask)  # default eps, equal to EPS here
assert torch.allclose(loss, package.loss, atol=1e-6) and abs(clip_fraction.item() - package.clip_fraction) < 1e-6
print(f"loss {loss.item():.4f}, clip fraction {clip_fraction.item():.3f}: the same as tinylm.posttrain.grpo.objective")

# %% [markdown]
# **The KL penalty and its estimate.** With a reference model π_ref (the starting policy), GRPO may add
# β·KL(π_θ‖π_ref) to the loss. The KL is a sum over every possible completion, so it is estimated from the sampled
# tokens with k3 = exp(q) − q − 1, q = log π_ref − log π_θ: never negative, and its expected value over tokens
# **sampled from π_θ** equals the KL (an unbiased estimate). GRPO's tokens are sampled from π_old, which equals π_θ only at a rollout's first
# update; from the second, the mean of k3 estimates something else, and an importance weight ρ would correct it.
# On a 4-token distribution, the expectations computed exactly:

# %%
# NBVAL_CHECK_OUTPUT
p_ref, p_old, p_theta = (torch.tensor(v, dtype=torch.float64) for v in
                         ([0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]))
kl = (p_theta * (p_theta / p_ref).log()).sum()
q = (p_ref / p_theta).log()
k3 = q.exp() - q - 1
print(f"KL(π_θ‖π_ref) = {kl:.4f}; mean k3 over samples from π_θ: {(p_theta * k3).sum():.4f}; "
      f"from π_old: {(p_old * k3).sum():.4f}; from π_old weighted by ρ = π_θ/π_old: {(p_old * p_theta / p_old * k3).sum():.4f}")

# %% [markdown]
# ## The package's trainer, checked on its own rollout
#
# `GRPOTrainer` is the Trainer of every other notebook with GRPO's batch source and loss. Each step is one AdamW
# update; a rollout serves `updates` steps. Below, a trainer with a KL penalty (the `kl_coef` set in the code; the recipe's is 0)
# and a larger learning rate (so that ratios move) makes two updates on a first rollout; then a second rollout is
# sampled, by the policy *after* those updates, and one update made on it. The batch it trained on holds the
# sequences, the completion mask, the advantages, π_old's and π_ref's log-probabilities. Each is recomputed here
# from scratch: the rewards from the decoded completions, the advantages by hand, π_old from a copy of the policy
# taken before the second rollout, π_ref from the starting model; then the loss (clipped objective plus β·k3) of
# the policy after the third update, against the trainer's own.

# %%
check_recipe = recipe.replace(train={"learning_rate": 2e-3, "min_lr": 2e-3, "max_steps": 3, "eval_interval": 0},
                              kl_coef=0.05, updates=2)
start = copy.deepcopy(model)
trainer = GRPOTrainer(copy.deepcopy(model), tokenizer, task, check_recipe, held_out, MAX_NEW, device=DEVICE)
trainer.fit(stop_after=2)  # the first rollout and its two updates
sampler = copy.deepcopy(trainer.model)  # π_old of the next rollout
trainer.fit(stop_after=1)  # the second rollout, sampled by `sampler`, and one update on it
sequences, batch_mask, batch_advantages, batch_old, batch_ref = trainer.source.batch


def rewards_of(sequences: torch.Tensor, mask: torch.Tensor, group_size: int) -> torch.Tensor:
    """Decode each row's prompt and completion, score it: (prompts, group_size) rewards."""
    rewards = []
    for row, row_mask in zip(sequences.tolist(), mask.tolist()):
        first = row_mask.index(True)  # the prompt's last position predicts the first completion token
        prompt = tokenizer.decode(row[: first + 1])
        completion = tokenizer.decode([row[t + 1] for t, counted in enumerate(row_mask) if counted])
        a, op, b = re.fullmatch(r"(\d+)([+-])(\d+)=", prompt).groups()
        answer = int(a) + int(b) if op == "+" else int(a) - int(b)
        rewards.append(task.score(Problem(prompt, str(answer)), completion).reward)
    return torch.tensor(rewards).view(-1, group_size)


with torch.no_grad():
    my_adv = my_advantages(rewards_of(sequences, batch_mask, check_recipe.group_size)).flatten()
    my_old, my_ref = token_logprobs(sampler, sequences), token_logprobs(start, sequences)
    my_logp = token_logprobs(trainer.model, sequences)
    my_loss, my_clip = clipped_loss_by_hand(my_logp, my_old, my_adv, batch_mask.float())
    q = my_ref - my_logp
    my_kl = ((q.exp() - q - 1) * batch_mask).sum() / batch_mask.sum()
    package_loss = trainer.batch_loss(trainer.source.batch)
assert torch.allclose(my_adv, batch_advantages, atol=1e-5) and batch_advantages.abs().sum() > 0
assert torch.allclose(my_old, batch_old, atol=1e-5) and torch.allclose(my_ref, batch_ref, atol=1e-5)
assert not torch.allclose(my_old, my_ref, atol=1e-3) and not torch.allclose(my_logp, my_old, atol=1e-3)
assert abs(my_kl.item() - trainer.step_stats()["kl"]) < 1e-6  # k3 of batch_loss above, after the third update
assert torch.isclose(my_loss + check_recipe.kl_coef * my_kl, package_loss, atol=1e-6)
print(f"rollout of {len(sequences)} completions, β = {check_recipe.kl_coef}: advantages, π_old, π_ref, k3 "
      f"({my_kl.item():.5f}) and the loss ({package_loss.item():.5f}, clip fraction {my_clip.item():.3f}) by hand "
      "== GRPOTrainer's")

# %% [markdown]
# ## Training
#
# `grpo` is what `python -m tinylm.grpo --task arithmetic --base pretrain` runs: every rollout draws fresh
# training problems, samples a group of completions for each, computes advantages and π_old, and feeds `updates`
# AdamW steps of the clipped objective, the gradient's norm clipped at 1.0 (`recipe.train.grad_clip`; the
# run's second printed line gives the profile's other numbers). Every `eval_interval` steps it measures the greedy accuracy on the validation problems, and
# best.pt keeps the best. At the end it loads best.pt and scores it on the test problems, as it scored the starting
# model before training: those two figures are the report. It reuses the starting model trained above. On a GPU
# use the gpu profile, timings in [Running on a GPU](README.md#running-on-a-gpu).

# %%
budget = None if FULL_RECIPE or PROFILE == "smoke" else BOUNDED_SECONDS
report = grpo(RunOptions(profile=PROFILE, out=RUN, overwrite=True, max_seconds=budget, device=str(DEVICE)),
              GRPOOptions(task="arithmetic", base="pretrain"),
              on_record=lambda record: record["event"] == "eval" and print_grpo_record(record))

# %%
chosen = report["validation"]["best"]
print(f"test accuracy ({report['test_problems']} problems, greedy, 95% Wilson): {describe(report['before'])} before "
      f"-> {describe(report['after'])} after (best.pt, step {report['after']['step']} of {report['steps']}, "
      f"{report['grpo_seconds']:.0f} s of RL)")
print(f"validation accuracy that chose best.pt: {describe(report['validation']['before'])} at the start, "
      f"{describe(chosen)} at its best, the highest of "
      f"{sum(r['event'] in ('eval', 'final') for r in read_metrics(RUN))} evaluations")
apart = report["after"]["interval"][0] > report["before"]["interval"][1]
print("the test intervals do not overlap: on problems like these, best.pt is more accurate than the start" if apart
      else "the test intervals overlap: this run does not show a gain beyond the test problems' uncertainty")

# %% [markdown]
# Two figures for one checkpoint: the validation accuracy that chose it is the highest of many evaluations of the
# same problems, so in general it carries their luck, and the interval printed beside it is not a valid 95%
# interval (Wilson's assumes one measurement chosen in advance). This run does not show that bias. Validation went
# from 24.8% to 50.6%, test from 27.0% to 51.2%: the splits differ already at the start, the two gains differ by
# far less than the intervals' widths, and best.pt is the last checkpoint (step 5000 of 5000), as validation was
# still rising. The intervals say nothing about the training seed, whose spread for this result is not measured
# (the next section's seeds are 100-step runs).


# %%
records = read_metrics(RUN)
train = [r for r in records if r["event"] == "train"]
evals = [r for r in records if r["event"] in ("eval", "final")]
fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
axes[0].plot([r["step"] for r in train], [r["reward"] for r in train], label="mean reward")
axes[0].plot([r["step"] for r in train], [r["correct"] for r in train], label="sampled correct")
axes[0].set(title="training rollouts", xlabel="GRPO step")
axes[0].legend()
axes[1].plot([r["step"] for r in evals], [100 * r["accuracy"] for r in evals], marker="o", ms=3, label="validation")
axes[1].plot([0, report["after"]["step"]], [100 * report["before"]["accuracy"], 100 * report["after"]["accuracy"]],
             "s", color="tab:red", ms=9, label="test (start, best.pt)")
axes[1].set(title="greedy accuracy", xlabel="GRPO step", ylabel="%")
axes[1].legend()
axes[2].plot([r["step"] for r in train], [r["length"] for r in train])
axes[2].set(title="completion length", xlabel="GRPO step", ylabel="tokens")
axes[3].plot([r["step"] for r in train], [r["clip_fraction"] for r in train])
axes[3].set(title="clip fraction", xlabel="GRPO step")
plt.tight_layout()
plt.show()

# %% [markdown]
# Reading the curves: each training point is the *last* rollout before its record, about one record per 100
# steps, so the training curves are noisy. Mean reward sits just above the sampled-correct share, by 0.1 times
# the share of well-formed wrong answers; both rise, as the validation accuracy does. The completion length stays
# flat, near a short integer and its newline: no growth (DeepSeek-R1 reports its responses lengthening during
# RL). The clip fraction stays at a few hundredths at most: only a rollout's second update can clip, since ρ = 1
# on the first.

# %% [markdown]
# ## Reward hacking
#
# A reward is a specification, and an optimiser reads it literally. Suppose the check forgot to compare the
# number with the answer and paid 1 for any well-formed integer (`--reward format`). **Predict**: after 100
# steps, what happens to the accuracy, and to the completion length? The cell trains both rewards from the same
# starting model, at three seeds each, with the same budget, and scores each run's last model on the test
# problems (no checkpoint is chosen in this comparison). The verdict follows the course's rule: a difference is
# "told apart" only with at least 3 seeds per arm and ranges that do not overlap (with no real difference that
# still happens 1 time in 10 at 3 seeds), else "not told apart". Each line prints the mean over seeds ± half the
# range (not a standard error); a run's completion length is the mean of its training records, one or two rollouts
# in 100 steps.

# %%
steps = 4 if PROFILE == "smoke" else 100
arms = {}
for reward in ("correct", "format"):
    arms[reward] = []
    for seed in (0, 1, 2):
        out = RUN / f"reward-{reward}-seed{seed}"
        grpo(RunOptions(profile=PROFILE, out=out, overwrite=True, seed=seed, max_steps=steps, device=str(DEVICE)),
             GRPOOptions(task="arithmetic", base=str(base_checkpoint), reward=reward), say=lambda line: None,
             on_record=lambda record: None)
        lengths = [r["length"] for r in read_metrics(out) if r["event"] == "train"]
        last_model, _, _ = load_model(out / "last.pt", DEVICE)
        accuracy = greedy_accuracy(last_model, tokenizer, task, held_out.test, MAX_NEW)[0]
        arms[reward].append({"accuracy": accuracy, "length": sum(lengths[-5:]) / len(lengths[-5:])})
print(f"starting model: test accuracy {describe(report['before'])}")
for reward, runs in arms.items():
    print(f"{reward:>7} reward: test accuracy after {steps} steps "
          f"{spread([100 * r['accuracy'] for r in runs]).format(1)} %, completion length "
          f"{spread([r['length'] for r in runs]).format(2)} tokens")
print(compare("the correct reward", [r["accuracy"] for r in arms["correct"]], "the format-only reward",
              [r["accuracy"] for r in arms["format"]], lower_is_better=False, metric="test accuracy"))

# %% [markdown]
# The format-only reward is maximised by any integer with a newline, which the starting model's greedy answers
# already were (well-formed 100.0% at step 0). Its groups teach only where some sample is malformed; how often that
# happened is not printed here. Such a group does not teach *little*: dividing by its small spread gives full-size
# advantages (exercise 2), and Adam turns a small gradient into a full-size step. Those steps pay for being
# well-formed, not right, so nothing holds the accuracy up. Every seed lies within twice the ± of its arm's mean,
# so all three format-only seeds scored below the starting model's 27.0% and all three correct-reward seeds above
# it, and the verdict line tells the two rewards apart. The
# completion length did not shrink: 3.33 ± 0.08 against 3.30 ± 0.11 tokens, ranges that overlap, so not told
# apart. Real hacks have more room: code that passes unit tests by special-casing them
# ([Baker et al., 2025](https://arxiv.org/abs/2503.11926)), a learned reward model that prefers longer answers
# ([Singhal et al., 2023](https://arxiv.org/abs/2310.03716)). The defence is the check itself (what does it fail to
# look at?) plus a held-out measurement that the reward cannot see, as here.
#
# ## What you learned
#
# - A verifiable reward is a program: exact and cheap, and only as good as what it checks.
# - RL can only reinforce what the policy already does sometimes, so it starts from a model that writes the
#   format (answer-only SFT); groups whose answers all score the same teach nothing, and how many are mixed
#   follows from the sampled accuracy, less on real problems of uneven difficulty.
# - GRPO's advantage compares each answer with its own group: no value network.
# - The clipped ratio lets several updates reuse one batch of samples: it stops paying for moving a good token
#   up beyond 1 + ε and a bad one down beyond 1 − ε, and never stops penalising a bad token that went up.
#   `tinylm` averages the objective per token over the batch (DAPO), not per completion (the GRPO paper).
# - k3 is an unbiased estimate of the KL only over tokens sampled from π_θ; GRPO's come from π_old.
# - Choose on validation problems, report on test problems: the best of many evaluations is biased upward in
#   general, though in this run the best was the last checkpoint, so choosing changed nothing.
#
# ## Exercises
#
# **1. The reward.** Write the arithmetic reward: 1.0 for the right integer followed by a newline, 0.1 for any
# other integer (an optional minus sign, then digits) followed by a newline, 0.0 otherwise; the completion is
# read up to its first newline and stripped of spaces. The check compares with `task.score` on many completions.

# %%
# NBVAL_CHECK_OUTPUT
def my_reward(problem, completion: str) -> float:
    raise NotImplementedError


def test_my_reward():
    rng = random.Random(1)
    for _ in range(500):
        p = task.sample(rng)
        for c in [p.answer + "\n", p.answer, "-" + p.answer + "\n", f" {p.answer} \n", "12a\n", "\n", "7\n8\n",
                  "".join(rng.choice("0123456789-+ \n") for _ in range(rng.randint(0, 6)))]:
            assert my_reward(p, c) == task.score(p, c).reward, (p.prompt, c)


check(test_my_reward)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_reward(problem, completion):
#     text, newline, _ = completion.partition("\n")
#     text = text.strip()
#     if not newline or re.fullmatch(r"-?[0-9]+", text) is None:
#         return 0.0
#     return 1.0 if int(text) == int(problem.answer) else 0.1
# ```
# </details>
#
# **2. Advantages without the spread.** Dr. GRPO drops the division by the group's standard deviation, which
# inflates the advantages of groups that barely differ. Write `group_advantages` with a `scale` switch; the check
# compares with `tinylm.posttrain.grpo.objective.group_advantages`.

# %%
# NBVAL_CHECK_OUTPUT
def my_group_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    raise NotImplementedError


def test_my_group_advantages():
    rewards = torch.rand(6, 8, generator=torch.Generator().manual_seed(0)).round()
    for scale in (True, False):
        assert torch.allclose(my_group_advantages(rewards, scale), group_advantages(rewards, scale=scale), atol=1e-6)


check(test_my_group_advantages)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_group_advantages(rewards, scale=True, eps=1e-6):
#     centred = rewards - rewards.mean(dim=1, keepdim=True)
#     return centred / (rewards.std(dim=1, keepdim=True) + eps) if scale else centred
# ```
#
# Take a group of 8 with seven well-formed wrong answers (0.1) and one malformed one (0.0). Unscaled, its
# advantages are a tenth of those of a group of seven right answers and one malformed one; divided by the std, they
# are exactly the same. A format difference of 0.1 then pushes as hard as right against wrong: groups of small
# spread are up-weighted, the difficulty bias Dr. GRPO removes (try both groups with your function).
# </details>
#
# **3. The KL penalty's estimate.** Write k3 = exp(q) − q − 1, q = log π_ref − log π_θ, as the mean over the
# masked tokens; the check compares with the `kl` that `clipped_policy_loss` reports.

# %%
# NBVAL_CHECK_OUTPUT
def my_k3(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> float:
    raise NotImplementedError


def test_my_k3():
    ref = old + 0.2 * torch.randn(old.shape, generator=torch.Generator().manual_seed(1))
    expected = clipped_policy_loss(old, old, advantages, rollout.completion_mask, ref_logp=ref, kl_coef=1.0).kl
    assert abs(my_k3(old, ref, rollout.completion_mask) - expected) < 1e-5


check(test_my_k3)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_k3(logp, ref_logp, mask):
#     q = ref_logp - logp
#     k3 = torch.exp(q) - q - 1
#     return ((k3 * mask).sum() / mask.sum()).item()
# ```
# </details>
#
# **4. Experiment: a group of two.** The sampling cell printed how often a pair is mixed against a group of 8, at
# the starting model's sampled accuracy. A group of two also samples a quarter as many completions per rollout.
# **Predict**, then run: train the reward-hacking cell's recipe once more with the correct reward, seed 0 and
# `group_size=2`, into `RUN / "group2-seed0"` (same starting model, same number of updates, but not the same
# number of samples, so the budget differs too), score its last model on the test problems as that cell does,
# and set `my_group2_accuracy` to the result. The check reads your run's folder (group
# size 2, the correct reward, the steps), scores its last model itself, and prints it beside the groups of 8.

# %%
# NBVAL_CHECK_OUTPUT
my_group2_accuracy = None  # replace with your measurement: the test accuracy of your group-of-2 run's last model


def test_group2_accuracy():
    if my_group2_accuracy is None:
        raise NotImplementedError("set my_group2_accuracy to the test accuracy of your group-of-2 run")
    out = RUN / "group2-seed0"
    saved = load_checkpoint(out / "last.pt")
    settings = saved["grpo"]["settings"]
    assert settings["group_size"] == 2 and settings["reward"] == "correct" and saved["step"] == steps, settings
    last_model, _, _ = load_model(out / "last.pt", DEVICE)
    measured = greedy_accuracy(last_model, tokenizer, task, held_out.test, MAX_NEW)[0]
    assert abs(my_group2_accuracy - measured) < 1e-9, f"your run's last model scores {measured}"
    print(f"group of 2: {100 * measured:.1f}%; groups of 8: {[round(100 * r['accuracy'], 1) for r in arms['correct']]}"
          f"; the start: {100 * report['before']['accuracy']:.1f}% (test accuracy)")


check(test_group2_accuracy)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# out = RUN / "group2-seed0"
# grpo(RunOptions(profile=PROFILE, out=out, overwrite=True, seed=0, max_steps=steps, device=str(DEVICE)),
#      GRPOOptions(task="arithmetic", base=str(base_checkpoint), group_size=2), say=lambda line: None,
#      on_record=lambda record: None)
# last_model, _, _ = load_model(out / "last.pt", DEVICE)
# my_group2_accuracy = greedy_accuracy(last_model, tokenizer, task, held_out.test, MAX_NEW)[0]
# ```
#
# One seed of each group size cannot tell them apart by the course's rule; three seeds of the group of two against
# the three above may, if every seed of one beats every seed of the other. Expect fewer mixed groups and fewer
# samples to learn from per step. This compares equal updates, not equal samples; equal samples would need four
# times the prompts per rollout, which `grpo` does not expose.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
