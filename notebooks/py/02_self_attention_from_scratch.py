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
# # 02 · Self-attention from scratch
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/02_self_attention_from_scratch.ipynb)
#
# The bigram of notebook 01 predicts from one character and stalls at a validation loss of about
# 2.49. To do better, each position must gather information from the positions before it. This
# notebook builds the mechanism that does it, self-attention, one idea at a time, and assembles it
# into a transformer block and then a full GPT. Every piece you write is checked against `tinylm`
# with an `assert`: by the end, your model and `tinylm.GPT` compute the same numbers.
#
# **What you will learn**
#
# - the averaging trick: a loop, a matrix multiply with a lower-triangular matrix, a masked softmax, all equal;
# - attention scores from queries and keys, and why they are scaled by 1/√head_size;
# - the causal mask and the softmax that turn scores into weights over the past;
# - one head, many heads, and the batched form every real implementation uses;
# - the transformer block: residual connections, layer norm, MLP;
# - a full GPT that matches `tinylm.GPT` weight for weight;
# - GPT-2's weight initialisation, and why the projections into the residual stream are scaled down with depth;
# - why residual connections make deep stacks trainable, measured as the gradient that reaches each layer;
# - dropout: what it does, why the survivors are scaled by 1/(1−p), and where the model applies it;
# - a check that the model you wrote can learn.
#
# **How long it takes**: about 90 minutes of study, plus 30 for the exercises.
#
# | profile | what it runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; 30 steps of the overfitting check | ~8 s |
# | `cpu` (2-core laptop) | every check; 300 steps of the overfitting check | 10 s (the committed run, an idle machine) |
# | `gpu` | the same as `cpu` (everything here runs on the CPU) | not measured |
#
# **Papers**: the transformer ([Vaswani et al., 2017, *Attention Is All You Need*](https://arxiv.org/abs/1706.03762)),
# GPT-2 ([Radford et al., 2019, *Language Models are Unsupervised Multitask Learners*](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf)),
# layer normalisation ([Ba et al., 2016](https://arxiv.org/abs/1607.06450)), residual connections
# ([He et al., 2015, *Deep Residual Learning for Image Recognition*](https://arxiv.org/abs/1512.03385)), dropout
# ([Srivastava et al., 2014](https://jmlr.org/papers/v15/srivastava14a.html)). The build order follows Karpathy's
# [nanoGPT](https://github.com/karpathy/nanoGPT) and his lecture
# [*Let's build GPT: from scratch, in code, spelled out*](https://www.youtube.com/watch?v=kCc8FmEb1nY).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %% [markdown]
# ## Setup
#
# Only two sizes depend on the profile here: how many random samples the variance demo draws, and
# how many steps the final "can it learn?" check runs. Everything else is small and fixed.

# %%
import dataclasses
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import tinylm
import tinylm.course.plotting
import tinylm.generate.decode
from tinylm.model.attention import CausalSelfAttention, explicit_causal_attention
from tinylm.model.gpt import Block

PROFILE = tinylm.resolve_profile()
VARIANCE_SAMPLES = {"smoke": 2_000, "cpu": 20_000, "gpu": 20_000}[PROFILE]  # dot products per head size
OVERFIT_STEPS = {"smoke": 30, "cpu": 300, "gpu": 300}[PROFILE]  # optimizer steps on one fixed batch
torch.set_printoptions(precision=3, sci_mode=False)
tinylm.course.plotting.use_projector_style()  # fonts readable on a projector
print(f"profile={PROFILE}  variance_samples={VARIANCE_SAMPLES}  overfit_steps={OVERFIT_STEPS}")

# %% [markdown]
# ## 1. The averaging trick
#
# Take a batch of `B` sequences of `T` positions, each position a vector of `C` channels. The
# simplest way for position `t` to use its past is to average the vectors of positions `0..t`. Only
# the past: when the model generates, the future does not exist yet, and in training position `t`
# predicts token `t+1`, so letting it see `t+1` would be cheating.
#
# Version 1, the obvious loop:

# %%
torch.manual_seed(1337)
B, T, C = 4, 8, 2
x = torch.randn(B, T, C)

xbow = torch.zeros(B, T, C)  # "bag of words": the mean of everything so far
for b in range(B):
    for t in range(T):
        xbow[b, t] = x[b, : t + 1].mean(dim=0)  # (t+1, C) -> (C,)

# %% [markdown]
# Version 2: the same thing as one matrix multiply. Row `t` of a lower-triangular matrix with rows
# normalised to sum to 1 holds the weights 1/(t+1) on columns `0..t` and 0 after, so `wei @ x` is the
# running mean. Matrix multiplies are what hardware is fast at; the loop is not.

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
# Version 3: start from a matrix of *scores*, set the future to −∞, and take a softmax per row.
# e^−∞ = 0 removes the future; equal scores over the past give equal weights. Same result, but now
# the scores can be anything: if they come from the data, each position chooses how much of each
# past position to take. That is attention.

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
# Every position emits three vectors, each a learned linear map of its own `x`:
#
# - a **query**: what am I looking for?
# - a **key**: what do I contain?
# - a **value**: what do I pass on to whoever attends to me?
#
# The score of position `t` for position `s` is the dot product `q_t · k_s`: large when what `t`
# looks for matches what `s` offers. All pairs at once: `q @ kᵀ`, a `(T, T)` matrix per sequence.
# "Self"-attention because queries, keys and values all come from the same `x`.

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
# If the components of `q` and `k` are independent with mean 0 and variance 1, `q · k` is a sum of
# `head_size` products, each of variance 1, so its variance is `head_size`. Scores that grow with the
# head size make the softmax *saturate*: the largest score takes almost all the weight, the
# position attends to a single other one, and the gradient through the other weights all but
# vanishes. Dividing by √head_size brings the variance back to 1 whatever the head size.
#
# **Predict, then run.** The next cell draws random `q` and `k` with unit-variance components and
# measures the variance of `q · k`. For head size 64, what variance do you expect before the scaling,
# and after it?

# %%
for hs in (4, 16, 64, 256):
    qd, kd = torch.randn(VARIANCE_SAMPLES, hs), torch.randn(VARIANCE_SAMPLES, hs)
    dots = (qd * kd).sum(dim=-1)  # (N,): one dot product per row
    print(f"head_size {hs:3d}:  var(q·k) = {dots.var():6.1f}   var(q·k / sqrt(head_size)) = {(dots / math.sqrt(hs)).var():.2f}")

