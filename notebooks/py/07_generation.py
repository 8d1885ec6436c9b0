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
# # 7 · Generation: samplers, the KV cache, and a playground
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/07_generation.ipynb)
#
# *Generation* is the loop around a trained model's next-token probabilities: choose a token (a sampler), append it,
# and ask again without redoing the work (the key/value cache).
#
# **What you will learn**
# - greedy decoding and why it loops; temperature, top-k, top-p and the repetition penalty;
# - the KV cache, built, timed, and where its gain stops;
# - padded batches, streaming and stop strings;
# - the samplers and the cache on SmolLM2-135M-Instruct; a playground and an attention viewer.
#
# **How long it takes**: a lesson of about 86 minutes (reading, code and the `cpu` run's 94 s, by the course's
# formula), then a second sitting of about 50 minutes for the 4 exercises (10 minutes per function, 20 per
# experiment).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | tiny models, 60-token timings; SmolLM2, 8 tokens | the last cell prints it |
# | `cpu` (2 CPU cores) | the models of notebooks 3b and 5, or stand-ins (the committed run used notebook 3b's and 5's, see *The models*), 500-token timings in 3 interleaved rounds; SmolLM2, 60 tokens | the last cell prints it, with trained models found; without them it first trains stand-ins (below), many minutes more |
# | `gpu` | the same on a GPU | not measured; see [Running on a GPU](README.md#running-on-a-gpu) |
#
# **Before you start**: the notebook uses notebook 3b's and 5's models in `runs/`, or trains rougher stand-ins (the
# `cpu` recipe, 2,000 or 250 steps) and says so. SmolLM2 comes from its GGUF file unless notebook 6b or 8a left
# it in `runs/`.
#
# **Papers**: top-k ([Fan et al., 2018](https://arxiv.org/abs/1805.04833)), nucleus sampling
# ([Holtzman et al., ICLR 2020](https://arxiv.org/abs/1904.09751)), the repetition penalty
# ([Keskar et al., 2019](https://arxiv.org/abs/1909.05858)), KV-cache decoding at scale
# ([Pope et al., 2022](https://arxiv.org/abs/2211.05102)), SmolLM2
# ([Allal et al., 2025](https://arxiv.org/abs/2502.02737)).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import math
import time

import matplotlib.pyplot as plt
import torch

import tinylm
from tinylm.course.diagrams import draw_kv_cache
from tinylm.course.exercises import check
from tinylm.course.notebooks import find_or_train, real_model
from tinylm.course.plotting import plot_effective_choices, plot_token_bars, plot_token_times, use_projector_style
from tinylm.eval.uncertainty import compare, spread, wilson_interval
from tinylm.generate.decode import decode
from tinylm.generate.sampling import Sampling, choose_next, keep_top_k, keep_top_p
from tinylm.runtime import cpu_name
from tinylm.tokenizers.chat_template import ChatTemplate, default_system_prompt

NOTEBOOK_STARTED = time.perf_counter()  # the last cell prints how long the whole notebook took
PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
use_projector_style()  # fonts readable on a projector
print(f"profile {PROFILE}, device {DEVICE}")

# %% [markdown]
# ## The models
#
# Notebook 3b's Shakespeare model (characters) and notebook 5's TinyStories model (GPT-2 tokens), from their `cpu`
# runs in the committed outputs. Notebook 5's output layer covers only the GPT-2 tokens TinyStories uses, hence its few
# parameters.

# %%
model, tokenizer, _ = tinylm.load_model(find_or_train("shakespeare-char", PROFILE), DEVICE)
print(f"Shakespeare: {model.num_parameters():,} parameters, context {model.config.block_size} characters")
stories_model, stories_tokenizer, _ = tinylm.load_model(find_or_train("tinystories", PROFILE), DEVICE)
print(f"TinyStories: {stories_model.num_parameters():,} parameters, context {stories_model.config.block_size} tokens")

# %% [markdown]
# ## Greedy decoding and sampling
#
# **Greedy** decoding always takes the most likely token (`temperature=0`). It is deterministic and tends to loop: a
# phrase that is the most likely continuation of its context returns whenever that context does. **Sampling** draws
# the next token from the model's distribution; a seed makes it repeatable.
#
# **Predict, then run.** 250 characters from `"ROMEO:\n"`, greedy then sampled: will the greedy text stay varied?

# %%
def distinct_4grams(ids: list[int]) -> float:
    """The share of distinct 4-grams (4 consecutive tokens) among all of them: 1.0 means nothing repeats."""
    grams = [tuple(ids[i : i + 4]) for i in range(len(ids) - 3)]
    return len(set(grams)) / max(len(grams), 1)


prompt = "ROMEO:\n"
for name, options in (("greedy", {"temperature": 0}), ("sampled (temperature 1, seed 1)", {"temperature": 1.0, "seed": 1})):
    text = tinylm.generate_text(model, tokenizer, prompt, 250, **options)
    print(f"--- {name}: distinct 4-grams {distinct_4grams(tokenizer.encode(text[len(prompt):])):.2f} ---")
    print(text)

