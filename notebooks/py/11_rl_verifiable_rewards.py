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
# Supervised fine-tuning shows a model the answer; reinforcement learning only tells it how good its answer was. When a
# program checks the answer (a unit test, a proof checker, notebook 9's story verifier), that score is cheap and exact:
# a **verifiable reward**. DeepSeek-R1 and many open reasoning models were trained this way with GRPO: sample several
# replies to one prompt, score each, push up those that beat their group.
#
# **What you will learn**
# - the **policy gradient** ∇E[r] = E[(r − b)∇log π], why a **baseline** independent of the reply leaves it
#   unbiased and can lower its variance, and why GRPO's group mean only shrinks the step;
# - the **ratio and the clip**: what lets a second update reuse the same samples;
# - **GRPO on the story task** against its **control**, expert iteration, three seeds each; **pass@1 against
#   pass@8** (at one seed, where the `cpu` run's GRPO kept the start);
# - **reward hacking**: a reward with a loophole, the policy taking it, and the check that catches it.
#
# **How long it takes**: a lesson of about 86 minutes (reading, code and the `cpu` run's 139 s with `REPLAY = True`,
# 12 min live, by the course's formula), then a second sitting of about 55 minutes for the 4 exercises (10 minutes per
# function, 20 per experiment, and 293 s of training).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; a few GRPO steps on 2 prompts, 8 test instructions | seconds |
# | `cpu` (2-core laptop) | from notebook 9's story model: GRPO and expert iteration at 3 seeds each (32 updates: 16 rollouts of 8 instructions × 8 replies, 2 updates each), and GRPO on a reward with a loophole for 64 updates | the last cell prints it (with notebook 9's run present; else its SFT runs first) |
# | `gpu` | the same on the gpu profile's story model (`python -m tinylm.grpo --task stories --profile gpu` after notebook 9; pass@16) | not measured |
#
# **Papers**: REINFORCE ([Williams, 1992](https://doi.org/10.1007/BF00992696)); PPO
# ([Schulman et al., 2017](https://arxiv.org/abs/1707.06347)); GRPO
# ([Shao et al., 2024](https://arxiv.org/abs/2402.03300)); RLOO
# ([Ahmadian et al., 2024](https://arxiv.org/abs/2402.14740)); Dr. GRPO ([Liu et al., 2025](https://arxiv.org/abs/2503.20783));
# rejection-sampling fine-tuning ([Yuan et al., 2023](https://arxiv.org/abs/2308.01825));
# pass@k ([Chen et al., 2021](https://arxiv.org/abs/2107.03374)); DeepSeek-R1
# ([DeepSeek-AI, 2025](https://arxiv.org/abs/2501.12948)); DAPO ([Yu et al., 2025](https://arxiv.org/abs/2503.14476));
# RL's reach beyond the base model ([Yue et al., 2025](https://arxiv.org/abs/2504.13837));
# TinyStories ([Eldan & Li, 2023](https://arxiv.org/abs/2305.07759)); reward hacking in code
# ([Baker et al., 2025](https://arxiv.org/abs/2503.11926)) and in length
# ([Singhal et al., 2023](https://arxiv.org/abs/2310.03716)).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import tinylm
import tinylm.course.plotting
from tinylm.course.exercises import check
from tinylm.course.plotting import read_metrics
from tinylm.course.recorded import recorded
from tinylm.eval.uncertainty import compare, paired, told_apart, wilson_interval
from tinylm.paths import runs_dir, shown
from tinylm.posttrain.grpo.objective import clipped_policy_loss, group_advantages
from tinylm.posttrain.grpo.rollout import pass_at_k, sample_groups
from tinylm.posttrain.grpo.run import grpo
from tinylm.posttrain.grpo.trainer import GRPOTrainer
from tinylm.posttrain.job import PostTrainingOptions
from tinylm.posttrain.recipes import changed
from tinylm.posttrain.replies import greedy_completions
from tinylm.posttrain.sft.run import sft
from tinylm.posttrain.task import clipped
from tinylm.posttrain.tasks.stories import Stories
from tinylm.train.checkpoint import load_model
from tinylm.train.options import RunOptions

NOTEBOOK_STARTED = time.perf_counter()
PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
SEED = 42
RUN = runs_dir() / f"notebook-11-{PROFILE}"
# True: the race below replays what the committed cpu run printed and measured; False trains it live (about 9 minutes).
REPLAY = False
tinylm.course.plotting.use_projector_style()
print(f"profile {PROFILE}, device {DEVICE}")


