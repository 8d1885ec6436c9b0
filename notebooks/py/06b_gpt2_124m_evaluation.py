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
# # 6b · GPT-2 124M: HellaSwag, `torch.compile` and MFU, and OpenAI's weights
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/06b_gpt2_124m_evaluation.ipynb)
#
# [Notebook 6a](06a_gpt2_124m_budget_and_ddp.ipynb) budgeted the GPT-2 124M run and trained a small model
# with two processes. This notebook asks how good a model is and how well a run uses its GPU: HellaSwag, the
# benchmark build-nanogpt tracks, under each convention that published numbers use; what `torch.compile` and
# MFU measure; and OpenAI's own GPT-2 124M, loaded into tinylm's `GPT` and scored beside your run.
#
# **What you will learn**
# - how HellaSwag scores a model without generating anything, and why `acc_norm` means different numbers under
#   different conventions (per token, per character, GPT-3's);
# - how many examples it takes to tell two accuracies apart (a 95% interval on every accuracy), and, by your
#   own experiment (exercise 2), where a model with random weights lands;
# - what `torch.compile` does and how to measure it honestly, and what MFU says about a GPU run;
# - how OpenAI's weights load into tinylm, and where GPT-2 lands against your run and the published numbers.
#
# **Papers and code behind it**: HellaSwag ([Zellers et al. 2019](https://arxiv.org/abs/1905.07830)), GPT-2
# ([Radford et al. 2019](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf)),
# GPT-3 ([Brown et al. 2020](https://arxiv.org/abs/2005.14165)), the score interval
# ([Wilson 1927](https://doi.org/10.1080/01621459.1927.10502953)), PyTorch 2's compiler
# ([Ansel et al. 2024](https://doi.org/10.1145/3620665.3640366)), FlashAttention
# ([Dao et al. 2022](https://arxiv.org/abs/2205.14135)), MFU ([Chowdhery et al. 2022](https://arxiv.org/abs/2204.02311),
# appendix B), EleutherAI's [lm-evaluation-harness](https://github.com/EleutherAI/lm-evaluation-harness), and
# [build-nanogpt](https://github.com/karpathy/build-nanogpt) and [llm.c](https://github.com/karpathy/llm.c),
# whose HellaSwag scoring and reference numbers this notebook follows.
#
# **How long it takes**: a lesson of about 51 minutes (reading, code and the `cpu` run's 7 s, by the course's
# formula), then a second sitting of about 30 minutes for the 2 exercises (10 minutes per function, 20 per
# experiment).
#
# | profile | what runs | compute time |
# |---|---|---|
# | `smoke` (CI) | 16 HellaSwag examples; OpenAI's GPT-2 on 10 when online | under a minute |
# | `cpu` (2-core laptop) | 200 HellaSwag examples; OpenAI's GPT-2 on the first 100 when online | offline: the last cell prints it; online a few minutes more (estimated) |
# | `gpu` | the same, OpenAI's GPT-2 on 2,000 examples, and eager against compiled steps of the 124M model | not measured here |
#
# The model scored is the one notebook 6a trained with two processes; where it is missing (a fresh Colab
# machine), `find_or_train` trains a stand-in and says so. Offline, HellaSwag is the course mirror's local
# substitute for the official file, and OpenAI's weights cannot be downloaded: those cells say so and skip.

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import os
import time

import torch
import torch.nn.functional as F

import tinylm
import tinylm.runtime
from tinylm.bench.measure import CompileUnavailable, compare_compiled
from tinylm.course.notebooks import find_or_train
from tinylm.download import reachable
from tinylm.eval.hellaswag import ending_losses, evaluate_hellaswag, locate_val, read_examples, render_example
from tinylm.eval.loss import evaluate_loss, score_model
from tinylm.eval.uncertainty import compare, spread, wilson_interval
from tinylm.interop.hf_gpt2 import from_hf_gpt2

NOTEBOOK_STARTED = time.perf_counter()
PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
track = tinylm.get_track("gpt2-124m")
val_shard = track.prepare("cpu").val  # notebook 6a's 20,000-token validation shard
run_folder = find_or_train("gpt2-124m", PROFILE)  # notebook 6a's 2-process run, or a stand-in
model, tokenizer, state = tinylm.load_model(run_folder, "cpu")
print(f"profile {PROFILE}, device {DEVICE}; the model: {model.num_parameters():,} parameters, "
      f"{model.config.n_layer} layers x {model.config.n_embd}, context {model.config.block_size}, "
      f"{state['step']} steps in {len(state['rng'])} process(es), validation loss {state['best_val_loss']:.3f}")

