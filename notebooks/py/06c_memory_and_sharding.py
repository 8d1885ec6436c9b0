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
# # 6c · Memory and sharding
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/06c_memory_and_sharding.ipynb)
#
# [Notebook 6a](06a_gpt2_124m_budget_and_ddp.ipynb) counted a training run in FLOPs and trained it with DDP. Here we
# count it in bytes and try three ways, on a laptop, to spend fewer: recomputing activations, attention without its
# (T, T) matrix, and sharding the state.
#
# **What you will learn**
# - where a step's memory goes, counted by hand and checked against the profiler;
# - what activation checkpointing saves and costs;
# - FlashAttention's online softmax, tiling and recomputation, and why its fused kernel is fast;
# - ZeRO-1 from scratch, FSDP through `--fsdp`, and what each rank holds;
# - in exercise 2, how checkpointing's saving depends on the vocabulary.
#
# **Papers and code**: activation checkpointing ([Chen et al. 2016](https://arxiv.org/abs/1604.06174)),
# FlashAttention ([Dao et al. 2022](https://arxiv.org/abs/2205.14135)), FlashAttention-2
# ([Dao 2023](https://arxiv.org/abs/2307.08691)), the online softmax
# ([Milakov & Gimelshein 2018](https://arxiv.org/abs/1805.02867)), ZeRO
# ([Rajbhandari et al. 2020](https://arxiv.org/abs/1910.02054)), PyTorch FSDP
# ([Zhao et al. 2023](https://arxiv.org/abs/2304.11277)); Stanford CS336's
# [assignment 2](https://github.com/stanford-cs336/assignment2-systems) builds these pieces.
#
# **How long it takes**: a lesson of about 85 minutes (reading, code and the `cpu` run's 44 s, by the course's
# formula), then a second sitting of about 30 minutes for the 2 exercises (10 minutes per function, 20 per experiment,
# and 5 s of training).
#
# | profile | what runs | compute time |
# |---|---|---|
# | `smoke` (CI) | the measurements at small sizes, 2-process runs of a few steps | under a minute |
# | `cpu` (2-core laptop) | the measurements, two 2-process runs of 200 steps | the last cell prints it |
# | `gpu` | as `cpu` (the processes run on the CPU) | as on a cpu |

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import json
import math
import os
import subprocess
import sys
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import tinylm
import tinylm.course.plotting
from tinylm.bench.measure import PRESETS, compare_checkpointing
from tinylm.model.streaming_attention import streaming_attention, streaming_forward
from tinylm.train.checkpoint import load_checkpoint
from tinylm.train.memory import block_activations, held_bytes, measured_peak, memory_account
from tinylm.train.zero import ZeroAdamW

NOTEBOOK_STARTED = time.perf_counter()
tinylm.course.plotting.use_projector_style()
PROFILE = tinylm.set_up_notebook("cpu").profile
# timings depend on the CPU's kind; to reproduce AVX2 on AVX-512: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
print(f"profile {PROFILE}; CPU kind {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores")

# %% [markdown]
# ## Where a step's memory goes
#
# Take notebook 5's `cpu` story model (4 blocks, 128 wide, context 128, vocabulary 6,912) with its batch of 16
# sequences, in fp32. Each parameter costs 4 bytes of weight, 4 of gradient and 8 of AdamW moments: **16 bytes per
# parameter**. The rest is what the forward pass keeps, per token, for the backward pass.

# %%
# NBVAL_CHECK_OUTPUT
config, BATCH = PRESETS["tinystories-cpu"], 16
model = tinylm.GPT(config)
P = model.num_parameters()
tokens = BATCH * config.block_size
print(f"{P:,} parameters: weights {4 * P / 1e6:.1f} MB, gradients {4 * P / 1e6:.1f} MB, AdamW {8 * P / 1e6:.1f} MB")
print(f"a batch of {BATCH} x {config.block_size} = {tokens:,} tokens")

# %% [markdown]
# Autograd saves what each backward needs: a matmul's or GELU's input, LayerNorm's input and each row's mean and 1/std,
# attention's q, k, v, output and a log-sum-exp per row (why, in "Attention that streams"). `saved_tensors_hooks`
# shows what one block saves:

# %%
def saved_by(module, *inputs) -> list[tuple[str, tuple, int]]:
    """(dtype, shape, bytes) of each distinct tensor the forward pass of `module` saves for backward, weights left
    out."""
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            seen.setdefault(storage.data_ptr(), (str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape),
                                                 storage.nbytes()))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(*inputs)
    return list(seen.values())


x = torch.randn(BATCH, config.block_size, config.n_embd, requires_grad=True)
saved = saved_by(model.transformer.h[0], x)
for dtype, shape, nbytes in saved:
    print(f"  {dtype:8} {str(shape):22} {nbytes / tokens:6.0f} bytes per token")
block_bytes = sum(nbytes for _, _, nbytes in saved)
print(f"one block keeps {block_bytes / tokens:,.0f} bytes per token ({block_bytes / 1e6:.1f} MB for the batch)")

# %% [markdown]
# q's row is c_attn's whole output, 3C numbers per token, since q, k and v are views of it. The reshaped output c_proj
# reads has no row: the CPU kernel writes the heads side by side, so no copy is made.
#
# In all, 16C + 8 numbers per token (C = 128, 4 heads), counted below against the package's account:

# %%
def gpt2_block_bytes_per_token(C: int, n_head: int) -> int:
    residual = 2 * (C + 2)  # the two norms' inputs, with their mean and 1/std
    normalised = 2 * C  # the two norms' outputs, the inputs of c_attn and c_fc
    attention = 3 * C + C + n_head  # q, k, v; the output; a log-sum-exp per row and head
    mlp = 2 * 4 * C  # the hidden values before and after GELU
    return 4 * (residual + normalised + attention + mlp)  # fp32: 4 bytes a number


mine = gpt2_block_bytes_per_token(config.n_embd, config.n_head)
assert mine == sum(block_activations(config, half=False).values()) == block_bytes / tokens
print(f"{mine:,} bytes per token per block; x {config.n_layer} blocks x {tokens:,} tokens = "
      f"{mine * config.n_layer * tokens / 1e6:.1f} MB")

# %% [markdown]
# The loss is the largest item: at the backward pass's start three fp32 tensors of 6,912 numbers per position are alive,
# the log-softmax, its gradient and the logits' gradient. Against the profiler's peak of live bytes:

# %%
def measured_step_peak(config, batch_size: int, checkpointing: bool = False) -> int:
    """The peak bytes of live tensors of one AdamW training step (the second, once the moments exist)."""
    torch.manual_seed(0)
    model = tinylm.GPT(config)
    model.activation_checkpointing = checkpointing
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x, y = (torch.randint(config.vocab_size, (batch_size, config.block_size)) for _ in range(2))

    def step():
        model(x, y)[1].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    return measured_peak(step, held_bytes(model, optimizer, x, y), torch.device("cpu"))


account = memory_account(config, P, BATCH, torch.float32)
for what, nbytes in account.rows():
    print(f"  {what:22} {nbytes / 1e6:7.1f} MB")
measured = measured_step_peak(config, BATCH)
print(f"peak by the account {account.peak / 1e6:.1f} MB; measured {measured / 1e6:.1f} MB "
      f"({account.peak / measured - 1:+.1%})")
assert abs(account.peak / measured - 1) < 0.10

# %% [markdown]
# The rows do not simply add up. The step may peak at the backward pass's start, during it ("a block's backward") or at
# its end; the account takes the largest. Per token the loss's three tensors hold 12 × 6,912 = 82,944 bytes, the four
# blocks 32,896.
#
# GPT-2 124M by the account, at the `gpu` recipe's micro-batch of 64 × 1,024 tokens in bf16, without the recipe's
# compiling (which can fuse the loss's tensors) or its vocabulary padded to 50,304:

# %%
# NBVAL_CHECK_OUTPUT
big_config = tinylm.GPT2_124M
with torch.device("meta"):
    big_P = tinylm.GPT(big_config).num_parameters()
fig, ax = plt.subplots(figsize=(9, 3.2))
for row, checkpointing in enumerate((False, True)):
    big = memory_account(big_config, big_P, 64, torch.bfloat16, checkpointing)
    parts = {"weights, gradients, AdamW": big.parameters + big.gradients + big.optimizer_state,
             "autocast's bf16 copies": big.autocast_copies, "the 12 blocks' activations": sum(big.blocks),
             "loss (tokens x vocab, fp32)": big.loss, "one block rebuilt": big.recompute}
    left = 0
    for (what, nbytes), color in zip(parts.items(), plt.cm.tab10.colors):
        ax.barh(row, nbytes / 1e9, left=left, color=color, label=what if row == 0 else None)
        left += nbytes / 1e9
    print(f"{'checkpointed' if checkpointing else 'plain':12}: peak {big.peak / 1e9:.1f} GB; " +
          ", ".join(f"{what} {nbytes / 1e9:.1f}" for what, nbytes in parts.items()))
