"""`GRPOTrainer`: the one Trainer (tinylm.train.trainer) with GRPO's batches, loss and validation.

Its batches come from `RolloutSource`: fresh training problems, a group of completions sampled for each and
rewarded (tinylm.posttrain.grpo.rollout), with the log-probabilities of the sampling policy π_old and, for a KL
penalty, of the frozen start π_ref. Its loss is the clipped objective (tinylm.posttrain.grpo.objective); best.pt
keeps the policy with the highest greedy pass rate on the validation problems. `updates` consecutive steps share a
rollout, as PPO's epochs do; under torchrun each rank samples its own share of one problem stream.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any

import torch

from ...distributed import World, all_reduce_sum, current_world
from ...runtime import resolve_dtype
from ...train.memory import check_training_memory
from ...train.progress import format_duration, format_record
from ...train.trainer import Trainer
from ..recipes import GRPORecipe, recipe_fields
from ..task import HeldOut, PostTrainingTask, ProblemStream, TaskError, greedy_pass_rate
from .objective import PolicyLoss, clipped_policy_loss, group_advantages, kl_estimate, token_logprobs
from .rollout import sample_groups


class RolloutSource:
    """GRPO's batches: every `updates` steps a fresh rollout of this rank's share of the problems, sampled from
    `policy` (the model being trained, as it is at that step); in between, the same one. A batch is (sequences,
    completion mask, advantages, π_old log-probabilities, π_ref's or None): `reference`, the starting policy frozen
    for the KL penalty, copied now, before the Trainer moves and trains the policy (None without the penalty)."""

    def __init__(self, *, policy, tokenizer, task: PostTrainingTask, held_out: HeldOut, recipe: GRPORecipe,
                 world: World):
        self.reference = copy.deepcopy(policy).eval().requires_grad_(False) if recipe.kl_coef > 0 else None
        self.policy, self.tokenizer, self.world = policy, tokenizer, world
        self.recipe, self.seed = recipe, recipe.train.seed
        self.reward_task = task.rewarded_by(recipe.reward)
        self.stream = ProblemStream(task, held_out.problems, seed=self.seed)  # neither validation nor test problems
        self.served, self.batch = 0, None
        self.totals = [0.0] * 5  # the last rollout's reward, correct, well-formed, tokens and completions (this rank)
        # The longest sequence a rollout can hold, where the task lists its training problems (a chat task's): the
        # memory check counts it, not the whole context (8,192 tokens for SmolLM2). None: the whole context.
        listed = getattr(task, "train_problems", None)
        self.longest = (max(len(task.prompt_ids(tokenizer, p)) for p in [*listed(), *held_out.problems])
                        + task.reply_tokens) if listed else None

    def next_batch(self, device: torch.device | str = "cpu") -> tuple:
        if self.served % self.recipe.updates == 0:
            self.batch = self._sample()
        self.served += 1
        return self.batch

    @torch.no_grad()
    def _sample(self) -> tuple:
        recipe, world = self.recipe, self.world
        problems = self.stream.take(recipe.prompts)
        share = recipe.prompts // world.size
        mine = problems[world.rank * share : (world.rank + 1) * share]
        rollout_index = self.served // recipe.updates  # sampling seeds derive from it, so a resume samples the same
        seed = (self.seed * 1_000_003 + rollout_index) * 1024 + world.rank
        rollout = sample_groups(self.policy, self.tokenizer, self.reward_task, mine, recipe.group_size,
                                temperature=recipe.temperature, seed=seed)
        mask = rollout.completion_mask
        self.totals = [rollout.rewards.sum().item(), rollout.correct.sum().item(), rollout.well_formed.sum().item(),
                       mask.sum().item(), rollout.rewards.numel()]
        advantages = (group_advantages(rollout.rewards, scale=recipe.scale_advantages) if recipe.baseline == "group"
                      else rollout.rewards).flatten()
        old = token_logprobs(self.policy, rollout.sequences)
        ref = token_logprobs(self.reference, rollout.sequences) if self.reference is not None else None
        return rollout.sequences, mask, advantages, old, ref

    def state_dict(self) -> dict[str, Any]:
        """The problem stream, the steps served and, between a rollout's updates, the rollout itself (sampling it
        again after an update would give another one)."""
        between = self.served % self.recipe.updates != 0
        # "generator" is the key every batch source's state has (tinylm.train.checkpoint checks it); "stream" the rest
        return {"generator": self.stream.state_dict()["generator"], "stream": self.stream.state_dict(),
                "served": self.served, "batch": list(self.batch) if between else None, "totals": self.totals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.served, self.totals = state["served"], state["totals"]
        device = next(self.policy.parameters()).device  # a checkpoint is loaded onto the CPU
        self.batch = (tuple(None if t is None else t.to(device) for t in state["batch"]) if state["batch"] is not None
                      else None)


class GRPOTrainer(Trainer):
    """GRPO on `task` from `model` (the policy, trained in place), never training on a `held_out` problem, and scored
    on its validation problems by greedy completions. `recipe.train` is the TrainConfig; its batch_size is set here
    to the completions a rank samples per rollout, which is what the memory check before the first step needs."""

    score = "pass_rate"
    higher_is_better = True

    def __init__(self, model, tokenizer, task: PostTrainingTask, recipe: GRPORecipe, held_out: HeldOut, *,
                 world: World | None = None, **kwargs):
        world = world or current_world()
        if recipe.prompts % world.size:
            raise TaskError(f"{recipe.prompts} prompts per step cannot be shared by {world.size} processes: "
                            "use a number of processes that divides it")
        self.recipe, self.task, self.held_out = recipe, task, held_out
        cfg = dataclasses.replace(recipe.train, batch_size=recipe.prompts // world.size * recipe.group_size,
                                  grad_accum_steps=1, total_batch_tokens=None, sample_interval=0)
        # the policy is `model` itself, which the Trainer moves in place and trains
        self.source = RolloutSource(policy=model, tokenizer=tokenizer, task=task, held_out=held_out, recipe=recipe,
                                    world=world)
        self.reference = self.source.reference
        super().__init__(model, cfg, self.source, tokenizer=tokenizer, world=world, **kwargs)
        if self.reference is not None:
            self.reference.to(self.device)
        self._policy = PolicyLoss(loss=torch.zeros(()), clip_fraction=0.0)

    def memory_advice(self, fits: int) -> str:
        return group_size_advice(self.recipe.prompts // self.world.size, fits)

    def batch_weight(self, batch: tuple) -> torch.Tensor:
        return batch[1].sum()  # completion tokens: the loss is their mean

    def batch_loss(self, batch: tuple) -> torch.Tensor:
        sequences, mask, advantages, old, ref = batch
        logp = token_logprobs(self.train_model, sequences)
        self._policy = clipped_policy_loss(logp, old, advantages, mask, self.recipe.clip_eps)
        if ref is not None:  # the KL penalty, whose reference exists only when kl_coef > 0
            kl = kl_estimate(logp, ref, mask)
            self._policy = PolicyLoss(self._policy.loss + self.recipe.kl_coef * kl, self._policy.clip_fraction,
                                      kl.item())
        return self._policy.loss

    def step_stats(self) -> dict[str, float]:
        """The last rollout's mean reward, shares correct and well-formed, and completion length, over every rank's
        completions; the last update's clip fraction and KL estimate per completion token."""
        reward, correct, formed, tokens, n = self._sum(self.source.totals)
        if not n:  # no rollout sampled by this source yet (a batch handed to it)
            return {}
        clip, kl = self._sum([self._policy.clip_fraction * self.source.totals[3], self._policy.kl
                              * self.source.totals[3]])
        return {"reward": reward / n, "correct": correct / n, "well_formed": formed / n, "length": tokens / n,
                "clip_fraction": clip / tokens, "kl": kl / tokens}

    def evaluate(self) -> dict[str, float]:
        """The shares of the validation problems whose greedy completion passes (what best.pt follows) and ends well
        formed; every rank scores a share (under DDP every rank must call it)."""
        return greedy_pass_rate(self.model, self.tokenizer, self.task, self.held_out.validation, world=self.world,
                                batch_size=self.cfg.eval_batch_size)

    def _sum(self, values: list[float]) -> list[float]:
        """Sums over this trainer's world: a trainer of one process computes alone even where torch.distributed is
        initialised (the tests compare it with the ranks of a group)."""
        return all_reduce_sum(values, self.device) if self.world.distributed else list(values)

    def state_dict(self) -> dict[str, Any]:
        """The Trainer's state, with the task, the GRPO settings and the reference weights (a KL penalty's)."""
        state = super().state_dict()
        settings = {name: getattr(self.recipe, name) for name in recipe_fields(GRPORecipe)}
        state["grpo"] = {"task": self.task.name, "settings": settings,
                         "reference": self.reference.state_dict() if self.reference is not None else None}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the run `state` holds; its task must be this one."""
        saved = state.get("grpo", {}).get("task")
        if saved != self.task.name:
            raise TaskError(f"the saved run trained {saved!r}, not {self.task.name!r}: resume with its --task, or "
                            "start a new run (--overwrite or another --out)")
        super().load_state_dict(state)
        if self.reference is not None and state["grpo"]["reference"] is not None:
            self.reference.load_state_dict(state["grpo"]["reference"])


def group_size_advice(prompts: int, fits: int) -> str:
    """What to do when a GRPO step does not fit: a step trains on a rank's `prompts` times group_size completions, and
    `fits` completions fit, so the advice is the group size that fits."""
    group = fits // prompts
    if group >= 2:
        return f"use a group size of at most {group} (--set group_size={group})"
    return f"even groups of 2 do not fit {prompts} prompts per process: use a smaller model or more processes"


def check_rollout_memory(model, recipe: GRPORecipe, device: torch.device, world: World) -> None:
    """NotEnoughMemory, naming the group size that fits, if a GRPO step of `model` cannot fit on `device`: checked
    before anything is trained, the task-format model included."""
    prompts = recipe.prompts // world.size
    check_training_memory(model, prompts * recipe.group_size, device, resolve_dtype(device, recipe.train.dtype),
                          processes=world.size,
                          advice=functools.partial(group_size_advice, prompts))


def format_grpo_record(record: dict[str, Any], measure_name: str) -> str:
    """A train record as `step  40/1000 | reward 0.412 | correct 35.2% | well-formed 99.6% | length 3.1 | clip 0.004
    | 12s | ETA 4m10s`, an evaluation as the validation pass rate (the task's `measure_name`: "accuracy") and the best
    so far; anything else as tinylm.train prints it."""
    event = record.get("event")
    if event == "train":
        total = record["max_steps"]
        line = (f"step {record['step']:>{len(str(total))}}/{total} | reward {record['reward']:.3f} | correct "
                f"{100 * record['correct']:.1f}% | well-formed {100 * record['well_formed']:.1f}% | length "
                f"{record['length']:.1f} | clip {record['clip_fraction']:.3f}")
        if record.get("kl"):
            line += f" | KL {record['kl']:.4f}"
        return line + f" | {format_duration(record['elapsed'])} | ETA {format_duration(record['eta'])}"
    if event in ("eval", "final"):
        return (f" {event} step {record['step']} | validation {measure_name} {100 * record['pass_rate']:.1f}% "
                f"(well-formed {100 * record['well_formed']:.1f}%) | best {100 * record['best_pass_rate']:.1f}% at "
                f"step {record['best_step']}")
    return format_record(record)