# %% [markdown]
# ## HellaSwag: scoring without generating
#
# HellaSwag (Zellers et al. 2019) asks a model to finish a sentence. Each example is a context and four
# endings, one of them right; the wrong ones were written by a language model and kept when they fooled
# other models, so they read plausibly. The model does not generate anything: it **scores** each ending.
# Each of the four rows is the context followed by one ending, and only the ending's tokens are scored: the
# cross-entropy of each ending token given everything before it. The ending with the lowest loss is the
# model's answer. Chance is 25%. How to compare the four losses is a *convention*, and published numbers use
# different ones:
#
# - **`acc`**: the lowest *summed* loss, the most probable ending. It favours short endings, since every
#   token adds loss;
# - **`acc_norm`**: the lowest *mean* loss per **token**, the "completion style" of build-nanogpt and llm.c.
#   Under it they measure 29.55% for OpenAI's GPT-2 124M on the 10,042 validation examples. Token counts depend
#   on the tokenizer, so it compares only models that tokenize alike;
# - **`acc_norm_char`**: the lowest loss per **character** of the ending: the normalisation of EleutherAI's
#   evaluation harness, which does not depend on the tokenizer. The harness also writes the prompt its own way
#   (the activity label and a colon first, WikiHow's bracketed markers removed), and with both it reports
#   31.14% for the same GPT-2 124M (as llm.c's `hellaswag.py` quotes it). tinylm applies only the
#   normalisation, to its own rendering, so its `acc_norm_char` is not the harness's number; it shows what the
#   normalisation alone changes, on the same losses;
# - GPT-3's paper (Brown et al. 2020) reports 33.7% for GPT-3 Small (125M parameters, 300B tokens) with its
#   own prompt format and a per-token likelihood.
#
# So "acc_norm" is not one number: a score is comparable with another only under the same convention, the
# same prompt format and the same file. The official validation file is on GitHub (`rowanz/hellaswag`).
# Offline, the course's data mirror has only a **local substitute**: the same 10,042 examples and labels, with
# the WikiHow texts cleaned of their `[header]`/`[step]` markers and some fields dropped. Scores on it are close
# to, not equal to, scores on the official file. `locate_val()` says which file it found:

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
# Score the four rows by hand with the model notebook 6a trained (its context is short, so rows longer than it
# keep their last `block_size + 1` tokens), and check the package's `ending_losses`, which returns each ending's
# summed loss and its number of tokens:

# %%
model.eval()
rows, row_mask = render_example(example, tokenizer.encode, model.config.block_size)
with torch.no_grad():
    logits = model(rows[:, :-1])[0][..., :tokenizer.vocab_size]  # (4, T, vocab): no padding rows of the embedding
per_position = F.cross_entropy(logits.transpose(1, 2), rows[:, 1:], reduction="none")  # (4, T)
by_hand = (per_position * row_mask[:, 1:]).sum(dim=1)
summed, counts = ending_losses(model, tokenizer, example, "cpu")
assert torch.allclose(by_hand, summed, atol=1e-4) and torch.equal(row_mask[:, 1:].sum(dim=1), counts)
for i in range(4):
    print(f"ending {i}: summed loss {summed[i]:6.2f} over {int(counts[i])} tokens, mean {summed[i] / counts[i]:.2f}"
          f"{'   <- right' if i == example.label else ''}")
print(f"acc picks {int(summed.argmin())}, acc_norm picks {int((summed / counts).argmin())}, the right one is {example.label}")

# %% [markdown]
# `evaluate_hellaswag` does this for a list of examples and counts the right answers under all three
# conventions at once (under DDP, each rank scores every W-th example and the counts are summed). With a model
# that has read a few tens of thousands of tokens, expect chance, give or take the noise of a small sample.
#
# How much noise? An accuracy measured on `n` examples is a count of successes out of `n`, and its **95%
# confidence interval** (Wilson's score interval, `tinylm.eval.uncertainty.wilson_interval`) is the range of
# true accuracies that such a count does not rule out. Every accuracy this notebook measures is printed with it:

# %%
HELLASWAG_EXAMPLES = 16 if PROFILE == "smoke" else 200
CONVENTIONS = {"acc": ("correct", "lowest summed loss"), "acc_norm": ("correct_norm", "per token: build-nanogpt"),
               "acc_norm_char": ("correct_norm_char", "per character: the harness's normalisation")}


def with_interval(scores: dict, count_key: str) -> str:
    """'accuracy [low, high]': an accuracy and its 95% Wilson interval, from the counts evaluate_hellaswag returns."""
    low, high = wilson_interval(scores[count_key], scores["examples"])
    return f"{scores[count_key] / scores['examples']:.3f} [{low:.3f}, {high:.3f}]"


scores = evaluate_hellaswag(model, tokenizer, examples[:HELLASWAG_EXAMPLES])
print(f"your model on the first {scores['examples']} examples, accuracy [95% interval]:")
for key, (count_key, convention) in CONVENTIONS.items():
    low, high = wilson_interval(scores[count_key], scores["examples"])
    verdict = "contains chance (25%)" if low <= 0.25 <= high else "excludes chance (25%)"
    print(f"  {key:<14} {with_interval(scores, count_key)}  {verdict}; {convention}")

# %% [markdown]
# How many examples does it take to tell GPT-2's published 29.55% from chance? Suppose a model scored exactly
# that on `n` examples (arithmetic, no model involved):

# %%
# NBVAL_CHECK_OUTPUT
for n in (100, 2_000, 10_042):
    low, high = wilson_interval(round(0.2955 * n), n)
    print(f"29.55% of {n:>6,} examples: 95% interval [{low:.1%}, {high:.1%}], "
          f"{'contains' if low <= 0.25 <= high else 'excludes'} chance (25%)")

# %% [markdown]
# The interval shrinks as 1/√n: 100 examples cannot tell GPT-2's published score from chance, 2,000 can, and
# all 10,042 narrow it to about a point either side. That is why the track scores every example in its gpu
# profile.
#
# ## How well a run uses its GPU: `torch.compile` and MFU
#
# The gpu recipe turns on two switches that a CPU run leaves off. One is 16-bit autocast, which notebook 5
# explains and measures. The other is **`torch.compile`**: it traces the model's Python code into a graph and
# generates fused kernels. The elementwise operations after a matmul (bias, GELU, residual add, LayerNorm, the
# softmax of the loss) become one kernel that reads and writes memory once instead of once per operation, and
# fewer kernels mean fewer launches, which cuts the per-step overhead of Python and of launching small kernels.
# The matmuls themselves stay library calls, and attention already is one fused kernel (FlashAttention behind
# `F.scaled_dot_product_attention`; notebook 2a). Compiling costs time once, at the first step. The losses should
# agree with eager ones to rounding, not bit for bit: the generated kernels compute the same operations but group
# and order the floating-point arithmetic differently, and its rounding depends on the order.
#
# Whether it pays depends on the hardware and the model, so it is measured, not assumed:
# `tinylm.bench.measure.compare_compiled` trains the model eager and compiled from the same weights on the same
# batches (their losses should agree to rounding), times the compile, then runs interleaved rounds (eager,
# compiled, compiled, eager, ...) so that a busy spell of the machine hits both arms. The verdict follows the
# course's rule (`tinylm.eval.uncertainty.compare`): **told apart only with at least 3 rounds per arm and ranges
# that do not overlap**, else "not told apart". The same comparison runs from a terminal on any machine as
# `python -m tinylm.bench compile`.
#
# **MFU**, model FLOPs utilisation, says how much of the hardware's peak a run turns into training:
#
# $$\text{MFU} = \frac{\text{flops\_per\_token} \times \text{tokens/s}}{\text{peak FLOP/s per GPU} \times \text{processes}}$$
#
# The trainer logs it with every training line when `tinylm/runtime.py` lists the GPU's dense peak for the
# run's precision, from the vendors' datasheets. A CPU has no entry, so CPU runs log no MFU. The 16-bit peaks:

# %%
# NBVAL_CHECK_OUTPUT
for gpu_name, tflops in tinylm.runtime.PEAK_TFLOPS_16BIT.items():
    print(f"{gpu_name:>5}: {tflops:>4} TFLOP/s")
gpu_preset, gpu_train_cfg = track.recipe("gpu")
padded_cfg = gpu_preset.config(vocab_size=50_304)
with torch.device("meta"):
    flops_per_token = tinylm.GPT(padded_cfg).flops_per_token()