ax.set_yticks([0, 1], ["plain", "activation\ncheckpointing"])
ax.set_xlabel("GB (the account's items, not all alive at the peak)")
ax.set_title("GPT-2 124M, 64 x 1,024 tokens, bf16: one training step")
ax.legend(fontsize=9, loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# Weights, gradients and AdamW take 2.0 GB, the activations and the loss thirty times that. At 63.4 GB the micro-batch
# fits an 80 GB GPU and twice it would not: here the batch, not the model, decides what fits.
#
# ## Activation checkpointing
#
# With `GPT.activation_checkpointing` on (`--activation-checkpointing`), each block runs under `torch.utils.checkpoint`.
# The forward pass keeps only each block's input; the backward pass reruns one block at a time to rebuild the rest. A
# step is about three forwards (a backward costs two), so the rerun adds a third of the blocks' share of the forward
# pass. The count below gives a causal query T/2 keys on average, where notebook 6b's MFU charges all T. Plain against
# checkpointed, same weights, alternating rounds:

# %%
ROUNDS = 3 if PROFILE == "smoke" else 10
started = time.perf_counter()
race = compare_checkpointing(config, BATCH, rounds=ROUNDS, device="cpu", dtype="float32")
race_seconds = time.perf_counter() - started
for arm in ("plain", "checkpointed"):
    ms = race["round_ms"][arm]
    print(f"{arm:12}: peak {race['measured'][arm] / 1e6:6.1f} MB measured ({race['account'][arm] / 1e6:6.1f} by the "
          f"account), {np.mean(ms):6.1f} ms per step (rounds {min(ms):.1f} to {max(ms):.1f}), losses "
          f"{race['losses'][arm]}")
C, L, T, V = config.n_embd, config.n_layer, config.block_size, config.vocab_size
blocks, head = L * (12 * C * C + T * C), C * V
print(f"the blocks do {blocks / (blocks + head):.0%} of the forward pass's multiply-adds per token: rebuilding them "
      f"should add about {blocks / (blocks + head) / 3:.0%} to a step")
saved_share = 1 - race["measured"]["checkpointed"] / race["measured"]["plain"]
cost = np.mean(race["round_ms"]["checkpointed"]) / np.mean(race["round_ms"]["plain"]) - 1
print(f"checkpointing saved {saved_share:.0%} of the peak and cost {cost:+.0%} in time; "
      f"{'every round of the plain arm was faster' if max(race['round_ms']['plain']) < min(race['round_ms']['checkpointed']) else 'the rounds overlap'}")
assert race["losses"]["plain"] == race["losses"]["checkpointed"]

# %% [markdown]
# Equal losses: checkpointing changes what is stored, not what is computed. The time cost is consistent with the
# estimate, given noisy rounds on a shared laptop. It removed nearly all of the blocks' 67 MB (the inputs stay), only a
# quarter of the peak: the loss's 170 MB is most of it. For GPT-2 124M it saves 19 GB of 63.
#
# ## Attention that streams
#
# Attention written out (notebook 2a) keeps a (T, T) matrix per head for the backward pass, memory quadratic in the
# context. FlashAttention never makes it whole. Its first idea is the **online softmax**: read a row in chunks, keep a
# running maximum m and a running sum of exponentials s, and rescale s by exp(m_old − m_new) whenever the maximum rises.

# %%
def online_softmax(scores: torch.Tensor, chunk: int) -> torch.Tensor:
    """softmax(scores) over the last dimension, reading it `chunk` entries at a time (a second pass normalises)."""
    m = torch.full(scores.shape[:-1], -math.inf)
    s = torch.zeros(scores.shape[:-1])
    for start in range(0, scores.size(-1), chunk):
        part = scores[..., start:start + chunk]
        new_m = torch.maximum(m, part.amax(dim=-1))
        s = s * torch.exp(m - new_m) + torch.exp(part - new_m[..., None]).sum(dim=-1)
        m = new_m
    return torch.exp(scores - m[..., None]) / s[..., None]


scores = torch.randn(3, 100) * 5
assert torch.allclose(online_softmax(scores, chunk=16), torch.softmax(scores, dim=-1), atol=1e-6)
print("the online softmax equals torch.softmax")

# %% [markdown]
# Attention uses the softmax only to weigh the values, so the running weighted sum is rescaled the same way. Query tiles
# meet key and value tiles up to the diagonal, so only a (tile, tile) block of scores ever exists. One head:

# %%
def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tile: int) -> torch.Tensor:
    """Causal attention of q, k, v (T, hs): query tiles against key tiles up to the diagonal, online softmax."""
    T, hs = q.shape
    out = torch.empty_like(q)
    for r0 in range(0, T, tile):
        r1 = min(r0 + tile, T)
        m, s = torch.full((r1 - r0,), -math.inf), torch.zeros(r1 - r0)
        acc = torch.zeros(r1 - r0, hs)  # the weighted sum of values, not yet divided by s
        for c0 in range(0, r1, tile):
            c1 = min(c0 + tile, T)
            block = q[r0:r1] @ k[c0:c1].T / math.sqrt(hs)  # (rows, cols): the only scores that exist
            future = torch.arange(c0, c1)[None, :] > torch.arange(r0, r1)[:, None]
            block = block.masked_fill(future, -math.inf)
            new_m = torch.maximum(m, block.amax(dim=-1))
            weights = torch.exp(block - new_m[:, None])
            correction = torch.exp(m - new_m)
            s = s * correction + weights.sum(dim=-1)
            acc = acc * correction[:, None] + weights @ v[c0:c1]
            m = new_m
        out[r0:r1] = acc / s[:, None]
    return out


