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
# Every model so far learned from a dataset the course chose. Here you choose the text, train a tokenizer and models
# on it, and export one to Hugging Face `transformers` and to a GGUF file, which llama.cpp, Ollama and LM Studio run.
# Set `TEXT_FILE` to any UTF-8 file, folder of `.txt` files or glob (relative to the `notebooks` folder; on Colab,
# upload the file and give `/content/<its name>`) and every code cell runs the same. The prose describes the saved
# run on the default text, Tiny Shakespeare, under `cpu`.
#
# **What you will learn**
# - how `train text` turns any text into a held-out split, token files and a recipe sized to it;
# - to train a byte-level BPE on your text and check that it gives back any text exactly;
# - bits per byte, the loss that compares tokenizers, written by hand;
# - characters, GPT-2's BPE and your BPE raced at equal steps, then at equal compute, three seeds each;
# - to export a model with its tokenizer to `transformers` and to GGUF, each checked, and the commands that run it in
#   llama.cpp and Ollama.
#
# **How long it takes**: a lesson of about 64 minutes (reading, code and the `cpu` run's 10 s with `REPLAY = True`, 23
# min live, by the course's formula), then a second sitting of about 42 minutes for the 3 exercises (10 minutes per
# function, 20 per experiment, and 101 s of training).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check; a 300-token BPE, 3 tokenizers × 3 seeds of 30 tiny steps, then 2 × 3 runs of at most 60 | under a minute |
# | `cpu` (2 cores; the saved seconds: a 2-core AMD EPYC with AVX-512, shared with other runs) | a 2,048-token BPE, 3 tokenizers × 3 seeds of `STEPS` steps at the text recipe's cpu shape, then characters and your BPE at the GPT-2 arm's FLOPs (3 seeds each) | the last cell prints it |
# | `gpu` | the same runs at the text recipe's gpu shape: `STEPS` steps each, then the equal-compute arms | not measured |
#
# **Papers and code**: byte-pair encoding for subword units ([Sennrich et al., 2016](https://arxiv.org/abs/1508.07909));
# GPT-2's byte-level BPE ([Radford et al., 2019](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf));
# bits per byte across tokenizers ([Gao et al., 2020, *The Pile*](https://arxiv.org/abs/2101.00027));
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
from tinylm.course.recorded import recorded
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
# True: the two races below load what the committed cpu run printed and measured on Shakespeare instead of training
# for 20 minutes (notebooks/TEACHING.md, "Long runs"); False runs them live, as your own text needs.
REPLAY = False
BPE_TOKENS = {"smoke": 300, "cpu": 2048, "gpu": 2048}[PROFILE]  # the size of your BPE's vocabulary
STEPS = {"smoke": 30, "cpu": 120, "gpu": 1000}[PROFILE]  # optimizer steps of every run of the comparison
SEEDS = (1, 2, 3)
RUNS = runs_dir() / f"notebook-14-{PROFILE}"  # every run of this notebook goes in here


def quiet(line: str) -> None:
    """A `say` that says nothing: the library's progress lines, left out of this notebook's outputs."""


# %% [markdown]
# The notebook's path, with the package function behind each step (the command line runs the same ones):
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
# `train text` first checks the text, and stops with a line that says what to do on an empty, binary or non-UTF-8
# file, a folder without text, or a text too small for one batch. Then it holds out text the model never trains on. A
# folder's files, or the parts of a file between `<|endoftext|>` separators, are *documents*. With ten or more, every
# tenth document is held out; with fewer, the last tenth of the text, cut at a line end. The split is made before any
# tokenizer sees the text, so every tokenizer below is scored on the same held-out text.

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
# Notebook 4 trained BPE merges in Python. `bpe:N` learns the same kind of merges with Hugging Face's `tokenizers`
# (in Rust), which encodes fast, keeps special tokens apart from typed text, and writes the `tokenizer.json` that the
# export below ships unchanged. `TrainedBPETokenizer.train` sets it up as GPT-2's was: GPT-2's regex cuts the text
# into pieces, each starting as its UTF-8 bytes (256 starting tokens). The most frequent pair of neighbouring tokens
# within a piece becomes a new token, again and again until the vocabulary holds N tokens, `<|endoftext|>` among
# them. `prepare_text(TEXT_FILE, "bpe:N")`, what `--tokenizer bpe:N` runs, trains it on the training split only, then
# writes the token files. `python -m tinylm.prepare tokenizer --file PATH --tokenizer bpe:N` trains and saves one on
# its own.

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
# Byte-level BPE encodes any text: a character it never saw is spelled in its bytes. Check it on other scripts and
# emoji, and with `<|endoftext|>` typed in, which must stay text: a user who types it must not end the document.

