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
# # 3 · Training a character-level GPT on Shakespeare
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/03_train_char_gpt.ipynb)
#
# In notebook 2 you built every piece of a GPT and checked it against `tinylm`. Now you train one with
# the package's training loop and look hard at what it learned.
#
# **What you will learn**
# - what one training step does: micro-batches, the scaled loss, gradient clipping, AdamW, and a
#   warmup + cosine learning-rate schedule;
# - how to read train and validation loss curves, and how far the GPT gets beyond the bigram baseline;
# - how temperature and top-k change samples;
# - how much the model uses its context, measured position by position;
# - how a checkpoint stores a run, and how to load it back.
#
# **How long it takes**
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | a tiny model for a few steps | ~10 s |
# | `cpu` (2-core laptop) | the cpu recipe (1 layer, 0.2M parameters), 6,000 steps (52 s of training in the committed run) | 59 to 87 s |
# | `gpu` | the gpu recipe (6 layers, 10.8M parameters, 5000 steps) | not measured |

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import tinylm
from tinylm.data import evaluation_windows
from tinylm.plotting import LiveLossPlot, plot_losses

PROFILE = tinylm.resolve_profile()
DEVICE = tinylm.resolve_device()
print(f"profile {PROFILE}, device {DEVICE}")

# %% [markdown]
# ## The data and the recipe
#
# A *track* bundles a dataset with a recipe per profile. `prepare()` downloads tinyshakespeare (or copies
# it from the offline mirror), builds the character tokenizer and writes the 90/10 split as `uint16`
# token files — the same steps you wrote by hand in notebook 1.

# %%
track = tinylm.get_track("shakespeare-char")
data = track.prepare()
tokenizer = data.tokenizer
model_preset, train_cfg = track.recipe(PROFILE)
model_cfg = tinylm.tracks.build_model_config(model_preset, tokenizer)
print(model_cfg)
print(train_cfg)

# %%
# NBVAL_CHECK_OUTPUT
print(f"vocabulary: {tokenizer.vocab_size} characters; train {len(data.train):,} tokens, validation {len(data.val):,} tokens")

# %% [markdown]
# ### Why the `cpu` recipe has a single block
#
# The `gpu` recipe is a 6-layer, 384-wide GPT. The `cpu` recipe, a 1-layer, 128-wide one, is not a toy
# version of it: it is the recipe that reached the lowest validation loss in 70 seconds on a 2-core
# machine. In 70 s any of these models sees only a few million characters, so the number of optimizer
# steps limits it, not its capacity. A CPU's speed is set by the model's size (the batch size barely
# changes tokens per second), so fewer layers mean more steps. Measured at equal wall-clock:
#
# | layers × width | steps in 70 s | validation loss |
# |---|---|---|
# | 4 × 128 | ~1,600 | 1.80 |
# | 3 × 128 | ~2,150 | 1.75 |
# | 2 × 128 | ~2,800 | 1.70 |
# | **1 × 128** | **~5,000** | **1.66** |
# | 1 × 96 | 6,000 | 1.67 |
# | 1 × 192 | ~3,000 | 1.74 |
#
# (The 1-layer rows are real 70-second runs; the deeper ones were trained for the number of steps that fits
# in 70 s at their measured speed.) The learning rate matters as much: 6e-3 with β₂ = 0.99 instead of
# nanoGPT's 1e-3 took the 4-layer model from 1.95 to 1.78 in the same number of steps. Give training ten
# times longer and the deeper models win; that is the `gpu` recipe.

# %% [markdown]
# ## How many parameters?
#
# Count them by hand before asking the package. Per block: two LayerNorms (weight and bias, `C` each),
# the attention's `c_attn` (`C × 3C` + `3C`) and `c_proj` (`C × C` + `C`), and the MLP's `c_fc`
# (`C × 4C` + `4C`) and `c_proj` (`4C × C` + `C`). Around the blocks: the token embedding (`V × C`),
# the position embedding (`T × C`), the final LayerNorm, and the head, which shares the token
# embedding's matrix and so adds nothing.

# %%
def count_parameters(cfg: tinylm.GPTConfig) -> int:
    C, V, T, L = cfg.n_embd, cfg.vocab_size, cfg.block_size, cfg.n_layer
    per_block = 2 * (2 * C) + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    return V * C + T * C + L * per_block + 2 * C


model = tinylm.GPT(model_cfg)
assert count_parameters(model_cfg) == model.num_parameters()
print(f"{model.num_parameters():,} parameters")

# %% [markdown]
# ## Training
#
# `tinylm.Trainer` runs the loop. Each optimizer step draws `batch_size` random windows of
# `block_size + 1` characters, computes the mean next-character cross-entropy, backpropagates, clips
# the gradient norm to 1.0, and steps AdamW at the learning rate the schedule gives for that step:
# a linear warmup (large random gradients early on would wreck the fresh weights), then a cosine decay
# to a tenth of the peak (small steps at the end settle into a minimum).
#
# Two budgets stop the run: `max_steps` and, if set, `max_seconds`. When time is the tighter one the
# cosine follows the clock instead, so a time-limited run still ends at the low learning rate.
# Every `eval_interval` steps the trainer scores **every** character of the validation split and writes
# `best.pt` and `last.pt` into the run folder.