q_head, k_head, v_head = (torch.randn(200, 16) for _ in "qkv")
tiled = tiled_attention(q_head, k_head, v_head, tile=32)
sdpa = F.scaled_dot_product_attention(q_head[None], k_head[None], v_head[None], is_causal=True)[0]
package, _ = streaming_forward(q_head[None, None, None], k_head[None, None, None], v_head[None, None, None], tile=32)
assert torch.allclose(tiled, sdpa, atol=1e-5) and torch.allclose(tiled, package[0, 0, 0], atol=1e-5)
print(f"tiled attention equals scaled_dot_product_attention: largest difference {(tiled - sdpa).abs().max():.1e}")

# %% [markdown]
# The backward pass needs the probabilities P = exp(S − lse), with S = QKᵀ / √hs the scaled, masked scores. The forward
# pass keeps each row's log-sum-exp, lse = m + ln s, so the backward pass can **recompute** each tile of P. With O the
# output and dO its gradient:
#
# dV = Pᵀ dO, dS = P ∘ (dO Vᵀ − rowsum(dO ∘ O)), dQ = dS K / √hs, dK = dSᵀ Q / √hs.
#
# `tinylm.model.streaming_attention` does this as a `torch.autograd.Function`, also for grouped-query heads (notebook
# 8a: several query heads share one key/value head), with no copy. Against PyTorch, 4 query heads sharing 2 key/value
# heads:

# %%
q4 = torch.randn(2, 4, 100, 16, dtype=torch.float64, requires_grad=True)  # (batch, heads, T, hs)
k2, v2 = (torch.randn(2, 2, 100, 16, dtype=torch.float64, requires_grad=True) for _ in "kv")  # 2 key/value heads
grad_out = torch.randn(2, 4, 100, 16, dtype=torch.float64)
gradients = []
for attention in (lambda: streaming_attention(q4, k2, v2, tile=32),
                  lambda: F.scaled_dot_product_attention(q4, k2.repeat_interleave(2, dim=1),
                                                         v2.repeat_interleave(2, dim=1), is_causal=True)):
    q4.grad = k2.grad = v2.grad = None
    attention().backward(grad_out)
    gradients.append([q4.grad.clone(), k2.grad.clone(), v2.grad.clone()])
gap = max((a - b).abs().max().item() for a, b in zip(*gradients))
assert gap < 1e-10
print(f"dq, dk, dv equal PyTorch's: largest difference {gap:.1e} (float64)")

