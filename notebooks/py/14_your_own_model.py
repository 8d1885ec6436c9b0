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
# # 14 · Your own model
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/14_your_own_model.ipynb)
#
# Every model so far learned from a dataset the course chose. This notebook starts from a text *you* choose, trains
# a tokenizer on it, trains models on it, and takes one out of the course: into Hugging Face `transformers`, and
# into one GGUF file for llama.cpp, whose GGUF files Ollama and LM Studio also run. It runs on Tiny Shakespeare
# (downloaded once, or copied from the offline mirror); set `TEXT_FILE` to any UTF-8 file, folder of `.txt` files or
# glob (a relative path starts from the `notebooks` folder; on Colab, upload the file and give `/content/<its name>`),
# and every code cell runs the same. The prose describes the Shakespeare run under `cpu`, whose outputs are saved
# here.
#
# **What you will learn**
# - how the command `train text` turns any text into a held-out split, token files and a recipe sized to it;
# - to train a byte-level BPE of N tokens on your text, and to check that it gives back any text exactly;
# - bits per byte, the loss that compares models whose tokenizers differ, written by hand;
# - characters, GPT-2's BPE and your own BPE on the same text and the same held-out split, at an equal number of
#   steps and then at an equal amount of compute, three seeds each, judged by the course's rule;
# - to export a model with its tokenizer for `transformers` (checked to give tinylm's ids, tokens and logits) and as
#   a GGUF file (read back with llama.cpp's own `gguf` package), and the commands that run it in llama.cpp and Ollama.
#
# **How long it takes**: a lesson of about 79 minutes (reading, code and the `cpu` run's 25 min, by the course's
# formula), then a second sitting of about 42 minutes for the 3 exercises (10 minutes per function, 20 per experiment,
# and 143 s of training).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; a 300-token BPE, 3 tokenizers × 3 seeds of 30 tiny steps, then 2 × 3 runs of at most 60 | under a minute |
# | `cpu` (2 cores; the saved seconds: a 2-core Intel Xeon with AVX-512, shared with other runs) | a 2,048-token BPE, 3 tokenizers × 3 seeds of `STEPS` steps at the text recipe's cpu shape, then characters and your BPE at the GPT-2 arm's FLOPs (3 seeds each) | the last cell prints it |
# | `gpu` | the same runs at the text recipe's gpu shape: `STEPS` steps each, then the equal-compute arms | not measured |
#
# **Papers and code**: byte-pair encoding for subword units ([Sennrich et al., 2016](https://arxiv.org/abs/1508.07909));
# GPT-2's byte-level BPE ([Radford et al., 2019](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf));
# bits per byte to compare models across tokenizers ([Gao et al., 2020, *The Pile*](https://arxiv.org/abs/2101.00027));
# Hugging Face [`tokenizers`](https://github.com/huggingface/tokenizers), which trains the BPE; the
# [GGUF format](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) of [llama.cpp](https://github.com/ggml-org/llama.cpp).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import contextlib
import io
import json
import math
import time

import numpy as np
import torch

import tinylm
from tinylm.course.exercises import check
from tinylm.data.corpora import TINY_SHAKESPEARE
from tinylm.data.text import find_text_files, prepare_text, read_documents, split_held_out
from tinylm.download import fetch
from tinylm.eval.uncertainty import compare, spread
from tinylm.generate.decode import generate_batch
from tinylm.paths import data_dir, runs_dir, shown
from tinylm.train.options import RunOptions
from tinylm.train.recipes import TrainOptions
from tinylm.train.text import EVAL_TOKENS, bits_per_byte, text_recipe, train_text

NOTEBOOK_STARTED = time.perf_counter()
PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
print(f"profile {PROFILE}, device {DEVICE}")

# Your text: a UTF-8 file, a folder of .txt files, or a glob such as "my_texts/*.txt". The default is the mirror's
# Shakespeare; to use your own, replace the right-hand side with its path, e.g. TEXT_FILE = "my_novel.txt".
TEXT_FILE = fetch(TINY_SHAKESPEARE, data_dir() / "shakespeare_char" / "input.txt")
BPE_TOKENS = {"smoke": 300, "cpu": 2048, "gpu": 2048}[PROFILE]  # the size of your BPE's vocabulary
STEPS = {"smoke": 30, "cpu": 120, "gpu": 1000}[PROFILE]  # optimizer steps of every run of the comparison
SEEDS = (1, 2, 3)
RUNS = runs_dir() / f"notebook-14-{PROFILE}"  # every run of this notebook goes in here


