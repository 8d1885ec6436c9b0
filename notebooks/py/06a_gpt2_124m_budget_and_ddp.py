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
# # 6a · GPT-2 124M: the compute budget, the data and data-parallel training
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/06a_gpt2_124m_budget_and_ddp.ipynb)
#
# Notebooks 3b and 5 trained models that fit on a laptop. This notebook and
# [notebook 6b](06b_gpt2_124m_evaluation.ipynb) are about one that does not: GPT-2 small (124M parameters)
# trained on 10B tokens of FineWeb-Edu, the recipe of Karpathy's
# [build-nanogpt](https://github.com/karpathy/build-nanogpt). This one plans the run and runs its multi-GPU
# machinery at toy size; 6b evaluates models and measures `torch.compile`
# and MFU.
#
# **What you will learn**
# - how to budget a run: parameters, FLOPs per token, `6ND`, GPU-hours at a given MFU, and how many tokens
#   a model "should" see;
# - how a 10B-token corpus becomes shards, and how a loader gives each GPU its own windows;
# - what distributed data parallel (DDP) does each step, and a real 2-process `torchrun` run;
# - by experiment (exercise 3): whether 2 processes × 4 sequences train the same model as 1 process × 8.
#
# **Papers and code behind it**: GPT-2 ([Radford et al. 2019](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf)),
# scaling laws ([Kaplan et al. 2020](https://arxiv.org/abs/2001.08361)), Chinchilla
# ([Hoffmann et al. 2022](https://arxiv.org/abs/2203.15556)), PaLM's FLOPs count and MFU
# ([Chowdhery et al. 2022](https://arxiv.org/abs/2204.02311), appendix B), FineWeb-Edu
# ([Penedo et al. 2024](https://arxiv.org/abs/2406.17557)), PyTorch DDP ([Li et al. 2020](https://arxiv.org/abs/2006.15704)),
# and [build-nanogpt](https://github.com/karpathy/build-nanogpt).
#
# **How long it takes**: a lesson of about 70 minutes (reading, code and the `cpu` run's 17 s, by the course's
# formula), then a second sitting of about 40 minutes for the 3 exercises (10 minutes per function, 20 per experiment,
# and 14 s of training).
#
# | profile | what runs | compute time |
# |---|---|---|
# | `smoke` (CI) | a 2-process run of 10 steps | under a minute |
# | `cpu` (2-core laptop) | a 2-process run of 100 steps | the last cell prints it |
# | `gpu` | the same 2-process run, on CPU processes | as on a cpu |
#
# The data cells use 120 FineWeb-Edu documents, from the offline mirror when `TINYLM_DATA_MIRROR` is set,
# else streamed from Hugging Face. The 124M run itself needs GPUs; its commands are at the end.

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import tinylm
import tinylm.course.plotting
from tinylm.data.fineweb import ShardedWindowLoader, read_progress
from tinylm.data.tokens import read_tokens

NOTEBOOK_STARTED = time.perf_counter()
tinylm.course.plotting.use_projector_style()  # fonts readable on a projector
PROFILE = tinylm.set_up_notebook("cpu").profile  # and the CPU's speed settings, as commands set up (CPU only here)
print(f"profile {PROFILE}")

