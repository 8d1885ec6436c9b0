"""The training loop every track shares.

One optimizer step: draw the step's `grad_accum_steps` micro-batches, count their counted targets (those
that are not -1), run each forward under autocast, weigh its mean loss by its share of the step's counted
targets so that the summed gradients are those of the mean over every counted target of the step (what one big
batch gives), backpropagate, clip the global gradient norm, and step the optimizer (AdamW, or Muon beside it) at
the scheduled rate.
Pretraining windows count every target, so each share is 1/grad_accum_steps; chat batches count only answer
tokens, which vary from batch to batch, and averaging their means with equal weights would give a short answer's
tokens more weight (notebook 3's `accumulate` exercise, notebook 9). Under DDP the count is summed across ranks:
one small all-reduce per step. The model's loss must therefore be the mean over targets that are not -1, as
`tinylm.model.losses.next_token_loss` is; a mixture of experts' balancing loss, added to it, is weighed the same.
A subclass with a loss of its own overrides `batch_loss` and `batch_weight` (what its mean is over: DPO's pairs).
Around that: periodic whole-split validation with `best.pt` and `last.pt` checkpoints, periodic text samples,
one JSON line per event in `metrics.jsonl`, and two budgets (steps and seconds of training). With clipping
on, each train record carries the logged step's gradient norm before clipping (`grad_norm`) and the
fraction of the steps since the previous record that clipping scaled down (`clipped`); both stay on the
device until the record is written, so they add no host sync per step. A mixture of
experts adds its balancing loss to the loss inside the model's forward; after each step the loop
calls `tinylm.model.moe.end_of_step` (load counts, loss-free biases), and each train record carries the
expert load since the previous one (`expert_load` per layer and its `max_violation`).

Time is counted for training only: `elapsed` (what max_seconds and the time-based schedule follow),
tokens/s and MFU sum the optimizer steps' durations and leave out evaluations, checkpoints, samples
and extra evaluators such as HellaSwag (`tinylm.train.progress.TRAINING_TIME` says so in one line, which every
figure that depends on it prints). Each train record carries the total number of steps and an
ETA (tinylm.train.progress); the first one of a session comes after a `plan` record saying how long the
run should take at the speed of the steps after the first (which also compiles and warms up). Records come every
`log_interval` steps and at the last step (of the steps or of the time budget), and the session's first one also after
the first step, from the second on, that reaches its gradient all-reduce `FIRST_RECORD_SECONDS` into the session (on
any rank: the step's reduction carries it, so that every rank makes the record at the same step), so that a slow run
shows its speed and its plan within seconds rather than after log_interval slow steps. Steps longer than that
(a big model on a CPU, or a first step that compiles) show it after the second step, the first that can be planned by.

Everything a run depends on — weights and buffers (the loss-free expert biases too), optimizer
moments, the GradScaler, the step, elapsed time, the batch sampler's generator and the RNG used by
dropout — goes into the checkpoint, so a resumed run continues exactly where the interrupted one
stopped. Ctrl-C finishes the step under way, saves `last.pt` and stops; a second Ctrl-C stops at once.
Under DDP a Ctrl-C that reaches one rank only (a signal to one pid) travels
to the others in the step loss's all-reduce, so every rank stops after the same step and they save together;
a second Ctrl-C stops its rank at once without saving, since saving is a collective the others would not join.

Under torchrun the same loop runs on every rank (see distributed.py): the model is wrapped in
DistributedDataParallel for training only, gradients are averaged on the last micro-step, the
step loss and validation sums are reduced across ranks, and rank 0 alone writes files. Every rank
draws its own dropout masks, so a checkpoint holds each rank's RNG state (CPU, and its own GPU's),
gathered to rank 0. Resumed by M processes, rank r continues rank r's stream where the saved run had
that rank; a rank it did not have starts a new one, seeded seed + rank as in a fresh run, and rank 0
says so. The batch sampler's state does not depend on the number of processes (tinylm.data.tokens, tinylm.data.fineweb).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..config import GPTConfig, TrainConfig
from ..data.tokens import RandomWindowSampler
from ..distributed import World, all_reduce_sum, barrier, broadcast_from_main, current_world, gather_to_main
from ..errors import InputError, TinyLMError
from ..eval.loss import evaluate_loss_sum
from ..generate.stream import generate_text
from ..model.moe import end_of_step, moe_layers, read_expert_load
from ..runtime import autocast, needs_grad_scaler, peak_flops_per_s, resolve_device, resolve_dtype
from .checkpoint import CheckpointError, load_training_checkpoint, model_checkpoint, save_checkpoint
from .memory import check_training_memory
from .optim import build_optimizer, learning_rate, set_learning_rate
from .progress import remaining_seconds, steps_left
from .resumable import MetricsLog, interrupt_between_steps, restore_rng, rng_state


class TrainingDiverged(TinyLMError, RuntimeError):
    """The loss became NaN or infinite."""


RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl")  # everything a Trainer writes into its out_dir
FIRST_RECORD_SECONDS = 3.0  # wall seconds into a session after which its first train record (and plan) is due


class Trainer:
    """The loop. A subclass with another objective overrides `batch_loss` and `batch_weight`; with another validation,
    `evaluate` (the score best.pt is chosen by) or `measure` (that score and others); `score` names the score and
    `higher_is_better` says which way is better (a loss: lower; GRPO's held-out accuracy: higher)."""

    score = "val_loss"
    higher_is_better = False

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        train_data,
        val_tokens: np.ndarray,
        out_dir: str | Path | None = None,
        tokenizer=None,
        device: str | torch.device | None = None,
        callbacks: list[Callable[[dict[str, Any]], None]] | None = None,
        sample_prompt: str = "",
        world: World | None = None,
        evaluators: dict[str, Callable[[torch.nn.Module], dict[str, float]]] | None = None,
    ):
        """train_data: a token array (batches are random windows of it) or a loader with
        next_batch(device), state_dict() and load_state_dict(), e.g. ShardedWindowLoader.
        evaluators: extra scores at every evaluation, e.g. {"hellaswag": model -> {"acc_norm": ...}};
        their results join the eval record as "<name>_<key>".

        Long on purpose: it sets up, in order, everything a resumable run holds (device and dtype, DDP, the batch
        source, optimizer, scaler, counters, metrics.jsonl) and checks the step fits in memory before the first one.
        """
        self.cfg = cfg
        self.world = world or current_world()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, cfg.dtype)
        self.model = model.to(self.device)  # the plain model: checkpoints, evaluation and generation use it
        self.model_config: GPTConfig = model.config
        self.val_tokens = val_tokens
        self.grad_accum_steps = cfg.accumulation_steps(self.model_config.block_size, self.world.size)
        self._peak_flops = peak_flops_per_s(self.device, self.dtype)  # None where unknown: no MFU then
        if self._peak_flops is None and self.device.type == "cuda" and self.world.is_main:
            print(f"MFU not reported: no peak FLOP/s is listed for {torch.cuda.get_device_name(self.device)} in "
                  f"{str(self.dtype).removeprefix('torch.')} (tinylm.runtime.PEAK_TFLOPS)", flush=True)
        self._flops_per_token = self.model.flops_per_token()
        self._ddp = None
        self.train_model = self.model
        if self.world.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # A routed expert that no token of a micro-batch chose gets no gradient; DDP must be told to expect that.
            self._ddp = self.train_model = DistributedDataParallel(self.model, device_ids=device_ids,
                                                                   find_unused_parameters=bool(moe_layers(self.model)))
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
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
                                               rank=self.world.rank, world_size=self.world.size,
                                               vocab_size=(tokenizer.vocab_size if tokenizer
                                                           else self.model_config.vocab_size))
        self.optimizer = build_optimizer(self.model, cfg, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=needs_grad_scaler(self.device, self.dtype))
        self.step = 0
        self.elapsed = 0.0  # seconds spent in optimizer steps (evaluations etc. excluded), summed over sessions
        self.best_score = -math.inf if self.higher_is_better else math.inf  # the best evaluation so far
        self.best_step: int | None = None  # the step best.pt holds (None: no evaluation yet)
        self.skipped_steps = 0  # fp16 steps the GradScaler skipped because gradients overflowed
        self._grad_norm = None  # the last step's norm before clipping, on the device (None without clipping)
        self._clipped = torch.zeros((), device=self.device)  # steps clipped since the last train record
        self._session = (time.perf_counter(), self.elapsed, self.step)  # wall clock, training time, step: fit() resets
        self._metrics = MetricsLog(self.out_dir / "metrics.jsonl" if self.out_dir is not None and self.world.is_main
                                   else None)
        check_training_memory(self.model, cfg.batch_size, self.device, self.dtype,  # a message, not the OOM killer
                              processes=self.world.size if self.device.type == "cpu" else 1,
                              advice=self.memory_advice)

    memory_advice = None  # what a subclass says when a step does not fit, given the largest batch that does

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train until max_steps or max_seconds of training (or `stop_after` more steps), then evaluate the whole
        validation split.

        Returns the final record, which holds `val_loss`. `stop_after` ends this call early without
        changing the schedule, which is how a run is split into sessions.
        """
        stop_step = self.cfg.max_steps if stop_after is None else min(self.cfg.max_steps, self.step + stop_after)
        self.model.train()
        self._session = (time.perf_counter(), self.elapsed, self.step)  # wall clock, training time, step at the start
        self._window = (0.0, 0, 0)  # training seconds, steps and tokens (all ranks) since the last train record
        self._first_step_seconds = 0.0  # the session's first step (see _log_training's plan)
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
                    lr, loss = self._optimizer_step(interrupt)
                    agreed_stop = self._stop_agreed
                    mid_step = False
                    self._count_training_time(time.perf_counter() - step_start)
                    self._after_step(lr, loss, stop_step)
        except KeyboardInterrupt:
            # A state between steps resumes exactly; a half-done step is not saved. Under DDP saving is a
            # collective (it gathers every rank's RNG state), so only the agreed stop, which every rank raises
            # at the same point, saves: a Ctrl-C that raised on one rank alone (the second, "stop at once")
            # leaves without, keeping the last checkpoint, rather than wait for ranks that never join.
            saving = stopping or (not mid_step and not self.world.distributed)
            if saving:
                self.save("last.pt")
            if stopping:  # no rank exits (torchrun then stops the others) before rank 0 has saved
                barrier()
            saved = self.out_dir / "last.pt" if self.out_dir and saving else None
            self._emit({"event": "interrupted", "step": self.step, "checkpoint": str(saved) if saved else None})
            raise
        return self.evaluate_and_save(final=True)

    def _optimizer_step(self, interrupt: SimpleNamespace | None = None) -> tuple[float, float]:
        """One step at the scheduled rate over grad_accum_steps micro-batches; returns (lr, the mean loss over every
        counted target of the step, all ranks').
        Sets self._stop_agreed: whether `interrupt.requested` was set by then on this rank or any other,
        self._past_first_record_time: whether this rank or any other is FIRST_RECORD_SECONDS into the session, and
        self._step_tokens: the input positions the step trained on, over all ranks."""
        cfg = self.cfg
        lr = learning_rate(self.step, cfg, self._time_fraction())
        set_learning_rate(self.optimizer, lr)  # Muon's groups at their own multiple of it
        total, positions = torch.zeros((), device=self.device), 0
        batches = [self.sampler.next_batch(self.device) for _ in range(self.grad_accum_steps)]
        counts = [self.batch_weight(batch) for batch in batches]  # stays on the device: no host sync
        step_count = torch.stack(counts).sum()
        if self._ddp is not None:
            torch.distributed.all_reduce(step_count)  # the counted targets of the whole step, every rank's
        for micro_step, (batch, count) in enumerate(zip(batches, counts)):
            positions += batch[0].numel()  # a chat batch is as wide as its longest conversation, not the context
            # DDP averages gradients across ranks during backward; doing it once, on the last micro-step, is enough.
            last = micro_step == self.grad_accum_steps - 1
            with contextlib.nullcontext() if (self._ddp is None or last) else self._ddp.no_sync():
                with autocast(self.device, self.dtype):
                    loss = self.batch_loss(batch)
                # loss x count is this micro-batch's sum; x world size undoes DDP's average over ranks
                self.scaler.scale(loss * (count * self.world.size / step_count)).backward()
            total += loss.detach() * count
        # One host sync per step; under DDP the sum over ranks (each rank's share of the token mean), so every rank
        # sees the same loss and a divergence stops all of them together instead of leaving the others waiting.
        # A stop request rides along for the same reason, and so does whether the session's first train record is
        # due by the wall clock: each rank's clock started at its own moment, and a record whose step_stats reduce
        # over ranks (GRPO's) must be made by every rank at the same step.
        stop_requested = float(interrupt is not None and interrupt.requested)
        past_first = float(time.perf_counter() - self._session[0] >= FIRST_RECORD_SECONDS)
        mean_loss, stops, self._step_tokens, pasts = all_reduce_sum([(total / step_count).item(), stop_requested,
                                                                     positions, past_first], self.device)
        self._stop_agreed, self._past_first_record_time = stops > 0, pasts > 0
        if not math.isfinite(mean_loss):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(
                f"the loss became {mean_loss} at step {self.step} (learning rate {lr:.2e}). "
                f"The last good checkpoint is kept{' in ' + str(self.out_dir) if self.out_dir else ''}; "
                "resume from it with a lower learning_rate, a longer warmup, or dtype float32."
            )
        if cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            self._grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self._clipped += self._grad_norm > cfg.grad_clip
        scale_before = self.scaler.get_scale()
        self.scaler.step(self.optimizer)  # skipped by the scaler if fp16 gradients overflowed
        self.scaler.update()
        if self.scaler.is_enabled() and self.scaler.get_scale() < scale_before:
            self.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        end_of_step(self.model)  # mixture of experts: sum the step's expert load over ranks, move loss-free biases
        self.step += 1
        return lr, mean_loss

    def batch_weight(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """What a micro-batch counts, on the device: its targets that are not -1. A subclass whose loss is a mean over
        something else (DPO: preference pairs) counts that instead, and the step weighs its micro-batches by it."""
        return (batch[1] != -1).sum()

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """A micro-batch's loss, the mean over what `batch_weight` counts; called under autocast."""
        x, y = batch
        return self.train_model(x, y)[1]

    def _after_step(self, lr: float, loss: float, stop_step: int) -> None:
        """Logging, evaluation and samples at their intervals."""
        cfg = self.cfg
        step_start = self._session[2]
        first_due = (self._window[1] == self.step - step_start >= 2  # no record yet this session, and a step to
                     and self._past_first_record_time)  # plan by after the first; every rank decides alike
        if self.step % cfg.log_interval == 0 or self.step == stop_step or self._out_of_time() or first_due:
            self._log_training(lr, loss)
        if cfg.eval_interval and self.step % cfg.eval_interval == 0 and self.step < cfg.max_steps:
            self.evaluate_and_save()
        if cfg.sample_interval and self.step % cfg.sample_interval == 0:
            self._emit({"event": "sample", "step": self.step, "text": self.sample(cfg.sample_tokens)})

    def _log_training(self, lr: float, loss: float) -> None:
        """A train record over the steps since the last one (their training time only), after a plan at the first."""
        cfg = self.cfg
        window_seconds, window_steps, window_tokens = self._window
        tokens_per_s = window_tokens / window_seconds
        seconds_per_step = window_seconds / window_steps
        wall_start, elapsed_start, step_start = self._session
        first_record = self.step - step_start == window_steps
        # What the steps to come will cost: the session's first step also compiles the model and warms the allocator
        # (on a GPU with --compile, many times a later step), so the estimates go by the steps after it where the
        # window has some; the record itself reports the window as measured.
        pace = ((window_seconds - self._first_step_seconds) / (window_steps - 1) if first_record and window_steps > 1
                else seconds_per_step)
        overhead = max(0.0, time.perf_counter() - wall_start - (self.elapsed - elapsed_start))  # evaluations etc.
        eta = remaining_seconds(self.step, cfg.max_steps, pace, overhead / (self.step - step_start), self.elapsed,
                                cfg.max_seconds)
        if first_record:  # the session's first record: say how long the whole run takes
            left = steps_left(self.step, cfg.max_steps, pace, self.elapsed, cfg.max_seconds)
            self._emit({"event": "plan", "step": self.step, "max_steps": cfg.max_steps, "max_seconds": cfg.max_seconds,
                        "step_seconds": pace, "expected_steps": self.step + left,
                        "expected_seconds": self.elapsed + left * pace})
        record = {"event": "train", "step": self.step, "max_steps": cfg.max_steps, "loss": loss, "lr": lr,
                  "tokens_per_s": tokens_per_s, "step_seconds": seconds_per_step, "elapsed": self.elapsed, "eta": eta,
                  "skipped_steps": self.skipped_steps}
        if self._grad_norm is not None:
            record["grad_norm"] = self._grad_norm.item()
            record["clipped"] = self._clipped.item() / window_steps
            self._clipped.zero_()
        if self._peak_flops is not None:  # model FLOPs utilisation: achieved training FLOP/s over the hardware's peak
            record["mfu"] = self._flops_per_token * tokens_per_s / (self._peak_flops * self.world.size)
        record.update(read_expert_load(self.model) or {})  # MoE: each expert's load since the last log
        record.update(self.step_stats())
        self._emit(record)
        self._window = (0.0, 0, 0)

    def step_stats(self) -> dict[str, Any]:
        """What a subclass adds to each train record (every rank calls it, at the same steps); nothing here."""
        return {}

    def _count_training_time(self, seconds: float) -> None:
        """Add one optimizer step's duration to the clock; under DDP with a time budget rank 0's clock is everyone's,
        so that the time-based schedule and the decision to stop agree."""
        window_seconds, window_steps, window_tokens = self._window
        if self.step - self._session[2] == 1:
            self._first_step_seconds = seconds
        self._window = (window_seconds + seconds, window_steps + 1, window_tokens + int(self._step_tokens))
        self.elapsed += seconds
        if self.world.distributed and self.cfg.max_seconds is not None:
            self.elapsed = broadcast_from_main(self.elapsed, self.device)

    def _time_fraction(self) -> float:
        return self.elapsed / self.cfg.max_seconds if self.cfg.max_seconds else 0.0

    def _out_of_time(self) -> bool:
        return self.cfg.max_seconds is not None and self.elapsed >= self.cfg.max_seconds

    # -- evaluation, samples, logging -------------------------------------------------------------
    def evaluate(self) -> float:
        """Validation loss over the whole split; under DDP each rank scores a share and the sums are added."""
        total, count = evaluate_loss_sum(self.model, self.val_tokens, self.model_config.block_size,
                                         self.cfg.eval_batch_size, self.device, autocast(self.device, self.dtype),
                                         self.tokenizer, rank=self.world.rank, world_size=self.world.size)
        total, count = all_reduce_sum([total, count], self.device)
        return total / count

    def measure(self) -> dict[str, float]:
        """The evaluation's figures, `score` among them; under DDP every rank must call it."""
        return {self.score: self.evaluate()}

    def evaluate_and_save(self, final: bool = False, save_last: bool = True) -> dict[str, Any]:
        """Measure; save best.pt if the score is the best so far, and last.pt (unless `save_last` is False: a
        measurement before training, which must not count as the run's own checkpoint); emit the eval (or final)
        record."""
        measured = self.measure()
        value = measured[self.score]
        if not math.isfinite(value):  # never save weights that score NaN/inf over last.pt
            raise TrainingDiverged(
                f"the validation {self.score} became {value} at step {self.step}. The last good checkpoint is kept"
                f"{' in ' + str(self.out_dir) if self.out_dir else ''}; resume from it with a lower "
                "learning_rate, a longer warmup, or dtype float32."
            )
        if self.best_step is None or (value > self.best_score if self.higher_is_better else value < self.best_score):
            self.best_score, self.best_step = value, self.step
            self.save("best.pt")
        if save_last:
            self.save("last.pt")
        record = {"event": "final" if final else "eval", "step": self.step, **measured,
                  f"best_{self.score}": self.best_score, "best_step": self.best_step, "elapsed": self.elapsed}
        for name, evaluate in self.evaluators.items():
            record.update({f"{name}_{key}": value for key, value in evaluate(self.model).items()})
        self._emit(record)
        return record

    def sample(self, max_new_tokens: int = 200, **sampling) -> str:
        if self.tokenizer is None:
            raise InputError("this Trainer has no tokenizer, so it cannot turn samples into text")
        return generate_text(self.model, self.tokenizer, self.sample_prompt, max_new_tokens, seed=self.cfg.seed,
                             **sampling)

    def _emit(self, record: dict[str, Any]) -> None:
        if not self.world.is_main:
            return
        self._metrics.write(record)
        for callback in self.callbacks:
            callback(record)

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The run's state; under DDP every rank must call it (it gathers each rank's RNG state), rank 0 gets it all."""
        return model_checkpoint(
            self.model, self.tokenizer,
            train_config=self.cfg.to_dict(),
            optimizer=self.optimizer.state_dict(),
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
                             f"{self.cfg.optimizer}'s: resume it with --optimizer {saved_optimizer} (or without "
                             "--optimizer), or start a new run in another --out folder")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.best_score, self.skipped_steps = state[f"best_{self.score}"], state["skipped_steps"]
        self.best_step = state.get("best_step")
        self.sampler.load_state_dict(state["sampler"])
        # Checkpoints written before per-rank states hold rank 0's CPU state alone.
        saved_rng = state["rng"] if isinstance(state["rng"], list) else [{"torch": state["rng"]["torch"]}]
        restore_rng(saved_rng, self.world.rank, self.cfg.seed, self.device)
        self._metrics.resume_at(self.step)
        saved_ranks, ranks = len(saved_rng), self.world.size
        if saved_ranks != ranks and self.world.is_main:
            print(f"resuming a {saved_ranks}-process run with {ranks}: " + (
                f"ranks {saved_ranks}..{ranks - 1} start new dropout streams (seed + rank)" if ranks > saved_ranks else
                f"the dropout streams of ranks {ranks}..{saved_ranks - 1} end here"), flush=True)

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint file (or a run folder's last.pt)."""
        path = Path(path)
        self.load_state_dict(load_training_checkpoint(path / "last.pt" if path.is_dir() else path))

