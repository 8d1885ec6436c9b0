# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# build-nanogpt. On one H100 that is hours of work, on eight under an hour (the arithmetic is below).
# Every piece of that run is in `tinylm`, and every piece runs here, on a CPU, at a size that takes
# seconds: the data pipeline, a real two-process data-parallel run, the HellaSwag benchmark, and the
# export to Hugging Face. What cannot run here, the 124M run itself, you will *budget* instead.
#
# **What you will learn**
# - how to budget a training run: parameters, FLOPs per token, `6ND`, and GPU-hours at a given MFU;
# - how a 10B-token corpus becomes token shards, and how a loader hands each GPU its own windows of them
#   and resumes on a different number of GPUs;
# - what distributed data parallel (DDP) does on every step, and how the tokens per step stay fixed when
#   the number of GPUs changes; then a real 2-process run, launched with `torchrun` from this notebook;
# - what bf16 and `torch.compile` buy on a GPU, and how MFU measures how well a run uses one;
# - how HellaSwag scores a model with no generation at all, and `acc` against `acc_norm`;
# - how a trained model is exported to the layout `transformers` (and the Hugging Face Hub) use.
#
# **How long it takes**
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | a 2-process smoke run of 10 steps, 16 HellaSwag examples | ~30 s (a minute on a busy machine) |
# | `cpu` (2-core laptop) | a 2-process smoke run of 100 steps, 200 HellaSwag examples | 35 s (70 s on a busy machine) |
# | `gpu` | the same demonstrations as `cpu` (the 124M run itself is a command line, below) | not measured |
#
# The data cells use 120 documents of FineWeb-Edu: the offline mirror's sample when `TINYLM_DATA_MIRROR`
# is set, otherwise the first 120 documents streamed from Hugging Face (as the track's `smoke` and `cpu`
# profiles do). Only the `gpu` profile of the command line prepares the whole 10B-token `sample-10BT`.

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
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import tinylm
import tinylm.runtime
from tinylm.data import read_tokens
from tinylm.hellaswag import ending_losses, evaluate_hellaswag, locate_val, read_examples, render_example
from tinylm.shards import ShardedWindowLoader, read_progress

PROFILE = tinylm.resolve_profile()
REPO = Path(tinylm.__file__).resolve().parent.parent  # the clone: paths are printed relative to it


def rel(path) -> str:
    """A path as printed in this notebook: relative to the repository, never a machine's absolute path."""
    path = Path(path).resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name


print(f"profile {PROFILE}")

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
# (notebook 5: GPU matmuls run faster on multiples of 64); the 47 extra rows are never a target, so the
# model learns to give them almost no probability.

# %%
# NBVAL_CHECK_OUTPUT
track = tinylm.get_track("gpt2-124m")
gpu_preset, gpu_train_cfg = track.recipe("gpu")
padded_cfg = dataclasses.replace(gpu_preset, vocab_size=50_304)  # what build_model_config gives with GPT-2's tokenizer
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
# rule of thumb for the total is **6ND**: 6 FLOPs per parameter per token, times N parameters, times D
# tokens. Dividing by what a GPU delivers turns FLOPs into time. An H100 (SXM) peaks at 989 TFLOP/s for
# dense bf16 matmuls; a real run achieves a fraction of that, its *model FLOPs utilisation* (MFU), more on
# which below. The table is **arithmetic, not a measurement**, and the price is an **assumption**: $3.00
# per H100-hour, a round number for an on-demand cloud GPU (prices vary several-fold between providers).