# %% [markdown]
# ## The compute budget
#
# ### Parameters
#
# GPT-2 small is the default `GPTConfig`: 12 layers, 12 heads, 768 wide, a 1,024-token context and
# GPT-2's 50,257-token vocabulary. Build it on PyTorch's `meta` device (shapes only, no memory) and count:

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
# 124,439,808 is OpenAI's GPT-2 small's count; almost a third is the embedding matrix, shared with the
# LM head. The recipe *trains* a vocabulary padded to 50,304 = 786 × 64 rows (notebook 4
# explains why); the 47 extra rows are never a target.

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
# A matmul costs 2 FLOPs (a multiply and an add) per weight per token forward, and twice that backward
# (input and weight gradients): **6 FLOPs per weight per token**. Attention adds work without
# weights: each query meets `T` keys and mixes `T` values, `2·T·C` FLOPs each per layer, so forward and backward
# add `3 × 4·T·C` per layer:
#
# $$\text{FLOPs per token} = 6\,N_{\text{matmul}} + 12 \cdot L \cdot C \cdot T$$
#
# `N_matmul` counts the tied token embedding (as the LM head it is a `V × C` matmul) but not the position
# embedding, a table look-up. A causal mask needs only `T/2` keys on average; the formula counts `T`, as PaLM
# and nanoGPT do. By hand and by `GPT.flops_per_token()`:

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
# The recipe takes 19,073 steps of 2¹⁹ = 524,288 tokens (`total_batch_tokens`: 512 sequences of 1,024): 10B
# tokens, one pass over FineWeb-Edu's `sample-10BT`. The total is about **6ND** FLOPs (Kaplan et al. 2020) for N
# parameters and D tokens. Our N counts every parameter, the tied embedding
# too, as Chinchilla does; Kaplan's leaves out the embeddings. Time is FLOPs over what
# the GPU delivers:
#
# $$\text{GPU-hours} = \frac{\text{FLOPs}}{\text{MFU} \times \text{peak FLOP/s} \times 3600}$$
#
# An H100 (SXM) peaks at 989.5 TFLOP/s in dense bf16. The fraction of the peak a run achieves is its
# **model FLOPs utilisation** (MFU; notebook 6b shows how it is measured). The 40% below is **assumed, not
# measured**. One H100 measured the 124M step ([docs/results/gpu-2026-11-26.md](../docs/results/gpu-2026-11-26.md))
# at 36.1% compiled (`torch.compile`, notebook 6b) and 17.8% eager, both with the **unpadded** 50,257-row
# vocabulary; notebook 4 measured padding alone cutting the eager step by nearly a third, so the eager line below
# understates the recipe's padded model. Time and money:
# [Running on a GPU](README.md#running-on-a-gpu).

# %%
# NBVAL_CHECK_OUTPUT
D = gpu_train_cfg.max_steps * gpu_train_cfg.total_batch_tokens
flops_6nd = 6 * N * D
flops_total = model_124m.flops_per_token() * D
H100_PEAK = tinylm.runtime.peak_tflops("NVIDIA H100 80GB HBM3", torch.bfloat16) * 1e12  # FLOP/s, dense bf16
print(f"D = {gpu_train_cfg.max_steps:,} steps x {gpu_train_cfg.total_batch_tokens:,} tokens = {D:,} tokens")
print(f"6ND = {flops_6nd:.3e} FLOPs; with attention (flops_per_token x D) {flops_total:.3e} FLOPs")
n_kaplan = N - model_124m.transformer.wte.weight.numel() - model_124m.transformer.wpe.weight.numel()
print(f"Kaplan's N leaves out the embeddings: N = {n_kaplan:,}, 6ND = {6 * n_kaplan * D:.3e} FLOPs")
print(f"at 40% MFU on H100s: {flops_total:.3e} / (0.4 x {H100_PEAK:.3e} FLOP/s) = "
      f"{flops_total / (0.4 * H100_PEAK) / 3600:.1f} GPU-hours, however many GPUs share them")

# %%
MEASURED_MS = {"eager": 79.46, "compiled": 39.25}  # docs/results/gpu-2026-11-26.md: one H100, bf16, 16 x 1,024 tokens
for name, ms in MEASURED_MS.items():
    tokens_per_s = 16 * 1024 / (ms / 1e3)
    print(f"measured on one H100 ({name}, docs/results/gpu-2026-11-26.md): {ms} ms per 16 x 1,024 tokens, "
          f"{model_124m.flops_per_token() * tokens_per_s / H100_PEAK:.1%} MFU: {D / tokens_per_s / 3600:.1f} hours")

# %% [markdown]
# Each measured step includes an AdamW update, which the recipe makes only once per 32 such micro-batches:
# a slight overestimate. Its micro-batch of 16 sequences is also a quarter of the recipe's 64 (printed below),
# which moves MFU too, by an amount not measured here.
#
# Eight GPUs spend the same GPU-hours as one, eight times sooner. The arithmetic omits two costs. First,
# evaluation: every `eval_interval` steps the trainer scores the *whole* validation shard (100M tokens from
# Hugging Face), forward only, about a third of the training FLOPs per token:

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
# Hence every 1,000 steps, not build-nanogpt's 250. build-nanogpt pays far less per evaluation: it averages
# 20 batches of 64 × 1,024 tokens per GPU from the start of its validation shard, an estimate from fewer tokens.
# Second, wall-clock time outside the steps: start-up and checkpoints (evaluation FLOPs are counted above), which
# the logged MFU also leaves out: it counts only the optimizer steps' seconds, so it shows what slows the steps themselves, such as
# waiting for data or for the all-reduce.
#
# ### How many tokens for 124M parameters?
#
# Kaplan et al. fitted how the loss falls with parameters, data and compute. Hoffmann et al. ("Chinchilla")
# asked which split of a fixed compute budget between N and D gives the lowest loss: about
# **20 tokens per parameter**. The recipe uses far more:

