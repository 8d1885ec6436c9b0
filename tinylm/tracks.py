"""The course's tracks: each names its data, how to prepare it, and a recipe per profile.

A recipe is a (GPTConfig, TrainConfig) pair. `smoke` runs in seconds for CI, `cpu` is the recipe
that learns fastest per second on a 2-core laptop, `gpu` is the full recipe. The vocabulary size
comes from the prepared data, so a preset leaves it to `build`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from .config import GPTConfig, TrainConfig
from .corpora import TINY_SHAKESPEARE, PreparedData, prepare_shakespeare_char  # noqa: F401 (re-exported)
from .runtime import resolve_profile


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