# %% [markdown]
# Memory as the context grows (forward and backward, 4 heads of 16):

# %%
def attention_memory(attention, context: int) -> int:
    """Peak bytes a forward and backward pass allocates beyond q, k, v and the output's gradient."""
    q, k, v = (torch.randn(1, 4, context, 16, requires_grad=True) for _ in "qkv")
    grad_out = torch.randn(1, 4, context, 16)
    return measured_peak(lambda: attention(q, k, v).backward(grad_out), 0, torch.device("cpu"))


def written_out(q, k, v):
    """Notebook 2a's attention: the (T, T) scores, mask and softmax, kept for backward."""
    T = q.size(-2)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(
        torch.ones(T, T, dtype=torch.bool).triu(1), -math.inf)
    return torch.softmax(scores, dim=-1) @ v


CONTEXTS = [128, 256, 512] if PROFILE == "smoke" else [256, 512, 1024, 2048]
ways = {"written out": written_out, "streaming (tiles of 64)": lambda q, k, v: streaming_attention(q, k, v, 64),
        "PyTorch's fused kernel": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)}
memory = {name: [attention_memory(way, T) for T in CONTEXTS] for name, way in ways.items()}
for name, values in memory.items():
    growth = " ".join(f"{b / a:.1f}x" for a, b in zip(values, values[1:]))
    print(f"{name:24} " + " ".join(f"{value / 1e6:7.2f}" for value in values) + f" MB; per doubling: {growth}; "
          f"{values[-1] / values[0]:.1f}x over {CONTEXTS[-1] // CONTEXTS[0]}x the context")
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, values in memory.items():
    ax.loglog(CONTEXTS, [value / 1e6 for value in values], marker="o", label=name, base=2)
ax.set_xlabel("context T (tokens)")
ax.set_ylabel("peak MB, forward + backward")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Per doubling of the context, written-out memory grows about 4x (quadratic), streaming memory by less than 2,
# approaching 2 as its per-position tensors double and its tile buffers do not (linear). PyTorch's fused CPU kernel
# grows unevenly but stays far below the written-out one.
#
# **Why the fused kernel is fast.** An H100 SXM does 989.5 dense bf16 TFLOP/s but moves only 3.35 TB/s from HBM, its
# main memory, so a kernel doing fewer than about 295 FLOPs per byte waits on memory. With a head size of 64, a (query,
# key) pair costs 4 · 64 = 256 FLOPs, its score and its share of the weighted sum. Written out, the scores and then the
# probabilities go to HBM and back, at least 8 bytes per pair in bf16. Fused, a tile of 128 queries reads each key and
# value (2 · 64 · 2 bytes) once into on-chip SRAM, small and far faster than HBM: 2 bytes per pair.

# %%
H100_BF16_FLOPS, H100_HBM_BYTES_PER_S = 989.5e12, 3.35e12  # NVIDIA's H100 SXM datasheet (notebooks/SOURCES.md)
HEAD_SIZE, QUERY_TILE = 64, 128
flops_per_pair = 4 * HEAD_SIZE
written_bytes = 2 * 2 * 2  # scores then probabilities, each written and read once, 2 bytes each
fused_bytes = 2 * HEAD_SIZE * 2 / QUERY_TILE  # a key and a value (bf16) per query tile
balance = H100_BF16_FLOPS / H100_HBM_BYTES_PER_S
print(f"the H100 needs {balance:.0f} FLOPs per byte moved to keep its tensor cores busy; a (query, key) pair is "
      f"{flops_per_pair} FLOPs")
print(f"written out: {flops_per_pair / written_bytes:.0f} FLOPs per byte; fused: {flops_per_pair / fused_bytes:.0f}, "
      f"so at most {flops_per_pair / fused_bytes / balance:.0%} of the peak by this count")

