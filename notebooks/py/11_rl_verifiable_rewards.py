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
# is cheap, exact and cannot be flattered: a **verifiable reward**. Today's reasoning models are trained this
# way, with GRPO (group-relative policy optimisation): sample several answers to the same prompt, reward each,
# and push up the answers that beat their own group. This notebook builds every piece on 2-digit arithmetic
# with a tiny character-level GPT, checks each against `tinylm.posttrain`, trains, and shows what happens when the
# reward checks the wrong thing.
#
# **What you will learn**
# - a **verifiable reward**: a completion parsed and checked by a program (correct, well-formed, or neither);
# - why RL needs a **starting model** that is sometimes right (answer-only SFT on the task's format);
# - **sampling a group** of completions per prompt with the KV cache, and the mask of the tokens that train;
# - **group advantages**: each reward against its group's mean and spread, no value network;
# - the **clipped objective** of PPO and GRPO, written by hand and checked against `tinylm.posttrain.grpo`, and what
#   the clip fraction measures;
# - a **training run** through the package with held-out accuracy before and after (Wilson intervals), and
#   the reward, length and clip curves;
# - **reward hacking**: a reward that pays for the format alone, trained at two seeds, and what it does to
#   accuracy and length.
#
# **How long it takes**: about 45 minutes of study.
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; a 1-layer model, 30 SFT steps, 6 GRPO steps, 2 × 2 × 4 steps for reward hacking | seconds |
# | `cpu` (2-core laptop) | a 2-layer, 64-wide model: 1,500 SFT steps, GRPO for 300 s of training (`FULL_RECIPE = True`: the cpu recipe's 5,000 steps, 2,500 rollouts), 2 rewards × 2 seeds × 200 steps | 252 s (measured on an idle 2-core machine before GRPO ran in the one Trainer; its 2,500 rollouts took 195 s of it) |
# | `gpu` | the gpu recipe (not measured) | see [Running on a GPU](../README.md#running-on-a-gpu) |
#
# **Papers**: PPO ([Schulman et al., 2017](https://arxiv.org/abs/1707.06347)), the clipped surrogate objective;
# DPO ([Rafailov et al., 2023](https://arxiv.org/abs/2305.18290)), preference tuning without RL, for contrast
# (notebook 10); GRPO in DeepSeekMath ([Shao et al., 2024](https://arxiv.org/abs/2402.03300)), group advantages
# instead of a value network; DeepSeek-R1 ([DeepSeek-AI, 2025](https://arxiv.org/abs/2501.12948)), reasoning
# learned from verifiable rewards alone.

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import random

import matplotlib.pyplot as plt
import torch

import tinylm
import tinylm.course.plotting
from tinylm.course.exercises import check
from tinylm.course.plotting import read_metrics
from tinylm.eval.uncertainty import compare, spread, wilson_interval
from tinylm.paths import runs_dir
from tinylm.posttrain.grpo import clipped_policy_loss, group_advantages, print_rl_record, token_logprobs
from tinylm.posttrain.grpo_recipes import RL_RECIPES
from tinylm.posttrain.grpo_run import describe, reinforce
from tinylm.posttrain.rollout import held_out_accuracy, sample_groups
from tinylm.posttrain.task_base import pretrain_task_base
from tinylm.posttrain.tasks import get_task, held_out_problems
from tinylm.train.checkpoint import load_model

PROFILE = tinylm.resolve_profile()
DEVICE = tinylm.resolve_device()
tinylm.configure_backend(DEVICE)  # process-wide speed settings: one CPU thread per free core, TF32 on CUDA
tinylm.course.plotting.use_projector_style()
print(f"profile {PROFILE}, device {DEVICE}")
# False: GRPO for BOUNDED_SECONDS of training on the cpu profile (Colab-safe on any profile: never unbounded);
# True: the profile's whole recipe (cpu: 5,000 steps; gpu: README's "Running on a GPU").
FULL_RECIPE = False
BOUNDED_SECONDS = 300.0

# %% [markdown]
# ## The task and its reward
#
# A problem is a prompt such as `23+34=`; a completion is whatever the model writes after it, read up to the
# first newline. The reward is a program: 1 for the right integer followed by a newline, 0.1 for a well-formed
# integer that is wrong, 0 for anything else (no newline within the budget, stray characters). The 0.1 is a
# small nudge towards the format; whether that nudge is safe is the last section's question.

