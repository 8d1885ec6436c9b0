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
# # 10 · LoRA and preference tuning: fine-tuning few weights, and learning from a verifier's pairs with DPO
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/10_lora_and_preference_tuning.ipynb)
#
# Notebook 9 fine-tuned every weight of a small story model until it follows instructions a program can check
# ("a character named Zoe, a kite, at most five sentences"). **LoRA** trains a small low-rank update beside frozen
# weights: the optimizer keeps state for a small share of the parameters. **DPO** learns from pairs (a better and a
# worse reply to one prompt) with a loss as simple as SFT's and no reward model; here the model writes the replies
# and notebook 9's verifier says which is better. Both are built from scratch and checked against `tinylm`.
#
# **What you will learn**
# - **LoRA from scratch**: W + (α/r)·B·A with B = 0 at the start, merging, and tokens the base never had;
# - **what α/r does, measured**: the first update's size against the rank, for three choices of α;
# - the **parameter and optimizer-memory arithmetic** of LoRA;
# - **full SFT against LoRA** at equal steps, scored by the verifier;
# - the **DPO loss** derived from a reward model's objective, written by hand and checked against the package's
#   trainer, and what β does;
# - **on-policy preference pairs**: how a verifier turns a model's own samples into chosen and rejected replies;
# - **DPO on those pairs**: the pass rate before and after at three seeds; whether the story-telling survives; the
#   learning rate's part in "likelihood displacement" (one seed).
#
# **How long it takes**: a lesson of about 60 minutes (reading, code and the `cpu` run's 376 s, by the course's
# formula), then a second sitting of about 30 minutes for the 3 exercises (10 minutes each).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; tiny runs of a few steps | under a minute |
# | `cpu` (2-core laptop) | full SFT and LoRA from the story base (one run each), DPO from notebook 9's model (3 seeds, and one at a lower rate) | the last cell prints it (with notebook 9's run present; else its SFT runs first) |
# | `gpu` | the same on the gpu profile's larger story model; DPO on a preference set by command (see the end) | not measured |
#
# **Papers**: LoRA ([Hu et al., 2021](https://arxiv.org/abs/2106.09685)); rsLoRA
# ([Kalajdzievski, 2023](https://arxiv.org/abs/2312.03732)); QLoRA
# ([Dettmers et al., 2023](https://arxiv.org/abs/2305.14314)); "LoRA Learns Less and Forgets Less"
# ([Biderman et al., 2024](https://arxiv.org/abs/2405.09673)); InstructGPT
# ([Ouyang et al., 2022](https://arxiv.org/abs/2203.02155)), the RLHF that DPO replaces; Bradley–Terry
# ([Bradley & Terry, 1952](https://doi.org/10.2307/2334029)); DPO ([Rafailov et al., 2023](https://arxiv.org/abs/2305.18290));
# on-policy pairs ([Pang et al., 2024](https://arxiv.org/abs/2404.19733)); likelihood displacement
# ([Razin et al., 2024](https://arxiv.org/abs/2410.08847); [Pal et al., 2024](https://arxiv.org/abs/2402.13228)); TinyStories ([Eldan & Li, 2023](https://arxiv.org/abs/2305.07759)).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import copy
import json
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

import tinylm
from tinylm.config import GPTConfig
from tinylm.course.exercises import check
from tinylm.course.plotting import read_metrics
from tinylm.data.conversations import pad_conversations
from tinylm.data.instruct import build_examples
from tinylm.data.preference import build_pairs
from tinylm.eval.uncertainty import compare, spread
from tinylm.model.gpt import GPT
from tinylm.model.lora import LoRALinear, LoRAOptions, apply_lora, load_adapters, read_adapters, trainable_share
from tinylm.paths import runs_dir, shown
from tinylm.posttrain import on_policy
from tinylm.posttrain.dpo.objective import dpo_loss, pair_logprobs, preference_summary, preference_sums
from tinylm.posttrain.dpo.run import dpo
from tinylm.posttrain.dpo.trainer import DPOTrainer, PairLoader
from tinylm.posttrain.job import PostTrainingOptions
from tinylm.posttrain.sft.run import sft
from tinylm.posttrain.task import measure
from tinylm.posttrain.tasks.stories import Stories
from tinylm.posttrain.vocab import add_chat_tokens
from tinylm.tokenizers.chat_template import ChatTemplate
from tinylm.train.checkpoint import load_checkpoint, load_model
from tinylm.train.options import RunOptions

NOTEBOOK_STARTED = time.perf_counter()
PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
SEED = 42
SEEDS = (SEED, SEED + 1, SEED + 2)  # three seeds per arm: the fewest the course's verdict rule accepts
RUNS = runs_dir() / f"notebook-10-{PROFILE}"
tinylm.course.plotting.use_projector_style()
print(f"profile {PROFILE}, device {DEVICE}")


def quiet(_):
    pass

# %% [markdown]
# ## The starting point: notebook 9's story model
#
# Everything here starts from what notebook 9 made: the **story base** (pretrained on TinyStories, it never saw an
# instruction), the **SFT model** fine-tuned from it (DPO's start and reference), and the verifier: which
# constraints a reply meets, whether it has at least three sentences and ends as a sentence does, and a fluency guard
# (the story base's loss per token on the reply must not exceed the 99th percentile of its loss on real held-out
# story openings: with notebook 9's 80, the highest). Without notebook 9's run, the cell fine-tunes the model first (a few minutes on `cpu`).

# %%
nb9 = runs_dir() / f"notebook-09-{PROFILE}"


def is_story_sft(folder) -> bool:
    """An SFT run of the story task: its settings name the verifier's base."""
    settings = folder / "settings.json"
    return (folder / "sft_eval.json").is_file() and "verifier" in json.loads(settings.read_text()).get("task", {})