tokens_per_s_needed = 0.4 * 989e12 / flops_per_token  # 40% of an H100's dense bf16 peak
print(f"GPT-2 124M at 40% MFU on one H100: {tokens_per_s_needed:,.0f} tokens/s (arithmetic), so a 524,288-token "
      f"step every {gpu_train_cfg.total_batch_tokens / tokens_per_s_needed:.2f} s")

# %% [markdown]
# Beside that arithmetic, what one H100 measured ([docs/results/gpu-2026-11-26.md](../docs/results/gpu-2026-11-26.md),
# made by `scripts/gpu_evidence.py`): the 124M step (its 50,257 rows unpadded) of 16 × 1,024 tokens in bf16 took
# 79.46 ms eager, 17.8% MFU, and 39.25 ms compiled, 36.1% MFU, after 23.6 s of compiling; the two runs' losses
# agreed.

# %% [markdown]
# On a GPU runtime the next cell races eager against compiled steps of the 124M model itself (8 sequences of
# 1,024 tokens, in the recipe's 16-bit precision) and prints each arm's MFU. On a CPU it measures nothing: a
# first compile there takes tens of seconds to minutes on two cores, and a CPU has no peak to give an MFU.

# %%
if DEVICE.type != "cuda":
    print(f"torch.compile and MFU: not measured on a {DEVICE.type} run; on a GPU runtime this cell measures them, "
          "and `python -m tinylm.bench compile --preset gpt2-smoke --batch-size 16` races the two on any machine")
else:
    try:
        race = compare_compiled(padded_cfg, batch_size=8, rounds=6, device=str(DEVICE))
    except CompileUnavailable as error:
        race = None
        print(error)
    if race is not None:
        gap = max(abs(a - b) for a, b in zip(race["losses"]["eager"], race["losses"]["compiled"]))
        print(f"losses of {len(race['losses']['eager'])} steps from the same weights differ by at most {gap:.1e}; "
              f"compiling took about {race['compile_s']:.0f} s")
        peak = tinylm.runtime.peak_flops_per_s(DEVICE, tinylm.resolve_dtype(DEVICE))
        for name, values in race["round_ms"].items():
            rounds = spread(values)
            mfu = "no peak listed for this GPU" if peak is None else \
                f"MFU {flops_per_token * 8 * 1024 / (rounds.mean / 1e3) / peak:.0%}"
            print(f"{name:>9}: {rounds.format(1, replicate='round')} ms per step; {mfu}")
        print(compare("compiled", race["round_ms"]["compiled"], "eager", race["round_ms"]["eager"],
                      metric="ms per step", digits=1, replicate="round"))

# %% [markdown]
# Read your own lines: the printed verdict is the only claim this notebook makes about speed. On a GPU an eager
# step also pays for launching hundreds of small kernels, an overhead compiling reduces; for a small model on
# a CPU the generated code need not beat PyTorch's own kernels. Where compiling does pay, a long
# run earns the compile time back many times; a short demonstration may not. (`--set compile=true` or `false`
# switches it for `python -m tinylm.train`; evaluation, sampling and checkpoints keep using the plain model.)
#
# ## OpenAI's GPT-2 124M, in tinylm
#
# tinylm's parameter names are GPT-2's own, so models move between tinylm and Hugging Face `transformers` key
# for key, four `Conv1D` matrices transposed. `python -m tinylm.interop export --ckpt RUN --out FOLDER` writes a
# folder that `transformers` loads as a `GPT2LMHeadModel` (and that `huggingface-cli upload` puts on the Hub);
# `from_hf_gpt2` goes the other way. `from_hf_gpt2("gpt2")` reads OpenAI's 124M model from the Hub (548 MB)
# into tinylm's own `GPT`: the architecture notebook 6a budgets, with the unpadded 50,257-row vocabulary.
# OpenAI trained it on WebText (40 GB of web pages linked from Reddit), not on FineWeb-Edu, so its numbers here
# are a reference point for a 124M run, not a ceiling.
#
# Two measurements, with the package's `score_model`, the function the results table uses for every model: the
# validation loss on notebook 6a's 20,000-token validation shard, and HellaSwag on the first examples of the
# file `locate_val()` found (a CPU scores 100, a GPU 2,000). build-nanogpt puts this checkpoint at **3.2924**
# validation loss, the baseline for its own runs' validation curves, which its training script computes on 20
# batches of 64 × 1,024 tokens per GPU read from the start of its FineWeb-Edu validation shard: a slice of that
# 100M-token split, not all of it. It also gives 29.55% HellaSwag per token on the official file. Loading needs
# the network: offline the cells skip.
#
# **Predict, then run.** Will 100 examples tell GPT-2's HellaSwag score from chance? Online, the cell also scores
# its validation loss on your 20,000 tokens: will it land near your model's (the setup cell printed it), near
# build-nanogpt's 3.2924, or lower? Offline, the cell answers the first question from the published score.