# %%
# NBVAL_CHECK_OUTPUT
D = gpu_train_cfg.max_steps * gpu_train_cfg.total_batch_tokens
flops_6nd = 6 * N * D
flops_total = model_124m.flops_per_token() * D
H100_PEAK = 989e12  # FLOP/s, dense bf16 (tinylm.runtime's table)
PRICE_PER_GPU_HOUR = 3.00  # US dollars: an ASSUMPTION, not a quote
print(f"D = {gpu_train_cfg.max_steps:,} steps x {gpu_train_cfg.total_batch_tokens:,} tokens = {D:,} tokens")
print(f"6ND = {flops_6nd:.3e} FLOPs; with attention (flops_per_token x D) {flops_total:.3e} FLOPs")
print()
print("| MFU | H100-hours | on 8 H100s | cost at $3.00 per GPU-hour |")
print("|-----|------------|------------|----------------------------|")
for mfu in (0.3, 0.4, 0.5):
    gpu_hours = flops_total / (mfu * H100_PEAK) / 3600
    cost = f"${gpu_hours * PRICE_PER_GPU_HOUR:.0f}"
    print(f"| {mfu:.0%} | {gpu_hours:10.1f} | {gpu_hours / 8 * 60:6.0f} min | {cost:>26} |")

# %% [markdown]
# Eight GPUs cost the same GPU-hours as one; they deliver them eight times sooner. Two things the table
# leaves out. Evaluation: the trainer scores the *whole* validation shard (100M tokens when prepared from
# Hugging Face) every `eval_interval` steps, a forward pass only, about a third of the training FLOPs per
# token:

# %%
# NBVAL_CHECK_OUTPUT
val_tokens_hf = tinylm.shards.HF_SHARD_TOKENS
evaluations = gpu_train_cfg.max_steps // gpu_train_cfg.eval_interval + 1  # every eval_interval steps, and at the end
eval_flops = evaluations * val_tokens_hf * model_124m.flops_per_token() / 3
print(f"every {gpu_train_cfg.eval_interval} steps: {evaluations} evaluations x {val_tokens_hf:,} tokens: "
      f"{eval_flops:.2e} FLOPs, {eval_flops / flops_total:.0%} on top of training")
every_250 = (gpu_train_cfg.max_steps // 250 + 1) * val_tokens_hf * model_124m.flops_per_token() / 3
print(f"every 250 steps it would be {every_250 / flops_total:.0%}")

# %% [markdown]
# That is why the recipe evaluates every 1,000 steps rather than build-nanogpt's 250: a shorter
# validation split would save most of the rest, at the price of a noisier estimate. The other thing left out is the start-up (compiling, the first evaluation)
# and anything that stalls the GPUs, which is exactly what MFU captures.
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
print(f"{rel(folder)}/")
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
#    the communication with the rest of the backward pass;
# 5. steps its own AdamW with that averaged gradient. Same weights, same gradient, same update: the
#    copies stay identical without ever sending weights.
#
# Rank 0 alone writes logs and checkpoints. The averaged gradient of step 4 really is the big batch's
# gradient, because the loss is a mean: the mean over 8 sequences is the average of two means over 4.
# Check it with a small model and the two ranks' batches:

# %%
smoke_preset, smoke_train_cfg = track.recipe("smoke")
smoke_cfg = tinylm.tracks.build_model_config(smoke_preset, tokenizer, track.vocab_multiple)
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
# ### Gradient accumulation and `no_sync`
#
# GPT-2's recipe wants 524,288 tokens per optimizer step, far more than fit in one GPU's memory at once.
# Each rank therefore runs several **micro-steps** (forward + backward on `batch_size` sequences) and adds
# up their gradients before stepping. An all-reduce after every micro-step would be wasted traffic: only
# the sum matters. So the trainer wraps all micro-steps but the last in DDP's `no_sync()`, and the
# gradients travel once per optimizer step:
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

# %%
DDP_STEPS = 10 if PROFILE == "smoke" else 100
ddp_dir = tinylm.paths.runs_dir() / "notebook-06-ddp"
command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tinylm.train", "gpt2-124m", "--profile", "smoke", "--out", str(ddp_dir), "--overwrite",
           "--max-steps", str(DDP_STEPS), "--device", "cpu"]
env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, even where a GPU is present
(ddp_dir / "metrics.jsonl").unlink(missing_ok=True)  # a fresh log each time the notebook runs
start = time.perf_counter()
try:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
except subprocess.CalledProcessError as error:
    print(error.stdout[-3000:], error.stderr[-3000:], sep="\n")
    raise
