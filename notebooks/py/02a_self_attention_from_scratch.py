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
# # 02a · Self-attention from scratch
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/02a_self_attention_from_scratch.ipynb)
#
# Notebook 1's bigram sees one character; self-attention lets each position gather from all before it. You build it,
# asserting each piece against `tinylm`'s; notebook 2b builds a GPT around it.
#
# **What you will learn**
#
# - the averaging trick, three equal ways;
# - queries, keys, the 1/√head_size scaling (exercise 2 measures why) and the causal mask;
# - many heads, batched as real implementations do.
#
# **How long it takes**: a lesson of about 43 minutes (reading, code and the `cpu` run's 1 s, by the course's
# formula), then a second sitting of about 30 minutes for the 2 exercises (10 minutes per function, 20 per
# experiment).
#
# | profile | what it runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; 2,000 dot products per head size | the last cell prints it |
# | `cpu` (2-core laptop) | every check; 20,000 dot products per head size | the last cell prints it |
# | `gpu` | the same as `cpu` (everything here runs on the CPU) | not measured |
#
# **Papers**: the transformer ([Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)). Built as in Karpathy's
# [nanoGPT](https://github.com/karpathy/nanoGPT) and [*Let's build GPT*](https://www.youtube.com/watch?v=kCc8FmEb1nY).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %% [markdown]
# ## Setup
#
# Only section 3's number of dot products depends on the profile. On a busy machine the setup prints a note: PyTorch
# gets only the cores other processes leave free, which changes the speed, not the results.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import tinylm
import tinylm.course.plotting
from tinylm.course.diagrams import draw_causal_mask
from tinylm.model.attention import CausalSelfAttention, explicit_causal_attention

NOTEBOOK_STARTED = time.perf_counter()  # the last cell prints how long the whole notebook took
PROFILE = tinylm.set_up_notebook("cpu").profile  # the profile; everything here runs on the CPU
VARIANCE_SAMPLES = {"smoke": 2_000, "cpu": 20_000, "gpu": 20_000}[PROFILE]  # dot products per head size
torch.set_printoptions(precision=3, sci_mode=False)
tinylm.course.plotting.use_projector_style()  # fonts readable on a projector
print(f"profile={PROFILE}  variance_samples={VARIANCE_SAMPLES}")

# %% [markdown]
# ## 1. The averaging trick
#
# Take `B` sequences of `T` positions of `C` channels. The simplest way for position `t` to use its past: average
# positions `0..t`, none later, as `t` predicts token `t+1`. Version 1, a loop:

# %%
torch.manual_seed(1337)
B, T, C = 4, 8, 2
x = torch.randn(B, T, C)

xbow = torch.zeros(B, T, C)  # "bag of words": the mean of everything so far
for b in range(B):
    for t in range(T):
        xbow[b, t] = x[b, : t + 1].mean(dim=0)  # (t+1, C) -> (C,)

# %% [markdown]
# Version 2, one matrix multiply, which hardware does fast: row `t` of a lower-triangular `wei` holds 1/(t+1) on
# columns `0..t`, so `wei @ x` is the running mean.

# %%
# NBVAL_CHECK_OUTPUT
wei = torch.tril(torch.ones(T, T))
wei = wei / wei.sum(dim=1, keepdim=True)  # row t: 1/(t+1) on columns 0..t, then zeros
print(wei)

# %%
xbow2 = wei @ x  # (T, T) @ (B, T, C) -> (B, T, C): the (T, T) matrix is broadcast over the batch
assert torch.allclose(xbow, xbow2, atol=1e-6)  # equal up to float rounding
print("loop == matrix multiply")

# %% [markdown]
# Version 3: *scores*, the future set to −∞, a softmax per row; e^−∞ = 0 removes the future, and equal scores give
# equal weights. Scores computed from the data let each position choose what to take from its past: attention.

# %%
tril = torch.tril(torch.ones(T, T, dtype=torch.bool))
scores = torch.zeros(T, T)  # every past position equally interesting, for now
scores = scores.masked_fill(~tril, float("-inf"))  # (T, T): the future gets -inf
wei3 = F.softmax(scores, dim=-1)  # each row: non-negative, sums to 1
xbow3 = wei3 @ x  # (B, T, C)
assert torch.allclose(wei3, wei) and torch.allclose(xbow, xbow3, atol=1e-6)
print("loop == matrix multiply == masked softmax")

