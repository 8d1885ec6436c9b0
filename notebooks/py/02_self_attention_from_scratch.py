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
# The bigram of notebook 1 predicts from one character. This notebook builds self-attention, which lets each
# position gather information from the positions before it, then a transformer block and a full GPT. Every piece
# is checked against `tinylm` with an `assert`: by the end, your model and `tinylm.GPT` compute the same numbers.
#
# **What you will learn**
#
# - the averaging trick: a loop, a lower-triangular matrix multiply and a masked softmax, all equal;
# - attention scores from queries and keys, why they are scaled by 1/√head_size (measured in exercise 2), and
#   the causal mask;
# - one head, many heads, and the batched form every real implementation uses;
# - the transformer block (residual connections, layer norm, MLP) and a full GPT that matches `tinylm.GPT`;
# - GPT-2's weight initialisation, and why the projections into the residual stream shrink with depth;
# - why residual connections make deep stacks trainable, measured as the gradient that reaches each layer;
# - a check that the model you wrote can learn, and what that check cannot see;
# - what each piece buys: your GPT trained on Shakespeare one addition at a time, from the bigram to a scaled-up
#   model, three seeds per arm, each addition judged by the course's rule.
#
# **How long it takes**: a lesson of about 60 minutes (reading, code and the `cpu` run's 231 s, by the course's
# formula), then a second sitting of about 30 minutes for the 3 exercises (10 minutes each).
#
# | profile | what it runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; 30 steps of the overfitting check; the ladder of section 12 for 10 steps | the last cell prints it |
# | `cpu` (2-core laptop) | every check; 300 steps of the overfitting check; the ladder: 7 arms × 3 seeds × 1,000 steps | the last cell prints it |
# | `gpu` | the same as `cpu` (everything here runs on the CPU) | not measured |
#
# **Papers**: the transformer ([Vaswani et al., 2017, *Attention Is All You Need*](https://arxiv.org/abs/1706.03762)),
# GPT-2 ([Radford et al., 2019, *Language Models are Unsupervised Multitask Learners*](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf)),
# layer normalisation ([Ba et al., 2016](https://arxiv.org/abs/1607.06450)), residual connections
# ([He et al., 2015, *Deep Residual Learning for Image Recognition*](https://arxiv.org/abs/1512.03385)), rank collapse without skip connections
# ([Dong et al., 2021](https://arxiv.org/abs/2103.03404)). The build order follows Karpathy's
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
# Sizes that depend on the profile: the samples the variance demo draws, the steps of the "can it learn?" check
# and of each model of section 12's ladder (smoke also scores it on a slice of the validation split).

# %%
import dataclasses
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import tinylm
import tinylm.course.plotting
import tinylm.generate.decode
from tinylm.course.diagrams import draw_causal_mask, draw_pre_norm_block
from tinylm.course.playground import plot_attention
from tinylm.model.attention import CausalSelfAttention, explicit_causal_attention
from tinylm.model.gpt import Block

NOTEBOOK_STARTED = time.perf_counter()  # the last cell prints how long the whole notebook took
PROFILE = tinylm.set_up_notebook("cpu").profile  # and the CPU's speed settings, as commands set up (CPU only here)
VARIANCE_SAMPLES = {"smoke": 2_000, "cpu": 20_000, "gpu": 20_000}[PROFILE]  # dot products per head size
OVERFIT_STEPS = {"smoke": 30, "cpu": 300, "gpu": 300}[PROFILE]  # optimizer steps on one fixed batch
LADDER_STEPS = {"smoke": 10, "cpu": 1_000, "gpu": 1_000}[PROFILE]  # optimizer steps of each model of section 12
torch.set_printoptions(precision=3, sci_mode=False)
tinylm.course.plotting.use_projector_style()  # fonts readable on a projector
print(f"profile={PROFILE}  variance_samples={VARIANCE_SAMPLES}  overfit_steps={OVERFIT_STEPS}  ladder_steps={LADDER_STEPS}")

# %% [markdown]
# ## 1. The averaging trick
#
# Take `B` sequences of `T` positions, each a vector of `C` channels. The simplest way for position `t` to use
# its past is to average the vectors of positions `0..t`. Only the past: position `t` predicts token `t+1`, so
# seeing it would be cheating. Version 1, a loop:

# %%
torch.manual_seed(1337)
B, T, C = 4, 8, 2
x = torch.randn(B, T, C)

xbow = torch.zeros(B, T, C)  # "bag of words": the mean of everything so far
for b in range(B):
    for t in range(T):
        xbow[b, t] = x[b, : t + 1].mean(dim=0)  # (t+1, C) -> (C,)

# %% [markdown]
# Version 2, one matrix multiply (what hardware is fast at): row `t` of a lower-triangular matrix whose rows sum
# to 1 holds 1/(t+1) on columns `0..t`, so `wei @ x` is the running mean.

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
# Version 3: a matrix of *scores*, the future set to −∞, a softmax per row. e^−∞ = 0 removes the future; equal
# scores give equal weights, so the result is the same. If the scores come from the data, each position chooses
# how much of each past position to take. That is attention.

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
# The score of position `t` for position `s` is `q_t · k_s`: large when what `t` looks for matches what `s`
# offers. All pairs at once: `q @ kᵀ`, a `(T, T)` matrix per sequence. "Self" because all three come from `x`.

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
# `head_size` products of variance 1, so its variance is `head_size`. Large scores make the softmax
# *saturate*: the largest takes almost all the weight, and almost no gradient reaches any score.
# Dividing by √head_size brings the variance back to 1.
#
# **Predict, then run.** For random unit-variance `q` and `k` of size 64, what variance of `q · k` do you expect
# before the scaling, and after it?

# %%
for hs in (4, 16, 64, 256):
    qd, kd = torch.randn(VARIANCE_SAMPLES, hs), torch.randn(VARIANCE_SAMPLES, hs)
    dots = (qd * kd).sum(dim=-1)  # (N,): one dot product per row
    print(f"head_size {hs:3d}:  var(q·k) = {dots.var():6.1f}   var(q·k / sqrt(head_size)) = {(dots / math.sqrt(hs)).var():.2f}")

# %% [markdown]
# The variance is the head size, and near 1 once scaled. Saturation: five scores, then the same times 8 (= √64,
# the growth an unscaled head of size 64 would see).

# %%
# NBVAL_CHECK_OUTPUT
s = torch.tensor([0.1, -0.2, 0.3, -0.2, 0.5])
print("softmax(s)     =", F.softmax(s, dim=-1))
print("softmax(8 * s) =", F.softmax(8 * s, dim=-1))

# %%
scores = q @ k.transpose(-2, -1) / math.sqrt(head_size)  # (B, T, T): the variance of one product q_i·k_i, whatever head_size

# %% [markdown]
# ## 4. The causal mask, the softmax, the values
#
# In the `T × T` score matrix, row `t` is the query of position `t`, column `s` the key of position `s`. Above
# the diagonal is the future (`s > t`), set to −∞ before the softmax.

# %%
draw_causal_mask(6)  # tinylm/course/diagrams.py: a small T, so that every cell can be labelled
plt.show()

# %% [markdown]
# Mask, softmax each row, and use the weights to average the *values* (not `x`: the value map lets a position
# choose what it communicates).

# %%
tril = torch.ones(T, T, dtype=torch.bool).tril()
scores = scores.masked_fill(~tril, float("-inf"))  # (B, T, T)
wei = F.softmax(scores, dim=-1)  # (B, T, T): row t is a distribution over positions 0..t
out = wei @ v  # (B, T, T) @ (B, T, hs) -> (B, T, hs)

