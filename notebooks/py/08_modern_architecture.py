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
# # 8 · Modern architecture: RoPE, RMSNorm, SwiGLU, GQA and mixture of experts
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/08_modern_architecture.ipynb)
#
# The GPT of notebooks 3 to 7 is GPT-2's block of 2019. The models you meet today (Llama, Mistral,
# Qwen, DeepSeek) are still decoder-only transformers, but almost every part of the block has been
# replaced since. None of the changes is large; each removes a cost or a limit that showed up at scale.
# This notebook builds each one from scratch, checks it against `tinylm`, and then measures them the way
# a change should be measured: one at a time, at equal training time, with two seeds per arm so that a
# difference can be told from noise.
#
# **What you will learn**
# - **RMSNorm**: normalising without re-centring, and why that is enough;
# - **RoPE**: positions as rotations, why a query-key score then depends on the positions only through
#   their offset, what it does not give you (a longer context), the two conventions checkpoints use, and
#   the permutation between them;
# - **SwiGLU**: a gated MLP, and why it is 2/3 as wide;
# - **grouped-query attention**: fewer key/value heads, and what that does to the KV cache (the memory
#   that limits how many users a server can hold);
# - **mixture of experts**: a router, top-k dispatch, shared experts, the collapse of unbalanced routing
#   and its ceiling, the auxiliary loss and DeepSeek-V3's loss-free balancing (you write both);
# - an **ablation, one change at a time**: GPT-2's block → +RMSNorm → +RoPE → +SwiGLU → +GQA → +MoE
#   (three balancing modes), every arm at two seeds and equal training time, and verdicts that say which
#   changes beat the seed spread;
# - how the same model reads real checkpoints: Hugging Face Llama and llama2.c's TinyStories models.
#
# **How long it takes**: about 75 minutes of study.
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; 8 arms × 2 seeds of 12 steps of a tiny model | ~75 s (measured on a busy shared machine) |
# | `cpu` (2-core laptop) | 8 arms × 2 seeds of 25 s of training each on the 2 MiB TinyStories sample | 438 s (measured on an idle 2-core machine) |
#
# On a GPU (`gpu` profile) the notebook trains the same 16 runs with budgets scaled to the GPU, bounded by
# default (`FULL_RECIPE = False`); how long that takes, and what `FULL_RECIPE = True` costs, is in
# [Running on a GPU](README.md#running-on-a-gpu).
#
# **Papers**: RMSNorm ([Zhang & Sennrich, 2019](https://arxiv.org/abs/1910.07467)), RoPE
# ([Su et al., 2021](https://arxiv.org/abs/2104.09864)), SwiGLU ([Shazeer, 2020](https://arxiv.org/abs/2002.05202)),
# multi-query attention ([Shazeer, 2019](https://arxiv.org/abs/1911.02150)), grouped-query attention
# ([Ainslie et al., 2023](https://arxiv.org/abs/2305.13245)), Llama ([Touvron et al., 2023](https://arxiv.org/abs/2302.13971)),
# Switch Transformers ([Fedus et al., 2021](https://arxiv.org/abs/2101.03961)), DeepSeekMoE
# ([Dai et al., 2024](https://arxiv.org/abs/2401.06066)), loss-free balancing
# ([Wang et al., 2024](https://arxiv.org/abs/2408.15664)) as used in DeepSeek-V3
# ([DeepSeek-AI, 2024](https://arxiv.org/abs/2412.19437)).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import dataclasses
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import tinylm
import tinylm.data.corpora
import tinylm.interop.hf_gpt2
import tinylm.interop.llama2c
from tinylm.config import ARCHITECTURES, with_architecture
from tinylm.course.ablation import ablation_table, architecture_chain, parameter_counts, train_arms, verdicts
from tinylm.course.exercises import check
from tinylm.eval.uncertainty import compare, separated, spread
from tinylm.model.attention import CausalSelfAttention
from tinylm.model.kv_cache import bytes_per_token
from tinylm.model.mlp import SwiGLU
from tinylm.model.moe import MoE
from tinylm.model.rope import apply_rotary, rope_frequencies