# %%
REFERENCE_EXAMPLES = {"smoke": 10, "cpu": 100, "gpu": 2_000}[PROFILE]
reference_examples = read_examples(val_file.path, limit=REFERENCE_EXAMPLES)
precision = tinylm.runtime.autocast(DEVICE, tinylm.resolve_dtype(DEVICE))  # 16-bit on a GPU; a no-op on a CPU
hellaswag_file = "official file" if val_file.official else "offline substitute file"
reference, reference_scores = None, None
hub_offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")  # then only a cached copy can load
try:
    if not hub_offline and not reachable("huggingface.co"):  # transformers would retry for half a minute
        raise OSError("huggingface.co cannot be reached")
    reference = from_hf_gpt2("gpt2").to(DEVICE)
except (ImportError, OSError):
    low, high = wilson_interval(round(0.2955 * len(reference_examples)), len(reference_examples))
    print("needs the network: OpenAI's GPT-2 weights come from Hugging Face, which cannot be reached here, "
          f"so this section's cells skip. Had it scored its published 29.55% on these {len(reference_examples)} "
          f"examples, the 95% interval would be [{low:.1%}, {high:.1%}]: it "
          f"{'contains' if low <= 0.25 <= high else 'excludes'} chance (25%)")
if reference is not None:
    for seed in range(3):
        print(repr(tinylm.generate_text(reference, tokenizer, track.sample_prompt, max_new_tokens=32, top_k=50,
                                        seed=seed)))
    reference_scores = score_model(reference, tokenizer, val_shard, reference_examples, device=DEVICE,
                                   autocast_ctx=precision)
    print(f"validation loss {reference_scores['val_loss']:.4f} nats per token on the {len(val_shard):,}-token shard; "
          f"HellaSwag, the first {reference_scores['examples']:,} examples of the {hellaswag_file}:")
    for key, (count_key, convention) in CONVENTIONS.items():
        print(f"  {key:<14} {with_interval(reference_scores, count_key)}  {convention}")

# %% [markdown]
# ## Results
#
# Every model this notebook has, scored by `score_model` on the same tokens and the same HellaSwag examples,
# next to the published numbers. The validation loss depends on the context a model sees (your small model's
# is short, GPT-2's 1,024 tokens), and every HellaSwag number carries its convention: the columns are the
# conventions, a measured cell is `accuracy [95% interval]`, and a published cell names its prompt format. A
# 124M run of your own (`python -m tinylm.train gpt2-124m` on GPUs, notebook 6a) is scored too when its run
# folder is there.

# %%
def cells(scores) -> str:
    keys = ("correct_norm", "correct_norm_char", "correct")
    return " | ".join(with_interval(scores, key) if scores else "not measured (offline)" for key in keys)


def tokens_trained(state: dict, block_size: int) -> int:
    cfg, world = tinylm.TrainConfig(**state["train_config"]), len(state["rng"])
    return state["step"] * cfg.accumulation_steps(block_size, world) * cfg.batch_size * block_size * world


measured = {"your run": score_model(model, tokenizer, val_shard, reference_examples)}
full_run = tinylm.paths.runs_dir() / "gpt2-124m-gpu"
if (full_run / "best.pt").is_file():
    full_model, _, full_state = tinylm.load_model(full_run, DEVICE)
    measured["your 124M run"] = score_model(full_model, tokenizer, val_shard, reference_examples, device=DEVICE,
                                            autocast_ctx=precision)
if reference_scores is not None:
    measured["OpenAI GPT-2 124M"] = reference_scores
print(f"measured here: the first {len(reference_examples)} examples of the {hellaswag_file}, in tinylm's rendering; "
      "published: all 10,042 examples of the official file\n")
