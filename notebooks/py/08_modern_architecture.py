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
# This notebook builds each one from scratch, checks it against `tinylm`, and then races the old block
# against the new one on TinyStories at equal training time.
#
# **What you will learn**
# - **RMSNorm**: normalising without re-centring, and why that is enough;
# - **RoPE**: positions as rotations, why a query-key score then depends only on the distance, the two
#   conventions checkpoints use, and the permutation between them;
# - **SwiGLU**: a gated MLP, and why it is 2/3 as wide;
# - **grouped-query attention**: fewer key/value heads, and what that does to the KV cache (the memory
#   that limits how many users a server can hold);
# - **mixture of experts**: a router, top-k dispatch, shared experts, the collapse of unbalanced routing,
#   the auxiliary loss, and DeepSeek-V3's loss-free balancing, side by side;
# - an **ablation at equal training time**: GPT-2's block, the Llama block and Llama + MoE;
# - how the same model reads real checkpoints: Hugging Face Llama and llama2.c's TinyStories models.
#
# **How long it takes**: about 60 minutes of study.
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; 30-step runs of tiny models | ~30 s |
# | `cpu` (2-core laptop) | three 50 s balancing runs and three 90 s ablation arms on the 2 MiB TinyStories sample | 470 s |
# | `gpu`, `FULL_RECIPE = False` (the default; Colab) | the `cpu` comparisons on the GPU, with shorter budgets: three 10 s balancing runs and three 20 s arms | ~3 min on a T4 (estimated, not measured) |
# | `gpu`, `FULL_RECIPE = True` | the 51M TinyStories shape on all of TinyStories: three 10-minute balancing runs, three 20-minute arms | ~1 h 40 min on a T4 (estimated, not measured); meant for a bigger GPU |
#
# The GPU rows are estimates, derived as follows. Budgets of training time are fixed, so what FLOPs decide
# is how far each run gets: a T4 computes 65 TFLOP/s in fp16 at its peak (`tinylm.runtime.PEAK_TFLOPS`).
# - **Bounded** (the default): 90 s of budgets, plus evaluations, checkpoints and the sample's preparation,
#   about 3 minutes in all. The 1.7M-parameter model costs `model.flops_per_token()` = 10.9 MFLOP per token;
#   a model this small keeps a GPU busy launching kernels rather than multiplying, so assume an MFU of 5%:
#   65e12 × 0.05 / 10.9e6 ≈ 300k tokens/s, about 2,900 steps of 2,048 tokens in a 20 s arm (the `cpu`
#   run makes ~600 in 90 s).
# - **Full** (`FULL_RECIPE = True`): 90 minutes of budgets, plus downloading and tokenizing TinyStories
#   (about 450M tokens; at the 2.2M tokens/s measured on 2 CPU cores, ~4 minutes). The 51M model costs
#   318 MFLOP per token and a step is 262,144 tokens; at an assumed 25% MFU a T4 takes 8.3e13 / 1.6e13 ≈ 5 s
#   per step, so a 20-minute arm makes ~230 steps, still inside the recipe's 2,000-step warmup. The full
#   recipe is sized for an H100-class GPU; on a T4, run it from the command line for longer
#   (`python -m tinylm.train tinystories --arch llama --profile gpu`).
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