# %%
recipe = RL_RECIPES[PROFILE]
settings, MAX_NEW = recipe.tasks["arithmetic"]
task = get_task("arithmetic", **settings)
held_out = held_out_problems(task, recipe.held_out)
problem = task.sample(random.Random(0))
print(f"settings {settings}; {len(held_out)} held-out problems, e.g. {held_out[0].prompt!r} -> {held_out[0].answer!r}")
for completion in [problem.answer + "\n", str(int(problem.answer) + 1) + "\n", problem.answer, "1+1\n"]:
    print(f"{problem.prompt!r} + {completion!r:10} -> {task.score(problem, completion)}")

# %% [markdown]
# ## The starting model
#
# A policy gradient reinforces what the policy already does sometimes. A random model never writes `57⏎`
# after `23+34=`, so every reward is 0, every advantage is 0, and nothing is learned. So RL starts from a model
# that knows the format: a small GPT over the 20 characters the tasks use, fine-tuned with the loss on the
# answer only (notebook 9's trick) on fresh training problems. `python -m tinylm.rl --base pretrain` does
# exactly this, through the same Trainer as every other run (checkpoints, resume, metrics).

# %%
RUN = runs_dir() / f"notebook-11-{PROFILE}"
base_checkpoint = pretrain_task_base(recipe, task, held_out, MAX_NEW, RUN / f"base-arithmetic-{PROFILE}",
                                     on_record=lambda record: None)
model, tokenizer, _ = load_model(base_checkpoint, DEVICE)
start_accuracy, start_formed = held_out_accuracy(model, tokenizer, task, held_out, MAX_NEW)
low, high = wilson_interval(round(start_accuracy * len(held_out)), len(held_out))
print(f"starting model: greedy held-out accuracy {100 * start_accuracy:.1f}% (95% interval {100 * low:.1f}-"
      f"{100 * high:.1f}%), well-formed {100 * start_formed:.1f}%")

# %% [markdown]
# ## Sampling a group
#
# **Predict first**: the model is right on some share of the held-out problems when it answers greedily. If it
# samples 8 answers at temperature 1 for each of 16 problems, what share of those 16 groups hold *both* a right
# and a wrong answer? Only those groups teach anything. Write your guess down, then run the cell.

# %%
problems = held_out[:16]
rollout = sample_groups(model, tokenizer, task, problems, group_size=8, max_new_tokens=MAX_NEW, seed=0)
for i in range(2):
    print(problems[i].prompt, [c.replace("\n", "⏎") for c in rollout.completions[8 * i : 8 * i + 8]],
          [round(r, 2) for r in rollout.rewards[i].tolist()])  # float32 0.1 would print as 0.10000000149011612
mixed = (rollout.correct.any(dim=1) & ~rollout.correct.all(dim=1)).float().mean().item()
print(f"sampled completions correct: {100 * rollout.correct.float().mean():.1f}%; groups with both a right and a "
      f"wrong answer: {100 * mixed:.0f}% of {len(problems)}; mean completion length {rollout.mean_length:.2f} tokens")

# %% [markdown]
# The rollout is one right-padded batch: each row is prompt + completion, and `completion_mask` marks the
# positions whose *next* token is a completion token. Only those positions train.

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
# all advantages 0: on a problem the model always solves (or never does) there is nothing to learn.

# %%
by_hand = (rollout.rewards - rollout.rewards.mean(dim=1, keepdim=True)) / (rollout.rewards.std(dim=1, keepdim=True)
                                                                         + 1e-6)
assert torch.allclose(by_hand, group_advantages(rollout.rewards))
print("rewards:   ", [round(r, 2) for r in rollout.rewards[0].tolist()])
print("advantages:", [round(a, 2) for a in by_hand[0].tolist()])

# %% [markdown]
# ## The clipped objective, by hand
#
# The update reuses one batch of samples for several optimizer steps. After the first, the policy π_θ is no
# longer the one that sampled (π_old), so each token's term is weighted by the ratio ρ = π_θ / π_old. PPO's
# clip stops paying once ρ has moved more than ε in the advantage's direction:
#
# $$\text{objective} = \min\big(\rho A,\ \mathrm{clip}(\rho, 1-\varepsilon, 1+\varepsilon)\,A\big)$$
#
# averaged over every completion token of the batch (each token of a completion shares its advantage). The
# clip fraction is the share of tokens where the clipped term is the smaller one: a health gauge, near 0 when
# the policy barely moves per batch, large when the learning rate is too high.
#
# ```
#  objective, A > 0          objective, A < 0
#      |      ______              |\
#      |     /                    | \
#      |    /                     |  \______
#      |   /                      |
#      +--1--1+ε--> ρ             +--1-ε--1--> ρ
# ```