# %%
# NBVAL_CHECK_OUTPUT
chinchilla_tokens = 20 * N
print(f"compute-optimal for {N / 1e6:.0f}M parameters (20 tokens each): {chinchilla_tokens / 1e9:.1f}B tokens, "
      f"6ND = {6 * N * chinchilla_tokens:.1e} FLOPs")
print(f"the recipe: {D / 1e9:.1f}B tokens, {D / N:.0f} tokens per parameter, {flops_6nd / (6 * N * chinchilla_tokens):.1f}x those FLOPs")

# %% [markdown]
# By that rule the same compute would reach a lower loss with a larger model on fewer tokens. A small model that
# has read more still wins when it will be *run* a lot, being cheaper per generated token; and 124M on 10B
# tokens is build-nanogpt's budget, whose published results this recipe is compared with.
#
# ## The data: FineWeb-Edu in shards
#
# 10B tokens are 20 GB as `uint16`: too much for one file, and too long to tokenize without resuming.
# `python -m tinylm.prepare --track gpt2-124m --profile gpu` streams the documents, tokenizes them with GPT-2's
# BPE, and writes **shards** of 100M tokens (200 MB). As in build-nanogpt, an end-of-text
# token goes **before** each document, marking what follows as new; notebook 5 puts it after each story, and
# between two documents both give one such token. The first shard is validation, the rest training;
# `progress.json`, written after each shard, lets an interrupted preparation resume. Here: 120 documents in shards
# of 20,000 tokens.

# %%
folder = track.prepare("cpu").folder  # 120 documents, whatever PROFILE is; a progress bar when it tokenizes

# %%
# NBVAL_CHECK_OUTPUT
progress = read_progress(folder)
tokenizer = tinylm.BPETokenizer("gpt2")
EOT = tokenizer.eot_token
val_shard = read_tokens(folder / progress["shards"][0]["name"])
print(repr(tokenizer.decode(val_shard[:40])))
for shard in progress["shards"]:
    tokens = read_tokens(folder / shard["name"])
    first = "an end-of-text" if tokens[0] == EOT else repr(tokenizer.decode(tokens[:1])) + ", mid-document"
    print(f"{shard['name']}: {len(tokens):,} tokens, {int((tokens == EOT).sum())} documents start here, "
          f"the first token is {first}")

# %% [markdown]
# The stream runs across shard boundaries: a full shard ends mid-document and the next continues it.
#
# `ShardedWindowLoader` cuts each training shard into windows of `block_size + 1` tokens at multiples of
# `block_size`, in **one global, seeded order** (shards and each shard's windows shuffled, epoch after epoch). A cursor counts the windows all ranks have consumed: rank `r` of `W` takes windows
# `[cursor + r·B, cursor + (r+1)·B)`, and every rank advances it by `W·B`. No two ranks read the same window,
# together they read what one process with a batch of `W·B` would, and the cursor does not depend on `W`, so a
# run checkpointed on 2 GPUs resumes on 1 or 4 (`tests/test_shards.py` checks both). Both ranks'
# windows, by the rule and from the loader:

# %%
BLOCK, BATCH = 32, 4
ranks = [ShardedWindowLoader(folder, BLOCK, BATCH, rank=r, world_size=2, seed=1337) for r in range(2)]
single = ShardedWindowLoader(folder, BLOCK, 2 * BATCH, seed=1337)  # one process, twice the batch


def by_hand(loader: ShardedWindowLoader, rank: int) -> torch.Tensor:
    """Rank `rank`'s next inputs from the rule: windows cursor + rank·B ... of the global sequence."""
    starts = [loader.window(i) for i in range(loader.cursor + rank * BATCH, loader.cursor + (rank + 1) * BATCH)]
    return torch.tensor(np.stack([loader.shards[shard][offset:offset + BLOCK] for shard, offset in starts]),
                        dtype=torch.long)


for step in range(3):
    expected = [by_hand(loader, r) for r, loader in enumerate(ranks)]
    batches = [loader.next_batch() for loader in ranks]
    assert all(torch.equal(x, want) for (x, _), want in zip(batches, expected)), "the loader follows the rule"
    assert torch.equal(torch.cat([x for x, _ in batches]), single.next_batch()[0]), "= one process with batch 8"