# %% [markdown]
# Both fall short by this count, which ignores caches (K and V tiles often stay in the GPU's on-chip L2 cache). The
# fused kernel moves a quarter of the bytes, launches once instead of once per operation, and stores no (T, T)
# matrix. On an A100, whose balance point is lower, FlashAttention-2 reaches 50 to 73% of the peak (Dao 2023). Our
# PyTorch loops show only the memory side, launching kernels per tile.
#
# ## Sharding the state: ZeRO-1
#
# Under DDP (notebook 6a) every rank keeps all of AdamW's moments, 8 bytes per parameter, and makes the same update.
# ZeRO stage 1 cuts the parameters, as one flat vector, into N shards, and rank r keeps only shard r's moments. A step
# **reduce-scatters** the gradients, giving rank r shard r's average, updates that shard, and **all-gathers** the
# updated shards. In the usual ring algorithm (each rank passes chunks of 1/N to the next), for Ψ bytes of gradients or
# weights:
#
# | collective | rank r ends with | each rank sends |
# |---|---|---|
# | reduce-scatter | shard r, reduced over the ranks | (N − 1)/N · Ψ |
# | all-gather | every shard | (N − 1)/N · Ψ |
# | all-reduce (DDP's) | the whole reduction | 2(N − 1)/N · Ψ: a reduce-scatter, then an all-gather |
#
# So ZeRO-1's traffic is DDP's, and the moments take 1/N of the memory. One process playing N ranks checks that AdamW on
# shards equals AdamW on the whole:

# %%
def adamw_on_shards(weights, rank_grads, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.95), eps=1e-8):
    """One AdamW step (no weight decay) of N simulated ranks, each owning a slice of the flat weights."""
    n = len(rank_grads)
    size = math.ceil(weights.numel() / n)
    shards = []
    for r in range(n):
        mine = slice(r * size, (r + 1) * size)
        grad = sum(g[mine] for g in rank_grads) / n  # reduce-scatter: the average of this rank's slice only
        exp_avg[mine] = betas[0] * exp_avg[mine] + (1 - betas[0]) * grad  # this rank's moments, for its slice
        exp_avg_sq[mine] = betas[1] * exp_avg_sq[mine] + (1 - betas[1]) * grad ** 2
        m_hat, v_hat = exp_avg[mine] / (1 - betas[0] ** step), exp_avg_sq[mine] / (1 - betas[1] ** step)
        shards.append(weights[mine] - lr * m_hat / (v_hat.sqrt() + eps))
    return torch.cat(shards)  # all-gather: every rank's updated slice, end to end