# %% [markdown]
# Greedy keeps returning to a few phrases (share of distinct 4-grams, 1.0 when no four consecutive characters repeat:
# 0.26, the sample's 0.96), drifting as the 64-character context is cropped (*When the context is full*). Holtzman
# et al. show the same for GPT-2: human text is not the most likely text. A sample wanders and misspells instead.
#
# ## Temperature
#
# Samplers act on the next token's logits `z`. **Temperature** `T` divides them before the softmax: `p_i = exp(z_i / T)
# / Σ_j exp(z_j / T)`. `T < 1` widens the gaps between logits, towards greedy (`T → 0`); `T > 1` narrows them, towards
# uniform (`T → ∞`); `T = 1` is the model's own distribution, its long tail of mistakes included (notebook 1, exercise
# 3). A sampler from scratch, checked draw for draw against `tinylm.generate.sampling.choose_next`:

# %%
def next_token_logits(model, tokenizer, text: str) -> torch.Tensor:
    ids = torch.tensor([tokenizer.encode(text)[-model.config.block_size:]], device=DEVICE)
    with torch.no_grad():
        logits, _ = model(ids)
    return logits[0, -1, : tokenizer.vocab_size].float().cpu()  # (vocab,)


def label(tokenizer, token: int) -> str:
    return repr(tokenizer.decode([token]))[1:-1] or "∅"


