"""The training loop of pretraining and every post-training method: `Trainer.fit` steps until a budget ends.

A step draws `grad_accum_steps` micro-batches, weighs each one's mean loss by its share of the step's counted
targets (so the gradient is that of one big batch), clips the gradient norm and steps the optimizer at the
scheduled rate. A subclass with another objective overrides `batch_loss` and `batch_weight`; one with another
validation overrides `evaluate`. Around the steps: evaluations that keep `best.pt` and `last.pt`, samples, and one
JSON line per event in `metrics.jsonl`. Under torchrun the same loop runs on every rank, spread over them in the way
the config chooses (tinylm.train.parallel: DDP, ZeRO-1 or FSDP). CONTRIBUTING.md, "The training loop", gives the
reasons: the weights, what time counts, stops under DDP, resuming.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch

from ..config import GPTConfig, TrainConfig
from ..data.tokens import RandomWindowSampler
from ..distributed import World, all_reduce_sum, barrier, broadcast_from_main, current_world, gather_to_main
from ..errors import InputError, TinyLMError
from ..eval.loss import evaluate_loss_sum
from ..generate.stream import generate_text
from ..model.moe import end_of_step, read_expert_load
from ..runtime import autocast, needs_grad_scaler, peak_flops_per_s, resolve_device, resolve_dtype
from .checkpoint import CheckpointError, load_training_checkpoint, model_checkpoint, save_checkpoint
from .memory import check_training_memory
from .optim import learning_rate, set_learning_rate
from .parallel import Parallel
from .progress import SessionTiming
from .resumable import MetricsLog, interrupt_between_steps, restore_rng, rng_state


class TrainingDiverged(TinyLMError, RuntimeError):
    """The loss became NaN or infinite."""


RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl")  # everything a Trainer writes into its out_dir
FIRST_RECORD_SECONDS = 3.0  # wall seconds into a session after which its first train record (and plan) is due


@dataclass(frozen=True)
class StepResult:
    """What one optimizer step reports; every figure is summed or agreed over the ranks, so every rank sees the same."""

    lr: float
    loss: float  # the mean over every counted target of the step
    tokens: int  # the input positions the step trained on
    grad_norm: torch.Tensor | None  # before clipping, left on the device (None without clipping)
    stop_agreed: bool  # a Ctrl-C had been requested by then on some rank
    past_first_record_time: bool  # some rank was FIRST_RECORD_SECONDS into the session


@dataclass(frozen=True)
class Chooser:
    """What chooses best.pt instead of the validation loss: a figure, higher being better, that `measure(model)` gives
    at every evaluation (under DDP every rank calls it and gets the same value), such as a task's pass rate."""

    name: str
    measure: Callable[[torch.nn.Module], float]