# %% [markdown]
# ## 2. Scores from queries and keys
#
# Each position emits three learned linear maps of its own `x`: a **query** (what am I looking for?), a **key** (what
# do I contain?), a **value** (what do I pass on?). The score `q_t · k_s` is large when what `t` seeks matches what
# `s` offers; `q @ kᵀ` scores all pairs. "Self": all three come from `x`.

# %%
torch.manual_seed(1337)
B, T, C = 4, 8, 32
head_size = 16
x = torch.randn(B, T, C)
query = nn.Linear(C, head_size, bias=False)
key = nn.Linear(C, head_size, bias=False)
value = nn.Linear(C, head_size, bias=False)

q, k, v = query(x), key(x), value(x)  # (B, T, hs) each
scores = q @ k.transpose(-2, -1)  # (B, T, hs) @ (B, hs, T) -> (B, T, T)

# %%
# NBVAL_CHECK_OUTPUT
print("q:", tuple(q.shape), " k:", tuple(k.shape), " scores:", tuple(scores.shape))

# %% [markdown]
# ## 3. Scaling by 1/√head_size
#
# With independent zero-mean, unit-variance components, `q · k` sums `head_size` unit-variance products, so its
# variance is `head_size`. Large scores *saturate* the softmax: the largest takes most of the weight, and little
# gradient reaches the rest. Dividing by √head_size restores variance 1.
#
# **Predict, then run.** At head size 64, what variance of `q · k` do you expect before scaling, and after?

# %%
for hs in (4, 16, 64, 256):
    qd, kd = torch.randn(VARIANCE_SAMPLES, hs), torch.randn(VARIANCE_SAMPLES, hs)
    dots = (qd * kd).sum(dim=-1)  # (N,): one dot product per row
    print(f"head_size {hs:3d}:  var(q·k) = {dots.var():6.1f}   var(q·k / sqrt(head_size)) = {(dots / math.sqrt(hs)).var():.2f}")

# %% [markdown]
# Saturation: five scores, then the same times 8 = √64, the scores' standard deviation in an unscaled head of size 64.

# %%
# NBVAL_CHECK_OUTPUT
s = torch.tensor([0.1, -0.2, 0.3, -0.2, 0.5])
print("softmax(s)     =", F.softmax(s, dim=-1))
print("softmax(8 * s) =", F.softmax(8 * s, dim=-1))

# %%
scores = q @ k.transpose(-2, -1) / math.sqrt(head_size)  # (B, T, T): scaled, the variance no longer grows with head_size

# %% [markdown]
# ## 4. The causal mask, the softmax, the values
#
# Row `t` of the scores is query `t` against every key `s` (the figure labels a cell `q·k` for short: it holds
# `q·k / √head_size`); the future, above the diagonal (`s > t`), is set to −∞ before the softmax.

# %%
draw_causal_mask(6)  # tinylm/course/diagrams.py: a small T, so that every cell can be labelled
plt.show()

# %% [markdown]
# Mask, softmax each row, and average the *values* (not `x`: the value map lets a position choose what it communicates).

# %%
tril = torch.ones(T, T, dtype=torch.bool).tril()
scores = scores.masked_fill(~tril, float("-inf"))  # (B, T, T)
wei = F.softmax(scores, dim=-1)  # (B, T, T): row t is a distribution over positions 0..t
out = wei @ v  # (B, T, T) @ (B, T, hs) -> (B, T, hs)

# %% [markdown]
# Self-check: rows sum to 1, the future gets zero weight, and the output equals tinylm's `explicit_causal_attention`
# and PyTorch's fused `F.scaled_dot_product_attention`, which expect `(B, n_head, T, hs)`: `q[:, None]` adds a head
# axis.