# %%
unseen = ("Habe nun, ach! Philosophie, Juristerei und Medizin… Μῆνιν ἄειδε θεὰ Πηληϊάδεω Ἀχιλῆος "
          "古池や蛙飛び込む水の音 🐸💧 Привет, мир! <|endoftext|>")
ids = bpe.encode(unseen)
assert bpe.decode(ids) == unseen, "a byte-level BPE gives back any text exactly"
assert bpe.eot_token not in ids, "typed special-token text stays text"
print(f"{len(unseen)} characters ({len(unseen.encode('utf-8'))} bytes) -> {len(ids)} tokens, decoded back exactly")

# %% [markdown]
# Shakespeare's text is all ASCII (as many bytes as characters, above), so no merge learned on it touches another
# script's bytes: the Greek, Japanese and Russian come out at one token per byte. A BPE fits the text it was trained
# on: but for the added `<|endoftext|>`, its longest tokens above are this text's character names.
#
# How much text does a token hold? Below, in UTF-8 bytes per token on the held-out split. GPT-2's BPE was learned on
# web text, yours on this text alone with a far smaller vocabulary.

# %%
TOKENIZERS = ("char", "gpt2", bpe_spec)
prepared = {spec: prepare_text(TEXT_FILE, spec, say=quiet) for spec in TOKENIZERS}
for spec, data in prepared.items():
    print(f"{spec:>9}: vocabulary {data.tokenizer.vocab_size:>6,}, {len(data.val):>7,} held-out tokens, "
          f"{data.meta['val_bytes'] / len(data.val):.2f} bytes per token")

# %% [markdown]
# ## Bits per byte
#
# A loss in nats per *token* cannot compare a model whose tokens hold three bytes with one whose tokens hold one: the
# first predicts more text per token. Bits per byte measures both on the text itself: the total held-out loss in bits
# (nats / ln 2) over the UTF-8 bytes of that text. With a mean loss of $\bar\ell$ nats over $T$ predicted tokens
# whose text is $B$ bytes,
#
# $$\text{bits per byte} = \frac{T\,\bar\ell}{B \ln 2}.$$
#
# The first token is never predicted, and an end-of-text token between documents has no bytes. Your version, checked
# against the package's `bits_per_byte`, which `train text` prints last:

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
# Only the tokenizer differs: the text, the held-out split, the steps, the tokens per step and the network are the
# same, but for the embedding and head (one row per token, padded to a multiple of 64 for the BPEs). The context of
# 128 tokens under `cpu` holds 128 bytes of text for characters, about 330 for your BPE and 400 for GPT-2's.
# `text_recipe` sizes the recipe of `python -m tinylm.train text` to the text and profile, and `train_text` runs it
# as every track does. One run, from the command line:
#
# ```bash
# python -m tinylm.train text --file data/shakespeare_char/input.txt --tokenizer bpe:2048 --max-steps 120
# ```
#
# Equal steps are an equal budget for the network between embedding and head, not for the whole run: per step, a BPE
# model reads more text than a character model, and a GPT-2-token model pays for its 50,257-token head. Each run is
# scored once, at its end, on the first `EVAL_TOKENS[PROFILE]` held-out tokens: 262,144 under `cpu`, every
# tokenizer's whole split. Under `smoke`, or with a held-out part longer than that, each tokenizer is scored on
# different text. Three seeds per tokenizer show each one's spread before any ranking.

# %%
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


def race(steps_of: dict) -> dict:
    """(tokenizer, seed) -> what the run measured: each tokenizer's seeds at `steps_of[tokenizer]` steps."""
    print(HEADER)
    runs = {}
    for tokenizer_spec in steps_of:
        for seed in SEEDS:
            runs[tokenizer_spec, seed] = train_arm(tokenizer_spec, seed, steps_of[tokenizer_spec])
            print_row(tokenizer_spec, seed, runs[tokenizer_spec, seed])
    return runs


def as_rows(runs: dict) -> list:  # for a recording (tinylm.course.recorded), and back
    return [[*key, value] for key, value in runs.items()]


def from_rows(rows: list) -> dict:
    return {(spec, seed): value for spec, seed, value in rows}


HEADER = f"{'tokenizer':>9} | seed | steps | seconds | loss (nats/token) | bits per byte | text read"
arm_runs = recorded("14_your_own_model", "equal_steps", lambda: race({spec: STEPS for spec in TOKENIZERS}),
                    replay=REPLAY, profile=PROFILE, encode=as_rows, decode=from_rows)

# %%
results = {spec: [arm_runs[spec, seed]["bits_per_byte"] for seed in SEEDS] for spec in TOKENIZERS}
for spec, values in results.items():
    seconds = spread([arm_runs[spec, seed]["seconds"] for seed in SEEDS])
    print(f"{spec:>9}: {spread(values).format(digits=4)} bits per byte, {seconds.format(digits=1)} s of training, "
          f"{arm_runs[spec, SEEDS[0]]['flops_per_token'] / 1e6:.1f} MFLOP per token trained")
