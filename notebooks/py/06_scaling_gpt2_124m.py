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
# # 6 · Scaling to GPT-2 124M
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/06_scaling_gpt2_124m.ipynb)
#
# Notebooks 3 and 5 trained models that fit on a laptop. This one is about the model that does not:
# GPT-2 small, 124M parameters, trained on 10 billion tokens of FineWeb-Edu, the recipe of Karpathy's
# [build-nanogpt](https://github.com/karpathy/build-nanogpt): about 8.6 × 10¹⁸ FLOPs, GPU-hours rather than
# laptop-hours (the arithmetic is below). Every piece of that run is in `tinylm`, and every piece
# runs here at a size that takes seconds: the data pipeline, a real two-process data-parallel run,
# `torch.compile`, the HellaSwag benchmark and the export to Hugging Face. Then the real thing: OpenAI's own
# GPT-2 124M weights, loaded into tinylm's `GPT`, sampled and scored, to set the numbers a 124M run aims at
# beside yours. On a GPU runtime the notebook also trains the 124M model itself, for a bounded time.
#
# **What you will learn**
# - how to budget a training run: parameters, FLOPs per token, `6ND`, GPU-hours at a given MFU, and how
#   many tokens a model of this size "should" see;
# - how a 10B-token corpus becomes token shards, and how a loader hands each GPU its own windows of them
#   and resumes on a different number of GPUs;
# - what distributed data parallel (DDP) does on every step (drawn, then checked), and how the tokens per
#   step stay fixed when the number of GPUs changes; then a real 2-process run, launched with `torchrun`;
# - what `torch.compile` buys, measured: eager against compiled time per step, the compile time, and the
#   same losses; and how MFU measures how well a run uses a GPU;
# - how HellaSwag scores a model with no generation at all, why `acc_norm` means different numbers under
#   different conventions (per token, per character, GPT-3's), and how many examples it takes to tell two
#   scores apart (a 95% confidence interval on every accuracy);
# - how a model moves to and from the layout `transformers` (and the Hugging Face Hub) use, and where
#   OpenAI's GPT-2 124M lands on the validation loss and HellaSwag against your run and the published numbers.
#
# **Papers and code behind it**: GPT-2 ([Radford et al. 2019](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf)),
# GPT-3 ([Brown et al. 2020](https://arxiv.org/abs/2005.14165)), scaling laws
# ([Kaplan et al. 2020](https://arxiv.org/abs/2001.08361)), Chinchilla ([Hoffmann et al. 2022](https://arxiv.org/abs/2203.15556)),
# FineWeb-Edu ([Penedo et al. 2024](https://arxiv.org/abs/2406.17557)), HellaSwag ([Zellers et al. 2019](https://arxiv.org/abs/1905.07830)),
# FlashAttention ([Dao et al. 2022](https://arxiv.org/abs/2205.14135)), PyTorch DDP ([Li et al. 2020](https://arxiv.org/abs/2006.15704)),
# and [build-nanogpt](https://github.com/karpathy/build-nanogpt), whose recipe and reference numbers this notebook follows.
#
# **How long it takes**: about 90 minutes of study (reading, predicting, the exercises). Compute:
#
# | profile | what runs | compute time |
# |---|---|---|
# | `smoke` (CI) | a 2-process run of 10 steps, 16 HellaSwag examples, eager steps only (no compile) | ~45 s (2 min on a busy machine) |
# | `cpu` (2-core laptop) | a 2-process run of 100 steps, 200 HellaSwag examples, eager vs compiled steps (interleaved rounds); online also OpenAI's GPT-2 (the 20,000-token validation shard and the first 100 HellaSwag examples) | offline 62 s (measured on an idle 2-core machine); online a few minutes more for OpenAI's GPT-2 (estimated) |
# | `gpu` | the same, plus a bounded 124M run (`FULL_RECIPE = False`) or the full recipe (`True`) | not measured here: estimates in [Running on a GPU](README.md#running-on-a-gpu) |
#
# The data cells use 120 documents of FineWeb-Edu: the offline mirror's sample when `TINYLM_DATA_MIRROR`
# is set, otherwise the first 120 documents streamed from Hugging Face (as the track's `smoke` and `cpu`
# profiles do). Offline, HellaSwag is the mirror's local substitute for the official file (see the
# HellaSwag section), and OpenAI's GPT-2 weights cannot be downloaded: those cells say so and skip.

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch._inductor.config

import tinylm
import tinylm.course.plotting
import tinylm.runtime
from tinylm.data.fineweb import ShardedWindowLoader, fineweb_edu_source, prepare_fineweb_edu, read_progress
from tinylm.data.tokens import read_tokens
from tinylm.download import reachable
from tinylm.eval.hellaswag import ending_losses, evaluate_hellaswag, locate_val, read_examples, render_example
from tinylm.eval.loss import score_model
from tinylm.eval.uncertainty import compare, separated, spread, wilson_interval
from tinylm.interop.hf_gpt2 import from_hf_gpt2
from tinylm.paths import shown
from tinylm.train.progress import print_record

tinylm.course.plotting.use_projector_style()  # fonts readable on a projector
PROFILE = tinylm.resolve_profile()
DEVICE = tinylm.resolve_device()
tinylm.configure_backend(DEVICE)  # process-wide speed settings for training: TF32 on CUDA, freed memory kept on a CPU
# The one switch for a GPU runtime. False: a bounded 124M run (6 minutes of training). True: the full 124M recipe,
# 10B tokens, run from this notebook (README's "Running on a GPU" says what each costs). From a terminal,
# `python -m tinylm.train gpt2-124m` runs the full recipe.
FULL_RECIPE = False
print(f"profile {PROFILE}, device {DEVICE}, FULL_RECIPE = {FULL_RECIPE}")

# %% [markdown]
# ## The compute budget
#
# ### Parameters
#
# GPT-2 small is the default `GPTConfig`: 12 layers, 12 heads, 768 wide, a context of 1,024 tokens and
# GPT-2's 50,257-token vocabulary. Build it on PyTorch's `meta` device (shapes only, no memory, no
# arithmetic) and count:

# %%
# NBVAL_CHECK_OUTPUT
print({field: getattr(tinylm.GPT2_124M, field) for field in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")})
with torch.device("meta"):
    gpt2 = tinylm.GPT(tinylm.GPT2_124M)
print(f"{gpt2.num_parameters():,} parameters")
groups = {"token embedding (= the tied LM head)": "transformer.wte.", "position embedding": "transformer.wpe.",
          "12 transformer blocks": "transformer.h.", "final LayerNorm": "transformer.ln_f."}
for name, prefix in groups.items():
    count = sum(p.numel() for key, p in gpt2.named_parameters() if key.startswith(prefix))
    print(f"  {name:<38} {count:>12,}  {count / gpt2.num_parameters():6.1%}")

# %% [markdown]
# 124,439,808 is the number OpenAI's GPT-2 small has. Almost a third of it is the embedding matrix,
# which the LM head shares. The model the recipe *trains* pads the vocabulary to 50,304 = 786 × 64 rows
# (notebook 4 explains why); the 47 extra rows are never a target.

# %%
# NBVAL_CHECK_OUTPUT
track = tinylm.get_track("gpt2-124m")
gpu_preset, gpu_train_cfg = track.recipe("gpu")
padded_cfg = gpu_preset.config(vocab_size=50_304)  # what build_model_config gives with GPT-2's tokenizer
with torch.device("meta"):
    model_124m = tinylm.GPT(padded_cfg)
N = model_124m.num_parameters()
print(f"vocabulary padded to {padded_cfg.vocab_size:,}: {N:,} parameters (+{N - gpt2.num_parameters():,})")

# %% [markdown]
# ### FLOPs per token
#
# A matmul with a weight matrix costs 2 FLOPs (a multiply and an add) per weight per token in the
# forward pass, and twice that in the backward pass (the gradient with respect to the input and the
# gradient with respect to the weight): **6 FLOPs per weight per token**. Attention adds work that has no
# weights: each token's query meets `T` keys (`2·T·C` FLOPs per layer) and its weights mix `T` values
# (`2·T·C` more), so forward and backward add `3 × 4·T·C` per layer:
#
# $$\text{FLOPs per token} = 6\,N_{\text{matmul}} + 12 \cdot L \cdot C \cdot T$$
#
# `N_matmul` leaves out the position embedding, which is a table look-up, not a matmul; the token
# embedding stays in, because as the tied LM head it is a `V × C` matmul. (With a causal mask a token
# needs only the keys before it, on average `T/2`; the formula counts all `T`, as PaLM's paper and
# nanoGPT do.) `GPT.flops_per_token()` computes it:

# %%
# NBVAL_CHECK_OUTPUT
cfg = padded_cfg
matmul_params = model_124m.num_parameters(exclude_position_embeddings=True)
attention_flops = 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
assert model_124m.flops_per_token() == 6 * matmul_params + attention_flops
print(f"6 x {matmul_params:,} weights          = {6 * matmul_params / 1e6:7.1f} MFLOP per token")
print(f"12 x {cfg.n_layer} layers x {cfg.n_embd} x {cfg.block_size} (attention) = {attention_flops / 1e6:7.1f} MFLOP per token")
print(f"flops_per_token()                 = {model_124m.flops_per_token() / 1e6:7.1f} MFLOP per token")

# %% [markdown]
# ### Tokens, FLOPs and GPU-hours
#
# The recipe trains on 2¹⁹ = 524,288 tokens per optimizer step (`total_batch_tokens`: 512 sequences of
# 1,024 tokens) for 19,073 steps: 10 billion tokens, one pass over FineWeb-Edu's `sample-10BT`. The
# rule of thumb for the total is **6ND** (Kaplan et al. 2020): 6 FLOPs per parameter per token, times N
# parameters, times D tokens. Dividing by what a GPU delivers turns FLOPs into time:
#
# $$\text{GPU-hours} = \frac{\text{FLOPs}}{\text{MFU} \times \text{peak FLOP/s} \times 3600}$$
#
# An H100 (SXM) peaks at 989 TFLOP/s for dense bf16 matmuls; a real run achieves a fraction of that, its
# *model FLOPs utilisation* (MFU), more on which below. The example below is **arithmetic, not a
# measurement**; what it means in wall-clock time and money on real GPUs is in
# [Running on a GPU](README.md#running-on-a-gpu).

# %%
# NBVAL_CHECK_OUTPUT
D = gpu_train_cfg.max_steps * gpu_train_cfg.total_batch_tokens
flops_6nd = 6 * N * D
flops_total = model_124m.flops_per_token() * D
H100_PEAK = 989e12  # FLOP/s, dense bf16 (tinylm.runtime's table)
print(f"D = {gpu_train_cfg.max_steps:,} steps x {gpu_train_cfg.total_batch_tokens:,} tokens = {D:,} tokens")
print(f"6ND = {flops_6nd:.3e} FLOPs; with attention (flops_per_token x D) {flops_total:.3e} FLOPs")
print(f"at 40% MFU on H100s: {flops_total:.3e} / (0.4 x {H100_PEAK:.3e} FLOP/s) = "
      f"{flops_total / (0.4 * H100_PEAK) / 3600:.1f} GPU-hours, however many GPUs share them")

# %% [markdown]
# Eight GPUs spend the same GPU-hours as one; they deliver them eight times sooner. Two things the
# arithmetic leaves out. Evaluation: the trainer scores the *whole* validation shard (100M tokens when prepared from
# Hugging Face) every `eval_interval` steps, a forward pass only, about a third of the training FLOPs per
# token:

# %%
# NBVAL_CHECK_OUTPUT
val_tokens_hf = tinylm.data.fineweb.HF_SHARD_TOKENS
evaluations = gpu_train_cfg.max_steps // gpu_train_cfg.eval_interval + 1  # every eval_interval steps, and at the end
eval_flops = evaluations * val_tokens_hf * model_124m.flops_per_token() / 3
print(f"every {gpu_train_cfg.eval_interval} steps: {evaluations} evaluations x {val_tokens_hf:,} tokens: "
      f"{eval_flops:.2e} FLOPs, {eval_flops / flops_total:.0%} on top of training")
every_250 = (gpu_train_cfg.max_steps // 250 + 1) * val_tokens_hf * model_124m.flops_per_token() / 3
print(f"every 250 steps it would be {every_250 / flops_total:.0%}")

# %% [markdown]
# That is why the recipe evaluates every 1,000 steps rather than build-nanogpt's 250: a shorter
# validation split would save most of the rest, at the price of a noisier estimate. The other thing left
# out is the start-up (compiling, the first evaluation) and anything that stalls the GPUs, which is exactly
# what MFU captures.
#
# ### How many tokens for 124M parameters?
#
# Kaplan et al. fitted how the loss falls with parameters, data and compute. Hoffmann et al. ("Chinchilla")
# asked which split of a fixed compute budget between N and D gives the lowest loss, and found about
# **20 tokens per parameter**. The recipe's 10B tokens are many more than that:

# %%
# NBVAL_CHECK_OUTPUT
chinchilla_tokens = 20 * N
print(f"compute-optimal for {N / 1e6:.0f}M parameters (20 tokens each): {chinchilla_tokens / 1e9:.1f}B tokens, "
      f"6ND = {6 * N * chinchilla_tokens:.1e} FLOPs")
print(f"the recipe: {D / 1e9:.1f}B tokens, {D / N:.0f} tokens per parameter, {flops_6nd / (6 * N * chinchilla_tokens):.1f}x those FLOPs")

# %% [markdown]
# By Chinchilla's rule the recipe's compute would reach a lower loss with a larger model trained on fewer
# tokens. A small model that has read more is still the better buy when the model will be *run* a lot: it
# costs less per generated token. GPT-2 small on 10B tokens is also simply the budget build-nanogpt chose,
# and the one whose results you will compare with at the end.
#
# ## The data pipeline: FineWeb-Edu in shards
#
# 10B tokens are 20 GB as `uint16`: too much for one file that every process reads whole, and too long to
# tokenize without a way to resume. `prepare_fineweb_edu()` (or `python -m tinylm.prepare fineweb-edu`)
# streams the documents, tokenizes them with GPT-2's BPE in worker processes, and writes the token
# stream in **shards** of a fixed size: 100M tokens (200 MB) each for the real data, about 100 of them.
# An end-of-text token goes **before** every document, so the model learns that what follows it is a new
# document. The first shard is the validation split, the rest are training shards. After each shard,
# `progress.json` records how far into the document stream it got, so an interrupted preparation resumes
# where it stopped.
#
# Here the source is 120 documents of that same `sample-10BT` (the mirror's offline, the stream's first
# 120 online), cut into shards of 20,000 tokens so that there are several of them: what the track
# prepares for its `cpu` profile.

# %%
folder = tinylm.get_track("gpt2-124m").prepare("cpu").folder  # 120 documents, whatever PROFILE is
progress = read_progress(folder)
print(f"{shown(folder)}/")
for path in sorted(folder.iterdir()):
    print(f"  {path.name:<32} {path.stat().st_size:>9,} bytes")

# %%
# NBVAL_CHECK_OUTPUT
print(json.dumps({key: value for key, value in progress.items() if key not in ("seconds", "tokens_per_s", "workers")},
                 indent=1))

# %% [markdown]
# (`progress.json` also records how long tokenizing took, in `seconds` and `tokens_per_s`.) The start of
# the validation shard, and how the documents fall across the shards:

# %%
# NBVAL_CHECK_OUTPUT
tokenizer = tinylm.BPETokenizer("gpt2")
EOT = tokenizer.eot_token
val_shard = read_tokens(folder / progress["shards"][0]["name"])
print(val_shard[:12].tolist())
print(repr(tokenizer.decode(val_shard[:40])))
print()
for shard in progress["shards"]:
    tokens = read_tokens(folder / shard["name"])
    starts = np.flatnonzero(tokens == EOT)
    print(f"{shard['name']}: {len(starts)} documents start here; the first token is "
          f"{'an end-of-text' if tokens[0] == EOT else repr(tokenizer.decode(tokens[:1])) + ', mid-document'}")

# %% [markdown]
# The stream runs on across shard boundaries: a shard ends where it is full, in the middle of a document,
# and the next shard continues that document. (So the last document of the validation shard continues
# in the first training shard; with 100M-token shards that is one of the ~100,000 documents in the validation
# shard.)
#
# ### Handing each GPU its own windows
#
# `ShardedWindowLoader` cuts every shard into windows of `block_size + 1` tokens at offsets that are
# multiples of `block_size` (the targets never overlap). It defines **one global sequence** of windows:
# in each epoch, the shards in a seeded random order and each shard's windows in a seeded random order,
# so consecutive batches do not come from the same document. A cursor counts the windows all ranks have
# consumed together. On each call, rank `r` of `W` takes windows `[cursor + r·B, cursor + (r+1)·B)`, and
# every rank moves the cursor by `W·B`. Two ranks of a world of 2:

# %%
BLOCK, BATCH = 32, 4
ranks = [ShardedWindowLoader(folder, BLOCK, BATCH, rank=r, world_size=2, seed=1337) for r in range(2)]
print(f"{ranks[0].windows_per_epoch:,} windows of {BLOCK} + 1 tokens per epoch in {len(ranks[0].files)} training shards")
seen = {0: [], 1: []}
for step in range(3):
    for r, loader in enumerate(ranks):
        first = loader.cursor + r * BATCH  # the global index of this rank's first window
        windows = [loader.window(i) for i in range(first, first + BATCH)]
        x, y = loader.next_batch()
        assert torch.equal(x[:, 1:], y[:, :-1]), "y is x shifted by one token"
        seen[r] += windows
        if step == 0:
            print(f"rank {r}, step 0: (shard, offset) = {windows}")
assert not set(seen[0]) & set(seen[1]), "the two ranks must never train on the same window"
single = ShardedWindowLoader(folder, BLOCK, 2 * BATCH, seed=1337)  # one process, twice the batch
assert [single.window(i) for i in range(3 * 2 * BATCH)] == [w for step in range(3) for r in (0, 1)
                                                            for w in seen[r][step * BATCH:(step + 1) * BATCH]]
print("disjoint, and together exactly the windows one process with batch 8 would read")

# %% [markdown]
# Because the cursor counts windows of the *global* sequence, the loader's state is the same on every
# rank and says nothing about the world size. A run checkpointed on 2 processes can therefore resume on
# 1, or on 4, and read exactly the windows the 2-process run would have read next (with the batch per
# process chosen so that the tokens per step stay the same):

# %%
state = ranks[0].state_dict()
assert state == ranks[1].state_dict(), "every rank saves the same loader state"
print({key: value for key, value in state.items() if key != "shards"})
expected = torch.cat([loader.next_batch()[0] for loader in ranks])  # what the 2-process run reads next

one = ShardedWindowLoader(folder, BLOCK, 2 * BATCH, rank=0, world_size=1, seed=1337)
one.load_state_dict(state)
assert torch.equal(one.next_batch()[0], expected), "1 process resumes the 2-process sequence"

four = [ShardedWindowLoader(folder, BLOCK, BATCH // 2, rank=r, world_size=4, seed=1337) for r in range(4)]
for loader in four:
    loader.load_state_dict(state)
assert torch.equal(torch.cat([loader.next_batch()[0] for loader in four]), expected), "4 processes resume it too"
print("resumed with 1 process and with 4: the same next windows")

# %% [markdown]
# ## Distributed data parallel
#
# `torchrun --nproc_per_node=8 -m tinylm.train gpt2-124m` starts eight copies of the same program, one
# per GPU, and tells each its `RANK` and the `WORLD_SIZE` through environment variables.
# `tinylm.distributed.init_distributed()` reads them and joins the process group (NCCL between GPUs,
# gloo between CPU processes). Then every rank:
#
# 1. builds the model from the same seed, so all copies start identical (DDP also broadcasts rank 0's
#    weights when it wraps the model, to be sure);
# 2. draws **its own** micro-batches from the loader above;
# 3. runs forward and backward on them, giving gradients of its own batches;
# 4. **all-reduces** the gradients: every rank ends up with their average over all ranks, which is the
#    gradient of the whole global batch. DDP does this during `backward`, bucket by bucket, overlapping
#    the communication with the rest of the backward pass (Li et al. 2020 describe how);
# 5. steps its own AdamW with that averaged gradient. Same weights, same gradient, same update: the
#    copies stay identical without ever sending weights.
#
# One optimizer step with four ranks:

# %%
def draw_ddp(ranks: int = 4):
    """One data-parallel step: per-rank data, replicas and gradients, one all-reduce, identical updates."""
    fig, ax = plt.subplots(figsize=(12, 6.4))
    ax.set_xlim(0, 3 * ranks)
    ax.set_ylim(0.2, 10.6)
    ax.axis("off")

    def box(x, y, text, color, width=2.5, height=1.15):
        ax.add_patch(plt.Rectangle((x - width / 2, y - height / 2), width, height, facecolor=color, edgecolor="black"))
        ax.text(x, y, text, ha="center", va="center", fontsize=12)

    def arrow(x, y_from, y_to):
        ax.annotate("", xy=(x, y_to), xytext=(x, y_from), arrowprops=dict(arrowstyle="-|>", lw=1.5))

    for r in range(ranks):
        x = 3 * r + 1.5
        ax.text(x, 10.3, f"rank {r} (GPU {r})", ha="center", fontsize=13, fontweight="bold")
        box(x, 9.2, f"micro-batch {r}:\nits own windows", "#cfe2f3")
        box(x, 7.3, f"replica {r} (same weights)\nforward + backward", "#fce5cd")
        box(x, 5.4, f"gradient $g_{r}$", "#fce5cd")
        box(x, 1.2, "AdamW step with $\\bar g$\n→ identical weights", "#d9ead3")
        arrow(x, 8.6, 7.9)
        arrow(x, 6.7, 6.0)
        arrow(x, 4.8, 4.05)
        arrow(x, 2.95, 1.8)
    terms = " + ".join(f"g_{r}" for r in range(ranks))
    box(1.5 * ranks, 3.5, f"all-reduce (sum, then ÷ {ranks}): every rank receives $\\bar g = ({terms}) / {ranks}$",
        "#ead1dc", width=3 * ranks - 0.6, height=0.9)
    ax.set_title("Distributed data parallel: one optimizer step", fontsize=14)
    fig.tight_layout()
    plt.show()


draw_ddp()

# %% [markdown]
# Only gradients travel, once per step; after the start the weights never do. Rank 0 alone writes logs and
# checkpoints.
# The averaged gradient of step 4 really is the big batch's gradient, because the loss is a mean: the mean
# over 8 sequences is the average of two means over 4. Check it with a small model and the two ranks' batches:

# %%
smoke_preset, smoke_train_cfg = track.recipe("smoke")
smoke_cfg = tinylm.train.recipes.build_model_config(smoke_preset, tokenizer, track.vocab_multiple)
torch.manual_seed(0)
probe = tinylm.GPT(smoke_cfg)
batches = [loader.next_batch() for loader in ranks]  # rank 0's and rank 1's next batch


def gradient(x, y):
    probe.zero_grad()
    probe(x, y)[1].backward()
    return torch.cat([p.grad.flatten() for p in probe.parameters()])


per_rank = [gradient(x, y) for x, y in batches]
all_reduced = (per_rank[0] + per_rank[1]) / 2  # what all-reduce (sum, then / world size) leaves on every rank
whole = gradient(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))
assert torch.allclose(all_reduced, whole, atol=1e-6)
print(f"max |averaged - whole-batch| gradient: {(all_reduced - whole).abs().max():.1e} "
      f"over {whole.numel():,} parameters")

# %% [markdown]
# ### `no_sync`: one all-reduce per optimizer step
#
# GPT-2's recipe wants 524,288 tokens per optimizer step, far more than fit in one GPU's memory at once, so
# each rank accumulates the gradients of several micro-steps before stepping: gradient accumulation, which
# notebook 3 builds and checks. Under DDP an all-reduce after every micro-step would be wasted traffic: only
# the sum matters. So the
# trainer wraps all micro-steps but the last in DDP's `no_sync()`, and the gradients travel once per
# optimizer step:
#
# ```python
# last = micro_step == self.grad_accum_steps - 1
# with contextlib.nullcontext() if (self._ddp is None or last) else self._ddp.no_sync():
#     ...forward...
#     self.scaler.scale(loss / self.grad_accum_steps).backward()
# ```
#
# The recipe fixes the tokens per step, `total_batch_tokens`, not the number of micro-steps; those
# follow from how many processes share the work:
# `accumulation = total_batch_tokens / (batch_size × block_size × processes)`.

# %%
# NBVAL_CHECK_OUTPUT
print(f"total_batch_tokens {gpu_train_cfg.total_batch_tokens:,}, batch_size {gpu_train_cfg.batch_size}, "
      f"block_size {gpu_preset.block_size}")
for world_size in (1, 2, 4, 8):
    steps = gpu_train_cfg.accumulation_steps(gpu_preset.block_size, world_size)
    print(f"{world_size} GPU(s): {steps} micro-step{'s' if steps > 1 else ''} per optimizer step")
try:
    gpu_train_cfg.accumulation_steps(gpu_preset.block_size, 16)
except tinylm.ConfigError as error:
    print(f"16 GPUs: {error}")
smaller = dataclasses.replace(gpu_train_cfg, batch_size=32)  # python -m tinylm.train ... --batch-size 32
print(f"16 GPUs with --batch-size 32: {smaller.accumulation_steps(gpu_preset.block_size, 16)} micro-step per optimizer step")

# %% [markdown]
# ### A real 2-process run
#
# The same command that trains on eight GPUs runs here with two CPU processes and the gloo backend.
# It uses the `smoke` recipe in every profile of this notebook (a 2-layer, 32-wide model with GPT-2's
# vocabulary: 1.6M parameters, nearly all of them embedding), because this is a demonstration of the
# mechanics, not a training run, and on CPU processes even where a GPU is present (two processes on one
# GPU would both claim it). `OMP_NUM_THREADS=1` gives each process one thread, so two processes share two
# cores instead of fighting over them. `torch.distributed.run` is `torchrun` under another name.
#
# **Predict, then run.** Both processes train, but how many lines of training log will you see, and how
# many run folders will there be? And the header line will say `4 x 1 x 2 sequences of 32 per step`:
# what is each of the three numbers?

# %%
DDP_STEPS = 10 if PROFILE == "smoke" else 100
ddp_dir = tinylm.paths.runs_dir() / "notebook-06-ddp"
command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tinylm.train", "gpt2-124m", "--profile", "smoke", "--out", str(ddp_dir), "--overwrite",
           "--max-steps", str(DDP_STEPS), "--device", "cpu"]
env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, even where a GPU is present
start = time.perf_counter()
try:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
except subprocess.CalledProcessError as error:
    print(error.stdout[-3000:], error.stderr[-3000:], sep="\n")
    raise
ddp_seconds = time.perf_counter() - start
print(f"torchrun with 2 processes: {ddp_seconds:.0f} s in all (start-up, training, evaluation, a sample)\n")
rule = "\n" + "-" * 40 + "\n"  # the run ends with a 300-token sample between two such rules
log, _, rest = result.stdout.partition(rule)
print(log.rstrip())
print(f"sample: {rest.partition(rule)[0][:150]!r} ...")
if result.stderr.strip():
    print(f"\n({len(result.stderr.splitlines())} lines of torchrun's own warnings and logs on stderr, not shown)")

# %% [markdown]
# The header line says it: `4 x 1 x 2 sequences of 32 per step`, 4 sequences per micro-batch, 1 micro-step,
# 2 processes. Only rank 0 printed, and only rank 0 wrote the run folder. Its `metrics.jsonl`:

# %%
records = [json.loads(line) for line in (ddp_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
for record in records:
    print({key: round(value, 4) if isinstance(value, float) else value for key, value in record.items()})
train_records = [r for r in records if r["event"] == "train"]
final_record = records[-1]
tokens_per_step = smoke_train_cfg.batch_size * smoke_cfg.block_size * 2  # 4 sequences x 32 tokens x 2 processes
ddp_tokens_per_s = final_record["step"] * tokens_per_step / final_record["elapsed"]
print(f"\n{final_record['step']} steps x {tokens_per_step} tokens in {final_record['elapsed']:.1f} s of training: "
      f"{ddp_tokens_per_s:,.0f} tokens/s over both processes; final validation loss {final_record['val_loss']:.4f}")

fig, ax = plt.subplots(figsize=(7, 3))
ax.plot([r["step"] for r in train_records], [r["loss"] for r in train_records], marker="o")
ax.axhline(np.log(tokenizer.vocab_size), color="gray", ls="--", lw=1, label="uniform guess, ln 50,257")
ax.set_xlabel("optimizer step")
ax.set_ylabel("training loss")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The loss starts at the uniform guess, ln 50,257 ≈ 10.8. Given more steps (the `cpu` profile runs 100)
# it falls as the model learns which tokens are frequent, and the sample fills up with ` the`, `,` and
# `.`; a few tens of thousands of tokens cannot teach a 50,257-token vocabulary much more than that. What
# the run shows is the mechanics working: two processes that agree on every step, one log, one
# checkpoint. Around the training steps come fixed costs: starting three Python processes, scoring the
# 20,000 validation tokens against 50,304 logits each, and the sample.
#
# *Is two processes faster than one?* On a GPU cluster each process has its own GPU, and throughput
# grows almost linearly with their number (minus the all-reduce). On the two shared CPU cores this
# notebook runs on, the two processes split the same cores that one process with two threads would
# use, and the timing is dominated by noise from everything else on the machine, so this notebook does
# not time one against the other.
#
# ## `torch.compile`, measured
#
# The gpu recipe turns on two switches that a CPU run leaves off. One is 16-bit autocast (bf16, or fp16
# with a GradScaler on a T4), which notebook 5 explains and measures. The other is **`torch.compile`**: it
# traces the model's Python code into a graph and generates fused kernels. The elementwise operations after
# a matmul (bias, GELU, residual add, LayerNorm, the softmax of the loss) become one kernel that reads and
# writes memory once instead of once per operation, and the Python overhead of launching many small kernels
# per step disappears. The matmuls themselves stay library calls, and attention already is one fused kernel
# (FlashAttention, or its memory-efficient cousin on older GPUs, behind `F.scaled_dot_product_attention`;
# notebook 2). Compiling costs time once, at the first step.
#
# Measure it on the 2-process run's small model. First the same initial weights and the same batches, a few
# AdamW steps eager and then compiled: the losses must agree, and the compiled model's first step includes the
# compile. Then the speed, as a fair race: both models already warm, several **interleaved rounds** (eager,
# compiled, compiled, eager, ...) so that a burst of load from elsewhere on the machine hits both arms, each
# round's time the median of its steps, and the verdict only when every round of one arm beats every round
# of the other (`tinylm.eval.uncertainty.compare` with rounds as its replicates). On a CPU,
# `torch.compile` writes and compiles C++, so it needs a C++ compiler (g++ or clang); where it fails, the cell
# says so and keeps the eager numbers. Under `smoke` (CI) it is skipped: compiling is slow on two cores.
# (PyTorch caches compiled kernels on disk, so a program compiled before starts faster; the cell turns that
# cache off to measure a first compile.)
#
# **Predict, then run.** The losses of the two runs: equal, close, or different? And will the compiled steps
# be faster here? The model spends most of its FLOPs in one matmul, the 50,304-wide output layer.

# %%
COMPILE_STEPS = 10  # from the same weights on the same batches; the compiled model's first step is the compile
ROUNDS, STEPS_PER_ROUND = (2, 3) if PROFILE == "smoke" else (6, 4)
compile_loader = ShardedWindowLoader(folder, smoke_cfg.block_size, 16, seed=0)
compile_batches = [compile_loader.next_batch() for _ in range(COMPILE_STEPS)]


def fresh_arm(compiled: bool):
    """The small model from seed 0 (compiled or not) and its AdamW: every arm starts from the same weights."""
    torch.manual_seed(0)
    model = tinylm.GPT(smoke_cfg).to(DEVICE)
    return (torch.compile(model) if compiled else model), torch.optim.AdamW(model.parameters(), lr=1e-3)


def train_steps(arm, batches) -> tuple[list[float], list[float]]:
    """Seconds and loss of each AdamW step of `arm` on `batches`."""
    step_model, optimizer = arm
    seconds, losses = [], []
    for x, y in batches:
        start = time.perf_counter()
        _, loss = step_model(x.to(DEVICE), y.to(DEVICE))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())  # .item() waits for a GPU to finish, so the time is the whole step's
        seconds.append(time.perf_counter() - start)
    return seconds, losses


if DEVICE.type == "cpu":
    tinylm.runtime.keep_freed_memory()  # as the Trainer does on a CPU: a step reuses the big buffers the last one freed
arms = {"eager": fresh_arm(compiled=False)}
eager_seconds, eager_losses = train_steps(arms["eager"], compile_batches)
compiled_run = None
if PROFILE == "smoke":
    print("torch.compile: skipped under the smoke profile (compiling on 2 cores takes longer than CI's whole run of "
          "this notebook); the cpu profile runs it")
else:
    # a first compile, not a reuse of the kernels an earlier run left in PyTorch's on-disk cache
    no_cache = {"force_disable_caches": True} if hasattr(torch._inductor.config, "force_disable_caches") else {}
    try:
        with torch._inductor.config.patch(no_cache), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")  # the switch's own notice
            arms["torch.compile"] = fresh_arm(compiled=True)
            compiled_run = train_steps(arms["torch.compile"], compile_batches)
    except Exception as error:  # no C++ compiler on a CPU, no Triton for a GPU, an unsupported platform, ...
        arms.pop("torch.compile", None)
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        print(f"torch.compile failed here ({type(error).__name__}: {reason}). On a CPU it needs a C++ compiler "
              "(g++ or clang); on a GPU, Triton. The eager numbers stand alone.")

round_ms = {name: [] for name in arms}  # the median step of each round, in ms
for round_index in range(ROUNDS):
    for name in (list(arms) if round_index % 2 == 0 else list(reversed(arms))):  # alternate who goes first
        round_ms[name].append(1e3 * statistics.median(train_steps(arms[name], compile_batches[:STEPS_PER_ROUND])[0]))
for name, values in round_ms.items():
    rounds = spread(values)
    print(f"{name:>13}: best round {rounds.low:6.1f} ms per step; {rounds.mean:.1f} ± {rounds.half_range:.1f} ms "
          f"(mean ± half the range over {rounds.n} interleaved rounds, on {DEVICE})")

# %%
if compiled_run is not None:
    compiled_seconds, compiled_losses = compiled_run
    best_eager, best_compiled = min(round_ms["eager"]), min(round_ms["torch.compile"])
    compile_seconds = compiled_seconds[0] - best_compiled / 1e3  # the first step's extra time: tracing, code generation
    print(compare("torch.compile", round_ms["torch.compile"], "eager", round_ms["eager"],
                  metric="ms per step (median step of each round)", digits=1, replicate="round"))
    print(f"best rounds: compiled at {best_eager / best_compiled:.2f}x the eager speed; the compiled model's first step "
          f"took {compiled_seconds[0]:.1f} s, so compiling cost about {compile_seconds:.0f} s")
    if separated(round_ms["torch.compile"], round_ms["eager"]) and best_compiled < best_eager:
        saved = statistics.mean(round_ms["eager"]) - statistics.mean(round_ms["torch.compile"])
        print(f"break-even after about {compile_seconds / (saved / 1e3):,.0f} steps of this size "
              f"(the gpu recipe runs {gpu_train_cfg.max_steps:,} steps)")
    else:
        print("no speed-up beyond the round-to-round spread here: compiling cost time and bought none that this "
              "measurement can show, for this model on this machine")
    difference = max(abs(a - b) for a, b in zip(eager_losses, compiled_losses))
    assert difference < 1e-3, f"compiled and eager training must agree; their losses differ by {difference}"
    print(f"losses, eager:    {' '.join(f'{v:.4f}' for v in eager_losses)}")
    print(f"losses, compiled: {' '.join(f'{v:.4f}' for v in compiled_losses)}")
    print(f"largest difference: {difference:.1e} (the same arithmetic, in another order)")

    fig, ax = plt.subplots(figsize=(7, 3))
    steps = range(1, COMPILE_STEPS + 1)
    ax.plot(steps, [s * 1e3 for s in eager_seconds], marker="o", label="eager")
    ax.plot(steps, [s * 1e3 for s in compiled_seconds], marker="s", label="torch.compile")
    ax.set_yscale("log")
    ax.set_xlabel("training step (from the same initial weights)")
    ax.set_ylabel("ms per step (log scale)")
    ax.legend()
    fig.tight_layout()
    plt.show()

# %% [markdown]
# The losses agree to float32 rounding: compiling changes how the arithmetic is scheduled, not what it
# computes. Whether the compiled steps are faster, and by how much, depends on the hardware and on how much
# of the step is elementwise work and kernel launches rather than big matmuls, so the verdict above can go
# either way from machine to machine: on a CPU, for a model this small, the generated code need not beat
# PyTorch's own kernels. On a GPU, where an eager step also pays for launching hundreds of small kernels, the
# gain is usually larger. On a shared machine the step times also swing from run to run: run the two cells
# again and compare. Where compiling does pay, a long run earns the compile time back many times; a short
# demonstration may not.
# (`--compile` / `--no-compile` switch it on the command line; evaluation, sampling and checkpoints keep
# using the plain model.)
#
# ## MFU: how much of the GPU a run uses
#
# **MFU**, model FLOPs utilisation, says how much of the hardware's peak a run turns into training:
#
# $$\text{MFU} = \frac{\text{flops\_per\_token} \times \text{tokens/s}}{\text{peak FLOP/s per GPU} \times \text{processes}}$$
#
# The trainer logs it with every training line when `tinylm/runtime.py` lists the GPU's dense peak for the
# run's precision, from the vendors' datasheets: the 16-bit rate, or for float32 the TF32 rate on Ampere and
# newer GPUs and plain fp32 on older ones. The 16-bit peaks:

# %%
# NBVAL_CHECK_OUTPUT
for gpu_name, tflops in tinylm.runtime.PEAK_TFLOPS_16BIT.items():
    print(f"{gpu_name:>5}: {tflops:>4} TFLOP/s")
mfu_target = 0.4
tokens_per_s_needed = mfu_target * H100_PEAK / model_124m.flops_per_token()
print(f"GPT-2 124M at {mfu_target:.0%} MFU on one H100: {tokens_per_s_needed:,.0f} tokens/s "
      f"(arithmetic), so a 524,288-token step every {gpu_train_cfg.total_batch_tokens / tokens_per_s_needed:.2f} s")

# %% [markdown]
# A CPU has no entry, so the CPU run above logged no MFU. Its achieved rate is still a measurement worth
# knowing (the smoke model's FLOPs are mostly its 50,304-wide output layer):

# %%
smoke_model_flops = probe.flops_per_token()  # the smoke recipe's model, as trained above
print(f"smoke model: {smoke_model_flops / 1e6:.1f} MFLOP per token x {ddp_tokens_per_s:,.0f} tokens/s "
      f"= {smoke_model_flops * ddp_tokens_per_s / 1e9:.1f} GFLOP/s on two CPU cores; "
      f"one H100 at 40% MFU does {0.4 * H100_PEAK / 1e12:.0f} TFLOP/s")
cpu_years = flops_total / (smoke_model_flops * ddp_tokens_per_s) / (365 * 24 * 3600)
print(f"at that rate the 124M recipe's {flops_total:.1e} FLOPs would take {cpu_years:,.0f} years")

# %% [markdown]
# ## HellaSwag: scoring without generating
#
# HellaSwag (Zellers et al. 2019) asks a model to finish a sentence. Each example is a context and four
# endings, one of them right; the wrong ones were written by a language model and kept when they fooled
# other models, so they read plausibly. The model does not generate anything: it **scores** each ending.
# Each of the four rows is the context followed by one ending, and only the ending's tokens are scored: the
# cross-entropy of each ending token given everything before it. The ending with the lowest loss is the
# model's answer. Chance is 25%. How to compare the four losses is a *convention*, and published numbers use
# different ones:
#
# - **`acc`**: the lowest *summed* loss, the most probable ending. It favours short endings, since every
#   token adds loss;
# - **`acc_norm`**: the lowest *mean* loss per **token**, the "completion style" of build-nanogpt and llm.c.
#   Under it they measure 29.55% for OpenAI's GPT-2 124M on the 10,042 validation examples. Token counts depend
#   on the tokenizer, so it compares only models that tokenize alike;
# - **`acc_norm_char`**: the lowest loss per **character** of the ending: the normalisation of EleutherAI's
#   evaluation harness (`lm-evaluation-harness`), which does not depend on the tokenizer. The harness also
#   writes the prompt its own way (the activity label and a colon first, WikiHow's bracketed markers removed),
#   and with both it reports 31.14% for the same GPT-2 124M (as llm.c's `hellaswag.py` quotes it). tinylm
#   applies only the normalisation, to its own rendering, so its `acc_norm_char` is not the harness's number;
#   it shows what the normalisation alone changes, on the same losses;
# - GPT-3's paper (Brown et al. 2020) reports 33.7% for GPT-3 Small (125M parameters, 300B tokens) with its
#   own prompt format and a per-token likelihood.
#
# So "acc_norm" is not one number: a score is comparable with another only under the same convention, the
# same prompt format and the same file.
#
# The official validation file is on GitHub (`rowanz/hellaswag`). Offline, the course's data mirror has
# only a **local substitute**: the same 10,042 examples and labels, with the WikiHow texts cleaned of their
# `[header]`/`[step]` markers and some fields dropped (the mirror's `MANIFEST.md`). Scores on it are close
# to, not equal to, scores on the official file. `locate_val()` says which file it found:

# %%
val_file = locate_val()
print(val_file.description)
examples = read_examples(val_file.path, limit=200)
example = examples[0]
print(f"\ncontext: {example.ctx!r}")
for i, ending in enumerate(example.endings):
    print(f"  {'*' if i == example.label else ' '} {i}: {ending!r}")

# %% [markdown]
# `render_example` turns it into a `(4, T)` batch of tokens and a mask that is 1 on each ending's tokens.
# The context is tokenized on its own and each ending with a leading space, as it would appear in running
# text. Rows are padded on the right; the mask keeps the padding out too.

# %%
# NBVAL_CHECK_OUTPUT
tokens, mask = render_example(example, tokenizer.encode, block_size=1024)
print(f"tokens {tuple(tokens.shape)}, mask {tuple(mask.shape)}")
print("row 3 tokens:", tokens[3].tolist())
print("row 3 mask:  ", mask[3].tolist())
for i in range(4):
    length = int((mask[i] == 1).nonzero().max()) + 1  # the row's end; the rest is padding
    print(f"row {i}: {int(mask[i].sum()):>2} ending tokens after {length - int(mask[i].sum())} context tokens: "
          f"{tokenizer.decode(tokens[i][mask[i] == 1].tolist())!r}")

# %% [markdown]
# The loss at position `t` predicts token `t + 1`, so the scored positions are the mask shifted by one.
# `ending_losses` returns, for the four rows, the summed loss of the ending and the number of its tokens.
# Score the example with the model the 2-process run just trained (its context is 32 tokens, so rows
# longer than that keep their last 33 tokens):

# %%
ddp_model, _, ddp_state = tinylm.load_model(ddp_dir / "last.pt", "cpu")
summed, counts = ending_losses(ddp_model, tokenizer, example, "cpu")
for i in range(4):
    print(f"ending {i}: summed loss {summed[i]:6.2f} over {int(counts[i])} tokens, mean {summed[i] / counts[i]:.2f}"
          f"{'   <- right' if i == example.label else ''}")
print(f"acc picks {int(summed.argmin())}, acc_norm picks {int((summed / counts).argmin())}, the right one is {example.label}")

# %% [markdown]
# `evaluate_hellaswag` does this for a list of examples and counts, under all three conventions at once
# (under DDP, each rank scores every W-th example and the counts are summed). The track runs it at every
# evaluation: the 2-process run above logged `hellaswag_acc_norm` on 8 examples. With a few examples and a
# model that has read a few thousand tokens, expect chance, give or take the noise of a small sample.
#
# How much noise? An accuracy measured on `n` examples is a count of successes out of `n`, and its **95%
# confidence interval** (Wilson's score interval, `tinylm.eval.uncertainty.wilson_interval`) is the range of
# true accuracies that such a count does not rule out. Every accuracy this notebook measures is printed with it:

# %%
HELLASWAG_EXAMPLES = 16 if PROFILE == "smoke" else 200
CONVENTIONS = {"acc": ("correct", "lowest summed loss"), "acc_norm": ("correct_norm", "per token: build-nanogpt"),
               "acc_norm_char": ("correct_norm_char", "per character: the harness's normalisation")}


def with_interval(scores: dict, count_key: str) -> str:
    """'0.265 [0.208, 0.331]': an accuracy and its 95% Wilson interval, from the counts evaluate_hellaswag returns."""
    low, high = wilson_interval(scores[count_key], scores["examples"])
    return f"{scores[count_key] / scores['examples']:.3f} [{low:.3f}, {high:.3f}]"


start = time.perf_counter()
scores = evaluate_hellaswag(ddp_model, tokenizer, examples[:HELLASWAG_EXAMPLES])
print(f"the 2-process run's model on the first {scores['examples']} examples ({time.perf_counter() - start:.1f} s), "
      "accuracy [95% interval]:")
for key, (count_key, convention) in CONVENTIONS.items():
    low, high = wilson_interval(scores[count_key], scores["examples"])
    verdict = "contains chance (25%)" if low <= 0.25 <= high else "excludes chance (25%)"
    print(f"  {key:<14} {with_interval(scores, count_key)}  {verdict}; {convention}")

# %% [markdown]
# ## Sharing the model: the `transformers` layout
#
# A trained model becomes useful to others when it loads with the tools they already use. tinylm's
# parameter names are GPT-2's own, so `tinylm.interop.hf_gpt2.to_hf_gpt2` writes a folder that Hugging Face
# `transformers` loads as a `GPT2LMHeadModel` (`config.json` and `model.safetensors`; four matrices are
# transposed, because `transformers` stores them as `Conv1D` weights). That folder is what
# `huggingface-cli upload` puts on the Hub; `tinylm.interop.hf_gpt2.from_hf_gpt2` goes the other way, e.g. to
# start from OpenAI's GPT-2 weights. From a terminal:
# `python -m tinylm.interop export --ckpt runs/gpt2-124m-gpu --out hf/gpt2-124m`.

# %%
import transformers
from transformers import GPT2LMHeadModel

from tinylm.interop.hf_gpt2 import to_hf_gpt2

transformers.utils.logging.disable_progress_bar()
x = torch.tensor([tokenizer.encode("Hello, I'm a language model, and")])
with tempfile.TemporaryDirectory() as tmp:
    exported = to_hf_gpt2(ddp_model, Path(tmp) / "hf-gpt2")
    print("exported:", sorted(p.name for p in exported.iterdir()))
    hf_model = GPT2LMHeadModel.from_pretrained(exported).eval()
ddp_model.eval()
with torch.no_grad():
    ours, theirs = ddp_model(x)[0], hf_model(x).logits
# The same weights and the same arithmetic, in a different order (transformers multiplies by the transposed
# matrices, and matmul kernels split their work by thread count), so the logits agree to float32 rounding.
difference = (ours - theirs).abs().max().item()
assert difference < 1e-4, f"the exported model must compute the same logits; they differ by {difference}"
print(f"transformers {type(hf_model).__name__}: vocab {hf_model.config.vocab_size:,}, context {hf_model.config.n_positions}, "
      f"logits {tuple(theirs.shape)}; largest difference from tinylm's: {difference:.1e} (logits of size ~{ours.abs().mean():.0f})")

# %% [markdown]
# ## OpenAI's GPT-2 124M, in tinylm
#
# `from_hf_gpt2` goes the other way: it reads a `GPT2LMHeadModel` (`"gpt2"` names OpenAI's 124M model on the
# Hugging Face Hub, 548 MB) and copies its weights key for key into tinylm's own `GPT`, the four `Conv1D`
# matrices transposed. It is the architecture this notebook budgets, with the unpadded 50,257-row
# vocabulary. OpenAI trained it on WebText (40 GB of web pages linked from Reddit), not on FineWeb-Edu, so
# its numbers here are a reference point for a 124M run, not a ceiling.
#
# Three things to measure, with the package's own functions: a few samples; the validation loss on this
# notebook's validation shard (the 20,000 tokens that the 2-process run was scored on); and HellaSwag on
# the first examples of the file `locate_val()` found, both with `tinylm.eval.loss.score_model`, the function the
# results table uses for every model. The published numbers to compare with, each with its convention:
# build-nanogpt measures this checkpoint at **3.2924** validation loss on its 100M-token FineWeb-Edu split and
# **29.55%** HellaSwag `acc_norm` per token on all 10,042 examples of the official file; the evaluation harness
# reports **31.14%** per character with its own prompt format; GPT-3 Small (125M parameters, Brown et al.
# 2020) scores **33.7%** with GPT-3's. A CPU scores a subset (`cpu`: the first 100 examples); a GPU runtime
# 2,000, or all of them with `FULL_RECIPE = True`. Loading needs the network: offline the cells skip.
#
# **Predict, then run.** The 2-process run ended at the validation loss it printed above. Where will GPT-2
# land on the same 20,000 tokens: near that, near 3.3, or lower? And is 100 examples enough to tell 29.6%
# from chance?

# %%
REFERENCE_EXAMPLES = {"smoke": 10, "cpu": 100, "gpu": None if FULL_RECIPE else 2_000}[PROFILE]  # None: all 10,042
reference_examples = read_examples(val_file.path, limit=REFERENCE_EXAMPLES)
precision = tinylm.runtime.autocast(DEVICE, tinylm.resolve_dtype(DEVICE))  # 16-bit on a GPU; a no-op on a CPU
reference = None
hub_offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")  # then only a cached copy can load
try:
    if not hub_offline and not reachable("huggingface.co"):  # transformers would retry for half a minute
        raise OSError("huggingface.co cannot be reached")
    start = time.perf_counter()
    reference = from_hf_gpt2("gpt2").to(DEVICE)
    print(f"OpenAI's GPT-2 124M, loaded in {time.perf_counter() - start:.0f} s: {reference.num_parameters():,} "
          f"parameters; {reference.config}")
except (ImportError, OSError):
    print("needs the network: OpenAI's GPT-2 weights come from Hugging Face, which cannot be reached here, "
          "so this section's cells skip")

# %%
if reference is not None:
    for seed in range(3):
        sample = tinylm.generate_text(reference, tokenizer, track.sample_prompt, max_new_tokens=32, temperature=1.0,
                                      top_k=50, seed=seed)
        print(repr(sample))

# %%
hellaswag_file = "official file" if val_file.official else "offline substitute file"
reference_scores = None
if reference is not None:
    reference_scores = score_model(reference, tokenizer, val_shard, reference_examples, device=DEVICE,
                                   autocast_ctx=precision)
    r = reference_scores
    print(f"validation loss: {r['val_loss']:.4f} nats per token on the notebook's {len(val_shard):,}-token "
          f"validation shard ({r['val_seconds']:.0f} s); build-nanogpt: 3.2924 on its 100M-token split")
    print(f"HellaSwag, the first {r['examples']:,} examples of the {hellaswag_file} ({r['hellaswag_seconds']:.0f} s), "
          "accuracy [95% interval]:")
    for key, (count_key, convention) in CONVENTIONS.items():
        print(f"  {key:<14} {with_interval(r, count_key)}  {convention}")
    print("published: acc_norm 0.2955 per token (build-nanogpt), 0.3114 per character with the harness's prompt; "
          "all 10,042 examples of the official file")

# %% [markdown]
# Twenty thousand tokens are a few dozen documents, a noisier estimate of the loss than build-nanogpt's 100M
# tokens. And how many HellaSwag examples does it take to tell GPT-2's published 29.55% from chance? Suppose a
# model scored exactly that on `n` examples (arithmetic, no model involved):

# %%
# NBVAL_CHECK_OUTPUT
for n in (100, 2_000, 10_042):
    low, high = wilson_interval(round(0.2955 * n), n)
    print(f"29.55% of {n:>6,} examples: 95% interval [{low:.1%}, {high:.1%}], "
          f"{'contains' if low <= 0.25 <= high else 'excludes'} chance (25%)")

# %% [markdown]
# That is why the track scores all 10,042 examples in its gpu profile, and why the results below carry an
# interval for every accuracy measured here.
#
# ## Your own 124M run
#
# A CPU cannot train the 124M model in any useful time: the MFU section printed how many years the
# recipe's FLOPs would take at the rate the 2-process run reached. On a GPU runtime the cell below trains it,
# bounded so that the notebook cannot run away on a free Colab GPU:
#
# - `FULL_RECIPE = False` (the default): the 124M model on the first 20,000 documents of FineWeb-Edu for
#   **6 minutes of training** (`max_seconds`: evaluations come on top), 16,384 tokens per step, no compile
#   (its compile time would come out of a short budget), then scored like GPT-2 above. The model is far from
#   trained after a few million tokens; the point is to watch the real recipe's loss fall and to see what a
#   few minutes buy against the reference.
# - `FULL_RECIPE = True`: the recipe itself, `torchrun ... -m tinylm.train gpt2-124m --profile gpu` on
#   every GPU of the machine, run from this notebook (it prepares all 10B tokens, 20 GB, first). From a
#   terminal the same command is the way to run it.
#
# What either costs in time on real GPUs: [Running on a GPU](README.md#running-on-a-gpu).

# %%
def run_and_print(command: list[str]) -> None:
    """Run a command, printing its output as it comes (a notebook does not show a child process's own output)."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            print(line, end="")
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)


BOUNDED = {"documents": 20_000, "shard_tokens": 1_000_000, "seconds": 360, "batch_size": 8, "batch_tokens": 16_384,
           "max_steps": 2_000, "warmup_steps": 20}
own_model, own_tokens, own_note = None, 0, ""
if PROFILE != "gpu" or DEVICE.type != "cuda":
    print(f"profile {PROFILE}, device {DEVICE.type}: the 124M run needs a CUDA GPU, so it is not trained here. On a GPU "
          f"runtime this cell trains it for {BOUNDED['seconds'] // 60} minutes (FULL_RECIPE = False) or runs the full "
          "recipe (FULL_RECIPE = True); from a terminal: python -m tinylm.train gpt2-124m")
elif FULL_RECIPE:
    full_dir = tinylm.paths.runs_dir() / "gpt2-124m-gpu"  # the command line's own default folder
    resume = ["--resume"] if (full_dir / "last.pt").exists() else []  # a run this notebook started before goes on
    run_and_print([sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={torch.cuda.device_count()}", "-m", "tinylm.train", "gpt2-124m",
                   "--profile", "gpu", "--out", str(full_dir), *resume])
    own_model, _, own_state = tinylm.load_model(full_dir / "last.pt", DEVICE)
    own_tokens = own_state["step"] * gpu_train_cfg.total_batch_tokens
    own_note = f"the full recipe, {torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
else:
    if fineweb_edu_source() == "hf":
        bounded_folder = prepare_fineweb_edu(max_documents=BOUNDED["documents"], shard_tokens=BOUNDED["shard_tokens"])
    else:  # the offline mirror has only the 120 documents: the run repeats their 53,056 training tokens
        print("offline mirror: the bounded run trains on the 120 documents' training shards, over and over")
        bounded_folder = folder
    bounded_cfg = dataclasses.replace(
        gpu_train_cfg, batch_size=BOUNDED["batch_size"], total_batch_tokens=BOUNDED["batch_tokens"],
        max_steps=BOUNDED["max_steps"], max_seconds=BOUNDED["seconds"], warmup_steps=BOUNDED["warmup_steps"],
        eval_interval=0, sample_interval=0, log_interval=20, eval_batch_size=8, compile=False)
    torch.manual_seed(bounded_cfg.seed)
    own_model = tinylm.GPT(padded_cfg)
    # The bounded folder's first shard (its first 1M tokens) is its validation split and never trained on; it
    # holds the notebook's 20,000-token validation shard, on which the run is scored like GPT-2.
    loader = ShardedWindowLoader(bounded_folder, padded_cfg.block_size, bounded_cfg.batch_size, seed=bounded_cfg.seed,
                                 vocab_size=tokenizer.vocab_size)
    bounded_dir = tinylm.paths.runs_dir() / "notebook-06-bounded"
    shutil.rmtree(bounded_dir, ignore_errors=True)  # a fresh run each time the notebook runs
    trainer = tinylm.Trainer(own_model, bounded_cfg, loader, val_shard, out_dir=bounded_dir, tokenizer=tokenizer,
                             device=DEVICE, callbacks=[print_record], sample_prompt=track.sample_prompt)
    bounded_final = trainer.fit()
    own_tokens = trainer.step * bounded_cfg.total_batch_tokens
    own_note = f"bounded: {BOUNDED['seconds'] // 60} min of training on {torch.cuda.get_device_name()}"
    print(f"{trainer.step:,} steps, {own_tokens:,} tokens; validation loss {bounded_final['val_loss']:.4f}")
    print(repr(tinylm.generate_text(own_model, tokenizer, track.sample_prompt, max_new_tokens=32, top_k=50, seed=0)))

# %% [markdown]
# ## Running it for real
#
# From the README: prepare the data once, then train on one GPU, eight, or two machines of eight.
#
# ```bash
# python -m tinylm.prepare --track gpt2-124m --profile gpu   # what train reads: FineWeb-Edu, 100M-token shards
# python -m tinylm.train gpt2-124m                        # one GPU
# torchrun --standalone --nproc_per_node=8 -m tinylm.train gpt2-124m     # eight GPUs on one machine
# # two machines with eight GPUs each: run this on both; HOST is the first machine's address
# torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 --rdzv-id=gpt2-124m \
#     -m tinylm.train gpt2-124m
# python -m tinylm.eval hellaswag --ckpt runs/gpt2-124m-gpu     # all 10,042 examples; runs under torchrun too
# ```
#
# On 2 × 8 GPUs the recipe's batch of 64 does not divide (the error above): add `--batch-size 32`. A run
# checkpointed on one number of GPUs resumes on another with `--resume` (and a `--batch-size` that keeps
# 524,288 tokens per step), because the loader's state does not depend on it.
#
# ## Results
#
# Every model this notebook has, scored by `score_model` on the same tokens and the same HellaSwag examples,
# next to the published numbers. The validation loss is on the notebook's 20,000-token validation shard,
# except for the published rows, and depends on the context: the small model sees 32 tokens, the 124M
# models 1,024. Every HellaSwag number carries its convention: the columns are the conventions, a measured
# cell is `accuracy [95% interval]` on the examples named above the table, and a published cell names the
# prompt format it was measured with.

# %%
def cell(scores, count_key):
    return with_interval(scores, count_key) if scores is not None else "not measured (offline)"


small_scores = score_model(ddp_model, tokenizer, val_shard, reference_examples)
subset = f"{len(reference_examples):,} examples"
own_scores = None
if own_model is not None:
    own_scores = score_model(own_model, tokenizer, val_shard, reference_examples, device=DEVICE, autocast_ctx=precision)
print(f"HellaSwag measured here: the first {subset} of the {hellaswag_file}, in tinylm's rendering (context, then "
      "' ' + ending); published rows: all 10,042 examples of the official file\n")
print("| model | parameters | training tokens | validation loss | acc_norm, per token | acc_norm, per character "
      "| acc, summed | where from |")
print("|---|---|---|---|---|---|---|---|")
measured_rows = {"your 2-process run": small_scores, "your 124M run": own_scores,
                 "OpenAI GPT-2 124M, measured here": reference_scores}
print(f"| your 2-process run (the smoke recipe, context 32) | {probe.num_parameters() / 1e6:.1f}M "
      f"| {final_record['step'] * tokens_per_step:,} | {small_scores['val_loss']:.3f} | "
      + " | ".join(cell(small_scores, key) for key in ("correct_norm", "correct_norm_char", "correct"))
      + " | measured here, 2 CPU processes |")
if own_scores is not None:
    print(f"| your 124M run ({own_note}) | 124M | {own_tokens / 1e6:,.1f}M | {own_scores['val_loss']:.3f} | "
          + " | ".join(cell(own_scores, key) for key in ("correct_norm", "correct_norm_char", "correct"))
          + " | measured here |")
else:
    print(f"| your 124M run: `python -m tinylm.train gpt2-124m` on a GPU | 124M | {D / 1e9:.0f}B (planned) | "
          f"not run on a {DEVICE.type} | not run | not run | not run | planned: "
          f"~{flops_total / (0.4 * H100_PEAK) / 3600:.0f} H100-hours at 40% MFU (arithmetic above) |")
reference_loss = f"{reference_scores['val_loss']:.3f}" if reference_scores else "not measured (offline)"
print(f"| OpenAI GPT-2 124M via `from_hf_gpt2` | 124M | WebText | {reference_loss} | "
      + " | ".join(cell(reference_scores, key) for key in ("correct_norm", "correct_norm_char", "correct"))
      + f" | {'measured here, ' + DEVICE.type if reference_scores else 'needs the network'} |")
print("| OpenAI GPT-2 124M | 124M | WebText | 3.2924 (its 100M-token FineWeb-Edu split) | 0.2955 (build-nanogpt's "
      "prompt: context, then ' ' + ending) | | 0.2859 (same) | published: build-nanogpt / llm.c `hellaswag.py` |")
print("| OpenAI GPT-2 124M | 124M | WebText | | | 0.3114 (the harness's prompt: activity label, cleaned text) "
      "| 0.2892 (same) | published: EleutherAI lm-evaluation-harness, as llm.c's `hellaswag.py` quotes it |")
print("| GPT-3 Small | 125M | 300B | | 0.337 (GPT-3's own prompt format) | | | published: Brown et al. 2020 |")

# %% [markdown]
# Do two rows differ? Only if their 95% intervals do not overlap (a conservative test: two intervals can
# overlap a little while the difference is still real, so "overlap" reads "these examples do not tell them
# apart", not "equal"). The cell compares every pair of rows measured here, each with chance, and each with
# build-nanogpt's published 29.55% (the same per-token convention, but all 10,042 examples of the official
# file, so its own interval is narrow), all under the per-token `acc_norm`:

# %%
def interval(scores, count_key="correct_norm") -> tuple[float, float]:
    return wilson_interval(scores[count_key], scores["examples"])


def apart(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[1] < b[0] or b[1] < a[0]


measured_rows = {name: row for name, row in measured_rows.items() if row is not None}
published = wilson_interval(round(0.2955 * 10_042), 10_042)
points = {"chance (25%)": (0.25, 0.25), "build-nanogpt's published 0.2955": published}
names = list(measured_rows)
for i, name in enumerate(names):
    mine = interval(measured_rows[name])
    others = [(other, interval(measured_rows[other])) for other in names[i + 1:]] + list(points.items())
    for other, theirs in others:
        verdict = "differ beyond their intervals" if apart(mine, theirs) else "overlap: not told apart by these examples"
        print(f"{name} [{mine[0]:.3f}, {mine[1]:.3f}] vs {other} [{theirs[0]:.3f}, {theirs[1]:.3f}]: {verdict}")

# %% [markdown]
# Let the verdicts speak, not the raw figures. On a CPU the only row measured here is a 1.6M-parameter model
# scored on 100 examples, whose interval is wide: whatever its accuracy, the printed verdicts say whether 100
# examples separate it from chance or from GPT-2. On a GPU runtime the 124M run and OpenAI's GPT-2 are scored
# on 2,000 examples (all 10,042 with `FULL_RECIPE = True`), and the intervals shrink as 1/√n. Offline, the
# rows of OpenAI's model measured here stay empty; the published rows stand in for them, each comparable only
# with a number of its own convention and prompt format.
#
# ## What you learned
#
# - A training run is budgeted before it starts: FLOPs per token (`6N` plus attention), times the tokens
#   `D`, divided by the GPU's peak times the MFU. GPT-2 124M on 10B tokens is about 8.6 × 10¹⁸ FLOPs:
#   hours on one H100, far past Chinchilla's 20 tokens per parameter.
# - FineWeb-Edu becomes `uint16` shards with an end-of-text token before each document; one global,
#   seeded sequence of windows gives every rank its own share and lets a run resume on another number of GPUs.
# - DDP keeps one replica per GPU: each computes gradients on its own micro-batches, one all-reduce
#   averages them, and identical updates keep the replicas identical; `no_sync` limits the traffic to
#   once per optimizer step, and the tokens per step stay fixed as the GPUs change.
# - `torch.compile` fuses elementwise work into generated kernels: the same losses, a compile cost up
#   front, and a speed-up that depends on the hardware and the model, so measure it, in interleaved rounds,
#   and believe a winner only when its rounds all beat the other arm's.
# - HellaSwag scores the four endings by their loss, no generation. `acc_norm` per token (build-nanogpt),
#   per character (the evaluation harness's normalisation) and GPT-3's figure are different conventions with
#   different prompts: a published number means something only beside its convention. An accuracy on `n`
#   examples carries a 95% interval of roughly ±0.9/√n (about ±9 points at 100 examples, ±1 at 10,042), and
#   two rows differ only where their intervals do not overlap.
# - tinylm's `GPT` is GPT-2: OpenAI's weights load into it key for key (`from_hf_gpt2`), and a tinylm model
#   exports to `transformers` (`to_hf_gpt2`); `score_model` puts any of them on the same scale.

# %% [markdown]
# ## Exercises
#
# Complete each function (replace `raise NotImplementedError`), then run the check below it.
#
# **1. Micro-steps per GPU.** Return how many micro-steps each process runs per optimizer step, and raise
# a `ValueError` when the tokens per step cannot be split evenly.

# %%
from tinylm.course.exercises import check


def micro_steps(total_batch_tokens: int, batch_size: int, block_size: int, world_size: int) -> int:
    raise NotImplementedError


def test_micro_steps():
    for batch_size, world_size in [(64, 1), (64, 8), (16, 4), (32, 16), (8, 2)]:
        expected = dataclasses.replace(gpu_train_cfg, batch_size=batch_size).accumulation_steps(1024, world_size)
        assert micro_steps(524_288, batch_size, 1024, world_size) == expected, f"batch {batch_size}, {world_size} GPUs"
    for args in [(524_288, 64, 1024, 16), (524_288, 48, 1024, 1), (1000, 4, 32, 2)]:
        try:
            micro_steps(*args)
        except ValueError:
            continue
        raise AssertionError(f"{args}: the tokens per step do not divide; raise ValueError")


check(test_micro_steps)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def micro_steps(total_batch_tokens, batch_size, block_size, world_size):
#     per_micro_step = batch_size * block_size * world_size
#     if total_batch_tokens % per_micro_step:
#         raise ValueError(f"{total_batch_tokens} tokens do not split into micro-batches of {per_micro_step}")
#     return total_batch_tokens // per_micro_step
# ```
# </details>
#
# **2. A budget in GPU-hours.** Return the GPU-hours of training `n_params` parameters on `n_tokens`
# tokens by the 6ND rule, at a given MFU on GPUs of peak `peak_flops` FLOP/s. (GPU-hours do not depend on
# the number of GPUs; only the wall-clock does.)

# %%
def gpu_hours_6nd(n_params: float, n_tokens: float, mfu: float, peak_flops: float) -> float:
    raise NotImplementedError


def test_gpu_hours_6nd():
    assert abs(gpu_hours_6nd(1e9, 1e9, 1.0, 6e18 / 3600) - 1.0) < 1e-9, "6e18 FLOPs at 6e18 FLOP per hour: one hour"
    assert abs(gpu_hours_6nd(N, D, 0.4, H100_PEAK) - flops_6nd / (0.4 * H100_PEAK) / 3600) < 1e-9
    hours_a100 = gpu_hours_6nd(N, D, 0.4, 312e12)
    assert 15 < hours_a100 < 17, f"GPT-2 124M on A100s at 40% MFU: {hours_a100:.1f} GPU-hours by 6ND"


check(test_gpu_hours_6nd)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def gpu_hours_6nd(n_params, n_tokens, mfu, peak_flops):
#     return 6 * n_params * n_tokens / (mfu * peak_flops) / 3600
# ```
# </details>
#
# **3. `acc` and `acc_norm` from the losses.** Given the summed loss of every ending `(n, 4)`, the number
# of tokens of every ending `(n, 4)` and the right endings `(n,)`, return `(acc, acc_norm)` as floats.
# The check compares with `evaluate_hellaswag` on the examples scored above.

# %%
def hellaswag_accuracy(summed: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    raise NotImplementedError


def test_hellaswag_accuracy():
    summed = torch.tensor([[4.0, 9.0, 6.0, 8.0], [4.0, 9.0, 6.0, 8.0]])
    counts = torch.tensor([[2, 6, 2, 4], [2, 6, 2, 4]])
    acc, acc_norm = hellaswag_accuracy(summed, counts, torch.tensor([0, 1]))
    assert (acc, acc_norm) == (0.5, 0.5), "row 0: sum picks 0; row 1: mean per token (2, 1.5, 3, 2) picks 1"
    scored = [ending_losses(ddp_model, tokenizer, ex, "cpu") for ex in examples[:HELLASWAG_EXAMPLES]]
    acc, acc_norm = hellaswag_accuracy(torch.stack([s for s, _ in scored]), torch.stack([c for _, c in scored]),
                                       torch.tensor([ex.label for ex in examples[:HELLASWAG_EXAMPLES]]))
    assert abs(acc - scores["acc"]) < 1e-9 and abs(acc_norm - scores["acc_norm"]) < 1e-9, "must match evaluate_hellaswag"


check(test_hellaswag_accuracy)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def hellaswag_accuracy(summed, counts, labels):
#     acc = (summed.argmin(dim=1) == labels).float().mean().item()
#     acc_norm = ((summed / counts).argmin(dim=1) == labels).float().mean().item()
#     return acc, acc_norm
# ```
# </details>
#
# **4. An experiment: a model that knows nothing.** Build the smoke recipe's model with fresh random weights
# (`torch.manual_seed(1)`, then `tinylm.GPT(smoke_cfg)`), score it with `evaluate_hellaswag` on the first
# `my_examples` examples of `val_file` (200 or more: `read_examples(val_file.path, limit=my_examples)`), and
# write down the per-token `acc_norm` you measured. Predict first: what should it be, and how far from that
# may an honest measurement land?
#
# The check needs no answer key. A model with random weights has learned nothing about which ending is right,
# so its pick is independent of the label and right with probability 1/4. Chance must then lie inside the
# interval of your measurement; the check uses a 99.7% Wilson interval (`z = 3`), so an honest measurement
# fails it about 3 times in 1,000.

# %%
my_examples = 200
my_acc_norm = None  # replace with your measurement, e.g. 0.245


def test_a_random_model_is_at_chance():
    if my_acc_norm is None:
        raise NotImplementedError("run the experiment and write the acc_norm you measured into my_acc_norm")
    assert my_examples >= 200, "score at least 200 examples: fewer leave an interval too wide to test anything"
    assert 0 <= my_acc_norm <= 1, "acc_norm is a fraction between 0 and 1, not a percentage"
    low, high = wilson_interval(round(my_acc_norm * my_examples), my_examples, z=3.0)
    assert low <= 0.25 <= high, (f"{my_acc_norm:.3f} on {my_examples} examples: its 99.7% interval [{low:.3f}, "
                                 f"{high:.3f}] excludes chance; was the model really untrained, and is it acc_norm?")


check(test_a_random_model_is_at_chance)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# torch.manual_seed(1)
# random_model = tinylm.GPT(smoke_cfg)
# result = evaluate_hellaswag(random_model, tokenizer, read_examples(val_file.path, limit=my_examples))
# print(result)
# my_acc_norm = result["acc_norm"]
# ```
#
# Any seed and any number of examples from 200 up should pass. Try `acc_norm_char` of the same model too:
# per character, an untrained model prefers the endings whose characters it spends the fewest tokens on, a
# preference unrelated to meaning; whether that moves it away from 25% is something the interval of a few
# hundred examples can or cannot show (try 1,000).
# </details>