def quiet(_):
    pass

# %% [markdown]
# ## The policy gradient
#
# A policy π_θ gives each reply a a probability π_θ(a); a program gives it a reward r(a). Training should raise
# J(θ) = E_{a∼π_θ}[r(a)] = Σ_a π_θ(a) r(a). Its gradient sums over every possible reply, but the identity
# ∇π = π ∇log π turns it into an expectation that samples estimate:
#
# $$\nabla J = \sum_a r(a)\,\nabla\pi_\theta(a) = \sum_a \pi_\theta(a)\, r(a)\,\nabla\log\pi_\theta(a)
#   = \mathbb{E}_{a\sim\pi_\theta}\big[r(a)\,\nabla\log\pi_\theta(a)\big].$$
#
# Sample replies and move each one's log-probability in proportion to its reward (REINFORCE): one loss,
# −mean(r·log π(a)), and autograd. The reward needs no gradient: it can be any program.
#
# **The baseline.** Any b that does not depend on the sampled reply can be subtracted from r, because the score
# function has mean zero: E[∇log π] = Σ_a ∇π = ∇1 = 0. So ∇J = E[(r − b)∇log π]: still **unbiased**, with a
# different variance. With 0/1 rewards and no baseline a failed reply contributes nothing; with b ≈ E[r] a failure is
# pushed *down* and a pass up, each by how surprising it was. A = r − b is the **advantage**. GRPO's b is the mean
# reward of the G replies to the same prompt, the reply included. The mean of the *other* G − 1 replies
# (leave-one-out, as in RLOO) does not depend on the reply, so it is a valid baseline; the group mean with the reply
# in it gives (G − 1)/G times that advantage: a change of step size, not of direction.
#
# The check: a toy policy over 6 replies with pass/fail rewards. Each estimator averages autograd's gradient of
# −mean(A·log π) over thousands of groups of 8 samples, and counts as unbiased within four and a half standard errors
# of its target on every coordinate (an unbiased one fails that less than once in ten thousand seeds).

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
# The variance is what changes (last column). Leave-one-out needs about a quarter more groups than the exact E[r]
# (0.0214 against 0.0168) but knows nothing in advance: the group is the baseline, so GRPO needs no learned value
# network (PPO's critic, which predicts E[r]). The GRPO row is lowest only because it is the leave-one-out estimate
# scaled by (G − 1)/G (0.0164 / (7/8)² = 0.0214). GRPO also divides each advantage by its group's spread, measured on
# the same samples: no longer exactly unbiased (untested here).
#
# ## Reusing samples: the ratio and the clip
#
# Sampling costs far more than an update, so PPO and GRPO make several updates on one batch of samples. After the
# first, π_θ is no longer π_old, the policy that sampled. Importance weighting repairs the estimate: with
# ρ = π_θ(a)/π_old(a), E_{π_old}[ρ A ∇log π_θ] is E_{π_θ}[A ∇log π_θ], and ∇ρ = ρ ∇log π_θ, so the loss is −mean(ρ·A);
# at θ = θ_old it *is* the policy gradient. Far from θ_old a few samples with large ρ dominate, and A was measured for
# π_old. PPO's clip bounds the move:
#
# $$\text{objective} = \min\big(\rho A,\ \mathrm{clip}(\rho, 1-\varepsilon, 1+\varepsilon)\,A\big)$$
#
# For A > 0 it stops paying once ρ passes 1 + ε; for A < 0, once ρ falls below 1 − ε; a clipped sample's gradient is
# zero. The toy policy samples one group, then makes eight updates on it through the package's loss, with the clip
# and without (an ε so wide it never binds).

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
# One step can overshoot 1 + ε (ρ 1.34 after the first); from the second update on, the clip acts: once every sample
# has passed 1 ± ε in its advantage's direction, the gradient is zero and the policy stops a bounded distance (the KL
# column) from the one that sampled. Without the clip the ratios keep growing. On this toy, with exact fixed rewards,
# going further raises J; on a language model an update moves every other prompt's probabilities too, and the
# advantages describe π_old only. That is the clip's job: several updates per batch, none of them far.
#
# ## The story task as reinforcement learning
#
# The policy is notebook 9's model, fine-tuned to follow instructions such as "a character named Zoe, the word kite,
# at most five sentences". A **prompt** is an instruction in the chat template, a **reply** is what the model writes
# up to `<|im_end|>`, and the **reward** is notebook 9's verifier: 1 when the reply ended and passes every check (the
# constraints, three sentences or more, fluency and variety under the bounds printed below), else 0. Training draws
# the train split, validation chooses best.pt, and the test split, which chooses nothing, is reported.
# Without notebook 9's run, the cell fine-tunes one first.

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
      f"{task.verifier.max_loss:.2f} nats per token, repetition bound {task.verifier.max_repeats:.3f}")