def sample_with_temperature(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    """One draw from softmax(logits / T); logits (vocab,)."""
    probs = torch.softmax(logits[None] / temperature, dim=-1)  # (1, vocab)
    return int(torch.multinomial(probs, 1, generator=generator))


context = "ROMEO:\nI will not s"
logits = next_token_logits(model, tokenizer, context)
for temperature in (0.3, 1.0, 2.5):
    mine = [sample_with_temperature(logits, temperature, torch.Generator().manual_seed(s)) for s in range(100)]
    package = [int(choose_next(logits[None], Sampling(temperature=temperature), torch.Generator().manual_seed(s)))
               for s in range(100)]
    assert mine == package
print("100 seeded draws at temperatures 0.3, 1 and 2.5: yours == tinylm's")

# %% [markdown]
# The distribution after a prompt, at three temperatures:

# %%
top = torch.softmax(logits, -1).topk(12).indices
at = {t: torch.softmax(logits / t, -1) for t in (0.5, 1.0, 2.0)}  # temperature -> probabilities (vocab,)
plot_token_bars({f"T = {t}: top-1 {probs.max():.0%}": probs[top] for t, probs in at.items()},
                [label(tokenizer, t) for t in top.tolist()], title=f"next character after {context!r}")
plt.show()

# %% [markdown]
# How spread out is a distribution? Its entropy `H = −Σ p_i ln p_i`, or better `e^H`, the **effective number of
# choices**: a uniform choice among `n` tokens has `e^H = n`.
#
# **Predict, then run.** After this context, among how many characters does the model effectively choose at `T = 1`:
# about 2, 10 or 40? What does `e^H` tend to as `T → 0`, and as `T → ∞`?

# %%
temperatures = torch.logspace(-1.5, 1.5, 61)  # 0.03 to 32
choices = [math.exp(torch.distributions.Categorical(logits=logits / t).entropy()) for t in temperatures.tolist()]
plot_effective_choices(temperatures.tolist(), choices, tokenizer.vocab_size, title=f"after {context!r}")
plt.show()
at_one = math.exp(torch.distributions.Categorical(logits=logits).entropy())
print(f"at T = 1 the model chooses among about {at_one:.1f} characters here")

# %% [markdown]
# The tail of short bars adds to `e^H`: a little probability on many unlikely characters, which a long text visits
# often; a temperature a little below 1 shrinks it. At the ends the curve flattens at one choice and at every character
# equally likely. The next two samplers cut the tail off.

# %% [markdown]
# ## Top-k and top-p
#
# **Top-k** (Fan et al. 2018) keeps the `k` most likely tokens. **Top-p** (the *nucleus*, Holtzman et al.) keeps the
# smallest set of most likely tokens holding probability at least `p`: few when the model is sure, many when it is not,
# the paper's argument over top-k. Both set removed logits to −∞ before the softmax.

# %%
probs = torch.softmax(logits, -1)
order = probs.argsort(descending=True)[:20]
kept_k = torch.isfinite(keep_top_k(logits[None], 5))[0]
kept_p = torch.isfinite(keep_top_p(logits[None], 0.9))[0]
panels = {f"{name}: {int(kept.sum())} tokens kept, {probs[kept].sum():.0%} of the probability": probs[order]
          for name, kept in (("top-k, k = 5", kept_k), ("top-p, p = 0.9", kept_p))}
plot_token_bars(panels, [label(tokenizer, t) for t in order.tolist()], kept=[kept_k[order], kept_p[order]])
plt.show()

# %% [markdown]
# The package applies, in Hugging Face's order, the repetition penalty, temperature, top-k, top-p, then a draw
# (`tinylm.generate.sampling`). Top-p keeps exactly this distribution's nucleus:

# %%
cumulative_before = probs[probs.argsort(descending=True)].cumsum(0) - probs[probs.argsort(descending=True)]
nucleus_size = int((cumulative_before < 0.9).sum())
assert int(kept_p.sum()) == nucleus_size and probs[kept_p].sum() >= 0.9
print(f"top-p 0.9 keeps {nucleus_size} of {tokenizer.vocab_size} characters here")

# %% [markdown]
# ## Repetition, and the penalty that breaks it
#
# CTRL's **repetition penalty** (Keskar et al., 2019) divides the logit of every token already in the sequence by the
# penalty, which makes a seen token with a negative logit *more* likely; Hugging Face (issue #2302, PR #2303) and
# tinylm multiply negative logits instead. Both rules depend on where zero lies, which softmax ignores; subtracting a
# constant would not. CTRL used it with greedy decoding, a little above 1. It is blunt: it also penalises "the" and
# ".".
#
# **Predict, then run.** Greedy story continuations without and with a penalty of 1.3. Without it, will the share of
# distinct 4-grams be near 1 or well below? Will the penalty make the text better, or only different?

# %%
loop_prompt = "Once upon a time, there was a little"
for penalty in (1.0, 1.3):
    text = tinylm.generate_text(stories_model, stories_tokenizer, loop_prompt, 120, temperature=0,
                                repetition_penalty=penalty)
    new_ids = stories_tokenizer.encode(text[len(loop_prompt):])
    print(f"--- greedy, repetition penalty {penalty}: distinct 4-grams {distinct_4grams(new_ids):.2f} ---")
    print(text)

# %% [markdown]
# Greedy is deterministic: each share is one measurement. Without the penalty about a quarter of the 4-grams repeat
# ("I'm going to ...," she said, three lines running). With 1.3 the loops are gone, but the story is no more coherent
# ("something shiny in the garden that made of different colors", "I'm sorry for you"): different, not better. On
# sampled text (temperature 0.5, top-k 40), the count below shows the mechanism, not quality, since a penalty on seen
# tokens cuts repeats by construction:

# %%
PENALTY_SEEDS = range(2 if PROFILE == "smoke" else 6)
sampled_shares = {}
for penalty in (1.0, 1.3):
    sampled_shares[penalty] = []
    for seed in PENALTY_SEEDS:
        text = tinylm.generate_text(stories_model, stories_tokenizer, loop_prompt, 120, temperature=0.5, top_k=40,
                                    repetition_penalty=penalty, seed=seed)
        sampled_shares[penalty].append(distinct_4grams(stories_tokenizer.encode(text[len(loop_prompt):])))
    print(f"penalty {penalty}: distinct 4-grams {spread(sampled_shares[penalty]).format(3)}")
print(compare("penalty 1.3", sampled_shares[1.3], "no penalty", sampled_shares[1.0], lower_is_better=False,
              metric="distinct 4-grams of sampled text (temperature 0.5, top-k 40)"))

# %% [markdown]
# Sampled text still repeats a little, and the penalty left almost none: told apart, on one prompt.
#
# ## The KV cache, step by step
#
# Without a cache, generating token `t+1` reruns the model over all `t` tokens. But in a causal model the first `t`
# positions never see a later token, so their keys and values stay the same; the new token needs only its own q, k, v
# and the past keys and values:
#
# 1. **prefill**: run the prompt once and keep every layer's keys and values;
# 2. **decode**: feed one token; in each layer compute its q, k, v, append k and v to the cache, and let its one
#    query attend to every cached key.
#
# Three decode steps after a four-token prompt:

# %%
draw_kv_cache(prompt_length=4, steps=3)
plt.show()

# %% [markdown]
# That forward pass, with the model's own weights. `past` holds one `(k, v)` pair per layer, each `(B, n_head,
# T_past, head_size)`; the new tokens' positions start at `T_past`.

# %%
@torch.no_grad()
def forward_with_cache(model, idx: torch.Tensor, past: list | None):
    """idx (B, T) new tokens -> (logits (B, T, vocab), past with the new keys and values appended)."""
    B, T = idx.shape
    past_length = 0 if past is None else past[0][0].size(2)
    positions = torch.arange(past_length, past_length + T, device=idx.device)  # (T,)
    x = model.transformer.wte(idx) + model.transformer.wpe(positions)  # (B, T, C)
    new_past = []
    for i, block in enumerate(model.transformer.h):
        attn = block.attn
        q, k, v = attn.heads(block.ln_1(x))  # (B, nh, T, hs) each: only the new positions
        if past is not None:
            k = torch.cat([past[i][0], k], dim=2)  # (B, nh, T_past + T, hs)
            v = torch.cat([past[i][1], v], dim=2)
        new_past.append((k, v))
        # The T new queries are the last T positions: query j sees every key up to position T_past + j.
        visible = torch.ones(T, past_length + T, dtype=torch.bool, device=idx.device).tril(diagonal=past_length)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, nh, T, T_past + T)
        weights = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, -1)  # (B, nh, T, hs) -> (B, T, C)
        x = x + attn.c_proj(y)
        x = x + block.mlp(block.ln_2(x))
    return model.lm_head(model.transformer.ln_f(x)), new_past