ddp_seconds = time.perf_counter() - start
print(f"torchrun with 2 processes: {ddp_seconds:.0f} s in all (start-up, training, evaluation, a sample)\n")
log, _, sample = result.stdout.partition(track.sample_prompt)  # the run ends with a 300-token sample
print(log.replace(str(ddp_dir), rel(ddp_dir)).rstrip())
print(f"sample: {(track.sample_prompt + sample)[:150]!r} ...")
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

fig, ax = plt.subplots(figsize=(6, 2.5))
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
# checkpoint. Most of its wall-clock is fixed costs: starting three Python processes, scoring the 20,000
# validation tokens against 50,304 logits each, and the sample.
#
# *Is two processes faster than one?* On a GPU cluster each process has its own GPU, and throughput
# grows almost linearly with their number (minus the all-reduce). On the two shared CPU cores this
# notebook runs on, the two processes split the same cores that one process with two threads would
# use, and the timing is dominated by noise from everything else on the machine, so this notebook does
# not time one against the other.
#
# ## bf16, `torch.compile` and MFU
#
# Two switches make a GPU run several times faster; the gpu recipe turns both on, and on this CPU both
# stay off.
#
# **bf16.** A GPU's tensor cores multiply 16-bit numbers far faster than 32-bit ones: an H100 SXM peaks at
# 989 TFLOP/s for dense bf16 matmuls and 67 TFLOP/s for plain fp32. Under autocast the weights stay in
# fp32 (the optimizer updates them precisely), while the matmuls read bf16 copies and write bf16
# activations, which also halves the memory traffic. bf16 keeps fp32's 8-bit exponent (its range) and
# gives up mantissa bits (precision), so unlike fp16 it needs no loss scaling; precision-sensitive steps
# (softmax, LayerNorm, the loss) run in fp32. On the course's CPU, bf16 autocast is about **30× slower**
# than fp32: the CPU has no fast bf16 matmul units, so every conversion is pure overhead.
# `tinylm.runtime.resolve_dtype` picks bf16 on GPUs that support it and fp32 on CPUs.
#
# **`torch.compile`** traces the model's Python code into a graph and generates fused kernels: the
# elementwise operations after a matmul (bias, GELU, residual add, LayerNorm) become one kernel that reads
# and writes memory once instead of once per operation, and the Python overhead of launching hundreds of
# small kernels per step disappears. It pays with compile time at the start, seconds to minutes, which a
# 19,073-step run earns back many times. Here, compiling even the tiny smoke model takes about 40 s,
# longer than the whole smoke run it would speed up. (`--compile` / `--no-compile` switch it on the
# command line; evaluation, sampling and checkpoints keep using the plain model.)
#
# **MFU**, model FLOPs utilisation, says how much of the hardware's peak a run turns into training:
#
# $$\text{MFU} = \frac{\text{flops\_per\_token} \times \text{tokens/s}}{\text{peak FLOP/s per GPU} \times \text{processes}}$$
#
# The trainer logs it with every training line when the GPU's peak is known and the run is in bf16 or
# fp16; the peaks (dense 16-bit, from the vendors' datasheets) are in `tinylm/runtime.py`:

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
# knowing:

# %%
smoke_model_flops = probe.flops_per_token()  # the smoke recipe's model, as trained above
print(f"smoke model: {smoke_model_flops / 1e6:.1f} MFLOP per token x {ddp_tokens_per_s:,.0f} tokens/s "
      f"= {smoke_model_flops * ddp_tokens_per_s / 1e9:.1f} GFLOP/s on two CPU cores; "
      f"one H100 at 40% MFU does {0.4 * H100_PEAK / 1e12:.0f} TFLOP/s")