# %% [markdown]
# The variance of `q · k` is the head size (about 64 for 64), and the scaled scores' stays near 1
# whatever the head size. What saturation looks like: the same five scores, then multiplied by 8 (= √64, the growth
# an unscaled head of size 64 would see).

# %%
# NBVAL_CHECK_OUTPUT
s = torch.tensor([0.1, -0.2, 0.3, -0.2, 0.5])
print("softmax(s)     =", F.softmax(s, dim=-1))
print("softmax(8 * s) =", F.softmax(8 * s, dim=-1))

# %%
scores = q @ k.transpose(-2, -1) / math.sqrt(head_size)  # (B, T, T), variance back near that of q and k

# %% [markdown]
# ## 4. The causal mask, the softmax, the values
#
# The scores form a `T × T` matrix: row `t` belongs to the query of position `t`, column `s` to the
# key of position `s`. Everything above the diagonal is the future (`s > t`): it is set to −∞ before
# the softmax, so each row becomes a distribution over the keys `0..t` only.

# %%
SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
n_show = 6  # a small T, so that every cell can be labelled
fig, ax = plt.subplots(figsize=(7.5, 6.5))
for t in range(n_show):  # row: the query's position
    for s in range(n_show):  # column: the key's position
        future = s > t
        ax.add_patch(plt.Rectangle((s, t), 1, 1, facecolor="0.7" if future else "white", edgecolor="black", lw=1))
        label = "−∞" if future else f"q{t}·k{s}".translate(SUBSCRIPT)
        ax.text(s + 0.5, t + 0.5, label, ha="center", va="center", fontsize=13)
ax.set_xlim(0, n_show)
ax.set_ylim(n_show, 0)  # row 0 at the top, as in a matrix
ax.set_xticks([s + 0.5 for s in range(n_show)], [f"k{s}".translate(SUBSCRIPT) for s in range(n_show)])
ax.set_yticks([t + 0.5 for t in range(n_show)], [f"q{t}".translate(SUBSCRIPT) for t in range(n_show)])
ax.xaxis.tick_top()
ax.xaxis.set_label_position("top")
ax.set_xlabel("column = key position s (who is attended to)")
ax.set_ylabel("row = query position t (who is attending)")
ax.set_title("scores after the causal mask: the future (s > t, shaded) is −∞,\nthen a softmax along each row",
             y=-0.16)
ax.set_aspect("equal")
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# Mask the future to −∞, softmax each row into weights, and use them to average the *values*
# (not `x` itself: the value map lets a position choose what it communicates).

# %%
tril = torch.ones(T, T, dtype=torch.bool).tril()
scores = scores.masked_fill(~tril, float("-inf"))  # (B, T, T)
wei = F.softmax(scores, dim=-1)  # (B, T, T): row t is a distribution over positions 0..t
out = wei @ v  # (B, T, T) @ (B, T, hs) -> (B, T, hs)

# %% [markdown]
# Self-check: rows sum to 1, the future gets exactly zero weight, and the output equals both
# `tinylm.model.attention.explicit_causal_attention` (the readable path the model can use) and PyTorch's
# fused `F.scaled_dot_product_attention`. Both expect a head dimension, `(B, n_head, T, hs)`: here
# there is one head, so `q[:, None]` adds it.

# %%
assert torch.allclose(wei.sum(dim=-1), torch.ones(B, T))
assert (wei.triu(diagonal=1) == 0).all()  # strictly upper triangle: the future
ref_out, ref_wei = explicit_causal_attention(q[:, None], k[:, None], v[:, None], return_weights=True)  # (B, 1, T, hs), (B, 1, T, T)
assert torch.allclose(out, ref_out[:, 0], atol=1e-6) and torch.allclose(wei, ref_wei[:, 0], atol=1e-6)
sdpa_out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], is_causal=True)  # (B, 1, T, hs)
assert torch.allclose(out, sdpa_out[:, 0], atol=1e-6)
print("your head == explicit_causal_attention == F.scaled_dot_product_attention")

# %% [markdown]
# The weights of the first sequence, next to the uniform averaging matrix of section 1. Both are
# lower-triangular; attention's rows are no longer flat, because they come from `q · k`. (This head
# is untrained, so the pattern is random; a trained head's pattern reflects the text.)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 5))
for ax, matrix, title in [(axes[0], wei3, "averaging: fixed weights"), (axes[1], wei[0].detach(), "attention: weights from q·k")]:
    im = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("key position s (attended to)")
    ax.set_ylabel("query position t")
fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
plt.show()
plt.close(fig)

# %% [markdown]
# Three remarks before packaging this:
#
# - Attention is communication over a directed graph: position `t` receives from `0..t`. Positions
#   in different sequences of the batch never talk.
# - The computation treats the past as a *set*: nothing in `q · k` knows where a position is. The
#   model adds position embeddings to the input to fix that (section 8).
# - Without the mask (an *encoder*, e.g. BERT) every position sees every other; a GPT is a *decoder*.

# %% [markdown]
# ## 5. One head as a module
#
# The `tril` mask is a buffer: it moves with the module to the GPU but is not a parameter.
# `persistent=False` keeps it out of the `state_dict`, so only learned weights get saved and copied.

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
# One head computes one weighting of the past. Several heads in parallel can look for different
# things (the previous character, the last space, the speaker's name) and their outputs are
# concatenated. With `n_head` heads of size `C / n_head` the cost is that of one head of size `C`.
# A final linear map `proj` mixes what the heads found.

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
# `tinylm`'s `CausalSelfAttention` holds the same weights differently: one `c_attn` Linear makes q, k
# and v for all heads at once (`3C` outputs: first the C query features, then keys, then values),
# and head `h` owns features `h·hs … (h+1)·hs − 1` within each. `c_proj` is our `proj`. Copy the
# weights over and the outputs must agree, for both of tinylm's attention paths.

# %%
cfg = tinylm.GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=4, n_embd=32)
C, hs = cfg.n_embd, cfg.head_size
torch.manual_seed(1337)
x = torch.randn(2, cfg.block_size, C)  # (B, T, C)
ref_flash = CausalSelfAttention(cfg).eval()
ref_explicit = CausalSelfAttention(tinylm.GPTConfig(**{**cfg.to_dict(), "attention": "explicit"})).eval()
ref_explicit.load_state_dict(ref_flash.state_dict())