import tinylm
import tinylm.data.corpora
import tinylm.interop.hf_gpt2
import tinylm.interop.llama2c
from tinylm.config import ARCHITECTURES, with_architecture
from tinylm.course.exercises import check
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
# On a GPU, False trains a bounded version (the cpu comparisons, minutes on a T4); True trains the full gpu recipe
# (hours on a T4, see the table above). It changes nothing on the cpu and smoke profiles.
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
# GPT-2 adds a learned vector `wpe[m]` to the token at position `m`. Two things are wrong with that:
# the table ends at the context length (position 1,024 has no row), and what attention usually needs is
# the *distance* between two tokens, which the model has to work out from two absolute positions.
#
# RoPE leaves the embeddings alone and rotates each query and key instead. Split a head's `hs`
# channels into `hs/2` pairs and treat pair `i` as a complex number; at position `m` multiply it by
# `exp(i·m·θ_i)`, with frequencies `θ_i = 10000^(−2i/hs)`. A rotation keeps lengths, and two rotations
# compose, so the score of a query at `m` with a key at `n` is
#
# $$\mathrm{Re}\big[(q\,e^{im\theta})\,\overline{(k\,e^{in\theta})}\big] = \mathrm{Re}\big[q\,\bar k\,e^{i(m-n)\theta}\big]:$$
#
# it depends on `m − n` only. Here is RoPE the way Meta's Llama and llama2.c write it, with complex
# numbers over **interleaved** pairs (channels 0-1, 2-3, ...):

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
# vector's length. Each pair turns at its own speed: pair 0 once every 2π ≈ 6 positions, the last pair
# once every ~60,000. Fast pairs tell neighbours apart, slow pairs carry coarse distance across the
# whole context:

# %%
fig, ax = plt.subplots(figsize=(8, 3.8))
for head_size in (16, 64, 128):
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
# is narrower; with SwiGLU, the MLP has three matrices:

# %%
track = tinylm.get_track("tinystories")
data = track.prepare(RECIPE_PROFILE)
preset, recipe = track.recipe(RECIPE_PROFILE)
base_cfg = tinylm.train.recipes.build_model_config(preset, data.tokenizer, track.vocab_multiple)
ARMS = {"gpt2": "GPT-2 block", "llama": "Llama block", "llama-moe": "Llama + MoE"}
for arch in ARMS:
    cfg = with_architecture(base_cfg, arch)
    with torch.device("meta"):
        m = tinylm.GPT(cfg)
    names = sorted({n.split(".", 3)[-1] for n, _ in m.named_parameters() if ".h.0." in n and ".experts." not in n})
    print(f"{arch:>9}: {m.num_parameters():>9,} parameters, {m.num_active_parameters():>9,} used per token; "
          f"block 0: {', '.join(names)}")

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
#   the fraction of assignments expert `i` got and `Pᵢ` its mean router score. It is smallest when
#   both are uniform. But its gradient competes with the language-modelling loss: a larger `α`
#   balances better and models worse.
# - **Loss-free balancing** (DeepSeek-V3): keep a bias per expert, add it to the scores *only to choose
#   the top-k*, and after every optimizer step move it by a fixed rate `u` against the sign of the
#   expert's load error: `bᵢ ← bᵢ + u·sign(mean load − loadᵢ)`. Overloaded experts become less
#   likely to be chosen, underloaded ones more; the weights, and so the gradients, never see the bias.
#
# We measure balance as the **max-violation**: the busiest expert's load over the mean load, minus 1
# (0 is perfect, 7 means one of 8 experts takes everything). Three short runs of the same model, one
# per mode.
#
# **Predict, then run.** With no balancing at all, where will the max-violation end: near 0, near 1, or near
# 7? And which of the two balancing methods will cost more validation loss? (The table after the plot
# answers both: a layer or more ends with one expert taking about three times its share, and over runs this
# short neither method costs loss beyond the noise.)

# %%
# Seconds of training per run; None: the recipe's max_steps (30 in smoke). A GPU trains the bounded version's small
# model so fast that 20 s already read the 2 MiB sample a dozen times over.
BALANCE_SECONDS = {"smoke": None, "cpu": 50, "gpu-bounded": 10, "gpu": 600}[SCALE]
ARM_SECONDS = {"smoke": None, "cpu": 90, "gpu-bounded": 20, "gpu": 1200}[SCALE]
runs_root = tinylm.paths.runs_dir() / f"notebook-08-{SCALE}"