# %%
def clipped_loss_by_hand(logp, old_logp, advantages, mask, eps=0.2):
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
package = clipped_policy_loss(moved, old, advantages, rollout.completion_mask)
assert torch.allclose(loss, package.loss, atol=1e-6) and abs(clip_fraction.item() - package.clip_fraction) < 1e-6
print(f"loss {loss.item():.4f}, clip fraction {clip_fraction.item():.3f}: the same as tinylm.posttrain.grpo")

# %% [markdown]
# ## Training
#
# `reinforce` is what `python -m tinylm.rl --task arithmetic --base pretrain` runs: every rollout draws fresh
# training problems, samples a group of completions for each and computes advantages and π_old; the rollout then
# serves `updates` steps, each one AdamW update of the clipped objective with the gradient's norm clipped (the first
# line it prints gives the profile's numbers: prompts per rollout, group size, updates, learning rate). Every
# `eval_interval` steps it measures the
# greedy accuracy on the held-out problems; best.pt keeps the best. It reuses the starting model trained above.
# One line of GPU logistics: on a GPU use the gpu profile, timings in
# [Running on a GPU](../README.md#running-on-a-gpu).

# %%
budget = None if FULL_RECIPE or PROFILE == "smoke" else BOUNDED_SECONDS
report = reinforce("arithmetic", base="pretrain", profile=PROFILE, out=RUN, overwrite=True, max_seconds=budget,
                   device=str(DEVICE), on_record=lambda record: record["event"] == "eval" and print_rl_record(record))
print(f"held-out accuracy, greedy, 95% Wilson intervals: {describe(report['before'])} before -> "
      f"{describe(report['after'])} after (best.pt at step {report['after']['step']} of {report['steps']}, "
      f"{report['rl_seconds']:.0f} s of RL)")
apart = report["after"]["interval"][0] > report["before"]["interval"][1]
print("the intervals do not overlap: a real gain" if apart else
      "the intervals overlap: this run does not show a gain larger than the measurement's uncertainty")

# %%
records = read_metrics(RUN)
train = [r for r in records if r["event"] == "train"]
evals = [r for r in records if r["event"] == "eval"]
fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
axes[0].plot([r["step"] for r in train], [r["reward"] for r in train], label="mean reward")
axes[0].plot([r["step"] for r in train], [r["correct"] for r in train], label="sampled correct")
axes[0].set(title="training batches", xlabel="GRPO step")
axes[0].legend()
axes[1].plot([r["step"] for r in evals], [100 * r["accuracy"] for r in evals], marker="o")
axes[1].set(title="held-out accuracy (greedy)", xlabel="GRPO step", ylabel="%")
axes[2].plot([r["step"] for r in train], [r["length"] for r in train])
axes[2].set(title="completion length", xlabel="GRPO step", ylabel="tokens")
axes[3].plot([r["step"] for r in train], [r["clip_fraction"] for r in train])
axes[3].set(title="clip fraction", xlabel="GRPO step")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Reward hacking
#
# A reward is a specification, and an optimiser reads it literally. Suppose the check forgot to compare the
# number with the answer and paid 1 for any well-formed integer (`--reward format`). **Predict**: after 100
# rollouts (200 steps), what happens to the held-out accuracy, and to the completion length? The cell trains both rewards from
# the same starting model, at two seeds each, with the same budget, and prints the comparison.

# %%
steps = 4 if PROFILE == "smoke" else 200  # cpu: 100 rollouts of 2 updates
arms = {}
for reward in ("correct", "format"):
    arms[reward] = []
    for seed in (0, 1):
        result = reinforce("arithmetic", base=str(base_checkpoint), profile=PROFILE, seed=seed, reward=reward,
                           out=RUN / f"reward-{reward}-seed{seed}", overwrite=True, max_steps=steps, max_seconds=None,
                           device=str(DEVICE), say=lambda line: None, on_record=lambda record: None)
        lengths = [r["length"] for r in read_metrics(RUN / f"reward-{reward}-seed{seed}") if r["event"] == "train"]
        final = read_metrics(RUN / f"reward-{reward}-seed{seed}")[-1]
        arms[reward].append({"accuracy": final["accuracy"], "length": sum(lengths[-5:]) / len(lengths[-5:])})
for reward, runs in arms.items():
    print(f"{reward:>7} reward: held-out accuracy after {steps} steps "
          f"{spread([100 * r['accuracy'] for r in runs]).format(1)} %, completion length "
          f"{spread([r['length'] for r in runs]).format(2)} tokens")
