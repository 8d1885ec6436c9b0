"""What a GRPO run does on each profile: the task's settings, the task-format model's SFT, and GRPO's knobs.

The cpu profile must show learning within minutes on two cores, so its task is 2-digit arithmetic: after answer-only
SFT on the format (1,500 steps, so that the start does not depend on the seed), a 2-layer, 64-wide character model
solves a minority of the held-out problems greedily, which leaves GRPO room to gain and gives it groups with mixed
rewards (a group whose completions are all right or all wrong teaches nothing); 3-digit problems start near 2%.
Countdown's settings are the smallest that still make a search (3 numbers up to 9, targets up to 99). GRPO: 8
completions for each of 32 prompts per rollout, temperature 1, 2 clipped updates per rollout (ε = 0.2), AdamW at a
constant 2e-4 with gradients clipped at 1.0, advantages scaled by the group's std, no KL penalty. A step count, not a
clock, bounds the cpu run, so a loaded machine trains the same recipe for longer instead of less. The gpu recipe (a
wider model, 3-digit arithmetic, more prompts) is not measured. The course guide gives the runs behind these choices.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ...config import ModelShape, TrainConfig
from ..stories import STORY_REPLY_TOKENS
from .tasks import TaskError

REWARDS = ("correct", "format", "constraints")


@dataclass(frozen=True)
class GRPORecipe:
    """One profile's GRPO run. A rollout samples `group_size` completions for each of `prompts` training problems (all
    ranks together); each of the Trainer's steps (`train`: steps, time budget, rate, clipping, intervals, seed,
    dtype) is one clipped policy-gradient update, and `updates` consecutive steps share a rollout."""

    tasks: dict  # task name -> (settings for get_task, max_new_tokens of a completion)
    train: TrainConfig  # the GRPO updates; a constant rate (min_lr = learning_rate), no warmup, no weight decay
    base_shape: ModelShape | None = None  # the task-format model that `--base pretrain` builds (None: no such base)
    base_train: TrainConfig | None = None  # its answer-only SFT
    prompts: int = 16
    group_size: int = 8
    updates: int = 2
    temperature: float = 1.0
    clip_eps: float = 0.2
    scale_advantages: bool = True  # divide by the group's reward std (DeepSeekMath); False: Dr. GRPO's centring only
    kl_coef: float = 0.0  # β of the KL penalty to the starting model (0: none, and no reference model kept)
    validation: int = 500  # fixed held-out problems scored greedily at every evaluation: they choose best.pt
    test: int = 500  # further held-out problems scored before training and on best.pt after it: the reported figure
    reward: str = "correct"  # "correct": the task's check; "format", "constraints": a weaker one (reward hacking)
    pass_at_samples: int = 0  # completions per test problem at temperature 1 for the report's pass@k (0: none)
    pass_at_problems: int = 0  # the first this many test problems are sampled so (0: all of them)

    def __post_init__(self) -> None:
        if not self.group_size >= 2:
            raise TaskError(f"group size {self.group_size}: GRPO compares each completion with the others of its "
                            "group, so a group needs at least 2 (--group-size 2 or more; 8 is usual)")
        for name in ("prompts", "updates", "validation", "test"):
            if getattr(self, name) < 1:
                raise TaskError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.reward not in REWARDS:
            raise TaskError(f"reward {self.reward!r}: choose correct (the task's check), format (arithmetic and "
                            "countdown: well-formed answers pay alone) or constraints (stories: the verifier without "
                            "its fluency guard)")
        if not (0 < self.clip_eps < 1 and 0 <= self.kl_coef < math.inf and self.temperature > 0):
            raise TaskError(f"clip_eps must lie between 0 and 1 (got {self.clip_eps}), kl_coef be a number >= 0 "
                            f"(got {self.kl_coef}) and temperature > 0 (got {self.temperature})")

    def replace(self, train: dict | None = None, **changes) -> "GRPORecipe":
        """This recipe with the options that are not None changed; `train` changes fields of its TrainConfig."""
        recipe = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        train = {k: v for k, v in (train or {}).items() if v is not None}
        return dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, **train)) if train else recipe

    def settings(self) -> dict:
        """The GRPO knobs as plain data (for checkpoints and settings.json); the TrainConfig is saved apart."""
        skip = {"tasks", "base_shape", "base_train", "train"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


_TASKS = {"arithmetic": ({"digits": 2}, 8), "countdown": ({"count": 3, "largest": 9, "max_target": 99}, 16)}
_BASE_SHAPE = ModelShape(block_size=32, n_layer=2, n_head=4, n_embd=64)
# The prototype's SFT (64 problems a step at a constant 3e-3, no weight decay, no gradient clipping, AdamW's default
# betas), run 1,500 steps instead of 600: from 600 steps the start depends on the seed (7-20% measured).
_BASE_TRAIN = TrainConfig(batch_size=64, max_steps=1500, warmup_steps=0, learning_rate=3e-3, min_lr=3e-3,
                          weight_decay=0.0, beta2=0.999, grad_clip=None, eval_interval=500, log_interval=100,
                          eval_batch_size=256, dtype="float32")
# GRPO's updates: AdamW (default betas, no weight decay) at a constant 2e-4, gradients clipped at 1.0. A step is one
# update, so the cpu recipe's 5,000 steps are 2,500 rollouts of 2 updates each.
_GRPO_TRAIN = TrainConfig(batch_size=1, max_steps=5000, warmup_steps=0, learning_rate=2e-4, min_lr=2e-4,
                          weight_decay=0.0, beta1=0.9, beta2=0.999, grad_clip=1.0, eval_interval=200, log_interval=100,
                          eval_batch_size=256, seed=0, dtype="float32")

GRPO_RECIPES = {
    # seconds: a 1-layer model, a short SFT and a few GRPO steps; the pipeline runs, nothing is expected to learn
    "smoke": GRPORecipe(tasks=_TASKS, base_shape=ModelShape(block_size=32, n_layer=1, n_head=2, n_embd=32),
                      base_train=dataclasses.replace(_BASE_TRAIN, batch_size=32, max_steps=30, warmup_steps=2,
                                                     eval_interval=0, log_interval=10),
                      train=dataclasses.replace(_GRPO_TRAIN, max_steps=6, eval_interval=3, log_interval=2),
                      prompts=4, group_size=4, updates=1, validation=32, test=32),
    # the course's goal: +20 points of held-out accuracy within 10 minutes on 2 cores (course guide, notebook 11)
    "cpu": GRPORecipe(tasks=_TASKS, base_shape=_BASE_SHAPE, base_train=_BASE_TRAIN, train=_GRPO_TRAIN, prompts=32),
    # not measured: 3-digit arithmetic on a 4-layer, 128-wide model, 64 prompts per rollout
    "gpu": GRPORecipe(tasks={"arithmetic": ({"digits": 3}, 8), "countdown": _TASKS["countdown"]},
                    base_shape=ModelShape(block_size=64, n_layer=4, n_head=4, n_embd=128),
                    base_train=dataclasses.replace(_BASE_TRAIN, max_steps=3000, warmup_steps=100, log_interval=250,
                                                   eval_interval=500, dtype="auto"),
                    train=dataclasses.replace(_GRPO_TRAIN, max_steps=4000, log_interval=40, dtype="auto"),
                    prompts=64, validation=1000, test=1000),
}

# The story task (tinylm.posttrain.grpo.story_writing) from an SFT stories run: replies of up to STORY_REPLY_TOKENS
# new tokens, the verifier as reward. Its own validation and test splits; the cpu recipe takes pass@1 and pass@8 from
# 8 samples for each of the first 100 test instructions. The cpu recipe's constant 3e-4 is a rate that raises the pass
# rate within a few dozen updates (notebook 11 measures it against a control); the gpu recipe keeps a cautious 2e-5.
_STORIES = {"stories": ({}, STORY_REPLY_TOKENS)}
_STORY_TRAIN = dataclasses.replace(_GRPO_TRAIN, max_steps=24, learning_rate=3e-4, min_lr=3e-4, eval_interval=8,
                                   log_interval=2, eval_batch_size=64)
STORY_GRPO_RECIPES = {
    # seconds: a few updates on 2 prompts; the pipeline runs, nothing is expected to learn
    "smoke": GRPORecipe(tasks=_STORIES, train=dataclasses.replace(_STORY_TRAIN, max_steps=4, eval_interval=2,
                                                                  log_interval=1),
                        prompts=2, group_size=4, updates=2, validation=8, test=8, pass_at_samples=4),
    "cpu": GRPORecipe(tasks=_STORIES, train=_STORY_TRAIN, prompts=8, group_size=8, updates=2, validation=80,
                      test=250, pass_at_samples=8, pass_at_problems=100),
    # not measured
    "gpu": GRPORecipe(tasks=_STORIES, train=dataclasses.replace(_STORY_TRAIN, max_steps=400, learning_rate=2e-5,
                                                                min_lr=2e-5, eval_interval=50, log_interval=10,
                                                                dtype="auto"),
                      prompts=32, group_size=8, updates=2, validation=80, test=250, pass_at_samples=16),
}


def grpo_recipe(task: str, profile: str) -> GRPORecipe:
    """The recipe of `task` on `profile`: the story task's, or the generated tasks' (GRPO_RECIPES)."""
    return (STORY_GRPO_RECIPES if task == "stories" else GRPO_RECIPES)[profile]