for a, b in [("char", "gpt2"), ("char", bpe_spec), ("gpt2", bpe_spec)]:
    print(compare(a, results[a], b, results[b], metric="bits per byte", digits=4))

# %% [markdown]
# In `STEPS` steps a character model reads a quarter of a megabyte, under a quarter of one pass over the training
# text. The BPE models, whose tokens hold several bytes, read about three times as much and end far below it in bits
# per byte. GPT-2's BPE beats yours, told apart by the rule, by less than either beats characters: partly from the
# text read, partly perhaps from its merges, learned on far more text.
#
# GPT-2's head makes each of its tokens cost several times the FLOPs of one of yours (the MFLOP per token above), so
# the race is rerun at equal *compute*, a budget the machine's speed cannot move. The character and BPE arms get the
# FLOPs the GPT-2 arm spent in `STEPS` steps, so their steps scale with 1 / their FLOPs per token. Beside them, in
# bits per byte (one byte per ASCII character), is notebook 3b's character GPT, another model (one layer) and recipe,
# read from whatever run sits in its folder, `runs/notebook-03b-<profile>` (the saved line comes from another run
# than notebook 3b's saved outputs, and still calls it notebook 3). It held out nearly the same text: the last tenth,
# cut at an exact character, not a line end.

# %%
budget = STEPS * arm_runs["gpt2", SEEDS[0]]["flops_per_token"]  # per token of a step: the GPT-2 arm's FLOPs
compute_steps = {spec: round(budget / arm_runs[spec, SEEDS[0]]["flops_per_token"]) for spec in ("char", bpe_spec)}
if PROFILE == "smoke":  # smoke's tiny model: its head is most FLOPs
    compute_steps = {spec: min(steps, 2 * STEPS) for spec, steps in compute_steps.items()}
compute_runs = recorded("14_your_own_model", "equal_compute", lambda: race(compute_steps), replay=REPLAY,
                        profile=PROFILE, encode=as_rows, decode=from_rows)
equal_compute = {"gpt2": results["gpt2"]} | {spec: [compute_runs[spec, seed]["bits_per_byte"] for seed in SEEDS]
                                             for spec in ("char", bpe_spec)}
for a, b in [("char", "gpt2"), ("char", bpe_spec), ("gpt2", bpe_spec)]:
    print(compare(a, equal_compute[a], b, equal_compute[b], metric="bits per byte at equal compute", digits=4))
notebook_3 = runs_dir() / f"notebook-03b-{PROFILE}" / "metrics.jsonl"
if notebook_3.is_file():
    records = [json.loads(line) for line in notebook_3.read_text().splitlines()]
    final_3 = [record for record in records if record["event"] == "final"][-1]
    print(f"notebook 3's character GPT ({PROFILE}): {final_3['val_loss']:.4f} nats per character = "
          f"{final_3['val_loss'] / math.log(2):.4f} bits per byte, after {final_3['elapsed']:.0f} s of training")
else:
    print(f"no run of notebook 3 in {notebook_3.parent}: run notebook 3 under {PROFILE} to print its figure here")

# %% [markdown]
# At equal compute GPT-2's BPE goes from first to last: your BPE beats characters, and both beat GPT-2's, every
# comparison told apart. GPT-2's FLOPs bought the other two several times its steps and two to six times its text;
# the equal-steps race had charged its head nothing. Notebook 3b's character GPT ends below every arm: this race
# ranks tokenizers for one small model at one small budget, not what a character model can reach.
#
# These are short runs: the recipe `train text` sizes for this text trains many times longer, and whether the gaps
# shrink or turn there is not measured here. Under `cpu` the equal-compute BPE arm's 4.42 MB already reads its
# training split several times over, more than any other arm: the winner also repeated its text most. Under `gpu`,
# `STEPS` is 1,000 steps of 64 × 256 tokens, about 47 passes over the BPE's training tokens, where a model may
# overfit: the figures and words here are the `cpu` run's.
#
# ## A sample
#
# The first BPE model continues the first lines of the held-out text. After `STEPS` steps it has a play's shape
# (names in capitals, short lines) more than its words. From the repository's folder, the same model: `python -m
# tinylm.sample --ckpt runs/notebook-14-cpu/bpe2048-seed1 --prompt "ROMEO:" --max-new-tokens 100 --temperature 0.8
# --top-k 50`.

# %%
if not (RUNS / f"{bpe_spec.replace(':', '')}-seed{SEEDS[0]}").is_dir():  # replayed: train the one model used below
    train_arm(bpe_spec, SEEDS[0])
