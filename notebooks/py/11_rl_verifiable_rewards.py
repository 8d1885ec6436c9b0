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
# # 11 · Reinforcement learning with verifiable rewards: the policy gradient, GRPO and its controls
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/11_rl_verifiable_rewards.ipynb)
#
# Supervised fine-tuning shows a model the answer. Reinforcement learning only tells it, after it has answered,
# how good the answer was. When a program can check the answer (a unit test, a proof checker, or notebook 9's story
# verifier) that score is cheap and exact: a **verifiable reward**. DeepSeek-R1 and many open reasoning models were
# trained this way with GRPO: sample several replies to one prompt, score each, and push up the replies that beat
# their own group. This notebook derives the policy gradient and checks it on a toy policy, builds the clipped
# update that reuses samples, then runs GRPO on notebook 9's story model with the verifier as the reward, against a
# control that gives supervised training the same seconds, and shows a reward that can be gamed.
#
# **What you will learn**
# - the **policy gradient** ∇E[r] = E[(r − b)∇log π] from one line of calculus, why a **baseline** b leaves it
#   unbiased and lowers its variance, and GRPO's group mean as a baseline, all checked on a toy policy against the
#   exact gradient;
# - the **ratio and the clip**: what lets a second update reuse the same samples, and the clip acting;
# - **GRPO on the story task**: groups of replies scored by the verifier, advantages within a group, the run and its
#   curves;
# - **controls**: the same seconds of supervised training from the same start, scored the same way, and **pass@1
#   against pass@8**, a first look at whether RL made the model do more often what it could already do or taught it
#   something new, and why k = 8 on 100 instructions cannot settle it; a verdict by the course's rule;
# - **reward hacking**: a reward with a loophole, the policy taking it, and the check that catches it.
#
# **How long it takes**: a lesson of about 55 minutes (reading, code and the `cpu` run's 354 s, by the course's
# formula), then a second sitting of about 43 minutes for the 4 exercises (10 minutes each, and 191 s of training).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; a few GRPO steps on 2 prompts, 8 test instructions | seconds |
# | `cpu` (2-core laptop) | from notebook 9's story model: GRPO (24 updates: 12 rollouts of 8 instructions × 8 replies, 2 updates each), supervised training for the same seconds, and GRPO on a reward with a loophole for 64 updates | the last cell prints it (with notebook 9's run present; else its SFT runs first) |
# | `gpu` | the same on the gpu profile's story model (`python -m tinylm.sft --task stories --profile gpu`, then `python -m tinylm.grpo --task stories --profile gpu`; pass@k there is pass@16) | not measured |
#
# **Papers**: REINFORCE ([Williams, 1992](https://doi.org/10.1007/BF00992696)), the policy gradient with a
# baseline; PPO ([Schulman et al., 2017](https://arxiv.org/abs/1707.06347)), the clipped ratio; GRPO in
# DeepSeekMath ([Shao et al., 2024](https://arxiv.org/abs/2402.03300)), group baselines instead of a value network;
# RLOO's leave-one-out baseline ([Ahmadian et al., 2024](https://arxiv.org/abs/2402.14740)); Dr. GRPO
# ([Liu et al., 2025](https://arxiv.org/abs/2503.20783)), advantages centred but not divided by the spread;
# pass@k and its unbiased estimate ([Chen et al., 2021](https://arxiv.org/abs/2107.03374)); DeepSeek-R1
# ([DeepSeek-AI, 2025](https://arxiv.org/abs/2501.12948)); DAPO ([Yu et al., 2025](https://arxiv.org/abs/2503.14476)),
# the per-token loss used here; does RL reach beyond the base model? ([Yue et al., 2025](https://arxiv.org/abs/2504.13837));
# TinyStories ([Eldan & Li, 2023](https://arxiv.org/abs/2305.07759)); reward hacking in code
# ([Baker et al., 2025](https://arxiv.org/abs/2503.11926)) and in length
# ([Singhal et al., 2023](https://arxiv.org/abs/2310.03716)).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import dataclasses
import json
import time

import matplotlib.pyplot as plt
import torch

import tinylm
import tinylm.course.plotting
from tinylm.config import TrainConfig
from tinylm.course.exercises import check
from tinylm.course.plotting import read_metrics
from tinylm.data.conversations import ConversationLoader
from tinylm.data.instruct import build_examples
from tinylm.eval.uncertainty import compare, paired, wilson_interval
from tinylm.paths import runs_dir, shown
from tinylm.posttrain.grpo.objective import clipped_policy_loss, group_advantages
from tinylm.posttrain.grpo.rollout import pass_at_k, sample_groups, sampled_pass_at
from tinylm.posttrain.grpo.run import grpo
from tinylm.posttrain.grpo.trainer import GRPOTrainer, format_grpo_record
from tinylm.posttrain.job import PostTrainingOptions
from tinylm.posttrain.recipes import changed
from tinylm.posttrain.replies import greedy_completions
from tinylm.posttrain.sft.run import sft
from tinylm.posttrain.sft.trainer import SFTTrainer
from tinylm.posttrain.task import clipped, measure
from tinylm.posttrain.tasks.stories import Stories
from tinylm.tokenizers.chat_template import ChatTemplate
from tinylm.train.checkpoint import load_checkpoint, load_model
from tinylm.train.options import RunOptions

NOTEBOOK_STARTED = time.perf_counter()
PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
SEED = 42
RUN = runs_dir() / f"notebook-11-{PROFILE}"
tinylm.course.plotting.use_projector_style()
print(f"profile {PROFILE}, device {DEVICE}")


