"""The GRPO training loop: sample, score, compare within groups, and push the policy with the clipped objective.

One step: draw `prompts` fresh training problems (never a held-out one); sample `group_size` completions of each
with the KV cache (tinylm.posttrain.rollout); reward them with the task's program; turn rewards into group advantages;
record the sampling policy's log-probabilities (π_old) and, with a KL penalty, the frozen starting model's
(π_ref); then make `updates` AdamW steps on the clipped objective (tinylm.posttrain.grpo), each with the gradient's norm
clipped. Every `eval_interval` steps the greedy accuracy on the fixed held-out problems is measured; best.pt
keeps the most accurate policy so far (step 0, the starting model, included), last.pt the latest.

Under torchrun every rank draws the same problems from the same stream and samples its own share of the
prompts (its own sampling seed); gradients are averaged by DDP, each rank's loss weighted by its share of
the step's completion tokens, so the update is that of the mean over every completion token of the global
batch, as one process computes it (tests/test_rl_train.py checks this against one process). Held-out problems
are scored in shares too and the counts summed.

Everything a run depends on goes into last.pt: weights, the optimizer's moments, the step, training time, the
problem stream's generator, the RNG states and the measurement before training (and the reference weights when
a KL penalty needs them); sampling seeds derive from the step, so a resumed run samples what the interrupted one
would have. Records (one JSON line each in metrics.jsonl) carry the mean reward, the share of correct and of
well-formed completions, the mean completion length, the clip fraction, the KL estimate, and the held-out
accuracy at evaluations. Time counts sampling and updates only (`elapsed`, which max_seconds bounds), not
evaluations or checkpoints.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from ..distributed import World, all_reduce_sum, broadcast_from_main, current_world, gather_to_main
from ..train.checkpoint import model_checkpoint, save_checkpoint
from ..train.progress import format_duration, format_record, remaining_seconds
from ..train.resumable import MetricsLog, interrupt_between_steps, restore_rng, rng_state
from ..train.trainer import TrainingDiverged
from .grpo import clipped_policy_loss, group_advantages, token_logprobs
from .grpo_recipes import RLRecipe
from .rollout import Rollout, held_out_accuracy, sample_groups
from .tasks import FormatOnly, Problem, ProblemStream, TaskError

RL_RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl", "rl_eval.json")  # what an RL run writes into its folder


class GRPOTrainer:
    """GRPO on `task` from `model` (the policy; trained in place). `held_out`: the fixed evaluation problems."""

    def __init__(self, model, tokenizer, task, recipe: RLRecipe, held_out: list[Problem], max_new_tokens: int, *,
                 device: torch.device | str = "cpu", world: World | None = None, out_dir: str | Path | None = None,
                 callbacks: list[Callable[[dict], None]] | None = None):
        self.world = world or current_world()
        if recipe.prompts % self.world.size:
            raise TaskError(f"{recipe.prompts} prompts per step cannot be shared by {self.world.size} processes: "
                            "use a number of processes that divides it")
        self.recipe, self.task, self.tokenizer = recipe, task, tokenizer
        self.reward_task = FormatOnly(task) if recipe.reward == "format" else task
        self.held_out, self.max_new_tokens = held_out, max_new_tokens
        self.device = torch.device(device)
        self.model = model.to(self.device).train()
        self.reference = None
        if recipe.kl_coef > 0:  # the starting policy, frozen
            self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.train_model = self.model
        if self.world.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=recipe.learning_rate, weight_decay=0.0)
        self.stream = ProblemStream(task, held_out, seed=recipe.seed)
        torch.manual_seed(recipe.seed + self.world.rank)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = list(callbacks or [])
        self.step, self.elapsed = 0, 0.0
        self.best_accuracy, self.best_step = 0.0, None  # None: no evaluation yet
        self.before: dict[str, float] | None = None  # the held-out measurement at step 0
        self._metrics = MetricsLog(self.out_dir / "metrics.jsonl" if self.out_dir is not None and self.world.is_main
                                   else None)

    # -- one step -------------------------------------------------------------------------------
    def rollout(self) -> Rollout:
        """This rank's share of the step's problems, each with a group of sampled completions."""
        problems = self.stream.take(self.recipe.prompts)
        share = self.recipe.prompts // self.world.size
        mine = problems[self.world.rank * share : (self.world.rank + 1) * share]
        seed = (self.recipe.seed * 1_000_003 + self.step) * 1024 + self.world.rank
        return sample_groups(self.model, self.tokenizer, self.reward_task, mine, self.recipe.group_size,
                             self.max_new_tokens, temperature=self.recipe.temperature, seed=seed)

    def update(self, rollout: Rollout) -> dict[str, float]:
        """`updates` optimizer steps of the clipped objective on `rollout` (this rank's share); returns the last
        update's loss, clip fraction and KL, each averaged over the global batch's completion tokens."""
        recipe = self.recipe
        advantages = group_advantages(rollout.rewards, scale=recipe.scale_advantages).flatten()
        sequences, mask = rollout.sequences, rollout.completion_mask
        with torch.no_grad():
            old = token_logprobs(self.model, sequences)
            ref = token_logprobs(self.reference, sequences) if self.reference is not None else None
        tokens = float(mask.sum())
        (total_tokens,) = self._sum([tokens])
        # DDP averages gradients over ranks; weighting each rank's token mean by its share of the tokens (x ranks)
        # makes that average the gradient of the mean over every completion token of the global batch.
        weight = tokens * self.world.size / total_tokens
        for _ in range(recipe.updates):
            result = clipped_policy_loss(token_logprobs(self.train_model, sequences), old, advantages, mask,
                                         recipe.clip_eps, ref, recipe.kl_coef)
            (result.loss * weight).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), recipe.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        loss, clip, kl = self._sum([result.loss.item() * tokens, result.clip_fraction * tokens, result.kl * tokens])
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the GRPO loss became {loss} at step {self.step}; the last good checkpoint is "
                                   f"kept: start again at a lower learning rate than {recipe.learning_rate:g}")
        return {"loss": loss / total_tokens, "clip_fraction": clip / total_tokens, "kl": kl / total_tokens}

    def train_step(self) -> dict[str, Any]:
        """Sample, score and update once; the step's record (rewards and lengths over every rank's completions)."""
        rollout = self.rollout()
        stats = self.update(rollout)
        completions = rollout.rewards.numel()
        reward, correct, formed, length, n = self._sum([
            rollout.rewards.sum().item(), rollout.correct.sum().item(), rollout.well_formed.sum().item(),
            rollout.completion_mask.sum().item(), completions])
        self.step += 1
        return {"event": "train", "step": self.step, "max_steps": self.recipe.max_steps, "reward": reward / n,
                "correct": correct / n, "well_formed": formed / n, "length": length / n, **stats}

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> None:
        """Train to max_steps or max_seconds of training, evaluating every eval_interval steps and at the end.
        The first Ctrl-C finishes the step under way, saves last.pt (alone; under DDP the last evaluation's last.pt
        stays, as saving gathers every rank) and re-raises; a second one stops at once (tinylm.train.resumable)."""
        recipe = self.recipe
        if self.best_step is None:
            self.evaluate_and_save()
        session_wall, session_elapsed, session_step = time.perf_counter(), self.elapsed, self.step
        window = (0.0, 0)
        between_steps = True
        try:
            with interrupt_between_steps() as interrupt:
                while self.step < recipe.max_steps and not self._out_of_time():
                    if interrupt.requested:
                        raise KeyboardInterrupt
                    between_steps, started = False, time.perf_counter()
                    record = self.train_step()
                    seconds = time.perf_counter() - started
                    between_steps = True
                    self.elapsed += seconds
                    if self.world.distributed and recipe.max_seconds is not None:  # one clock decides for every rank
                        self.elapsed = broadcast_from_main(self.elapsed, self.device)
                    window = (window[0] + seconds, window[1] + 1)
                    last = self.step == recipe.max_steps or self._out_of_time()
                    if self.step % recipe.log_interval == 0 or last:
                        per_step = window[0] / window[1]
                        overhead = max(0.0, time.perf_counter() - session_wall - (self.elapsed - session_elapsed))
                        record.update(elapsed=self.elapsed, step_seconds=per_step, eta=remaining_seconds(
                            self.step, recipe.max_steps, per_step, overhead / (self.step - session_step),
                            self.elapsed, recipe.max_seconds))
                        self._emit(record)
                        window = (0.0, 0)
                    if self.step % recipe.eval_interval == 0 or last:
                        self.evaluate_and_save()
        except KeyboardInterrupt:
            saving = between_steps and not self.world.distributed
            if saving:
                self.save("last.pt")
            saved = self.out_dir / "last.pt" if saving and self.out_dir else None
            self._emit({"event": "interrupted", "step": self.step, "checkpoint": str(saved) if saved else None})
            raise

    def _sum(self, values: list[float]) -> list[float]:
        """Sums over this trainer's world: a trainer of one process computes alone even where torch.distributed is
        initialised (the tests compare it with the ranks of a group)."""
        return all_reduce_sum(values, self.device) if self.world.distributed else list(values)

    def _out_of_time(self) -> bool:
        return self.recipe.max_seconds is not None and self.elapsed >= self.recipe.max_seconds

    def evaluate(self) -> tuple[float, float]:
        """(share correct, share well-formed) of greedy completions of the held-out problems, every rank's share."""
        mine = self.held_out[self.world.rank :: self.world.size]
        correct, formed = held_out_accuracy(self.model, self.tokenizer, self.task, mine, self.max_new_tokens) \
            if mine else (0.0, 0.0)
        correct, formed, n = self._sum([correct * len(mine), formed * len(mine), len(mine)])
        return correct / n, formed / n

    def evaluate_and_save(self) -> dict[str, Any]:
        accuracy, formed = self.evaluate()
        if self.before is None:
            self.before = {"accuracy": accuracy, "well_formed": formed}
        if self.best_step is None or accuracy > self.best_accuracy:
            self.best_accuracy, self.best_step = accuracy, self.step
            self.save("best.pt")
        self.save("last.pt")
        record = {"event": "eval", "step": self.step, "accuracy": accuracy, "well_formed": formed,
                  "best_accuracy": self.best_accuracy, "best_step": self.best_step, "elapsed": self.elapsed}
        self._emit(record)
        return record

    # -- records and checkpoints ------------------------------------------------------------------
    def _emit(self, record: dict[str, Any]) -> None:
        if not self.world.is_main:
            return
        self._metrics.write(record)
        for callback in self.callbacks:
            callback(record)

    def state_dict(self) -> dict[str, Any]:
        """The run's state (a training checkpoint `load_training_checkpoint` accepts); every rank must call it.
        best_val_loss holds the best held-out error rate (1 - accuracy), the checkpoint schema's "lower is better"."""
        return model_checkpoint(
            self.model, self.tokenizer, train_config={"task": self.task.name, **self.recipe.settings()},
            optimizer=self.optimizer.state_dict(), scaler={}, step=self.step, elapsed=self.elapsed,
            best_val_loss=1.0 - self.best_accuracy, skipped_steps=0, sampler=self.stream.state_dict(),
            rng=gather_to_main(rng_state(self.device)), best_step=self.best_step, before=self.before,
            reference=self.reference.state_dict() if self.reference is not None else None)

    def save(self, name: str) -> None:
        if self.out_dir is None:
            return
        state = self.state_dict()
        if self.world.is_main:
            save_checkpoint(self.out_dir / name, state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the run `state` holds (its task must be this one); metrics.jsonl keeps its records up to the
        saved step."""
        if state["train_config"].get("task") != self.task.name:
            raise TaskError(f"the saved run trained {state['train_config'].get('task')!r}, not {self.task.name!r}: "
                            "resume with its --task, or start a new run (--overwrite or another --out)")
        self.model.load_state_dict(state["model"])
        if self.reference is not None and state.get("reference") is not None:
            self.reference.load_state_dict(state["reference"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.best_accuracy, self.best_step = 1.0 - state["best_val_loss"], state["best_step"]
        self.before = state["before"]
        self.stream.load_state_dict(state["sampler"])
        restore_rng(state["rng"], self.world.rank, self.recipe.seed, self.device)
        self._metrics.resume_at(self.step)


def format_rl_record(record: dict[str, Any]) -> str:
    """A train record as `step  40/1000 | reward 0.412 | correct 35.2% | well-formed 99.6% | length 3.1 | clip 0.004
    | 12s | ETA 4m10s`, an evaluation as the held-out accuracy and the best so far; anything else as tinylm.train
    prints it."""
    event = record.get("event")
    if event == "train":
        total = record["max_steps"]
        line = (f"step {record['step']:>{len(str(total))}}/{total} | reward {record['reward']:.3f} | correct "
                f"{100 * record['correct']:.1f}% | well-formed {100 * record['well_formed']:.1f}% | length "
                f"{record['length']:.1f} | clip {record['clip_fraction']:.3f}")
        if record.get("kl"):
            line += f" | KL {record['kl']:.4f}"
        return line + f" | {format_duration(record['elapsed'])} | ETA {format_duration(record['eta'])}"
    if event == "eval":
        return (f" eval step {record['step']} | held-out accuracy {100 * record['accuracy']:.1f}% (well-formed "
                f"{100 * record['well_formed']:.1f}%) | best {100 * record['best_accuracy']:.1f}% at step "
                f"{record['best_step']}")
    return format_record(record)


def print_rl_record(record: dict[str, Any]) -> None:
    print(format_rl_record(record), flush=True)