sft_start = nb9 if is_story_sft(nb9) or not (nb9 / "best.pt").exists() else RUNS / "sft-stories"
if not is_story_sft(sft_start):
    print(f"no story SFT model in {shown(sft_start)}: fine-tuning it now, as notebook 9 does")
    sft(RunOptions(profile=PROFILE, out=sft_start, overwrite=True, seed=SEED), PostTrainingOptions(task="stories"),
        say=quiet, on_record=quiet)
sft_report = json.loads((sft_start / "sft_eval.json").read_text())
sft_model, sft_tokenizer, _ = load_model(sft_start)
template = ChatTemplate(sft_tokenizer)
task = Stories(PROFILE)  # the story task: its instructions, and its verifier...
task.prepare(sft_start, "cpu", "dpo")  # ...whose story base is the one the SFT run names
story_base, verifier, splits = task.verifier_at, task.verifier, task.splits
after_sft = sft_report["after"]
print(f"story base {shown(story_base)}, SFT model {shown(sft_start)} ({sft_model.num_parameters():,} parameters); "
      f"{len(splits.train):,} training, {len(splits.validation)} validation, {len(splits.test)} test instructions")
print(f"notebook 9's SFT model passes {100 * after_sft['pass_rate']:.1f}% of the {after_sft['problems']} test "
      f"instructions (95% Wilson {100 * after_sft['low']:.1f}-{100 * after_sft['high']:.1f}%; greedy replies)")

# %% [markdown]
# ## LoRA from scratch
#
# Fine-tuning changes a weight matrix W (out × in) by some ΔW. LoRA's bet is that ΔW needs far fewer
# degrees of freedom than W has: it writes ΔW = (α/r)·B·A with A (r × in) and B (out × r) for a small
# rank r, keeps W frozen, and trains only A and B.
#
# - **B starts at zero**, so the wrapped model computes exactly what the base computes until the first optimizer
#   step. A starts random, so B's first gradient is not zero; A's is (it goes through B).
# - **α/r** scales the update. `tinylm` uses α = r, a scale of 1, unless told otherwise; the LoRA paper fixes α
#   and varies r (both measured below).
# - **Merging**: after training, W' = W + (α/r)·B·A is an ordinary matrix, with the base's shape and names.

# %%
fig, ax = plt.subplots(figsize=(10, 3.4))
ax.set_xlim(0, 10)
ax.set_ylim(0, 3.4)
ax.axis("off")
boxes = [((0.3, 0.6), 1.0, 2.2, "x\n(in)", "white"), ((2.2, 0.6), 2.2, 2.2, "W\nout × in\nfrozen", "lightgray"),
         ((5.3, 1.9), 1.5, 0.6, "A: r × in", "tab:orange"), ((5.3, 0.6), 0.6, 1.0, "B:\nout\n× r", "tab:orange"),
         ((8.4, 0.6), 1.2, 2.2, "h\n(out)", "white")]
for (x, y), w, h, label, color in boxes:
    ax.add_patch(plt.Rectangle((x, y), w, h, facecolor=color, edgecolor="black", alpha=0.8))
    ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=12)
ax.annotate("", xy=(2.2, 1.7), xytext=(1.3, 1.7), arrowprops=dict(arrowstyle="->"))
ax.annotate("", xy=(5.3, 2.2), xytext=(1.3, 2.4), arrowprops=dict(arrowstyle="->"))
ax.annotate("", xy=(8.4, 1.7), xytext=(4.4, 1.7), arrowprops=dict(arrowstyle="->"))
ax.annotate("", xy=(8.4, 1.1), xytext=(5.9, 1.1), arrowprops=dict(arrowstyle="->"))
ax.text(7.1, 2.3, "× α/r", fontsize=12)
ax.text(7.1, 0.25, "h = W·x + (α/r)·B·(A·x);  B = 0 at the start", fontsize=12, ha="center")
ax.set_title("LoRA: a frozen matrix and a trainable low-rank path beside it")
plt.show()

# %% [markdown]
# The wrapper takes any `nn.Linear` and adds the path. Written by hand, then checked against `tinylm.model.lora`
# with the same A and B:

# %%
# NBVAL_CHECK_OUTPUT
class MyLoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scaling = alpha / rank
        self.A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * (x @ self.A.T) @ self.B.T  # (..., in) -> (..., r) -> (..., out)


torch.manual_seed(0)
layer = nn.Linear(16, 24)
mine = MyLoRALinear(layer, rank=4, alpha=8)
theirs = LoRALinear(layer, rank=4, alpha=8)
x = torch.randn(5, 16)
assert torch.equal(mine(x), layer(x)) and torch.equal(theirs(x), layer(x))  # B = 0: exactly the base
with torch.no_grad():
    mine.B.normal_()
    theirs.lora_A.copy_(mine.A)
    theirs.lora_B.copy_(mine.B)
assert torch.allclose(mine(x), theirs(x), atol=1e-6)
merged = theirs.merged()
assert isinstance(merged, nn.Linear) and torch.allclose(merged(x), theirs(x), atol=1e-5)
print("MyLoRALinear matches tinylm.model.lora.LoRALinear; merged, it is a plain nn.Linear computing the same")

# %% [markdown]
# **α/r, measured.** Does the rank change the size of LoRA's first update? At step one B = 0, so only
# B moves, and AdamW moves each entry of B by ± the learning rate whatever its gradient's size (m/√v = g/|g|). Then
# ΔW = (α/r)·ΔB·A adds up r terms, so at a fixed scale it grows with r: like √r if the terms had random signs,
# like r if they agreed. Three choices, all equal at rank 8 (`RANK`): **α = r** (`tinylm`'s default, scale 1);
# **α fixed** at 8 (as the LoRA paper does; scale 8/r); **α/√r** (rsLoRA, for stable learning at large ranks;
# scale √(8/r)). The cell takes one AdamW step on one batch at each rank and
# prints ‖ΔW‖/‖W‖ over the wrapped weights, the mean of three seeds of A's start ± half their range. A
# rank-invariant scale would print the same number in every row of its column.