model.eval()
sequence = torch.tensor([tokenizer.encode("ROMEO:\nI will not stay")], device=DEVICE)  # (1, 22)
with torch.no_grad():
    full_logits, _ = model(sequence)  # every position at once, no cache
logits_prefill, past = forward_with_cache(model, sequence[:, :7], None)  # the prompt "ROMEO:\n"
step_logits = [logits_prefill[:, -1]]
for t in range(7, sequence.size(1)):  # then one character at a time
    logits_t, past = forward_with_cache(model, sequence[:, t : t + 1], past)
    step_logits.append(logits_t[:, -1])
max_error = (torch.stack(step_logits, 1) - full_logits[:, 6:]).abs().max().item()  # positions 6 to the last
assert max_error < 1e-4
print(f"cached decoding matches the full forward pass at all {len(step_logits)} positions from the prompt's last "
      f"(max |difference| {max_error:.1e})")
print(f"the cache holds {len(past)} layer{'s' if len(past) > 1 else ''} x (k, v) of shape {tuple(past[0][0].shape)}")

# %% [markdown]
# `tinylm.KVCache` does the same, but allocates its storage once (prompt + new tokens, at most the context) instead
# of concatenating (a `cat` copies the whole past every step) and handles padded batches. Same tokens:

# %%
def greedy_with_my_cache(model, prompt_ids: list[int], new_tokens: int) -> list[int]:
    logits, past = forward_with_cache(model, torch.tensor([prompt_ids], device=DEVICE), None)
    out = []
    for _ in range(new_tokens):
        token = int(logits[0, -1, : tokenizer.vocab_size].argmax())
        out.append(token)
        logits, past = forward_with_cache(model, torch.tensor([[token]], device=DEVICE), past)
    return out


prompt_ids = tokenizer.encode("ROMEO:\n")
budget = model.config.block_size - len(prompt_ids)  # stay inside the context: see below for what happens then
mine = greedy_with_my_cache(model, prompt_ids, budget)
package = tinylm.generate_batch(model, [prompt_ids], budget, temperature=0, use_cache=True)[0]
no_cache = tinylm.generate_batch(model, [prompt_ids], budget, temperature=0, use_cache=False)[0]
assert mine == package == no_cache
print(f"{budget} greedy tokens: your cache == tinylm's cache == no cache")

# %% [markdown]
# **What a cache costs.** Two tensors (k and v) per layer, each `batch × context × n_embd` values:

# %%
# NBVAL_CHECK_OUTPUT
def cache_megabytes(cfg: tinylm.GPTConfig, batch_size: int = 1, bytes_per_value: int = 2) -> float:
    return 2 * cfg.n_layer * batch_size * cfg.block_size * cfg.n_embd * bytes_per_value / 2**20


print(f"GPT-2 124M, one sequence of 1,024 tokens in bf16: {cache_megabytes(tinylm.GPT2_124M):.1f} MiB")
print(f"GPT-2 124M, a batch of 64: {cache_megabytes(tinylm.GPT2_124M, 64) / 1024:.2f} GiB")

# %% [markdown]
# **When the context is full.** GPT-2 learns one embedding per absolute position, so sliding the window one token would
# move every token and invalidate every cached key. tinylm **crops** instead, like llama.cpp's context swapping: it
# keeps the most recent `keep` tokens (half the context by default), prefills them again and decodes on
# (`keep=block_size` slides exactly, a prefill every step). Uncached generation crops alike, so both give the same
# tokens. RoPE models (notebook 8a) are cropped too: rotating their cached keys (llama.cpp's context shift) would not
# match a fresh run, as deeper layers' kept keys saw the dropped tokens.
#
# ## How much faster, token by token
#
# We time each decode step (`tinylm.generate.decode.decode`) with and without the cache. Both arms run the head on the
# last position only and walk the modules (`fast=False`), so the cache is the only difference. Two models: the
# Shakespeare one (context 64), and a 16M one with GPT-2's vocabulary and context and random weights (speed does not
# depend on them). Rounds alternate which arm goes first, against a shared machine's noise; the plots show round 1.
#
# **Predict, then run.** Does the time per token grow with the text, without the cache? With it? Which model will the
# cache help more: the 1-layer Shakespeare model, or the 16M one with a 1,024-token context?

# %%
def seconds_per_token(model, prompt_ids: list[int], new_tokens: int, use_cache: bool) -> list[float]:
    steps = decode(model, [prompt_ids], new_tokens, Sampling(temperature=0), use_cache=use_cache, fast=False)
    times, last = [], time.perf_counter()
    for _ in steps:
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


new_tokens = {"smoke": 60}.get(PROFILE, 500)
wide_cfg = (tinylm.GPTConfig(vocab_size=512, block_size=128, n_layer=2, n_head=2, n_embd=64) if PROFILE == "smoke"
            else tinylm.GPTConfig(vocab_size=50304, block_size=1024, n_layer=4, n_head=4, n_embd=256))
