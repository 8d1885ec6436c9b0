"""The small base model that chat fine-tuning starts from on a CPU, and the pretraining text it mixes into SFT.

The gpu profile fine-tunes OpenAI's GPT-2 124M, too slow to train on a laptop's CPU in minutes; the
tinystories cpu model's vocabulary (its stories' 6,875 GPT-2 tokens) cannot read most instructions. So the cpu and
smoke profiles pretrain their own base first, in minutes, like any track (`chat_base_track`, through
`tinylm.train.run.train`): on the TinyStories sample and the 120 FineWeb-Edu documents (every 20th held out), in
GPT-2's tokenization trimmed (`TrimmedBPETokenizer`) to every token of the instruction set's training split plus
the corpus tokens seen at least MIN_COUNT times, which nearly halves the output layer, by far the largest cost at
this width. The chat tokens are added later (`add_chat_tokens`), as to any base. `pretraining_tokens` gives the same
corpus in any base's tokenizer, for the SFT mixture.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import ModelShape, TrainConfig
from ..data.corpora import TINYSTORIES_SAMPLE, PreparedData, split_stories
from ..data.fineweb import FINEWEB_EDU_SAMPLE
from ..download import fetch, mirror_dir
from ..errors import TinyLMError
from ..paths import data_dir, shown
from ..tokenizers.gpt2 import BPETokenizer, TrimmedBPETokenizer
from ..train.checkpoint import load_checkpoint
from ..train.options import RunOptions
from ..train.recipes import Recipe, Track
from ..train.run import train
from ..train.run_folder import run_file


class BaseModelUnavailable(TinyLMError, RuntimeError):
    """The base model cannot be loaded here, e.g. GPT-2 from Hugging Face while offline."""

MIN_COUNT = 3  # corpus tokens seen fewer times are left out of the trimmed vocabulary
HELD_OUT_EVERY = 20  # every 20th document is validation text

# (model shape, pretraining recipe) per profile; the vocabulary comes from the trimmed tokenizer.
BASE_RECIPES = {
    "smoke": (ModelShape(block_size=128, n_layer=2, n_head=2, n_embd=32),
              TrainConfig(batch_size=8, max_steps=20, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4,
                          eval_interval=0, log_interval=10, eval_batch_size=64, dtype="float32")),
    "cpu": (ModelShape(block_size=128, n_layer=4, n_head=4, n_embd=128),
            TrainConfig(batch_size=16, max_steps=450, warmup_steps=50, learning_rate=4e-3, min_lr=1e-4, beta2=0.99,
                        eval_interval=0, log_interval=50, eval_batch_size=64, dtype="float32")),
}


def corpus_texts() -> list[str]:
    """The TinyStories sample's stories, then the FineWeb-Edu sample's documents (from the mirror, or the first
    120 documents of the stream online)."""
    folder = data_dir() / "chat_base"
    stories = split_stories(fetch(TINYSTORIES_SAMPLE, folder / "tinystories_sample.txt").read_text(encoding="utf-8"))
    if mirror_dir() is not None:
        with open(fetch(FINEWEB_EDU_SAMPLE, folder / "fineweb_edu_120docs.jsonl"), encoding="utf-8") as f:
            return stories + [json.loads(line)["text"] for line in f if line.strip()]
    import datasets

    stream = datasets.load_dataset("HuggingFaceFW/fineweb-edu", name="sample-10BT", split="train", streaming=True)
    return stories + [row["text"] for row in itertools.islice(stream, 120)]


def _encode(texts: list[str], tokenizer) -> list[np.ndarray]:
    """Each text's ids followed by the end-of-text token."""
    if isinstance(tokenizer, TrimmedBPETokenizer):
        return [tokenizer.compact(ids) for ids in _encode(texts, tokenizer.base)]
    if hasattr(tokenizer, "encoding"):  # tiktoken: encode in its thread pool
        encoded = tokenizer.encoding.encode_ordinary_batch(texts)
    else:
        encoded = [tokenizer.encode(text) for text in texts]
    eot = getattr(tokenizer, "eot_token", None)
    return [np.array(ids + ([eot] if eot is not None else []), dtype=np.int64) for ids in encoded]


def pretraining_tokens(tokenizer, texts: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) token arrays of the base corpus in `tokenizer`'s ids (uint16 where they fit)."""
    documents = _encode(corpus_texts() if texts is None else texts, tokenizer)
    train = np.concatenate([d for i, d in enumerate(documents) if i % HELD_OUT_EVERY])
    val = np.concatenate(documents[::HELD_OUT_EVERY])
    dtype = np.uint16 if tokenizer.vocab_size <= 65536 else np.int64
    return train.astype(dtype), val.astype(dtype)


def base_tokenizer(texts: list[str], instruction_texts: list[str], min_count: int = MIN_COUNT) -> TrimmedBPETokenizer:
    """GPT-2's BPE trimmed to the instruction texts' tokens and the corpus tokens seen at least min_count times."""
    gpt2 = BPETokenizer("gpt2")
    counts = Counter(i for ids in gpt2.encoding.encode_ordinary_batch(texts) for i in ids)
    kept = {i for i, n in counts.items() if n >= min_count} | {gpt2.eot_token}
    kept |= {i for ids in gpt2.encoding.encode_ordinary_batch(instruction_texts) for i in ids}
    return TrimmedBPETokenizer(sorted(kept))


def chat_base_track(instruction_texts: list[str]) -> Track:
    """The base model's track: the corpus in GPT-2's tokens trimmed to what it and the instruction texts use
    (prepared in memory: it takes seconds), and BASE_RECIPES."""

    def prepare(profile: str) -> PreparedData:
        texts = corpus_texts()
        tokenizer = base_tokenizer(texts, instruction_texts)
        train, val = pretraining_tokens(tokenizer, texts)
        return PreparedData(data_dir() / "chat_base", train, val, tokenizer, {"source": "TinyStories sample + "
                                                                               "FineWeb-Edu sample"})

    return Track(name="chat-base", prepare_data=prepare, recipes=BASE_RECIPES, vocab_multiple=64)


def pretrain_base(profile: str, out: Path, instruction_texts: list[str], device=None, world=None,
                  say: Callable[[str], None] = print) -> Path:
    """Pretrain (or finish, or reuse) the profile's small base in `out` through `tinylm.train.run.train`; returns its
    last.pt.

    A finished run is reused as it is, an interrupted one resumed, so a second SFT run starts at once; a base
    whose vocabulary was trimmed for other instruction data is pretrained again (--overwrite: the old one stays
    until the new one has a checkpoint).
    """
    track = chat_base_track(instruction_texts)
    shape, cfg = BASE_RECIPES[profile]
    checkpoint = run_file(out, "last.pt")  # the old base while an interrupted --overwrite waits to be settled
    saved = load_checkpoint(checkpoint) if checkpoint.is_file() else None
    resume = overwrite = False
    if saved is not None:
        tokenizer = base_tokenizer(corpus_texts(), instruction_texts)
        if saved.get("tokenizer") != tokenizer.to_dict():
            say(f"base model: {shown(out)} was pretrained with the vocabulary of other instruction data: again")
            overwrite = True
        elif saved["step"] >= cfg.max_steps:
            say(f"base model: {shown(checkpoint)} (pretrained earlier, {saved['step']} steps)")
            return checkpoint
        else:
            resume = True
    run = RunOptions(out=out, resume=resume, overwrite=overwrite, profile=profile,
                     device=None if device is None else str(device))
    train(Recipe(track=track, run=run, shape=shape, train=cfg), world=world, say=say)
    return out / "last.pt"
