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
# # 01 · Shakespeare, characters, and a bigram baseline
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/01_shakespeare_data_and_bigram.ipynb)
#
# A language model gives the next token a probability given those before it. Here you turn text into training examples
# and set the number to beat with the simplest model that generates text, using notebook 0's `nn.Module`,
# `loss.backward()` and optimizer.
#
# **What you will learn**
#
# - tinyshakespeare and a character tokenizer, checked against `tinylm.CharTokenizer`;
# - why validation is one block at the end;
# - how `block_size + 1` tokens give `block_size` examples;
# - the bigram model and the **baseline validation loss** later models must beat (exercise 4: how close it comes to
#   the best bigram).
#
# **How long it takes**: a lesson of about 48 minutes (reading, code and the `cpu` run's 6 s, by the course's
# formula), then a second sitting of about 50 minutes for the 4 exercises (10 minutes per function, 20 per
# experiment).
#
# | profile | what it runs | time |
# |---|---|---|
# | `smoke` (CI) | 50 training steps | the last cell prints it |
# | `cpu` (2-core laptop) | 3,000 training steps | the last cell prints it |
# | `gpu` | 10,000 training steps | not measured |
#
# **Where the ideas come from**: the data and character-level modelling, Karpathy
# ([2015](http://karpathy.github.io/2015/05/21/rnn-effectiveness/)); text from letter-pair statistics and entropy in
# bits, Shannon ([1948](https://doi.org/10.1002/j.1538-7305.1948.tb01338.x)); vectors learned from the next-token
# loss, Bengio et al. ([2003](https://www.jmlr.org/papers/v3/bengio03a.html)); why no bigram beats the text's own pair
# statistics, Gibbs' inequality (Cover & Thomas,
# [*Elements of Information Theory*](https://doi.org/10.1002/047174882X), chapter 2).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %% [markdown]
# ## Setup
#
# `tinylm.set_up_notebook()` reads the profile (`$TINYLM_PROFILE`, else `gpu` with CUDA, `cpu` without), which sets
# every run-time number, picks the device and sets PyTorch up as the commands do.

# %%
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import tinylm
import tinylm.course.plotting

NOTEBOOK_STARTED = time.perf_counter()  # the last cell prints how long the whole notebook took
PROFILE, device = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
tinylm.course.plotting.use_projector_style()  # fonts readable on a projector
STEPS = {"smoke": 50, "cpu": 3000, "gpu": 10000}[PROFILE]  # optimizer steps for the bigram
BATCH_SIZE = {"smoke": 32, "cpu": 32, "gpu": 64}[PROFILE]  # windows per step
EVAL_EVERY = {"smoke": 25, "cpu": 500, "gpu": 1000}[PROFILE]  # steps between whole-split validations
print(f"profile={PROFILE}  steps={STEPS}  batch_size={BATCH_SIZE}  device={device}")

# %% [markdown]
# ## 1. The data
#
# tinyshakespeare is ~1 MB of plays in one text file. `prepare_shakespeare_char()` fetches it (or reads
# `$TINYLM_DATA_MIRROR`), checks its sha256 and writes the `train.bin` and `val.bin` later notebooks use. We redo that
# by hand.

# %%
from tinylm.train.recipes import prepare_shakespeare_char

prepared = prepare_shakespeare_char()
text = (prepared.folder / "input.txt").read_text(encoding="utf-8")
print("data folder:", os.path.relpath(prepared.folder))

# %%
# NBVAL_CHECK_OUTPUT
print(f"{len(text):,} characters, {len(text.splitlines()):,} lines\n")
print(text[:300])

# %% [markdown]
# A speaker's name and a colon on their own line, the speech, a blank line. The vocabulary is the sorted set of
# distinct characters, so the ids are reproducible.

# %%
# NBVAL_CHECK_OUTPUT
from collections import Counter

chars = sorted(set(text))
vocab_size = len(chars)
print("vocab_size:", vocab_size)
print(repr("".join(chars)))
print("rarest:", Counter(text).most_common()[-6:])

# %% [markdown]
# Both letter cases, punctuation and one digit; the rarest appear a handful of times.

# %% [markdown]
# ## 2. A character tokenizer from scratch
#
# A tokenizer is two lookup tables: string → integer (`stoi`) to encode, integer → string (`itos`) to decode.
# Characters give a tiny vocabulary and long sequences; GPT-2's BPE (notebook 4) has 50,257 tokens averaging several
# characters.