PROFILE = tinylm.resolve_profile()
DEVICE = tinylm.resolve_device()
tinylm.configure_backend(DEVICE)  # process-wide speed settings for training: TF32 on CUDA, freed memory kept on a CPU
SEED = 42
plt.rcParams.update({"font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "legend.fontsize": 11})
print(f"profile {PROFILE}, device {DEVICE}")
# On a GPU, False trains a bounded version (the cpu comparisons with shorter budgets); True trains the gpu recipe's
# model and data, for much longer (see README's "Running on a GPU"). It changes nothing on the cpu and smoke profiles.
FULL_RECIPE = False
SCALE = "gpu-bounded" if PROFILE == "gpu" and not FULL_RECIPE else PROFILE  # what this notebook trains
RECIPE_PROFILE = "cpu" if SCALE == "gpu-bounded" else PROFILE  # whose data, model shape and recipe
if SCALE != PROFILE:
    print(f"FULL_RECIPE is False: training the {RECIPE_PROFILE} profile's data, shape and recipe on {DEVICE}, "
          "with shorter budgets")

# %% [markdown]
# ## The block, then and now
#
# ```
#        GPT-2 (2019)                          Llama-style (2023 on)
#   x ─┬─────────────────────┐            x ─┬─────────────────────────────┐
#      LayerNorm (mean, var)  │               RMSNorm (scale only)           │
#      attention, 12 q/k/v    │               attention, 12 q, 4 k/v heads   │  ← grouped-query
#      heads + learned        │               (GQA), q and k rotated by      │
#      position table         │               their position (RoPE)          │  ← no position table
#   x ◄┴─────────────────────┘            x ◄┴─────────────────────────────┘
#      LayerNorm              │               RMSNorm                        │
#      GELU MLP, 4·C wide     │               SwiGLU MLP, ~8/3·C wide        │  ← gated
#                             │               (or a mixture of experts)      │  ← sparse
#   x ◄┴─────────────────────┘            x ◄┴─────────────────────────────┘
#   biases everywhere, head tied to       no biases; the head is untied in large
#   the token embedding                   models, tied in small ones (and here)
# ```
#
# In `tinylm` each change is a field of `GPTConfig`, and `ARCHITECTURES` names the two families:

# %%
# NBVAL_CHECK_OUTPUT
for name, fields in ARCHITECTURES.items():
    print(f"{name:>9}: {fields}")

# %% [markdown]
# ## RMSNorm
#
# LayerNorm makes each position's vector have mean 0 and variance 1, then scales and shifts it:
# `(x − mean) / sqrt(var + ε) · w + b`. [Zhang & Sennrich](https://arxiv.org/abs/1910.07467) asked which
# half of that matters and found it is the re-scaling: dividing by the root mean square
# `sqrt(mean(x²) + ε)` keeps the residual stream's inputs at a stable size, while re-centring adds a
# reduction and a parameter vector and buys nothing measurable. RMSNorm is the one-line result:

# %%
# NBVAL_CHECK_OUTPUT
def rms_norm_from_scratch(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


torch.manual_seed(SEED)
x = torch.randn(2, 5, 16) * 3 + 1  # not centred: here the two norms differ
norm = torch.nn.RMSNorm(16, eps=1e-5)
with torch.no_grad():
    norm.weight.uniform_(0.5, 1.5)
mine = rms_norm_from_scratch(x, norm.weight)
assert torch.allclose(mine, norm(x), atol=1e-6)
assert torch.allclose(mine, tinylm.model.norms.rms_norm(x, norm.weight), atol=1e-6)
layer_norm = F.layer_norm(x, (16,))
print(f"RMSNorm == torch.nn.RMSNorm == tinylm.model.norms.rms_norm; it differs from LayerNorm by "
      f"{(rms_norm_from_scratch(x, torch.ones(16)) - layer_norm).abs().max():.2f} on a vector of mean ~1")
print(f"RMSNorm(5·x) == RMSNorm(x): {torch.allclose(rms_norm_from_scratch(5 * x, norm.weight), mine, atol=1e-5)}")

# %% [markdown]
# ## RoPE: positions as rotations
#
# GPT-2 adds a learned vector `wpe[m]` to the token at position `m`. What attention usually needs is
# the *distance* between two tokens, and with a position table the model has to work it out from two
# absolute positions, each a row it learns separately (and the table simply has no row past the context
# it was built for; RoPE, below, removes the table, though not the limit).
#
# RoPE leaves the embeddings alone and rotates each query and key instead. Split a head's `hs`
# channels into `hs/2` pairs and treat pair `i` as a complex number; at position `m` multiply it by
# `exp(i·m·θ_i)`, with frequencies `θ_i = 10000^(−2i/hs)`. A rotation keeps lengths, and two rotations
# compose, so the score of a query at `m` with a key at `n` is
#
# $$\mathrm{Re}\big[(q\,e^{im\theta})\,\overline{(k\,e^{in\theta})}\big] = \mathrm{Re}\big[q\,\bar k\,e^{i(m-n)\theta}\big]:$$
#
# it depends on the two positions only through their offset `m − n` (and, of course, on `q` and `k`).
# Here is RoPE the way Meta's Llama and llama2.c write it, with complex numbers over **interleaved**
# pairs (channels 0-1, 2-3, ...):

# %%
# NBVAL_CHECK_OUTPUT
def rope_complex(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """x (..., T, hs): rotate the pairs (2i, 2i+1) at each position by positions·θ_i."""
    hs = x.size(-1)
    angles = torch.outer(positions.double(), rope_frequencies(hs, theta).double())  # (T, hs/2)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], hs // 2, 2).contiguous())  # (..., T, hs/2)
    rotated = pairs * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).flatten(-2).to(x.dtype)  # (..., T, hs/2, 2) -> (..., T, hs)


hs = 16
q, k = torch.randn(hs, dtype=torch.float64), torch.randn(hs, dtype=torch.float64)


def score(m: int, n: int) -> float:
    return float(rope_complex(q[None], torch.tensor([m])) @ rope_complex(k[None], torch.tensor([n]))[0])


for m, n in [(5, 2), (105, 102), (10_005, 10_002), (7, 2)]:
    print(f"query at {m:>6}, key at {n:>6} (offset {m - n}): score {score(m, n):+.6f}")
assert math.isclose(score(5, 2), score(10_005, 10_002), abs_tol=1e-9)
assert not math.isclose(score(5, 2), score(7, 2), abs_tol=1e-3)
assert torch.allclose(rope_complex(q[None], torch.tensor([123])).norm(), q.norm())  # rotations keep lengths

# %% [markdown]
# The same offset gives the same score, at position 5 or 10,005, and the rotation does not change a
# vector's length. Each pair turns at its own speed, pair `i` once every `2π / θ_i` positions (the cell
# below prints the fastest and slowest for the demo's head size and for common ones). Fast pairs tell
# neighbours apart, slow pairs carry coarse distance across the whole context.
#
# What RoPE does **not** give you is a longer context. An angle exists for every position, so nothing
# stops you from running past the training length, but a model trained on windows of `T` tokens has
# never seen an offset of `T` or more: those rotations are new to every layer, and quality falls. Going
# longer takes rescaled positions (position interpolation, NTK-aware scaling, YaRN), which `tinylm`
# does not implement; its Hugging Face importer refuses checkpoints that use them, and its cos/sin
# tables stop at the context length.

# %%
for head_size in (hs, 64, 128):
    periods = 2 * math.pi / rope_frequencies(head_size)
    print(f"head size {head_size:>3}{' (the demo above)' if head_size == hs else '':<17}: the fastest pair turns "
          f"every {periods[0]:.1f} positions, the slowest every {periods[-1]:,.0f}")

fig, ax = plt.subplots(figsize=(8, 3.8))
for head_size in (hs, 64, 128):
    wavelengths = 2 * math.pi / rope_frequencies(head_size)
    ax.semilogy(np.arange(head_size // 2) / (head_size // 2), wavelengths, "o-", ms=3, label=f"head size {head_size}")
ax.axhline(1024, color="gray", ls="--")
ax.text(0.02, 1300, "GPT-2's context (1,024)", color="gray")
ax.set_xlabel("channel pair i / (head size / 2)")
ax.set_ylabel("positions per full turn")
ax.set_title("RoPE: every channel pair rotates at its own frequency (θ = 10,000)")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Two conventions, one model
#
# Hugging Face's Llama (and `tinylm`) pairs channel `j` with channel `j + hs/2` instead ("rotate
# half"), which needs no complex numbers: `x·cos + rotate_half(x)·sin`, with `rotate_half(x1, x2) =
# (−x2, x1)`. It is the same rotation applied to a reordered vector: move the even channels to the
# first half and the odd ones to the second, and the interleaved pairs become half-apart pairs. The
# reordering happens once, in the rows of `W_q` and `W_k` when a checkpoint is converted
# (`tinylm.model.rope.interleaved_to_rotate_half`, the permutation Hugging Face's conversion script uses).
# The scores do not change, because `q·k` does not care about the order of channels as long as `q` and
# `k` share it:

# %%
# NBVAL_CHECK_OUTPUT
T = 6
positions = torch.arange(T)
xs = torch.randn(T, hs, dtype=torch.float64)
to_rotate_half = torch.cat([torch.arange(0, hs, 2), torch.arange(1, hs, 2)])  # [0, 2, 4, ..., 1, 3, 5, ...]
rope = tinylm.model.rope.RotaryEmbedding(hs, block_size=T).double()
cos, sin = rope(positions)  # (T, hs) each
mine = rope_complex(xs, positions)[:, to_rotate_half]
package = apply_rotary(xs[:, to_rotate_half], cos, sin)
assert torch.allclose(mine, package, atol=1e-6)  # the package tabulates cos and sin in float32
print("interleaved RoPE, then reordered == tinylm's rotate-half RoPE on the reordered vector")

# %% [markdown]
# ## SwiGLU
#
# GPT-2's MLP is `c_proj(gelu(c_fc(x)))`, `4·C` wide. SwiGLU ([Shazeer, 2020](https://arxiv.org/abs/2002.05202))
# computes two projections and lets one gate the other, channel by channel:
# `c_proj(silu(c_gate(x)) · c_fc(x))`, where `silu(z) = z·sigmoid(z)`. Three matrices instead of two, so
# Llama makes the hidden layer 2/3 as wide, `8/3·C` rounded up to a multiple (256 in Llama, 32 in
# llama2.c), and the parameter count stays the same. At equal parameters it reaches a lower loss;
# Shazeer's paper ends with "we offer no explanation ... we attribute their success ... to divine
# benevolence".

# %%
# NBVAL_CHECK_OUTPUT
def swiglu_from_scratch(x, w_gate, w_up, w_down):
    return (F.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


cfg_small = with_architecture(tinylm.GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=4, n_embd=48), "llama")
swiglu = SwiGLU(cfg_small)
x = torch.randn(2, 3, 48)
assert torch.allclose(swiglu(x), swiglu_from_scratch(x, swiglu.c_gate.weight, swiglu.c_fc.weight, swiglu.c_proj.weight), atol=1e-6)
for width in (128, 768, 4096):
    cfg_w = with_architecture(tinylm.GPTConfig(n_embd=width, n_head=4, mlp_multiple_of=256 if width == 4096 else 32), "llama")
    gelu_params = 2 * width * 4 * width
    print(f"C = {width:>4}: SwiGLU hidden {cfg_w.mlp_hidden_size:>6} ({3 * width * cfg_w.mlp_hidden_size:>11,} weights); "
          f"GELU MLP hidden {4 * width:>6} ({gelu_params:>11,} weights)")

# %% [markdown]
# Llama 7B's 11,008 is `8/3 · 4096` rounded up to a multiple of 256: the same rule.
#
# ## Grouped-query attention and the KV cache
#
# Notebook 7 showed that decoding reads the whole key/value cache at every step, and that the cache
# grows with layers × context × batch. On a server it is the cache, not the weights, that decides how
# many conversations fit on a GPU. Multi-query attention ([Shazeer, 2019](https://arxiv.org/abs/1911.02150))
# gives all query heads **one** shared key/value head; grouped-query attention
# ([Ainslie et al., 2023](https://arxiv.org/abs/2305.13245)) gives each group of `n_head / n_kv_head`
# query heads one, which keeps almost all the quality of full multi-head attention. From scratch, with
# the weights of a `tinylm` attention layer:

# %%
# NBVAL_CHECK_OUTPUT
def grouped_query_attention(x: torch.Tensor, attn: CausalSelfAttention) -> torch.Tensor:
    B, T, C = x.shape
    n_head, n_kv, hs = attn.n_head, attn.n_kv_head, C // attn.n_head
    q, k, v = attn.c_attn(x).split([C, n_kv * hs, n_kv * hs], dim=-1)
    q = q.view(B, T, n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = k.view(B, T, n_kv, hs).transpose(1, 2).repeat_interleave(n_head // n_kv, dim=1)  # (B, n_kv, T, hs) -> (B, nh, T, hs)
    v = v.view(B, T, n_kv, hs).transpose(1, 2).repeat_interleave(n_head // n_kv, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
    return attn.c_proj(y)


cfg_gqa = tinylm.GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=6, n_kv_head=2, n_embd=48)
attn = CausalSelfAttention(cfg_gqa).eval()
x = torch.randn(2, 10, 48)
assert torch.allclose(grouped_query_attention(x, attn), attn(x), atol=1e-5)
print(f"c_attn makes {cfg_gqa.n_head} query heads and {cfg_gqa.kv_heads} key/value heads: "
      f"{tuple(attn.c_attn.weight.shape)} instead of {(3 * 48, 48)} with full multi-head attention")

# %% [markdown]
# What it saves. Per token, the cache keeps a key and a value vector per layer and key/value head:
# `2 × n_layer × n_kv_head × head_size` numbers. For GPT-2 124M in bf16, and the same model with 4
# key/value heads for its 12 query heads:

# %%
# NBVAL_CHECK_OUTPUT
gpt2_cfg = tinylm.GPT2_124M
gqa_cfg = dataclasses.replace(gpt2_cfg, n_kv_head=4)
for name, cfg in [("GPT-2 124M (12 k/v heads)", gpt2_cfg), ("same width, 4 k/v heads", gqa_cfg)]:
    per_token = bytes_per_token(cfg, torch.bfloat16)
    print(f"{name:<26} {per_token / 1024:>5.0f} KiB per token, {per_token * 1024 / 2**20:>4.0f} MiB per "
          f"1,024-token sequence, {80 * 2**30 // (per_token * 1024):>5,} such sequences in 80 GiB")

# A real cache agrees with the arithmetic (a small model: a batch of 3, the whole context filled).
small = tinylm.GPT(dataclasses.replace(cfg_gqa, n_layer=2)).eval()
cache = tinylm.KVCache(small.config, batch_size=3)
with torch.no_grad():
    small.decode_step(torch.zeros(3, 16, dtype=torch.long), cache)
assert cache.nbytes() == 3 * 16 * bytes_per_token(small.config, torch.float32)
print(f"measured: {cache.nbytes():,} bytes for 3 x 16 positions == 3 x 16 x bytes_per_token")

# %% [markdown]
# A third of the memory: three times the users, or three times the context, on the same GPU; and a
# third of the bytes each decoding step reads. Llama 2 70B uses 8 key/value heads for 64 query heads.
#
# ## The Llama block in `tinylm`
#
# `with_architecture(config, "llama")` switches every part at once (and keeps the shape: width, depth,
# heads, context). With RoPE there is no position table, so the model has no `wpe`; with GQA, `c_attn`
# is narrower; with SwiGLU, the MLP has three matrices. To measure the parts one at a time,
# `tinylm.course.ablation.architecture_chain` builds the path between the two families: each arm changes
# one thing in the arm before it, and the three mixture-of-experts arms (one per balancing mode, next
# section) each replace the dense Llama block's MLP. Two choices keep that one change per arm:
# **+RMSNorm also drops the biases** (LayerNorm's shift is a bias, and RMSNorm is LayerNorm without the
# centring and the shift, so "no additive terms" is one idea), and **weight tying stays on throughout**
# (both families tie the head to the embedding at this size).

# %%
track = tinylm.get_track("tinystories")
data = track.prepare(RECIPE_PROFILE)
preset, recipe = track.recipe(RECIPE_PROFILE)
base_cfg = tinylm.train.recipes.build_model_config(preset, data.tokenizer, track.vocab_multiple)
for arch in ARCHITECTURES:
    with torch.device("meta"):
        m = tinylm.GPT(with_architecture(base_cfg, arch))
    names = sorted({n.split(".", 3)[-1] for n, _ in m.named_parameters() if ".h.0." in n and ".experts." not in n})
    print(f"{arch:>9}: block 0 holds {', '.join(names)}")
print()
arms = architecture_chain(base_cfg)
for arm in arms:
    total, active = parameter_counts(arm.config)
    print(f"{arm.name:<22} {arm.change:<52} {total:>9,} parameters, {active:>9,} used per token")

# %% [markdown]
# ## Mixture of experts
#
# A dense model spends every parameter on every token. A mixture-of-experts layer replaces the MLP by
# `E` small MLPs (experts) and a **router**, a linear layer that scores the experts for each token; the
# token goes through its top-`k` experts only, and their outputs are added, weighted by the scores.
# Parameters grow with `E`, compute with `k`. DeepSeekMoE ([Dai et al., 2024](https://arxiv.org/abs/2401.06066))
# uses many narrow experts (more combinations to choose from) plus **shared** experts that every token
# passes through, for what all tokens need. `tinylm`'s `llama-moe` has 8 routed experts, 2 active, and 1
# shared, each a third of the dense MLP's width, so a token costs about what it costs in the dense
# model.
#
# The readable version loops over tokens; the package sorts the (token, expert) pairs by expert and
# runs each expert once on all of its tokens:

# %%
def moe_from_scratch(x: torch.Tensor, layer: MoE) -> torch.Tensor:
    out = torch.zeros_like(x)
    for t in range(x.size(0)):  # one token at a time
        scores = layer.router(x[t]).softmax(dim=-1)  # (E,)
        chosen = (scores + layer.expert_bias).topk(layer.top_k).indices  # the bias only chooses...
        weights = scores[chosen] / scores[chosen].sum()  # ...the weights come from the scores
        for e, w in zip(chosen.tolist(), weights):
            out[t] += w * layer.experts[e](x[t])
        out[t] += layer.shared(x[t])
    return out


moe_cfg = with_architecture(cfg_small, "llama-moe")
layer = MoE(moe_cfg).eval()
with torch.no_grad():
    layer.expert_bias.copy_(torch.randn(moe_cfg.n_experts) * 0.05)
x = torch.randn(12, 48)
assert torch.allclose(moe_from_scratch(x, layer), layer(x[None])[0], atol=1e-5)
chosen, weights, scores = layer.route(x)
routing = torch.zeros(12, moe_cfg.n_experts).scatter(1, chosen, weights)  # (tokens, experts)

fig, ax = plt.subplots(figsize=(7, 4))
image = ax.imshow(routing.detach(), cmap="Blues", vmin=0, vmax=1)
ax.set_xlabel("routed expert")
ax.set_ylabel("token")
ax.set_title(f"each token's top-{moe_cfg.n_experts_active} experts and their weights (+ 1 shared expert for all)")
fig.colorbar(image, ax=ax, label="weight")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Balancing: collapse, the auxiliary loss, and loss-free balancing
#
# Nothing in the language-modelling loss asks the router to spread tokens. An expert that happens to
# be picked a little more early on gets more gradient, becomes better, gets picked more: routing
# **collapses** onto a few experts, and the others are parameters that do nothing (on a cluster, with
# one expert per GPU, the busy GPUs also set everyone's pace).
#
# - **Auxiliary loss** (Switch Transformers, GShard): add `α · E · Σᵢ fᵢ·Pᵢ` to the loss, where `fᵢ` is
#   the fraction of assignments expert `i` got (counted, so it carries no gradient) and `Pᵢ` its mean
#   router score. It equals 1 when both are uniform, but that is not its minimum: all assignments on one
#   expert and all the score on another give about 0. What balances is its gradient, through `P`: it
#   lowers the scores of the experts that received the most assignments, in proportion to their load.
#   That gradient competes with the language-modelling loss: a larger `α` balances better and models worse.
# - **Loss-free balancing** ([Wang et al., 2024](https://arxiv.org/abs/2408.15664), used in DeepSeek-V3):
#   keep a bias per expert, add it to the scores *only to choose the top-k*, and after every optimizer
#   step move it by a fixed rate `u` against the sign of the expert's load error:
#   `bᵢ ← bᵢ + u·sign(mean load − loadᵢ)`. Overloaded experts become less likely to be chosen,
#   underloaded ones more. The bias does change the forward pass (which experts run for a token is the
#   whole point), so it can help or hurt the loss like any routing decision; what it avoids is the
#   auxiliary loss's extra gradient, since the bias is not learned and the chosen experts' weights still
#   come from the unbiased scores.
#
# DeepSeek-V3 does not use the bias alone: its router scores experts with independent **sigmoids**
# (normalised over the chosen experts to give the weights), the bias moves at `u = 1e-3` for most of
# training, and a **sequence-wise auxiliary loss** with a very small weight (`α = 1e-4`) keeps any single
# sequence from piling onto a few experts. `tinylm` keeps the **softmax** router of Switch and Mixtral by
# default (`router="sigmoid"` is there), so that the three balancing arms below differ in balancing
# only, and uses `u = 1e-2`: a bias has to move by about the gap between two experts' scores (softmax
# scores start near `1/E`) before it changes a choice, and at `1e-3` per step that takes about as many
# steps as a course run has.
#
# We measure balance as the **max-violation**: the busiest expert's load over the mean load, minus 1.
# 0 is perfect. With top-`k` routing a token gives each expert at most one of its `k` assignments, so no
# expert's load exceeds `1/k` and the max-violation is at most `E/k − 1`: 3 for top-2 of 8 experts
# (`E − 1` would need top-1). Exercise 6 measures that ceiling.
#
# ## The experiment: one change at a time, equal training time
#
# Eight arms: the chain printed above, GPT-2's block to the Llama block one change at a time, then the
# Llama block with a mixture of experts under each balancing mode (no balancing, auxiliary loss,
# loss-free). Every arm trains the TinyStories shape of the recipe (`cpu`, and the bounded `gpu`
# version: 4 layers, 128 wide, 4 heads, context 128; the full `gpu` recipe: 8 layers, 512 wide, context
# 256) with the same recipe, for the same seconds of training, at two seeds, and is scored on the whole
# validation split.
#
# - **Equal time, not equal steps**, is the fair race for a practitioner: a change that is better per
#   step but slower per step has to earn its cost. The clock counts training only (evaluations are left
#   out), and the learning-rate schedule follows the clock, so every run ends its cosine decay on time.
# - **Two seeds per arm.** A seed sets the initial weights and the order of the batches; two runs that
#   differ only in it disagree by some amount, and a gap between two arms means something only when it
#   is larger than that. The verdicts below call a gap real when the arms' ranges over seeds do not
#   overlap (`tinylm.eval.uncertainty.separated`), the bar of a two-seed experiment: two seeds show that
#   noise exists and roughly how large, not a confidence interval.
# - The seeds are **interleaved** (seed 0 of every arm, then seed 1), so that a machine that slows down
#   mid-way, as a shared one does, slows every arm rather than one arm's seeds.
# - The mixture-of-experts arms are compared with the dense Llama block (`+GQA`), whose MLP they replace;
#   their expert-load records feed the balancing plots after the table.
#
# **Predict, then run.** Which changes will beat the seed spread in runs this short? Think about what
# each buys per step and what it costs per step on this machine. For the mixture of experts with no
# balancing: where will the max-violation end, near 0, near 1, or near the ceiling of 3? And will
# either balancing method cost validation loss beyond the noise?

# %%
# Seconds of training per run (evaluations not counted); smoke runs 12 steps instead. The warmup is shortened (the
# same for every arm) so that runs this short spend most of their steps at a useful learning rate. The peak rate is
# lower than the 5,000-step recipe's 4e-3 (the same for every arm): in runs of a hundred-odd steps, the high rate
# makes two seeds of one arm disagree by more than the arms differ (README, "Modern architecture", has the runs).
ARM_SECONDS = {"smoke": None, "cpu": 25, "gpu-bounded": 8, "gpu": 300}[SCALE]
WARMUP_STEPS = {"smoke": 4, "cpu": 20, "gpu-bounded": 20, "gpu": 200}[SCALE]
ARM_LEARNING_RATE = recipe.learning_rate if SCALE in ("smoke", "gpu") else 1.5e-3
SEEDS = [0, 1]
arm_recipe = dataclasses.replace(recipe, max_seconds=ARM_SECONDS, warmup_steps=WARMUP_STEPS, eval_interval=0,
                                 learning_rate=ARM_LEARNING_RATE,
                                 max_steps=12 if SCALE == "smoke" else recipe.max_steps,
                                 log_interval={"smoke": 4, "cpu": 5, "gpu-bounded": 25, "gpu": 10}[SCALE])
runs = train_arms(arms, SEEDS, arm_recipe, data.train, data.val, device=DEVICE, tokenizer=data.tokenizer,
                  progress=lambda plan: tqdm(plan, desc="runs (seed, arm)"))

# %% [markdown]
# Bits per byte (notebook 5) make the losses comparable with other tokenizers. The validation split's
# bytes come from its GPT-2 ids, each end-of-text token counted as one separator byte. The table gives
# each arm's validation loss as mean ± half its range over the seeds, and its difference from the arm
# it is measured against:

# %%
gpt2 = tinylm.BPETokenizer("gpt2")
gpt2_val = data.val if RECIPE_PROFILE == "gpu" else tinylm.data.corpora.prepare_tinystories(source="sample").val  # GPT-2 ids
val_ids = np.asarray(gpt2_val, dtype=np.int64)
newline = gpt2.encode("\n")[0]
val_bytes = len(gpt2.encoding.decode_bytes(np.where(val_ids == gpt2.eot_token, newline, val_ids).tolist()))
scored_bytes = val_bytes - len(gpt2.encoding.decode_bytes(val_ids[:1].tolist()))  # the first token is never a target


def bits_per_byte(loss_per_token: float) -> float:
    return loss_per_token * (len(val_ids) - 1) / (math.log(2) * scored_bytes)


print(ablation_table(arms, runs, bits_per_byte))


def smoothed(values: list[float], width: int = 4) -> np.ndarray:
    """A trailing mean over `width` logged steps: one step's batch loss is noisy."""
    values = np.asarray(values)
    return np.array([values[max(0, i - width + 1) : i + 1].mean() for i in range(len(values))])


fig, (ax_final, ax_curves) = plt.subplots(1, 2, figsize=(16, 5.5), gridspec_kw={"width_ratios": [1, 1.2]})
for i, arm in enumerate(arms):
    values = [run.val_loss for run in runs[arm.name]]
    summary = spread(values)
    ax_final.errorbar(summary.mean, i, xerr=[[summary.mean - summary.low], [summary.high - summary.mean]], fmt="o",
                      color=f"C{i}", capsize=5, ms=8)
    ax_final.plot(values, [i] * len(values), "|", color="black", ms=12)
    for seed_index, run in enumerate(runs[arm.name]):
        logged = [r for r in run.records if r.get("event") == "train"]
        ax_curves.plot([r["elapsed"] for r in logged], smoothed([r["loss"] for r in logged]), color=f"C{i}",
                       alpha=0.8, lw=1.2, label=arm.name if seed_index == 0 else None)
ax_final.set_yticks(range(len(arms)), [arm.name for arm in arms])
ax_final.invert_yaxis()
ax_final.set_xlabel("final validation loss (nats per token)")
ax_final.set_title("mean over seeds (dot); each seed (tick)")
ax_final.grid(alpha=0.3)
ax_curves.set_xlabel("seconds of training (evaluations not counted)")
ax_curves.set_ylabel("training loss (trailing mean of 4 logs)")
ax_curves.set_title(f"TinyStories, {SCALE} profile: every arm, both seeds")
final_losses = [run.val_loss for seeds_runs in runs.values() for run in seeds_runs]
ax_curves.set_ylim(min(final_losses) - 0.3, max(final_losses) + 1.5)
ax_curves.grid(alpha=0.3)
ax_curves.legend(fontsize=9, ncol=2)
fig.tight_layout()
plt.show()

# %% [markdown]
# The verdicts, one per change, from the runs above: which arm won, by how much, and whether the gap is
# larger than the disagreement between seeds.

# %%
for sentence in verdicts(arms, runs):
    print("-", sentence)
dense_llama = arms[len(arms) - 4]  # the last dense arm: the whole Llama block
print("- the whole block:", compare(dense_llama.name, [r.val_loss for r in runs[dense_llama.name]], "GPT-2",
                                     [r.val_loss for r in runs["GPT-2"]]))
better, worse, unresolved = [], [], []
for arm in arms[1:]:
    mine, theirs = [r.val_loss for r in runs[arm.name]], [r.val_loss for r in runs[arm.baseline]]
    if not separated(mine, theirs):
        unresolved.append(arm.name)
    else:
        (better if spread(mine).mean < spread(theirs).mean else worse).append(arm.name)
print(f"\nbeat the seed spread: {', '.join(better) or 'none'}; lost beyond it: {', '.join(worse) or 'none'}; "
      f"within it (no verdict from this run): {', '.join(unresolved) or 'none'}")

# %% [markdown]
# How to read this. Each change was chosen at scale, on GPUs, by people training for days; here the
# model has a couple of million parameters and trains for seconds on a CPU, and every change is judged
# by what it buys per second. What each one changes:
#
# - **RMSNorm, no biases** saves a reduction per normalisation and a few parameters; at this size it
#   changes the speed per step a little and the function the block computes a little.
# - **RoPE** removes the position table and hands every layer relative positions without learning
#   them; but it also changes how positions reach the model (inside every attention score rather than
#   once, added to the input), and which of the two matters more depends on how long the model trains,
#   so a short run can rank it either way.
# - **SwiGLU** holds about the same parameters in three narrower matrices; its gain per step is modest
#   and it pays one more matrix multiply per MLP.
# - **GQA** is a memory and bandwidth change for decoding (the KV cache); in training it removes a few
#   parameters and computes fewer keys and values, so its effect on the loss should be small either way.
# - **The mixture of experts** holds several times the MLP parameters at about the same compute per
#   token, but its dispatch (sorting, gathering and scattering tokens for each expert) is overhead that a
#   tiny model on a CPU feels in full, while a large model on GPUs hides it behind big matrix multiplies;
#   compare the steps column. Extra parameters pay off when there are many tokens to learn from and the
#   budget is compute, not seconds of a laptop.
#
# Read the steps column beside the losses. The budget is seconds, so a block that is slower per step
# gets fewer steps, and on a shared machine the steps also move with whatever else is running: the seeds
# are interleaved so that load falls on every arm alike, but a gap that follows the steps column more
# than the change may be the machine's. A change "within the seed spread" has not been shown to do
# nothing: this experiment is too small to see it. Longer runs or more seeds (the reproduce script in README takes `--seconds` and `--seeds`)
# shrink the noise relative to the effects.
#
# ### Balancing, from the three mixture-of-experts arms
#
# The expert load the Trainer logged every few steps, per layer: the worst layer's max-violation over
# training for each seed, the last logging window's load of seed 0 layer by layer, and the table:

# %%
moe_arms = [arm for arm in arms if arm.config.n_experts]
n_experts, top_k = moe_arms[0].config.n_experts, moe_arms[0].config.n_experts_active
ceiling = n_experts / top_k - 1


def load_records(run) -> list[dict]:
    return [r for r in run.records if r.get("event") == "train" and "max_violation" in r]


fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), gridspec_kw={"width_ratios": [1.6, 1, 1, 1]})
for i, arm in enumerate(moe_arms):
    for seed_index, run in enumerate(runs[arm.name]):
        logged = load_records(run)
        axes[0].plot([r["step"] for r in logged], [max(r["max_violation"]) for r in logged], color=f"C{i}",
                     ls="-" if seed_index == 0 else "--", label=f"{arm.name}, seed {run.seed}")
axes[0].axhline(ceiling, color="gray", ls=":")
axes[0].text(0, ceiling - 0.3, f"ceiling E/k − 1 = {ceiling:g}", color="gray")
axes[0].set_xlabel("optimizer step")
axes[0].set_ylabel("max-violation (worst layer)")
axes[0].set_title("expert load over training")
axes[0].legend(fontsize=8)
axes[0].grid(alpha=0.3)
for ax, arm in zip(axes[1:], moe_arms):
    image = ax.imshow(np.array(load_records(runs[arm.name][0])[-1]["expert_load"]), cmap="magma", vmin=0,
                      vmax=1 / top_k, aspect="auto")
    ax.set_title(f"{arm.name.removeprefix('+MoE, ')}: last load", fontsize=12)
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
fig.colorbar(image, ax=axes[1:], label=f"fraction of assignments (at most 1/k = {1 / top_k:g})")
plt.show()

worst = {arm.name: [max(load_records(run)[-1]["max_violation"]) for run in runs[arm.name]] for arm in moe_arms}
print(f"| balancing | max-violation at the end, per layer (one row per seed) | worst layer, share of the ceiling "
      f"{ceiling:g} | val loss |")
print("|---|---|---|---|")
for arm in moe_arms:
    per_layer = "; ".join(", ".join(f"{v:.2f}" for v in load_records(run)[-1]["max_violation"])
                          for run in runs[arm.name])
    share = spread([w / ceiling for w in worst[arm.name]])
    print(f"| {arm.name.removeprefix('+MoE, ')} | {per_layer} | {share.format(2)} | "
          f"{spread([r.val_loss for r in runs[arm.name]]).format()} |")
print()
unbalanced = moe_arms[0].name
for arm in moe_arms[1:]:
    print("-", compare(arm.name, worst[arm.name], unbalanced, worst[unbalanced], metric="worst-layer max-violation"))
    print("-", compare(arm.name, [r.val_loss for r in runs[arm.name]], unbalanced,
                       [r.val_loss for r in runs[unbalanced]]))

# %% [markdown]
# Without balancing nothing stops the rich-get-richer loop, and the worst layer climbs towards the
# ceiling, where two experts take every token and the rest get no gradient at all. The auxiliary loss
# pulls the load back through the gradient; the loss-free biases push it back through the choice alone.
# Over runs this short, a collapsed layer still trains its two busy experts and its shared expert, so
# the cost of collapse in loss is small and may hide in the seed spread; what collapse wastes is the
# idle experts' parameters, a waste that a longer run, with more to learn, feels more (and at scale an
# idle expert is also an idle GPU).
#
# ## Generation with the new family
#
# The KV cache works the same way: it stores `n_kv_head` heads, with keys already rotated at their
# position. When the context is full, `tinylm` crops to the most recent half and prefills again, for
# both families. With RoPE, the cached keys would stay valid if the window slid by one (scores depend
# only on offsets), but the kept tokens' deeper keys were computed while the dropped tokens were still
# visible, so a slid cache would not equal a fresh run over the window; one policy keeps cached and
# uncached decoding identical:

# %%
llama_model = runs[dense_llama.name][0].model.eval()  # the Llama block (the chain's last dense arm), seed 0
prompt = data.tokenizer.encode("Once upon a time")
budget = 2 * llama_model.config.block_size  # crosses the context limit twice
with_cache = tinylm.generate_batch(llama_model, [prompt], budget, temperature=0, use_cache=True)[0]
without = tinylm.generate_batch(llama_model, [prompt], budget, temperature=0, use_cache=False)[0]
assert with_cache == without
print(f"{budget} greedy tokens, with and without the cache: identical")
print(tinylm.generate_text(llama_model, data.tokenizer, "Once upon a time", max_new_tokens=80, temperature=0.8,
                           top_k=40, seed=SEED).split("<|endoftext|>")[0])

# %% [markdown]
# ## Real checkpoints of this family
#
# Because the model is Llama's, `tinylm` reads Llama checkpoints:
#
# - `tinylm.interop.hf_llama.from_hf_llama(folder)` and `to_hf_llama(model, folder)` convert to and from
#   Hugging Face's `LlamaForCausalLM` (same rotate-half convention; the tests check logits both ways).
# - `tinylm.interop.llama2c.from_llama2c("stories15M.bin")` reads the checkpoints of Karpathy's
#   [llama2.c](https://github.com/karpathy/llama2.c): Llama models of 15M, 42M and 110M parameters trained
#   on TinyStories, with Llama 2's 32,000-token SentencePiece tokenizer. Their attention weights use the
#   interleaved RoPE convention, so the importer permutes the rows of `W_q` and `W_k` as above. Online:
#
# ```bash
# wget https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin
# wget https://github.com/karpathy/llama2.c/raw/master/tokenizer.model
# python -m tinylm.interop import --llama2c stories15M.bin --tokenizer tokenizer.model --out stories15M.pt
# python -m tinylm.sample --ckpt stories15M.pt --prompt "Once upon a time"
# ```
#
# Offline, the round trip through that file format with the model you just trained shows that nothing
# is lost:

# %%
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "tinystories-llama.bin"
    tinylm.interop.llama2c.write_llama2c(llama_model.cpu().float(), path)
    reloaded = tinylm.interop.llama2c.from_llama2c(path)
    print(f"{path.name}: {path.stat().st_size:,} bytes")
ids = torch.tensor([prompt])
with torch.no_grad():
    difference = (reloaded(ids)[0] - llama_model(ids)[0]).abs().max().item()
assert difference < 1e-5
print(f"written and read back: max |Δ logits| = {difference:.1e}")

# %% [markdown]
# ## What you learned
#
# - **RMSNorm** divides by the root mean square and skips re-centring: half the parameters, one
#   reduction, the same training.
# - **RoPE** rotates queries and keys by their position, so scores depend on the positions only through
#   their offset; it does not by itself extend the context a model was trained on. Its two conventions
#   (interleaved, rotate-half) differ by a fixed permutation of `W_q` and `W_k`'s rows.
# - **SwiGLU** gates one projection with another; at 2/3 of the width it has GELU's parameter count.
# - **Grouped-query attention** shares key/value heads across query heads, and the KV cache shrinks by
#   `n_head / n_kv_head`: a third for GPT-2's shape with 4 key/value heads.
# - A **mixture of experts** routes each token to its top-k experts; without balancing the routing
#   collapses towards the ceiling `E/k − 1`, the auxiliary loss balances through the gradient, and
#   DeepSeek-V3's bias balances through the choice alone, without a competing gradient.
# - A change is measured **one at a time, at equal budget, over seeds**: a gap counts when it is larger
#   than the disagreement between seeds, and whether a change pays off depends on the budget it is judged
#   by and the hardware you have.
#
# ## Exercises
#
# **1. RMSNorm with a learnable gain.** Write RMSNorm without looking above; the check compares it with
# `torch.nn.RMSNorm` on random inputs.

# %%
def my_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    raise NotImplementedError


def test_my_rms_norm():
    for eps in (1e-5, 1e-2):
        x = torch.randn(3, 7, 24) * 4 - 2
        reference = torch.nn.RMSNorm(24, eps=eps)
        with torch.no_grad():
            reference.weight.normal_()
        assert torch.allclose(my_rms_norm(x, reference.weight, eps), reference(x), atol=1e-5)


check(test_my_rms_norm)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_rms_norm(x, weight, eps):
#     return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight
# ```
# </details>
#
# **2. KV cache per token.** Return the bytes one position of one sequence takes in the cache, for any
# config and bytes per number (2 for bf16). The check compares with a real `tinylm.KVCache`.

# %%
def kv_bytes_per_token(cfg: tinylm.GPTConfig, bytes_per_number: int) -> int:
    raise NotImplementedError


def test_kv_bytes_per_token():
    configs = [tinylm.GPTConfig(vocab_size=32, block_size=8, n_layer=3, n_head=6, n_embd=48, n_kv_head=kv)
               for kv in (6, 3, 2, 1)]
    for cfg in configs:
        model = tinylm.GPT(cfg).eval()
        cache = tinylm.KVCache(cfg, batch_size=2)
        with torch.no_grad():
            model.decode_step(torch.zeros(2, 8, dtype=torch.long), cache)
        assert kv_bytes_per_token(cfg, 4) * 2 * 8 == cache.nbytes(), cfg
    assert kv_bytes_per_token(tinylm.GPT2_124M, 2) == 36_864


check(test_kv_bytes_per_token)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def kv_bytes_per_token(cfg, bytes_per_number):
#     return 2 * cfg.n_layer * cfg.kv_heads * cfg.head_size * bytes_per_number
# ```
# </details>
#
# **3. What a token pays for.** For one mixture-of-experts layer with a SwiGLU expert of width `h`
# (three `C × h` matrices, no biases), `E` routed experts of which `k` are active, `s` shared experts
# (one SwiGLU of width `s·h`) and a router (`C × E`), return `(total, active)` parameters.

# %%
def moe_layer_parameters(C: int, h: int, E: int, k: int, s: int) -> tuple[int, int]:
    raise NotImplementedError


def test_moe_layer_parameters():
    for E, k, s in [(8, 2, 1), (16, 4, 0), (4, 1, 2)]:
        cfg = with_architecture(cfg_small, "llama-moe")
        cfg = dataclasses.replace(cfg, n_experts=E, n_experts_active=k, n_shared_experts=s)
        layer = MoE(cfg)
        total = sum(p.numel() for p in layer.parameters())
        routed_unused = (E - k) * sum(p.numel() for p in layer.experts[0].parameters())
        assert moe_layer_parameters(48, cfg.expert_hidden_size, E, k, s) == (total, total - routed_unused), (E, k, s)


check(test_moe_layer_parameters)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def moe_layer_parameters(C, h, E, k, s):
#     expert = 3 * C * h
#     router = C * E
#     return router + E * expert + s * expert, router + k * expert + s * expert
# ```
# </details>
#
# **4. The auxiliary loss.** Given every token's router scores `(N, E)` and its chosen experts `(N, k)`,
# return Switch's balancing loss without its coefficient, `E · Σᵢ fᵢ·Pᵢ`: `fᵢ` is the fraction of the
# `N·k` assignments that went to expert `i`, and `Pᵢ` the mean over tokens of expert `i`'s score, each
# token's scores first divided by their sum (softmax scores already sum to 1, sigmoid scores do not).
# The check compares it with what a `tinylm` MoE layer adds to the loss, for both routers.

# %%
def my_aux_loss(scores: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError


def test_my_aux_loss():
    for router in ("softmax", "sigmoid"):
        cfg = dataclasses.replace(moe_cfg, balancing="aux_loss", router=router)
        torch.manual_seed(0)
        layer = MoE(cfg).train()
        with torch.no_grad():
            layer.router.weight.normal_(0, 0.5)  # scores far from uniform
        x = torch.randn(40, cfg.n_embd)
        layer(x[None])
        chosen, _, scores = layer.route(x)
        mine = my_aux_loss(scores, chosen)
        assert torch.allclose(mine, layer.aux_loss / layer.aux_loss_coef, atol=1e-6), (router, mine)
        assert mine.requires_grad, "the loss must reach the router through P (f is a count: no gradient)"
    uniform = torch.full((8, 4), 0.25)
    assert math.isclose(float(my_aux_loss(uniform, torch.tensor([[0, 1], [2, 3]] * 4))), 1.0, abs_tol=1e-6)


check(test_my_aux_loss)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_aux_loss(scores, chosen):
#     n_experts = scores.size(-1)
#     f = torch.bincount(chosen.flatten(), minlength=n_experts).float() / chosen.numel()
#     P = (scores / scores.sum(dim=-1, keepdim=True)).mean(dim=0)
#     return n_experts * (f * P).sum()
# ```
# </details>
#
# **5. The loss-free bias update.** After an optimizer step, given the biases `(E,)`, the step's
# assignment counts per expert `(E,)` and the rate `u`, return the new biases:
# `bᵢ + u·sign(mean load − loadᵢ)`. The check compares with `MoE.end_of_step` in loss-free mode.

# %%
def my_bias_update(bias: torch.Tensor, counts: torch.Tensor, rate: float) -> torch.Tensor:
    raise NotImplementedError


def test_my_bias_update():
    layer = MoE(dataclasses.replace(moe_cfg, balancing="loss_free")).train()
    generator = torch.Generator().manual_seed(0)
    for counts in (torch.randint(0, 50, (moe_cfg.n_experts,), generator=generator).float(),
                   torch.tensor([4.0, 4, 4, 4, 0, 8, 4, 4]), torch.full((moe_cfg.n_experts,), 3.0)):
        before = layer.expert_bias.clone()
        layer.step_counts.copy_(counts)
        layer.end_of_step()
        mine = my_bias_update(before, counts, layer.bias_update_rate)
        assert torch.allclose(mine, layer.expert_bias, atol=1e-7), (counts, mine, layer.expert_bias)


check(test_my_bias_update)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_bias_update(bias, counts, rate):
#     load = counts / counts.sum()  # the sign is the same for counts and fractions
#     return bias + rate * torch.sign(load.mean() - load)
# ```
# </details>
#
# **6. Experiment: the ceiling of the max-violation.** Take an MoE layer with no balancing, change its
# router so that every token prefers the same experts (all tokens below have positive channels; one way
# is to zero the router and give a few experts' rows positive weights), run the tokens through it, and
# read the max-violation the layer logs. Write the number you measured into `my_ceiling`; the check
# compares it with the bound `E/k − 1` for this layer's `E` and `k`, and then with how close the
# no-balancing arm above came.

# %%
ceiling_layer = MoE(dataclasses.replace(moe_cfg, balancing="none")).train()
positive_tokens = torch.rand(1, 256, moe_cfg.n_embd)
with torch.no_grad():
    pass  # your change to ceiling_layer.router.weight
ceiling_layer(positive_tokens)
tinylm.model.moe.end_of_step(ceiling_layer)
print("max-violation of this layer:", tinylm.model.moe.read_expert_load(ceiling_layer)["max_violation"])
my_ceiling = None  # replace with the max-violation you measured


def test_my_ceiling():
    if my_ceiling is None:
        raise NotImplementedError("set my_ceiling to the max-violation you measured")
    bound = moe_cfg.n_experts / moe_cfg.n_experts_active - 1
    assert abs(my_ceiling - bound) < 0.01, (f"{my_ceiling} is not the ceiling E/k - 1 = {bound:g}: is every token "
                                            "sent to the same k experts?")
    closest = max(worst[moe_arms[0].name]) / ceiling
    print(f"your measured ceiling equals E/k − 1 = {bound:g}; the worst layer of the {moe_arms[0].name} arm above "
          f"reached {closest:.0%} of its own ceiling")


check(test_my_ceiling)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# with torch.no_grad():
#     ceiling_layer.router.weight.zero_()
#     ceiling_layer.router.weight[:2] = 1.0  # experts 0 and 1 score sum(x) > 0, the rest 0: every token picks them
# ```
#
# The printed max-violation is 3.0 = 8/2 − 1: each token gives experts 0 and 1 one assignment each, so each
# has half of all assignments, four times the mean of 1/8. No routing can do worse, because an expert
# appears at most once in a token's top-k.
# </details>