def quiet(line: str) -> None:
    """A `say` that says nothing: the library's progress lines, left out of this notebook's outputs."""


# %% [markdown]
# Where this notebook goes, and the package function behind each step (the command line runs the same ones):
#
# ```text
# your text (a file, a folder, a glob)
#   │  read_documents, split_held_out          every tenth document, or the last tenth, held out
#   ▼
# training split ──► TrainedBPETokenizer.train (bpe:N)       or characters, or GPT-2's BPE
#   │  prepare_text: both splits tokenized once, as token files in data/text/
#   ▼
# train_text(text_recipe(...))  ──►  runs/…/best.pt        the weights and the tokenizer
#   ├─► exported_vocab + to_hf_gpt2  ──►  config.json, model.safetensors, tokenizer.json  ──►  transformers
#   └─► exported_vocab + write_gguf  ──►  model.gguf  ──►  llama.cpp, Ollama, LM Studio
# ```
#
# ## Your text, split
#
# `train text` reads the text once and checks it: an empty file, a binary one, bytes that are not UTF-8 (it names the
# byte offset), a folder without text or a text too small for one batch (it names the minimum) each stop it with one
# line that says what to do. Then it holds out text the model never trains on. A folder's files, or the parts of a
# file between `<|endoftext|>` separators, are *documents*: with ten or more, every tenth document is held out; with
# fewer, the last tenth of the text, cut at a line end. The split is made on the text, before any tokenizer sees it,
# so every tokenizer below is scored on the same held-out text.

# %%
documents = read_documents(find_text_files(TEXT_FILE))
train_documents, held_out_documents, how = split_held_out(documents)
held_out_text = "".join(held_out_documents)
print(f"{shown(TEXT_FILE)}: {len(documents):,} document(s), {sum(len(d) for d in documents):,} characters, "
      f"{sum(len(d.encode('utf-8')) for d in documents):,} bytes")
print(f"held out: {how}, {len(held_out_text.encode('utf-8')):,} bytes; it starts:\n{held_out_text[:150]}")

# %% [markdown]
# ## A tokenizer for your text
#
# Notebook 4 trained BPE merges in Python on Shakespeare. `bpe:N` learns the same kind of merges with Hugging Face's
# `tokenizers` (written in Rust). Speed of learning is not why: in the timings of [a dated
# note](../docs/notes/2026-11-27-your-own-text.md) the course's own incremental trainer was slower on 11 MB of text
# and faster on 100 MB of that text repeated, which flatters it (repetition adds no new words). `tokenizers`
# encodes text faster, keeps special tokens apart from typed text, and its JSON is
# the `tokenizer.json` that the export below writes unchanged. `TrainedBPETokenizer.train` sets it up as GPT-2's was:
# GPT-2's regex cuts the text into pieces, each piece starts as its UTF-8 bytes, one token per byte out of 256
# starting tokens, and the most frequent pair of neighbouring tokens within a piece is merged into a new token, again
# and again until the vocabulary holds N tokens, one of them the special `<|endoftext|>`. `prepare_text(TEXT_FILE,
# "bpe:N")`, what `--tokenizer bpe:N` runs, trains it on the training split only, so that the held-out text stays
# unseen, and writes both splits as token files, once: the next call with the same text and tokenizer reads them back.
# On its own, `python -m tinylm.prepare tokenizer --file PATH --tokenizer bpe:N` trains and saves one.

# %%
started = time.perf_counter()
bpe_spec = f"bpe:{BPE_TOKENS}"
bpe_data = prepare_text(TEXT_FILE, bpe_spec, say=quiet)
bpe = bpe_data.tokenizer
print(f"{bpe_spec} ready in {time.perf_counter() - started:.1f} s (learned and both splits tokenized on a first run, "
      f"read back from {shown(bpe_data.folder)} on the next): {len(bpe_data.train):,} training tokens, "
      f"{len(bpe_data.val):,} held out")
longest = sorted(range(bpe.vocab_size), key=lambda i: -len(bpe.decode([i])))[:10]
print("its ten longest tokens:", [bpe.decode([i]) for i in longest])