# %%
lrs = [tinylm.optim.learning_rate(step, train_cfg) for step in range(train_cfg.max_steps)]
fig, ax = plt.subplots(figsize=(7, 2.5))
ax.plot(lrs)
ax.set_xlabel("optimizer step")
ax.set_ylabel("learning rate")
ax.set_title("warmup + cosine decay")
fig.tight_layout()
plt.show()

# %%
run_dir = tinylm.paths.runs_dir() / f"notebook-03-{PROFILE}"
for stale in ("metrics.jsonl", "best.pt", "last.pt"):  # a fresh run each time the notebook runs
    (run_dir / stale).unlink(missing_ok=True)

live_plot = LiveLossPlot(title=f"shakespeare-char, {PROFILE} profile")
trainer = tinylm.Trainer(model, train_cfg, data.train, data.val, out_dir=run_dir, tokenizer=tokenizer,
                         device=DEVICE, callbacks=[live_plot], sample_prompt="\n")
start = time.perf_counter()
final = trainer.fit()
print(f"trained {trainer.step} steps in {time.perf_counter() - start:.0f} s; "
      f"validation loss over the whole split: {final['val_loss']:.4f}")

# %% [markdown]
# The training loss is measured on each step's batch, so it is noisy; the validation loss is exact
# (every one of the validation characters, every time). While the two stay together the model is not
# overfitting: a model this small cannot memorise a million characters in a few passes.
#
# How good is it? The bigram model of notebook 1 is the baseline: it sees one character. The best any
# bigram model can do follows from counting: the probability of `b` after `a` is how often `ab` occurs
# in the training text divided by how often `a` does (plus one to every count, so that an unseen pair
# is not infinitely surprising). A loss of `L` nats means the model is, on average, as unsure as a
# uniform choice among `e^L` characters:

# %%
def bigram_baseline(train, val, vocab_size):
    train, val = torch.from_numpy(train.astype("int64")), torch.from_numpy(val.astype("int64"))
    counts = torch.ones(vocab_size, vocab_size)  # add-one smoothing
    counts.index_put_((train[:-1], train[1:]), torch.ones(len(train) - 1), accumulate=True)
    log_probs = (counts / counts.sum(dim=1, keepdim=True)).log()  # row a: log P(next | a)
    return -log_probs[val[:-1], val[1:]].mean().item()


bigram_loss = bigram_baseline(data.train, data.val, tokenizer.vocab_size)
for name, loss in [("uniform guess", math.log(tokenizer.vocab_size)), ("best bigram (counts)", bigram_loss),
                   ("this GPT", final["val_loss"])]:
    print(f"{name:>20}: {loss:.3f} nats/char, like choosing among {math.exp(loss):5.1f} characters")
if PROFILE != "smoke":
    assert final["val_loss"] < bigram_loss - 0.5, "the GPT should be far beyond the bigram baseline"

# %% [markdown]
# ## Samples: temperature and top-k
#
# The model outputs a distribution over the next character. Dividing the logits by a *temperature*
# below 1 sharpens it (safer, more repetitive text), above 1 flattens it (more surprising, more
# misspelt). *Top-k* keeps only the k most likely characters before drawing. The seed makes each
# sample repeatable.

# %%
prompt = "ROMEO:\n"
for temperature, top_k in [(0.5, None), (0.8, None), (1.0, None), (1.0, 5), (1.5, None)]:
    text = tinylm.generate_text(model, tokenizer, prompt, max_new_tokens=160, temperature=temperature,
                                top_k=top_k, seed=42)
    print(f"=== temperature {temperature}, top_k {top_k} ===\n{text}\n")

# %% [markdown]
# ## How much context does it use?
#
# The model sees at most `block_size` characters. Does it use them? Score the validation windows once
# and average the loss **by position**: position `t` predicts its character from `t + 1` characters of
# context. The curve falls steeply over the first few characters (the rest of a word) and keeps
# falling slowly after that (the words before it).

# %%
@torch.no_grad()
def loss_by_position(model, tokens, block_size, batch_size=256):
    model.eval()
    starts = [start for start, first_scored in evaluation_windows(len(tokens), block_size) if first_scored == 0]
    total = torch.zeros(block_size)
    for i in range(0, len(starts), batch_size):
        batch = torch.stack([torch.from_numpy(tokens[s : s + block_size + 1].astype("int64")) for s in starts[i : i + batch_size]])
        logits, _ = model(batch[:, :-1].to(DEVICE))  # (b, T, V)
        losses = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten().to(DEVICE), reduction="none")
        total += losses.view(-1, block_size).sum(0).cpu()  # sum over windows, one value per position
    return total / len(starts)