def quiet(_):
    pass

# %% [markdown]
# ## The policy gradient
#
# A policy π_θ gives each reply a a probability π_θ(a); a program gives it a reward r(a). Training should raise the
# expected reward J(θ) = E_{a∼π_θ}[r(a)] = Σ_a π_θ(a) r(a). Its gradient is a sum over every possible reply, which
# nobody can enumerate, but one identity, ∇π = π ∇log π, turns it into an expectation that samples estimate:
#
# $$\nabla J = \sum_a r(a)\,\nabla\pi_\theta(a) = \sum_a \pi_\theta(a)\, r(a)\,\nabla\log\pi_\theta(a)
#   = \mathbb{E}_{a\sim\pi_\theta}\big[r(a)\,\nabla\log\pi_\theta(a)\big].$$
#
# Sample replies, and move each one's log-probability in proportion to its reward (REINFORCE, Williams 1992). In
# code that is one loss, −mean(r·log π(a)) over the samples, and autograd. The reward needs no gradient: it can be
# any program.
#
# **The baseline.** Any b that does not depend on the sampled reply can be subtracted from r for free, because the
# score function has mean zero: E[∇log π] = Σ_a π ∇log π = Σ_a ∇π = ∇Σ_a π = ∇1 = 0. So
# ∇J = E[(r − b)∇log π] for every such b: it stays **unbiased**. It does change the variance. With rewards of 0
# and 1 and no baseline, a failed reply contributes nothing and a passed reply raises its own log-probability; with
# b ≈ E[r] a failure is pushed *down* and a pass up, each by how surprising it was, so here fewer samples give the
# same precision. The difference A = r − b is the **advantage**. GRPO's b is the mean reward of its group, the G
# replies to the same prompt, the reply itself included. The mean of the *other* G − 1 replies (leave-one-out, as in
# RLOO) does not depend on the reply, so it is a valid baseline: the estimate stays unbiased. The group mean with the reply in it gives
# (G − 1)/G times the leave-one-out advantage, so it shrinks the gradient by that factor: a change of step size,
# not of direction.
#
# The check below uses a policy over 6 replies with logits θ and pass/fail rewards. The exact gradient of J comes
# from autograd on Σ π r. First without sampling: the loss −Σ π(a)·A(a)·log π(a), every reply weighted by its
# probability (π held fixed), has exactly −∇J as its gradient, whatever the constant b. Then each estimate is
# autograd on −mean(A·log π) over a group of 8 samples, repeated over thousands of groups. The check accepts an
# estimator as unbiased when the mean of its repeats lies within four and a half standard errors of the target on
# every coordinate (a statistical tolerance: with another sampling seed, an unbiased estimator would fail it fewer
# than once in ten thousand tries).

# %%
# NBVAL_CHECK_OUTPUT
rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # which of the 6 replies pass
theta = torch.tensor([0.5, 1.0, -0.5, 0.0, 0.8, -1.0], dtype=torch.float64, requires_grad=True)
pi = torch.softmax(theta, 0).detach()
expected_reward = (torch.softmax(theta, 0) * rewards).sum()
exact = torch.autograd.grad(expected_reward, theta)[0]
score_mean = torch.autograd.grad((pi * torch.log_softmax(theta, 0)).sum(), theta)[0]  # E[∇log π]
assert score_mean.abs().max() < 1e-12
print(f"π = {[round(p, 3) for p in pi.tolist()]}, J = E[r] = {expected_reward.item():.3f}")
print(f"exact ∇J = {[round(g, 4) for g in exact.tolist()]}")
for b in (0.0, expected_reward.item()):  # every reply weighted by π, no sampling: the loss's gradient is exactly −∇J
    weighted = torch.autograd.grad(-(pi * (rewards - b) * torch.log_softmax(theta, 0)).sum(), theta)[0]
    assert torch.allclose(-weighted, exact, rtol=1e-12, atol=1e-15)
print("−Σ π·(r − b)·log π, π held fixed: its gradient is −∇J exactly, for b = 0 and b = E[r]")

G, REPEATS = 8, 4000
generator = torch.Generator().manual_seed(0)
draws = torch.multinomial(pi.expand(REPEATS, -1), G, replacement=True, generator=generator)  # (REPEATS, G) replies
baselines = {"none (b = 0)": lambda r: torch.zeros_like(r),
             "b = E[r], exact": lambda r: torch.full_like(r, expected_reward.item()),
             "the others' mean": lambda r: (r.sum() - r) / (G - 1),  # leave-one-out
             "the group's mean (GRPO)": lambda r: r.mean().expand(G)}
for name, baseline in baselines.items():
    estimates = []
    for drawn in draws:
        r = rewards[drawn]
        advantage = r - baseline(r)
        loss = -(advantage * torch.log_softmax(theta, 0)[drawn]).mean()
        estimates.append(-torch.autograd.grad(loss, theta)[0])  # the loss's gradient, negated: ascent on J
    estimates = torch.stack(estimates)
    target = exact * ((G - 1) / G if "GRPO" in name else 1)  # the group mean with the reply in it: (G − 1)/G of ∇J
    z = ((estimates.mean(0) - target) / (estimates.std(0) / REPEATS**0.5)).abs().max().item()
    assert z < 4.5, (name, z)  # within 4.5 standard errors on every coordinate
    print(f"{name:>24}: mean / target {estimates.mean(0).dot(target).item() / target.dot(target).item():.3f}, "
          f"largest error {z:.1f} standard errors, variance of one group's estimate (summed over the 6 coordinates) "
          f"{estimates.var(0).sum():.4f}")