torch.manual_seed(0)
wide_model = tinylm.GPT(wide_cfg).to(DEVICE).eval()
ROUNDS = 2 if PROFILE == "smoke" else 3
timings = {}  # name -> {cached: seconds of each token}, the first round's, for the plots
rates = {}  # name -> {cached: tokens/s of each round}
for name, m, ids in (("Shakespeare", model, prompt_ids), (f"{wide_model.num_parameters() / 1e6:.0f}M, GPT-2 vocabulary", wide_model, [0])):
    seconds_per_token(m, ids, 5, True)  # warm-up
    rates[name] = {True: [], False: []}
    for round_index in range(ROUNDS):
        for cached in ((True, False) if round_index % 2 == 0 else (False, True)):  # alternate who goes first
            seconds = seconds_per_token(m, ids, new_tokens, cached)
            rates[name][cached].append(new_tokens / sum(seconds))
            timings.setdefault(name, {}).setdefault(cached, seconds)

print(f"timed on: {cpu_name()}")
for name, r in rates.items():
    print(compare("with cache", r[True], "without cache", r[False], lower_is_better=False,
                  metric=f"{name} tokens/s over {ROUNDS} rounds of {new_tokens} tokens", digits=0, replicate="round"))
    print(f"  every round, tokens/s: with cache {', '.join(f'{x:,.0f}' for x in r[True])}; "
          f"without {', '.join(f'{x:,.0f}' for x in r[False])}")
    print(f"  each round's ratio, with / without: {', '.join(f'{a / b:.1f}x' for a, b in zip(r[True], r[False]))}")
plot_token_times(timings)
plt.show()

# %% [markdown]
# Tokens/s do not compare across models; ratios do. Each round's ratio is one replicate; running both arms back to
# back cancels a slow spell only if it hits both: in the 16M model's round 2 (3.3x) only the cached run was slow (166
# tokens/s, against 330 and 299). Still, every 16M round (6.4x, 3.3x, 5.8x) beats every Shakespeare round (2.4x, 2.3x,
# 2.5x): consistent with the cache saving more where the uncached step redoes more positions (up to 500 against at
# most 64), though the models differ in more than that.
#
# In the 16M plot only the uncached step grows visibly with the context. The Shakespeare plot's regular cached spikes
# are crops: every 33 characters the context drops from 64 to 32, prefilled again. The first step holds the prompt's
# prefill and setup; other spikes are noise.
#
# Where the gain stops: a cached step still reads **every weight once**, in the 16M model mostly its 50,304 × 256
# output head, so the gain is bounded at a short context and grows with it (`python -m tinylm.bench decode` measures
# longer prompts). In the tiny Shakespeare model fixed per-operation costs are likely much of a cached step (not
# measured). At scale a decoding step is bound by reading weights and cache from memory, not by FLOPs (Pope et al.,
# 2022): hence servers batch many users' steps.

# %% [markdown]
# ## A model with skill: the samplers and the cache on SmolLM2
#
# SmolLM2-135M-Instruct (notebooks 6b and 8a; a dequantised 4-bit Q4_1 copy) has 30 layers and follows instructions,
# so a sampler's effect shows in an answer's quality. It was fine-tuned on conversations wrapped in role markers
# (system, user, assistant), so a prompt must be wrapped the same way, in its **chat template** (notebook 9 builds
# one). Each setting with the same seed:

# %%
smol, smol_tokenizer = real_model("smollm2-135m-instruct")
smol = smol.to(DEVICE).eval()
smol_chat = ChatTemplate(smol_tokenizer)
instruction = smol_chat.render_prompt([{"role": "system", "content": default_system_prompt(smol_tokenizer)},
                                       {"role": "user", "content": "Give me three ideas for a rainy afternoon."}])
SMOL_TOKENS = {"smoke": 8}.get(PROFILE, 60)
for setting, sampling in (("greedy", {"temperature": 0}), ("temperature 0.7, top-p 0.9", {"temperature": 0.7, "top_p": 0.9}),
                          ("temperature 1.5", {"temperature": 1.5}),
                          ("temperature 1.5, top-p 0.9", {"temperature": 1.5, "top_p": 0.9})):
    reply = tinylm.generate_batch(smol, [instruction], SMOL_TOKENS, stop_tokens=smol_chat.stop_tokens, seed=0,
                                  **sampling)[0]
    print(f"{setting}: {smol_tokenizer.decode(reply)!r}\n")

# %% [markdown]
# The cache's gain on this 30-layer model, timed as above:

# %%
smol_rates = {True: [], False: []}
seconds_per_token(smol, instruction, 5, True)  # warm-up
for round_index in range(ROUNDS):
    for cached in ((True, False) if round_index % 2 == 0 else (False, True)):
        smol_rates[cached].append(SMOL_TOKENS / sum(seconds_per_token(smol, instruction, SMOL_TOKENS, cached)))
print(f"prompt {len(instruction)} tokens, {SMOL_TOKENS} new")
print(compare("with cache", smol_rates[True], "without cache", smol_rates[False], lower_is_better=False,
              metric=f"SmolLM2 tokens/s over {ROUNDS} rounds", digits=1, replicate="round"))
print(f"  each round's ratio, with / without: "
      f"{', '.join(f'{a / b:.1f}x' for a, b in zip(smol_rates[True], smol_rates[False]))}")