by_position = loss_by_position(model, data.val, model_cfg.block_size)
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(range(1, model_cfg.block_size + 1), by_position)
ax.set_xscale("log", base=2)
ax.set_xlabel("characters of context")
ax.set_ylabel("validation loss")
ax.set_title("loss by context length")
fig.tight_layout()
plt.show()
print(f"1 character of context: {by_position[0]:.3f} (best bigram: {bigram_loss:.3f}); "
      f"{model_cfg.block_size} characters: {by_position[-1]:.3f}")

# %% [markdown]
# With one character of context the GPT is a bigram model, and it scores close to the best bigram
# model computed above.
# Every further character helps. A longer `block_size` costs attention time that grows with its square,
# which is why the `cpu` recipe stops at 64 and the `gpu` recipe goes to 256.
#
# ## Checkpoints
#
# The run folder holds `metrics.jsonl` (every record the trainer emitted), `best.pt` and `last.pt`.
# A checkpoint keeps the model's config and tokenizer as plain data, and everything needed to resume
# exactly (optimizer moments, step, the batch sampler's random state). Load the best one back and
# check that it computes exactly what the trained model computes:

# %%
reloaded, reloaded_tokenizer, state = tinylm.load_model(run_dir / "best.pt", DEVICE)
x = torch.tensor([tokenizer.encode("ROMEO:\nO, she doth teach the torches to burn bright!")], device=DEVICE)
x = x[:, -model_cfg.block_size:]  # at most one context's worth
model.eval()
assert torch.equal(reloaded(x)[0], model(x)[0]), "the reloaded model must compute the same logits"
print(f"best.pt: step {state['step']}, best validation loss {state['best_val_loss']:.4f}, keys {sorted(state)[:6]}...")
print(sorted(p.name for p in run_dir.iterdir()))

# %%
records = [r for r in live_plot.records]
plot_losses(records, title="train and validation loss")
plt.show()

# %% [markdown]
# The same run from a terminal is `python -m tinylm.train shakespeare-char --profile cpu`, and
# `python -m tinylm.sample --ckpt runs/shakespeare-char-cpu --prompt "ROMEO:"` samples from it.
#
# ## Exercises
#
# Complete each function (replace `raise NotImplementedError`), then run the check below it.
#
# **1. Top-k filtering.** Return the logits with everything below the k-th largest value of each row set
# to `-inf`, so that softmax gives those entries probability zero.

# %%
from tinylm.exercises import check


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    raise NotImplementedError


def test_top_k_filter():
    logits = torch.randn(4, 65, generator=torch.Generator().manual_seed(0))
    for k in (1, 5, 65):
        filtered = top_k_filter(logits, k)
        kept = torch.isfinite(filtered)
        assert (kept.sum(dim=1) == k).all(), f"k={k}: each row must keep exactly k logits"
        assert torch.equal(filtered[kept], logits[kept]), "kept logits must be unchanged"
        assert torch.equal(kept, logits >= logits.topk(k).values[:, -1:]), "the kept logits must be the k largest"


check(test_top_k_filter)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def top_k_filter(logits, k):
#     kth_largest = logits.topk(k, dim=-1).values[:, -1:]
#     return logits.masked_fill(logits < kth_largest, float("-inf"))
# ```
# </details>
#
# **2. Bits per character.** The loss is in nats (natural logarithm). Compression results are quoted in
# bits per character (base-2 logarithm). Convert one into the other.

# %%
def bits_per_character(loss_in_nats: float) -> float:
    raise NotImplementedError


def test_bits_per_character():
    assert abs(bits_per_character(math.log(2)) - 1.0) < 1e-12, "one bit is ln 2 nats"
    assert abs(bits_per_character(math.log(65)) - math.log2(65)) < 1e-12, "uniform over 65 characters"


check(test_bits_per_character)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def bits_per_character(loss_in_nats):
#     return loss_in_nats / math.log(2)
# ```
# </details>
#
# **3. Sizing a model.** Return the `n_embd` of a 6-layer model with a 65-character vocabulary and a
# context of 256 whose parameter count is closest to 10 million (n_embd a multiple of 64).

# %%
def width_for_ten_million() -> int:
    raise NotImplementedError


def test_width_for_ten_million():
    width = width_for_ten_million()
    assert width % 64 == 0, "n_embd must be a multiple of 64"

    def size(c):
        return count_parameters(tinylm.GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=4, n_embd=c))

    best = min(range(64, 1025, 64), key=lambda c: abs(size(c) - 10_000_000))
    assert width == best, f"{width} gives {size(width):,} parameters; another multiple of 64 comes closer"


check(test_width_for_ten_million)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def width_for_ten_million():
#     def size(c):
#         return count_parameters(tinylm.GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=4, n_embd=c))
#
#     return min(range(64, 1025, 64), key=lambda c: abs(size(c) - 10_000_000))
# ```
# </details>