# %% [markdown]
# Self-check: rows sum to 1, the future gets zero weight, and the output equals both
# `tinylm.model.attention.explicit_causal_attention` (tinylm's readable path) and PyTorch's fused
# `F.scaled_dot_product_attention`. Both expect `(B, n_head, T, hs)`; `q[:, None]` adds the one head.

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
# The `tril` mask is a buffer: it moves with the module but is not a parameter, and `persistent=False` keeps it
# out of the `state_dict`.

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
# Several heads in parallel can look for different things (the previous character, the last space) and their
# outputs are concatenated. `n_head` heads of size `C / n_head` cost what one head of size `C` costs. A final
# linear map `proj` mixes what the heads found.

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
# `tinylm`'s `CausalSelfAttention` holds the same weights differently: one `c_attn` Linear makes q, k and v for
# all heads (`3C` outputs: queries, then keys, then values), and head `h` owns features `h·hs … (h+1)·hs − 1`
# within each. `c_proj` is our `proj`. Copied over, the outputs must agree on both of tinylm's attention paths.

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
# The batched form makes the heads a batch dimension: one Linear for q, k, v of every head, a reshape
# `(B, T, C) → (B, n_head, T, hs)`, one batched attention, the reverse reshape: one launch per operation instead
# of one per head. The parameter names match tinylm's, so its `state_dict` loads directly. (tinylm's default
# path calls `F.scaled_dot_product_attention`, whose fused kernels, FlashAttention on recent GPUs, never store the
# `(T, T)` scores.) `self.last_weights` keeps the latest
# attention weights, for plotting later.

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
# ## 7. The transformer block
#
# A block pairs attention, where positions *communicate*, with an MLP, where each position *computes* on what
# it gathered. Two more ingredients make a deep stack trainable:
#
# - **Residual connections** ([He et al., 2015](https://arxiv.org/abs/1512.03385)). Each sub-layer *adds* to its
#   input: `x = x + attn(…)`. The gradient of a sum reaches `x` unchanged, so it reaches the first layers however
#   deep the stack (section 10 measures it).
# - **Layer norm** ([Ba et al., 2016](https://arxiv.org/abs/1607.06450)). Normalise each position's `C` channels
#   to mean 0 and variance 1, then apply a learned gain and bias. GPT-2 puts it *before* each sub-layer
#   (pre-norm: `x + attn(ln(x))`) and once more after the last block.
#
# In the picture, each sub-layer reads a normalised copy of the residual stream and adds its result back.

# %%
draw_pre_norm_block()  # tinylm/course/diagrams.py
plt.show()

# %% [markdown]
# Layer norm from its definition, with the biased variance (divide by `C`) and the names `weight` and `bias`,
# as in `nn.LayerNorm`.

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
# The MLP widens each position to `4·C` channels, applies GELU (a smooth ReLU, in GPT-2's tanh approximation),
# and projects back to `C`. Then the block, in GPT-2's order.

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
# Self-check against `tinylm.model.gpt.Block`. Fresh layer norms (gain 1, bias 0) would hide a swapped or
# missing term, so first every parameter gets some noise.

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
# Around the blocks: a token embedding `wte` (`vocab_size × C`); a position embedding `wpe` (`block_size × C`),
# *added*, so the same character at different positions gives different vectors; a final layer norm `ln_f`;
# and `lm_head` (`C → vocab_size`) for the logits, sharing its matrix with `wte` (*weight tying*, as GPT-2). The
# `Dropout` modules, here and in the block, do nothing at the default `dropout = 0`; notebook 3 writes dropout.

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
# Self-check on a batch of Shakespeare, with tinylm's (jittered) weights: logits, loss and a greedy generation.

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
# Why the position embedding matters: the last position of one attention layer sees its inputs as a *set*. Feed
# one layer token
# embeddings only and shuffle the first 15 tokens of each window: the last position's output does not change,
# since it sums the same (key, value) pairs in another order. Add `wpe` and it does change.

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
# GPT-2's rule, which `tinylm.GPT` follows (`tinylm/model/gpt.py`):
#
# - every `Linear` and `Embedding` weight from a normal distribution with mean 0 and **std 0.02**;
# - every bias **zero**; the layer norms keep the gain 1 and bias 0 they are built with;
# - the two projections per block that write into the residual stream, `attn.c_proj` and
#   `mlp.c_proj`, with std **0.02 / √(2·n_layer)**.
#
# The small std keeps the first logits near 0, so the model starts close to uniform, at a loss of ln 65.
# [GPT-2](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf)
# scales the weights of the N residual layers by 1/√N, and each block adds two outputs to the stream, so
# N = 2·n_layer. At initialisation these outputs are roughly independent, so their variances add: dividing each
# std by √N makes the N of them add the same variance whatever the depth (exercise 3 measures it), so the
# embeddings keep their share of the stream however deep the stack.

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
# Self-check against `tinylm.GPT`, by distribution, not draw for draw: biases and norms exactly as tinylm's, each
# weight matrix's std within a tenth of tinylm's (on a 4-layer, 64-wide model, large enough to measure it).