# %% [markdown]
# Byte-level BPE encodes any text, in any script: a character it never saw is spelled in its bytes. Check it on text
# no one here wrote (Goethe, Homer, Bashō, a Russian greeting, emoji), and with the text of a special token typed
# in, which must stay text: a user who types `<|endoftext|>` must not end the document.

# %%
unseen = ("Habe nun, ach! Philosophie, Juristerei und Medizin… Μῆνιν ἄειδε θεὰ Πηληϊάδεω Ἀχιλῆος "
          "古池や蛙飛び込む水の音 🐸💧 Привет, мир! <|endoftext|>")
ids = bpe.encode(unseen)
assert bpe.decode(ids) == unseen, "a byte-level BPE gives back any text exactly"
assert bpe.eot_token not in ids, "typed special-token text stays text"
print(f"{len(unseen)} characters ({len(unseen.encode('utf-8'))} bytes) -> {len(ids)} tokens, decoded back exactly")

# %% [markdown]
# The count says something too: merges learned on Shakespeare's English do nothing for Greek, Japanese or Russian,
# whose letters come out at exactly one token per byte: this text is all ASCII (as many bytes as characters, above),
# so none of its merges touches another script's bytes. A BPE is good at the text it was trained on: apart from the
# special `<|endoftext|>`, which was added, not learned, the longest tokens above are this text's own, its
# characters' names.
#
# How much text does a token hold? On the held-out split, in UTF-8 bytes per token: a character is about one byte
# (more where a character takes several), GPT-2's BPE was learned on web text, and yours on this text alone, with a
# far smaller vocabulary. The three tokenizers' token files are prepared here too, so the runs below start at once.

# %%
TOKENIZERS = ("char", "gpt2", bpe_spec)
prepared = {spec: prepare_text(TEXT_FILE, spec, say=quiet) for spec in TOKENIZERS}
for spec, data in prepared.items():
    print(f"{spec:>9}: vocabulary {data.tokenizer.vocab_size:>6,}, {len(data.val):>7,} held-out tokens, "
          f"{data.meta['val_bytes'] / len(data.val):.2f} bytes per token")

# %% [markdown]
# ## Bits per byte
#
# A model's loss is in nats per *token*, so a model that reads three bytes per token and one that reads one cannot be
# compared by it: the first predicts more text with each token. Bits per byte puts both on the text itself: the
# total loss over the held-out text, in bits (nats divided by ln 2), over the number of UTF-8 bytes of that text.
# If the mean loss is $\bar\ell$ nats over $T$ predicted tokens whose text is $B$ bytes,
#
# $$\text{bits per byte} = \frac{T\,\bar\ell}{B \ln 2}.$$
#
# The first token is never predicted, and an end-of-text token between documents is no text: it has no bytes. Your
# version, checked against the package's `bits_per_byte` (what `train text` prints last):

# %%
def my_bits_per_byte(mean_loss: float, token_ids, tokenizer) -> float:
    targets = list(token_ids[1:])  # every token but the first is predicted
    eot = getattr(tokenizer, "eot_token", None)  # characters have no end-of-text token
    num_bytes = len(tokenizer.decode([t for t in targets if t != eot]).encode("utf-8"))
    return len(targets) * mean_loss / (num_bytes * math.log(2))


for spec, data in prepared.items():
    some_ids = np.asarray(data.val[:2000])
    assert math.isclose(my_bits_per_byte(2.5, some_ids, data.tokenizer), bits_per_byte(2.5, some_ids, data.tokenizer),
                        rel_tol=1e-12)
    print(f"a loss of 2.5 nats per {spec} token is {bits_per_byte(2.5, some_ids, data.tokenizer):.3f} bits per byte")