print(f"{ranks[0].windows_per_epoch:,} windows per epoch in {len(ranks[0].files)} training shards; 3 steps: each "
      "rank read the windows the rule gives it, and the two together read one process's batch of 8")

# %% [markdown]
# ## Distributed data parallel
#
# `torchrun --nproc_per_node=8 -m tinylm.train gpt2-124m` starts eight copies of the program, one per GPU,
# passing `RANK` and `WORLD_SIZE` as environment variables; `tinylm.distributed.init_distributed()` reads them
# and joins the process group (NCCL between GPUs, gloo between CPU processes). Then every rank:
#
# 1. builds the model from the same seed (DDP also broadcasts rank 0's weights), so all copies start identical;
# 2. draws **its own** micro-batches from the loader;
# 3. runs forward and backward on them;
# 4. **all-reduces** the gradients: every rank gets their average, the gradient of the whole global batch.
#    DDP does this during `backward`, bucket by bucket, overlapping communication with computation
#    (Li et al. 2020);
# 5. steps its own AdamW. Same weights, gradient and update keep the copies identical without sending weights.
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
# In the step, only gradients travel in bulk (plus a few scalars, such as the loss); rank 0 alone writes logs and
# checkpoints. The averaged gradient is the big batch's
# because the loss is a mean: the mean over 8 sequences is the average of two means over 4. Check it on the
# smoke recipe's model (trained below) with the two ranks' next batches:

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
# 524,288 tokens do not fit in one GPU's memory, so each rank accumulates gradients over several
# micro-steps (notebook 3a). Only the sum matters, so the trainer skips the all-reduce on every micro-step but the
# last: `Trainer._accumulate_gradients` (`tinylm/train/trainer.py`) asks `Parallel.gradient_sync`
# (`tinylm/train/parallel.py`), which enters DDP's `no_sync()`:
#
# ```python
# last = micro_step == self.grad_accum_steps - 1
# with self.parallel.gradient_sync(last):
#     with autocast(self.device, self.dtype):
#         loss = self.batch_loss(batch)
#     # loss x count is this micro-batch's sum; x world size undoes every way's average over ranks
#     self.scaler.scale(loss * (count * self.world.size / step_count)).backward()
# ```
#
# `loss` is the mean over `count` targets, so `loss * count` is their sum. `step_count` counts the step's targets
# over every micro-batch and rank (one all-reduce totals it before the first micro-step), so the terms add up to
# the step's mean loss. DDP *averages* over ranks; the factor `self.world.size` undoes that. When every position
# is a target, the factor is `1 / grad_accum_steps`, notebook 3a's division by `k`. `scaler.scale` applies fp16's
# loss scale and passes the loss unchanged in bf16 or fp32.
#
# The recipe fixes the tokens per step; the micro-steps follow from the number of processes:
# `accumulation = total_batch_tokens / (batch_size × block_size × processes)`. By hand, against
# `TrainConfig.accumulation_steps`:

# %%
# NBVAL_CHECK_OUTPUT
print(f"total_batch_tokens {gpu_train_cfg.total_batch_tokens:,}, batch_size {gpu_train_cfg.batch_size}, "
      f"block_size {gpu_preset.block_size}")
for world_size in (1, 2, 4, 8):
    steps = gpu_train_cfg.accumulation_steps(gpu_preset.block_size, world_size)
    assert steps == gpu_train_cfg.total_batch_tokens // (gpu_train_cfg.batch_size * gpu_preset.block_size * world_size)
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
# The eight-GPU command runs here with two CPU processes and gloo, on CPU even beside a GPU (two processes would
# both claim it). Every profile uses the `smoke` recipe, a 2-layer, 32-wide model with GPT-2's vocabulary,
# nearly all embedding: this shows the mechanics, not training. `OMP_NUM_THREADS=1` lets the two processes share
# two cores without fighting (`torch.distributed.run` is `torchrun`).
#
# **Predict, then run.** Both processes train: how many lines of training log will you see, and how many run
# folders? The header will say `4 x 1 x 2 sequences of 32 per step`: what is each number?