def train_run(model_cfg: tinylm.GPTConfig, name: str, seconds: float | None, log_interval: int, eval_interval: int):
    """Train a fresh model of `model_cfg` with the track's recipe for `seconds`; returns (trainer, records)."""
    train_cfg = dataclasses.replace(recipe, max_seconds=seconds, log_interval=log_interval, eval_interval=eval_interval,
                                    sample_interval=0, seed=SEED)
    run_dir = runs_root / name
    for stale in ("metrics.jsonl", "best.pt", "last.pt"):  # a fresh run each time the notebook runs
        (run_dir / stale).unlink(missing_ok=True)
    records = []
    torch.manual_seed(SEED)
    trainer = tinylm.Trainer(tinylm.GPT(model_cfg), train_cfg, data.train, data.val, out_dir=run_dir,
                             tokenizer=data.tokenizer, device=DEVICE, callbacks=[records.append],
                             sample_prompt=track.sample_prompt)
    final = trainer.fit()
    print(f"{name:<24} {trainer.step:>5} steps in {trainer.elapsed:>4.0f} s, validation loss {final['val_loss']:.3f}")
    return trainer, records


balance_runs = {}
for mode in ("none", "aux_loss", "loss_free"):
    cfg = dataclasses.replace(with_architecture(base_cfg, "llama-moe"), balancing=mode)
    balance_runs[mode] = train_run(cfg, f"balance-{mode}", BALANCE_SECONDS, log_interval=5, eval_interval=0)

# %%
fig, axes = plt.subplots(1, 4, figsize=(16, 4), gridspec_kw={"width_ratios": [1.6, 1, 1, 1]})
final_violation = {}
for mode, (trainer, records) in balance_runs.items():
    logged = [r for r in records if r.get("event") == "train" and "max_violation" in r]
    axes[0].plot([r["step"] for r in logged], [max(r["max_violation"]) for r in logged], label=mode)
    final_violation[mode] = logged[-1]["max_violation"]
axes[0].set_xlabel("optimizer step")
axes[0].set_ylabel("max-violation (worst layer)")
axes[0].set_title("expert load over training")
axes[0].legend()
axes[0].grid(alpha=0.3)
for ax, (mode, (trainer, records)) in zip(axes[1:], balance_runs.items()):
    load = [r for r in records if r.get("event") == "train" and "expert_load" in r][-1]["expert_load"]
    image = ax.imshow(np.array(load), cmap="magma", vmin=0, vmax=0.5, aspect="auto")
    ax.set_title(f"{mode}: last load")
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
fig.colorbar(image, ax=axes[1:], label="fraction of assignments")
plt.show()

print("| balancing | max-violation at the end (per layer) | validation loss |")
print("|---|---|---|")
for mode, (trainer, records) in balance_runs.items():
    violations = ", ".join(f"{v:.2f}" for v in final_violation[mode])
    print(f"| {mode} | {violations} | {records[-1]['val_loss']:.3f} |")

# %% [markdown]
# The load in the last logging window (five steps) of each run, layer by layer. Without balancing, a
# few experts take most tokens. The auxiliary loss pulls the load towards uniform through the
# gradient; the loss-free biases get there without touching the gradient at all, so they cannot make
# the model worse at its real job. (Short CPU runs are noisy; judge the curves, not the third decimal.)
#
# ## The ablation: three blocks, equal training time
#
# Which block learns fastest *per second* on this machine? Each arm trains the TinyStories shape of the
# recipe (`cpu`, and the bounded `gpu` version: 4 layers, 128 wide, 4 heads, context 128; the full `gpu`
# recipe: 8 layers, 512 wide, context 256) with the same recipe, for the same number of seconds,
# and is scored on the whole validation split. Equal time, not equal steps, is the fair race: a block
# that is better per step but slower per step has to earn its cost. The clock counts training only
# (evaluations are left out), so each arm gets the same seconds of learning.
#
# **Predict, then run.** The Llama block has slightly fewer parameters than GPT-2's and is a little slower
# per step here; Llama + MoE holds two thirds more parameters and takes fewer steps. Rank the three by
# validation loss after the same seconds before you look at the table.