print(compare("the correct reward", [r["accuracy"] for r in arms["correct"]], "the format-only reward",
              [r["accuracy"] for r in arms["format"]], lower_is_better=False, metric="held-out accuracy"))

# %% [markdown]
# The format-only reward is maximised by any short integer with a newline, which the starting model already
# writes almost always: its groups mostly hold equal rewards, and what little gradient there is pays for being
# well-formed, not for being right, so nothing holds the accuracy up. Real reward hacks are the same story with
# more room: a unit-test reward that a program passes by special-casing the tests, a length-normalised reward
# that pays for padding. The defence is the check itself (what does it fail to look at?) plus a held-out
# measurement that the reward cannot see, as here.
#
# ## What you learned
#
# - A verifiable reward is a program: exact and cheap, and only as good as what it checks.
# - RL can only reinforce what the policy already does sometimes, so it starts from a model that writes the
#   format (answer-only SFT); groups whose answers all score the same teach nothing.
# - GRPO's advantage compares each answer with its own group: no value network.
# - The clipped ratio lets several updates reuse one batch of samples without moving too far from the sampler.
# - Held-out accuracy, with its interval, is the measurement; the training reward is not.
#
# ## Exercises
#
# **1. The reward.** Write the arithmetic reward: 1.0 for the right integer followed by a newline, 0.1 for any
# other integer (an optional minus sign, then digits) followed by a newline, 0.0 otherwise; the completion is
# read up to its first newline and stripped of spaces. The check compares with `task.score` on many completions.

# %%
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
# import re
#
# def my_reward(problem, completion):
#     text, newline, _ = completion.partition("\n")
#     text = text.strip()
#     if not newline or re.fullmatch(r"-?[0-9]+", text) is None:
#         return 0.0
#     return 1.0 if int(text) == int(problem.answer) else 0.1
# ```
# </details>
#
# **2. Advantages without the spread.** "Dr. GRPO" ([Liu et al., 2025](https://arxiv.org/abs/2503.20783)) drops
# the division by the group's standard deviation, which inflates the advantages of groups that barely differ.
# Write `group_advantages` with a `scale` switch; the check compares with `tinylm.posttrain.grpo.group_advantages`.

# %%
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
# </details>
#
# **3. The KL penalty's estimate.** With a reference model, GRPO adds β·KL(π_θ‖π_ref), estimated per sampled
# token with k3 = exp(q) − q − 1, q = log π_ref − log π_θ (always ≥ 0, unbiased). Write it as the mean over the
# masked tokens; the check compares with the `kl` that `clipped_policy_loss` reports.

# %%
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
# **4. Experiment: a group of two.** GRPO learns only from groups whose completions earn different rewards. Run
# the reward-hacking cell's recipe once more with the correct reward, seed 0 and `group_size=2` (same starting
# model, same number of steps), and write down its held-out accuracy after those steps (the last record's
# `accuracy` in its metrics). Before running, predict: how often does a pair of completions disagree when the model
# is right a fifth of the time? The check accepts anything from the starting model's accuracy less 10 points to
# the best group-of-8 run above plus 10 points: with half the disagreeing groups of G = 8 (or fewer) it should
# not beat them by much.

# %%
my_group2_accuracy = None  # replace with your measurement, a share between 0 and 1


def test_group2_accuracy():
    if my_group2_accuracy is None:
        raise NotImplementedError("set my_group2_accuracy to the held-out accuracy of your group-of-2 run")
    low = report["before"]["accuracy"] - 0.10
    high = max(r["accuracy"] for r in arms["correct"]) + 0.10
    assert low <= my_group2_accuracy <= high, f"{my_group2_accuracy} is outside [{low:.3f}, {high:.3f}]"


check(test_group2_accuracy)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# out = RUN / "group2-seed0"
# reinforce("arithmetic", base=str(base_checkpoint), profile=PROFILE, seed=0, group_size=2, out=out, overwrite=True,
#           max_steps=steps, max_seconds=None, device=str(DEVICE), say=lambda line: None, on_record=lambda record: None)
# my_group2_accuracy = read_metrics(out)[-1]["accuracy"]
# print(f"group of 2: {100 * my_group2_accuracy:.1f}% after {steps} steps; groups of 8: "
#       f"{[round(100 * r['accuracy'], 1) for r in arms['correct']]}")
# ```
#
# With p = 0.2, two completions disagree with probability 2·p·(1 − p) = 0.32, eight completions are not all alike
# with probability 1 − 0.2⁸ − 0.8⁸ ≈ 0.83: a group of two wastes two thirds of its samples.
# </details>