mha = MultiHeadAttention(C, cfg.n_head, cfg.block_size).eval()
Wq, Wk, Wv = ref_flash.c_attn.weight.split(C, dim=0)  # (3C, C) -> 3 x (C, C); rows are output features
bq, bk, bv = ref_flash.c_attn.bias.split(C)  # (3C,) -> 3 x (C,)
with torch.no_grad():
    for h, head in enumerate(mha.heads):
        rows = slice(h * hs, (h + 1) * hs)  # the features of head h
        for layer, W, b in [(head.query, Wq, bq), (head.key, Wk, bk), (head.value, Wv, bv)]:
            layer.weight.copy_(W[rows])  # (hs, C)
            layer.bias.copy_(b[rows])  # (hs,)
    mha.proj.weight.copy_(ref_flash.c_proj.weight)
    mha.proj.bias.copy_(ref_flash.c_proj.bias)

    assert torch.allclose(mha(x), ref_explicit(x), atol=1e-6)
    assert torch.allclose(mha(x), ref_flash(x), atol=1e-6)
print("MultiHeadAttention == tinylm CausalSelfAttention (explicit and flash paths)")

# %% [markdown]
# ### All heads at once
#
# A Python loop over heads runs `n_head` small matrix multiplies one after another. The batched form
# makes the heads a batch dimension instead: one Linear for q, k, v of every head, a reshape
# `(B, T, C) → (B, n_head, T, hs)`, one batched attention, and the reverse reshape. Same arithmetic,
# one kernel launch. The parameter names match tinylm's, so its `state_dict` loads directly.
#
# `self.last_weights` keeps the attention weights of the latest call, for plotting later.

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
        self.last_weights = wei.detach()
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
# `tinylm`'s default path calls `F.scaled_dot_product_attention`, which computes the same thing with
# fused kernels (FlashAttention on recent GPUs) that never store the `(T, T)` score matrix: less
# memory, fewer trips to it, the same numbers up to float rounding.

# %%
torch.manual_seed(0)
q, k, v = torch.randn(3, 2, 4, 64, 16).unbind(0)  # q, k, v: (B=2, nh=4, T=64, hs=16)
assert torch.allclose(explicit_causal_attention(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5)
print("explicit path == F.scaled_dot_product_attention at T=64")

# %% [markdown]
# ## 7. The transformer block
#
# Attention is where positions *communicate*. A block pairs it with an MLP where each position
# *computes* on what it gathered, independently of the others. Two more ingredients make a deep
# stack of blocks trainable:
#
# - **Residual connections** ([He et al., 2015](https://arxiv.org/abs/1512.03385)). Each sub-layer
#   *adds* to its input: `x = x + attn(…)`. The gradient of a sum reaches `x` unchanged, so it flows
#   from the loss to the first layers through a straight path however deep the stack, and a freshly
#   initialised block starts close to the identity. Section 10 measures what happens without it.
# - **Layer norm** ([Ba et al., 2016](https://arxiv.org/abs/1607.06450)). Normalise each position's
#   `C` channels to mean 0 and variance 1, then apply a learned gain and bias. It keeps activations in
#   a range where the softmax and GELU behave. GPT-2 puts it *before* each sub-layer (pre-norm:
#   `x + attn(ln(x))`), and once more after the last block. (The original transformer put it after
#   the addition, `ln(x + attn(x))`, which puts a norm on the straight path; pre-norm keeps the path clean.)
#
# The picture: the residual stream runs straight from the block's input to its output; each
# sub-layer reads a normalised copy of it and adds its result back.

# %%
from matplotlib.patches import Circle, FancyBboxPatch

fig, ax = plt.subplots(figsize=(10, 8.5))
STREAM_X, BRANCH_X = 2.0, 5.2  # the residual stream's column, the sub-layers' column


def box(y: float, text: str, color: str) -> None:
    ax.add_patch(FancyBboxPatch((BRANCH_X - 1.6, y - 0.35), 3.2, 0.7, boxstyle="round,pad=0.05", facecolor=color,
                                edgecolor="black", lw=1.5))
    ax.text(BRANCH_X, y, text, ha="center", va="center", fontsize=13)


def arrow(start: tuple[float, float], end: tuple[float, float], lw: float = 2) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", lw=lw, color="black"))


def branch(y_split: float, norm: str, sublayer: str, color: str, code: str) -> None:
    """One sub-layer: leave the stream, normalise, transform, and add the result back at y_split + 3."""
    y_add = y_split + 3.0
    ax.plot([STREAM_X, BRANCH_X, BRANCH_X], [y_split, y_split, y_split + 0.55], color="black", lw=2)
    arrow((BRANCH_X, y_split + 0.5), (BRANCH_X, y_split + 0.6))
    box(y_split + 0.95, norm, "#fff2cc")
    arrow((BRANCH_X, y_split + 1.35), (BRANCH_X, y_split + 1.65))
    box(y_split + 2.0, sublayer, color)
    ax.plot([BRANCH_X, BRANCH_X], [y_split + 2.4, y_add], color="black", lw=2)
    arrow((BRANCH_X, y_add), (STREAM_X + 0.25, y_add))
    ax.add_patch(Circle((STREAM_X, y_add), 0.25, facecolor="white", edgecolor="black", lw=2, zorder=3))
    ax.text(STREAM_X, y_add, "+", ha="center", va="center", fontsize=18, zorder=4)
    ax.text(BRANCH_X + 1.9, y_add, code, ha="left", va="center", fontsize=13, family="monospace")


ax.add_patch(FancyBboxPatch((0.9, 0.45), 9.0, 7.05, boxstyle="round,pad=0.1", facecolor="none", edgecolor="gray",
                            lw=1.5, ls="--"))
ax.text(9.8, 0.75, "× n_layer", ha="right", va="bottom", fontsize=14, color="gray")
arrow((STREAM_X, -0.3), (STREAM_X, 8.3), lw=4)  # the residual stream: a straight path from input to output
ax.text(STREAM_X - 0.25, 2.3, "residual stream", rotation=90, ha="right", va="center", fontsize=14, color="#1f4e79")
ax.text(STREAM_X, -0.45, "x (B, T, C): embeddings, or the previous block's output", ha="left", va="top", fontsize=13)
ax.text(STREAM_X, 8.45, "to the next block (after the last one: ln_f, lm_head)", ha="left", va="bottom", fontsize=13)
branch(0.8, "LayerNorm  ln_1", "causal self-attention  attn", "#dae8fc", "x = x + attn(ln_1(x))")
branch(4.2, "LayerNorm  ln_2", "MLP  (c_fc, GELU, c_proj)", "#d5e8d4", "x = x + mlp(ln_2(x))")
ax.set_xlim(0, 10.2)
ax.set_ylim(-1.1, 9.0)
ax.axis("off")
ax.set_title("a pre-LayerNorm transformer block (GPT-2)")
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# First layer norm, from its definition. It uses the biased variance (divide by `C`), as
# `nn.LayerNorm` does; the names `weight` and `bias` match it so state dicts load.

# %%
class LayerNormFromScratch(nn.Module):
    def __init__(self, n_embd: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))  # the gain
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)  # (B, T, 1): one mean per position, over channels
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # (B, T, 1)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)  # (B, T, C)
        return x_hat * self.weight + (self.bias if self.bias is not None else 0.0)