# %%
arm_runs = {arch: train_run(with_architecture(base_cfg, arch), f"arm-{arch}", ARM_SECONDS, log_interval=10,
                            eval_interval={"smoke": 10, "cpu": 50, "gpu-bounded": 250, "gpu": 500}[SCALE])
            for arch in ARMS}

# %% [markdown]
# Bits per byte (notebook 5) make the losses comparable with other tokenizers. The validation split's
# bytes come from its GPT-2 ids, each end-of-text token counted as one separator byte:

# %%
gpt2 = tinylm.BPETokenizer("gpt2")
gpt2_val = data.val if RECIPE_PROFILE == "gpu" else tinylm.data.corpora.prepare_tinystories(source="sample").val  # GPT-2 ids
val_ids = np.asarray(gpt2_val, dtype=np.int64)
newline = gpt2.encode("\n")[0]
val_bytes = len(gpt2.encoding.decode_bytes(np.where(val_ids == gpt2.eot_token, newline, val_ids).tolist()))
scored_bytes = val_bytes - len(gpt2.encoding.decode_bytes(val_ids[:1].tolist()))  # the first token is never a target


def bits_per_byte(loss_per_token: float) -> float:
    return loss_per_token * (len(val_ids) - 1) / (math.log(2) * scored_bytes)


fig, ax = plt.subplots(figsize=(8, 4.5))
print("| block | parameters (used per token) | steps | train tokens/s | validation loss | bits per byte |")
print("|---|---|---|---|---|---|")
for arch, (trainer, records) in arm_runs.items():
    evals = [r for r in records if r.get("event") in ("eval", "final")]
    ax.plot([r["elapsed"] for r in evals], [r["val_loss"] for r in evals], "o-", label=ARMS[arch])
    speeds = [r["tokens_per_s"] for r in records if r.get("event") == "train"]
    final = evals[-1]["val_loss"]
    print(f"| {ARMS[arch]} | {trainer.model.num_parameters():,} ({trainer.model.num_active_parameters():,}) | "
          f"{trainer.step:,} | {np.median(speeds):,.0f} | {final:.3f} | {bits_per_byte(final):.3f} |")
ax.set_xlabel("seconds of training (evaluations not counted)")
ax.set_ylabel("validation loss (nats per GPT-2 token)")
ax.set_title(f"TinyStories, {SCALE} profile: equal training time per block")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the table with the machine in mind. The Llama block's changes were chosen on GPUs at scale;
# on a 2-core CPU, for a model of a couple of million parameters trained for a minute and a half,
# the differences are small and partly set by speed per step. The mixture of experts holds several
# times the MLP parameters at the same compute per token, but its dispatch (sorting, gathering and
# scattering tokens for each expert) is overhead that a tiny model on a CPU feels in full, while a
# large model on GPUs hides it behind big matrix multiplies. Where the extra parameters pay off is
# when there are many tokens to learn from and the budget is compute, not seconds of a laptop.
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
llama_model = arm_runs["llama"][0].model.eval()
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
# - **RoPE** rotates queries and keys by their position, so scores depend on distances only; two
#   conventions (interleaved, rotate-half) differ by a fixed permutation of `W_q` and `W_k`'s rows.
# - **SwiGLU** gates one projection with another; at 2/3 of the width it has GELU's parameter count.
# - **Grouped-query attention** shares key/value heads across query heads, and the KV cache shrinks by
#   `n_head / n_kv_head`: a third for GPT-2's shape with 4 key/value heads.
# - A **mixture of experts** routes each token to its top-k experts; without balancing the routing
#   collapses, the auxiliary loss balances through the gradient, and DeepSeek-V3's bias balances
#   without it.
# - Whether a change pays off depends on the budget it is judged by: measure at equal training time on
#   the hardware you have.
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
