"""The course's tracks: each names its data, how to prepare it, and a recipe per profile.

A recipe is a (GPTConfig, TrainConfig) pair. `smoke` runs in seconds for CI, `cpu` is the recipe
that learns fastest per second on a 2-core laptop, `gpu` is the full recipe. The vocabulary size
comes from the prepared data, so a preset leaves it to `build`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .config import GPTConfig, TrainConfig
from .data import read_meta, read_tokens, write_meta, write_tokens
from .download import RemoteFile, fetch
from .paths import data_dir
from .runtime import resolve_profile
from .tokenizers import CharTokenizer, tokenizer_from_dict

TINY_SHAKESPEARE = RemoteFile(
    url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    mirror_path="tinyshakespeare/input.txt",
)


@dataclass(frozen=True)
class PreparedData:
    folder: Path
    train: np.ndarray
    val: np.ndarray
    tokenizer: object
    meta: dict


def prepare_shakespeare_char(folder: Path | None = None, val_fraction: float = 0.1) -> PreparedData:
    """Download tinyshakespeare, map each character to an id, and split 90/10 into train.bin/val.bin."""
    folder = Path(folder) if folder is not None else data_dir() / "shakespeare_char"
    meta = read_meta(folder)
    if meta is None or meta.get("source_sha256") != TINY_SHAKESPEARE.sha256 or meta.get("val_fraction") != val_fraction:
        text_path = fetch(TINY_SHAKESPEARE, folder / "input.txt")
        text = text_path.read_text(encoding="utf-8")
        tokenizer = CharTokenizer.from_text(text)
        ids = np.array(tokenizer.encode(text))
        split = int(len(ids) * (1 - val_fraction))
        write_tokens(folder / "train.bin", ids[:split])
        write_tokens(folder / "val.bin", ids[split:])
        meta = {"source": TINY_SHAKESPEARE.url, "source_sha256": TINY_SHAKESPEARE.sha256, "val_fraction": val_fraction,
                "tokenizer": tokenizer.to_dict(), "train_tokens": split, "val_tokens": len(ids) - split}
        write_meta(folder, meta)  # written last: its presence means the .bin files are complete
    return PreparedData(folder, read_tokens(folder / "train.bin"), read_tokens(folder / "val.bin"),
                        tokenizer_from_dict(meta["tokenizer"]), meta)


@dataclass(frozen=True)
class Track:
    name: str
    prepare: Callable[..., PreparedData]
    recipes: dict[str, tuple[GPTConfig, TrainConfig]]
    sample_prompt: str = ""

    def recipe(self, profile: str | None = None) -> tuple[GPTConfig, TrainConfig]:
        return self.recipes[resolve_profile(profile)]


# vocab_size=1 is a placeholder: the real size comes from the prepared tokenizer (see build_model_config).
SHAKESPEARE_CHAR = Track(
    name="shakespeare-char",
    prepare=prepare_shakespeare_char,
    sample_prompt="\n",
    recipes={
        "smoke": (
            GPTConfig(vocab_size=1, block_size=32, n_layer=2, n_head=2, n_embd=32),
            TrainConfig(batch_size=8, max_steps=30, warmup_steps=5, learning_rate=3e-3, min_lr=3e-4,
                        eval_interval=0, log_interval=5, eval_batch_size=256),
        ),
        "cpu": (
            GPTConfig(vocab_size=1, block_size=64, n_layer=4, n_head=4, n_embd=128),
            TrainConfig(batch_size=12, max_steps=2000, warmup_steps=100, learning_rate=1e-3, min_lr=1e-4,
                        eval_interval=500, log_interval=50, eval_batch_size=256),
        ),
        "gpu": (
            GPTConfig(vocab_size=1, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
            TrainConfig(batch_size=64, max_steps=5000, warmup_steps=100, learning_rate=1e-3, min_lr=1e-4,
                        beta2=0.99, eval_interval=250, log_interval=10, eval_batch_size=128),
        ),
    },
)

TRACKS = {track.name: track for track in (SHAKESPEARE_CHAR,)}


def get_track(name: str) -> Track:
    if name not in TRACKS:
        raise ValueError(f"unknown track {name!r}; available: {', '.join(TRACKS)}")
    return TRACKS[name]


def build_model_config(preset: GPTConfig, tokenizer) -> GPTConfig:
    return dataclasses.replace(preset, vocab_size=tokenizer.vocab_size)
