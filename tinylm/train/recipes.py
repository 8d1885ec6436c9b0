"""The course's tracks: each names its data, how to prepare it, and a recipe per profile.

A recipe is a (GPTConfig, TrainConfig) pair. `smoke` runs in seconds for CI, `cpu` is the recipe
that learns fastest per second on a 2-core laptop, `gpu` is the full recipe. A preset gives the
shape (width, depth, heads, context) as a GPT-2 block; `build_model_config` builds it as any block
family of `tinylm.config.ARCHITECTURES` (`architecture_config`; `--arch llama`: RMSNorm, RoPE, SwiGLU, grouped-query
attention; `llama-moe`: with a mixture of experts). A preset's vocab_size is a placeholder: the
real size comes from the prepared tokenizer, rounded up to the track's `vocab_multiple`
(`build_model_config`).

Why the cpu recipes look the way they do (measured on a 2-core machine; README, "Results"):
- shakespeare-char: in 70 s a model sees only ~3M characters, so what limits it is the number of
  optimizer steps, not its capacity. A CPU's throughput is set by the model's size (the batch
  barely matters: 4 layers x 128 wide train at ~21k tokens/s with batch 12, ~24k with batch 32), so
  the fastest learner is the smallest model that still attends: one block, 128 wide, ~55k tokens/s
  and ~5,000 steps in 70 s. At equal wall-clock, validation loss went 1.80 (4 layers) -> 1.75
  (3) -> 1.70 (2) -> 1.66 (1 layer); 96 or 192 wide were worse (1.67, 1.74). A high learning rate
  (6e-3 vs nanoGPT's 1e-3: 1.95 -> 1.78 at 4 layers) with beta1 = 0.8, beta2 = 0.99 and a cosine to
  1e-4 follows. fp32: bf16 autocast is slower on this CPU at this size (9.3 vs 7.5 ms per step,
  `python -m tinylm.bench train --n-layer 1 --block-size 64 --dtype bfloat16`, then float32).
  Deeper models win once the budget is longer, which is what the gpu recipe is.
- tinystories: the 50,257-wide output layer would dominate a small model, so the cpu and smoke
  profiles keep GPT-2's tokenization but only the tokens the training text uses
  (TrimmedBPETokenizer, ~6.9k of them), trained on the 2 MiB sample of TinyStories.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from ..config import ARCHITECTURES, GPT2_124M, ConfigError, GPTConfig, TrainConfig, with_architecture
from ..data.corpora import PreparedData, prepare_shakespeare_char, prepare_tinystories, prepare_trimmed
from ..data.fineweb import (
    SAMPLE_SHARD_TOKENS,
    ShardedWindowLoader,
    fineweb_edu_source,
    prepare_fineweb_edu,
    read_progress,
    val_tokens,
)
from ..runtime import resolve_profile
from ..tokenizers.gpt2 import BPETokenizer, padded_vocab_size
from .distributed import World


@dataclass(frozen=True)
class Track:
    name: str
    prepare_data: Callable[[str], PreparedData]  # profile -> prepared data
    recipes: dict[str, tuple[GPTConfig, TrainConfig]]
    sample_prompt: str = ""
    vocab_multiple: int = 1  # the embedding is padded to a multiple of this (64 suits GPU matmuls)
    # (data, block_size, batch_size, world, seed) -> a loader; None: random windows of data.train
    make_loader: Callable | None = None
    hellaswag_examples: dict[str, int] = dataclasses.field(default_factory=dict)  # per profile, at each evaluation

    def recipe(self, profile: str | None = None) -> tuple[GPTConfig, TrainConfig]:
        return self.recipes[resolve_profile(profile)]

    def prepare(self, profile: str | None = None) -> PreparedData:
        return self.prepare_data(resolve_profile(profile))

    def training_data(self, data: PreparedData, block_size: int, batch_size: int, world: World, seed: int):
        """What the Trainer draws batches from: the token array, or this track's loader over shards."""
        if self.make_loader is None:
            return data.train
        return self.make_loader(data, block_size, batch_size, world, seed)