# %%
# NBVAL_CHECK_OUTPUT
cfg_init = dataclasses.replace(cfg, n_layer=4, n_embd=64, block_size=64)
torch.manual_seed(1337)
my_init, ref_init = init_gpt2_(GPTFromScratch(cfg_init)), tinylm.GPT(cfg_init)
ref_params = dict(ref_init.named_parameters())
for name, param in my_init.named_parameters():
    ref_param = ref_params[name]
    if name.endswith("bias") or ".ln_" in name:  # zero biases; norm gains of 1
        assert torch.equal(param, ref_param), name
    else:
        assert abs(param.std().item() / ref_param.std().item() - 1) < 0.1, (name, param.std().item(), ref_param.std().item())
        assert abs(param.mean().item()) < 0.1 * ref_param.std().item(), name
for name in ("transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight"):
    print(f"{name:36s} std: yours {my_init.get_parameter(name).std():.4f}, tinylm's {ref_init.get_parameter(name).std():.4f}")
print(f"residual projections: 0.02 / sqrt(2 * {cfg_init.n_layer}) = {0.02 / math.sqrt(2 * cfg_init.n_layer):.4f}")

# %% [markdown]
# ## 10. Why residual connections help
#
# The derivative of a residual block, `x + F(x)`, is `I + ∂F/∂x`, so the gradient at the top reaches every block
# through the identity term. Without the skip connection, the gradient reaching block `l` is a product of one
# Jacobian per layer above it, which shrinks or grows geometrically.
#
# The experiment: the gradient norm of each of 48 freshly initialised blocks on the Shakespeare batch, once as
# written, once with every `x = x + f(x)` replaced by `x = f(x)`.
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


cfg_deep = dataclasses.replace(cfg, n_layer=48, n_embd=64)
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
# With the skip, every block gets a gradient of about the same size; without it, block 0's is almost nine orders
# of magnitude below block 47's. At initialisation the scores `q · k` are tiny, so each attention layer averages
# its positions almost uniformly and nothing adds the input back: after forty-eight rounds every position holds
# nearly the same vector (the variance across positions above), the *rank collapse* that [Dong et al. (2021)](https://arxiv.org/abs/2103.03404)
# prove for attention without skip connections.

# %% [markdown]
# ## 11. Can it learn?
#
# The quickest check that the model can learn at all: *overfit one batch* (the same 8 windows every step) and
# watch the loss go towards 0. It cannot see mistakes that leave the model able to fit: missing layer norms, a norm
# over the wrong axis, a missing gain, or a mask that shows the future (which makes memorising easier still). The
# asserts against tinylm in sections 4–8 catch those; section 12 measures what each piece is worth. With GPT-2's initialisation the first loss is
# almost exactly ln 65 = 4.17.

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

# %%
assert abs(losses[0] - math.log(65)) < 0.05, "GPT-2's initialisation should start near ln 65"
assert losses[-1] < 0.7 * losses[0], "the loss should fall fast on a single batch"
if PROFILE != "smoke":
    assert losses[-1] < 0.5, "with a few hundred steps a working model nearly memorises the batch"
print("your GPT learns")

# %% [markdown]
# The first layer's attention weights on the first window after memorising one batch, one panel per head
# (`last_weights`): patterns fitted to these 8 windows.

# %%
with torch.no_grad():
    model(xb[:1])