# %%
stoi = {ch: i for i, ch in enumerate(chars)}
itos = {i: ch for i, ch in enumerate(chars)}


def encode(s: str) -> list[int]:
    return [stoi[c] for c in s]


def decode(ids) -> str:
    return "".join(itos[int(i)] for i in ids)


# %%
# NBVAL_CHECK_OUTPUT
print(encode("To be, or not to be"))
print(decode(encode("To be, or not to be")))

# %% [markdown]
# Self-check: it must agree id for id with `tinylm.CharTokenizer`, which wrote the `.bin` files.

# %%
tok = prepared.tokenizer
assert isinstance(tok, tinylm.CharTokenizer)
assert tok.chars == chars and tok.vocab_size == vocab_size
assert encode(text[:10_000]) == tok.encode(text[:10_000])
assert decode(tok.encode(text[:10_000])) == text[:10_000]
print("tokenizer matches tinylm.CharTokenizer")

# %% [markdown]
# Encode the whole text once.

# %%
# NBVAL_CHECK_OUTPUT
data = torch.tensor(encode(text), dtype=torch.long)  # (N,)
print(data.shape, data.dtype)
print(data[:20])

# %% [markdown]
# ## 3. Train/validation split
#
# The first 90% trains, the last 10% validates, in one contiguous cut: neighbouring windows overlap, so a random split
# would put near-copies of validation text into training and flatter the validation loss.

# %%
# NBVAL_CHECK_OUTPUT
n = int(0.9 * len(data))
train_data, val_data = data[:n], data[n:]
print(f"train: {len(train_data):,} tokens ({len(train_data) / len(data):.0%})   "
      f"val: {len(val_data):,} tokens ({len(val_data) / len(data):.0%})")

# %%
assert np.array_equal(train_data.numpy(), prepared.train) and np.array_equal(val_data.numpy(), prepared.val)
print("split matches tinylm's train.bin / val.bin")

# %% [markdown]
# ## 4. Batches of (x, y) windows
#
# A model sees at most `block_size` tokens, its *context*. A chunk of `block_size + 1` tokens holds `block_size`
# examples: token 1 from token 0, …, token 8 from tokens 0–7; the targets `y` are `x` shifted one left. A transformer
# makes all of them in one pass, and training on every context length lets it generate from a short prompt.

# %%
# NBVAL_CHECK_OUTPUT
BLOCK_SIZE = 8
chunk = train_data[: BLOCK_SIZE + 1]  # (T + 1,)
x, y = chunk[:-1], chunk[1:]  # (T,) each
for t in range(BLOCK_SIZE):
    print(f"context {decode(x[: t + 1])!r:>12}  ->  target {decode(y[t : t + 1])!r}")

# %% [markdown]
# A batch stacks `batch_size` windows at random starts in `[0, len - block_size)`; our own `torch.Generator` makes it
# repeatable.

# %%
def get_batch(split: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator):
    starts = torch.randint(len(split) - block_size, (batch_size,), generator=generator).tolist()
    x = torch.stack([split[s : s + block_size] for s in starts])  # (B, T)
    y = torch.stack([split[s + 1 : s + block_size + 1] for s in starts])  # (B, T): x shifted left by one
    return x, y


# NBVAL_CHECK_OUTPUT
xb, yb = get_batch(train_data, 4, BLOCK_SIZE, torch.Generator().manual_seed(0))
print(xb)
print(yb)

# %% [markdown]
# Self-check: the shapes, the shift, and `tinylm.data.tokens.RandomWindowSampler`, which with the same seed must draw
# the same batch.

# %%
from tinylm.data.tokens import RandomWindowSampler

assert xb.shape == yb.shape == (4, BLOCK_SIZE)
assert torch.equal(xb[:, 1:], yb[:, :-1])  # y is x shifted by one
sampler = RandomWindowSampler(prepared.train, BLOCK_SIZE, 4, seed=0)
sx, sy = sampler.next_batch()
assert torch.equal(sx, xb) and torch.equal(sy, yb)
print("get_batch matches tinylm's RandomWindowSampler")