torch.manual_seed(1337)
h = 3.0 + 5.0 * torch.randn(2, 16, cfg.n_embd)  # activations far from mean 0, variance 1
ln_ref = nn.LayerNorm(cfg.n_embd)
nn.init.normal_(ln_ref.weight)
nn.init.normal_(ln_ref.bias)  # non-trivial gain and bias, so a mistake cannot hide
ln = LayerNormFromScratch(cfg.n_embd)
ln.load_state_dict(ln_ref.state_dict())
with torch.no_grad():
    assert torch.allclose(ln(h), ln_ref(h), atol=1e-5)
    normed = LayerNormFromScratch(cfg.n_embd)(h)  # gain 1, bias 0: just the normalisation
    assert torch.allclose(normed.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(normed.var(-1, unbiased=False), torch.ones(2, 16), atol=1e-3)
print("LayerNormFromScratch == nn.LayerNorm; per position: mean 0, variance 1")

# %% [markdown]
# The MLP widens each position to `4·C` channels, applies GELU (a smooth ReLU; GPT-2 uses its tanh
# approximation), and projects back to `C`. Then the block, in exactly GPT-2's order.

# %%
class MLPFromScratch(nn.Module):
    def __init__(self, config: tinylm.GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)  # (B, T, C) -> (B, T, 4C)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)  # (B, T, 4C) -> (B, T, C)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class BlockFromScratch(nn.Module):
    def __init__(self, config: tinylm.GPTConfig):
        super().__init__()
        self.ln_1 = LayerNormFromScratch(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttentionFromScratch(config)
        self.ln_2 = LayerNormFromScratch(config.n_embd, bias=config.bias)
        self.mlp = MLPFromScratch(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # communicate, added to the residual stream
        x = x + self.mlp(self.ln_2(x))  # compute, added to the residual stream
        return x


# %% [markdown]
# Self-check against `tinylm.model.gpt.Block`. Freshly built, its layer norms are exactly gain 1, bias 0,
# which would hide a swapped or missing term, so first every parameter gets some noise.

# %%
def jitter_(module: nn.Module, scale: float = 0.1) -> nn.Module:
    """Add noise to every parameter in place, so that no weight is exactly 0 or 1."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


torch.manual_seed(1337)
ref_block = jitter_(Block(cfg)).eval()
block = BlockFromScratch(cfg).eval()
block.load_state_dict(ref_block.state_dict())
with torch.no_grad():
    assert torch.allclose(block(x), ref_block(x), atol=1e-5)
    assert torch.allclose(block.mlp(x), ref_block.mlp(x), atol=1e-6)
print("BlockFromScratch == tinylm.model.gpt.Block")

# %% [markdown]
# ## 8. The full GPT
#
# Around the stack of blocks:
#
# - a token embedding `wte` (`vocab_size × C`) turns ids into vectors;
# - a position embedding `wpe` (`block_size × C`) is *added*, so the same character at different
#   positions gives different vectors (attention alone cannot tell positions apart, see below);
# - a final layer norm `ln_f`, then `lm_head` (`C → vocab_size`) gives the logits;
# - `lm_head` shares its matrix with `wte` (*weight tying*, as GPT-2): the same matrix reads tokens in
#   and scores them out, which saves `vocab_size × C` parameters and tends to help.
#
# The module names follow tinylm (and OpenAI's GPT-2 checkpoint), so state dicts map key for key.

# %%
class GPTFromScratch(nn.Module):
    def __init__(self, config: tinylm.GPTConfig):
        super().__init__()
        self.config = config  # tinylm.generate reads config.block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([BlockFromScratch(config) for _ in range(config.n_layer)]),
            ln_f=LayerNormFromScratch(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight  # one Parameter, used twice

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C) + (T, C) -> (B, T, C)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x)  # (B, T, C)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))  # reshape: targets may be a strided slice
        return logits, loss


# %%
# NBVAL_CHECK_OUTPUT
ref_gpt = tinylm.GPT(cfg).eval()
gpt = GPTFromScratch(cfg).eval()
n_params = sum(p.numel() for p in gpt.parameters())  # parameters() yields the tied matrix once
print({field: getattr(cfg, field) for field in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")})
print(f"parameters: yours {n_params:,}   tinylm.GPT {ref_gpt.num_parameters():,}")
assert n_params == ref_gpt.num_parameters()

# %% [markdown]
# Self-check on real text: load tinylm's (jittered) weights into your model, run a batch of
# Shakespeare through both, and compare logits, loss, and a greedy generation token for token.

# %%
from tinylm.data.tokens import RandomWindowSampler
from tinylm.train.recipes import prepare_shakespeare_char

prepared = prepare_shakespeare_char()
tok = prepared.tokenizer
xb, yb = RandomWindowSampler(prepared.train, cfg.block_size, batch_size=8, seed=0).next_batch()  # (8, 16) each

torch.manual_seed(1337)
jitter_(ref_gpt)
gpt.load_state_dict(ref_gpt.state_dict())
assert gpt.lm_head.weight is gpt.transformer.wte.weight  # loading copies in place: still tied
with torch.no_grad():
    logits, loss = gpt(xb, yb)
    ref_logits, ref_loss = ref_gpt(xb, yb)
assert torch.allclose(logits, ref_logits, atol=1e-5) and torch.allclose(loss, ref_loss, atol=1e-6)
prompt = torch.tensor([tok.encode("ROMEO:")])  # (1, 6)
same = torch.equal(tinylm.generate.decode.generate(gpt, prompt, 30, temperature=0), tinylm.generate.decode.generate(ref_gpt, prompt, 30, temperature=0))
assert same
print(f"logits, loss ({loss.item():.4f}) and greedy generation match tinylm.GPT")

# %% [markdown]
# Why the position embedding matters: an attention layer treats the positions it sees as a *set*.
# Feed one layer token embeddings only, shuffle the first 15 tokens of each window, keep the last:
# the last position's output does not change, because it is a weighted sum over the same
# (key, value) pairs in another order. Add `wpe` and it does change. (In a deeper stack the mask
# leaks a little order information, since earlier positions see different prefixes; position
# embeddings give it directly.)

# %%
torch.manual_seed(1337)
T = cfg.block_size
layer = CausalSelfAttentionFromScratch(cfg).eval()
wte, wpe = nn.Embedding(cfg.vocab_size, cfg.n_embd), nn.Embedding(T, cfg.n_embd)  # default init: N(0, 1)
perm = torch.cat([torch.randperm(T - 1), torch.tensor([T - 1])])  # shuffle all positions but the last
with torch.no_grad():
    tokens, tokens_shuffled = wte(xb), wte(xb[:, perm])  # (B, T, C) each
    positions = wpe(torch.arange(T))  # (T, C), added to both: position p keeps its embedding
    change_without = (layer(tokens)[:, -1] - layer(tokens_shuffled)[:, -1]).abs().max().item()
    change_with = (layer(tokens + positions)[:, -1] - layer(tokens_shuffled + positions)[:, -1]).abs().max().item()
print(f"largest change of the last output after shuffling: without wpe {change_without:.1e}, with wpe {change_with:.1e}")
assert change_without < 1e-5 and change_with > 1e-2, (change_without, change_with)

# %% [markdown]
# ## 9. Weight initialisation
#
# Every weight needs a starting value, and the choice matters more than it looks. GPT-2's rule, which
# `tinylm.GPT` follows (`GPT._init_weights` and the loop after it in `tinylm/model/gpt.py`):
#
# - every `Linear` and `Embedding` weight from a normal distribution with mean 0 and **std 0.02**;
# - every bias **zero**; the layer norms keep the gain 1 and bias 0 they are built with;
# - the two projections per block that write into the residual stream, `attn.c_proj` and
#   `mlp.c_proj`, with std **0.02 / √(2·n_layer)**.
#
# The small std keeps the first logits near 0, so the model starts close to uniform: a loss of
# ln 65, as notebook 01 showed a good start should be. The extra factor is GPT-2's
# ([Radford et al., 2019](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf),
# section 2.3): *"A modified initialization which accounts for the accumulation on the residual path
# with model depth is used. We scale the weights of residual layers at initialization by a factor of
# 1/√N where N is the number of residual layers."* Each block adds two sub-layer outputs to the
# stream, so N = 2·n_layer. At initialisation these outputs are roughly independent of each other, so
# their variances add up: dividing each one's std by √N divides its variance by N, and the N of them
# together add the same variance whatever the depth.
#
# `wte` and `lm_head` are one tied matrix: it is initialised twice, as an `Embedding` and as a
# `Linear`, with the same distribution both times.

# %%
def init_gpt2_(model: nn.Module, scale_residual: bool = True) -> nn.Module:
    """GPT-2's initialisation, in place; scale_residual=False leaves c_proj at std 0.02 (for the experiment below)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    if scale_residual:
        n_layer = len(model.transformer.h)
        for name, param in model.named_parameters():
            if name.endswith("c_proj.weight"):  # attn.c_proj and mlp.c_proj: the two writes into the stream per block
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))
    return model


# %% [markdown]
# Self-check against `tinylm.GPT`. Two random initialisations can only be equal number for number if
# every draw happens in the same order, which is not what matters; what matters is the distribution.
# So, parameter by parameter: biases and norms exactly as tinylm has them, and the std of every weight
# matrix within 10% of tinylm's (a 4-layer, 64-wide model, so that each matrix has thousands of
# entries and the measured std is within a few percent of the true one).

# %%
cfg_init = dataclasses.replace(cfg, n_layer=4, n_embd=64, block_size=64)
torch.manual_seed(1337)
my_init, ref_init = init_gpt2_(GPTFromScratch(cfg_init)), tinylm.GPT(cfg_init)
ref_params = dict(ref_init.named_parameters())
print(f"{'parameter':34s} {'shape':>10s}  {'your std':>9s}  {'tinylm std':>10s}")
for name, param in my_init.named_parameters():
    ref_param = ref_params[name]
    if name.endswith("bias") or ".ln_" in name:  # zero biases; norm gains of 1
        assert torch.equal(param, ref_param), name
        continue
    assert abs(param.std().item() / ref_param.std().item() - 1) < 0.1, (name, param.std().item(), ref_param.std().item())
    assert abs(param.mean().item()) < 0.1 * ref_param.std().item(), name
    if not name.startswith("transformer.h.") or name.startswith("transformer.h.0."):  # one block is enough to read
        print(f"{name:34s} {str(tuple(param.shape)):>10s}  {param.std().item():9.4f}  {ref_param.std().item():10.4f}")
print(f"residual projections: 0.02 / sqrt(2 * {cfg_init.n_layer}) = {0.02 / math.sqrt(2 * cfg_init.n_layer):.4f}")
print("init_gpt2_ matches tinylm.GPT's initialisation, parameter by parameter")

# %% [markdown]
# ### The residual stream at initialisation, with and without the scaling
#
# Build stacks of 6, 12, 24 and 48 blocks, initialise each with and without the 1/√(2·n_layer)
# factor, feed the batch of Shakespeare through, and measure the variance of the residual stream
# after the embeddings and after every block.
#
# **Predict, then run.** Without the scaling, how does the stream's variance after 48 blocks compare
# with its variance after 6? With the scaling?

# %%
@torch.no_grad()
def residual_variances(model: nn.Module, idx: torch.Tensor) -> list[float]:
    """Variance of the residual stream after the embeddings, then after each block."""
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.size(1)))  # (B, T, C)
    variances = [x.var().item()]
    for block in model.transformer.h:
        x = block(x)  # (B, T, C)
        variances.append(x.var().item())
    return variances


