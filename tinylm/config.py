"""Model and training configuration: `GPTConfig` (the network), `TrainConfig` (the optimisation), `ModelShape` (a
network before its vocabulary is known) and the block families of `--arch`.

`GPTConfig` and `TrainConfig` validate themselves on construction, so a bad value fails at once with a sentence that
says what to change, not as a shape error deep inside a forward pass. They convert to and from plain dicts, which is
how they travel inside checkpoints (JSON-safe, nothing pickled).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import InputError


class ConfigError(InputError):
    """A configuration value that cannot work; the message says which one and what to do."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to a config


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


class _PlainDict:
    """A config that travels as a plain dict (inside checkpoints: JSON-safe, nothing pickled)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        _require(not unknown, f"{cls.__name__} has no field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)


NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope")
MLPS = ("gelu", "swiglu", "relu2")
ROUTERS = ("softmax", "sigmoid")
BALANCING = ("none", "aux_loss", "loss_free")


def swiglu_hidden_size(n_embd: int, multiple_of: int) -> int:
    """Llama's SwiGLU width: 2/3 of GPT-2's 4·n_embd (three matrices instead of two, so the same parameter
    count), rounded up to a multiple of `multiple_of` (256 in Llama, 32 in llama2c) for matmul-friendly shapes."""
    hidden = int(2 * 4 * n_embd / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


@dataclass(frozen=True)
class GPTConfig(_PlainDict):
    """Shape of a decoder-only transformer. Defaults are GPT-2 small (124M).

    The architecture fields choose, each independently, between GPT-2's 2019 block and the changes
    that Llama-style models made since (see `ARCHITECTURES` for the presets):
    norm (LayerNorm or RMSNorm), position (learned absolute embeddings or RoPE), mlp (GELU or
    SwiGLU), n_kv_head (fewer key/value heads than query heads: grouped-query attention), bias,
    tie_weights, and n_experts > 0 for a mixture-of-experts MLP.

    Four more come from the modded-nanogpt speedrun (notebook 12 measures each): mlp="relu2" (ReLU², Primer's
    activation), qk_norm (RMS-normalised queries and keys), zero_init_projections (every projection that writes into
    the residual stream starts at zero, so each block starts as the identity) and logit_softcap (logits squashed into
    (-cap, cap) by cap·tanh(logits/cap)).
    """

    vocab_size: int = 50257
    block_size: int = 1024  # context length in tokens
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers, as GPT-2 has them
    tie_weights: bool = True  # the LM head shares its matrix with the token embedding
    attention: str = "flash"  # "flash": F.scaled_dot_product_attention; "explicit": the readable path
    norm: str = "layernorm"  # "layernorm" (GPT-2) or "rmsnorm" (Llama)
    norm_eps: float = 1e-5
    position: str = "learned"  # "learned" absolute embeddings (GPT-2) or "rope" rotary embeddings (Llama)
    rope_theta: float = 10000.0  # RoPE's base: the slowest pair of channels turns once every ~2π·θ positions
    mlp: str = "gelu"  # "gelu": 4·n_embd wide (GPT-2); "swiglu": gated, ~8/3·n_embd wide (Llama); "relu2": 4·n_embd
    mlp_hidden: int | None = None  # None: 4·n_embd, or swiglu_hidden_size(n_embd, mlp_multiple_of) for SwiGLU
    mlp_multiple_of: int = 32
    n_kv_head: int | None = None  # None: n_head (multi-head attention); 1: multi-query; in between: grouped-query
    qk_norm: bool = False  # RMS-normalise each head's queries and keys before the scores (no learned gain)
    zero_init_projections: bool = False  # attention's and the MLP's c_proj start at zero, not GPT-2's scaled N(0, σ)
    logit_softcap: float | None = None  # None: raw logits; a cap c: c·tanh(logits / c), every logit inside (-c, c)
    # Mixture of experts (n_experts > 0 replaces every block's MLP; experts use the `mlp` kind at expert_hidden width)
    n_experts: int = 0  # routed experts per layer
    n_experts_active: int = 2  # top-k: routed experts each token uses
    n_shared_experts: int = 0  # experts every token uses (DeepSeekMoE)
    expert_hidden: int | None = None  # None: the dense width / (active + shared experts): per token ~ one dense MLP
    router: str = "softmax"  # scores: "softmax" over experts (Switch, Mixtral) or independent "sigmoid" (DeepSeek-V3)
    balancing: str = "loss_free"  # "none", "aux_loss" (Switch/GShard) or "loss_free" (DeepSeek-V3's bias)
    aux_loss_coef: float = 0.01
    # loss-free: how far each expert's bias moves per optimizer step. DeepSeek-V3 uses 1e-3 over ~15T tokens; the
    # course's runs are 1,000 to 3,000 steps, hence ten times that (notebook 8b measures the steps each rate takes to
    # balance).
    bias_update_rate: float = 1e-2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "mlp_multiple_of"):
            value = getattr(self, name)
            _require(_is_int(value) and value > 0, f"GPTConfig.{name} must be a positive integer, got {value!r}")
        _require(
            self.n_embd % self.n_head == 0,
            f"GPTConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}: each head gets "
            f"n_embd // n_head channels, so pick n_embd as a multiple of n_head "
            f"(e.g. n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}).",
        )
        _require(0.0 <= self.dropout < 1.0, f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        for name, allowed in (("attention", ("flash", "explicit")), ("norm", NORMS), ("position", POSITIONS),
                              ("mlp", MLPS), ("router", ROUTERS), ("balancing", BALANCING)):
            value = getattr(self, name)
            _require(value in allowed, f"GPTConfig.{name} must be one of {allowed}, got {value!r}")
        _require(self.norm_eps > 0, f"GPTConfig.norm_eps must be positive, got {self.norm_eps}")
        _require(self.rope_theta > 0, f"GPTConfig.rope_theta must be positive, got {self.rope_theta}")
        _require(self.logit_softcap is None or self.logit_softcap > 0,
                 f"GPTConfig.logit_softcap must be positive or None, got {self.logit_softcap} "
                 "(modded-nanogpt caps at 15 to 30)")
        _require(self.position != "rope" or self.head_size % 2 == 0,
                 f"RoPE rotates channel pairs, so the head size (n_embd // n_head = {self.head_size}) must be even")
        for name in ("mlp_hidden", "n_kv_head", "expert_hidden"):
            value = getattr(self, name)
            _require(value is None or (_is_int(value) and value > 0),
                     f"GPTConfig.{name} must be a positive integer or None, got {value!r}")
        _require(
            self.n_head % self.kv_heads == 0,
            f"GPTConfig.n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}: each key/value head "
            f"serves a whole group of query heads, so choose n_kv_head among the divisors of n_head "
            f"({[d for d in range(1, self.n_head + 1) if self.n_head % d == 0]}).",
        )
        for name in ("n_experts", "n_shared_experts"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 0, f"GPTConfig.{name} must be an integer >= 0, got {value!r}")
        if self.n_experts:
            _require(
                _is_int(self.n_experts_active) and 1 <= self.n_experts_active <= self.n_experts,
                f"GPTConfig.n_experts_active={self.n_experts_active!r} must be between 1 and "
                f"n_experts={self.n_experts}: a token cannot be routed to more experts than there are",
            )
        _require(self.aux_loss_coef >= 0, f"GPTConfig.aux_loss_coef must be >= 0, got {self.aux_loss_coef}")
        _require(self.bias_update_rate >= 0, f"GPTConfig.bias_update_rate must be >= 0, got {self.bias_update_rate}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, or n_head when it is None."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def mlp_hidden_size(self) -> int:
        """The dense MLP's hidden width."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return swiglu_hidden_size(self.n_embd, self.mlp_multiple_of) if self.mlp == "swiglu" else 4 * self.n_embd

    @property
    def expert_hidden_size(self) -> int:
        """Each expert's hidden width (fine-grained experts: a slice of the dense width)."""
        if self.expert_hidden is not None:
            return self.expert_hidden
        return max(1, self.mlp_hidden_size // (self.n_experts_active + self.n_shared_experts))


# GPT-2 small as OpenAI released it: 124,439,808 parameters with the tied LM head.
GPT2_124M = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
# llama2c's stories15M (Karpathy's TinyStories Llama): 15.2M parameters, the 32,000-token Llama 2 vocabulary.
LLAMA2C_STORIES15M = GPTConfig(vocab_size=32000, block_size=256, n_layer=6, n_head=6, n_embd=288, mlp_hidden=768,
                               norm="rmsnorm", position="rope", mlp="swiglu", bias=False, tie_weights=True)

# The block families of `--arch`: fields applied on top of a track's shape (its width, depth, heads, context).
# llama: RMSNorm, RoPE, SwiGLU, grouped-query attention (half as many key/value heads), no biases. The head stays tied
# to the embedding, as in llama2.c's TinyStories models and Llama 3.2 1B: at these sizes an untied head would be
# a large share of the parameters, and the ablation in notebooks 8a and 8b compares blocks, not heads.
# llama-moe: the same with a mixture of 8 fine-grained experts, 2 active per token, and one shared expert.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "gpt2": dict(norm="layernorm", position="learned", mlp="gelu", bias=True, tie_weights=True, n_kv_head=None,
                 n_experts=0),
    "llama": dict(norm="rmsnorm", position="rope", mlp="swiglu", bias=False, tie_weights=True, n_kv_head="half",
                  n_experts=0),
    "llama-moe": dict(norm="rmsnorm", position="rope", mlp="swiglu", bias=False, tie_weights=True, n_kv_head="half",
                      n_experts=8, n_experts_active=2, n_shared_experts=1, balancing="loss_free"),
}