class Trainer:
    """The loop. A subclass with another objective overrides `batch_loss` and `batch_weight`; with another validation,
    `evaluate` (its figures); `score` names the figure best.pt is chosen by and `higher_is_better` says which way is
    better (a loss: lower; GRPO's held-out pass rate: higher). A `chooser` replaces both for one trainer."""

    score = "val_loss"
    higher_is_better = False

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        train_data,
        val_tokens: np.ndarray | None = None,
        *,
        out_dir: str | Path | None = None,
        tokenizer=None,
        device: str | torch.device | None = None,
        callbacks: list[Callable[[dict[str, Any]], None]] | None = None,
        sample_prompt: str = "",
        world: World | None = None,
        evaluators: dict[str, Callable[[torch.nn.Module], dict[str, float]]] | None = None,
        chooser: Chooser | None = None,
    ):
        """train_data: a token array (batches are random windows of it) or a loader with
        next_batch(device), state_dict() and load_state_dict(), e.g. ShardedWindowLoader.
        val_tokens: what `evaluate` scores; a subclass that evaluates otherwise leaves it out.
        evaluators: extra figures at every evaluation, e.g. {"hellaswag": model -> {"acc_norm": ...}};
        their results join the eval record as "<name>_<key>".
        chooser: what chooses best.pt instead of `score` (its figure joins the eval record under its name).

        Long on purpose: it sets up, in order, everything a resumable run holds (device and dtype, the way it runs
        over the ranks, the batch source, optimizer, scaler, counters, metrics.jsonl) and checks the step fits in
        memory before the first one.
        """
        if val_tokens is None and type(self).evaluate is Trainer.evaluate:
            raise InputError("the Trainer validates on val_tokens: pass the validation split's tokens")
        self.cfg = cfg
        self.chooser = chooser
        if chooser is not None:
            self.score, self.higher_is_better = chooser.name, True
        self.saved_hooks: list[Callable[[str], None]] = []  # called with a file's name after rank 0 saved it
        # False until an evaluation saves last.pt: a Ctrl-C before then saves nothing (an --overwrite keeps the old run)
        self.saves_when_interrupted = True
        self.world = world or current_world()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, cfg.dtype)
        self.model = model.to(self.device)  # the module itself, never a wrapper (FSDP shards it in place)
        if cfg.activation_checkpointing:
            self._checkpoint_blocks(model)
        self.model_config: GPTConfig = model.config
        self.val_tokens = val_tokens
        self.grad_accum_steps = cfg.accumulation_steps(self.model_config.block_size, self.world.size)
        self._peak_flops = peak_flops_per_s(self.device, self.dtype)  # None where unknown: no MFU then
        if self._peak_flops is None and self.device.type == "cuda" and self.world.is_main:
            print(f"MFU not reported: no peak FLOP/s is listed for {torch.cuda.get_device_name(self.device)} in "
                  f"{str(self.dtype).removeprefix('torch.')} (tinylm.runtime.PEAK_TFLOPS)", flush=True)
        self._flops_per_token = self.model.flops_per_token()
        # FSDP only for pretraining: post-training samples and scores with self.model itself, which FSDP shards
        self.parallel = Parallel(self.model, cfg, self.world, self.device, self.dtype,
                                 pretraining=type(self) is Trainer)
        self.train_model = self.parallel.train_model  # what the forward pass runs: DDP's wrapper, compiled or not
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.tokenizer = tokenizer
        self.callbacks = list(callbacks or [])
        self.sample_prompt = sample_prompt
        self.evaluators = dict(evaluators or {})
        torch.manual_seed(cfg.seed + self.world.rank)  # dropout's randomness; the batch sampler has its own generator
        if hasattr(train_data, "next_batch"):
            self.sampler = train_data
        else:
            self.sampler = RandomWindowSampler(train_data, self.model_config.block_size, cfg.batch_size, cfg.seed,
                                               world=self.world,
                                               vocab_size=(tokenizer.vocab_size if tokenizer
                                                           else self.model_config.vocab_size))
        self.optimizer = self.parallel.optimizer()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=needs_grad_scaler(self.device, self.dtype))
        self.step = 0
        self.elapsed = 0.0  # seconds spent in optimizer steps (evaluations etc. excluded), summed over sessions
        self.best_score = -math.inf if self.higher_is_better else math.inf  # the best evaluation so far
        self.best_step: int | None = None  # the step best.pt holds (None: no evaluation yet)
        self.skipped_steps = 0  # fp16 steps the GradScaler skipped because gradients overflowed
        self._clipped = torch.zeros((), device=self.device)  # steps clipped since the last train record
        self._timing = self._new_session()  # fit() starts another
        self._metrics = MetricsLog(self.out_dir / "metrics.jsonl" if self.out_dir is not None and self.world.is_main
                                   else None)
        check_training_memory(self.model, cfg.batch_size, self.device, self.dtype,  # a message, not the OOM killer
                              processes=self.world.size, shares=self.parallel.shares, advice=self.memory_advice,
                              longest=getattr(train_data, "longest", None))

    @staticmethod
    def _checkpoint_blocks(model: torch.nn.Module) -> None:
        """Turn on the GPT's activation checkpointing (a post-training model wraps one)."""
        gpts = [module for module in model.modules() if hasattr(module, "activation_checkpointing")]
        if not gpts:
            raise InputError(f"activation_checkpointing: {type(model).__name__} has no blocks to checkpoint")
        for gpt in gpts:
            gpt.activation_checkpointing = True

    memory_advice = None  # what a subclass says when a step does not fit, given the largest batch that does

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train until max_steps or max_seconds of training (or `stop_after` more steps), then evaluate.

        Returns the final record, which holds the figures of `evaluate`. `stop_after` ends this call early without
        changing the schedule, which is how a run is split into sessions.
        """
        stop_step = self.cfg.max_steps if stop_after is None else min(self.cfg.max_steps, self.step + stop_after)
        self.model.train()
        self._timing = self._new_session()
        self._clipped.zero_()
        mid_step = agreed_stop = stopping = False
        try:
            with interrupt_between_steps() as interrupt:
                while self.step < stop_step and not self._out_of_time():
                    # Under DDP only the stop request all ranks saw in the last step's reduction counts,
                    # so that every rank stops after the same step; alone, a Ctrl-C counts at once.
                    if agreed_stop or (interrupt.requested and not self.world.distributed):
                        stopping = True
                        raise KeyboardInterrupt
                    mid_step = True
                    step_start = time.perf_counter()
                    result = self._optimizer_step(interrupt)
                    agreed_stop = result.stop_agreed
                    mid_step = False
                    self._count_training_time(time.perf_counter() - step_start, result.tokens)
                    self._after_step(result, stop_step)
        except KeyboardInterrupt:
            # A state between steps resumes exactly; a half-done step is not saved. Under DDP saving is a
            # collective (it gathers every rank's RNG state), so only the agreed stop, which every rank raises
            # at the same point, saves: a Ctrl-C that raised on one rank alone (the second, "stop at once")
            # leaves without, keeping the last checkpoint, rather than wait for ranks that never join.
            saving = self.saves_when_interrupted and (stopping or (not mid_step and not self.world.distributed))
            if saving:
                self.save("last.pt")
            if stopping:  # no rank exits (torchrun then stops the others) before rank 0 has saved
                barrier()
            saved = self.out_dir / "last.pt" if self.out_dir and saving else None
            self._emit({"event": "interrupted", "step": self.step, "checkpoint": str(saved) if saved else None})
            raise
        return self.evaluate_and_save(final=True)

    def _new_session(self) -> SessionTiming:
        return SessionTiming(time.perf_counter(), self.elapsed, self.cfg.max_steps, self.cfg.max_seconds)

    def _optimizer_step(self, interrupt: SimpleNamespace | None = None) -> StepResult:
        """One step at the scheduled rate over grad_accum_steps micro-batches. The step's one reduction over the ranks
        also carries whether `interrupt.requested` is set on some rank (so that every rank stops after the same step)
        and whether some rank is FIRST_RECORD_SECONDS into the session."""
        lr = learning_rate(self.step, self.cfg, self._time_fraction())
        set_learning_rate(self.optimizer, lr)  # Muon's groups at their own multiple of it
        loss, tokens = self._accumulate_gradients()
        # One host sync per step; under DDP the sum over ranks (each rank's share of the token mean), so every rank
        # sees the same loss and a divergence stops all of them together instead of leaving the others waiting.
        # A stop request rides along for the same reason, and so does whether the session's first train record is
        # due by the wall clock: each rank's clock started at its own moment, and a record whose step_stats reduce
        # over ranks (GRPO's) must be made by every rank at the same step.
        stop_requested = float(interrupt is not None and interrupt.requested)
        past_first = float(time.perf_counter() - self._timing.started >= FIRST_RECORD_SECONDS)
        loss, stops, tokens, pasts = all_reduce_sum([loss.item(), stop_requested, tokens, past_first], self.device)
        if not math.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            raise self._diverged(f"the loss became {loss} at step {self.step} (learning rate {lr:.2e})")
        grad_norm = self._apply_gradients()
        self.step += 1
        return StepResult(lr=lr, loss=loss, tokens=int(tokens), grad_norm=grad_norm, stop_agreed=stops > 0,
                          past_first_record_time=pasts > 0)

    def _accumulate_gradients(self) -> tuple[torch.Tensor, int]:
        """Backpropagate the step's micro-batches, each weighed by its share of the counted targets of the whole step
        (every rank's); returns this rank's share of the step's mean loss, on the device, and the input positions it
        trained on."""
        total, positions = torch.zeros((), device=self.device), 0
        batches = [self.sampler.next_batch(self.device) for _ in range(self.grad_accum_steps)]
        counts = [self.batch_weight(batch) for batch in batches]  # stays on the device: no host sync
        step_count = torch.stack(counts).sum()
        if self.world.distributed:
            torch.distributed.all_reduce(step_count)  # the counted targets of the whole step, every rank's
        for micro_step, (batch, count) in enumerate(zip(batches, counts)):
            positions += batch[0].numel()  # a chat batch is as wide as its longest conversation, not the context
            # DDP averages gradients across ranks during backward; doing it once, on the last micro-step, is enough.
            last = micro_step == self.grad_accum_steps - 1
            with self.parallel.gradient_sync(last):
                with autocast(self.device, self.dtype):
                    loss = self.batch_loss(batch)
                # loss x count is this micro-batch's sum; x world size undoes every way's average over ranks
                self.scaler.scale(loss * (count * self.world.size / step_count)).backward()
            total += loss.detach() * count
        return total / step_count, positions

    def _apply_gradients(self) -> torch.Tensor | None:
        """Clip, step the optimizer (unless fp16 gradients overflowed) and zero the gradients; returns the gradient
        norm before clipping, on the device (None without clipping)."""
        scale_before = self.scaler.get_scale()
        grad_norm = self.parallel.step(self.optimizer, self.scaler)  # the scaler skips it if fp16 gradients overflowed
        self.scaler.update()
        if self.scaler.is_enabled() and self.scaler.get_scale() < scale_before:
            self.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        end_of_step(self.model)  # mixture of experts: sum the step's expert load over ranks, move loss-free biases
        return grad_norm

    def batch_weight(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """What a micro-batch counts, on the device: its targets that are not -1. A subclass whose loss is a mean over
        something else (DPO: preference pairs) counts that instead, and the step weighs its micro-batches by it."""
        return (batch[1] != -1).sum()

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """A micro-batch's loss, the mean over what `batch_weight` counts; called under autocast."""
        x, y = batch
        return self.train_model(x, y)[1]

    def _after_step(self, result: StepResult, stop_step: int) -> None:
        """Logging, evaluation and samples at their intervals."""
        cfg = self.cfg
        if result.grad_norm is not None:
            self._clipped += result.grad_norm > cfg.grad_clip  # on the device: read at the next train record
        # The session's first record comes early on a slow run: once a step has reached its reduction
        # FIRST_RECORD_SECONDS into the session, with a step to plan by after the first; every rank decides alike.
        first_due = self._timing.before_first_record and self._timing.steps >= 2 and result.past_first_record_time
        if self.step % cfg.log_interval == 0 or self.step == stop_step or self._out_of_time() or first_due:
            self._log_training(result)
        if cfg.eval_interval and self.step % cfg.eval_interval == 0 and self.step < cfg.max_steps:
            self.evaluate_and_save()
        if cfg.sample_interval and self.step % cfg.sample_interval == 0:
            self._emit({"event": "sample", "step": self.step, "text": self.sample(cfg.sample_tokens)})

    def _log_training(self, result: StepResult) -> None:
        """A train record over the steps since the last one (their training time only), after a plan at the first."""
        timing = self._timing
        eta = timing.eta(time.perf_counter(), self.step, self.elapsed)
        if timing.before_first_record:  # the session's first record: say how long the whole run takes
            self._emit(timing.plan(self.step, self.elapsed))
        record = {"event": "train", "step": self.step, "max_steps": self.cfg.max_steps, "loss": result.loss,
                  "lr": result.lr, "tokens_per_s": timing.tokens_per_s, "step_seconds": timing.seconds_per_step,
                  "elapsed": self.elapsed, "eta": eta, "skipped_steps": self.skipped_steps}
        if result.grad_norm is not None:
            record["grad_norm"] = result.grad_norm.item()
            record["clipped"] = self._clipped.item() / timing.window_steps
            self._clipped.zero_()
        if self._peak_flops is not None:  # model FLOPs utilisation: achieved training FLOP/s over the hardware's peak
            record["mfu"] = self._flops_per_token * timing.tokens_per_s / (self._peak_flops * self.world.size)
        record.update(read_expert_load(self.model) or {})  # MoE: each expert's load since the last log
        record.update(self.step_stats())
        self._emit(record)
        timing.new_window()

    def step_stats(self) -> dict[str, Any]:
        """What a subclass adds to each train record (every rank calls it, at the same steps); nothing here."""
        return {}

    def _count_training_time(self, seconds: float, tokens: int) -> None:
        """Add one optimizer step's duration to the clock; under DDP with a time budget rank 0's clock is everyone's,
        so that the time-based schedule and the decision to stop agree."""
        self._timing.count_step(seconds, tokens)
        self.elapsed += seconds
        if self.world.distributed and self.cfg.max_seconds is not None:
            self.elapsed = broadcast_from_main(self.elapsed, self.device)

    def _time_fraction(self) -> float:
        return self.elapsed / self.cfg.max_seconds if self.cfg.max_seconds else 0.0

    def _out_of_time(self) -> bool:
        return self.cfg.max_seconds is not None and self.elapsed >= self.cfg.max_seconds

    def _diverged(self, what: str) -> TrainingDiverged:
        kept = f" in {self.out_dir}" if self.out_dir else ""
        return TrainingDiverged(f"{what}. The last good checkpoint is kept{kept}; resume from it with a lower "
                                "learning_rate, a longer warmup, or dtype float32.")

    # -- evaluation, samples, logging -------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """The evaluation's figures, `score` among them: here the loss over the whole validation split. Under DDP
        each rank scores a share, the sums are added, and every rank must call it."""
        model = self.parallel.whole_model(self.step)  # under FSDP a plain copy (every rank must call it)
        total, count = evaluate_loss_sum(model, self.val_tokens, self.model_config.block_size, self.cfg.eval_batch_size,
                                         self.device, autocast(self.device, self.dtype), self.tokenizer,
                                         rank=self.world.rank, world_size=self.world.size)
        total, count = all_reduce_sum([total, count], self.device)
        return {"val_loss": total / count}

    def evaluate_and_save(self, final: bool = False, save_last: bool = True) -> dict[str, Any]:
        """Evaluate; save best.pt if the score is the best so far, and last.pt (unless `save_last` is False: an
        evaluation before training, which must not count as the run's own checkpoint); emit the eval (or final)
        record, with the figures of `evaluators` too."""
        figures, model = self.evaluate(), self.parallel.whole_model(self.step)
        if self.chooser is not None:
            figures[self.chooser.name] = self.chooser.measure(model)
        value = figures[self.score]
        if not math.isfinite(value):  # never save weights that score NaN/inf over last.pt
            raise self._diverged(f"the validation {self.score} became {value} at step {self.step}")
        if self.best_step is None or (value > self.best_score if self.higher_is_better else value < self.best_score):
            self.best_score, self.best_step = value, self.step
            self.save("best.pt")
        if save_last:
            self.save("last.pt")
            self.saves_when_interrupted = True
        record = {"event": "final" if final else "eval", "step": self.step, **figures,
                  f"best_{self.score}": self.best_score, "best_step": self.best_step, "elapsed": self.elapsed}
        for name, evaluate in self.evaluators.items():
            record.update({f"{name}_{key}": value for key, value in evaluate(model).items()})
        self._emit(record)
        return record

    def sample(self, max_new_tokens: int = 200, **sampling) -> str:
        if self.tokenizer is None:
            raise InputError("this Trainer has no tokenizer, so it cannot turn samples into text")
        return generate_text(self.parallel.whole_model(self.step), self.tokenizer, self.sample_prompt, max_new_tokens,
                             seed=self.cfg.seed, **sampling)

    def _emit(self, record: dict[str, Any]) -> None:
        if not self.world.is_main:
            return
        self._metrics.write(record)
        for callback in self.callbacks:
            callback(record)

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The run's state; under torchrun every rank must call it (it gathers each rank's RNG state, and the shards
        of a sharded run), rank 0 gets it all, in the format of a plain model's."""
        return model_checkpoint(
            self.parallel.whole_model(self.step), self.tokenizer,
            train_config=self.cfg.to_dict(),
            optimizer=self.parallel.optimizer_state(self.optimizer),
            scaler=self.scaler.state_dict(),
            step=self.step,
            elapsed=self.elapsed,
            score=self.score,
            **{f"best_{self.score}": self.best_score},
            best_step=self.best_step,
            skipped_steps=self.skipped_steps,
            sampler=self.sampler.state_dict(),
            rng=gather_to_main(rng_state(self.device)),  # one state per rank
        )

    def save(self, name: str) -> None:
        if self.out_dir is None:
            return
        state = self.state_dict()  # on every rank: the RNG states are gathered
        if self.world.is_main:
            save_checkpoint(self.out_dir / name, state)
            for hook in self.saved_hooks:
                hook(name)

    def write_into(self, folder: Path) -> None:
        """Write checkpoints and metrics.jsonl into `folder` from now on (a staged --overwrite's swap)."""
        self.out_dir = folder
        if self._metrics.path is not None:
            self._metrics.path = folder / "metrics.jsonl"

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_config = GPTConfig.from_dict(state["model_config"])
        if saved_config != self.model_config:
            raise InputError(f"the checkpoint's model config {saved_config} differs from this run's "
                             f"{self.model_config}; resume with the same preset")
        saved_score, saved_optimizer = state.get("score", "val_loss"), state["train_config"].get("optimizer", "adamw")
        if saved_score != self.score:
            raise CheckpointError(f"the checkpoint's run was chosen by {saved_score}, this one by {self.score}: it is "
                                  "another kind of run; resume it with the command that started it")
        if saved_optimizer != self.cfg.optimizer:
            raise InputError(f"the run was trained with {saved_optimizer}, whose state cannot continue as "
                             f"{self.cfg.optimizer}'s: resume it with --set optimizer={saved_optimizer} (or without "
                             "--set optimizer), or start a new run in another --out folder")
        self.parallel.load_weights(state["model"])
        self.parallel.load_optimizer_state(self.optimizer, state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.best_score, self.skipped_steps = state[f"best_{self.score}"], state["skipped_steps"]
        self.best_step = state.get("best_step")
        self.sampler.load_state_dict(state["sampler"])
        # Checkpoints written before per-rank states hold rank 0's CPU state alone.
        saved_rng = state["rng"] if isinstance(state["rng"], list) else [{"torch": state["rng"]["torch"]}]
        restore_rng(saved_rng, self.world.rank, self.cfg.seed, self.device)
        self._metrics.resume_at(self.step)
        if len(saved_rng) != self.world.size and self.world.is_main:
            print(self._resized(TrainConfig.from_dict(state["train_config"]), len(saved_rng)), flush=True)

    def _resized(self, saved: TrainConfig, saved_ranks: int) -> str:
        """What changes when a run resumes on another number of processes, in words: the sequences a step trains on,
        and for a model with dropout, which ranks' streams (seed + rank) start or end."""
        ranks, block = self.world.size, self.model_config.block_size
        before = saved.batch_size * saved.accumulation_steps(block, saved_ranks) * saved_ranks
        now = self.cfg.batch_size * self.grad_accum_steps * ranks
        line = f"resuming a {saved_ranks}-process run in {ranks} process{'es' if ranks > 1 else ''}: "
        if now == before:
            line += f"a step still trains on {now} sequences of {block} tokens"
        else:
            line += (f"a step now trains on {self.cfg.batch_size} x {self.grad_accum_steps} x {ranks} = {now} "
                     f"sequences of {block} tokens where it trained on {before} ({now / before:.3g} times the tokens; "
                     f"the steps and the learning-rate schedule stay; torchrun --nproc_per_node={saved_ranks} keeps "
                     "the step as it was)")
        if self.model_config.dropout > 0:
            line += "; " + (f"ranks {saved_ranks}..{ranks - 1} start new dropout streams (seed + rank)"
                            if ranks > saved_ranks else f"the dropout streams of ranks {ranks}..{saved_ranks - 1} end")
        return line

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint file (or a run folder's last.pt)."""
        path = Path(path)
        self.load_state_dict(load_training_checkpoint(path / "last.pt" if path.is_dir() else path))