# %%
DDP_STEPS = 10 if PROFILE == "smoke" else 100
PROCESSES = 2
run_dir = tinylm.paths.runs_dir() / f"notebook-06a-{PROFILE}"
command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={PROCESSES}",
           "-m", "tinylm.train", "gpt2-124m", "--profile", "smoke", "--out", str(run_dir), "--overwrite",
           "--max-steps", str(DDP_STEPS), "--device", "cpu"]
env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, even where a GPU is present
start = time.perf_counter()
try:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
except subprocess.CalledProcessError as error:
    print(error.stdout[-3000:], error.stderr[-3000:], sep="\n")
    raise
ddp_seconds = time.perf_counter() - start
print(f"torchrun with {PROCESSES} processes: {ddp_seconds:.0f} s in all (start-up, training, evaluation, a sample)\n")
rule = "\n" + "-" * 40 + "\n"  # the run ends with a 300-token sample between two such rules
log, _, rest = result.stdout.partition(rule)
print(log.rstrip())
print(f"sample: {rest.partition(rule)[0][:150]!r} ...")
if result.stderr.strip():
    print(f"\n({len(result.stderr.splitlines())} lines of torchrun's own warnings and logs on stderr, not shown)")

# %% [markdown]
# `4 x 1 x 2`: 4 sequences per micro-batch, 1 micro-step, 2 processes. Only rank 0 printed and wrote a run
# folder. The HellaSwag score (notebook 6b: pick the likeliest of four endings, so chance is one in four) rests on
# 8 examples of the mirror's substitute file; with 8 items its 95% interval (notebook 6b) is 0.14-0.69, which holds
# both chance and build-nanogpt's 29.55% for GPT-2 124M (official file), so it tells this model from neither. Its `metrics.jsonl`, drawn:

# %%
records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
train_records = [r for r in records if r["event"] == "train"]
final_record = records[-1]
tokens_per_step = smoke_train_cfg.batch_size * smoke_cfg.block_size * PROCESSES  # 4 sequences x 32 tokens x 2 processes
ddp_tokens_per_s = final_record["step"] * tokens_per_step / final_record["elapsed"]
print(f"{sorted(p.name for p in run_dir.iterdir() if p.suffix in ('.pt', '.jsonl'))}: {len(train_records)} training "
      f"records, then {final_record['event']!r}")
print(f"{final_record['step']} steps x {tokens_per_step} tokens in {final_record['elapsed']:.1f} s of training: "
      f"{ddp_tokens_per_s:,.0f} tokens/s over both processes; final validation loss {final_record['val_loss']:.4f} "
      f"(the uniform guess: ln {tokenizer.vocab_size:,} = {np.log(tokenizer.vocab_size):.2f})")
cpu_flops = probe.flops_per_token() * ddp_tokens_per_s
print(f"that is {cpu_flops / 1e9:.1f} GFLOP/s; at that rate the 124M recipe's {flops_total:.1e} FLOPs would take "
      f"{flops_total / cpu_flops / (365 * 24 * 3600):,.0f} years")