@dataclass(frozen=True)
class ModelShape:
    """A recipe's network before its data is known: size and context. The vocabulary comes from the prepared
    tokenizer and the block family from --arch, so `config` builds the full GPTConfig once both are known."""

    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0

    @classmethod
    def of(cls, config: GPTConfig) -> "ModelShape":
        return cls(config.block_size, config.n_layer, config.n_head, config.n_embd, config.dropout)

    def config(self, vocab_size: int, arch: str = "gpt2", balancing: str | None = None) -> GPTConfig:
        """This shape built as the block family `arch` (a key of ARCHITECTURES) over `vocab_size` tokens; a mixture
        of experts balances with `balancing` (None: the family's own)."""
        config = with_architecture(GPTConfig(vocab_size=vocab_size, **dataclasses.asdict(self)), arch)
        if balancing is None:
            return config
        _require(config.n_experts > 0, f"balancing={balancing!r} applies to a mixture of experts, and {arch} has "
                 f"none; choose an architecture with experts ({', '.join(MOE_ARCHITECTURES)}) or drop it")
        return dataclasses.replace(config, balancing=balancing)


MOE_ARCHITECTURES = [name for name, fields in ARCHITECTURES.items() if fields.get("n_experts")]


def with_architecture(config: GPTConfig, arch: str) -> GPTConfig:
    """`config`'s shape with the block family `arch` (a key of ARCHITECTURES)."""
    _require(arch in ARCHITECTURES, f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    fields = dict(ARCHITECTURES[arch])
    if fields.get("n_kv_head") == "half":
        fields["n_kv_head"] = max(1, config.n_head // 2) if config.n_head % 2 == 0 else config.n_head
    return dataclasses.replace(config, **fields)


DTYPES = ("auto", "float32", "bfloat16", "float16")
OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")


@dataclass(frozen=True)
class TrainConfig(_PlainDict):
    """How to optimise: batch geometry, schedule, budgets, and how often to look at progress.

    One optimizer step sees batch_size * grad_accum_steps sequences of the model's block_size.
    Training stops at max_steps or after max_seconds of training time, whichever comes first; the
    cosine decay follows whichever budget is closer to running out, so a time-limited run still
    ends at min_lr instead of being cut off at a high learning rate. Training time is the optimizer
    steps' own: evaluations, checkpoints and samples are not counted, so they cannot eat the budget.

    optimizer="muon" trains the blocks' weight matrices with Muon at muon_learning_rate (its own scale: an
    orthogonalised update has a fixed size, unlike Adam's) and everything else (embeddings, head, norms, biases) with
    AdamW at learning_rate; both follow the same schedule. schedule="wsd" (warmup-stable-decay) holds the peak rate
    and decays linearly to min_lr over the last cooldown_fraction of the run, instead of the cosine.
    """

    batch_size: int = 12
    grad_accum_steps: int = 1
    max_steps: int = 2000
    max_seconds: float | None = None  # seconds of training time (evaluations excluded); None: no time budget
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
    dtype: str = "auto"  # "auto": bf16 on GPUs that compute it natively, fp16 + GradScaler on older ones, fp32 on CPU
    total_batch_tokens: int | None = None  # if set, grad_accum_steps = this / (batch_size * block_size * world size)
    compile: bool = False  # torch.compile the training forward/backward (evaluation and generation stay eager)
    activation_checkpointing: bool = False  # keep each block's input only; rebuild the rest in the backward pass
    fsdp: bool = False  # shard weights, gradients and AdamW's moments over torchrun's processes (FSDP2)
    zero: bool = False  # shard AdamW's moments alone over torchrun's processes (ZeRO-1, tinylm.train.zero)
    optimizer: str = "adamw"  # "adamw" for every parameter, or "muon" for the blocks' matrices and AdamW for the rest
    muon_learning_rate: float = 0.02  # Muon's peak rate (optimizer="muon"); the schedule scales it like learning_rate
    muon_momentum: float = 0.95
    muon_ns_steps: int = 5  # Newton–Schulz iterations per Muon update (tinylm.train.muon)
    schedule: str = "cosine"  # "cosine" from the peak to min_lr, or "wsd": the peak, then a linear cooldown
    cooldown_fraction: float = 0.4  # wsd: the share of the run (steps or seconds) spent decaying to min_lr

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
            f"TrainConfig.warmup_steps={self.warmup_steps} must be smaller than max_steps={self.max_steps}: lower it "
            "(--set warmup_steps=N) or raise --max-steps",
        )
        _require(self.weight_decay >= 0, f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        _require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "TrainConfig.beta1 and beta2 must lie in [0, 1)")
        _require(self.grad_clip is None or self.grad_clip > 0, "TrainConfig.grad_clip must be positive or None")
        _require(self.dtype in DTYPES, f"TrainConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            _require(getattr(self, name) in allowed,
                     f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        _require(self.muon_learning_rate > 0,
                 f"TrainConfig.muon_learning_rate must be positive, got {self.muon_learning_rate} (0.02 is usual)")
        _require(0 <= self.muon_momentum < 1, f"TrainConfig.muon_momentum must lie in [0, 1), got {self.muon_momentum}")
        _require(_is_int(self.muon_ns_steps) and self.muon_ns_steps > 0,
                 f"TrainConfig.muon_ns_steps must be a positive integer, got {self.muon_ns_steps!r} (5 is usual)")
        _require(0 < self.cooldown_fraction <= 1,
                 f"TrainConfig.cooldown_fraction must lie in (0, 1], got {self.cooldown_fraction}")
        _require(not (self.fsdp and self.zero), "TrainConfig.fsdp and zero are two ways to shard a run (FSDP shards "
                 "AdamW's moments too): drop one")
        _require(self.total_batch_tokens is None or (_is_int(self.total_batch_tokens) and self.total_batch_tokens > 0),
                 f"TrainConfig.total_batch_tokens must be a positive integer or None, got {self.total_batch_tokens!r}")

    def accumulation_steps(self, block_size: int, world_size: int = 1) -> int:
        """Micro-batches per optimizer step on each rank: grad_accum_steps, or derived from total_batch_tokens."""
        if self.total_batch_tokens is None:
            return self.grad_accum_steps
        per_micro_step = self.batch_size * block_size * world_size
        _require(
            self.total_batch_tokens % per_micro_step == 0,
            f"TrainConfig.total_batch_tokens={self.total_batch_tokens:,} is not a multiple of "
            f"batch_size x block_size x processes = {self.batch_size} x {block_size} x {world_size} = "
            f"{per_micro_step:,}; change batch_size or the total",
        )
        return self.total_batch_tokens // per_micro_step

    def override(self, **options) -> "TrainConfig":
        """This config with `options` (None is a value: `--set grad_clip=none`). A new peak learning rate scales
        min_lr by the same factor (unless min_lr is given too), so that the schedule keeps its shape; a step limit no
        longer than the warmup (unless warmup_steps is given too) shortens the warmup to the same share of the run:
        what every command's --learning-rate and --max-steps do."""
        if options.get("learning_rate") is not None and "min_lr" not in options:
            options["min_lr"] = self.min_lr * options["learning_rate"] / self.learning_rate
        steps = options.get("max_steps")
        if steps is not None and "warmup_steps" not in options and self.warmup_steps >= steps:
            options["warmup_steps"] = self.warmup_steps * steps // self.max_steps
        return dataclasses.replace(self, **options)