cfg_deep = dataclasses.replace(cfg, n_layer=48, n_embd=64)
DEPTHS = (6, 12, 24, 48)
final = {"scaled": [], "unscaled": []}  # the stream's variance after the last block, per depth
for n_layer in tqdm(DEPTHS, desc="depths"):
    torch.manual_seed(1337)
    stack = GPTFromScratch(dataclasses.replace(cfg_deep, n_layer=n_layer))
    scaled = residual_variances(init_gpt2_(stack), xb)
    unscaled = residual_variances(init_gpt2_(stack, scale_residual=False), xb)
    final["scaled"].append(scaled[-1])
    final["unscaled"].append(unscaled[-1])
for n_layer, s_var, u_var in zip(DEPTHS, final["scaled"], final["unscaled"]):
    print(f"{n_layer:2d} blocks: variance after the last block {u_var:.4f} unscaled, {s_var:.4f} scaled")

fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
left.plot(unscaled, label="c_proj std 0.02", lw=2.5)  # scaled, unscaled: the curves of the last, deepest stack
left.plot(scaled, label="c_proj std 0.02 / √(2·48)", lw=2.5)
left.set_xlabel("after block (0 = the embeddings)")
left.set_ylabel("variance of the residual stream")
left.set_title(f"one stack of {DEPTHS[-1]} blocks")
right.plot(DEPTHS, final["unscaled"], "o-", label="c_proj std 0.02", lw=2.5)
right.plot(DEPTHS, final["scaled"], "o-", label="c_proj std 0.02 / √(2·n_layer)", lw=2.5)
right.set_xscale("log", base=2)
right.set_xticks(DEPTHS, [str(d) for d in DEPTHS])
right.set_xlabel("n_layer (blocks in the stack)")
right.set_ylabel("variance after the last block")
right.set_title("the end of the stream, by depth")
for ax in (left, right):
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()
plt.show()
plt.close(fig)