# %%
assert torch.allclose(wei.sum(dim=-1), torch.ones(B, T))
assert (wei.triu(diagonal=1) == 0).all()  # strictly upper triangle: the future
ref_out, ref_wei = explicit_causal_attention(q[:, None], k[:, None], v[:, None], return_weights=True)  # (B, 1, T, hs), (B, 1, T, T)
assert torch.allclose(out, ref_out[:, 0], atol=1e-6) and torch.allclose(wei, ref_wei[:, 0], atol=1e-6)
sdpa_out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], is_causal=True)  # (B, 1, T, hs)
assert torch.allclose(out, sdpa_out[:, 0], atol=1e-6)
print("your head == explicit_causal_attention == F.scaled_dot_product_attention")

# %% [markdown]
# Attention is communication over a directed graph: position `t` receives from `0..t`, and sequences of the
# batch never talk.

# %% [markdown]
# ## 5. One head as a module
#
# The `tril` mask is a buffer, moved with the module but not a parameter; `persistent=False` keeps it out of the
# `state_dict`, the module's every parameter and persistent buffer by name, which `load_state_dict` copies in.

# %%
class Head(nn.Module):
    """One head of causal self-attention: (B, T, C) -> (B, T, head_size)."""

    def __init__(self, n_embd: int, head_size: int, block_size: int, bias: bool = True):
        super().__init__()
        self.query = nn.Linear(n_embd, head_size, bias=bias)
        self.key = nn.Linear(n_embd, head_size, bias=bias)
        self.value = nn.Linear(n_embd, head_size, bias=bias)
        self.register_buffer("tril", torch.ones(block_size, block_size, dtype=torch.bool).tril(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.query(x), self.key(x), self.value(x)  # (B, T, hs) each
        scores = q @ k.transpose(-2, -1) / math.sqrt(k.size(-1))  # (B, T, T)
        scores = scores.masked_fill(~self.tril[:T, :T], float("-inf"))
        wei = F.softmax(scores, dim=-1)  # (B, T, T)
        return wei @ v  # (B, T, hs)


head = Head(C, head_size, block_size=T, bias=False)
head.load_state_dict({"query.weight": query.weight, "key.weight": key.weight, "value.weight": value.weight})
assert torch.allclose(head(x), out, atol=1e-6)
print("Head module == the step-by-step computation")

# %% [markdown]
# ## 6. Many heads
#
# Heads in parallel can look for different things (the previous character, the last space); a linear map `proj` mixes
# their concatenated outputs (`nn.ModuleList` holds the heads, so their weights are the module's parameters). `n_head`
# heads of size `C / n_head` do one size-`C` head's matrix-multiply work, but softmax `n_head` times as many scores.

# %%
class MultiHeadAttention(nn.Module):
    """n_head Heads side by side, concatenated, then mixed: (B, T, C) -> (B, T, C)."""

    def __init__(self, n_embd: int, n_head: int, block_size: int, bias: bool = True):
        super().__init__()
        head_size = n_embd // n_head
        self.heads = nn.ModuleList([Head(n_embd, head_size, block_size, bias) for _ in range(n_head)])
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([h(x) for h in self.heads], dim=-1)  # n_head x (B, T, hs) -> (B, T, C)
        return self.proj(out)


# %% [markdown]
# tinylm's `CausalSelfAttention` stores these weights differently: one `c_attn` Linear makes all q, k, v (`3C`
# outputs: queries, keys, values), head `h` owning features `h·hs … (h+1)·hs − 1` of each; `c_proj` is our `proj`.
# Copied over, both its attention paths must agree (`.eval()`: inference mode, which turns dropout off; notebook 3b).

# %%
cfg = tinylm.GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=4, n_embd=32)
C, hs = cfg.n_embd, cfg.head_size
torch.manual_seed(1337)
x = torch.randn(2, cfg.block_size, C)  # (B, T, C)
ref_flash = CausalSelfAttention(cfg).eval()
ref_explicit = CausalSelfAttention(tinylm.GPTConfig(**{**cfg.to_dict(), "attention": "explicit"})).eval()
ref_explicit.load_state_dict(ref_flash.state_dict())

mha = MultiHeadAttention(C, cfg.n_head, cfg.block_size).eval()
W = ref_flash.c_attn.weight.view(3, cfg.n_head, hs, C)  # (3C, C) rows: [q | k | v], each [head 0 | head 1 | ...]
b = ref_flash.c_attn.bias.view(3, cfg.n_head, hs)
with torch.no_grad():
    for h, head in enumerate(mha.heads):
        for i, layer in enumerate((head.query, head.key, head.value)):
            layer.weight.copy_(W[i, h])  # (hs, C): the features of head h
            layer.bias.copy_(b[i, h])
    mha.proj.load_state_dict(ref_flash.c_proj.state_dict())
    assert torch.allclose(mha(x), ref_explicit(x), atol=1e-6)
    assert torch.allclose(mha(x), ref_flash(x), atol=1e-6)
print("MultiHeadAttention == tinylm CausalSelfAttention (explicit and flash paths)")

# %% [markdown]
# ### All heads at once
#
# The batched form makes heads a batch dimension: one Linear for all q, k, v, a reshape to `(B, n_head, T, hs)`, one
# batched attention, a reshape back (`.contiguous()`: `view` needs the transposed tensor laid out in memory afresh);
# one launch, one call into the GPU, per operation, not per head. Its parameter names match tinylm's, so a
# `state_dict` loads directly. tinylm's default path calls `F.scaled_dot_product_attention`, whose fused kernels
# (FlashAttention on recent GPUs) never store the `(T, T)` scores. Dropout, zero here, is notebook 3b's subject.

# %%
class CausalSelfAttentionFromScratch(nn.Module):
    def __init__(self, config: tinylm.GPTConfig):
        super().__init__()
        self.n_head, self.dropout = config.n_head, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v of all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # mixes the heads
        self.resid_dropout = nn.Dropout(config.dropout)
        tril = torch.ones(config.block_size, config.block_size, dtype=torch.bool).tril()
        self.register_buffer("tril", tril, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, T, C) -> (B, T, nh, hs) -> (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        scores = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, hs) @ (B, nh, hs, T) -> (B, nh, T, T)
        scores = scores.masked_fill(~self.tril[:T, :T], float("-inf"))
        wei = F.softmax(scores, dim=-1)  # (B, nh, T, T)
        wei = F.dropout(wei, p=self.dropout, training=self.training)
        y = wei @ v  # (B, nh, T, T) @ (B, nh, T, hs) -> (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, nh, T, hs) -> (B, T, nh, hs) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))


attn = CausalSelfAttentionFromScratch(cfg).eval()
attn.load_state_dict(ref_flash.state_dict())  # strict: every key must match
with torch.no_grad():
    assert torch.allclose(attn(x), ref_flash(x), atol=1e-6) and torch.allclose(attn(x), mha(x), atol=1e-6)
print("batched heads == list of heads == tinylm CausalSelfAttention")

# %% [markdown]
# ## What you learned
#
# - Attention is a data-dependent average of the past: scores `q · k / √head_size`, the future masked to −∞, a
#   softmax per row, a weighted sum of values.
# - Batched heads compute what tinylm's `CausalSelfAttention` does; notebook 2b uses tinylm's.
#
# ## Exercises
#
# Complete each function, replacing `raise NotImplementedError`, then run the cell after it.
#
# ### Exercise 1: sliding-window attention
#
# Some long-context models ([Mistral 7B](https://arxiv.org/abs/2310.06825), and the autoregressive variant of
# [Longformer](https://arxiv.org/abs/2004.05150)) let each position see only the last `window` positions,
# itself included: `t − window < s ≤ t`. Return the attention output `(..., T, hs)` for `q, k, v` of shape
# `(..., T, hs)`: scaled scores, the mask, a softmax over the last dimension, the weighted values. Only the mask
# differs from section 4's.

# %%
from tinylm.course.exercises import check


def local_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    raise NotImplementedError


# %%
def test_local_causal_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 2, 3, 7, 4, generator=g).unbind(0)  # (B=2, nh=3, T=7, hs=4) each
    full = explicit_causal_attention(q, k, v)
    assert torch.allclose(local_causal_attention(q, k, v, window=7), full, atol=1e-6), "window >= T is plain causal attention"
    assert torch.allclose(local_causal_attention(q, k, v, window=100), full, atol=1e-6), "window >= T is plain causal attention"
    assert torch.allclose(local_causal_attention(q, k, v, window=1), v, atol=1e-6), "window 1: each position sees only itself"
    out = local_causal_attention(q, k, v, window=3)
    for t in range(7):  # reference: position t attends to positions max(0, t-2)..t only
        s = slice(max(0, t - 2), t + 1)
        wei = F.softmax(q[..., t : t + 1, :] @ k[..., s, :].transpose(-2, -1) / 2.0, dim=-1)  # sqrt(hs) = 2
        assert torch.allclose(out[..., t, :], (wei @ v[..., s, :])[..., 0, :], atol=1e-6), f"wrong output at position {t}"