# %% [markdown]
# ## Three tokenizers, one budget
#
# Now the comparison: the same text, the same held-out split, the same network (but for its embedding and head: one
# row per token, padded to a multiple of 64 for the BPEs) with the same context in tokens, 128 under `cpu`, which
# holds 128 bytes of text for characters and about 330 and 400 for your BPE and GPT-2's (bytes per token above ×
# 128), and the same number of optimizer steps of the same number of tokens; only the tokenizer differs.
# `text_recipe` is the recipe of `python -m tinylm.train text`, sized to the text and the profile, and `train_text`
# runs it with the run folder, progress, resume and Ctrl-C of every track. From the command line, one of these runs is
#
# ```bash
# python -m tinylm.train text --file data/shakespeare_char/input.txt --tokenizer bpe:2048 --max-steps 120
# ```
#
# The first comparison is at equal steps, not equal compute. An equal number of steps is an equal budget for the network
# between the embedding and the head, not for the whole run: a BPE token holds several bytes, so a BPE model reads
# several times more text in its steps than a character model does, and a GPT-2-token model pays for its
# 50,257-token head in every step (the FLOPs and the seconds below). Each run is scored once, at its last step, on
# the first `EVAL_TOKENS[PROFILE]` held-out tokens: here the whole split (262,144 under `cpu`, more than any arm's
# 111,560). Under `smoke`, or with a text of your own whose held-out part is longer, that is a different stretch of
# text for each tokenizer: keep your held-out part under that size to compare. `bits_per_byte` turns each loss into
# a figure the three can share. Three seeds per tokenizer, so that the spread of each is known before any ranking.

# %%
arm_runs: dict[tuple[str, int], dict] = {}  # (tokenizer, seed) -> what the run measured


def train_arm(tokenizer_spec: str, seed: int, steps: int = STEPS) -> dict:
    """One run of `train text` on TEXT_FILE with `tokenizer_spec`, `steps` steps, one evaluation at the end."""
    folder = tokenizer_spec.replace(":", "") + ("" if steps == STEPS else f"-{steps}steps")
    run = RunOptions(out=RUNS / f"{folder}-seed{seed}", overwrite=True, seed=seed, max_steps=steps,
                     set={"eval_interval": 0})
    recipe = text_recipe(run, TrainOptions(file=str(TEXT_FILE), tokenizer=tokenizer_spec))
    with contextlib.redirect_stdout(io.StringIO()):  # each run's progress lines (its metrics.jsonl keeps them)
        finished = train_text(recipe, say=quiet)
    data = prepare_text(TEXT_FILE, tokenizer_spec, say=quiet)  # the token files the run read, from data/text/
    loss = finished.final["val_loss"]
    tokens_per_step = recipe.train.total_batch_tokens or recipe.train.batch_size * recipe.shape.block_size
    return {
        "steps": finished.trainer.step, "seconds": finished.trainer.elapsed, "loss": loss,
        "flops_per_token": finished.trainer.model.flops_per_token(),  # training FLOPs, the head's included
        "bits_per_byte": bits_per_byte(loss, data.val[:EVAL_TOKENS[PROFILE]], finished.trainer.tokenizer),
        "bytes_read": steps * tokens_per_step * data.meta["train_bytes"] / len(data.train)}


def print_row(tokenizer_spec: str, seed: int, measured: dict) -> None:
    print(f"{tokenizer_spec:>9} | {seed:>4} | {measured['steps']:>5} | {measured['seconds']:>7.1f} | "
          f"{measured['loss']:>17.4f} | {measured['bits_per_byte']:>13.4f} | {measured['bytes_read'] / 1e6:.2f} MB")


HEADER = f"{'tokenizer':>9} | seed | steps | seconds | loss (nats/token) | bits per byte | text read"
print(HEADER)
for tokenizer_spec in TOKENIZERS:
    for seed in SEEDS:
        arm_runs[tokenizer_spec, seed] = train_arm(tokenizer_spec, seed)
        print_row(tokenizer_spec, seed, arm_runs[tokenizer_spec, seed])

# %%
results = {spec: [arm_runs[spec, seed]["bits_per_byte"] for seed in SEEDS] for spec in TOKENIZERS}
for spec, values in results.items():
    seconds = spread([arm_runs[spec, seed]["seconds"] for seed in SEEDS])
    print(f"{spec:>9}: {spread(values).format(digits=4)} bits per byte, {seconds.format(digits=1)} s of training, "
          f"{arm_runs[spec, SEEDS[0]]['flops_per_token'] / 1e6:.1f} MFLOP per token trained")
for a, b in [("char", "gpt2"), ("char", bpe_spec), ("gpt2", bpe_spec)]:
    print(compare(a, results[a], b, results[b], metric="bits per byte", digits=4))