# %% [markdown]
# Every baseline's mean lands on its target within the statistical tolerance: subtracting a b that does not depend
# on the reply leaves the gradient unbiased, and the group mean with the reply in it gives (G − 1)/G of it. The
# variance is what changes, and the last column measures it: the baseline near E[r] needs fewer groups than no
# baseline for the same precision. The leave-one-out baseline is unbiased and needs about a quarter more groups than
# the exact E[r] (0.0214 against 0.0168; no baseline: 0.0445), with nothing known in advance, which is why GRPO needs
# no value network: the group is the baseline. The GRPO row's variance is the lowest only because its estimate is
# the leave-one-out one scaled by (G − 1)/G, which scales the variance by ((G − 1)/G)²: relative to the squared
# target it equals the leave-one-out row's (0.0164 / (7/8)² = 0.0214). GRPO also divides each advantage by its group's
# standard deviation, a rescaling per prompt; that spread is measured on the same samples, so the scaled estimate is
# no longer exactly unbiased, which the check above does not test (exercise 2 looks at what it weighs up).
#
# ## Reusing samples: the ratio and the clip
#
# Sampling replies from a language model costs far more than an update, so PPO and GRPO make several updates on
# one batch of samples. After the first update the policy π_θ is no longer the one that sampled, π_old, and the
# estimate above would be wrong. Importance weighting repairs it: E_{π_old}[ρ A ∇log π_θ] with ρ = π_θ(a)/π_old(a)
# is what E_{π_θ}[A ∇log π_θ] would be, and ∇ρ = ρ ∇log π_θ, so the loss is −mean(ρ·A). At θ = θ_old, ρ = 1 and its
# gradient *is* the policy gradient. Far from θ_old a few samples with large ρ dominate and the estimate is no
# longer trustworthy (A itself was measured for π_old). PPO's clip bounds the move:
#
# $$\text{objective} = \min\big(\rho A,\ \mathrm{clip}(\rho, 1-\varepsilon, 1+\varepsilon)\,A\big)$$
#
# For A > 0 it stops paying once ρ passes 1 + ε; for A < 0, once ρ falls below 1 − ε; a sample whose ratio moved the
# wrong way is never clipped. A clipped sample's gradient is zero. The toy policy below samples one group, then
# makes eight updates on it, with the clip and without (an ε so wide it never binds), through the package's loss.

# %%
# NBVAL_CHECK_OUTPUT
EPS = Stories.recipe("grpo", PROFILE).clip_eps
theta_old = theta.detach().clone()
group = torch.multinomial(pi, G, replacement=True, generator=torch.Generator().manual_seed(1))  # G replies
advantage = group_advantages(rewards[group].view(1, G)).flatten()  # GRPO's: centred, divided by the spread
old_logp = torch.log_softmax(theta_old, 0)[group]
print(f"ε = {EPS}; the group's rewards {rewards[group].tolist()}")


def surrogate(params: torch.Tensor, eps: float):
    """The package's clipped loss with each sample as a one-token completion."""
    logp = torch.log_softmax(params, 0)[group]
    return clipped_policy_loss(logp.view(G, 1), old_logp.view(G, 1), advantage, torch.ones(G, 1, dtype=torch.bool),
                               eps)


policy_gradient = torch.autograd.grad(-(advantage * torch.log_softmax(theta, 0)[group]).mean(), theta)[0]
at_old = torch.autograd.grad(surrogate(theta, EPS).loss, theta)[0]
assert torch.allclose(at_old, policy_gradient)  # ρ = 1: the ratio's gradient is the policy gradient
for name, eps in (("clip", EPS), ("no clip", 1e9)):
    params = theta_old.clone().requires_grad_(True)
    line = []
    for update in range(8):
        out = surrogate(params, eps)
        step = torch.autograd.grad(out.loss, params)[0]
        with torch.no_grad():
            params -= 1.0 * step  # plain gradient steps of size 1, to see the clip act within a few updates
            new = torch.softmax(params, 0)
            ratio = new[group] / pi[group]
            kl = (pi * (pi / new).log()).sum().item()
        line.append(f"{out.clip_fraction:.2f}/{ratio.max().item():.2f}/{kl:.3f}")
    print(f"{name:>8} (clipped share at each update's start / largest ρ and KL(π_old‖π_θ) after it): "
          f"{'  '.join(line)}; "
          f"J = {(new * rewards).sum().item():.3f} after the last")

# %% [markdown]
# The first update is the same with and without the clip (every ρ is 1, nothing is clipped). From the second on,
# the clip acts: samples whose ratio has passed 1 ± ε in their advantage's direction stop contributing, and once all
# have, the gradient is zero and the policy stops, a bounded distance (the KL column) from the one that sampled.
# Without the clip each update on the same eight samples moves the policy further and the ratios keep growing
# (4.18 after eight updates), towards 1/π_old(a) for the reply that ends up with all the probability. On this toy,
# whose rewards are exact and fixed, going further raises J (from 0.523 to 0.926 without the clip, 0.649 with it);
# on a language model an update moves the probabilities of every other prompt too, and the samples' advantages
# describe π_old only. That is the clip's job: as many updates per batch as the recipe asks, none of them far.
#
# ## The story task as reinforcement learning
#
# The policy is notebook 9's model: a small story model fine-tuned to follow instructions such as "a character
# named Zoe, the word kite, at most five sentences". A **prompt** is an instruction in the chat template, a **reply**
# is what the model writes up to `<|im_end|>`, and the **reward** is notebook 9's verifier: 1 when the reply ended,
# every constraint holds, it has at least three sentences and ends with ., ! or ?, and the story base (which never
# saw an instruction) finds it fluent (its loss per token at most the bound printed below), else 0. Training draws
# the train split's instructions; the validation split chooses best.pt; the test split, which chooses nothing, is
# what this notebook reports. Without notebook 9's run in this clone, the cell fine-tunes the model first, as
# notebook 9 does.