# %%
assert final["unscaled"][-1] > 4 * final["unscaled"][0], "unscaled, the variance should grow with depth"
assert 0.67 < final["scaled"][-1] / final["scaled"][0] < 1.5, "scaled, the variance should not depend on depth"
print("unscaled: the stream grows with depth; scaled: its size at the top does not depend on depth")

# %% [markdown]
# Without the factor the variance at the top grows in proportion to the depth: each block adds about
# the same amount, and 8 times as many blocks add 8 times as much. With it, every depth ends at the
# same variance (within one stack it still climbs block by block, to the same end point). The
# embeddings start at 2 × 0.02² = 0.0008, both tables added; unscaled, a deep stack buries them
# under what the blocks add before any training has happened. In a pre-norm block each sub-layer reads
# `ln(x)` and does not see the stream's scale, but what it *adds* is of a fixed size: in a stream that
# has grown large, each block's update is a smaller fraction of it. With the scaling, that balance is
# the same whatever `n_layer` is.

# %% [markdown]
# ## 10. Why residual connections help
#
# [He et al. (2015)](https://arxiv.org/abs/1512.03385) found that stacking more layers made plain
# networks *worse*, on the training set too: not overfitting, but an optimisation that failed. Their
# fix was to let each block learn a correction to its input, `x + F(x)`, instead of a replacement
# `F(x)`: if the identity is what a block should do, `F = 0` is easy to reach. The backward pass
# shows a second reason. The derivative of `x + F(x)` with respect to `x` is `I + ∂F/∂x`, so the
# gradient at the top reaches every block through the identity term, however deep the stack. Without
# the skip, the gradient reaching block `l` is a product of one Jacobian per layer above it, and a
# product of many factors shrinks or grows geometrically.
#
# The experiment: a stack of 48 of your blocks with GPT-2's initialisation, the Shakespeare batch, the
# language-model loss, and the gradient norm of each block's parameters. Once as written, once with
# every `x = x + f(x)` replaced by `x = f(x)`.
#
# **Predict, then run.** Without the residual connections, how much smaller is the gradient that
# reaches the first block than the one that reaches the last: 2 times, 100 times, or more?

# %%
def block_gradient_norms(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor, residual: bool = True):
    """Gradient norm of each block's parameters, and how much the positions still differ at the top.

    residual=False runs the same sub-layers with each output replacing its input instead of adding to it.
    """
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.size(1)))  # (B, T, C)
    for block in model.transformer.h:
        if residual:
            x = block(x)
        else:
            x = block.attn(block.ln_1(x))
            x = block.mlp(block.ln_2(x))
    top = model.transformer.ln_f(x)  # (B, T, C)
    loss = F.cross_entropy(model.lm_head(top).flatten(0, 1), targets.flatten())
    model.zero_grad(set_to_none=True)
    loss.backward()
    norms = [torch.cat([p.grad.flatten() for p in block.parameters()]).norm().item() for block in model.transformer.h]
    spread = top.detach().var(dim=1).mean().item()  # variance across positions: 0 when every position is the same
    return norms, spread


torch.manual_seed(1337)
deep = init_gpt2_(GPTFromScratch(cfg_deep))
with_skip, spread_with = block_gradient_norms(deep, xb, yb, residual=True)
without_skip, spread_without = block_gradient_norms(deep, xb, yb, residual=False)
print(f"with residuals:    gradient norm {with_skip[0]:.1e} at block 0, {with_skip[-1]:.1e} at block 47")
print(f"without residuals: gradient norm {without_skip[0]:.1e} at block 0, {without_skip[-1]:.1e} at block 47")
print(f"variance across positions at the top: {spread_with:.2f} with residuals, {spread_without:.1e} without")

fig, ax = plt.subplots(figsize=(10, 4.8))
ax.semilogy(with_skip, lw=2.5, label="x = x + f(x)  (residual)")
ax.semilogy(without_skip, lw=2.5, label="x = f(x)  (plain)")
ax.set_xlabel("block (0 = nearest the input)")
ax.set_ylabel("gradient norm of the block's weights")
ax.set_title(f"gradient reaching each of {cfg_deep.n_layer} blocks at initialisation")
ax.grid(alpha=0.3, which="both")
ax.legend()
fig.tight_layout()
plt.show()
plt.close(fig)

# %%
assert max(with_skip) < 3 * min(with_skip), "with residuals every block should get a gradient of similar size"
assert without_skip[0] < 1e-3 * without_skip[-1], "without residuals the gradient should vanish towards the input"
print("residual connections carry the gradient to every block")

# %% [markdown]
# With the skip, every block gets a gradient of about the same size. Without it, the gradient falls by
# many orders of magnitude on its way down, and the first blocks would not learn at all. The last line
# printed says why: at initialisation the scores `q · k` are tiny, so every attention layer averages
# the positions it sees almost uniformly, which shrinks the differences between them, and without the
# skip nothing adds the input back. Forty-eight rounds of averaging make every position the same
# vector, the output no longer depends on the input, and no gradient can flow back to it. (This *rank
# collapse* of attention layers without skip connections is proved by
# [Dong et al., 2021](https://arxiv.org/abs/2103.03404).) With the skip, each block adds a small
# correction to a stream that still carries the input, all the way up.
#
# In He et al.'s networks, batch normalisation kept the plain networks' gradients at a healthy size, and
# the deep plain networks still trained worse than shallow ones: making the identity the default is
# the other half of why residual connections work.