# %% [markdown]
# What the tables say. In `STEPS` steps a character model reads about a quarter of a megabyte, under a quarter of one
# pass over the text, and its loss per token is still about a bigram's (notebook 1's). The two BPE models read about
# three times as much text in the same steps, because each of their tokens holds several bytes, and both end far
# below it in bits per byte. GPT-2's BPE comes out ahead of yours, told apart by the rule, by less than either is
# ahead of characters; part of that is the text read (its tokens hold more bytes), and part may be its merges,
# learned on far more text than this.
#
# Equal steps are not equal compute: GPT-2's 50,257-token head makes each token it trains on cost several times the
# FLOPs of one of yours (the MFLOP per token above). The same race at equal *compute*: the character and BPE arms
# get the training FLOPs the GPT-2 arm spent in its `STEPS` steps (the same tokens per step, so their steps scale
# with 1 / their FLOPs per token), at the same three seeds. A budget in FLOPs is one the machine's speed cannot
# move, unlike one in seconds. Beside it, notebook 3's character GPT, read from its run folder: another model (one
# layer) and recipe, scored on nearly the same held-out text (the last tenth; notebook 3 cuts at exactly 90%, this
# one at the line end before it), in bits per byte (the text is ASCII: one byte per character).

# %%
budget = STEPS * arm_runs["gpt2", SEEDS[0]]["flops_per_token"]  # per token of a step: the GPT-2 arm's FLOPs
compute_runs = {}
print(HEADER)
for tokenizer_spec in ("char", bpe_spec):
    steps = round(budget / arm_runs[tokenizer_spec, SEEDS[0]]["flops_per_token"])
    steps = min(steps, 2 * STEPS) if PROFILE == "smoke" else steps  # smoke's tiny model: its head is most FLOPs
    for seed in SEEDS:
        compute_runs[tokenizer_spec, seed] = train_arm(tokenizer_spec, seed, steps)
        print_row(tokenizer_spec, seed, compute_runs[tokenizer_spec, seed])
equal_compute = {"gpt2": results["gpt2"]} | {spec: [compute_runs[spec, seed]["bits_per_byte"] for seed in SEEDS]
                                             for spec in ("char", bpe_spec)}
for a, b in [("char", "gpt2"), ("char", bpe_spec), ("gpt2", bpe_spec)]:
    print(compare(a, equal_compute[a], b, equal_compute[b], metric="bits per byte at equal compute", digits=4))
notebook_3 = runs_dir() / f"notebook-03-{PROFILE}" / "metrics.jsonl"
if notebook_3.is_file():
    records = [json.loads(line) for line in notebook_3.read_text().splitlines()]
    final_3 = [record for record in records if record["event"] == "final"][-1]
    print(f"notebook 3's character GPT ({PROFILE}): {final_3['val_loss']:.4f} nats per character = "
          f"{final_3['val_loss'] / math.log(2):.4f} bits per byte, after {final_3['elapsed']:.0f} s of training")
else:
    print(f"no run of notebook 3 in {notebook_3.parent}: run notebook 3 under {PROFILE} to print its figure here")

# %% [markdown]
# At equal compute GPT-2's BPE goes from first to last: your BPE beats characters, and both beat GPT-2's, every
# comparison told apart. The GPT-2 arm's FLOPs bought the character and BPE models several times its steps (the
# steps column), and with them between two and six times the text it read (the last column); the equal-steps race
# charged GPT-2's head nothing. Notebook 3's character GPT, another model and recipe, ends below every arm here (its
# line above): this race ranks tokenizers for one small model at one small budget, not what a character model can
# reach.
#
# These are still short runs: the recipe `train text` sizes for this text trains 3,922 steps for characters and 981
# for a BPE, and where every model trains that long the gaps may shrink or turn; this notebook does not measure
# that. Under `gpu`, `STEPS` is 1,000 steps of 64 × 256 tokens, about 47 passes over the BPE's training tokens (the
# equal-compute arms several times more), where a model may well overfit: the figures and the words here are the
# `cpu` run's.
#
# ## A sample
#
# The first BPE run's model, continuing the first lines of the held-out text, which it never trained on. After
# `STEPS` steps it has the shape of a play (names in capitals, short lines) more than its words. From the command
# line, in the repository's folder, `python -m tinylm.sample --ckpt runs/notebook-14-cpu/bpe2048-seed1 --prompt
# "ROMEO:" --max-new-tokens 100 --temperature 0.8 --top-k 50` samples the same model:

# %%
model, tokenizer, _ = tinylm.load_model(RUNS / f"{bpe_spec.replace(':', '')}-seed{SEEDS[0]}")
prompt_text = "\n".join(held_out_text[:120].split("\n")[:3]) + "\n"
prompt = tokenizer.encode(prompt_text)
new = generate_batch(model, [prompt], 100, temperature=0.8, top_k=50, seed=0, vocab_limit=tokenizer.vocab_size)[0]
print(tokenizer.decode(prompt) + tokenizer.decode(new))

# %% [markdown]
# ## Out of the course: Hugging Face
#
# An exported model is only useful with its tokenizer: the same text must become the same ids. `exported_vocab`
# describes the checkpoint's tokenizer as other programs read it (for your BPE, its `tokenizers` JSON as it is),
# `with_rows` keeps one row of the embedding per token (the padding rows to a multiple of 64 go), and `to_hf_gpt2`
# writes a folder that `transformers` loads: `config.json` and `model.safetensors` for a `GPT2LMHeadModel`, and
# `tokenizer.json` with its two small configuration files for `AutoTokenizer`. The command line does the same with
# `python -m tinylm.interop export --ckpt RUN --out FOLDER` (and writes a `LlamaForCausalLM` for a Llama-style
# model). The check that matters: both libraries turn the prompt into the same ids, and their greedy continuations
# are the same tokens. A model trained this briefly soon repeats one token when decoded greedily, so equal
# continuations alone would say little; equal logits at every position, to float rounding, say the two libraries
# compute the same function.

# %%
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.utils.logging import disable_progress_bar  # noqa: E402

from tinylm.interop.hf_gpt2 import to_hf_gpt2  # noqa: E402
from tinylm.interop.vocab_export import exported_vocab, with_rows  # noqa: E402

disable_progress_bar()  # transformers' bars for writing and loading a model this small
vocab = exported_vocab(tokenizer)
hf_folder = to_hf_gpt2(with_rows(model, vocab.rows), RUNS / "export" / "hf", vocab)
print("wrote", sorted(path.name for path in hf_folder.iterdir()))
hf_tokenizer = AutoTokenizer.from_pretrained(hf_folder)
hf_model = AutoModelForCausalLM.from_pretrained(hf_folder).eval()
assert hf_tokenizer(prompt_text).input_ids == prompt, "the same ids for the same text"

NEW_TOKENS = min(24, model.config.block_size - len(prompt))  # transformers' GPT-2 stops at its context
eot = tokenizer.eot_token
theirs = hf_model.generate(**hf_tokenizer(prompt_text, return_tensors="pt"), max_new_tokens=NEW_TOKENS,
                           do_sample=False, pad_token_id=eot)[0, len(prompt):].tolist()
theirs = theirs[:theirs.index(eot)] if eot in theirs else theirs  # generate stops after an end-of-text token
ours = generate_batch(model, [prompt], NEW_TOKENS, temperature=0, stop_tokens=[eot],
                      vocab_limit=tokenizer.vocab_size)[0]
print(f"transformers: {hf_tokenizer.decode(theirs)!r}\ntinylm:       {tokenizer.decode(ours)!r}")
assert theirs == ours, "the same greedy tokens"
with torch.no_grad():  # every position's logits, over the prompt and the continuation
    sequence = torch.tensor([prompt + ours])
    gap = (hf_model(sequence).logits[0] - model(sequence)[0][0, :, :tokenizer.vocab_size]).abs().max().item()
assert gap < 1e-4, gap
print(f"the same {len(ours)} greedy tokens; the largest logit difference over {sequence.shape[1]} positions: {gap:.1e}")

# %% [markdown]
# ## Out of the course: one GGUF file for llama.cpp
#
# llama.cpp reads one file that holds everything: the network's hyperparameters (context length, width, layers, heads,
# norm epsilon) under llama.cpp's keys such as `gpt2.context_length`, every tensor under its names (a Llama-style
# model's query and key rows reordered for llama.cpp's RoPE), and the tokenizer with its tokens, merges and special
# ids (for a BPE, as here, `tokenizer.ggml.model` is `gpt2`; a character vocabulary goes in as llama.cpp's `rwkv`
# tokenizer, tokens only). `write_gguf` writes it with the `gguf` package of llama.cpp's own authors (the command
# line: `python -m tinylm.interop export --ckpt RUN --format gguf --out model.gguf`), and the same package reads it
# back:

# %%
import gguf  # noqa: E402

