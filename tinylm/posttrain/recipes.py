"""What one run of each post-training method does: its recipe. A task keeps one per method and profile
(tinylm.posttrain.tasks); `--set FIELD=VALUE` changes any field, and TrainConfig's, for one run."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..config import ModelShape, TrainConfig
from .task import TaskError


@dataclass(frozen=True)
class SFTRecipe:
    base: str  # the model fine-tuned when --base is not given
    train: TrainConfig
    lora_learning_rate: float  # the peak rate when only LoRA adapters train: they start at zero and need larger steps
    pretraining_share: float = 0.0  # share of batches of pretraining text, for a task that has some
    epochs: float | None = None  # if set, max_steps covers this many passes over the training conversations
    held_out: int | None = None  # validation and test problems used (None: all of them)

    def __post_init__(self) -> None:
        if not 0 <= self.pretraining_share < 1:
            raise TaskError(f"--set pretraining_share={self.pretraining_share:g}: pretraining_share must be at least 0 "
                            "and below 1 (the rest of the batches are chat)")
        _at_least_one(self, "held_out")


@dataclass(frozen=True)
class DPORecipe:
    base: str  # the chat model tuned when --base is not given: an SFT run folder
    train: TrainConfig
    beta: float  # how far the policy may move from the reference: smaller moves further
    lora_learning_rate: float
    held_out: int | None = None  # validation and test problems used (None: all of them)
    instructions: int | None = None  # on-policy pairs: training problems the starting model answers (None: all)
    samples: int = 4  # on-policy pairs: replies sampled per problem at temperature 1, from which a pair is drawn

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise TaskError(f"--set beta={self.beta}: DPO's beta must be positive; try 0.1")
        if self.samples < 2:
            raise TaskError(f"--set samples={self.samples}: a pair needs at least 2 replies per problem")
        _at_least_one(self, "held_out", "instructions")


@dataclass(frozen=True)
class GRPORecipe:
    """A rollout samples `group_size` completions for each of `prompts` training problems (all ranks together); each
    Trainer step is one clipped policy-gradient update, and `updates` consecutive steps share a rollout."""

    base: str  # the policy's start when --base is not given
    train: TrainConfig  # the updates: a constant rate (min_lr = learning_rate), no warmup, no weight decay
    prompts: int = 16
    group_size: int = 8
    updates: int = 2
    temperature: float = 1.0
    clip_eps: float = 0.2
    baseline: str = "group"  # "group": advantages against the group (GRPO); "none": the reward itself, which for a
    # 0/1 reward trains on the passing completions alone, the rest weighing 0 (expert iteration, the control)
    scale_advantages: bool = True  # divide by the group's reward std (DeepSeekMath); False: Dr. GRPO's centring only
    kl_coef: float = 0.0  # β of the KL penalty to the starting model (0: none, and no reference model kept)
    validation: int = 500  # held-out problems scored greedily at every evaluation: they choose best.pt
    test: int = 500  # held-out problems scored before training and on best.pt after it: the reported figure
    reward: str = "correct"  # what the rollouts are paid: the task's check, or a weaker one it offers
    pass_at_samples: int = 0  # completions per test problem at `temperature` for the report's pass@k (0: none)
    pass_at_problems: int = 0  # the first this many test problems are sampled so (0: all of them)

    def __post_init__(self) -> None:
        if not self.group_size >= 2:
            raise TaskError(f"--set group_size={self.group_size}: GRPO compares each completion with the others of "
                            "its group, so a group needs at least 2 (8 is usual)")
        _at_least_one(self, "prompts", "updates", "validation", "test")
        if self.baseline not in ("group", "none"):
            raise TaskError(f"--set baseline={self.baseline}: the baseline is group (GRPO) or none (expert "
                            "iteration)")
        if not (0 < self.clip_eps < 1 and 0 <= self.kl_coef < math.inf and self.temperature > 0):
            raise TaskError(f"--set clip_eps, kl_coef, temperature: clip_eps must lie between 0 and 1 (got "
                            f"{self.clip_eps}), kl_coef be a number >= 0 (got {self.kl_coef}) and temperature > 0 "
                            f"(got {self.temperature})")


def _at_least_one(recipe, *names: str) -> None:
    """A TaskError naming the first of these counts (None: all) that is below 1."""
    for name in names:
        value = getattr(recipe, name)
        if value is not None and value < 1:
            raise TaskError(f"--set {name}={value}: {name} must be at least 1")


# GRPO's updates: AdamW (default betas, no weight decay) at a constant 2e-4, gradients clipped at 1.0. A step is one
# update, so 5,000 steps are 2,500 rollouts of 2 updates each.
GRPO_TRAIN = TrainConfig(batch_size=1, max_steps=5000, warmup_steps=0, learning_rate=2e-4, min_lr=2e-4,
                         weight_decay=0.0, beta1=0.9, beta2=0.999, grad_clip=1.0, eval_interval=200, log_interval=100,
                         eval_batch_size=256, seed=0, dtype="float32")

# (model shape, pretraining recipe) of a chat task's base (stories, instruct) in the smoke profile: a few steps.
SMOKE_BASE = (ModelShape(block_size=128, n_layer=2, n_head=2, n_embd=32),
              TrainConfig(batch_size=8, max_steps=20, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4,
                          eval_interval=0, log_interval=10, eval_batch_size=64, dtype="float32"))


def changed(recipe, **changes):
    """`recipe` with fields of it or of its TrainConfig changed, as `--set FIELD=VALUE` changes them for one run."""
    train = {k: v for k, v in changes.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    own = {k: v for k, v in changes.items() if k not in train}
    return dataclasses.replace(recipe, **own, train=dataclasses.replace(recipe.train, **train))


def recipe_fields(recipe_type) -> tuple[str, ...]:
    """The fields `--set` may change in a recipe of this type (its TrainConfig's are TrainConfig's)."""
    return tuple(f.name for f in dataclasses.fields(recipe_type) if f.name != "train")