# %%
RANK = 8
TARGETS = ("attn.c_attn", "attn.c_proj")
PROBE_RATE = 1e-2  # the first step's learning rate: AdamW moves every entry of B by about this much
probe = build_examples([i.record() for i in splits.train[:16]], template, sft_model.config.block_size)
probe_batch = pad_conversations(probe.rendered, template.pad)
SCALINGS = {"α = r": lambda r: 1.0, f"α = {RANK}": lambda r: RANK / r, "α/√r (rsLoRA)": lambda r: math.sqrt(RANK / r)}
RANKS = [r for r in (1, 2, 4, 8, 16, 32, 64) if r <= sft_model.config.n_embd]


def first_step_change(rank: int, scaling: float, seed: int) -> float:
    """‖ΔW‖/‖W‖ over the wrapped layers after one AdamW step of LoRA at this rank and scale."""
    torch.manual_seed(seed)
    model = copy.deepcopy(sft_model)
    apply_lora(model, rank, alpha=scaling * rank, targets=TARGETS)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=PROBE_RATE, weight_decay=0.0)
    model(*probe_batch)[1].backward()
    optimizer.step()
    adapters = [m for m in model.modules() if isinstance(m, LoRALinear)]
    with torch.no_grad():
        change = sum((m.scaling * m.lora_B @ m.lora_A).square().sum() for m in adapters)
        weight = sum(m.base.weight.square().sum() for m in adapters)
    return (change / weight).sqrt().item()


changes = {name: [spread([first_step_change(r, scale(r), seed) for seed in SEEDS]) for r in RANKS]
           for name, scale in SCALINGS.items()}
print(f"first-step relative change ‖ΔW‖/‖W‖ (mean ± half the range over {len(SEEDS)} seeds), learning rate "
      f"{PROBE_RATE:g}")
print(f"{'rank':>5} " + " ".join(f"{name:>19}" for name in SCALINGS))
for i, r in enumerate(RANKS):
    print(f"{r:>5} " + " ".join(f"{changes[name][i].mean:>10.5f} ± {changes[name][i].half_range:.5f}"
                                   for name in SCALINGS))
spans = {name: values[-1].mean / values[0].mean for name, values in changes.items()}
print(f"rank {RANKS[-1]} against rank {RANKS[0]}: " + ", ".join(f"{name} {span:.2f}×" for name, span in spans.items())
      + f"; closest to rank-invariant (1×): {min(spans, key=lambda name: abs(math.log(spans[name])))}")

# %% [markdown]
# At α = r the first update grows with the rank, so a learning rate tuned at
# rank 8 takes larger first steps at higher ranks and smaller ones at rank 1; a fixed α turns that around, its
# scale 8/r shrinking faster than the sum grows; α/√r stays nearly flat. That is the first step only; rsLoRA's argument
# is about the whole of training at large ranks.
#
# **Which layers.** `apply_lora` wraps the linear layers whose names end with the chosen targets: by default the
# attention's fused query/key/value projection `attn.c_attn` and its output `attn.c_proj` (the MLP's on request;
# the LoRA paper's GPT-2 experiments adapt W_q and W_v only); everything else freezes. One difference: `tinylm` gives `c_attn` (W_q, W_k and W_v in one
# matrix) **one** rank-r adapter, so the three share A and together change by rank at most r; the paper's GPT-2 code
# (`loralib.MergedLinear` with `enable_lora=[True, False, True]`) gives W_q and W_v a rank-r adapter each and
# freezes W_k. With W_q, W_k and W_v each d × d (`c_attn` maps d to 3d), both train the same count in `c_attn`:
# r·(d + 3d) = 2·r·(d + d) = 4rd (tinylm's `c_proj` adapter adds 2rd more).
#
# **New tokens.** The story base has no chat tokens: SFT adds three, each starting as the same mean row. Frozen,
# they would stay identical: `<|im_end|>` could never get a logit of its own, and the model could never learn to
# stop. So `tinylm` trains those three rows too (shared by the embedding and the tied head) when LoRA fine-tunes a
# base that lacked them.
#
# ## The arithmetic: what LoRA saves
#
# A wrapped layer trains r·(in + out) numbers instead of in·out. AdamW keeps two fp32 moments per trainable
# number, and training needs a gradient for each; the frozen weights need neither. Counted from the model's own
# layers, checked against what `apply_lora` leaves trainable, for this course's model and GPT-2 124M (on the meta
# device: shapes, no memory):

# %%
def lora_trainable(model: nn.Module, rank: int, targets: tuple[str, ...]) -> int:
    return sum(rank * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.endswith(tuple("." + t for t in targets)))


models = {f"course chat model ({PROFILE})": sft_model.config, "GPT-2 124M": GPTConfig()}
print(f"rank {RANK} on {', '.join(TARGETS)}; optimizer state = 2 fp32 moments per trainable number")
for name, config in models.items():
    with torch.device("meta"):
        model = GPT(config)
    predicted = lora_trainable(model, RANK, TARGETS)
    total = sum(p.numel() for p in model.parameters())
    apply_lora(model, RANK, targets=TARGETS)
    assert trainable_share(model) == (predicted, total + predicted)  # the adapters join the model's parameters
    full_bytes, lora_bytes = 2 * 4 * total, 2 * 4 * predicted
    print(f"{name:>24}: {predicted:>9,} of {total:>11,} parameters train ({100 * predicted / total:.2f}%); "
          f"AdamW state {full_bytes / 2**20:8.1f} MiB full vs {lora_bytes / 2**20:6.2f} MiB LoRA "
          f"({full_bytes / lora_bytes:.0f}× less)")