# %% [markdown]
# ## 5. The bigram model
#
# The simplest model that uses context, Shannon's (1948) *bigram* (an n-gram with n = 2), predicts the next character
# from the current one alone. Here it is a 65×65 `nn.Embedding`: row `i` holds the *logits* (unnormalised log-probabilities) of
# the character after `i`.
#
# Softmax turns a row z into probabilities, softmax(z)_j = e^{z_j} / Σ_i e^{z_i}. The loss, cross-entropy, is the
# mean of −ln p(correct next token) in nats per character, so one prediction's loss is ln Σ_i e^{z_i} − z_target;
# minimising it is maximum likelihood. We learn the table by gradient descent rather than counting, as Bengio et al.
# (2003) learned word vectors.
#
# Its `forward(idx, targets=None) -> (logits, loss)` matches `tinylm.GPT`'s, so tinylm's `evaluate_loss` works on it.
# The cell also prints ln 65 + σ²/2, the untrained loss the next section derives.

# %%
class BigramLanguageModel(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.logits_table = nn.Embedding(vocab_size, vocab_size)  # row i: logits of the token after token i

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.logits_table(idx)  # (B, T) -> (B, T, V)
        loss = None
        if targets is not None:
            B, T, V = logits.shape
            loss = F.cross_entropy(logits.view(B * T, V), targets.reshape(B * T))  # cross_entropy wants (N, V), (N,)
        return logits, loss


# NBVAL_CHECK_OUTPUT
torch.manual_seed(1337)
model = BigramLanguageModel(vocab_size)
logits, loss = model(xb, yb)
print("logits:", tuple(logits.shape), f" initial loss on this batch of {xb.numel()} characters: {loss.item():.3f}")
with torch.no_grad():
    _, loss_100k = model(train_data[None, :100_000], train_data[None, 1:100_001])  # one window of 100,000 characters
sigma = model.logits_table.weight.std().item()  # nn.Embedding draws its entries from N(0, 1)
print(f"initial loss on the first 100,000 characters: {loss_100k.item():.3f}; "
      f"ln {vocab_size} + sigma^2/2 = {math.log(vocab_size) + sigma**2 / 2:.3f} (sigma = {sigma:.2f})")

# %% [markdown]
# ### What loss should an untrained model have?
#
# Knowing nothing means 1/65 for every character: loss −ln(1/65) = ln 65 ≈ 4.17. Ours starts higher (the 32-character
# batch is noisy, 100,000 characters are not): `nn.Embedding` draws its entries from N(0, 1), so each row is a
# confident random guess. For random logits $z \sim N(0, \sigma^2)$ the expected loss is $E[\ln \sum_j e^{z_j}] -
# E[z_{target}] \approx \ln V + \sigma^2/2$, printed beside the measurement; by Jensen's inequality it slightly
# overestimates the average over random tables, and our one table lands above it. Confident and wrong costs more than
# honest ignorance. Zero logits are exactly uniform:

# %%
# NBVAL_CHECK_OUTPUT
uniform = BigramLanguageModel(vocab_size)
nn.init.zeros_(uniform.logits_table.weight)
_, uniform_loss = uniform(xb, yb)
print(f"ln({vocab_size}) = {math.log(vocab_size):.4f}   loss with zero logits = {uniform_loss.item():.4f}")
assert math.isclose(uniform_loss.item(), math.log(vocab_size), rel_tol=1e-6)

# %% [markdown]
# Deep networks start near ln V on purpose (GPT-2's small initialisation, notebook 2b), so the first steps learn
# rather than unlearn overconfidence. The bigram's loss is convex: a bad start cannot trap it.

# %% [markdown]
# ## 6. Training
#
# AdamW (raced in notebook 0, opened up in notebook 3a) at a constant rate of 1e-2 with no warmup: this model is one
# table and the problem convex, so a large constant rate is safe (notebook 3a's transformer warms up to its peak). AdamW moves even rows that got no gradient in this batch, by momentum
# from earlier gradients and by weight decay on every row. Every `EVAL_EVERY` steps, `evaluate_loss` scores **every**
# validation token once, far less noisy than one batch.
#
# **Predict, then run.** Where will the validation loss level off: near ln 65 = 4.17, around 2.5, or close to 1?
# (Notebook 3b's model, with real context, goes much lower in minutes on a laptop.)

# %%
from tinylm.course.plotting import plot_losses
from tinylm.eval.loss import evaluate_loss

torch.manual_seed(1337)
model = BigramLanguageModel(vocab_size).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
batch_gen = torch.Generator().manual_seed(1337)
records = []  # the same record format the tinylm Trainer emits, so plot_losses can draw it

for step in tqdm(range(1, STEPS + 1), desc="bigram"):
    xb, yb = get_batch(train_data, BATCH_SIZE, BLOCK_SIZE, batch_gen)
    _, loss = model(xb.to(device), yb.to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    records.append({"event": "train", "step": step, "loss": loss.item()})
    if step % EVAL_EVERY == 0 or step == STEPS:
        val_loss = evaluate_loss(model, prepared.val, BLOCK_SIZE, batch_size=512, device=device)
        records.append({"event": "eval", "step": step, "val_loss": val_loss})

fig, ax = plt.subplots(figsize=(9, 4.5))
plot_losses(records, ax=ax, title="bigram model")
ax.axhline(math.log(vocab_size), color="gray", ls="--", lw=1, label="ln 65 (uniform)")
ax.legend()
fig.tight_layout()
plt.show()
plt.close(fig)
below = next((r["step"] for r in records if r["event"] == "train" and r["loss"] < math.log(vocab_size)), None)
print(f"the loss on one training batch first falls below ln {vocab_size} at step {below}" if below else
      f"the loss on a training batch never fell below ln {vocab_size}")

# %% [markdown]
# ## 7. The baseline
#
# Every later model must beat the trained bigram's loss on the whole validation split. Its exponential, the
# *perplexity*, reads "as uncertain as a uniform choice among that many characters"; over ln 2 it is bits per
# character.

# %%
bigram_val_loss = evaluate_loss(model, prepared.val, BLOCK_SIZE, batch_size=512, device=device)
print(f"bigram baseline: validation loss {bigram_val_loss:.4f} nats/char = {bigram_val_loss / math.log(2):.3f} bits/char, "
      f"perplexity {math.exp(bigram_val_loss):.1f} (uniform: {math.log(vocab_size):.4f}, perplexity {vocab_size})")

# %% [markdown]
# Self-check: scoring each character's successor straight from the table must reproduce `evaluate_loss`, which shows
# it scores each of the `len(val) - 1` targets once.

# %%
with torch.no_grad():
    direct = F.cross_entropy(model.logits_table.weight[val_data[:-1].to(device)], val_data[1:].to(device)).item()
assert math.isclose(direct, bigram_val_loss, rel_tol=1e-5), (direct, bigram_val_loss)
assert bigram_val_loss < loss_100k.item()  # better than at initialisation
if PROFILE != "smoke":
    assert bigram_val_loss < 2.55, "a trained bigram reaches about 2.49"
print("evaluate_loss agrees with the direct computation")

# %% [markdown]
# ## 8. Samples
#
# Generation is autoregressive: take the last position's logits, softmax, draw a character, append it, repeat. The
# bigram needs only the last character, so it gets just that.

# %%
@torch.no_grad()
def sample(model, prompt: str, max_new_tokens: int, seed: int) -> str:
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([encode(prompt)], device=device)  # (1, T)
    for _ in range(max_new_tokens):
        logits, _ = model(ids[:, -1:])  # (1, 1, V): a bigram looks at the last token only
        probs = F.softmax(logits[:, -1, :], dim=-1)  # (1, V)
        next_id = torch.multinomial(probs, num_samples=1, generator=generator)  # (1, 1)
        ids = torch.cat([ids, next_id], dim=1)  # (1, T + 1)
    return decode(ids[0].tolist())


print(sample(model, "\n", 500, seed=0))

# %% [markdown]
# Line breaks, a line ending in a colon as a speaker's name does, word-sized chunks, few real words: one character of
# memory cannot spell. Self-attention (next notebook) lets each position look at *all* positions before it.

# %% [markdown]
# ## What you learned
#
# - A tokenizer is two lookup tables; validation is one block at the end, as overlapping windows would leak it.
# - Knowing nothing scores ln 65 ≈ 4.17 nats per character, a confidently random table worse.
# - The bigram's validation loss is the baseline to beat; its samples have a play's shape and almost no words.
#
# ## Exercises
#
# Each exercise is a function to complete. Replace `raise NotImplementedError`, then run the cell
# after it: `check` reports *correct*, an assertion that says what is wrong, or *not attempted yet*.
#
# ### Exercise 1: cross-entropy by hand
#
# `logits` is `(N, V)`, `targets` is `(N,)`. Return the mean over rows of −log softmax(logits)[target],
# computed without `F.cross_entropy` or `F.log_softmax`. Hint: log softmax(z)_j = z_j − log Σ_i e^{z_i},
# and `torch.logsumexp` computes the second term without overflowing for large logits.

# %%
from tinylm.course.exercises import check


def cross_entropy_by_hand(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError


# %%
def test_cross_entropy_by_hand():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(50, 65, generator=g), torch.randint(65, (50,), generator=g)
    got = cross_entropy_by_hand(logits, targets)
    assert got.shape == (), f"return a scalar (the mean), got shape {tuple(got.shape)}"
    assert torch.allclose(got, F.cross_entropy(logits, targets), atol=1e-5), "does not match F.cross_entropy"
    big = cross_entropy_by_hand(logits * 1000, targets)
    assert torch.isfinite(big), "overflow for large logits: subtract the max, or use torch.logsumexp"
    assert torch.allclose(big, F.cross_entropy(logits * 1000, targets), rtol=1e-4)
    assert torch.allclose(cross_entropy_by_hand(torch.zeros(3, 65), targets[:3]), torch.tensor(math.log(65)))


check(test_cross_entropy_by_hand)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def cross_entropy_by_hand(logits, targets):
#     log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)  # (N, V)
#     return -log_probs[torch.arange(len(targets)), targets].mean()  # pick the target's column per row
# ```
# </details>
#
# ### Exercise 2: the bigram by counting
#
# The bigram table that fits the training text best can be computed without gradient descent: count how often
# each character follows each other one. Return the `(V, V)` matrix `P` with
# `P[i, j] = (count(i→j) + alpha) / Σ_j' (count(i→j') + alpha)`. `alpha > 0` ("add-one smoothing" for `alpha=1`)
# moves the table slightly off the counts so that pairs never seen in training do not get probability 0 (an
# infinite loss).

# %%
def bigram_probs_from_counts(ids: torch.Tensor, vocab_size: int, alpha: float = 1.0) -> torch.Tensor:
    raise NotImplementedError


# %%
def test_bigram_probs_from_counts():
    ids = torch.tensor([0, 1, 1, 2, 0, 1])  # pairs: 0→1 twice, 1→1, 1→2, 2→0
    P = bigram_probs_from_counts(ids, 3, alpha=0.0)
    expected = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    assert P.shape == (3, 3), f"expected shape (3, 3), got {tuple(P.shape)}"
    assert torch.allclose(P.float(), expected), f"with alpha=0 expected\n{expected}\ngot\n{P}"
    P1 = bigram_probs_from_counts(ids, 3, alpha=1.0).float()
    assert torch.allclose(P1[0], torch.tensor([1.0, 3.0, 1.0]) / 5), "row 0 with alpha=1 should be (0+1, 2+1, 0+1) / 5"
    P65 = bigram_probs_from_counts(train_data, vocab_size).float()
    assert torch.allclose(P65.sum(dim=1), torch.ones(vocab_size)), "every row must sum to 1"
    counted = -P65[val_data[:-1], val_data[1:]].log().mean().item()
    print(f"validation loss: the count bigram {counted:.4f}, the trained bigram {bigram_val_loss:.4f} nats/char")


check(test_bigram_probs_from_counts)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def bigram_probs_from_counts(ids, vocab_size, alpha=1.0):
#     counts = torch.zeros(vocab_size, vocab_size)
#     counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True)  # counts[i, j] += 1 per pair
#     counts += alpha
#     return counts / counts.sum(dim=1, keepdim=True)
# ```
#
# The check prints the count bigram's validation loss beside the trained bigram's: gradient descent found (nearly)
# the counting solution.
# </details>
#
# ### Exercise 3: temperature
#
# Sampling usually divides the logits by a *temperature* before the softmax: below 1 sharpens the
# distribution, above 1 flattens it. Return the probabilities `softmax(logits / temperature)` over the
# last dimension, and for `temperature == 0` a one-hot vector on the most likely token (greedy
# decoding, as `tinylm.generate` does).

# %%
def temperature_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    raise NotImplementedError


# %%
def test_temperature_probs():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 0.0, 0.0]])
    assert torch.allclose(temperature_probs(logits, 1.0), F.softmax(logits, dim=-1)), "temperature 1: plain softmax"
    sharp, flat = temperature_probs(logits, 0.5), temperature_probs(logits, 5.0)
    assert torch.allclose(sharp.sum(-1), torch.ones(2)) and torch.allclose(flat.sum(-1), torch.ones(2)), "rows must sum to 1"
    assert (sharp.max(-1).values > F.softmax(logits, -1).max(-1).values).all(), "below 1 must sharpen"
    assert (flat.max(-1).values < F.softmax(logits, -1).max(-1).values).all(), "above 1 must flatten"
    greedy = temperature_probs(logits, 0.0)
    assert torch.equal(greedy, torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])), f"temperature 0: one-hot argmax, got {greedy}"