def build_model_config(preset: GPTConfig, tokenizer, vocab_multiple: int = 1) -> GPTConfig:
    return dataclasses.replace(preset, vocab_size=padded_vocab_size(tokenizer.vocab_size, vocab_multiple))


def architecture_config(preset: GPTConfig, arch: str = "gpt2", balancing: str | None = None) -> GPTConfig:
    """A recipe's shape (width, depth, heads, context) built as the block family `arch` (a key of
    tinylm.config.ARCHITECTURES), and for a mixture of experts with the `balancing` mode (None: the family's own)."""
    config = with_architecture(preset, arch)
    if balancing is None:
        return config
    if not config.n_experts:
        raise ConfigError(f"balancing={balancing!r} applies to a mixture of experts, and {arch} has none; "
                          f"choose an architecture with experts ({', '.join(_moe_architectures())}) or drop it")
    return dataclasses.replace(config, balancing=balancing)


def architecture_of(config: GPTConfig) -> str | None:
    """The name of the block family `config` is built as (its balancing mode aside), or None for another mix."""
    for name in ARCHITECTURES:
        if dataclasses.replace(with_architecture(config, name), balancing=config.balancing) == config:
            return name
    return None


def default_run_name(track: str, profile: str, arch: str, balancing: str | None = None) -> str:
    """<track>-<profile> for GPT-2's block (as before there were others), <track>-<arch>[-<balancing>]-<profile>
    otherwise, so that the runs of an ablation do not overwrite each other."""
    parts = [track]
    if arch != "gpt2":
        parts.append(arch)
    if balancing is not None and balancing != ARCHITECTURES[arch].get("balancing"):
        parts.append(balancing)
    return "-".join([*parts, profile])


def _moe_architectures() -> list[str]:
    return [name for name, fields in ARCHITECTURES.items() if fields.get("n_experts")]