# %% [markdown]
# ## HellaSwag: scoring without generating
#
# HellaSwag asks a model to finish a sentence. Each example is a context and four endings, one of them
# right; the wrong ones were written by a language model and kept when they fooled other models, so they
# read plausibly. The model does not generate anything: it **scores** each ending. Each of the four rows
# is the context followed by one ending, and only the ending's tokens are scored: the cross-entropy of
# each ending token given everything before it. The ending with the lowest loss is the model's answer.
# Two ways to compare the four losses:
#
# - **`acc`**: the lowest *summed* loss, the most probable ending. It favours short endings, since every
#   token adds loss;
# - **`acc_norm`**: the lowest *mean* loss per token. This is the number usually quoted; GPT-2 124M
#   reaches about 29.5% on the validation set, against 25% for chance.
#
# The official validation file is on GitHub (`rowanz/hellaswag`); `locate_val()` says which file it found:

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
# `evaluate_hellaswag` does this for a list of examples and counts (under DDP, each rank scores every
# W-th example and the counts are summed). The track runs it at every evaluation: the 2-process run above
# logged `hellaswag_acc_norm` on 8 examples. With a few examples and a model that has read a few thousand
# tokens, expect chance, give or take the noise of a small sample:

# %%
HELLASWAG_EXAMPLES = 16 if PROFILE == "smoke" else 200
start = time.perf_counter()
scores = evaluate_hellaswag(ddp_model, tokenizer, examples[:HELLASWAG_EXAMPLES])
print(scores, f"({time.perf_counter() - start:.1f} s)")
standard_error = (0.25 * 0.75 / scores["examples"]) ** 0.5
print(f"chance is 25% ± {standard_error:.0%} (one standard error) on {scores['examples']} examples")

# %% [markdown]
# ## Sharing the model: the `transformers` layout
#
# A trained model becomes useful to others when it loads with the tools they already use. tinylm's
# parameter names are GPT-2's own, so `tinylm.interop.to_hf_gpt2` writes a folder that Hugging Face
# `transformers` loads as a `GPT2LMHeadModel` (`config.json` and `model.safetensors`; four matrices are
# transposed, because `transformers` stores them as `Conv1D` weights). That folder is what
# `huggingface-cli upload` puts on the Hub; `tinylm.interop.from_hf_gpt2` goes the other way, e.g. to
# start from OpenAI's GPT-2 weights. From a terminal:
# `python -m tinylm.interop export --ckpt runs/gpt2-124m-gpu --out hf/gpt2-124m`.

# %%
import transformers
from transformers import GPT2LMHeadModel

from tinylm.interop import to_hf_gpt2

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
# ## Running it for real
#
# From the README: prepare the data once, then train on one GPU, eight, or two machines of eight.
#
# ```bash
# python -m tinylm.prepare fineweb-edu                    # GPT-2 tokens in uint16 shards of 100M tokens
# python -m tinylm.train gpt2-124m                        # one GPU
# torchrun --standalone --nproc_per_node=8 -m tinylm.train gpt2-124m     # eight GPUs on one machine
# # two machines with eight GPUs each: run this on both; HOST is the first machine's address
# torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 --rdzv-id=gpt2-124m \
#     -m tinylm.train gpt2-124m
# ```
#
# On 2 × 8 GPUs the recipe's batch of 64 does not divide (the error above): add `--batch-size 32`. A run
# checkpointed on one number of GPUs resumes on another with `--resume` (and a `--batch-size` that keeps
# 524,288 tokens per step), because the loader's state does not depend on it.
#
# ## Results
#
# Measured rows only, each with its hardware; the table is printed from the run's own `metrics.jsonl`:

# %%
print("| run | hardware | result |")
print("|---|---|---|")
print(f"| `torchrun --nproc_per_node=2 -m tinylm.train gpt2-124m --profile smoke --max-steps {final_record['step']}` "
      f"| 2 CPU processes (gloo) on 2 shared cores | validation loss {final_record['val_loss']:.4f} (20,000 tokens), "
      f"{ddp_tokens_per_s:,.0f} tokens/s, HellaSwag acc_norm {final_record['hellaswag_acc_norm']:.3f} "
      f"on {final_record['hellaswag_examples']} examples (offline substitute file) |")
print("| `python -m tinylm.train gpt2-124m` (the 124M recipe) | GPU | not measured (no GPU was available) |")

# %% [markdown]
# ## Exercises
#
# Complete each function (replace `raise NotImplementedError`), then run the check below it.
#
# **1. Micro-steps per GPU.** Return how many micro-steps each process runs per optimizer step, and raise
# a `ValueError` when the tokens per step cannot be split evenly.

# %%
from tinylm.exercises import check


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