check(test_temperature_probs)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def temperature_probs(logits, temperature):
#     if temperature == 0:
#         return F.one_hot(logits.argmax(dim=-1), logits.size(-1)).to(logits.dtype)
#     return F.softmax(logits / temperature, dim=-1)
# ```
# </details>
#
# ### Exercise 4: an experiment — how close is the bigram to the best a bigram can do?
#
# Shannon measured a source by its entropy. Two entropies frame what section 6 trained:
#
# - **H(next)**, the entropy of the characters' own frequencies, $-\sum_b P(b) \ln P(b)$: the lowest loss of any
#   model that uses no context at all (a unigram);
# - **H(next | current)**, from the pair counts, $-\sum_{a,b} P(a, b) \ln P(b \mid a)$: the lowest loss that *any*
#   65 × 65 table can reach on a text, even a table fitted to that very text. This is Gibbs' inequality: scored
#   against the text's own distribution, every other distribution has a larger cross-entropy.
#
# Return both, in nats, from the counts of `ids` (count the targets `ids[1:]`, as a model scores them). The check
# runs your function on the validation split and sets the two bounds beside the bigram you trained.
# **Predict first**: will the trained bigram land between the two, and how far above the lower one? Then read
# the gap: what is left for a model with more context to win, and what a better bigram could still win.