check(test_local_causal_attention)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def local_causal_attention(q, k, v, window):
#     T = q.size(-2)
#     t = torch.arange(T, device=q.device)
#     distance = t[:, None] - t[None, :]  # (T, T): t - s
#     visible = (distance >= 0) & (distance < window)
#     scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., T, T)
#     return F.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1) @ v
# ```
# </details>
#
# ### Exercise 2: an experiment — what the 1/√head_size buys
#
# Section 3 measured what the scaling does to the scores; here, what it does to a head's *output*. One query
# reads `T` keys with softmax weights `w` and returns `y = Σ_s w_s v_s`. With values independent of the weights and of each other,
# mean 0 and variance 1, $\mathrm{Var}(y) = E[\sum_s w_s^2]$, and since the weights are non-negative and sum to
# 1, $1/T \le \sum_s w_s^2 \le 1$: the lower bound is uniform weights (the head averages all `T` values), the
# upper one-hot weights (a saturated softmax: the head copies one value).
#
# Write `output_variance`: draw `n` independent queries, each with `T` keys and values (every entry N(0, 1);
# queries and keys of size `head_size`, values of size 1 are enough), compute the attention output with scores
# `q · k`, divided by √head_size when `scaled`, and return the variance of the `n` outputs. The check runs it for
# head sizes 4 to 256 and tests your measurements against the bounds.
# **Predict first**: at head size 256 without the scaling, is a head's output closer to an average of its 16
# values or to a copy of one of them? And with the scaling?