print("| model | training tokens | validation loss | acc_norm, per token | acc_norm, per character | acc, summed |")
print("|---|---|---|---|---|---|")
print(f"| your run ({run_folder.name}, {model.num_parameters() / 1e6:.1f}M parameters, context "
      f"{model.config.block_size}) | {tokens_trained(state, model.config.block_size):,} | "
      f"{measured['your run']['val_loss']:.3f} | {cells(measured['your run'])} |")
if "your 124M run" in measured:
    print(f"| your 124M run ({full_run.name}) | {tokens_trained(full_state, 1024):,} | "
          f"{measured['your 124M run']['val_loss']:.3f} | {cells(measured['your 124M run'])} |")
else:
    print(f"| your 124M run | not run ({full_run.name} is not there) | | | | |")
loss = f"{reference_scores['val_loss']:.3f}" if reference_scores else "not measured (offline)"
print(f"| OpenAI GPT-2 124M, measured here | WebText | {loss} | {cells(reference_scores)} |")
print("| OpenAI GPT-2 124M, published by build-nanogpt / llm.c | WebText | 3.2924 (20 batches per GPU of its split) | 0.2955 "
      "| | 0.2859 |")
print("| OpenAI GPT-2 124M, the harness's prompt, as llm.c quotes it | WebText | | | 0.3114 | 0.2892 |")
print("| GPT-3 Small (125M), GPT-3's prompt (Brown et al. 2020) | 300B | | 0.337 | | |")

# %% [markdown]
# Do two rows differ? This notebook's rule, a choice of its own, calls them different only where their 95%
# intervals do not overlap. The rule is conservative: two intervals can overlap a little while the difference is
# real (a test on the difference itself would call some such pairs different), so "overlap" reads "these examples
# do not tell them apart", not "equal". The cell compares every pair of rows measured here, each with chance, and
# each with build-nanogpt's published 29.55% (all 10,042 examples, so its own interval is narrow), under the
# per-token `acc_norm`:

# %%
def interval(scores: dict) -> tuple[float, float]:
    return wilson_interval(scores["correct_norm"], scores["examples"])


points = {"chance (25%)": (0.25, 0.25), "build-nanogpt's published 0.2955": wilson_interval(round(0.2955 * 10_042), 10_042)}
names = list(measured)
for i, name in enumerate(names):
    mine = interval(measured[name])
    for other, theirs in [(other, interval(measured[other])) for other in names[i + 1:]] + list(points.items()):
        apart = mine[1] < theirs[0] or theirs[1] < mine[0]
        print(f"{name} [{mine[0]:.3f}, {mine[1]:.3f}] vs {other} [{theirs[0]:.3f}, {theirs[1]:.3f}]: "
              f"{'differ beyond their intervals' if apart else 'overlap: not told apart by these examples'}")

# %% [markdown]
# Let the printed verdicts speak, not the raw figures: on a CPU the rows measured here rest on 100 examples,
# whose intervals are wide. Offline, the rows of OpenAI's model measured here stay empty; the published rows
# stand in for them, each comparable only with a number of its own convention and prompt format.
#
# ## What you learned
#
# - HellaSwag scores the four endings by their loss, no generation. `acc_norm` per token (build-nanogpt),
#   per character (the evaluation harness's normalisation) and GPT-3's figure are different conventions with
#   different prompts: a published number means something only beside its convention.
# - An accuracy on `n` examples carries a 95% interval that shrinks as 1/√n; this notebook calls two rows
#   different only where their intervals do not overlap, a conservative rule of its own choosing.
# - `torch.compile` fuses elementwise work into generated kernels: losses equal to rounding, a compile cost up
#   front, and a speed-up that depends on the hardware and the model, so it is measured in interleaved rounds
#   and called only by a stated rule. MFU divides the model's FLOPs per second by the GPU's peak.
# - tinylm's `GPT` is GPT-2: OpenAI's weights load into it key for key (`from_hf_gpt2`), a tinylm model exports
#   to `transformers`, and `score_model` puts any of them on the same scale.

# %% [markdown]
# ## Exercises
#
# **1. `acc` and `acc_norm` from the losses.** Given the summed loss of every ending `(n, 4)`, the number
# of tokens of every ending `(n, 4)` and the right endings `(n,)`, return `(acc, acc_norm)` as floats.
# The check compares with `evaluate_hellaswag` on the examples scored above.

# %%
from tinylm.course.exercises import check