# %%
def entropies(ids: torch.Tensor, vocab_size: int) -> tuple[float, float]:
    """(H(next), H(next | current)) in nats, from the counts of the 1-D id tensor `ids`."""
    raise NotImplementedError


# %%
from tinylm.eval import ngram


def test_entropies():
    h, h_given = entropies(torch.tensor([0, 1, 0, 1, 0, 1, 0]), 2)  # 1 always follows 0, and 0 always follows 1
    assert abs(h_given) < 1e-6, f"the next character is certain given the current one: H(next | current) = 0, got {h_given}"
    assert math.isclose(h, math.log(2), rel_tol=1e-6), f"the targets are half 0s, half 1s: H(next) = ln 2, got {h}"
    h_val, h_given_val = entropies(val_data, vocab_size)
    assert math.isclose(h_val, ngram.entropy(val_data, vocab_size), rel_tol=1e-4), "H(next) differs from tinylm's"
    assert math.isclose(h_given_val, ngram.conditional_entropy(val_data, vocab_size), rel_tol=1e-4), \
        "H(next | current) differs from tinylm's: weight each row's entropy by how often its character occurs"
    print(f"H(next) {h_val:.4f} | H(next | current) {h_given_val:.4f} | your trained bigram {bigram_val_loss:.4f} "
          f"| the bigram's excess over the lower bound {bigram_val_loss - h_given_val:.4f} nats/char")
    assert h_given_val <= bigram_val_loss, "no bigram table scores below H(next | current): recheck the trained loss"


check(test_entropies)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def entropies(ids, vocab_size):
#     counts = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
#     counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1, dtype=torch.float64), accumulate=True)
#     p_pair = counts / counts.sum()  # P(a, b)
#     p_next = p_pair.sum(dim=0)  # P(b)
#     p_given = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)  # P(b | a)
#     h = -(p_next[p_next > 0] * p_next[p_next > 0].log()).sum().item()
#     h_given = -(p_pair[counts > 0] * p_given[counts > 0].log()).sum().item()
#     return h, h_given
# ```
#
# The trained bigram sits a little above H(next | current) of the validation text. That bound is fitted to the
# validation text itself, which a model trained on the first 90% never sees. In [the keys' run](../docs/notes/2026-11-29-exercise-keys.md)
# H(next) is 3.3373, H(next | current) 2.3735 and the trained bigram 2.4865, an excess of 0.1130. Exercise 2's line
# splits it: the count bigram, the best table for the *training* text, scores 2.4819, nearly what the trained one
# does, so almost all of the excess is the difference between the two texts, and training left little. Both are
# small next to the distance from H(next) down to the bigram: what one character of context is worth. To get
# lower, a model needs more context: notebook 2a.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