# %% [markdown]
# **A group.** The model samples 8 replies at temperature 1 to each of the first 8 validation instructions, each
# scored and given its advantage within the group. A group whose replies all pass, or all fail, has advantages of
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
# With 8 groups, 100% against 92% predicted is within noise. Uneven difficulty would, if anything, lower the share
# (it is concave in p: Jensen's inequality).
#
# ## GRPO on the story task
#
# `grpo` is what `python -m tinylm.grpo --task stories --base <an SFT stories run>` runs. Each rollout draws fresh
# training instructions, samples a group of replies for each, scores them and computes the advantages and π_old;
# each of its `updates` AdamW steps then lowers the clipped loss. The trainer uses one ratio per reply token,
# `π_θ(aₜ | a<ₜ)/π_old(aₜ | a<ₜ)`, clipped token by token and averaged over the batch's reply tokens (DAPO's token
# mean). There is no KL penalty (kl_coef 0); the clip alone keeps each
# update near π_old. Every 8 updates the greedy validation pass rate chooses best.pt, scored on test.
#
# **The control.** A gain after GRPO could come from any further training on the model's own good replies. **Expert
# iteration** (rejection-sampling fine-tuning) does only that: sample, keep the replies that pass, fine-tune on them.
# With a 0/1 reward it is the policy gradient with no baseline (`--set baseline=none`; a test checks its first
# update against SFT on the passing replies). The arms differ only in the advantage: GRPO's (r − group mean)/(group
# std), which also pushes failing replies down, against the raw reward. Three seeds per arm; the rate (3e-4), set
# earlier for GRPO on a split nobody recorded, if anything favours GRPO. **Predict**: which arm passes more test
# instructions? **Rule, set before the run**: an arm wins if its three test pass rates all beat the other's three.

# %%
ARMS = {"GRPO": "group", "expert iteration": "none"}  # arm -> its baseline, which sets its advantages
SEEDS = (SEED, SEED + 1, SEED + 2)


def race() -> list[list]:
    """[arm, seed, the run's report, its metrics records] for each arm and seed."""
    rows = []
    for arm, baseline in ARMS.items():
        for seed in SEEDS:  # pass@k (below) is sampled on the first seed's runs only
            out = RUN / f"{arm.replace(' ', '-')}-{seed}"
            changes = {"baseline": baseline, **({} if seed == SEED else {"pass_at_samples": 0})}
            report = grpo(
                RunOptions(profile=PROFILE, out=out, overwrite=True, seed=seed, device=str(DEVICE), set=changes),
                PostTrainingOptions(task="stories", base=str(sft_start)), on_record=quiet,
                say=lambda line, first=(arm, seed) == ("GRPO", SEED): first and line.startswith("GRPO on") and print(line))
            after = report["after"]
            print(f"{arm:>16}, seed {seed}: best.pt at step {after['step']} of {report['steps']} "
                  f"(validation {100 * after['validation_pass_rate']:.1f}%), {report['wall_seconds']:.0f} s")
            rows.append([arm, seed, report, read_metrics(out)])
    return rows


rows = recorded("11_rl_verifiable_rewards", "race", race, replay=REPLAY, profile=PROFILE)
reports = {(arm, seed): report for arm, seed, report, _ in rows}
run_records = {(arm, seed): records for arm, seed, _, records in rows}

# %% [markdown]
# **The verdict** on the 249 test instructions (greedy), with each check's share where it was asked; then each seed's
# arms paired instruction by instruction (McNemar), and each arm against the start.