def hellaswag_accuracy(summed: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    raise NotImplementedError


def test_hellaswag_accuracy():
    summed = torch.tensor([[4.0, 9.0, 6.0, 8.0]] * 4)
    counts = torch.tensor([[2, 6, 2, 4]] * 4)
    acc, acc_norm = hellaswag_accuracy(summed, counts, torch.tensor([0, 1, 0, 0]))
    assert (acc, acc_norm) == (0.75, 0.25), (
        f"{(acc, acc_norm)}, not (0.75, 0.25): in every row the sum picks ending 0, the mean per token "
        "(2, 1.5, 3, 2) ending 1")
    scored = [ending_losses(model, tokenizer, ex, "cpu") for ex in examples[:HELLASWAG_EXAMPLES]]
    acc, acc_norm = hellaswag_accuracy(torch.stack([s for s, _ in scored]), torch.stack([c for _, c in scored]),
                                       torch.tensor([ex.label for ex in examples[:HELLASWAG_EXAMPLES]]))
    # 1e-6: a float32 mean of 200 examples misses the float64 count's fraction in the 8th digit
    assert abs(acc - scores["acc"]) < 1e-6 and abs(acc_norm - scores["acc_norm"]) < 1e-6, "must match evaluate_hellaswag"


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
#
# **2. An experiment: a model that knows nothing.** Build your run's model shape with fresh random weights
# (`torch.manual_seed(1)`, then `my_model = tinylm.GPT(model.config)`), score it with `evaluate_hellaswag` on
# the first `my_examples` examples of `val_file` (200 or more: `read_examples(val_file.path, limit=my_examples)`),
# and write the per-token `acc_norm` you measured into `my_acc_norm`. Predict first: what should it be, and how
# far from that may an honest measurement land?
#
# The check scores `my_model` again on the same examples (so it must be the model you measured, and untrained:
# its validation loss near the uniform guess, ln 50,257), and needs no answer key. A model with random weights has
# learned nothing about which ending is right: its pick still depends on the form of the endings (a short
# ending's mean loss varies more, for one, which can make it come out lowest more often), but not on their
# meaning, so unless the right endings differ in form from the wrong ones, it is right with probability 1/4.
# Chance must then lie inside the interval of your measurement; the check uses a 99.7% Wilson interval (`z = 3`),
# so an honest measurement fails it about 3 times in 1,000.

# %%
my_examples = 200
my_model = None  # replace with the untrained model you scored
my_acc_norm = None  # replace with the acc_norm you measured


def test_a_random_model_is_at_chance():
    if my_model is None or my_acc_norm is None:
        raise NotImplementedError("run the experiment, then set my_model and my_acc_norm")
    assert my_examples >= 200, "score at least 200 examples: fewer leave an interval too wide to test anything"
    assert 0 <= my_acc_norm <= 1, "acc_norm is a fraction between 0 and 1, not a percentage"
    again = evaluate_hellaswag(my_model, tokenizer, read_examples(val_file.path, limit=my_examples))["acc_norm"]
    assert abs(again - my_acc_norm) < 1e-9, f"my_model scores {again:.3f} on these examples, not {my_acc_norm:.3f}"
    loss = evaluate_loss(my_model, val_shard[:4097], my_model.config.block_size, 8, "cpu")
    assert loss > 10, f"my_model's validation loss is {loss:.2f}, a trained model's: start from fresh random weights"
    low, high = wilson_interval(round(my_acc_norm * my_examples), my_examples, z=3.0)
    assert low <= 0.25 <= high, (f"{my_acc_norm:.3f} on {my_examples} examples: its 99.7% interval [{low:.3f}, "
                                 f"{high:.3f}] excludes chance; was the model really untrained, and is it acc_norm?")


check(test_a_random_model_is_at_chance)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# torch.manual_seed(1)
# my_model = tinylm.GPT(model.config)
# result = evaluate_hellaswag(my_model, tokenizer, read_examples(val_file.path, limit=my_examples))
# print(result)
# my_acc_norm = result["acc_norm"]
# ```
#
# With 200 examples, any seed should pass, short of that rare failure. More examples have not been tried: each
# one narrows the interval, and a large enough sample could show a preference of the random weights for endings
# of some form as a real departure from 25%, in which case the check fails on a finding about the file, not on a
# mistake of yours. Try `acc_norm_char` of the same model too: per character, an untrained model prefers the
# endings whose characters it spends the fewest tokens on, a preference unrelated to meaning; whether that moves
# it away from 25% is something the interval of a few hundred examples can or cannot show (try 1,000).
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