# %%
nb9 = runs_dir() / f"notebook-09-{PROFILE}"


def is_story_sft(folder) -> bool:
    """An SFT run of the story task: its settings name the verifier's base."""
    settings = folder / "settings.json"
    return (folder / "sft_eval.json").is_file() and "verifier" in json.loads(settings.read_text()).get("task", {})


sft_start = nb9 if is_story_sft(nb9) else RUN / "sft-stories"  # never overwrite a partial notebook 9 run
if not is_story_sft(sft_start):
    print(f"no story SFT model in {shown(nb9)}: fine-tuning it now in {shown(sft_start)}, as notebook 9 does")
    sft(RunOptions(profile=PROFILE, out=sft_start, overwrite=True, seed=SEED, device=str(DEVICE)),
        PostTrainingOptions(task="stories"), say=quiet, on_record=quiet)
task = Stories(PROFILE)  # the instructions, and the verifier...
task.prepare(sft_start, DEVICE, "grpo")  # ...with the story base the SFT run names
recipe = task.recipe("grpo", PROFILE)
held_out = task.held_out(recipe.validation, recipe.test)
model, tokenizer, _ = load_model(sft_start, DEVICE)
print(f"policy: {shown(sft_start)} ({model.num_parameters():,} parameters); {len(task.train_problems()):,} training, "
      f"{len(held_out.validation)} validation and {len(held_out.test)} test instructions; fluency bound "
      f"{task.verifier.max_loss:.2f} nats per token")

# %% [markdown]
# **A group.** The model samples 8 replies at temperature 1 to each of the first 8 validation instructions; each
# gets its reward and its advantage within the group. A group whose replies all pass, or all fail, has advantages of
# zero and teaches nothing. If each reply passed with the same probability p, a group of G would be mixed with
# probability 1 − pᴳ − (1 − p)ᴳ.

# %%
problems = held_out.validation[:8]
GROUP = recipe.group_size  # replies per instruction, as GRPO samples them
rollout = sample_groups(model, tokenizer, task, problems, group_size=GROUP, seed=SEED)
print(problems[0].instruction)
for text, reward, adv in zip(rollout.completions[:GROUP], rollout.rewards[0].tolist(),
                             group_advantages(rollout.rewards)[0].tolist()):
    print(f"  reward {reward:.0f}, advantage {adv:+.2f}: {text[:110].strip()!r}")
p = rollout.correct.float().mean().item()
mixed = (rollout.correct.any(dim=1) & ~rollout.correct.all(dim=1)).float().mean().item()
print(f"sampled replies that pass: p = {p:.2f}; mixed groups {100 * mixed:.0f}% of {len(problems)}, "
      f"{100 * (1 - p**GROUP - (1 - p) ** GROUP):.0f}% predicted from p; mean reply {rollout.mean_length:.0f} tokens")

# %% [markdown]
# Fewer groups were mixed than the formula predicts from p. If instructions differ in difficulty, that is expected:
# the mixed share is concave in p, so uneven difficulty can only lower it (Jensen's inequality); eight groups are
# also a small sample.
#
# ## GRPO on the story task
#
# `grpo` is what `python -m tinylm.grpo --task stories --base <an SFT stories run>` runs, through the same Trainer as
# every other run. Each rollout draws fresh training instructions, samples a group of replies for each, scores them
# with the verifier and computes the advantages and π_old; each of its `updates` AdamW steps then lowers the clipped
# loss, averaged over every reply token of the batch (DAPO's per-token mean). Unlike DeepSeekMath's GRPO, the recipe
# has no KL penalty to the starting model (kl_coef 0); the clip alone keeps each update near π_old. The header line
# gives the profile's numbers. The ratio and the clip are taken per token, and all of a reply's tokens share its
# advantage. It scores the test instructions before training and after (best.pt): greedily (all 249), and with 8
# samples each at temperature 1 on the first 100 for pass@1 and pass@8 (below).

# %%
report = grpo(RunOptions(profile=PROFILE, out=RUN / "grpo", overwrite=True, device=str(DEVICE)),
              PostTrainingOptions(task="stories", base=str(sft_start)),
              say=lambda line: line.startswith("GRPO on") and print(line),
              on_record=lambda record: record["event"] in ("eval", "final")
              and print(format_grpo_record(record, "pass rate")))