# %% [markdown]
# Greedy repeats a phrase in each of its three items; 0.7 with top-p 0.9 does not, though its items are hardly
# rainy-afternoon ideas. At 1.5 the flattened distribution draws from its long tail (fragments of code and other
# languages); top-p 0.9 cuts that tail, and the reply starts in English, then drifts.
#
# The cache's ratios here (3.4x, 2.7x, 3.9x) are not told apart from the 16M model's (6.4x, 3.3x, 5.8x): two of them
# beat its slow 3.3x round. A context under 100 positions (against 500) would predict a smaller gain; these three
# rounds do not show it.
#
# ## Batches of different lengths, streams, and stops
#
# Prompts of different lengths share a batch by **left-padding**, so every row writes its next token into the same
# column. Padding is masked out as keys, and positions count from each row's first real token, so each row computes
# what it would alone:

# %%
prompts = ["ROMEO:\n", "JULIET:\nO Romeo", "KING HENRY VI:\nWhat"]
batch = tinylm.generate_batch(model, [tokenizer.encode(p) for p in prompts], 40, temperature=0)
for p, ids in zip(prompts, batch):
    alone = tinylm.generate_batch(model, [tokenizer.encode(p)], 40, temperature=0)[0]
    assert ids == alone
    print(repr(p + tokenizer.decode(ids)))

# %% [markdown]
# `tinylm.stream` yields the text as it is produced. A **stop string** ends generation and is never printed, even in
# part: text that could begin it is held back until it cannot. A BPE model also stops at its end-of-text token by
# default.

# %%
def speech(seed: int):
    """ROMEO's speech as a stream, ended by its first blank line."""
    return tinylm.stream(model, tokenizer, "ROMEO:\n", 300, temperature=0.8, top_p=0.95, seed=seed, stop="\n\n")


for seed in range(20):  # the first seed whose speech ends within 300 characters
    trial = speech(seed)
    "".join(trial)  # run it to its end
    if trial.stop_reason == "stop_string":
        break
else:
    print("no seed of 0-19 ended at a blank line within 300 characters: seed 19's speech, cut off")
print(f"seed {seed}\nROMEO:\n", end="")
pieces = speech(seed)
for piece in pieces:
    print(piece, end="", flush=True)
print(f"\n[{pieces.stop_description}]")  # the stream knows why it ended

# %% [markdown]
# A story that ends at `<|endoftext|>` is finished; one that hit `max_new_tokens` was cut off. `stop_reason` says
# which. The first of ten seeds whose story ends within 300 tokens, then the same seed with 40: the same draws, cut
# off.

# %%
story_prompt = "Once upon a time"
for seed in range(10):
    story = tinylm.stream(stories_model, stories_tokenizer, story_prompt, 300, temperature=0.8, top_k=40, seed=seed)
    story_text = "".join(story)
    if story.stop_reason == "stop_token":  # it ended by itself
        break
else:
    print("no seed of 0-9 reached <|endoftext|> within 300 tokens: seed 9 below is cut off both times\n")
short = tinylm.stream(stories_model, stories_tokenizer, story_prompt, 40, temperature=0.8, top_k=40, seed=seed)
short_text = "".join(short)
for room, stream_, story_part in ((300, story, story_text), (40, short, short_text)):  # room: not the exercises' budget
    print(f"--- seed {seed}, room for {room} tokens ---\n{story_prompt}{story_part}\n[{stream_.stop_description}]\n")

# %% [markdown]
# ## The playground
#
# One call opens a prompt box, sliders for every setting and a Generate button, and streams the output, its speed and
# why it stopped. Without widgets (CI, the committed outputs) it generates once and prints. Its speed is the whole
# call's, not comparable with the rates above.

# %%
session = tinylm.playground(model, tokenizer, "ROMEO:\n", max_new_tokens=200, temperature=0.8)

# %%
stories_session = tinylm.playground(stories_model, stories_tokenizer, "Once upon a time, there was a dog",
                                    max_new_tokens=150, temperature=0.8, top_k=40)

# %% [markdown]
# ## The attention viewer
#
# Which earlier tokens does each position read? Row `t` is position `t`'s attention over positions `0..t`. Pick a layer
# and a head; look for heads that read the previous character, the start of the word, or the last newline.

# %%
weights = tinylm.attention_viewer(model, tokenizer, "ROMEO:\nI will not stay", layer=0, head=0)
assert torch.all(weights.triu(diagonal=1) == 0)  # nobody reads the future
print(f"attention maps: {tuple(weights.shape)} = (layers, heads, queries, keys)")

# %% [markdown]
# One prompt is an anecdote. Each head's mean attention over a window of held-out Shakespeare, to four positions: "word
# start" is the latest space or newline, "first" the window's first character:

# %%
from tinylm.course.playground import attention_maps
from tinylm.train.recipes import prepare_shakespeare_char

window = torch.as_tensor(prepare_shakespeare_char().val[: model.config.block_size].astype("int64"))  # (T,)
maps = attention_maps(model, window[None].to(DEVICE)).cpu()  # (layers, heads, T, T)
chars = tokenizer.decode(window.tolist())
positions = torch.arange(1, len(window))  # queries 1..T-1: each has a previous character
last_break, latest = [], 0
for t in range(len(window)):  # the latest space or newline strictly before t (0 if none)
    last_break.append(latest)
    latest = t if chars[t] in " \n" else latest