fig, ax = plt.subplots(figsize=(7, 3))
ax.plot([r["step"] for r in train_records], [r["loss"] for r in train_records], marker="o")
ax.axhline(np.log(tokenizer.vocab_size), color="gray", ls="--", lw=1, label="uniform guess, ln 50,257")
ax.set_xlabel("optimizer step")
ax.set_ylabel("training loss")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The loss starts near the uniform guess, ln 50,257 ≈ 10.8 (10.59 at step 5), and falls as the model learns
# which tokens are frequent, until about step 50; then it hovers near 8.
# The output shows the mechanics (two processes, one log, one run folder), not that the replicas stay
# identical: that follows from their common start and the averaged gradient checked above, and exercise 3 tests
# what it implies.
#
# *Are two processes faster?* With a GPU each, throughput grows almost linearly, less the all-reduce time the
# backward pass cannot hide (Li et al. 2020: near-linear on 256 GPUs). Here the two split the cores one
# two-threaded process would use, so this notebook does not time them. The 6 years above are at this toy's rate:
# nearly all its FLOPs are the 50,304 × 32 head's, on two one-thread processes.
#
# ## Running it for real
#
# Prepare the data once (about 20 GB), then train on one GPU, eight, or two machines of eight:
#
# ```bash
# python -m tinylm.prepare --track gpt2-124m --profile gpu
# python -m tinylm.train gpt2-124m                                      # one GPU
# torchrun --standalone --nproc_per_node=8 -m tinylm.train gpt2-124m   # eight GPUs on one machine
# # two machines with eight GPUs each: run this on both; HOST is the first machine's address
# torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 --rdzv-id=gpt2-124m \
#     -m tinylm.train gpt2-124m --batch-size 32
# ```
#
# On 2 × 8 GPUs the batch of 64 does not divide (the error above), hence `--batch-size 32`. The loader's state
# does not depend on the GPU count, so `--resume` continues on another number (with a `--batch-size` that splits
# 524,288 tokens per step evenly). `python -m tinylm.eval core --ckpt runs/gpt2-124m-gpu` scores the result on
# CORE (notebook 6b).
#
# ## What you learned
#
# - Budget first: FLOPs per token (`6N` plus attention) × `D` tokens ÷ (peak × MFU). GPT-2 124M on 10B tokens is hours on one H100 at 40% MFU, far past Chinchilla's 20 tokens per
#   parameter.
# - FineWeb-Edu becomes `uint16` shards with an end-of-text token before each document; one global, seeded
#   window order gives every rank its share and lets a run resume on another number of GPUs.
# - DDP keeps a replica per GPU: own micro-batches, gradients averaged by one all-reduce, identical updates;
#   `no_sync` makes that once per optimizer step, and the tokens per step stay fixed as the GPUs change.

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
# **3. An experiment: one process or two?** Train the same recipe for the same steps in **one** process with
# a batch of 8 sequences (the 2-process run has 2 × 4), into a folder of your own:
#
# ```python
# my_run = tinylm.paths.runs_dir() / "one-process"
# subprocess.run([sys.executable, "-m", "tinylm.train", "gpt2-124m", "--profile", "smoke", "--out", str(my_run),
#                 "--overwrite", "--max-steps", str(DDP_STEPS), "--device", "cpu", "--batch-size", "8"], check=True)
# ```
#
# Predict first, from what this notebook showed: the loader hands the two ranks together the windows one
# process reads, and the all-reduced gradient is the whole batch's. Will the two runs' training losses be
# equal, close, or different, and by how much? The check reads both runs' `metrics.jsonl` and compares the
# losses they logged step by step.

# %%
my_run = None  # replace with the folder of your 1-process run
print(f"exercise 3 trains for about {ddp_seconds:,.0f} s here (the 2-process run above took as long)")


def test_one_process_with_batch_8_trains_what_two_with_batch_4_train():
    if my_run is None:
        raise NotImplementedError("train the 1-process run, then set my_run to its folder")
    assert Path(my_run).resolve() != run_dir.resolve(), "my_run is the 2-process run itself: train one of your own"
    _, _, state = tinylm.load_model(Path(my_run) / "last.pt", "cpu")
    assert len(state["rng"]) == 1 and state["train_config"]["batch_size"] == 8, "one process, --batch-size 8"
    losses = [{r["step"]: r["loss"] for r in map(json.loads, (Path(folder) / "metrics.jsonl").read_text().splitlines())
               if r["event"] == "train"} for folder in (my_run, run_dir)]
    assert losses[0].keys() == losses[1].keys(), f"log the same steps: --max-steps {DDP_STEPS}"
    gap = max(abs(losses[0][step] - losses[1][step]) for step in losses[0])
    assert gap < 1e-3, f"the losses differ by up to {gap:.2g}: did both runs use the same recipe and seed?"
    print(f"largest difference between the runs' logged losses over {len(losses[0])} records: {gap:.1e}")


check(test_one_process_with_batch_8_trains_what_two_with_batch_4_train)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# my_run = tinylm.paths.runs_dir() / "one-process"
# subprocess.run([sys.executable, "-m", "tinylm.train", "gpt2-124m", "--profile", "smoke", "--out", str(my_run),
#                 "--overwrite", "--max-steps", str(DDP_STEPS), "--device", "cpu", "--batch-size", "8"], check=True)
# ```
#
# The losses agree to float32
# rounding, not bit for bit (3.3e-06 at most over the cpu run's 20 records on a 2-core machine, from this command
# and the notebook's `torchrun` run by hand: notebooks/SOURCES.md; the check allows
# 1e-3, since other thread counts add in other orders): two processes add their gradients in another order than
# one process does, and
# each has one thread where the single process uses all of torch's threads (two on the 2-core machine of the
# committed run). Same windows, same gradient (the averaged one *is* the
# batch's), same update: DDP changes how fast the step is computed, not which step. That is why the recipe
# fixes the tokens per step, not the number of GPUs.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