# %% [markdown]
# **pass@k.** A greedy reply shows what the model does; sampled replies show what it *can* do. pass@k is the chance
# that at least one of k samples passes. From n ≥ k samples of which c pass, the unbiased estimate (Chen et al.) is
# 1 − C(n − c, k)/C(n, k), averaged over instructions; pass@1 is the mean share that pass. With n = k = 8, as here,
# pass@8 is simply the share of instructions with at least one pass among their 8 samples; the formula matters when
# n > k (Chen et al. draw 200 samples for k up to 100). If RL only sharpens the model's choice among replies it could
# already write, pass@1 rises towards pass@8 and pass@8 barely moves (or falls, if RL narrows what the model samples,
# as Yue et al. find at large k); if it teaches new ways to pass, pass@8 rises too; but pass@8 also rises when RL
# sharpens what the start passed rarely (passed 1 time in 20, pass@8 is 34%; 1 in 5, 83%), so at k = 8 a rise does
# not by itself show new ability (Yue et al. compare at k in the hundreds).
#
# **The control.** A gain after GRPO could come from any further training of the same start. So the same model is
# trained with notebook 9's supervised recipe (the stories as targets, its batch size and betas, at the constant
# rate its schedule ended on) for as many seconds as GRPO's 24 updates took, its sampling included (neither run
# counts evaluations; seconds depend on the machine's load, so the control's step count is printed), and scored by
# the same functions that scored GRPO: greedy replies to the test instructions through the verifier, and pass@1 and
# pass@8 from the same number of samples.

# %%
def scored(policy) -> dict:
    """The greedy test pass rate and pass@1, pass@k of `policy`, measured as the GRPO run measures them."""
    rates = measure(policy, tokenizer, task, held_out.test, batch_size=recipe.train.eval_batch_size)
    n = recipe.pass_at_samples
    sampled = held_out.test[: recipe.pass_at_problems or len(held_out.test)]
    at = sampled_pass_at(policy, tokenizer, task, sampled, n, (1, n), temperature=recipe.temperature,
                         seed=recipe.train.seed, batch_size=recipe.train.eval_batch_size)
    return {"pass_rate": rates, "pass_at": at}


def by_k(pass_at: dict) -> dict:
    """The report's pass@k (its JSON keys are strings) keyed by k."""
    return {int(k): v for k, v in pass_at.items()}


template = ChatTemplate(tokenizer)
start_cfg = TrainConfig.from_dict(load_checkpoint(sft_start / "best.pt")["train_config"])
control_cfg = dataclasses.replace(start_cfg, max_steps=10**6, max_seconds=report["train_seconds"], warmup_steps=0,
                                  learning_rate=start_cfg.min_lr, eval_interval=0, log_interval=10**6, seed=SEED)
conversations, val_conversations = (build_examples([i.record() for i in split], template,
                                                    model.config.block_size).rendered
                                     for split in (task.splits.train, task.splits.validation))
control_model, _, _ = load_model(sft_start, DEVICE)
control = SFTTrainer(control_model, control_cfg, ConversationLoader(conversations, control_cfg.batch_size,
                                                                   template.pad, seed=SEED),
                     tokenizer=tokenizer, device=DEVICE, callbacks=[quiet], val_conversations=val_conversations,
                     template=template)
control.fit()
control_model.eval()
arms = {"start (notebook 9)": {"pass_rate": report["before"], "pass_at": by_k(report["pass_at"]["before"])},
        f"GRPO, best.pt (step {report['after']['step']} of {report['steps']})":
            {"pass_rate": report["after"], "pass_at": by_k(report["pass_at"]["after"])},
        f"SFT control ({control.step} steps)": scored(control_model)}
k = recipe.pass_at_samples
asked = report["before"]["kinds"]
print(f"{report['train_seconds']:.0f} s of GRPO (rate {recipe.train.learning_rate:g}), {control.elapsed:.0f} s of SFT "
      f"(rate {control_cfg.learning_rate:g}); {len(held_out.test)} test instructions (asking for a name "
      f"{asked['name']['asked']}, a word {asked['word']['asked']}, at most N sentences {asked['sentences']['asked']}), "
      f"pass@k on the first {report['pass_at']['problems']}")
KINDS = ("name", "word", "sentences")
print(f"{'':>32} {'greedy pass [95% Wilson]':>26} {'pass@1':>7} {f'pass@{k}':>7}  "
      + " ".join(f"{kind:>9}" for kind in KINDS) + f" {'ends':>5} {'fluent':>6}")
for name, arm in arms.items():
    rates, at = arm["pass_rate"], arm["pass_at"]
    held = " ".join(f"{100 * rates['kinds'][kind]['held']:8.1f}%" for kind in KINDS)
    print(f"{name:>32} {100 * rates['pass_rate']:8.1f}% [{100 * rates['low']:.1f}, {100 * rates['high']:.1f}]  "
          f"{100 * at[1]:6.1f}% {100 * at[k]:6.1f}%  {held} {100 * rates['kinds']['ends']['held']:4.0f}% "
          f"{100 * rates['kinds']['fluent']['held']:5.0f}%")
n_at = report["pass_at"]["problems"]  # n = k samples each: pass@k is the share of instructions with a pass among them
print(f"pass@{k} with its 95% Wilson interval over the {n_at} instructions: " + "; ".join(
    f"{name} {100 * arm['pass_at'][k]:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"
    for name, arm in zip(("start", "GRPO", "SFT control"), arms.values())
    for low, high in [wilson_interval(round(arm["pass_at"][k] * n_at), n_at)]))
grpo_rates, control_rates = (arm["pass_rate"] for arm in list(arms.values())[1:])
print(compare("GRPO", [grpo_rates["pass_rate"]], "the SFT control", [control_rates["pass_rate"]],
              lower_is_better=False, metric="greedy test pass rate"))