reads = {"itself": maps[..., positions, positions], "previous": maps[..., positions, positions - 1],
         "word start": maps[..., positions, torch.tensor(last_break)[positions]], "first": maps[..., positions, 0]}
shares = {name: weight.mean(-1) for name, weight in reads.items()}  # (layers, heads) each
print(f"mean attention over {len(positions)} positions of held-out text\nlayer head | "
      + " | ".join(f"{name:>10}" for name in shares))
for layer in range(maps.size(0)):
    for head in range(maps.size(1)):
        print(f"{layer:5d} {head:4d} | " + " | ".join(f"{share[layer, head]:10.2f}" for share in shares.values()))

# %% [markdown]
# Head 2 attends mostly to the previous character, giving each position the second character a trigram conditions
# on. The other three give no column a fifth of their attention; the viewer shows where the rest goes. Columns
# overlap: after a space or newline the previous character is the word start, hence nearly all of head 2's 0.15.

# %%
stories_weights = tinylm.attention_viewer(stories_model, stories_tokenizer,
                                          "Lily saw a big dog. Lily was scared of the dog",
                                          layer=stories_model.config.n_layer - 1, head=0)

# %% [markdown]
# In the story model's map (last layer, head 0), on this prompt, the row of " the" puts most weight on the earlier
# " dog", the very word that follows: attention that fetches an earlier word to copy.
#
# ## What you learned
#
# - Generation is a loop: logits, a sampler, append, again. Greedy (`T → 0`) loops; `T = 1` samples the model's
#   uncertainty, tail included.
# - Temperature divides the logits; top-k keeps `k` tokens, top-p the smallest set holding `p`; the repetition penalty
#   breaks loops bluntly.
# - A **KV cache** prefills the prompt once, then computes one token's q, k, v per step against the cached keys and
#   values, giving the same tokens. It holds `2 × layers × context × width` values per sequence (multi-head
#   attention) and still reads every weight per token, so its gain grows with the context.
# - A full context is cropped and prefilled again; left-padded prompts share a batch; a stream says why it stopped.
#
# ## Exercises
#
# **1. The nucleus by hand.** Return a boolean mask of the tokens top-p keeps, for a 1-D tensor of
# logits: the smallest set of most likely tokens whose probabilities add up to at least `p`.

# %%
def nucleus(logits: torch.Tensor, p: float) -> torch.Tensor:
    raise NotImplementedError


def test_nucleus():
    generator = torch.Generator().manual_seed(0)
    for p in (0.1, 0.5, 0.9, 0.99, 1.0):
        random_logits = torch.randn(100, generator=generator) * 2
        expected = torch.isfinite(keep_top_p(random_logits[None], p))[0]
        assert torch.equal(nucleus(random_logits, p), expected), f"p = {p}"


check(test_nucleus)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def nucleus(logits, p):
#     probs = torch.softmax(logits, dim=-1)
#     order = probs.argsort(descending=True)
#     mass_before = probs[order].cumsum(0) - probs[order]  # what the more likely tokens already hold
#     mask = torch.zeros_like(probs, dtype=torch.bool)
#     mask[order[mass_before < p]] = True
#     return mask
# ```
# </details>
#
# **2. What a cache holds.** Return the number of bytes a `tinylm.KVCache` allocates for a model, a batch
# size and a dtype; the check fills a real cache and counts.

# %%
def kv_cache_bytes(cfg: tinylm.GPTConfig, batch_size: int, dtype: torch.dtype) -> int:
    raise NotImplementedError


def test_kv_cache_bytes():
    for cfg, batch_size, dtype in ((model.config, 3, torch.float32), (wide_cfg, 2, torch.bfloat16)):
        m = tinylm.GPT(cfg).to(dtype)
        cache = tinylm.KVCache(cfg, batch_size)
        with torch.no_grad():
            m.decode_step(torch.zeros(batch_size, 1, dtype=torch.long), cache)
        allocated = sum(t.nbytes for layer in cache.layers for t in (layer.keys, layer.values))
        assert kv_cache_bytes(cfg, batch_size, dtype) == allocated, (
            f"batch {batch_size}, {dtype}: {kv_cache_bytes(cfg, batch_size, dtype):,} bytes, the cache holds {allocated:,}")


check(test_kv_cache_bytes)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def kv_cache_bytes(cfg, batch_size, dtype):
#     values = 2 * cfg.n_layer * batch_size * cfg.block_size * cfg.n_embd  # k and v, every layer, the whole context
#     return values * torch.tensor([], dtype=dtype).element_size()
# ```
# </details>
#
# **3. Sampling with your cache.** Write `sample_with_my_cache`: like `greedy_with_my_cache` above, but
# drawing each token with `tinylm.generate.sampling.choose_next` and a `torch.Generator` seeded with `seed` (as
# `Sampling(seed=seed).generator(...)` makes). It must give exactly the tokens of
# `tinylm.generate_batch(..., temperature=temperature, top_k=top_k, seed=seed)`.