model, tokenizer, _ = tinylm.load_model(RUNS / f"{bpe_spec.replace(':', '')}-seed{SEEDS[0]}")
prompt_text = "\n".join(held_out_text[:120].split("\n")[:3]) + "\n"
prompt = tokenizer.encode(prompt_text)
new = generate_batch(model, [prompt], 100, temperature=0.8, top_k=50, seed=0, vocab_limit=tokenizer.vocab_size)[0]
print(tokenizer.decode(prompt) + tokenizer.decode(new))

# %% [markdown]
# ## Out of the course: Hugging Face
#
# An exported model is only useful with its tokenizer: the same text must become the same ids. `exported_vocab` gives
# the checkpoint's tokenizer in the form other programs read (your BPE's `tokenizers` JSON, unchanged), `with_rows`
# drops the embedding's padding rows, and `to_hf_gpt2` writes a folder that `transformers` loads as a
# `GPT2LMHeadModel` and its `AutoTokenizer`. `python -m tinylm.interop export --ckpt RUN --out FOLDER` does the same
# (a `LlamaForCausalLM` for a Llama-style model). Both libraries must give the prompt the same ids and greedy
# continuation. A model trained this briefly soon repeats one token greedily, so it is equal logits at every
# position, to float rounding, that show the two compute the same function.

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
# llama.cpp reads one file holding everything: the hyperparameters under its keys such as `gpt2.context_length`,
# every tensor under its names (a Llama-style model's query and key rows reordered for its RoPE), and the tokenizer's
# tokens, merges and special ids. A BPE goes in as `tokenizer.ggml.model` `gpt2`, characters as llama.cpp's `rwkv`
# tokenizer, tokens only. `write_gguf` writes the file with `gguf`, the package of llama.cpp's authors, which reads
# it back below. From the command line: `python -m tinylm.interop export --ckpt RUN --format gguf --out model.gguf`.

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
# The tested path is `python scripts/llama_cpp_check.py --ckpt RUN`: it builds llama.cpp, has its library tokenize a
# prompt and extend it greedily, and compares token for token with tinylm.
# [The dated note](../docs/notes/2026-11-26-llama-cpp-check.md) records the same ids and greedy tokens for
# character, `bpe:2048`, trimmed-GPT-2-vocabulary and Llama-style models.
#
# With llama.cpp built ([its build guide](https://github.com/ggml-org/llama.cpp/blob/master/docs/build.md)) the file
# should also run from its command line, and in Ollama through a four-line `Modelfile`; these command lines were not
# tried, and the course's machine has no Ollama. Run them in `runs/notebook-14-<profile>/export/`; they ask for no
# more than the 128-token context of `cpu`. An older llama.cpp names the first program `llama-cli`; a newer
# `llama-cli` is a chat program that [may ignore `-no-cnv`](https://github.com/ggml-org/llama.cpp/issues/27214) and
# wait at its prompt.
#
# ```bash
# llama-completion -m model.gguf -no-cnv -c 128 -n 100 -p "ROMEO:"
# printf 'FROM ./model.gguf\nPARAMETER temperature 0.8\nPARAMETER num_ctx 128\nPARAMETER num_predict 100\n' > Modelfile
# ollama create my-shakespeare -f Modelfile
# ollama run my-shakespeare "ROMEO:"
# ```
#
# ## What you learned
#
# - `train text` holds out part of any UTF-8 text before a tokenizer sees it, sizes a recipe to it and trains it like
#   every track.
# - A byte-level BPE trained on your text encodes any text exactly and never turns typed text into a special token.
# - Bits per byte compares tokenizers, because the text is the same whatever cuts it.
# - At equal steps the tokenizer changes how much text a step reads and what it costs; at an equal budget in FLOPs
#   the ranking changed: the budget's unit decides what a race measures. Three seeds per arm tell a difference from
#   seed noise when every seed of one beats every seed of the other, a verdict with a 10% chance where there is none.
# - An export carries its tokenizer: the `transformers` folder gives tinylm's greedy tokens and logits, and the GGUF
#   file holds the tensors and the tokenizer. llama.cpp ran such files in the dated note; Ollama was not tried.
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
# text, but each of its rows sees fewer examples to learn from in those steps; and, as the equal-compute race
# showed, equal steps charge nothing for its larger head, which costs more FLOPs per token. Which effect wins on
# this text, at equal steps? The check prints the verdicts by the course's rule.

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
# step reads more text, and its rows each see fewer examples. Equal steps leave a third uncharged: the larger head's
# FLOPs (rerun at equal compute, as the lesson did, to charge it). In [the keys' run](../docs/notes/2026-11-29-exercise-keys.md), at equal steps,
# more bytes per token won: bpe:2048 beat bpe:512 by 0.1303 bits per byte and bpe:8192 beat bpe:2048 by 0.2925, each
# told apart (every seed). Whether that holds at equal compute, or at a few times `STEPS`, the course did not measure.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
