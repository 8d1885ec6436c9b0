"""Model and training configuration.

Two dataclasses hold every knob: `GPTConfig` describes the network, `TrainConfig` the optimisation.
Both validate themselves on construction, so a bad value fails at once with a sentence that says
what to change, instead of as a shape error deep inside a forward pass. Both convert to and from
plain dicts, which is how they travel inside checkpoints (JSON-safe, nothing pickled).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A configuration value that cannot work; the message says which one and what to do."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to a config


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _from_dict(cls, values: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    _require(not unknown, f"{cls.__name__} has no field(s) {unknown}; known fields: {sorted(known)}")
    return cls(**values)


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT-2-style decoder. Defaults are GPT-2 small (124M)."""

    vocab_size: int = 50257
    block_size: int = 1024  # context length in tokens
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers, as GPT-2 has them
    tie_weights: bool = True  # the LM head shares its matrix with the token embedding
    attention: str = "flash"  # "flash": F.scaled_dot_product_attention; "explicit": the readable path

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            _require(_is_int(value) and value > 0, f"GPTConfig.{name} must be a positive integer, got {value!r}")
        _require(
            self.n_embd % self.n_head == 0,
            f"GPTConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}: each head gets "
            f"n_embd // n_head channels, so pick n_embd as a multiple of n_head "
            f"(e.g. n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}).",
        )
        _require(0.0 <= self.dropout < 1.0, f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        _require(
            self.attention in ("flash", "explicit"),
            f"GPTConfig.attention must be 'flash' or 'explicit', got {self.attention!r}",
        )

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GPTConfig":
        return _from_dict(cls, values)


# GPT-2 small as OpenAI released it: 124,439,808 parameters with the tied LM head.
GPT2_124M = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class TrainConfig:
    """How to optimise: batch geometry, schedule, budgets, and how often to look at progress.

    One optimizer step sees batch_size * grad_accum_steps sequences of the model's block_size.
    Training stops at max_steps or after max_seconds of wall-clock, whichever comes first; the
    cosine decay follows whichever budget is closer to running out, so a time-limited run still
    ends at min_lr instead of being cut off at a high learning rate.
    """

    batch_size: int = 12
    grad_accum_steps: int = 1
    max_steps: int = 2000
    max_seconds: float | None = None
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float | None = 1.0
    eval_interval: int = 250  # steps between whole-split validation passes (0: only at the end)
    log_interval: int = 10
    sample_interval: int = 0  # steps between printed samples (0: never)
    sample_tokens: int = 200
    eval_batch_size: int = 64
    seed: int = 1337
    dtype: str = "auto"  # "auto": bf16 where supported, fp16 + GradScaler on older CUDA, fp32 on CPU
    total_batch_tokens: int | None = None  # if set, grad_accum_steps = this / (batch_size * block_size * world size)
    compile: bool = False  # torch.compile the training forward/backward (evaluation and generation stay eager)

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum_steps", "max_steps", "eval_batch_size", "log_interval"):
            value = getattr(self, name)
            _require(_is_int(value) and value > 0, f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "eval_interval", "sample_interval", "sample_tokens"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 0, f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        _require(
            self.max_seconds is None or self.max_seconds > 0,
            f"TrainConfig.max_seconds must be positive or None, got {self.max_seconds}",
        )
        _require(self.learning_rate > 0, f"TrainConfig.learning_rate must be positive, got {self.learning_rate}")
        _require(
            0 <= self.min_lr <= self.learning_rate,
            f"TrainConfig.min_lr={self.min_lr} must lie between 0 and learning_rate={self.learning_rate}",
        )
        _require(
            self.warmup_steps < self.max_steps,
            f"TrainConfig.warmup_steps={self.warmup_steps} must be smaller than max_steps={self.max_steps}",
        )
        _require(self.weight_decay >= 0, f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        _require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "TrainConfig.beta1 and beta2 must lie in [0, 1)")
        _require(self.grad_clip is None or self.grad_clip > 0, "TrainConfig.grad_clip must be positive or None")
        _require(self.dtype in DTYPES, f"TrainConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        _require(self.total_batch_tokens is None or (_is_int(self.total_batch_tokens) and self.total_batch_tokens > 0),
                 f"TrainConfig.total_batch_tokens must be a positive integer or None, got {self.total_batch_tokens!r}")

    def accumulation_steps(self, block_size: int, world_size: int = 1) -> int:
        """Micro-batches per optimizer step on each rank: grad_accum_steps, or derived from total_batch_tokens."""
        if self.total_batch_tokens is None:
            return self.grad_accum_steps
        per_micro_step = self.batch_size * block_size * world_size
        _require(
            self.total_batch_tokens % per_micro_step == 0,
            f"TrainConfig.total_batch_tokens={self.total_batch_tokens:,} is not a multiple of batch_size x block_size x "
            f"processes = {self.batch_size} x {block_size} x {world_size} = {per_micro_step:,}; change batch_size or the total",
        )
        return self.total_batch_tokens // per_micro_step

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, values)