# %%
def sample_with_my_cache(model, prompt_ids: list[int], new_tokens: int, temperature: float, top_k: int, seed: int) -> list[int]:
    raise NotImplementedError


def test_sample_with_my_cache():
    for temperature, top_k, seed in ((1.0, 10, 0), (0.7, 3, 5)):
        mine = sample_with_my_cache(model, prompt_ids, budget, temperature, top_k, seed)
        expected = tinylm.generate_batch(model, [prompt_ids], budget, temperature=temperature, top_k=top_k, seed=seed)[0]
        assert mine == expected, (temperature, top_k, seed)


check(test_sample_with_my_cache)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# from tinylm.generate.sampling import choose_next
#
# def sample_with_my_cache(model, prompt_ids, new_tokens, temperature, top_k, seed):
#     sampling = Sampling(temperature=temperature, top_k=top_k, seed=seed)
#     generator = sampling.generator(DEVICE)
#     logits, past = forward_with_cache(model, torch.tensor([prompt_ids], device=DEVICE), None)
#     out = []
#     for _ in range(new_tokens):
#         token = int(choose_next(logits[:, -1], sampling, generator))
#         out.append(token)
#         logits, past = forward_with_cache(model, torch.tensor([[token]], device=DEVICE), past)
#     return out
# ```
#
# (`tinylm.generate_text` and `tinylm.stream` also mask ids at or above the tokenizer's vocabulary; `generate_batch`,
# which the check uses, does not, so the two agree. The check stays within the context, where no
# cropping happens.)
# </details>
#
# **4. An experiment: temperature, counted.** At `T = 0.5`, how often does the sampler choose the most likely
# next character after `context` (the prompt of the temperature section)? **Predict it first**: work out the
# probability from `logits` and write it into `my_prediction`. Then measure it: draw `my_draws` characters (1,000
# or more) with `choose_next(logits[None], Sampling(temperature=0.5), generator)`, from one `torch.Generator`
# seeded once with `my_seed`, keep them as a list of ids in `draws`, count how many are the top character
# `int(logits.argmax())`, and write the fraction into `my_frequency`.
#
# The check needs no answer key: it holds your prediction against your measurement. Your draws are repeatable:
# it draws again from a generator seeded with `my_seed` and must get the very same characters, and your fraction
# must be the one those draws give. Every draw picks the top character with the same probability, so the count is
# binomial, and your prediction must lie inside its 99.7% Wilson interval (`z = 3`); a right prediction fails that
# about 3 times in 1,000 seeds.

# %%
my_draws = 1_000
my_seed = 0  # the seed of your one generator
my_prediction = None  # replace with your prediction: the probability that a draw at T = 0.5 is the top character
draws = None  # replace with your list of my_draws drawn ids
my_frequency = None  # replace with your measurement: the fraction of draws that chose the top character


def test_temperature_frequency():
    if my_prediction is None or my_frequency is None or draws is None:
        raise NotImplementedError("predict into my_prediction, then run the experiment: keep the ids in draws and "
                                  "the fraction in my_frequency")
    assert 0 <= my_prediction <= 1, "my_prediction is a probability between 0 and 1, not a percentage"
    assert my_draws >= 1_000, "draw at least 1,000 characters: fewer leave an interval too wide to test anything"
    assert len(draws) == my_draws, f"draws holds {len(draws)} ids, my_draws says {my_draws}"
    generator = torch.Generator().manual_seed(my_seed)
    again = [int(choose_next(logits[None], Sampling(temperature=0.5), generator)) for _ in range(my_draws)]
    assert [int(d) for d in draws] == again, (
        "drawing again from a generator seeded with my_seed gives other characters: one generator, seeded once, "
        "and choose_next(logits[None], Sampling(temperature=0.5), generator) for every draw?")
    top = int(logits.argmax())
    assert math.isclose(my_frequency, again.count(top) / my_draws), \
        f"your draws chose the top character {again.count(top)} times in {my_draws:,}, not {my_frequency} of them"
    low, high = wilson_interval(again.count(top), my_draws, z=3.0)
    assert low <= my_prediction <= high, (
        f"you predicted {my_prediction:.3f}, but your draws chose the top character {my_frequency:.3f} of the time: "
        f"the 99.7% interval [{low:.3f}, {high:.3f}] excludes your prediction: did you divide the logits by T = 0.5?")
    print(f"predicted {my_prediction:.3f}; measured {my_frequency:.3f} in {my_draws:,} draws, 99.7% interval "
          f"[{low:.3f}, {high:.3f}]")


check(test_temperature_frequency)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# my_prediction = torch.softmax(logits / 0.5, dim=-1).max().item()  # the top character's probability at T = 0.5
# generator = torch.Generator().manual_seed(my_seed)
# top = int(logits.argmax())
# draws = [int(choose_next(logits[None], Sampling(temperature=0.5), generator)) for _ in range(my_draws)]
# my_frequency = draws.count(top) / my_draws
# print(my_prediction, my_frequency)
# ```
#
# Repeat it at `T = 1` and `T = 2`: the frequency follows the softmax at each temperature, and it falls
# towards `1 / tokenizer.vocab_size` (uniform) as `T` grows.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