weights = model.transformer.h[0].attn.last_weights[0]  # (nh, T, T)
labels = [{" ": "␣", "\n": "↵"}.get(c, c) for c in tok.decode(xb[0].tolist())]  # make spaces and newlines visible
fig, axes = plt.subplots(2, cfg.n_head // 2, figsize=(11, 11))
for h, ax in enumerate(axes.flat):
    plot_attention(weights[h], labels, f"head {h}", ax=ax)  # tinylm.course.playground: the future left blank
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# ## 12. What each piece buys
#
# Overfitting one batch says the model *can* learn, not what each piece is worth. Karpathy's lecture trains after
# every addition; here your own pieces do the same on Shakespeare, each model the one before plus one thing:
# **bigram** (token and position embeddings and the head, no block: not notebook 1's 65 × 65 table); **one head** (one block, one full-width head, no MLP, residual or
# norm); **multi-head** (four heads of a quarter the width); **+MLP**; **+residual** (`x = x + f(x)`);
# **+LayerNorm** (your `GPTFromScratch`); **scaled up** (two blocks, twice as wide: two changes at once).
#
# Each trains `LADDER_STEPS` steps of AdamW at a constant 3e-3 on batches of 32 random 16-character windows, at
# three seeds, scored on every validation character. Each has an untied head (tied, its character-to-character scores
# would be symmetric) and PyTorch's default initialisation, as in the lecture. The
# course's rule (`tinylm.eval.uncertainty`): "told apart" only when every seed of one model beats every seed of
# the other (1 time in 10 for two models that do not differ; were the six comparisons independent, a 47% chance of
# at least one such fluke (1 − 0.9⁶), so read each margin against the seeds' range).

# %%
from tinylm.eval.loss import evaluate_loss
from tinylm.eval.uncertainty import compare, spread, told_apart


class PlainBlock(BlockFromScratch):
    """Your block without its residual connections: each sub-layer's output replaces its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln_2(self.attn(self.ln_1(x))))


LADDER = ["bigram", "one head", "multi-head", "+MLP", "+residual", "+LayerNorm", "scaled up"]
ladder_cfg = dataclasses.replace(cfg, n_layer=1, tie_weights=False)  # 16 characters of context, 32 wide, 4 heads


def ladder_model(arm: str) -> GPTFromScratch:
    """Your GPT with the ladder's pieces up to `arm` and none after it."""
    rung = LADDER.index(arm)
    sizes = {"one head": dict(n_head=1), "scaled up": dict(n_layer=2, n_embd=64)}.get(arm, {})
    model = GPTFromScratch(dataclasses.replace(ladder_cfg, **sizes))
    if arm == "bigram":
        model.transformer.h = nn.ModuleList()  # no block: the embeddings and the head
    if rung < LADDER.index("+residual"):
        model.transformer.h = nn.ModuleList(PlainBlock(model.config) for _ in model.transformer.h)
    for block in model.transformer.h:
        if rung < LADDER.index("+MLP"):
            block.mlp = nn.Identity()
        if rung < LADDER.index("+LayerNorm"):
            block.ln_1 = block.ln_2 = nn.Identity()
    if rung < LADDER.index("+LayerNorm"):
        model.transformer.ln_f = nn.Identity()
    return model


val_tokens = prepared.val if PROFILE != "smoke" else prepared.val[:2_049]  # smoke: a slice, for speed


def train_and_score(model: nn.Module, seed: int) -> float:
    """LADDER_STEPS steps of AdamW on random training windows; then the loss over every validation character."""
    batches = RandomWindowSampler(prepared.train, model.config.block_size, batch_size=32, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(LADDER_STEPS):
        _, loss = model(*batches.next_batch())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return evaluate_loss(model, val_tokens, model.config.block_size, batch_size=256, device="cpu")


val_loss, samples = {arm: [] for arm in LADDER}, {}
for seed in tqdm(range(3), desc="the ladder, 3 seeds"):
    for arm in LADDER:  # seed by seed: a partial run holds every arm
        torch.manual_seed(seed)
        model = ladder_model(arm)
        val_loss[arm].append(train_and_score(model, seed))
        if seed == 0:
            samples[arm] = tinylm.generate_text(model, tok, "\n", max_new_tokens=70, seed=0)

# %%
for arm in LADDER:
    print(f"{arm:<11} validation loss {spread(val_loss[arm]).format()}  {samples[arm]!r}")
for previous, arm in zip(LADDER, LADDER[1:]):
    print(compare(arm, val_loss[arm], previous, val_loss[previous]))
if PROFILE != "smoke":
    assert told_apart(val_loss["+LayerNorm"], val_loss["bigram"]), "your GPT should beat the bigram on every seed"

# %% [markdown]
# Each sample (seed 0, the same random numbers for every model, so fragments repeat where models agree) continues
# a new line. Attention lets a character look back, heads look for several things, the MLP computes on what they
# found, and the residual hands the input on, so `lm_head` still sees the character itself. LayerNorm bought
# nothing measurable here (not told apart from +residual); this notebook does not test where it pays. Scaling up
# changed two things at once. The verdicts hold for this short budget only. Notebook 3 trains `tinylm.GPT`,
# which computes what your `GPTFromScratch` computes, for longer on a tuned schedule.

# %% [markdown]
# ## What you learned
#
# - Averaging the past is a lower-triangular matrix multiply; attention makes the weights data-dependent:
#   scores `q · k / √head_size` (the scaling keeps the softmax from saturating), the future masked to −∞, a
#   softmax per row, a weighted sum of the values.
# - Heads run in parallel as one batched computation; a block pairs attention (positions communicate) with an
#   MLP (each position computes), each behind a layer norm and added to the residual stream.
# - Attention sees a set; the position embedding tells it the order.
# - GPT-2's initialisation, std 0.02 and 1/√(2·n_layer) on the projections into the residual stream,
#   starts the loss at ln V and keeps the stream's size independent of depth (exercise 3).
# - Residual connections carry the gradient to every block; without them a deep stack's gradient vanishes at
#   initialisation, and attention averages
#   the positions into one.
# - Your `GPTFromScratch` computes what `tinylm.GPT` computes, and it can learn. Overfitting one batch shows
#   the model can fit, not that each piece is right or useful.
# - Trained on real text one addition at a time, each piece is measured against the model without it, at three
#   seeds, by a stated rule.
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
#
# ### Exercise 3: an experiment — what the 1/√(2·n_layer) buys
#
# Write `residual_variance`: the variance of the residual stream of a `GPTFromScratch` after its last block (the sum
# of the embeddings, then every block in turn, without `ln_f`), on a batch `idx`. The check builds stacks of 6, 12,
# 24 and 48 blocks, 64 wide, each initialised with and without the factor (`init_gpt2_(stack,
# scale_residual=False)`), and tests your measurements. **Predict first**: without the scaling, how does the variance
# after 48 blocks compare with the variance after 6? With it?

# %%
def residual_variance(model: nn.Module, idx: torch.Tensor) -> float:
    raise NotImplementedError


# %%
def test_residual_variance():
    variances = {"scaled": [], "unscaled": []}
    for n_layer in (6, 12, 24, 48):
        torch.manual_seed(1337)
        stack = init_gpt2_(GPTFromScratch(dataclasses.replace(cfg, n_layer=n_layer, n_embd=64)))
        with torch.no_grad():  # the reference
            x = stack.transformer.wte(xb) + stack.transformer.wpe(torch.arange(xb.size(1)))
            for block in stack.transformer.h:
                x = block(x)
        assert math.isclose(residual_variance(stack, xb), x.var().item(), rel_tol=1e-4), "not the stream's variance"
        variances["scaled"].append(x.var().item())
        variances["unscaled"].append(residual_variance(init_gpt2_(stack, scale_residual=False), xb))
        print(f"{n_layer:2d} blocks: {variances['unscaled'][-1]:.4f} unscaled, {variances['scaled'][-1]:.4f} scaled")
    assert variances["unscaled"][-1] > 4 * variances["unscaled"][0], "unscaled, the variance should grow with depth"
    assert 0.67 < variances["scaled"][-1] / variances["scaled"][0] < 1.5, "scaled, it should not depend on depth"


check(test_residual_variance)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# @torch.no_grad()
# def residual_variance(model, idx):
#     x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.size(1)))  # (B, T, C)
#     for block in model.transformer.h:
#         x = block(x)
#     return x.var().item()
# ```
#
# Without the factor the variance at the top grows about in proportion to the depth, burying the tiny embeddings
# (2 × 0.02² after `wte + wpe`) before any training; with it, every depth ends at about the same variance.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