# %%
start = reports["GRPO", SEED]["before"]
CHECKS = ("name", "word", "sentences", "ends", "fluent", "varied")
print(f"{'':>26} {'test pass [95% Wilson]':>24}  " + " ".join(f"{kind:>9}" for kind in CHECKS))
for name, rates in [("start (notebook 9)", start)] + [(f"{arm}, seed {seed}", reports[arm, seed]["after"])
                                                    for arm in ARMS for seed in SEEDS]:
    held = " ".join(f"{100 * rates['kinds'][kind]['held']:8.1f}%" for kind in CHECKS)
    print(f"{name:>26} {100 * rates['pass_rate']:7.1f}% [{100 * rates['low']:.1f}, {100 * rates['high']:.1f}]  {held}")
rates = {arm: [reports[arm, seed]["after"]["pass_rate"] for seed in SEEDS] for arm in ARMS}
print(compare("GRPO", rates["GRPO"], "expert iteration", rates["expert iteration"], lower_is_better=False,
              metric="greedy test pass rate"))
for seed in SEEDS:
    print(f"seed {seed}: " + paired(reports["expert iteration", seed]["after"]["passed_each"],
                                    reports["GRPO", seed]["after"]["passed_each"]).describe("expert iteration", "GRPO"))
    for arm in ARMS:  # each arm against the start, the control tested as the treatment is
        print(f"seed {seed}: " + paired(start["passed_each"], reports[arm, seed]["after"]["passed_each"])
              .describe("the start", arm))

# %% [markdown]
# **Reading the verdict.** Not told apart: the arms' seeds overlap. The start already passes 76.3%, and in three of
# the six runs no later validation score beat the start's 71.2%, so best.pt is the start itself. Where a run moved,
# the gain could be real: GRPO's seed 43 beat the start instruction by instruction (p = 0.00223, below 0.05 even
# corrected for the cell's nine tests, Bonferroni's way), and expert iteration's seed 43 did at p = 0.03, which that
# correction does not keep. The runs that moved gained on the word check, and expert iteration's seeds 42 and 43 paid for it in
# variety. At this budget (16 rollouts, five looks at 80 validation instructions) a run's luck outweighed any
# difference between the arms. On 2-digit arithmetic a far longer GRPO run took test accuracy from 26.4% to 57.4%
# (one seed, no control; the course guide's run).
#
# **An aside: a blind reading** of an earlier run (2026-11-27) with other models: a language model given a teacher's
# rubric, blind to which model wrote which reply, preferred GRPO's greedy reply 15 times of 30, the start's 9,
# neither 6 (sign test p = 0.31: not told apart; [the record](../docs/results/blind-reading-2026-11-27.json),
# `scripts/blind_reading.py`). The rubric lists the verifier's checks first: a sanity check, not independent evidence.
#
# **Replies side by side**, greedy, on the first three test instructions, from seed 43, where both arms moved.

# %%
for i, at_start in enumerate(start["replies"]):  # seed 43, where both arms moved
    print(at_start["prompt"])
    for name, rates in (("start", start), ("GRPO", reports["GRPO", SEED + 1]["after"]),
                        ("expert iteration", reports["expert iteration", SEED + 1]["after"])):
        reply = rates["replies"][i]
        print(f"  {name:>16} ({'pass' if reply['passed'] else 'fail'}): {clipped(reply['reply'], 200)!r}")

# %% [markdown]
# **pass@k** is the chance that at least one of k samples at temperature 1 passes (pass@1: one sample, not the
# greedy reply): what the model *can* do. From n ≥ k samples of which c pass, its unbiased estimate (Chen et al.) is
# 1 − C(n − c, k)/C(n, k); here n = k = 8: the share of instructions with a pass among their 8 samples. If
# RL only sharpens the model's choice among replies it could already write, pass@1 rises towards pass@8; if it
# teaches new ways to pass, pass@8 rises too. But sharpening also raises pass@8 where the start passed rarely (1 time
# in 20 gives 34%), and Yue et al. need k in the hundreds to separate the two.

# %%
k, n_at = recipe.pass_at_samples, reports["GRPO", SEED]["pass_at"]["problems"]
at = {"start": reports["GRPO", SEED]["pass_at"]["before"],
      **{arm: reports[arm, SEED]["pass_at"]["after"] for arm in ARMS}}
