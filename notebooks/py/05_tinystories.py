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
# # 5 · TinyStories: a story model (51M parameters on a GPU)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/05_tinystories.ipynb)
#
# [TinyStories](https://huggingface.co/datasets/roneneldan/TinyStories) is about two million short stories that
# GPT-3.5 and GPT-4 wrote in a small child's words; models under 10M parameters learn from it to write coherent
# stories. Notebook 3b's GPT trains on it, in notebook 4's GPT-2 tokens.
#
# **What you will learn**
# - memory-mapped token files; Zipf's law;
# - a *trimmed* vocabulary for CPU runs;
# - the 51M model's parameters; mixed precision; gradient accumulation;
# - bits per byte.
#
# **Papers and code**: TinyStories ([Eldan and Li, 2023](https://arxiv.org/abs/2305.07759)); mixed precision
# ([Micikevicius et al., 2017](https://arxiv.org/abs/1710.03740)); bf16 ([Kalamkar et al., 2019](https://arxiv.org/abs/1905.12322));
# [llama2.c](https://github.com/karpathy/llama2.c).
#
# **How long it takes**: a lesson of about 86 minutes (reading, code and the `cpu` run's 215 s, by the course's
# formula), then a second sitting of about 40 minutes for the 3 exercises (10 minutes per function, 20 per
# experiment).
#
# | profile | what runs | compute time |
# |---|---|---|
# | `smoke` (CI) | a 2-layer, 32-wide model for 30 steps on the 2 MiB sample | under a minute |
# | `cpu` (2 cores) | the cpu recipe (4 layers × 128, trimmed vocabulary) for 200 s of training on the 2 MiB sample | the last cell prints it |
# | `gpu` | the 51M model for 7 minutes of training on the first 150,000 stories (`FULL_RECIPE = True`: the whole recipe, about 3 hours on an H100 at the 0.2679 s per step [measured](../docs/results/gpu-2026-11-26.md)) | see [Running on a GPU](README.md#running-on-a-gpu) |

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import bz2
import copy
import dataclasses
import json
import lzma
import math
import time
import zlib
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch

import tinylm
import tinylm.data.corpora
import tinylm.eval.loss
import tinylm.interop.llama2c
import tinylm.train.text
from tinylm.bench.measure import measure_training
from tinylm.course.plotting import LiveLossPlot
from tinylm.download import DownloadError
from tinylm.eval.uncertainty import compare, spread
from tinylm.tokenizers.gpt2 import TrimmedBPETokenizer, padded_vocab_size
from tinylm.train.progress import TRAINING_TIME