flat = torch.randn(1000)
reference = flat.clone().requires_grad_()
adamw = torch.optim.AdamW([reference], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
exp_avg, exp_avg_sq = torch.zeros(1000), torch.zeros(1000)
for step in range(1, 4):
    rank_grads = [torch.randn(1000) for _ in range(4)]
    flat = adamw_on_shards(flat, rank_grads, exp_avg, exp_avg_sq, step)
    reference.grad = sum(rank_grads) / 4
    adamw.step()
assert torch.allclose(flat, reference.detach(), atol=1e-6)
print(f"4 simulated ranks, 3 steps: AdamW on shards equals AdamW on the whole "
      f"(largest difference {(flat - reference.detach()).abs().max():.1e})")

# %% [markdown]
# `tinylm.train.zero.ZeroAdamW` does the same with real collectives (`dist.reduce_scatter_single`,
# `dist.all_gather_single`; an older torch names them `reduce_scatter_tensor`, `all_gather_into_tensor`), GPT-2's
# weight-decay split and gradient clipping over the whole model. In a world of one it is plain AdamW:

# %%
torch.manual_seed(0)
plain, sharded = tinylm.GPT(config), tinylm.GPT(config)
sharded.load_state_dict(plain.state_dict())
adamw = torch.optim.AdamW([{"params": [p for p in plain.parameters() if p.dim() >= 2], "weight_decay": 0.1},
                           {"params": [p for p in plain.parameters() if p.dim() < 2], "weight_decay": 0.0}],
                          lr=1e-3, betas=(0.9, 0.95))
zero = ZeroAdamW(sharded, lr=1e-3, weight_decay=0.1, grad_clip=None)
ids, targets = (torch.randint(config.vocab_size, (4, config.block_size)) for _ in range(2))
for _ in range(3):
    for model_, optimizer in ((plain, adamw), (sharded, zero)):
        model_(ids, targets)[1].backward()
        optimizer.step()
        optimizer.zero_grad()
gap = max((a - b).abs().max().item() for a, b in zip(plain.parameters(), sharded.parameters()))
assert gap < 1e-6
print(f"ZeroAdamW in a world of one equals torch.optim.AdamW after 3 steps: largest weight difference {gap:.1e}")

# %% [markdown]
# ## FSDP: sharding everything
#
# FSDP (fully sharded data parallelism, ZeRO's stage 3) shards the weights and gradients too. The ranks **all-gather** a
# block's weight shards before its forward, free them after, gather them again for the backward, and **reduce-scatter**
# its gradients. Each rank holds about 1/N of the state, for 1.5 times DDP's traffic (two all-gathers and a
# reduce-scatter, 3(N − 1)/N · Ψ). On a GPU the next block's gather overlaps the current block's compute.
#
# `python -m tinylm.bench sharding` trains one model from the same weights in 2 processes with DDP, ZeRO-1 and PyTorch's
# FSDP2 (`tinylm/train/sharded.py`):

# %%
env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, even beside a GPU
shape = ["--preset", "nanogpt-cpu", "--n-layer", "1"] if PROFILE == "smoke" else \
    ["--preset", "tinystories-cpu", "--batch-size", "8"]
command = [sys.executable, "-m", "tinylm.bench", "sharding", *shape, "--rounds", str(ROUNDS), "--device", "cpu"]
started = time.perf_counter()
result = subprocess.run(command, env=env, capture_output=True, text=True)
assert result.returncode == 0, result.stderr[-3000:]
print(result.stdout.strip())
print(f"({time.perf_counter() - started:.0f} s, torchrun's own warnings on stderr not shown)")

# %% [markdown]
# The three compute the same losses. At rest rank 0 holds half of AdamW's moments under ZeRO-1, plus a one-byte
# weight-decay mask for its half, and half of everything under FSDP2. During a step each holds more: gathered units
# under FSDP2, gradient buckets under DDP, a flat gradient under ZeRO-1. By the times (± is half the range over rounds), on
# two CPU cores a model this small gains nothing from sharding; it pays off when the state does not fit one device.
#
# `tinylm.train --fsdp` uses the same engine. DDP against `--fsdp`, 2 processes each, on the character track's `smoke`
# shape (2 layers):

# %%
STEPS = 20 if PROFILE == "smoke" else 200
WAYS = ("fsdp",) if PROFILE == "smoke" else ("ddp", "fsdp")  # smoke (CI) only checks that --fsdp trains and saves
runs = {}
for way in WAYS:
    out = tinylm.paths.runs_dir() / f"notebook-06c-{way}-{PROFILE}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", str(out), "--overwrite",
               "--max-steps", str(STEPS), "--device", "cpu", "--set", "eval_interval=0"]
    started = time.perf_counter()
    result = subprocess.run(command + (["--fsdp"] if way == "fsdp" else []), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    runs[way] = {"losses": {r["step"]: r["loss"] for r in records if r["event"] == "train"},
                 "final": records[-1], "seconds": time.perf_counter() - started, "out": out}
    print(f"{way:4}: {len(runs[way]['losses'])} train records, final validation loss "
          f"{runs[way]['final']['val_loss']:.4f}, {runs[way]['final']['elapsed']:.1f} s of training "
          f"({runs[way]['seconds']:.0f} s in all)")
if "ddp" in runs:
    gap = max(abs(runs["ddp"]["losses"][s] - runs["fsdp"]["losses"][s]) / runs["ddp"]["losses"][s]
              for s in runs["ddp"]["losses"])
    print(f"largest relative difference of the logged training losses: {gap:.1e}")
    assert gap < 1e-4
checkpoint = load_checkpoint(runs["fsdp"]["out"] / "last.pt")
print(f"the sharded run's last.pt: {len(checkpoint['model'])} whole tensors, e.g. "
      f"transformer.wte.weight {tuple(checkpoint['model']['transformer.wte.weight'].shape)}")

# %% [markdown]
# The sharded run trains what DDP trains, to float32 rounding. It took 5.1 s against DDP's 1.7 s, one run each, which
# alone gives no verdict by the course's rule; the interleaved rounds above, on the larger shape, told DDP faster. Rank 0
# saves whole tensors, as in every run, so `tinylm.sample`, `eval` and `interop export` read the checkpoint, and it
# resumes on any number of processes, sharded or not. On GPUs `--fsdp` also gathers weights in bf16 and reduces
# gradients in fp32.
#
# **Which to use.** DDP, the simplest, with the least traffic, while the state and a micro-batch's activations fit one
# device. Beyond that: checkpointing when activations do not fit, ZeRO-1 (at DDP's traffic) when AdamW's moments tip it
# over, FSDP when the state itself does not fit. At 16 bytes per parameter in fp32 a 7B model needs 112 GB before any
# activation. [The guide's "Scaling out"](README.md#scaling-out-one-gpu-eight-several-nodes) has the commands.
#
# ## What you learned
#
# - A step holds 16 bytes per parameter, plus per token each block's saved tensors and the loss's vocabulary-sized ones;
#   the account matches the profiler.
# - Checkpointing keeps only the blocks' inputs and reruns their forward pass.
# - With the online softmax, tiled attention needs memory linear in the context, and its backward recomputes the
#   probabilities from one log-sum-exp per row; a fused kernel wins by moving fewer bytes.
# - ZeRO-1 shards AdamW's moments at DDP's traffic, FSDP everything at 1.5 times it; both train what DDP trains.

# %% [markdown]
# ## Exercises
#
# Complete each function (replace `raise NotImplementedError`), then run the check below it.
#
# **1. Bytes per rank.** Return the bytes one rank holds for the weights, gradients and AdamW moments of
# `n_params` fp32 parameters trained by `way` ("ddp", "zero1" or "fsdp") over `ranks` processes, ignoring padding.

# %%
from tinylm.course.exercises import check


def state_bytes_per_rank(n_params: int, ranks: int, way: str) -> float:
    raise NotImplementedError


def test_state_bytes_per_rank():
    assert state_bytes_per_rank(1000, 1, "ddp") == state_bytes_per_rank(1000, 1, "fsdp") == 16_000
    assert state_bytes_per_rank(1000, 8, "ddp") == 16_000, "DDP keeps everything on every rank"
    assert state_bytes_per_rank(1000, 8, "zero1") == 8_000 + 1_000, "weights and gradients whole, moments / 8"
    assert state_bytes_per_rank(1000, 8, "fsdp") == 2_000
    assert state_bytes_per_rank(big_P, 8, "fsdp") * 8 == state_bytes_per_rank(big_P, 1, "ddp")


check(test_state_bytes_per_rank)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def state_bytes_per_rank(n_params, ranks, way):
#     weights, gradients, moments = 4 * n_params, 4 * n_params, 8 * n_params
#     if way == "ddp":
#         return weights + gradients + moments
#     if way == "zero1":
#         return weights + gradients + moments / ranks
#     return (weights + gradients + moments) / ranks
# ```
# </details>
#
# **2. An experiment: when does checkpointing pay?** Checkpointing saved only part of this notebook's peak because
# the loss's tensors dominate it. Predict first: with a vocabulary of 512 instead of 6,912 (same blocks, same
# batch), will checkpointing save a larger or a smaller share of the measured peak, and roughly how much? Then
# measure it with `compare_checkpointing` (as above, with `dataclasses.replace(config, vocab_size=512)`) and set
# `small_vocab_race` to its result.

# %%
small_vocab_race = None  # replace with compare_checkpointing's result for a vocabulary of 512
print(f"exercise 2 trains for about {race_seconds:,.0f} s here (at most as long as the race above)")


def test_checkpointing_saves_more_where_the_blocks_dominate():
    if small_vocab_race is None:
        raise NotImplementedError("run compare_checkpointing with vocab_size=512, then set small_vocab_race")
    measured = small_vocab_race["measured"]
    small_share = 1 - measured["checkpointed"] / measured["plain"]
    assert measured["plain"] < race["measured"]["plain"] * 0.8, "a vocabulary of 512: a smaller peak"
    assert small_share > saved_share + 0.2, f"saved {small_share:.0%} against {saved_share:.0%} with 6,912 tokens"
    print(f"checkpointing saves {small_share:.0%} of the peak with a vocabulary of 512, {saved_share:.0%} with 6,912")


check(test_checkpointing_saves_more_where_the_blocks_dominate)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# import dataclasses
# small_vocab_race = compare_checkpointing(dataclasses.replace(config, vocab_size=512), BATCH, rounds=3,
#                                          device="cpu", dtype="float32")
# ```
#
# With 512 tokens instead of 6,912 the loss's tensors shrink in proportion and the blocks' activations become most
# of the peak, so checkpointing removes most of it. Its time costs the same extra forward pass of the blocks, but
# that is now a larger share of a step, since the blocks do most of the forward pass: compare `cost` too.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