# %% [markdown]
# ## 11. Dropout
#
# A large model trained for many passes over a small text memorises it: the training loss keeps
# falling while the validation loss turns up. Dropout ([Srivastava et al., 2014](https://jmlr.org/papers/v15/srivastava14a.html))
# is the classic remedy: during training, set each activation to zero independently with probability
# `p`, a fresh random choice at every step. No unit can rely on a particular other unit being there,
# and each step trains a different "thinned" network; all of them share the weights, and at test time
# the full network acts as an average of them.
#
# Zeroing a fraction `p` shrinks the expected activation to `(1 − p)·x`. The paper scaled the weights
# down at test time to match (its `p` is the probability of *keeping* a unit; PyTorch's is that of
# dropping one). Every framework now uses **inverted dropout**: the survivors are multiplied by
# `1/(1 − p)` during training, so the expected value stays `x`, and at evaluation dropout is simply the
# identity. Which one happens depends on the module's mode: `model.train()` and `model.eval()` set
# `module.training`, which `nn.Dropout` reads.

# %%
def dropout_from_scratch(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each element with probability p and scale the survivors by 1/(1 - p); the identity when not training."""
    if not training or p == 0.0:
        return x
    keep = torch.empty_like(x).bernoulli_(1 - p)  # 1 with probability 1 - p, else 0
    return x * keep / (1 - p)


# %% [markdown]
# Self-check against `F.dropout`. On the CPU, PyTorch draws its mask exactly as above
# (`bernoulli_(1 - p)` on a tensor shaped like the input), so with the same seed the two must agree
# element for element. Then the statistics: the fraction zeroed is `p`, the mean is preserved, and in
# evaluation mode nothing changes.

# %%
torch.manual_seed(1337)
h = torch.randn(1000, 100)
for p in (0.1, 0.5):
    torch.manual_seed(0)
    yours = dropout_from_scratch(h, p)
    torch.manual_seed(0)
    torch_dropped = F.dropout(h, p, training=True)
    assert torch.allclose(yours, torch_dropped, atol=1e-6), f"p={p}: different from F.dropout with the same seed"
    zeroed = (yours == 0).float().mean().item()
    assert abs(zeroed - p) < 0.01, (p, zeroed)
    assert abs(yours.mean().item() - h.mean().item()) < 0.02
assert dropout_from_scratch(h, 0.5, training=False) is h
print("dropout_from_scratch == F.dropout (same seed); fraction zeroed = p; mean preserved; identity in eval mode")

# %% [markdown]
# **Predict, then run.** Dropout with `p = 0.1` on a million ones: which values appear in the
# output, and what is its mean?

# %%
ones = torch.ones(1_000_000)
torch.manual_seed(0)
dropped = dropout_from_scratch(ones, 0.1)
print(f"values: {[round(v, 4) for v in dropped.unique().tolist()]}   fraction zeroed: {(dropped == 0).float().mean():.4f}   mean: {dropped.mean():.4f}")

# %% [markdown]
# Two values only: 0 for the tenth that is dropped and 1/0.9 ≈ 1.111 for the rest, which brings the mean
# back to 1.
#
# Where the model applies it: `GPTConfig.dropout` sets one rate for every site, and your
# `GPTFromScratch` has the same sites as `tinylm.GPT`:
#
# - `transformer.drop`, on the sum of the token and position embeddings;
# - on the attention weights, after the softmax (the functional `F.dropout` inside attention; tinylm
#   passes `dropout_p` to its attention function), so a position randomly ignores some of its past;
# - `attn.resid_dropout` and `mlp.dropout`, on each sub-layer's output just before it is added to the
#   residual stream.
#
# The modules among them:

# %%
# NBVAL_CHECK_OUTPUT
cfg_drop = dataclasses.replace(cfg, dropout=0.2, attention="explicit")  # tinylm's readable attention path
ref_drop = tinylm.GPT(cfg_drop)
print([name for name, module in ref_drop.named_modules() if isinstance(module, nn.Dropout)])

# %% [markdown]
# Self-check: with the same seed, the same weights and the same batch, in training mode, your GPT and
# `tinylm.GPT` (on its explicit attention path, which draws the attention mask with `F.dropout` as
# yours does) draw the same masks in the same order, so their logits agree. Another seed draws other
# masks. In evaluation mode dropout is off: two calls give the same logits.

# %%
drop_gpt = GPTFromScratch(cfg_drop)
drop_gpt.load_state_dict(ref_drop.state_dict())
drop_gpt.train()
ref_drop.train()
torch.manual_seed(0)
logits_train, _ = drop_gpt(xb)
torch.manual_seed(0)
ref_logits_train, _ = ref_drop(xb)
assert torch.allclose(logits_train, ref_logits_train, atol=1e-5), "dropout is not applied where tinylm applies it"
torch.manual_seed(1)
assert not torch.allclose(ref_drop(xb)[0], ref_logits_train), "another seed must draw other masks"
drop_gpt.eval()
ref_drop.eval()
with torch.no_grad():
    assert torch.equal(ref_drop(xb)[0], ref_drop(xb)[0]) and torch.allclose(drop_gpt(xb)[0], ref_drop(xb)[0], atol=1e-5)
print("training mode: same seed, same masks as tinylm.GPT; evaluation mode: no dropout")

# %% [markdown]
# Notebook 3's Shakespeare recipes use dropout only where it pays:

# %%
# NBVAL_CHECK_OUTPUT
from tinylm.train.recipes import SHAKESPEARE_CHAR

print({profile: model_cfg.dropout for profile, (model_cfg, _) in SHAKESPEARE_CHAR.recipes.items()})

# %% [markdown]
# The `gpu` recipe (6 layers, 384 wide, 5,000 steps of 64 windows of 256 characters) passes over the
# 1 MB training text about 80 times and would memorise it; dropout 0.2 slows that down. The `cpu`
# recipe is small and trains for minutes: it underfits, and dropout would only slow its learning. The
# Trainer calls `model.train()`, and `tinylm.eval.loss.evaluate_loss` switches the model to `eval()` while
# it scores the validation split, so the validation loss is always measured without dropout.

# %% [markdown]
# ## 12. Can it learn?
#
# Training for real is the next notebook's job. The quickest check that gradients flow through
# everything you wrote is to *overfit one batch*: with the same 8 windows every step, a working model
# drives the loss far below the bigram's 2.49, towards 0. A bug in the mask (seeing the future) would
# make it too easy; a broken residual or norm would make it stall.
#
# The model starts from your GPT-2 initialisation (section 9). Its initial loss is then almost
# exactly ln 65 = 4.17, as notebook 01 said a good initialisation should give.

# %%
torch.manual_seed(1337)
model = init_gpt2_(GPTFromScratch(cfg))
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
losses = []
for step in tqdm(range(OVERFIT_STEPS), desc="overfit one batch"):
    _, loss = model(xb, yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"loss: {losses[0]:.3f} (ln 65 = {math.log(65):.3f}) -> {losses[-1]:.3f} after {OVERFIT_STEPS} steps")

fig, ax = plt.subplots(figsize=(9, 4.5))
ax.plot(losses, lw=2)
ax.axhline(math.log(65), color="gray", ls="--", lw=1, label="ln 65 (uniform)")
ax.set_xlabel("step (always the same batch)")
ax.set_ylabel("loss (nats/char)")
ax.set_title("your GPT memorising one batch")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()
plt.close(fig)

# %%
assert abs(losses[0] - math.log(65)) < 0.05, "GPT-2's initialisation should start near ln 65"
assert losses[-1] < 0.7 * losses[0], "the loss should fall fast on a single batch"
if PROFILE != "smoke":
    assert losses[-1] < 0.5, "with a few hundred steps a working model nearly memorises the batch"
print("your GPT learns")

# %% [markdown]
# The attention weights of the first layer on the first window of the batch, one panel per head
# (`last_weights` holds the latest forward pass). Each is lower-triangular; trained, the heads no
# longer agree with each other.

# %%
with torch.no_grad():
    model(xb[:1])
weights = model.transformer.h[0].attn.last_weights[0]  # (nh, T, T)
labels = [{" ": "␣", "\n": "↵"}.get(c, c) for c in tok.decode(xb[0].tolist())]  # make spaces and newlines visible
fig, axes = plt.subplots(2, cfg.n_head // 2, figsize=(11, 11))
for h, ax in enumerate(axes.flat):
    ax.imshow(weights[h], cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"head {h}")
    ax.set_xticks(range(cfg.block_size), labels)
    ax.set_yticks(range(cfg.block_size), labels)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# ## What you learned
#
# - Averaging the past is a matrix multiply with a lower-triangular matrix; attention makes the
#   weights data-dependent: scores `q · k / √head_size`, the future masked to −∞, a softmax per row, a
#   weighted sum of the values.
# - The 1/√head_size keeps the scores' variance at 1, so the softmax does not saturate.
# - Several heads run in parallel as one batched computation; a block pairs attention (positions
#   communicate) with an MLP (each position computes), each behind a layer norm and added to the
#   residual stream.
# - Attention sees a set; the position embedding tells it the order.
# - GPT-2's initialisation, std 0.02 and 1/√(2·n_layer) on the projections into the residual stream,
#   starts the loss at ln V and keeps the stream's size independent of depth.
# - Residual connections carry the gradient to every block; without them a deep stack's gradient
#   vanishes at initialisation, and attention averages its positions into one.
# - Dropout zeroes activations with probability `p` in training and scales the rest by 1/(1−p); in
#   `eval()` mode it is off.
# - Your `GPTFromScratch` computes what `tinylm.GPT` computes, and it can learn.
#
# ## Exercises
#
# Complete each function, replacing `raise NotImplementedError`, then run the cell after it.
#
# ### Exercise 1: causal attention weights
#
# Given `q` and `k` of shape `(..., T, hs)`, return the causal attention weights `(..., T, T)`:
# scaled scores, the future masked, softmax over the last dimension.

# %%
from tinylm.course.exercises import check


def causal_attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError


# %%
def test_causal_attention_weights():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 2, 3, 5, 4, generator=g).unbind(0)  # (B=2, nh=3, T=5, hs=4) each
    wei = causal_attention_weights(q, k)
    assert wei.shape == (2, 3, 5, 5), f"expected shape (2, 3, 5, 5), got {tuple(wei.shape)}"
    assert torch.allclose(wei.sum(-1), torch.ones(2, 3, 5), atol=1e-6), "each row must sum to 1 (softmax over the last dim)"
    assert (wei.triu(diagonal=1) == 0).all(), "the future must get zero weight"
    _, ref = explicit_causal_attention(q, k, v, return_weights=True)
    assert torch.allclose(wei, ref, atol=1e-6), "the weights differ from tinylm's: did you divide by sqrt(head_size)?"
    assert torch.allclose(causal_attention_weights(q[0, 0], k[0, 0]), ref[0, 0], atol=1e-6), "must also work without batch dims"


check(test_causal_attention_weights)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def causal_attention_weights(q, k):
#     T = q.size(-2)
#     scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., T, T)
#     future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(diagonal=1)
#     return F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
# ```
# </details>
#
# ### Exercise 2: splitting and merging heads
#
# `split_heads` turns `(B, T, C)` into `(B, n_head, T, C // n_head)` so that head `h` gets channels
# `h·hs … (h+1)·hs − 1`; `merge_heads` undoes it. These are the reshapes of
# `CausalSelfAttentionFromScratch`.

# %%
def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    raise NotImplementedError


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError


# %%
def test_split_merge_heads():
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 3, 8)  # (B=2, T=3, C=8)
    y = split_heads(x, n_head=4)
    assert y.shape == (2, 4, 3, 2), f"expected (B, n_head, T, hs) = (2, 4, 3, 2), got {tuple(y.shape)}"
    assert torch.equal(y[1, 2, 0], x[1, 0, 4:6]), "head 2 at position 0 must hold channels 4..5 of position 0"
    assert torch.equal(merge_heads(y), x), "merge_heads(split_heads(x)) must give x back"
    z = torch.randn(2, 4, 3, 2)
    assert torch.equal(split_heads(merge_heads(z), 4), z), "split_heads(merge_heads(y)) must give y back"


check(test_split_merge_heads)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def split_heads(x, n_head):
#     B, T, C = x.shape
#     return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, T, nh, hs) -> (B, nh, T, hs)
#
# def merge_heads(y):
#     B, nh, T, hs = y.shape
#     return y.transpose(1, 2).contiguous().view(B, T, nh * hs)  # (B, nh, T, hs) -> (B, T, nh, hs) -> (B, T, C)
# ```
# `.contiguous()` is needed because `view` cannot reinterpret a transposed tensor's memory; `reshape`
# would copy for you.
# </details>
#
# ### Exercise 3: sliding-window attention
#
# Some long-context models (Mistral, Longformer) let each position see only the last `window`
# positions, itself included: `t − window < s ≤ t`. Return the attention output `(..., T, hs)` for
# `q, k, v` of shape `(..., T, hs)`. Only the mask changes.

# %%
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