SHAKESPEARE_CHAR = Track(
    name="shakespeare-char",
    prepare_data=lambda profile: prepare_shakespeare_char(),
    sample_prompt="\n",
    recipes={
        "smoke": (
            GPTConfig(vocab_size=1, block_size=32, n_layer=2, n_head=2, n_embd=32),
            TrainConfig(batch_size=8, max_steps=30, warmup_steps=5, learning_rate=3e-3, min_lr=3e-4,
                        eval_interval=0, log_interval=5, eval_batch_size=256),
        ),
        "cpu": (
            GPTConfig(vocab_size=1, block_size=64, n_layer=1, n_head=4, n_embd=128),
            TrainConfig(batch_size=12, max_steps=6000, warmup_steps=50, learning_rate=6e-3, min_lr=1e-4,
                        beta1=0.8, beta2=0.99, eval_interval=2000, log_interval=200, eval_batch_size=256),
        ),
        "gpu": (
            GPTConfig(vocab_size=1, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
            TrainConfig(batch_size=64, max_steps=5000, warmup_steps=100, learning_rate=1e-3, min_lr=1e-4,
                        beta2=0.99, eval_interval=250, log_interval=10, eval_batch_size=128),
        ),
    },
)


def _prepare_tinystories(profile: str) -> PreparedData:
    if profile == "gpu":
        return prepare_tinystories()  # the full dataset online; the mirror's sample offline
    return prepare_trimmed(prepare_tinystories(source="sample"))  # computed once, then read from its folder


TINYSTORIES = Track(
    name="tinystories",
    prepare_data=_prepare_tinystories,
    sample_prompt="Once upon a time",
    vocab_multiple=64,
    recipes={
        "smoke": (
            GPTConfig(vocab_size=1, block_size=32, n_layer=2, n_head=2, n_embd=32),
            TrainConfig(batch_size=8, max_steps=30, warmup_steps=5, learning_rate=3e-3, min_lr=3e-4,
                        eval_interval=0, log_interval=5, eval_batch_size=128),
        ),
        "cpu": (
            GPTConfig(vocab_size=1, block_size=128, n_layer=4, n_head=4, n_embd=128),
            TrainConfig(batch_size=16, max_steps=5000, warmup_steps=50, learning_rate=4e-3, min_lr=1e-4,
                        beta2=0.99, eval_interval=400, log_interval=100, sample_interval=800, sample_tokens=80,
                        eval_batch_size=64),
        ),
        # The seed recipe: 51M parameters, 32 x 32 sequences of 256 tokens (262k tokens) per step.
        "gpu": (
            GPTConfig(vocab_size=1, block_size=256, n_layer=8, n_head=8, n_embd=512),
            TrainConfig(batch_size=32, grad_accum_steps=32, max_steps=40_000, warmup_steps=2000, learning_rate=5e-4,
                        min_lr=5e-5, eval_interval=1000, log_interval=10, sample_interval=1000, sample_tokens=200,
                        eval_batch_size=64),
        ),
    },
)

SMALL_RUN_DOCUMENTS = 120  # smoke and cpu online: the stream's first documents, the offline sample's size


def _prepare_fineweb_edu(profile: str) -> PreparedData:
    if profile == "gpu" or fineweb_edu_source() == "sample":
        folder = prepare_fineweb_edu()  # the full sample-10BT online (~10B tokens); the mirror's 120 documents offline
    else:
        folder = prepare_fineweb_edu(max_documents=SMALL_RUN_DOCUMENTS, shard_tokens=SAMPLE_SHARD_TOKENS)
    return PreparedData(folder, train=None, val=val_tokens(folder), tokenizer=BPETokenizer("gpt2"),
                        meta=read_progress(folder))


def _fineweb_loader(data: PreparedData, block_size: int, batch_size: int, world: World,
                    seed: int) -> ShardedWindowLoader:
    return ShardedWindowLoader(data.folder, block_size, batch_size, rank=world.rank, world_size=world.size, seed=seed,
                               vocab_size=data.tokenizer.vocab_size)


GPT2_124M_TRACK = Track(
    name="gpt2-124m",
    prepare_data=_prepare_fineweb_edu,
    make_loader=_fineweb_loader,
    sample_prompt="Hello, I'm a language model,",
    vocab_multiple=64,
    hellaswag_examples={"smoke": 8, "cpu": 100, "gpu": 10_042},
    recipes={
        "smoke": (
            GPTConfig(vocab_size=1, block_size=32, n_layer=2, n_head=2, n_embd=32),
            TrainConfig(batch_size=4, max_steps=10, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4,
                        eval_interval=0, log_interval=5, eval_batch_size=16),
        ),
        # A demonstration that the whole pipeline runs on a laptop; 60k tokens cannot teach a 50k vocabulary much.
        "cpu": (
            GPTConfig(vocab_size=1, block_size=128, n_layer=4, n_head=4, n_embd=128),
            TrainConfig(batch_size=8, max_steps=300, warmup_steps=30, learning_rate=3e-3, min_lr=3e-4,
                        eval_interval=100, log_interval=20, eval_batch_size=8),
        ),
        # GPT-2 small on FineWeb-Edu as in build-nanogpt: 2^19 = 524,288 tokens per step, 19,073 steps (~10B tokens).
        # Each evaluation scores the whole 100M-token validation shard (and HellaSwag), so it runs every 1,000
        # steps: ~6% on top of training, where every 250 steps would cost ~26%.
        "gpu": (
            dataclasses.replace(GPT2_124M, vocab_size=1),
            TrainConfig(batch_size=64, total_batch_tokens=524_288, max_steps=19_073, warmup_steps=715,
                        learning_rate=6e-4, min_lr=6e-5, weight_decay=0.1, beta1=0.9, beta2=0.95,
                        eval_interval=1000, log_interval=10, sample_interval=1000, sample_tokens=64,
                        eval_batch_size=16, compile=True),
        ),
    },
)

TRACKS = {track.name: track for track in (SHAKESPEARE_CHAR, TINYSTORIES, GPT2_124M_TRACK)}


def get_track(name: str) -> Track:
    if name not in TRACKS:
        raise ValueError(f"unknown track {name!r}; available: {', '.join(TRACKS)}")
    return TRACKS[name]