for name, by_k in at.items():
    low, high = wilson_interval(round(by_k[str(k)] * n_at), n_at)
    print(f"{name:>16} (seed {SEED}): pass@1 {100 * by_k['1']:.1f}%, pass@{k} {100 * by_k[str(k)]:.1f}% "
          f"[{100 * low:.1f}, {100 * high:.1f}] on the first {n_at} test instructions")
for arm in ARMS:  # paired, instruction by instruction, against the start
    before, after = at["start"]["correct"], at[arm]["correct"]
    more = paired([b > a for b, a in zip(before, after)], [a > b for b, a in zip(before, after)])
    print(f"{arm}: more passing samples on {more.gained} instructions, fewer on {more.lost} (sign test p = "
          f"{more.p_value:.3g}); pass@{k}: " + paired([b > 0 for b in before], [a > 0 for a in after])
          .describe("the start", arm))

# %% [markdown]
# pass@k is sampled at seed 42 only, where GRPO's best.pt is the start, so this run compares expert iteration alone.
# Under it, pass@1 rose: more instructions gained passing samples than lost them (a sign test: McNemar's computation
# on the instructions whose count changed; p = 0.0286). pass@8 did not move.

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
for (arm, seed), color in zip(reports, ["tab:blue"] * 3 + ["tab:orange"] * 3):
    records = run_records[arm, seed]
    rollouts = [r for r in records if r["event"] == "train" and r["step"] % recipe.updates == 0]  # its last update
    evals = [r for r in records if r["event"] in ("eval", "final")]
    label = arm if seed == SEED else None
    axes[0].plot([r["step"] for r in evals], [r["pass_rate"] for r in evals], "o-", color=color, ms=3, label=label)
    axes[1].plot([r["step"] for r in rollouts], [r["correct"] for r in rollouts], color=color, alpha=0.7, label=label)
    axes[2].plot([r["step"] for r in rollouts], [r["length"] for r in rollouts], color=color, alpha=0.7, label=label)
axes[0].set(title="validation pass rate (greedy): chooses best.pt", xlabel="update", ylim=(0, 1))
axes[1].set(title="sampled replies that pass, per rollout", xlabel="update", ylim=(0, 1))
axes[2].set(title="reply length", xlabel="update", ylabel="tokens")
for ax in axes:
    ax.legend(fontsize=9)
plt.tight_layout()
plt.show()
print("greedy validation pass rate, the start's -> the last evaluation's: " + "; ".join(
    f"{arm} {seed} {100 * evals[0]['pass_rate']:.1f}% -> {100 * evals[-1]['pass_rate']:.1f}%" for (arm, seed) in reports
    if (evals := [r for r in run_records[arm, seed] if r["event"] in ("eval", "final")])))
rollouts = [r for r in run_records["GRPO", SEED] if r["event"] == "train" and r["step"] % recipe.updates == 0]
print(f"GRPO seed {SEED}, the clip fraction of each rollout's second update:",
      " ".join(f"{r['clip_fraction']:.3f}" for r in rollouts))

# %% [markdown]
# **Reading the curves.** In five of the six runs the greedy validation pass rate (left) ended below the start's, in
# some far below; best.pt, chosen on validation, kept those declines out of the test figures. The sampled pass rate
# (middle) sits far lower: one sample at temperature 1 passes less often than the greedy reply (the start's pass@1
# 36.5% on the first 100 test instructions, its greedy 76.3% on all 249). It rose in most runs, but a seed's two arms
# draw the same training instructions, so this panel cannot separate learning from their difficulty. The greedy rate
# can fall while the reward rises: the reward scores temperature-1 samples, not greedy replies, and the clip bounds
# only each rollout's move; with kl_coef 0 and a constant rate nothing holds the policy near the start across rollouts
# (a KL penalty is the usual guard). Reply length (right) ended a few tokens longer in most runs. GRPO's clip fraction
# (seed 42) fell from 0.163 at the first rollout's second update to 0.017 or less from the fifth rollout: after the
# first rollouts, an update rarely moved a token past 1 ± ε in its advantage's direction.
#
# ## Reward hacking
#
# A reward is a specification, and an optimiser reads it literally. The **mentions** reward (`--set
# reward=mentions`) pays a quarter for each mention of the asked name or word, 1 for four mentions in all; the
# sentence limit and the ending earn nothing, and any text that repeats the words earns it in full. **Predict**:
# trained on it from the same start for 64 updates (`HACK_UPDATES` on `cpu`), what happens to the reward paid, and to
# the real verifier's verdict on the same replies?

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
    failed = {kind: sum(not s.kinds.get(kind, True) for s in scores) for kind in ("ends", "sentences", "fluent", "varied")}
    limited = sum("sentences" in s.kinds for s in scores)
    losses = sorted(v.loss for v in task.verifier.check(texts, held_out.test))
    print(f"greedy test replies of {name}: mentions pays {sum(s.reward for s in scores) / len(scores):.2f} on "
          f"average; the real verifier passes {100 * sum(s.correct for s in scores) / len(scores):.1f}%; of "
          f"{len(scores)}, {failed['ends']} do not end as a story ends, {failed['sentences']} of the {limited} with a "
          f"sentence limit break it, {failed['fluent']} are not fluent (the base's median loss "
          f"{losses[len(losses) // 2]:.2f} nats per token; the bound {task.verifier.max_loss:.2f}), {failed['varied']} "
          f"repeat themselves")