# %% [markdown]
# The share is r·(in + out)/(in·out) per wrapped layer, falling as the layers widen, and smaller over the whole
# model (unwrapped layers and embeddings train nothing). For GPT-2 124M the optimizer state drops from about a
# gigabyte to a few megabytes; the frozen weights must still be in memory (QLoRA stores them in 4 bits), and so
# must the activations.
#
# ## Full SFT against LoRA, at equal steps
#
# Same story base, instructions, batches and steps; two things differ: which weights train, and the learning rate
# (each recipe's, printed; LoRA's is five times larger, not tuned here). `sft` chooses
# each run's `best.pt` by the verifier's pass rate on the validation instructions and reports it on the test ones.
# Both arms run fewer steps than notebook 9: which learns faster per step? One seed per arm, so a measurement, not a
# verdict: the intervals cover the test set's uncertainty, not training's (the course's rule needs three seeds per
# arm, which this notebook does not run).
#
# **Predict, then run.** On this model of 1,645,312 parameters, which passes more test instructions after the
# same steps? Which constraint is hardest?

# %%
COMPARE_STEPS = {"smoke": 10, "cpu": 300, "gpu": 300}[PROFILE]
arms = {"full": None, "lora": LoRAOptions(rank=RANK, targets=TARGETS)}
sft_reports, rates = {}, {}
for arm, lora in arms.items():
    out = RUNS / f"sft-{arm}-seed{SEED}"
    run = RunOptions(profile=PROFILE, out=out, overwrite=True, seed=SEED, max_steps=COMPARE_STEPS)
    report = sft_reports[arm] = sft(run, PostTrainingOptions(task="stories", lora=lora), say=quiet,
                                    on_record=quiet)
    rates[arm] = json.loads((out / "settings.json").read_text())["train"]["learning_rate"]
    after = report["after"]
    print(f"{arm:>4} @ {rates[arm]:g}: test pass rate {100 * after['pass_rate']:.1f}% (95% Wilson "
          f"{100 * after['low']:.1f}-{100 * after['high']:.1f}%); "
          + ", ".join(f"{kind} {100 * held['held']:.0f}%" for kind, held in after["kinds"].items())
          + f"; {report['train_seconds']:.0f} s of training")
lora_info = sft_reports["lora"]["lora"]
print(f"LoRA trains {100 * lora_info['trainable'] / lora_info['parameters']:.2f}% of the parameters (adapters file "
      f"{lora_info['adapters_bytes'] / 1024:.0f} KiB, checkpoint {lora_info['checkpoint_bytes'] / 2**20:.1f} MiB)")
first = task.held_out(0, 1).test[0]
print(f"\ninstruction: {first.instruction}")
for arm in arms:  # each arm's reply to the first test instruction
    model, _, _ = load_model(RUNS / f"sft-{arm}-seed{SEED}")
    [reply] = measure(model, template.tokenizer, task, [first], answer_loss=False)["replies"]
    print(f"{arm:>4} ({'passes' if reply['passed'] else 'fails'}): {reply['reply']!r}")

# %% [markdown]
# (On `smoke` these lines only show that everything runs.) Full SFT passes 57.0% (50.8-63.0%), LoRA 10.8%
# (7.6-15.3%): the intervals do not overlap, so the test set does not explain the gap; a second seed could move it.
# The word is the hardest constraint for both (33% and 6%); LoRA rarely learns the name (21% against 97%). LoRA can
# fall behind for at least three reasons: what SFT must change in a small model need not be low rank; only attention
# is adapted (the MLPs stay frozen); its learning rate is not tuned here. Nor was it much faster (37 s against 41 s
# of training, one run each, on the 2-core AVX-512 CPU these outputs came from): both arms run the whole forward pass
# and backpropagate through every layer; LoRA saves optimizer state and weight gradients, not the bulk of the time.
# On large models both outcomes are on record: Hu et al. find LoRA on GPT-3 175B matching full fine-tuning; Biderman
# et al., on Llama-2 for code and mathematics, find it learning less and forgetting less.
#
# **Merging, measured.** `load_model` merges a LoRA run's adapters on load, so `chat`, `serve`, `sample` and
# `interop export` read it like any other run; `adapters.pt` keeps the adapters alone. Put back on the base,
# unmerged, they give the merged model's logits to float32 rounding:

# %%
lora_dir = RUNS / f"sft-lora-seed{SEED}"
merged_model, chat_tokenizer, _ = load_model(lora_dir)  # merged on load
base_model, base_tokenizer, _ = load_model(story_base)
unmerged, _ = add_chat_tokens(base_model, base_tokenizer)
load_adapters(unmerged, read_adapters(lora_dir / "adapters.pt"))
unmerged.eval()
ids = torch.tensor([chat_tokenizer.encode("Once upon a time there was a little")])
with torch.no_grad():
    difference = (merged_model(ids)[0] - unmerged(ids)[0]).abs().max().item()
print(f"adapters.pt on the base, unmerged, against best.pt merged: max |Δlogit| = {difference:.2e}")
assert difference < 1e-4

# %% [markdown]
# ## From a reward model to DPO
#
# Often it is easier to say which of two answers is better than to write the right one. A **preference record**
# holds a prompt x, a chosen answer y_w and a rejected one y_l.
#
# **The reward-model route (RLHF, InstructGPT).** Fit a reward model r(x, y) so that the probability that y_w
# beats y_l is σ(r(x, y_w) − r(x, y_l)) (the Bradley–Terry model), by minimising −log σ(r_w − r_l) over the
# pairs. Then train the policy π to maximise the reward while staying near the SFT model π_ref:
# max E[r(x, y)] − β·KL(π ‖ π_ref), with sampling and a policy-gradient method (PPO): four models (the policy, the
# frozen reference, the reward model, PPO's value model) and an RL loop. DPO keeps two models and no loop.
#
# **DPO's shortcut.** That KL-constrained problem has a closed-form optimum:
# π*(y|x) = π_ref(y|x)·exp(r(x, y)/β) / Z(x). Read backwards, any policy defines the reward it is optimal for:
# r(x, y) = β·log(π(y|x) / π_ref(y|x)) + β·log Z(x). Put that into the Bradley–Terry loss: Z(x) is the same for
# both answers of a pair, so it cancels, and what is left is a loss on the policy alone,
#
# L = −log σ(β·[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))]).
#
# β·log(π/π_ref) is the **implicit reward**; β times the bracket is the chosen answer's reward minus the rejected
# one's: the **margin**. log π(y|x) sums the answer tokens' log-probabilities (notebook 9's answer mask). π_ref is
# the frozen SFT model: `tinylm` computes its log-probabilities once for every pair, before training.
#
# ```
#  prompt x ──► chosen y_w ──► log π(y_w|x) − log π_ref(y_w|x) ─┐ ×β
#          └──► rejected y_l ─► log π(y_l|x) − log π_ref(y_l|x) ─┴─► margin ─► −log σ(margin) ─► loss
# ```
#
# Written by hand, then checked against `tinylm.posttrain.dpo.objective.dpo_loss` (and, after the runs, the DPO trainer):