# %%
def output_variance(head_size: int, scaled: bool, T: int = 16, n: int = 4000,
                    generator: torch.Generator | None = None) -> float:
    raise NotImplementedError


# %%
def test_output_variance():
    T, g = 16, torch.Generator().manual_seed(0)
    measured = {hs: (output_variance(hs, True, T, 4000, g), output_variance(hs, False, T, 4000, g))
                for hs in (4, 16, 64, 256)}
    print(f"head size | Var(y) scaled | Var(y) unscaled    (bounds: 1/T = {1 / T:.4f} for an average, 1 for a copy)")
    for hs, (with_scaling, without) in measured.items():
        print(f"{hs:9d} | {with_scaling:13.3f} | {without:15.3f}")
    scaled, unscaled = zip(*measured.values())
    assert all(1 / T <= v <= 1.05 for v in scaled + unscaled), "a variance outside [1/T, 1]: are the weights a softmax?"
    assert max(scaled) < 1.25 * min(scaled), "with the scaling the output's variance should not depend on head_size"
    assert all(a < b for a, b in zip(unscaled, unscaled[1:])), "without it, the softmax should saturate as hs grows"
    assert unscaled[-1] > 0.7 and unscaled[-1] > 4 * scaled[-1], "unscaled at 256 a head nearly copies one value"


check(test_output_variance)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def output_variance(head_size, scaled, T=16, n=4000, generator=None):
#     q = torch.randn(n, 1, head_size, generator=generator)  # one query per draw
#     k = torch.randn(n, T, head_size, generator=generator)
#     v = torch.randn(n, T, 1, generator=generator)
#     scores = q @ k.transpose(-2, -1)  # (n, 1, T)
#     if scaled:
#         scores = scores / math.sqrt(head_size)
#     return (F.softmax(scores, dim=-1) @ v).var().item()  # (n, 1, 1) outputs
# ```
#
# With the scaling the variance stays at one level, near the averaging end, for every head size: an untrained
# head mixes many values, and its gradient reaches all of them. Without it the variance climbs towards the
# copying bound as the head size grows: one key takes nearly all the weight, the others almost no gradient.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