print("two of its replies:")
for text in texts[:2]:
    print(f"  {clipped(text, 240)!r}")
fig, ax = plt.subplots(figsize=(8, 3.6))
for runs, label in ((rollouts, f"the verifier's reward (GRPO, seed {SEED})"), (hack_train, f"the mentions reward (seed {hack_recipe.train.seed})")):
    line, = ax.plot([r["step"] for r in runs], [r["reward"] for r in runs], lw=3, alpha=0.5,
                    label=f"{label}: paid")
    ax.plot([r["step"] for r in runs], [r["correct"] for r in runs], "o--", color=line.get_color(), ms=4,
            label=f"{label}: the verifier passes")  # the verifier's reward pays what it verifies: one line
ax.set(title="what each run was paid, and what the verifier says of the same replies", xlabel="GRPO step",
       ylabel="mean over the rollout's replies", ylim=(0, 1))
ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the curves, not over them
plt.show()

# %% [markdown]
# **Reading the hack.** (On `smoke` the figures only show that everything runs.) The policy took the loophole: the pay
# rose while the verifier's pass rate fell to near zero and the replies grew longer. The greedy test replies collect
# 0.97 of the pay and pass the real verifier 0.0% of the time: they repeat the name and the word until the context
# cuts them off. The ending check catches all 249, the repetition guard 218, the fluency guard 1: the replies' median
# loss rose from 1.56 to 3.04 nats per token, under the 4.58 bound, so checks must be layered. What exposed the hack
# is a measurement the reward could not see: the real verifier on the same replies. Real hacks go further: code that
# passes unit tests by special-casing them ([Baker et al., 2025](https://arxiv.org/abs/2503.11926)), a learned reward
# model that prefers longer answers ([Singhal et al., 2023](https://arxiv.org/abs/2310.03716)).
#
# ## What you learned
#
# - The policy gradient ∇E[r] = E[(r − b)∇log π] needs only samples and a reward from any program; a baseline
#   independent of the sample keeps it unbiased and, near E[r], lowers its variance. GRPO's group mean includes the
#   sample, which only scales the leave-one-out advantage by (G − 1)/G.
# - The ratio ρ = π_θ/π_old lets a second update reuse the samples; the clip zeroes the gradient of samples that
#   moved more than ε their advantage's way, keeping the policy near the one that sampled.
# - A gain needs a control that shares everything but the idea: expert iteration is the policy gradient without a
#   baseline. Here the two were not told apart; from a strong start, three of six runs kept the start as best.pt.
# - A reward that pays for less than you mean gets gamed: paid for mentions, the policy repeated the asked words and
#   the real pass rate fell to 0.0%. Defend with a reward that checks what you mean, and a measurement it cannot see.
#
# ## Exercises
#
# **1. REINFORCE by hand.** Write the policy-gradient estimate of the toy policy for one group without autograd:
# ∇_θ log softmax(θ)_a = onehot(a) − π, so the estimate is mean over the group of A·(onehot(a) − π). The check
# compares it with minus autograd's gradient of −mean(A·log π).

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
        assert torch.allclose(my_policy_gradient(params.detach(), sampled, adv), expected), (
            "differs from autograd's gradient of the policy-gradient loss")


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
        assert torch.allclose(my_group_advantages(rewards, scale), group_advantages(rewards, scale=scale), atol=1e-6), (
            f"scale={scale}: differs from tinylm's group_advantages")


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
# Either way the lone pass gets the larger advantage. Centred: $0.875$ against $0.5$ (1.75×); scaled by 1/0.354 =
# 2.83 and 1/0.535 = 1.87: $2.47$ against $0.94$ (about 2.6×). The scaling weighs up groups of small spread, prompts almost
# always failed (or passed): the "difficulty bias" Dr. GRPO removes.
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
# **4. Experiment: Dr. GRPO.** Liu et al. drop the division by the group's spread, which weighs up instructions
# that are nearly always passed or failed. **Predict** whether it passes more or fewer test instructions than GRPO,
# then run it at the same three seeds (`set={"scale_advantages": False, "pass_at_samples": 0}`: no pass@k pass, which
# only costs time here; run folders `RUN / f"dr-GRPO-{seed}"`, as
# the cell above runs GRPO) and set `my_verdict` to "GRPO", "Dr. GRPO" or "not told apart". The check reads your
# runs' settings and reports, and applies the course's rule. Run it after a live race (`REPLAY = False`) on the same
# machine: replayed GRPO rates come from the recorded run's start model and machine, not yours. Its time below is
# rough: the race's GRPO runs without pass@k took 84 s and 73 s.