# %%
# NBVAL_CHECK_OUTPUT
def my_dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
    margin = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return -F.logsigmoid(margin).mean()


torch.manual_seed(0)
logps = [-torch.rand(6) * 40 for _ in range(4)]  # sums of answer log-probabilities of 6 pairs
for beta in (0.1, 0.5):
    assert torch.allclose(my_dpo_loss(*logps, beta), dpo_loss(*logps, beta).loss)
start = my_dpo_loss(logps[2], logps[3], logps[2], logps[3], 0.1)  # the policy is the reference: margin 0
assert math.isclose(start.item(), math.log(2), rel_tol=1e-6)
print(f"my_dpo_loss matches tinylm.posttrain.dpo.objective.dpo_loss; at the start (policy = reference) it is ln 2 = {start:.4f}")

# %% [markdown]
# **What β does.** The loss depends on the log-ratio difference d only through β·d: a small β makes it
# flat, so the policy must move far from the reference to satisfy it; a large β is satisfied by small moves. β is the
# KL penalty's weight in the objective DPO came from.

# %%
d = torch.linspace(-20, 40, 200)
fig, ax = plt.subplots(figsize=(8, 4))
for beta in (0.05, 0.1, 0.5):
    ax.plot(d, -F.logsigmoid(beta * d), label=f"β = {beta}")
ax.axvline(0, color="gray", lw=0.8)
ax.set_xlabel("log-ratio difference d (chosen − rejected, nats)")
ax.set_ylabel("DPO loss −log σ(β·d)")
ax.set_title("a small β needs larger moves away from the reference")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Preference pairs from a verifier
#
# A human can rank two replies, a reward model can, and for instructions a program can check, so can a verifier.
# These pairs are **on-policy**: both replies written by the SFT model DPO starts from (sampled once, before
# training), so that DPO moves probability between things it really writes, as in iterative reasoning preference
# optimisation ([Pang et al., 2024](https://arxiv.org/abs/2404.19733): a model's own answers, a correct one chosen
# and a wrong one rejected). `dpo` with `task="stories"`:
#
# 1. the SFT model samples four replies to each of several hundred training instructions, at temperature 1;
# 2. the verifier ranks them: every pass above every fail, and fails by how many of its checks hold (each
#    constraint, the ending, fluency);
# 3. an instruction gives one pair: **chosen** = a reply of the top rank (a pass, wherever one passed),
#    **rejected** = a failing reply of the bottom rank; none when all rank alike. Where no reply passed, the chosen
#    one also fails, by fewer checks (the run below prints how many pairs have a passing chosen reply).
#
# Validation pairs are made alike, for the DPO loss each evaluation reports, but `best.pt` is chosen by what DPO is
# for: the pass rate of greedy replies to the validation instructions. Four samples for two training instructions:

# %%
demo_instructions = task.train_problems()[:2]
demo = on_policy.sample_replies(sft_model, sft_tokenizer, task, demo_instructions, samples=4, seed=SEED,
                                desc="demo replies")
for instruction, completions in zip(demo_instructions, demo):
    scores = task.score_completions(sft_tokenizer, [instruction] * len(completions), completions)
    replies = task.reply_texts(sft_tokenizer, completions)
    losses = verifier.check(replies, [instruction] * len(replies))  # the fluency guard's loss per token, shown
    ranks = [on_policy.rank(score) for score in scores]
    print(f"instruction: {instruction.instruction}")
    for reply, score, verdict, place in zip(replies, scores, losses, ranks):
        role = "" if max(ranks) == min(ranks) else "top" if place == max(ranks) else "bottom" if place == min(ranks) else ""
        checks = ", ".join(f"{kind} {'yes' if held else 'no'}" for kind, held in score.kinds.items() if kind != "fluent")
        print(f"  {'PASS' if score.correct else 'fail':>4} {role:>6} | {checks}, loss {verdict.loss:.2f} | {reply[:90]!r}")

# %% [markdown]
# ## DPO on notebook 9's model
#
# `tinylm.posttrain.dpo.run.dpo` (`python -m tinylm.dpo --task stories`) samples the pairs, computes the
# reference's log-probabilities of every pair once, then trains through the same Trainer as SFT. Before and after,
# it measures on the **test** instructions the pass rate of greedy replies and the **answer loss of the test
# stories**, SFT's targets, which DPO never trains on: if DPO made the model worse at telling stories, it would rise.
#
# Three seeds. The first run samples the pairs (its progress bar counts the replies); the others train on the same
# pairs (`data=` the first run), so the seeds differ in batch order: they measure training's randomness, not
# sampling's. The SFT start is one model, repeated three times in the verdict lines below only to meet the rule's
# three seeds: their "every seed of the SFT start" and "10%" do not apply, since one model has no seed-to-seed
# spread. Read them as: every DPO seed passes more test instructions than the SFT model, or not.
#
# **Predict, then run.** The SFT model already passes most test instructions (70.3%, printed above).
# Will DPO on its own replies raise that? Which constraint will move most? Will the story loss go up?

# %%
BETA = 0.1
recipe = task.recipe("dpo", PROFILE)
first_dpo = RUNS / f"dpo-seed{SEED}"
dpo_reports = {}
for seed in SEEDS:
    print(f"--- DPO with seed {seed} ---")
    options = PostTrainingOptions(task="stories", base=sft_start, data=None if seed == SEED else str(first_dpo))
    run = RunOptions(profile=PROFILE, out=RUNS / f"dpo-seed{seed}", overwrite=True, seed=seed, set={"beta": BETA})
    dpo_reports[seed] = dpo(run, options, say=quiet, on_record=None if seed == SEED else quiet)