print(paired(control_rates["passed_each"], grpo_rates["passed_each"]).describe("the SFT control", "GRPO"))

# %% [markdown]
# **Reading the table.** GRPO's best.pt (step 8 of 24, chosen on validation) passes 80.3% of the test instructions
# greedily against 70.3% at the start, mostly through the word constraint (held in 59.1% of the 154 test replies
# asked for a word at the start, 73.4% after GRPO), while the at-most-N-sentences limit held a little less often
# (97.4%, then 95.8%). The same seconds of supervised training moved it less: the control ended at 71.5%, its word
# share 57.8%. On the same instructions GRPO turned 42 of the control's fails into passes and 20 passes into fails
# (p = 0.00715): more than the test set's luck. But by the course's rule the two are **not told apart**: one seed per
# arm cannot show how far training runs spread (exercise 4 runs the three seeds the rule needs), and the control's
# own figure moves with the machine's speed, since its budget is seconds. Two things favour GRPO here: its figure is best.pt, the
# best of four validation looks, while the control's is its last step; and GRPO's rate (3e-4) is the recipe's
# (tinylm/posttrain/tasks/stories.py), set by trying it on this task, while the control's (2e-4, notebook 9's min_lr,
# printed above) was not tuned. The control's step count depends on the machine's speed and load.
#
# pass@8 brings the arms close (91.0% against 89.0%); pass@1 less so (43.8% against 40.1%). GRPO's rise in pass@8
# alone does not show a new ability from RL: supervised training from the same start moved it up too (84.0% to
# 89.0%, within the intervals), and at k = 8 sharpening alone raises it where the start passed an instruction only
# rarely (above). The start already passed 84 of the 100 instructions at least once in 8 samples, which left 16
# where a new ability could show, and k = 8 on 100 instructions is far from the k in the hundreds of Yue et al.

# %%
records = read_metrics(RUN / "grpo")
rollouts = [r for r in records if r["event"] == "train" and r["step"] % recipe.updates == 0]  # at its last update
evals = [r for r in records if r["event"] in ("eval", "final")]
print("per rollout, the sampled pass rate:", " ".join(f"{r['correct']:.2f}" for r in rollouts))
print("per rollout, the mean reply length in tokens:", " ".join(f"{r['length']:.0f}" for r in rollouts))
print("per rollout, the clip fraction of its second update:", " ".join(f"{r['clip_fraction']:.3f}" for r in rollouts))
fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
axes[0].plot([r["step"] for r in rollouts], [r["correct"] for r in rollouts], label="sampled replies that pass")
axes[0].plot([r["step"] for r in evals], [r["pass_rate"] for r in evals], "o-", label="validation, greedy")
axes[0].set(title="GRPO: the verifier's pass rate", xlabel="GRPO step", ylim=(0, 1))
axes[0].legend()
axes[1].plot([r["step"] for r in rollouts], [r["length"] for r in rollouts])
axes[1].set(title="reply length", xlabel="GRPO step", ylabel="tokens")
axes[2].plot([r["step"] for r in rollouts], [r["clip_fraction"] for r in rollouts])
axes[2].set(title="clip fraction (share of reply tokens)", xlabel="GRPO step")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reading the curves.** Each training point is one rollout of 64 sampled replies, to other instructions each time, so
# the sampled pass rate is noisy. The greedy validation pass rate reached its best at step 8, which chose best.pt; step
# 24 tied it, and a tie does not replace the earlier best. The clip fraction is measured on each rollout's second
# update (the first always has ρ = 1), so it shows how far the first update moved the policy: about a sixth of the
# reply tokens on the first rollout, a few hundredths or less after the second. At this rate the clip acts mostly at
# the start.
#
# ## Reward hacking
#
# A reward is a specification, and an optimiser reads it literally. The **mentions** reward
# (`--set reward=mentions`) pays a quarter for each mention of the asked name or word (the word's plural counts),
# 1 for four mentions in all; the sentence limit and the ending earn nothing. A story that uses them a few times
# earns it in full, and so does any text that repeats them. **Predict**: trained on it from the same start, with the
# recipe's rate, for 64 updates (`HACK_UPDATES` on `cpu`), what happens to the reward paid, and to the real
# verifier's verdict on the same replies? The cell records both for every rollout, then scores the greedy test
# replies both ways. Validation is switched off (`eval_interval=0`), so the last update's policy is reported.

# %%
HACK_UPDATES = {"smoke": 4, "cpu": 64, "gpu": 400}[PROFILE]
hacked = []
hack_model, _, _ = load_model(sft_start, DEVICE)
hack_recipe = changed(recipe, reward="mentions", max_steps=HACK_UPDATES, eval_interval=0)
GRPOTrainer(hack_model, tokenizer, task, hack_recipe, held_out, device=DEVICE, callbacks=[hacked.append]).fit()
hack_train = [r for r in hacked if r["event"] == "train" and r["step"] % recipe.updates == 0]
hack_model.eval()
print("per rollout, the mentions reward paid:", " ".join(f"{r['reward']:.2f}" for r in hack_train))
print("per rollout, the real verifier passes:", " ".join(f"{r['correct']:.2f}" for r in hack_train))
print("per rollout, the mean reply length in tokens:", " ".join(f"{r['length']:.0f}" for r in hack_train))
paying = task.rewarded_by("mentions")
for name, policy in (("the start", model), (f"the policy after {HACK_UPDATES} updates on mentions", hack_model)):
    replies = greedy_completions(policy, tokenizer, task, held_out.test, batch_size=recipe.train.eval_batch_size)
    scores = paying.score_completions(tokenizer, held_out.test, replies)
    texts = task.reply_texts(tokenizer, replies)
    failed = {kind: sum(not s.kinds.get(kind, True) for s in scores) for kind in ("ends", "sentences", "fluent")}
    limited = sum("sentences" in s.kinds for s in scores)
    losses = sorted(v.loss for v in task.verifier.check(texts, held_out.test))
    print(f"greedy test replies of {name}: mentions pays {sum(s.reward for s in scores) / len(scores):.2f} on "
          f"average; the real verifier passes {100 * sum(s.correct for s in scores) / len(scores):.1f}%; of "
          f"{len(scores)}, {failed['ends']} do not end as a story ends, {failed['sentences']} of the {limited} with a "
          f"sentence limit break it, {failed['fluent']} are not fluent (the base's median loss "
          f"{losses[len(losses) // 2]:.2f} nats per token; the guard's bound {task.verifier.max_loss:.2f})")