# %%
# NBVAL_CHECK_OUTPUT
my_verdict = None  # "GRPO", "Dr. GRPO" or "not told apart", by the course's rule on your three runs
grpo_rates = [reports["GRPO", seed]["after"]["pass_rate"] for seed in SEEDS]  # the GRPO arm's test pass rates


def dr_grpo_rates() -> list[float]:
    """The test pass rates of the three Dr. GRPO runs, each checked to be the run asked for."""
    found = []
    for seed in SEEDS:
        out = RUN / f"dr-GRPO-{seed}"
        assert (out / "grpo_eval.json").is_file(), f"no finished run in {shown(out)}"
        settings = json.loads((out / "settings.json").read_text())
        ran = (Path(settings["options"]["base"]).resolve(), settings["train"]["seed"], settings["recipe"]["scale_advantages"],
               settings["recipe"]["baseline"], settings["train"]["max_steps"])
        asked = (Path(sft_start).resolve(), seed, False, "group", recipe.train.max_steps)
        assert ran == asked, f"{out.name} ran (base, seed, scale_advantages, baseline, steps) = {ran}, not {asked}"
        found.append(json.loads((out / "grpo_eval.json").read_text())["after"]["pass_rate"])
    return found


def test_dr_grpo():
    if my_verdict is None:
        raise NotImplementedError("run Dr. GRPO at the three seeds, then set my_verdict")
    dr = dr_grpo_rates()
    if told_apart(grpo_rates, dr):
        expected = "GRPO" if min(grpo_rates) > max(dr) else "Dr. GRPO"
    else:
        expected = "not told apart"
    assert my_verdict == expected, f"by the course's rule your runs say {expected!r}"
    print(compare("Dr. GRPO", dr, "GRPO", grpo_rates, lower_is_better=False, metric="greedy test pass rate"))


check(test_dr_grpo)

# %%
seconds = sum(reports["GRPO", seed]["wall_seconds"] for seed in SEEDS)
print(f"exercise 4 trains for about {seconds:,.0f} s here: three runs, each as long as a GRPO run above")

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# for seed in SEEDS:
#     grpo(RunOptions(profile=PROFILE, out=RUN / f"dr-GRPO-{seed}", overwrite=True, seed=seed, device=str(DEVICE),
#                     set={"scale_advantages": False, "pass_at_samples": 0}),
#          PostTrainingOptions(task="stories", base=str(sft_start)), say=quiet, on_record=quiet)
# dr = dr_grpo_rates()
# my_verdict = ("GRPO" if min(grpo_rates) > max(dr) else "Dr. GRPO") if told_apart(grpo_rates, dr) \
#     else "not told apart"
# ```
#
# The seeds are those of the GRPO arm, so after a live race on the same machine each Dr. GRPO run draws the same first
# rollout as its GRPO twin. Expect "not told apart": in the recorded run two of GRPO's three rates are the start's
# 76.3% and a tie counts as an overlap, so Dr. GRPO is told apart only if all three of its runs beat 86.3% or all
# three end below the start. One Dr. GRPO run that keeps the start as best.pt, as three of the lesson's six runs did,
# rules out both.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