NOTEBOOK_STARTED = time.perf_counter()
plt.rcParams.update({"font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "legend.fontsize": 12})
PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
SEED = 42
print(f"profile {PROFILE}, device {DEVICE}")

# %%
FULL_RECIPE = False

# %% [markdown]
# ## From stories to token files
#
# `prepare()` writes training and validation token files; the 2 MiB sample (`cpu`, `smoke`, offline) holds out its last
# 5% of stories. Each story is GPT-2 tokens plus **one end-of-text token**, stored as `uint16`. The
# token marks story boundaries inside training windows and teaches the model to end a story, so generation stops.

# %%
track = tinylm.get_track("tinystories")
QUICK_TRAIN_STORIES = 150_000  # the gpu profile's bounded run reads the first stories of the training split
if PROFILE == "gpu" and not FULL_RECIPE:
    data = tinylm.data.corpora.prepare_tinystories(max_train_stories=QUICK_TRAIN_STORIES)
else:
    data = track.prepare(PROFILE)  # what the Trainer gets; in cpu and smoke, ids of a trimmed vocabulary (below)
gpt2_data = data if PROFILE == "gpu" else tinylm.data.corpora.prepare_tinystories(source="sample")  # the GPT-2 ids
print(f"prepared in {gpt2_data.folder.relative_to(tinylm.paths.data_dir().parent)}/: "
      f"{sorted(p.name for p in gpt2_data.folder.iterdir() if p.suffix in ('.bin', '.json'))}")
print(json.dumps({key: value for key, value in gpt2_data.meta.items() if key not in ("seconds", "tokens_per_s")},
                 indent=2))

# %% [markdown]
# `np.memmap` lets the OS read a 4 KiB page only when an index touches it: a batch reads only its windows' pages, even
# of the 450M-token full split.

# %%
gpt2 = tinylm.BPETokenizer("gpt2")
gpt2_train = tinylm.data.tokens.read_tokens(gpt2_data.folder / "train.bin")  # GPT-2 ids, as prepare() wrote them
gpt2_val = tinylm.data.tokens.read_tokens(gpt2_data.folder / "val.bin")
size_on_disk = (gpt2_data.folder / "train.bin").stat().st_size
print(f"{type(gpt2_train).__name__} of {gpt2_train.dtype}, {len(gpt2_train):,} tokens, "
      f"{size_on_disk:,} bytes on disk (2 per token), backed by {type(gpt2_train.base).__name__}")
window = gpt2_train[:24]
print(f"a slice is a {type(window).__name__} too: {window.tolist()}")
print(repr(gpt2.decode(window)))
print(f"what the Trainer gets in this profile: {type(data.train).__name__} of {data.train.dtype}, "
      f"tokenizer {type(data.tokenizer).__name__}")

# %% [markdown]
# ## The data
#
# Story lengths in the first 5M training tokens (under `cpu`, the whole sample):

# %%
STATS_TOKENS = 5_000_000
stats_ids = np.asarray(gpt2_train[:STATS_TOKENS], dtype=np.int64)
ends = np.flatnonzero(stats_ids == gpt2.eot_token)  # one end-of-text token closes each story
story_lengths = np.diff(ends, prepend=-1) - 1  # tokens between two end-of-text tokens
cpu_block = track.recipe("cpu")[0].block_size
gpu_block = track.recipe("gpu")[0].block_size

fig, ax = plt.subplots(figsize=(8, 3.5))
ax.hist(story_lengths, bins=60, color="tab:blue", alpha=0.8)
for block, name, style in [(cpu_block, "cpu", "--"), (gpu_block, "gpu", ":")]:
    ax.axvline(block, color="black", ls=style, lw=1.5, label=f"{name} context ({block} tokens)")
ax.legend(loc="upper right")  # the long tail leaves the right of the plot empty
ax.set_xlabel("story length (GPT-2 tokens)")
ax.set_ylabel("stories")
ax.set_title(f"{len(story_lengths):,} TinyStories stories")
fig.tight_layout()
plt.show()
print(f"median {np.median(story_lengths):.0f} tokens, mean {story_lengths.mean():.0f}, "
      f"90% of stories under {np.percentile(story_lengths, 90):.0f}")
for block in (cpu_block, gpu_block):
    print(f"stories longer than a context of {block}: {np.mean(story_lengths > block):.0%}")

# %% [markdown]
# A `cpu` context holds about two thirds of a typical story. Token frequencies follow **Zipf's law**, roughly
# `1/rank`:

# %%
counts = np.bincount(stats_ids, minlength=gpt2.vocab_size)  # occurrences of each GPT-2 id
order = np.argsort(-counts, kind="stable")
freqs = counts[order][counts[order] > 0] / counts.sum()
ranks = np.arange(1, len(freqs) + 1)

fig, ax = plt.subplots(figsize=(8, 3.5))
ax.loglog(ranks, freqs, label="TinyStories tokens")
ax.loglog(ranks, freqs[0] / ranks, "--", color="gray", label="Zipf: frequency ∝ 1/rank")
ax.set_xlabel("rank")
ax.set_ylabel("frequency")
ax.legend()
fig.tight_layout()
plt.show()

print("most frequent:", ", ".join(f"{gpt2.decode([i])!r} {counts[i] / counts.sum():.1%}" for i in order[:10]))
distinct = int((counts > 0).sum())
coverage = np.cumsum(freqs)
print(f"{distinct:,} of GPT-2's {gpt2.vocab_size:,} tokens occur ({distinct / gpt2.vocab_size:.0%}); "
      f"{int((counts == 1).sum()):,} of them once")
for share in (0.5, 0.9, 0.99):
    print(f"the {int(np.searchsorted(coverage, share)) + 1:,} most frequent tokens make up {share:.0%} of the text")

# %% [markdown]
# ## A trimmed vocabulary for the CPU
#
# With 50,257 tokens, a small model's output layer is most of its work. `TrimmedBPETokenizer` keeps GPT-2's
# tokenization but gives **compact ids** only to tokens in the training text; the rest share one id, **`<unk>`**,
# and `cpu` and `smoke` train on them:

# %%
if isinstance(data.tokenizer, TrimmedBPETokenizer):
    trimmed = data.tokenizer  # built by prepare() from the training split, stored with the trimmed ids
else:
    trimmed = TrimmedBPETokenizer(np.flatnonzero(counts).tolist())
print(f"{len(trimmed.kept_ids):,} kept GPT-2 tokens + <unk> = {trimmed.vocab_size:,} ids, "
      f"embedding rows {padded_vocab_size(trimmed.vocab_size, track.vocab_multiple):,}")
for text in ["Once upon a time, Lily found a shiny red ball.", "The quantum physicist ate sushi in Reykjavik."]:
    ids = gpt2.encode(text)
    print(f"\n{text!r}\n  GPT-2 ids:   {ids}\n  compact ids: {trimmed.compact(ids).tolist()}\n"
          f"  decoded:     {trimmed.decode(trimmed.encode(text))!r}")

# %% [markdown]
# Each `<unk>` decodes as "�", its word and leading space lost.
#
# ### A loss per GPT-2 token
#
# `<unk>` does not say *which* dropped token comes next, so spread its probability `p` evenly over the `dropped` tokens;
# a dropped target then loses
#
# $$-\ln\frac{p}{\text{dropped}} = -\ln p + \ln(\text{dropped}).$$
#
# `evaluate_loss` adds this **unk penalty** to each `<unk>` target, so the loss compares with an untrimmed model's,
# pessimistically if anything:

# %%
val_unk = trimmed.compact(gpt2_val) == trimmed.unk_id
dropped = gpt2.vocab_size - len(trimmed.kept_ids)
assert math.isclose(trimmed.unk_penalty, math.log(dropped)), "the penalty is ln(dropped)"
print(f"unk penalty ln({dropped:,}) = {trimmed.unk_penalty:.2f} nats")
print(f"<unk> targets in the validation split: {val_unk.sum():,} of {len(gpt2_val):,} ({val_unk.mean():.2%})")
print(f"the penalty itself adds {val_unk.mean() * trimmed.unk_penalty:.3f} nats to the mean validation loss")
print("some of them:", sorted({gpt2.decode([i]) for i in np.asarray(gpt2_val)[val_unk][:12]}))

# %% [markdown]
# Checked against a tokenizer without `<unk>`:

# %%
compact_val = trimmed.compact(gpt2_val)
T = 64
first_unk = int(np.flatnonzero(compact_val[1:] == trimmed.unk_id)[0]) + 1  # the position of the first <unk> target
window = compact_val[max(0, first_unk - T // 2):][:T + 1]
torch.manual_seed(SEED)
unk_probe = tinylm.GPT(tinylm.GPTConfig(vocab_size=padded_vocab_size(trimmed.vocab_size, track.vocab_multiple),
                                        block_size=T, n_layer=1, n_head=2, n_embd=32))
with_penalty = tinylm.eval.loss.evaluate_loss(unk_probe, window, T, 1, "cpu", tokenizer=trimmed)
no_unk = SimpleNamespace(vocab_size=trimmed.vocab_size)  # the same logits, no <unk> to penalise
without = tinylm.eval.loss.evaluate_loss(unk_probe, window, T, 1, "cpu", tokenizer=no_unk)
unk_targets = int((window[1:] == trimmed.unk_id).sum())
assert math.isclose(with_penalty - without, trimmed.unk_penalty * unk_targets / T, abs_tol=1e-6)
print(f"{T} targets, {unk_targets} of them <unk>: evaluate_loss {with_penalty:.4f} = {without:.4f} + "
      f"{unk_targets} x {trimmed.unk_penalty:.2f} / {T} nats per GPT-2 token")

# %% [markdown]
# ### The cost
#
# A step costs about 6 FLOPs per weight per token (2 forward, 4 backward; notebook 4) plus attention, so the
# `V × C` output layer costs `6·V·C`:

# %%
cpu_preset, cpu_train_cfg = track.recipe("cpu")
rows = [("GPT-2 (full)", padded_vocab_size(gpt2.vocab_size, track.vocab_multiple)),
        ("trimmed", padded_vocab_size(trimmed.vocab_size, track.vocab_multiple))]
print("| vocabulary   | rows   | parameters | output layer MFLOP/token | rest MFLOP/token | output share "
      "| logits per batch (fp32) |")
print("|--------------|--------|------------|--------------------------|------------------|--------------"
      "|-------------------------|")
for name, rows_ in rows:
    with torch.device("meta"):
        probe = tinylm.GPT(cpu_preset.config(vocab_size=rows_))
    total, head = probe.flops_per_token(), 6 * rows_ * cpu_preset.n_embd
    logits_mb = cpu_train_cfg.batch_size * cpu_preset.block_size * rows_ * 4 / 1e6
    print(f"| {name:<12} | {rows_:>6,} | {probe.num_parameters() / 1e6:>8.2f}M | {head / 1e6:>24.1f} | "
          f"{(total - head) / 1e6:>16.1f} | {head / total:>12.0%} | {logits_mb:>20,.0f} MB |")

# %% [markdown]
# Trimming cuts a step's FLOPs to about a quarter; the `gpu` recipe keeps the full vocabulary.
#
# ## The 51M-parameter model
#
# The `gpu` recipe has 8 layers, 8 heads, width 512 and context 256. A block's two LayerNorms (`2C` each), attention
# (`4C² + 4C`) and MLP (`8C² + 5C`) make `12C² + 13C`.

# %%
# NBVAL_CHECK_OUTPUT
gpu_preset, gpu_train_cfg = track.recipe("gpu")
gpu_cfg = tinylm.train.recipes.build_model_config(gpu_preset, gpt2, track.vocab_multiple)


def count_parameters(cfg: tinylm.GPTConfig) -> int:
    C, V, T, L = cfg.n_embd, cfg.vocab_size, cfg.block_size, cfg.n_layer
    per_block = 2 * (2 * C) + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    return V * C + T * C + L * per_block + 2 * C


C, V, T, L = gpu_cfg.n_embd, gpu_cfg.vocab_size, gpu_cfg.block_size, gpu_cfg.n_layer
parts = {"token embedding = tied head (V x C)": V * C, "position embedding (T x C)": T * C,
         f"{L} blocks ({L} x (12C² + 13C))": L * (12 * C * C + 13 * C), "final LayerNorm (2C)": 2 * C}
big_model = tinylm.GPT(gpu_cfg)
assert count_parameters(gpu_cfg) == sum(parts.values()) == big_model.num_parameters()
print(f"vocabulary {gpt2.vocab_size:,} padded to a multiple of {track.vocab_multiple}: {V:,} rows")
for name, n in parts.items():
    print(f"{name:>36}: {n:>11,} ({n / big_model.num_parameters():5.1%})")
print(f"{'total':>36}: {big_model.num_parameters():>11,}; the padding rows, {V - gpt2.vocab_size} x C, are "
      f"{(V - gpt2.vocab_size) * C / big_model.num_parameters():.2%} of it")
print(f"training FLOPs per token: {big_model.flops_per_token() / 1e6:.0f}M")
del big_model  # frees its 200 MB at once: nothing else refers to it

# %% [markdown]
# Half the parameters are the embedding, which as output layer costs 6 × 50,304 × 512 = 155M of the 318M training
# FLOPs per token.
#
# ## Mixed precision
#
# Exponent bits set a float's range, mantissa bits its precision: **fp32** has 8 and 23, **bf16** 8 and 7, **fp16** 5
# and 10.

# %%
# NBVAL_CHECK_OUTPUT
print("| dtype    | bits | epsilon (precision) | largest   | smallest normal |")
print("|----------|------|---------------------|-----------|-----------------|")
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    info = torch.finfo(dtype)
    print(f"| {str(dtype).removeprefix('torch.'):<8} | {info.bits:>4} | {info.eps:>19.2e} | {info.max:>9.2e} | {info.tiny:>15.2e} |")
for value in (1e-8, 1 + 1e-3, 70_000.0):
    print(f"{value!r:>8} as " + ", ".join(f"{str(dt).removeprefix('torch.')} {torch.tensor(value, dtype=dt).item():.6g}"
                                         for dt in (torch.float32, torch.bfloat16, torch.float16)))

# %% [markdown]
# **What 16 bits buy.** Tensor cores multiply 16-bit matrices faster; 16-bit activations halve memory and traffic.
# Datasheet peaks:

# %%
# NBVAL_CHECK_OUTPUT
for gpu_name in ("Tesla T4", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"):
    peaks = {name: tinylm.runtime.peak_tflops(gpu_name, dt)
             for name, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("float32", torch.float32))}
    print(f"{gpu_name:<22} " + ", ".join(f"{name} {'-' if tflops is None else f'{tflops:g}'}"
                                          for name, tflops in peaks.items()) + " TFLOP/s")

# %% [markdown]
# (On A100/H100, float32 is TF32: 10 mantissa bits.)
#
# **Why "mixed".** In bf16 `1 + 1e-3` is 1: an AdamW step of 10⁻³ would not move a weight near 1. So weights, gradients
# and AdamW's moments stay fp32; `torch.autocast` runs matmuls in 16 bits, softmax, LayerNorm and the loss in fp32.
# **fp16 also needs loss scaling**: the loss times a large `S` keeps small gradients from becoming 0, and PyTorch's
# **GradScaler** divides them by `S` before clipping, adapts `S` and skips steps that overflow. On a GPU: **bf16**
# where the hardware computes it (A100, H100, RTX 30xx and newer), else **fp16 with a GradScaler** (T4, V100).
#
# **Predict, then run.** Will 16 bits give equal, close or distant losses? Faster steps?

# %%
MP_STEPS, MP_ROUNDS = 5, 3
low = tinylm.resolve_dtype(DEVICE) if DEVICE.type == "cuda" else torch.bfloat16  # CPU autocast computes in bf16
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
mp_cfg = tinylm.train.recipes.build_model_config(track.recipe(PROFILE)[0], data.tokenizer, track.vocab_multiple)
torch.manual_seed(SEED)
mp_model = tinylm.GPT(mp_cfg).to(DEVICE)  # the model this profile trains below
initial = copy.deepcopy(mp_model.state_dict())  # both precisions start from these weights...
mp_sampler = tinylm.data.tokens.RandomWindowSampler(data.train, mp_cfg.block_size, 16 if DEVICE.type == "cuda" else 4, SEED)
mp_batches = [mp_sampler.next_batch(DEVICE) for _ in range(MP_STEPS)]  # ...and see these batches


def train_steps(dtype: torch.dtype) -> tuple[list[float], float, int]:
    """MP_STEPS AdamW steps from `initial` under autocast to `dtype`: the losses, the mean seconds per step
    (without the first, which also warms up kernels and memory), and the steps the GradScaler skipped."""
    mp_model.load_state_dict(initial)
    optimizer = torch.optim.AdamW(mp_model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=tinylm.runtime.needs_grad_scaler(DEVICE, dtype))
    losses, seconds, skipped = [], [], 0
    for x, y in mp_batches:
        start = time.perf_counter()
        with tinylm.runtime.autocast(DEVICE, dtype):
            _, loss = mp_model(x, y)
        scaler.scale(loss).backward()  # fp16: the loss times S; otherwise the scaler is off and passes it through
        scale = scaler.get_scale() if scaler.is_enabled() else None
        scaler.step(optimizer)  # unscales the gradients (fp16), then steps unless one of them overflowed
        scaler.update()
        skipped += scaler.is_enabled() and scaler.get_scale() < scale
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())  # waits for the GPU, so the time is the whole step's
        seconds.append(time.perf_counter() - start)
    return losses, sum(seconds[1:]) / (len(seconds) - 1), skipped


runs = {torch.float32: [], low: []}
for _ in range(MP_ROUNDS):  # interleaved, so that a busy moment of the machine slows both precisions alike
    for dtype in runs:
        runs[dtype].append(train_steps(dtype))
(fp32_losses, _, _), (low_losses, _, skipped) = runs[torch.float32][0], runs[low][0]
print(f"| step | fp32 loss | {DTYPE_NAMES[low]} loss | difference |")
print("|------|-----------|-----------|------------|")
for step, (a, b) in enumerate(zip(fp32_losses, low_losses), 1):
    print(f"| {step:>4} | {a:>9.5f} | {b:>9.5f} | {b - a:>+10.1e} |")
differences = [abs(b - a) for a, b in zip(fp32_losses, low_losses)]
print(f"largest difference: {max(differences):.1e} nats"
      + (f"; the GradScaler skipped {skipped} of the {MP_STEPS} fp16 steps" if skipped else ""))
assert differences[0] < 0.02, "the first loss comes from the same weights and batch: only rounding differs"
step_ms = {DTYPE_NAMES[dtype]: [seconds * 1000 for _, seconds, _ in results] for dtype, results in runs.items()}
where = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else f"{tinylm.runtime.cpu_name()}, {torch.get_num_threads()} threads"
print(f"\ntime per step on {where}, {MP_ROUNDS} interleaved rounds: "
      + ", ".join(f"{name} {spread(ms).low:.1f}-{spread(ms).high:.1f} ms" for name, ms in step_ms.items()))
print(compare("fp32", step_ms["fp32"], DTYPE_NAMES[low], step_ms[DTYPE_NAMES[low]], metric="ms per step", digits=1,
              replicate="round"))

# %% [markdown]
# The losses are close, not equal: every 16-bit matmul rounds its inputs. The Trainer's `tinylm.resolve_dtype` follows
# the rule on a GPU but picks **fp32 on every CPU**, the safe default: bf16 won here at 4 sequences a step (the
# recipe takes 16), but older runs ([docs/notes](../docs/notes/2026-11-25-cpu-training-step.md)) found it slower for a
# 1-layer model on AVX-512, and 220 to 239 ms per step against fp32's 13 to 15 without AVX-512. On an AVX-512 CPU,
# try `--dtype bfloat16`:

# %%
dtype = tinylm.resolve_dtype(DEVICE)
print(f"{DEVICE}: autocast dtype {dtype}, GradScaler {'on' if tinylm.runtime.needs_grad_scaler(DEVICE, dtype) else 'off'}")

# %% [markdown]
# ## Gradient accumulation
#
# A `gpu` step takes 1,024 sequences of 256 tokens; 128 sequences already make over 1,600M logits, so accumulation
# (notebook 3a) sums the gradients of 8 micro-batches. That buys memory, not speed.
#
# ## Training
#
# The cosine schedule follows the `max_seconds` clock (training time only), so a bounded run still ends at the low
# learning rate. Many printed fields are later notebooks' options, off here.

# %%
BOUNDED = {"smoke": {}, "cpu": dict(max_seconds=200),  # what FULL_RECIPE = False changes in each recipe
           "gpu": dict(max_seconds=420, total_batch_tokens=None, grad_accum_steps=2, warmup_steps=100, eval_interval=0)}
model_preset, train_cfg = track.recipe(PROFILE)
if not FULL_RECIPE:
    train_cfg = dataclasses.replace(train_cfg, **BOUNDED[PROFILE])
tokenizer = data.tokenizer
model_cfg = tinylm.train.recipes.build_model_config(model_preset, tokenizer, track.vocab_multiple)
print(model_cfg)
print(train_cfg)
model = tinylm.GPT(model_cfg)
tokens_per_step = train_cfg.batch_size * train_cfg.accumulation_steps(model_cfg.block_size) * model_cfg.block_size
print(f"{model.num_parameters():,} parameters; {tokens_per_step:,} tokens per optimizer step")

# %%
run_dir = tinylm.paths.runs_dir() / f"notebook-05-{PROFILE}"
for stale in ("metrics.jsonl", "best.pt", "last.pt"):  # a fresh run each time the notebook runs
    (run_dir / stale).unlink(missing_ok=True)

live_plot = LiveLossPlot(title=f"tinystories, {PROFILE} profile")
trainer = tinylm.Trainer(model, train_cfg, data.train, data.val, out_dir=run_dir, tokenizer=tokenizer,
                         device=DEVICE, callbacks=[live_plot], sample_prompt=track.sample_prompt)
start = time.perf_counter()
final = trainer.fit()
seconds = time.perf_counter() - start
tokens_seen = trainer.step * tokens_per_step
print(f"trained {trainer.step:,} steps in {trainer.elapsed:.0f} s of training time ({seconds:.0f} s wall clock, "
      f"evaluations, checkpoints and samples included): {tokens_seen:,} tokens, "
      f"{tokens_seen / len(data.train):.2f}x the training split's tokens\n{TRAINING_TIME}")
train_slice = data.train[: len(data.val)]  # as many training tokens as validation has, scored the same way
train_slice_loss = tinylm.eval.loss.evaluate_loss(model, train_slice, model_cfg.block_size, train_cfg.eval_batch_size,
                                                  DEVICE, tinylm.runtime.autocast(DEVICE, trainer.dtype), tokenizer)
known_val_loss = tinylm.eval.loss.evaluate_loss(model, data.val, model_cfg.block_size, train_cfg.eval_batch_size, DEVICE,
                                                tinylm.runtime.autocast(DEVICE, trainer.dtype), tokenizer, skip_unk=True)
print(f"validation loss over the whole split: {final['val_loss']:.3f} nats per GPT-2 token; a training slice as "
      f"long: {train_slice_loss:.3f}; the gap: {final['val_loss'] - train_slice_loss:+.3f}\n"
      f"on the validation targets that are not <unk> (a training split has none): {known_val_loss:.3f}; "
      f"the gap: {known_val_loss - train_slice_loss:+.3f}")

# %% [markdown]
# The last two validation points are the last periodic evaluation and the final one. `<unk>`, never a training
# target, gets little probability: its targets cost about 25 nats each (10.68 of them penalty), hence 3.218 against
# 3.067 without them. The gap on the others, 0.159 nats after 5.35 passes, is memorising plus validation being other
# stories (notebook 3b separates the two).
#
# ## Stories
#
# Samples a little sharper than the model's distribution (notebook 7):

# %%
prompts = ["Once upon a time", "Lily and Tom went to the park", "The little dog was sad because"]
for i, prompt in enumerate(prompts):
    text = tinylm.generate_text(model, tokenizer, prompt, max_new_tokens=150, temperature=0.8, top_k=40, seed=SEED + i)
    story = text.split("<|endoftext|>")[0]
    print(f"=== {prompt!r} ===\n{story}\n")

# %% [markdown]
# Grammar and vocabulary are TinyStories', but names drift (John, Jack, Joe) and no plot holds.
#
# ## Bits per byte
#
# A loss per token compares only runs with one tokenizer (longer tokens mean fewer, harder predictions); bits per byte
# divides by bytes instead:
#
# $$\text{bits per byte} = \frac{\text{loss per token} \times \text{tokens}}{\ln 2 \times \text{bytes}}.$$
#
# An arithmetic coder driven by the model compresses the text to that size, so it compares with compressors.

# %%
val_ids = np.asarray(gpt2_val, dtype=np.int64)
val_bytes = gpt2.encoding.decode_bytes(val_ids[val_ids != gpt2.eot_token].tolist())  # the stories, end to end
val_targets = val_ids[1:]
scored_tokens = len(val_targets)
scored_bytes = len(gpt2.encoding.decode_bytes(val_targets[val_targets != gpt2.eot_token].tolist()))
print(f"validation: {len(val_ids):,} tokens, {len(val_bytes):,} bytes, {len(val_bytes) / len(val_ids):.2f} bytes per token")


def to_bits_per_byte(loss_per_token: float) -> float:
    return loss_per_token * scored_tokens / (math.log(2) * scored_bytes)


assert math.isclose(to_bits_per_byte(2.0), tinylm.train.text.bits_per_byte(2.0, val_ids, gpt2))  # the package's


unigram_log_probs = np.log((counts + 1) / (counts.sum() + gpt2.vocab_size))
baselines = {"uniform over 50,257 tokens": math.log(gpt2.vocab_size),
             "unigram (token frequencies)": -unigram_log_probs[val_ids[1:]].mean()}
print("\n| model                        | nats per GPT-2 token | bits per byte |")
print("|------------------------------|----------------------|---------------|")
for name, loss in baselines.items():
    print(f"| {name:<28} | {loss:>20.3f} | {to_bits_per_byte(loss):>13.3f} |")
for name, compress in [("zlib -9", lambda b: zlib.compress(b, 9)), ("bzip2", bz2.compress),
                       ("xz -9e", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME))]:
    print(f"| {name + ' (compressor)':<28} | {'':>20} | {len(compress(val_bytes)) * 8 / len(val_bytes):>13.3f} |")
train_ids = np.asarray(gpt2_train, dtype=np.int64)
train_bytes = gpt2.encoding.decode_bytes(train_ids[train_ids != gpt2.eot_token].tolist())
xz_size = lambda b: len(lzma.compress(b, preset=9 | lzma.PRESET_EXTREME))  # noqa: E731
xz_primed = (xz_size(train_bytes + val_bytes) - xz_size(train_bytes)) * 8 / len(val_bytes)
print(f"| {'xz -9e after the train text':<28} | {'':>20} | {xz_primed:>13.3f} |")
bits_per_byte = to_bits_per_byte(final["val_loss"])
print(f"| {'this GPT (' + PROFILE + ' profile)':<28} | {final['val_loss']:>20.3f} | {bits_per_byte:>13.3f} |")
print(f"training text: {len(train_bytes):,} bytes; the model needs {bits_per_byte / xz_primed:.0%} of the bits "
      "xz needs after reading it")

# %% [markdown]
# The model and the unigram learned the training stories, so the fair control is xz after the training text (its 64
# MiB window holds it), charged only for the validation bytes. The model also pays for end-of-text tokens, which
# favours the compressors. Story by story (at most 200, so all 115):

# %%
EVAL_STORIES = 200
story_ids = np.split(val_ids, np.flatnonzero(val_ids == gpt2.eot_token) + 1)  # each ends with an end-of-text token
stories = [gpt2.decode(ids[:-1]) for ids in story_ids if len(ids) > 1 and ids[-1] == gpt2.eot_token][:EVAL_STORIES]
first = tinylm.eval.loss.text_loss(model, tokenizer, stories[0])
scored = tinylm.eval.loss.texts_loss(model, tokenizer, stories)  # text_loss for each story, nats and bytes added up
print(f"first story: {first['tokens']} tokens, {first['bytes']} bytes, "
      f"{first['loss']:.3f} nats per token, {first['bits_per_byte']:.3f} bits per byte")
print(f"{scored['texts']} stories: {scored['tokens']:,} tokens, {scored['bytes']:,} bytes, {scored['loss']:.3f} nats "
      f"per token, {scored['bits_per_byte']:.3f} bits per byte (the whole split: {bits_per_byte:.3f})")

# %% [markdown]
# Story by story scores lower, not higher: fewer of its windows start mid-story without context, and its 115
# end-of-text targets go unscored. **A published model.** llama2.c's stories15M (online only) read far more
# TinyStories, maybe these very stories: a lower figure would not be a fair win.

# %%
try:
    reference, reference_tokenizer = tinylm.interop.llama2c.load_stories15m()
except DownloadError as error:
    reference = None
    print(f"stories15M needs the network once, so this cell skips: {error}")
if reference is not None:
    theirs = tinylm.eval.loss.texts_loss(reference, reference_tokenizer, stories)
    print(f"stories15M on the same {theirs['texts']} stories: {theirs['loss']:.3f} nats per Llama 2 token, "
          f"{theirs['bits_per_byte']:.3f} bits per byte; this model: {scored['bits_per_byte']:.3f} bits per byte")

# %% [markdown]
# ## What you learned
#
# - Memory-mapped `uint16` token files, an end-of-text token per story.
# - A trimmed vocabulary with an `<unk>` penalty: loss per GPT-2 token at a quarter of the FLOPs.
# - Half the 51M model is its embedding: as output layer, half the FLOPs.
# - Mixed precision: 16-bit compute, fp32 weights, a GradScaler for fp16.
# - Accumulation buys memory, not speed; bits per byte compares tokenizers and compressors.
#
# ## Exercises
#
# Complete each function (replace `raise NotImplementedError`), then run the check below it.
#
# **1. The unk penalty.** Given a trimmed model's logits `(N, kept + 1)` (the last column is `<unk>`),
# compact targets `(N,)`, the `<unk>` id and the penalty, return the mean loss per GPT-2 token: the
# cross-entropy, plus `unk_penalty` for each target that is `<unk>`. The check builds the full
# distribution over a toy base vocabulary, with `<unk>`'s probability shared evenly by the dropped
# tokens, and compares.

# %%
from tinylm.course.exercises import check


def loss_per_gpt2_token(logits: torch.Tensor, targets: torch.Tensor, unk_id: int, unk_penalty: float) -> torch.Tensor:
    raise NotImplementedError


def test_loss_per_gpt2_token():
    generator = torch.Generator().manual_seed(0)
    base_vocab, kept = 12, [0, 3, 4, 7, 11]  # a toy "GPT-2" of 12 tokens, 5 of them kept, 7 dropped
    dropped = [i for i in range(base_vocab) if i not in kept]
    to_compact = torch.full((base_vocab,), len(kept))
    to_compact[kept] = torch.arange(len(kept))
    logits = torch.randn(64, len(kept) + 1, generator=generator)
    base_targets = torch.randint(base_vocab, (64,), generator=generator)
    probs = logits.softmax(dim=-1)
    full = torch.empty(64, base_vocab)
    full[:, kept] = probs[:, :-1]
    full[:, dropped] = probs[:, -1:] / len(dropped)  # <unk>'s probability, shared evenly
    assert torch.allclose(full.sum(dim=-1), torch.ones(64)), "a proper distribution over the base vocabulary"
    expected = -full.log().gather(1, base_targets[:, None]).mean()
    loss = loss_per_gpt2_token(logits, to_compact[base_targets], len(kept), math.log(len(dropped)))
    assert torch.allclose(torch.as_tensor(loss, dtype=torch.float32), expected, atol=1e-5), \
        f"{float(loss):.4f} != {expected:.4f}: add unk_penalty to the loss of every <unk> target, then average"


check(test_loss_per_gpt2_token)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# import torch.nn.functional as F
#
#
# def loss_per_gpt2_token(logits, targets, unk_id, unk_penalty):
#     losses = F.cross_entropy(logits, targets, reduction="none")
#     return (losses + unk_penalty * (targets == unk_id)).mean()
# ```
# </details>
#
# **2. Any model's size.** Generalise `count_parameters` to every `bias` and `tie_weights` setting: with `bias=False` the
# Linear layers and LayerNorms have no biases, and with `tie_weights=False` the head is a matrix of its
# own.

# %%
def count_parameters_any(cfg: tinylm.GPTConfig) -> int:
    raise NotImplementedError


def test_count_parameters_any():
    configs = [gpu_cfg, tinylm.GPT2_124M, dataclasses.replace(gpu_cfg, bias=False),
               dataclasses.replace(gpu_cfg, tie_weights=False),
               tinylm.GPTConfig(vocab_size=6912, block_size=128, n_layer=4, n_head=4, n_embd=128, bias=False, tie_weights=False)]
    for cfg in configs:
        with torch.device("meta"):
            expected = tinylm.GPT(cfg).num_parameters()
        assert count_parameters_any(cfg) == expected, f"{cfg}: {count_parameters_any(cfg):,} != {expected:,}"
    assert count_parameters_any(tinylm.GPT2_124M) == 124_439_808


check(test_count_parameters_any)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def count_parameters_any(cfg):
#     C, V, T, L, b = cfg.n_embd, cfg.vocab_size, cfg.block_size, cfg.n_layer, int(cfg.bias)
#     layer_norm = C + b * C
#     per_block = 2 * layer_norm + (3 * C * C + b * 3 * C) + (C * C + b * C) + (4 * C * C + b * 4 * C) + (4 * C * C + b * C)
#     head = 0 if cfg.tie_weights else V * C
#     return V * C + T * C + L * per_block + layer_norm + head
# ```
# </details>
#
# **3. An experiment: what a bigger batch buys on your machine.** Write `tokens_per_second(batch_size)`: time
# training steps of `mp_model` (the model of the mixed-precision section, in fp32) from `initial`, on batches
# drawn with a `tinylm.data.tokens.RandomWindowSampler`, leaving out the first step (it warms up kernels and
# memory), and return the training tokens per second of the fastest step; on a GPU, `loss.item()` waits for
# the step to finish. The check runs it in three rounds at 4 and at 16 sequences, interleaved with the package's own
# timing (`tinylm.bench.measure.measure_training`), keeps each one's best, and asks yours to be within a factor of 2
# of the package's: it has to time whole steps on this machine (a forward pass alone, about a third of a step's
# arithmetic, lands outside).
#
# The range of the ratio (tokens/s at 16) / (tokens/s at 4) is theory. A step of 16 sequences does four times
# the arithmetic of a step of 4, so it cannot be faster than one: the ratio is at most 4. Nor should it take
# longer than four steps of 4, which do the same arithmetic plus four times the fixed cost of a step (the
# optimizer update, launching the kernels): the ratio is at least 1. The check allows a margin for a machine
# shared with other work. Predict where in that range your machine lands, and what that says about the batch
# size a CPU run should use.

# %%
def tokens_per_second(batch_size: int) -> float:
    raise NotImplementedError


def test_batch_speed_ratio():
    mine, package = {4: [], 16: []}, {4: [], 16: []}
    for _ in range(3):  # interleaved rounds, yours beside the package's: a busy spell hits both
        for batch_size in mine:
            mine[batch_size].append(tokens_per_second(batch_size))
            package[batch_size].append(measure_training(mp_cfg, batch_size, steps=3, warmup=1, device=str(DEVICE),
                                                        dtype="float32")["tokens_per_s"])
    mine = {batch_size: max(rates) for batch_size, rates in mine.items()}
    for batch_size, measured in mine.items():
        best = max(package[batch_size])
        assert best / 2 < measured < best * 2, (
            f"batch {batch_size}: {measured:,.0f} tokens/s, but the package measures {best:,.0f} here: time whole "
            "steps (forward, backward, optimizer) and divide the tokens by the seconds")
    ratio = mine[16] / mine[4]
    assert ratio <= 4.4, f"{ratio:.2f}: a batch 4 times larger did more than 4 times the tokens per second"
    assert ratio >= 0.8, f"{ratio:.2f}: the batch of 16 trained fewer tokens per second than the batch of 4"
    print(f"on this machine a batch of 16 trains {ratio:.2f} times the tokens per second of a batch of 4")


check(test_batch_speed_ratio)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def tokens_per_second(batch_size, steps=6):
#     sampler = tinylm.data.tokens.RandomWindowSampler(data.train, mp_cfg.block_size, batch_size, SEED)
#     mp_model.load_state_dict(initial)
#     optimizer = torch.optim.AdamW(mp_model.parameters(), lr=1e-3)
#     times = []
#     for _ in range(steps + 1):
#         x, y = sampler.next_batch(DEVICE)
#         start = time.perf_counter()
#         _, loss = mp_model(x, y)
#         loss.backward()
#         optimizer.step()
#         optimizer.zero_grad(set_to_none=True)
#         loss.item()  # on a GPU: wait for the step
#         times.append(time.perf_counter() - start)
#     return batch_size * mp_cfg.block_size / min(times[1:])
# ```
#
# Close to 1 means the cores were already fully occupied at a batch of 4: the bigger batch trains no more tokens
# per second, only with a steadier gradient per step. Close to 4 means a step's fixed cost dominated, and the
# bigger batch came almost free. Notebook 3b's `cpu` recipe was chosen by whole runs on a fixed time budget, which
# weigh this speed against how much each step learns ([Why the cpu recipes look as they
# do](README.md#why-the-cpu-recipes-look-as-they-do)).
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