counts = dpo_reports[SEED]["sampled"]["train"]
print(f"pairs: {counts['pairs']} from {counts['problems']} training instructions x {recipe.samples} replies "
      f"({100 * counts['passed'] / counts['replies']:.1f}% of the replies passed; {counts['chosen_passed']} pairs with "
      f"a passing chosen reply); {recipe.train.max_steps} steps of {recipe.train.batch_size} pairs = "
      f"{recipe.train.max_steps * recipe.train.batch_size / counts['pairs']:.1f} passes over them")

# %% [markdown]
# **The package's step, checked.** Each run's saved reference log-probabilities must be the SFT model's, computed
# here again; then `DPOTrainer`'s loss on a real batch against `my_dpo_loss`, with the first seed's `best.pt` as the
# policy: the losses and their gradients must agree.

# %%
def my_batch_logprobs(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each row's sum of log-probabilities of its answer tokens (targets that are not -1): (B, T) -> (B,)."""
    logp = torch.log_softmax(model(x)[0][..., : sft_tokenizer.vocab_size].float(), dim=-1)
    picked = logp.gather(-1, y.clamp(min=0)[..., None]).squeeze(-1)
    return (picked * (y != -1)).sum(dim=1)


saved_pairs = json.loads((first_dpo / "pairs.json").read_text())
train_pairs = build_pairs(saved_pairs["train"]["records"], template, sft_model.config.block_size).pairs
score = dict(pad_id=template.pad, batch_size=32, device="cpu", vocab_limit=sft_tokenizer.vocab_size)
sft_reference = pair_logprobs(sft_model, train_pairs, **score)
for seed in SEEDS:
    saved = load_checkpoint(RUNS / f"dpo-seed{seed}" / "last.pt")["dpo"]["reference"]
    assert torch.allclose(saved, sft_reference, atol=1e-3), seed  # every run trained against the SFT model
policy, _, _ = load_model(first_dpo / "best.pt")
cfg = recipe.train
loader = PairLoader(train_pairs[:32], sft_reference[:32], cfg.batch_size, template.pad)
trainer = DPOTrainer(policy, cfg, loader, tokenizer=sft_tokenizer, device="cpu", beta=BETA, template=template,
                     val_pairs=train_pairs[:8], val_reference=sft_reference[:8])
batch = loader.next_batch()
x, y = batch[0], batch[1]
package_loss = trainer.batch_loss(batch)
package_grad = torch.autograd.grad(package_loss, trainer.model.lm_head.weight)[0]
policy_sums = my_batch_logprobs(trainer.model, x, y).view(2, -1)  # rows: the chosen replies, then the rejected
with torch.no_grad():
    reference_sums = my_batch_logprobs(sft_model, x, y).view(2, -1)
my_loss = my_dpo_loss(policy_sums[0], policy_sums[1], reference_sums[0], reference_sums[1], BETA)
my_grad = torch.autograd.grad(my_loss, trainer.model.lm_head.weight)[0]
assert torch.isclose(my_loss, package_loss, rtol=1e-4, atol=1e-5), (my_loss, package_loss)
assert torch.allclose(my_grad, package_grad, rtol=1e-3, atol=1e-6)
print(f"the {len(SEEDS)} runs' saved references == the SFT model's on {len(train_pairs)} training pairs")
print(f"a batch of {len(x) // 2} pairs: DPOTrainer's loss {package_loss.item():.4f} == by hand {my_loss.item():.4f} "
      "(the SFT model against itself would give ln 2); the output layer's gradients agree")

# %%
def pass_line(measured: dict) -> str:
    kinds = ", ".join(f"{kind} {100 * held['held']:.0f}%" for kind, held in measured["kinds"].items())
    return (f"{100 * measured['pass_rate']:.1f}% (95% Wilson {100 * measured['low']:.1f}-{100 * measured['high']:.1f}%"
            f"; {kinds})")


before = dpo_reports[SEED]["before"]
print(f"test: {before['problems']} instructions, which chose nothing; β = {BETA}; seeds {SEEDS}")
print(f"     SFT start: pass rate {pass_line(before)}; story loss {before['answer_loss']:.3f}")
for seed in SEEDS:
    report = dpo_reports[seed]
    print(f"DPO, seed {seed}: pass rate {pass_line(report['after'])}; story loss "
          f"{report['after']['answer_loss']:.3f}; best.pt step {report['after']['step']}")
after_rates = [dpo_reports[seed]["after"]["pass_rate"] for seed in SEEDS]
after_losses = [dpo_reports[seed]["after"]["answer_loss"] for seed in SEEDS]
print(compare("DPO", after_rates, "the SFT start", [before["pass_rate"]] * len(SEEDS), metric="test pass rate",
              lower_is_better=False))
print(compare("DPO", after_losses, "the SFT start", [before["answer_loss"]] * len(SEEDS),
              metric="story loss (nats per token)"))
for old, new in list(zip(dpo_reports[SEED]["before"]["replies"], dpo_reports[SEED]["after"]["replies"]))[:2]:
    print(f"\ninstruction: {old['prompt']}\nSFT: {old['reply'][:300]!r}\nDPO: {new['reply'][:300]!r}")

# %% [markdown]
# (On `smoke` the figures only show that everything runs.) Every DPO seed passes more test instructions than the
# SFT model (77.9-81.1% against 70.3%); whether that beats the test set's chance would need a paired test,
# instruction by instruction, which this notebook does not run (seeds 42 and 44's intervals overlap the start's).
# Seeds 42 and 43 chose step 50, seed 44 step 100: choosing by the validation pass rate matters (seed 42's fell from
# 78.8% to 71.2% by step 100). The name held before and after (100%), the length as often or a little more often
# (97% before, 98-99% after); the word, the weakest, rose from 59% to 65-71%. The price is the story loss, on SFT
# targets DPO never trains on: it rose 0.033 nats on average, more than the seeds' range (0.012). So at this rate
# the gain comes with a small drop in the likelihood of the reference stories (every greedy reply still passes the
# fluency guard). And 395 of the 497 pairs had a passing chosen reply: in the rest DPO moved
# towards a failing one.
#
# ## Likelihood displacement, and what causes it
#
# The DPO loss depends on the margin alone, so it also falls when **both** replies become less likely, the rejected
# one faster ("likelihood displacement", Razin et al., 2024): the chosen replies' implicit reward β·log(π/π_ref)
# turns negative, the model putting less probability on its own good stories than before DPO. Two settings can make
# it worse: the **learning rate**, and the **passes** over the pairs (the second begins at step 63). Razin et al.
# trace it to chosen and rejected replies being alike, as two samples of one model are (see also
# [Pal et al., 2024](https://arxiv.org/abs/2402.13228)). The cell varies the rate only: one arm at a fifth of it, on
# the same pairs and steps (one seed: a measurement, not a verdict).

# %%
LOW_RATE = recipe.train.learning_rate / 5
low_report = dpo(RunOptions(profile=PROFILE, out=RUNS / f"dpo-low-seed{SEED}", overwrite=True, seed=SEED,
                            learning_rate=LOW_RATE, set={"beta": BETA}),
                 PostTrainingOptions(task="stories", base=sft_start, data=str(first_dpo)), say=quiet, on_record=quiet)
high, low = f"lr {recipe.train.learning_rate:g}", f"lr {LOW_RATE:g}"
measures = {  # what best.pt of each run measured; the rewards on the validation pairs
    "test pass rate": lambda r: r["after"]["pass_rate"],
    "story loss": lambda r: r["after"]["answer_loss"],
    "chosen reward": lambda r: r["preference"]["after"]["validation"]["chosen_reward"],
    "rejected reward": lambda r: r["preference"]["after"]["validation"]["rejected_reward"],
}
print(f"{high}: mean ± half the range over seeds {SEEDS}; {low}: seed {SEED}")
for label, read in measures.items():
    print(f"  {label:>15}: {high} {spread([read(dpo_reports[s]) for s in SEEDS]).format(3)}   {low} "
          f"{read(low_report):.3f}")

# %%
fig, (ax_pass, ax_reward) = plt.subplots(1, 2, figsize=(13, 4))
for name, prefix, color in ((high, "dpo", "tab:blue"), (low, "dpo-low", "tab:orange")):
    evals = [r for r in read_metrics(RUNS / f"{prefix}-seed{SEED}") if r.get("event") in ("eval", "final")]
    steps = [r["step"] for r in evals]
    ax_pass.plot(steps, [100 * r["pass_rate"] for r in evals], "o-", color=color, ms=3, label=name)
    ax_reward.plot(steps, [r["preference_chosen_reward"] for r in evals], "-", color=color, label=f"chosen, {name}")
    ax_reward.plot(steps, [r["preference_rejected_reward"] for r in evals], "--", color=color, label=f"rejected, {name}")
ax_pass.axhline(100 * dpo_reports[SEED]["before"]["pass_rate"], color="gray", lw=0.8,
                label="SFT start (test)")
ax_pass.set(xlabel="DPO step", ylabel="validation pass rate (%)", title=f"greedy replies that pass, seed {SEED}")
ax_reward.axhline(0, color="gray", lw=0.8)
ax_reward.set(xlabel="DPO step", ylabel="mean implicit reward β·log(π/π_ref)", title="validation rewards")
for ax in (ax_pass, ax_reward):
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# At the recipe's rate both rewards are already below 0 at the first evaluation (step 50) and fall further by step
# 100: the margin grows because the rejected replies fall faster, while the chosen ones, the model's own best
# replies, also lose probability; seed 42's validation pass rate falls back meanwhile. At a fifth of the rate
# both move less, and so does the margin; the story loss stayed put (3.111 against 3.109), but the test pass rate
# barely moved (0.707 against 0.703; one seed). Fewer passes were not tried.
#
# **LoRA and DPO compose.** `dpo(run, PostTrainingOptions(task="stories", base=sft_start, lora=LoRAOptions(rank=8)))` (or
# `python -m tinylm.dpo --task stories --base runs/notebook-09-cpu --lora-rank 8`) trains adapters instead of every
# weight. With B = 0 it starts as the reference; `tinylm` computes the reference's log-probabilities once, before
# training, so it needs no copy.
#
# **On a GPU: pairs someone else wrote.** `python -m tinylm.dpo --task preference --profile gpu`
# runs DPO on Raschka's preference set ("Build a Large Language Model (From Scratch)", chapter 7's bonus material:
# each of the 1,100 answers rewritten once by Llama 3.1 70B, at random more polite (the rewrite chosen) or less
# polite (the original chosen)), from GPT-2 124M fine-tuned on those instructions (`python -m tinylm.sft --task
# instruct`). Its report gives the test preference accuracy; neither reply of a pair is the model's own.
#
# The story runs from the command line:
#
# ```bash
# python -m tinylm.sft --task stories --profile cpu --lora-rank 8 --out runs/sft-lora-cpu   # the recipe's 1,000 steps; best.pt and adapters.pt
# python -m tinylm.dpo --task stories --profile cpu --base runs/notebook-09-cpu --out runs/dpo-stories-cpu
# python -m tinylm.chat --ckpt runs/dpo-stories-cpu
# ```
#
# ## What you learned
#
# - LoRA adds (α/r)·B·A beside a frozen W; with B = 0 the wrapped model equals the base, and merging folds A and B
#   into W.
# - Tokens the base never had need trainable rows, or the model could never learn to stop.
# - α/r sets the update's scale: with AdamW the first step grows with r at α = r, shrinks at a fixed α, and stays
#   nearly flat at α/√r.
# - LoRA saves optimizer state and gradients, per wrapped layer all but r·(in + out)/(in·out) of them; the frozen
#   weights and the activations remain. At equal steps (300), full SFT passed 57.0% of the test instructions and
#   rank-8 LoRA 10.8% (one seed each).
# - DPO is the reward-model objective with the reward written as β·log(π/π_ref): a loss on the log-probabilities
#   of a pair's replies, the reference's computed once.
# - A verifier ranks the model's own samples into pairs; DPO raised the pass rate (0.703 to 0.790 on average,
#   every seed ahead of the SFT model) but also the story loss (+0.033).
# - The margin can grow with both replies pushed down (likelihood displacement); at a fifth of the rate both fell
#   far less, and the pass rate barely moved.
#
# ## Exercises
#
# **1. Merge by hand.** Write `merge(layer)` that returns an `nn.Linear` computing what a `LoRALinear` computes
# (without dropout): W + (α/r)·B·A, the bias kept. The check compares outputs on random inputs after moving B.

# %%
# NBVAL_CHECK_OUTPUT
def merge(layer: LoRALinear) -> nn.Linear:
    raise NotImplementedError


def test_merge():
    torch.manual_seed(1)
    wrapped = LoRALinear(nn.Linear(12, 7), rank=3, alpha=6)
    with torch.no_grad():
        wrapped.lora_B.normal_()
    x = torch.randn(4, 12)
    plain = merge(wrapped)
    assert isinstance(plain, nn.Linear) and not isinstance(plain, LoRALinear)
    assert torch.allclose(plain(x), wrapped(x), atol=1e-5)


check(test_merge)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def merge(layer):
#     merged = nn.Linear(layer.base.in_features, layer.base.out_features, bias=layer.base.bias is not None)
#     with torch.no_grad():
#         merged.weight.copy_(layer.base.weight + layer.scaling * layer.lora_B @ layer.lora_A)
#         if layer.base.bias is not None:
#             merged.bias.copy_(layer.base.bias)
#     return merged
# ```
# </details>
#
# **2. Preference accuracy with ties.** Given each pair's policy and reference log-probabilities of the chosen and
# rejected answers, return the share of pairs whose chosen answer has the higher implicit reward, a tie counting
# half (so that the reference itself scores 50%). The check compares with `tinylm.posttrain.dpo.objective.preference_summary`.

# %%
# NBVAL_CHECK_OUTPUT
def preference_accuracy(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> float:
    """policy, reference: (N, 2) log-probabilities, column 0 the chosen answer, column 1 the rejected one."""
    raise NotImplementedError


def test_preference_accuracy():
    torch.manual_seed(2)
    reference = -torch.rand(50, 2) * 30
    policy = reference + torch.randn(50, 2)
    policy[:10] = reference[:10]  # ten ties
    for beta in (0.1, 1.0):
        expected = preference_summary(preference_sums(policy, reference, beta))["accuracy"]
        assert math.isclose(preference_accuracy(policy, reference, beta), expected, rel_tol=1e-9)
    assert preference_accuracy(reference, reference, 0.1) == 0.5


check(test_preference_accuracy)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def preference_accuracy(policy, reference, beta):
#     rewards = beta * (policy - reference)
#     margin = rewards[:, 0] - rewards[:, 1]
#     return ((margin > 0).sum() + 0.5 * (margin == 0).sum()).item() / len(margin)
# ```
# </details>
#
# **3. Experiment: rank 1.** The α/r measurement above printed how the first update's size changes with the
# rank at α = r (`tinylm`'s default). **Predict** from it: at the same learning rate and steps, will a rank-1
# adapter pass more or fewer test instructions than the rank-8 run? Then run the LoRA arm again with
# `LoRAOptions(rank=1, targets=TARGETS)`, seed `SEED`, `COMPARE_STEPS` steps from the story base, into
# `RUNS / "sft-lora-rank1"`, and set `my_rank1_pass_rate` to its test pass rate. The check reads your run and
# prints it beside the rank-8 run.

# %%
# NBVAL_CHECK_OUTPUT
my_rank1_pass_rate = None  # replace with your measurement


def test_rank1_pass_rate():
    if my_rank1_pass_rate is None:
        raise NotImplementedError("set my_rank1_pass_rate to the test pass rate of your rank-1 run")
    out = RUNS / "sft-lora-rank1"
    saved = load_checkpoint(out / "last.pt")
    assert saved["lora"]["rank"] == 1 and saved["step"] == COMPARE_STEPS, (saved["lora"], saved["step"])
    recorded = json.loads((out / "sft_eval.json").read_text())["after"]
    assert abs(my_rank1_pass_rate - recorded["pass_rate"]) < 1e-9, f"your run recorded {recorded['pass_rate']}"
    rank8 = sft_reports["lora"]["after"]["pass_rate"]
    print(f"rank 1: {recorded['pass_rate']:.3f} (95% Wilson {recorded['low']:.3f}-{recorded['high']:.3f}); rank "
          f"{RANK}: {rank8:.3f}; the first-step change at α = r was {changes['α = r'][RANKS.index(1)].mean:.5f} at rank 1 "
          f"against {changes['α = r'][RANKS.index(RANK)].mean:.5f}")


check(test_rank1_pass_rate)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# report = sft(RunOptions(profile=PROFILE, out=RUNS / "sft-lora-rank1", overwrite=True, seed=SEED,
#                         max_steps=COMPARE_STEPS),
#              PostTrainingOptions(task="stories", lora=LoRAOptions(rank=1, targets=TARGETS)), say=quiet,
#              on_record=quiet)
# my_rank1_pass_rate = report["after"]["pass_rate"]
# ```
#
# One seed is a measurement, not a verdict. Rank 1 also trains fewer numbers, so a gap mixes two causes, the smaller
# first steps and the smaller capacity. Training rank 1 at α = √8 (rsLoRA's scale, whose first step at rank 1 nearly
# matches rank 8's in the α/r table) would separate them.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