print("two of its replies:")
for text in texts[:2]:
    print(f"  {clipped(text, 240)!r}")
fig, ax = plt.subplots(figsize=(8, 3.6))
for runs, label in ((rollouts, "the verifier's reward (the 24-update run above)"), (hack_train, "the mentions reward")):
    line, = ax.plot([r["step"] for r in runs], [r["reward"] for r in runs], lw=3, alpha=0.5,
                    label=f"{label}: paid")
    ax.plot([r["step"] for r in runs], [r["correct"] for r in runs], "o--", color=line.get_color(), ms=4,
            label=f"{label}: the verifier passes")  # the verifier's reward pays what it verifies: one line
ax.set(title="what each run was paid, and what the verifier says of the same replies", xlabel="GRPO step",
       ylabel="mean over the rollout's replies", ylim=(0, 1))
ax.legend(fontsize=9)
plt.show()

# %% [markdown]
# **Reading the hack.** (On `smoke` the figures only show that everything runs.) The policy took the loophole. For
# the first dozen updates the real verifier's pass rate held near the start's while the pay rose; from about step
# 20 it fell steadily as the replies grew, ending at 0.05 with the pay at 0.98. The greedy test replies collect
# nearly the full pay and pass the real verifier 0.8% of the time: they repeat a sentence holding the name or the
# word until the model's context (128 tokens, the prompt included) cuts them off. What caught them is the ending
# check and the sentence limit. The fluency guard caught none: the story base's median loss on them, 2.60 nats per
# token, sits far below the guard's bound of 5.39, which is set to let every real story opening through
# (tinylm/posttrain/verifier.py). Under the verifier's reward this loophole does not pay: a
# reply cut off before it ends earns 0. (Its two lines lie on each other by construction, so the plot cannot show a
# hack of the verifier itself; a loop that ended within the sentence limit would pass it.) The measurement that
# exposed the hack is one the reward could not see: the real verifier on the same replies. Real hacks have more room: code
# that passes unit tests by special-casing them ([Baker et al., 2025](https://arxiv.org/abs/2503.11926)), a learned
# reward model that prefers longer answers ([Singhal et al., 2023](https://arxiv.org/abs/2310.03716)).
#
# ## What you learned
#
# - The policy gradient ∇E[r] = E[(r − b)∇log π] needs only samples and a reward from any program; a baseline that
#   does not depend on the sample keeps it unbiased and, near E[r], lowers its variance; the group's mean, the reply
#   included, is GRPO's baseline ((G − 1)/G of the gradient).
# - The ratio ρ = π_θ/π_old lets a second update reuse the samples; the clip zeroes the gradient of samples that
#   moved more than ε their advantage's way, so the policy stays near the one that sampled.
# - GRPO with a verifier as the reward: groups, advantages, the clipped per-token loss, best.pt chosen on validation
#   and the result reported on test.
# - A gain needs a control: the same start trained for the same seconds by SFT, scored the same way (here it gained
#   less, beyond the test set's luck, but one seed per arm cannot tell the two apart); pass@1 against pass@k asks
#   whether RL made the model do more often what it already could; at k = 8 on 100 instructions, as here, the answer
#   stays open (pass@8 rose from 84% to 91% under GRPO and to 89% under the control, with overlapping intervals).
# - A reward that pays for less than you mean gets gamed: paid for mentions, the policy learned to repeat the asked
#   words and the real pass rate fell to 0.8%. The defence is a reward that checks what you mean and a measurement
#   the reward cannot see; here the ending check and the sentence limit caught the loops, the fluency guard did not.
#
# ## Exercises
#
# **1. REINFORCE by hand.** Write the policy-gradient estimate of the toy policy for one group without autograd:
# ∇_θ log softmax(θ)_a = onehot(a) − π, so the estimate is mean over the group of A·(onehot(a) − π). The check
# compares it with autograd on −mean(A·log π).

# %%
# NBVAL_CHECK_OUTPUT
def my_policy_gradient(theta: torch.Tensor, replies: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError


def test_my_policy_gradient():
    for seed in range(5):
        params = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).requires_grad_()
        sampled = torch.randint(0, 6, (G,), generator=torch.Generator().manual_seed(seed))
        adv = torch.randn(G, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 10))
        expected = -torch.autograd.grad(-(adv * torch.log_softmax(params, 0)[sampled]).mean(), params)[0]
        assert torch.allclose(my_policy_gradient(params.detach(), sampled, adv), expected)