from tinylm.interop.gguf_file import write_gguf  # noqa: E402

gguf_path = write_gguf(with_rows(model, vocab.rows), vocab, RUNS / "export" / "model.gguf")
reader = gguf.GGUFReader(gguf_path)
for key in ("general.architecture", "gpt2.context_length", "gpt2.embedding_length", "gpt2.block_count",
            "tokenizer.ggml.model", "tokenizer.ggml.eos_token_id"):
    print(f"{key}: {reader.fields[key].contents()}")
tokens = reader.fields["tokenizer.ggml.tokens"].contents()
assert tokens == vocab.tokens, "the tokenizer's tokens, in id order"
embedding = next(tensor for tensor in reader.tensors if tensor.name == "token_embd.weight")
assert np.array_equal(np.asarray(embedding.data), model.transformer.wte.weight[:len(tokens)].detach().numpy())
print(f"{gguf_path.name}: {gguf_path.stat().st_size:,} bytes, {len(reader.tensors)} tensors, {len(tokens):,} tokens, "
      f"{len(reader.fields['tokenizer.ggml.merges'].contents()):,} merges; the embedding read back equals the model's")

# %% [markdown]
# With llama.cpp built ([its build guide](https://github.com/ggml-org/llama.cpp/blob/master/docs/build.md)) the file
# runs as it is, and Ollama takes it through a four-line `Modelfile` whose `FROM` names the file. Run these in the
# folder that holds it, `runs/notebook-14-<profile>/export/`. The context is 128 tokens under `cpu` (the
# `gpt2.context_length` above), so no more than that is asked for (in llama.cpp builds before December 2025,
# `llama-completion` was `llama-cli`):
#
# ```bash
# llama-completion -m model.gguf -no-cnv -c 128 -n 100 -p "ROMEO:"
# printf 'FROM ./model.gguf\nPARAMETER temperature 0.8\nPARAMETER num_ctx 128\nPARAMETER num_predict 100\n' > Modelfile
# ollama create my-shakespeare -f Modelfile
# ollama run my-shakespeare "ROMEO:"
# ```
#
# Neither program ran here: the course's machine has no Ollama, and these command lines were not tried. What was
# run is `python scripts/llama_cpp_check.py --ckpt RUN`: it builds llama.cpp from source, has it tokenize a prompt
# and extend it greedily through its library, and compares, token for token, with tinylm. Its results, for a
# character model, a trimmed GPT-2 vocabulary in both architectures, a `bpe:2048` model and a Llama-style model with
# GPT-2's chat vocabulary, are in [the dated note](../docs/notes/2026-11-26-llama-cpp-check.md): the same prompt ids
# and the same greedy tokens for each.
#
# ## What you learned
#
# - `train text` takes any UTF-8 text, holds out every tenth document (or the last tenth of the text) before any
#   tokenizer sees it, sizes a recipe to it and trains with every track's run folder, resume and Ctrl-C.
# - A byte-level BPE trained on your text with `tokenizers` encodes any text exactly, in any script, and never makes
#   a special token from typed text.
# - Bits per byte divides a model's total loss, in bits, by the bytes of the text it predicted: the measure that
#   compares tokenizers, because the text is the same whatever cuts it.
# - At an equal number of steps, the tokenizer changes how much text each step reads and what each step costs;
#   three seeds per arm, every seed of one beating every seed of the other, tell a difference from seed-to-seed
#   noise, with a 10% chance of that verdict where there is none. At an equal budget in FLOPs, which the machine's
#   speed cannot move, the ranking changed: the budget's unit decides what a race measures.
# - An export carries its tokenizer: `transformers` reads the folder and gives tinylm's greedy tokens, and the GGUF
#   file holds the tensors and the tokenizer, read back here with `gguf`; llama.cpp ran such files in the dated note,
#   Ollama was not tried.
#
# ## Exercises
#
# Complete each function (replace `raise NotImplementedError`), then run the check below it.
#
# **1. Bytes per token.** Return the mean number of UTF-8 bytes per token of `tokenizer` on `text`, the figure the
# tokenizer table above printed for each tokenizer.

# %%
def bytes_per_token(tokenizer, text: str) -> float:
    raise NotImplementedError