check(test_my_policy_gradient)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_policy_gradient(theta, replies, advantages):
#     probs = torch.softmax(theta, 0)
#     onehot = torch.nn.functional.one_hot(replies, theta.numel()).to(theta.dtype)
#     return (advantages[:, None] * (onehot - probs)).mean(0)
# ```
# </details>
#
# **2. Dividing by the group's spread.** GRPO divides each advantage by its group's standard deviation, as
# torch.std computes it (dividing by G − 1; np.std divides by G). Write
# `my_group_advantages(rewards, scale)` (rewards of shape (prompts, G); scale=False only centres, as Dr. GRPO does)
# and compare two groups of 8 with your function: one with a single pass among 8, one with four. Which group's
# passing reply gets the larger advantage, with and without the scaling? The check compares with the package.

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
# Either way the lone pass gets the larger advantage; dividing by the spread multiplies the lone-pass group by 2.83
# (1/0.354) and the four-pass group by 1.87 (1/0.535), widening the gap from 1.75× to about 2.6×. Centred only, the lone pass gets $1 - 1/8 = 0.875$ and a pass among four gets $0.5$; divided by the spread, the
# lone pass gets about $2.47$ and a pass among four about $0.94$. The scaling weighs up groups of small spread: prompts that are
# almost always failed (or almost always passed), the "difficulty bias" Dr. GRPO removes.
# </details>
#
# **3. pass@k.** Write the unbiased estimate of pass@k from n samples of which c pass, 1 − C(n − c, k)/C(n, k), and
# check it against the package's `pass_at_k`. Then argue why the plainer estimate, 1 − (1 − c/n)ᵏ, is biased low
# for k ≥ 2 (hint: Jensen's inequality: 1 − (1 − p)ᵏ is concave in p, and c/n has mean p).

# %%
# NBVAL_CHECK_OUTPUT
def my_pass_at_k(n: int, c: int, k: int) -> float:
    raise NotImplementedError


def test_my_pass_at_k():
    for n in range(1, 11):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert abs(my_pass_at_k(n, c, k) - pass_at_k(n, c, k)) < 1e-9, (n, c, k)


check(test_my_pass_at_k)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# import math
#
# def my_pass_at_k(n, c, k):
#     return 1.0 - math.comb(n - c, k) / math.comb(n, k)
# ```
#
# math.comb(n − c, k) is 0 when n − c < k: every draw of k holds a pass. The plain estimate plugs c/n into
# 1 − (1 − p)ᵏ, a concave function of p; the mean of a concave function is below the function of the mean, so it
# underestimates on average.
# </details>
#
# **4. Experiment: three seeds.** The verdict above compared one GRPO run with one control, and the course's rule
# needs three seeds per arm. Run GRPO and the control at two more seeds (`RunOptions(seed=...)` for GRPO, `seed` in
# the control's TrainConfig and loader), score each the same way, and put the three greedy test pass rates of each
# arm in `my_grpo_rates` and `my_control_rates`. The check prints the verdict by the course's rule.

# %%
# NBVAL_CHECK_OUTPUT
my_grpo_rates = None  # replace with three greedy test pass rates of GRPO (the run above and two more seeds)
my_control_rates = None  # and three of the SFT control


def test_three_seeds():
    if my_grpo_rates is None or my_control_rates is None:
        raise NotImplementedError("run both arms at two more seeds and fill in the rates")
    assert len(my_grpo_rates) >= 3 and len(my_control_rates) >= 3, "three seeds per arm"
    assert grpo_rates["pass_rate"] in my_grpo_rates, "include the GRPO run above"
    assert control_rates["pass_rate"] in my_control_rates, "include the control above"
    n = len(held_out.test)
    assert all(abs(r * n - round(r * n)) < 1e-6 for r in [*my_grpo_rates, *my_control_rates]), (
        f"each rate is a share of the {n} test instructions: passes / {n}")
    print(compare("GRPO", my_grpo_rates, "the SFT control", my_control_rates, lower_is_better=False,
                  metric="greedy test pass rate"))


check(test_three_seeds)

# %%
print(f"exercise 4 trains for about {4 * report['train_seconds']:,.0f} s here, plus the scoring of each run: two more "
      "seeds of each arm")

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# my_grpo_rates, my_control_rates = [grpo_rates["pass_rate"]], [control_rates["pass_rate"]]
# for seed in (SEED + 1, SEED + 2):
#     run = grpo(RunOptions(profile=PROFILE, out=RUN / f"grpo-seed{seed}", overwrite=True, seed=seed,
#                           device=str(DEVICE)), PostTrainingOptions(task="stories", base=str(sft_start)),
#                say=quiet, on_record=quiet)
#     my_grpo_rates.append(run["after"]["pass_rate"])
#     cfg = dataclasses.replace(control_cfg, seed=seed, max_seconds=run["train_seconds"])
#     other, _, _ = load_model(sft_start, DEVICE)
#     SFTTrainer(other, cfg, ConversationLoader(conversations, cfg.batch_size, template.pad, seed=seed),
#                tokenizer=tokenizer, device=DEVICE, callbacks=[quiet], val_conversations=val_conversations,
#                template=template).fit()
#     my_control_rates.append(scored(other.eval())["pass_rate"]["pass_rate"])
# ```
#
# Each GRPO run also chooses its best.pt on validation, and each control is its last step; the seeds vary the
# rollouts' samples and the control's batches, not the start, which all runs share.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