def test_bytes_per_token():
    assert math.isclose(bytes_per_token(tinylm.CharTokenizer.from_text("abcé"), "abcé"), 5 / 4), (
        "'abcé' is 5 UTF-8 bytes in 4 characters")
    sample = held_out_text[:5000]
    assert math.isclose(bytes_per_token(bpe, sample), len(sample.encode("utf-8")) / len(bpe.encode(sample))), (
        "the BPE tokenizer on 5,000 characters of held-out text: bytes of the text over its tokens")


# %%
# NBVAL_CHECK_OUTPUT
check(test_bytes_per_token)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def bytes_per_token(tokenizer, text):
#     return len(text.encode("utf-8")) / len(tokenizer.encode(text))
# ```
# </details>
#
# **2. From bits per byte back to a loss.** Someone reports their model's bits per byte. What mean loss in nats per
# token is that for a tokenizer whose predicted tokens hold `bytes_per_token` bytes each (no end-of-text tokens)?
# Return it; then say which of the three tokenizers would need the highest loss per token for the same bits per byte.

# %%
def loss_from_bits_per_byte(bits: float, bytes_per_token: float) -> float:
    raise NotImplementedError


def test_loss_from_bits_per_byte():
    ids = np.asarray(bpe.encode(held_out_text[:5000]))
    per_token = len(bpe.decode(ids[1:]).encode("utf-8")) / (len(ids) - 1)
    for bits in (1.9, 2.5):
        assert math.isclose(bits_per_byte(loss_from_bits_per_byte(bits, per_token), ids, bpe), bits, rel_tol=1e-9), (
            f"{bits} bits per byte do not come back from your loss")


# %%
# NBVAL_CHECK_OUTPUT
check(test_loss_from_bits_per_byte)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def loss_from_bits_per_byte(bits, bytes_per_token):
#     return bits * bytes_per_token * math.log(2)  # bits per token, then nats per token
# ```
#
# GPT-2's, with the most bytes per token (3.09 on the held-out split): each of its tokens carries more text, so more
# information to predict.
# </details>
#
# **3. An experiment: how many tokens?** Train a smaller and a larger BPE than this notebook's, say `bpe:512` and
# `bpe:8192`, at the same `STEPS` and the three `SEEDS` each (`arm_runs[spec, seed] = train_arm(spec, seed)`, as
# the lesson's loop does), and compare each with this notebook's BPE runs. Write down your guess first: a larger vocabulary packs more bytes into a token, so each step reads more
# text, but each of its rows sees fewer examples to learn from in those steps. Which effect wins on this text, at
# this budget? The check prints the verdicts by the course's rule.

# %%
bpe_seconds = spread([arm_runs[bpe_spec, seed]["seconds"] for seed in SEEDS]).mean
print(f"exercise 3 trains for about {2 * len(SEEDS) * bpe_seconds:,.0f} s "
      f"here: {2 * len(SEEDS)} runs as long as the {bpe_spec} runs above (a larger vocabulary's a little longer)")
MY_SIZES = None  # replace with the two tokenizers you trained, e.g. ("bpe:512", "bpe:8192")


def test_vocabulary_sizes():
    if MY_SIZES is None:
        raise NotImplementedError("train the runs with train_arm, then set MY_SIZES to their two tokenizers")
    for spec in MY_SIZES:
        assert spec.startswith("bpe:") and spec != bpe_spec, "two BPE sizes other than this notebook's"
        runs = [arm_runs.get((spec, seed)) for seed in SEEDS]
        assert all(run is not None and run["steps"] == STEPS for run in runs), \
            f"{spec}: arm_runs[spec, seed] = train_arm(spec, seed) for each seed"
        print(compare(spec, [run["bits_per_byte"] for run in runs], bpe_spec, results[bpe_spec],
                      metric="bits per byte", digits=4))


# %%
# NBVAL_CHECK_OUTPUT
check(test_vocabulary_sizes)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# for spec in ("bpe:512", "bpe:8192"):
#     for seed in SEEDS:
#         arm_runs[spec, seed] = train_arm(spec, seed)
# MY_SIZES = ("bpe:512", "bpe:8192")
# ```
#
# Two effects pull against each other: a larger vocabulary's tokens hold more bytes (exercise 1's figure), so each
# step reads more text, and its rows each see fewer examples. Which effect wins, and whether the answer changes with
# the budget, the course did not measure: your runs are the answer, and repeating them at a few times `STEPS` shows
# whether it depends on the budget.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
