"""The model RL starts from: one that already writes the task's format, so that some sampled answers are right.

A policy gradient can only reinforce what the policy sometimes does. A randomly initialised model never writes
"57\\n" after "23+34=", so every reward is 0 and every advantage too. `--base pretrain` therefore first
fine-tunes a small GPT on the task's training problems with the loss on the answer only (prompt -> answer and
the newline that ends it; the prompt's targets are -1, which the loss ignores): supervised fine-tuning on the
format, which solves a minority of the held-out 2-digit problems and leaves the rest for RL.

The tokenizer is a `CharTokenizer` over the tasks' ALPHABET, saved in every checkpoint, so `load_model` (and
`python -m tinylm.sample`) read the result. The SFT runs through the Trainer (`TaskTrainer`: its validation is the
answer loss on the validation problems; no test problem is trained on or scored here) and the one run skeleton
(`TaskFormatTraining`), with checkpoints, resume and torchrun like every run. `--base RUN_DIR|CHECKPOINT` starts from
an existing run instead; its tokenizer must be able to write every character of the task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ...config import TrainConfig
from ...distributed import World, all_reduce_sum
from ...model.gpt import GPT
from ...paths import shown
from ...tokenizers.char import CharTokenizer
from ...train.checkpoint import CheckpointError, load_checkpoint, load_model
from ...train.options import RunOptions
from ...train.progress import print_record
from ...train.run import Finished, Job, Start, run_job
from ...train.trainer import Trainer
from .recipes import GRPORecipe
from .rollout import greedy_accuracy
from .tasks import ALPHABET, END, HeldOut, Problem, ProblemStream, TaskError


def task_tokenizer() -> CharTokenizer:
    """One id per character of ALPHABET: every prompt and every well-formed answer of both tasks."""
    return CharTokenizer(list(ALPHABET))


def answer_batch(tokenizer, problems: list[Problem]) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of prompt + answer + newline, right-padded: targets are the answer's ids and the newline, -1 elsewhere
    (prompt, padding)."""
    rows = [(tokenizer.encode(p.prompt), tokenizer.encode(p.answer + END)) for p in problems]
    width = max(len(prompt) + len(answer) for prompt, answer in rows) - 1
    x = torch.zeros(len(rows), width, dtype=torch.long)
    y = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, (prompt, answer) in enumerate(rows):
        ids = torch.tensor(prompt + answer)
        x[i, : len(ids) - 1] = ids[:-1]
        y[i, len(prompt) - 1 : len(ids) - 1] = ids[len(prompt):]
    return x, y


class ProblemLoader:
    """The Trainer's batches: fresh training problems each step, never a held-out one. Every rank draws the whole
    global batch from the same stream and keeps its slice, so the stream's state is the same on every rank."""

    def __init__(self, stream: ProblemStream, tokenizer, batch_size: int, rank: int = 0, world_size: int = 1):
        self.stream, self.tokenizer = stream, tokenizer
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def next_batch(self, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        problems = self.stream.take(self.batch_size * self.world_size)
        mine = problems[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return tuple(t.to(device) for t in answer_batch(self.tokenizer, mine))

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


class TaskTrainer(Trainer):
    """The Trainer validating on the validation problems' answer tokens (leave val_tokens out); each evaluation also
    records their greedy accuracy (`task_accuracy`)."""

    def __init__(self, *args, task, val_problems: list[Problem], max_new_tokens: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.task, self.val_problems = task, val_problems
        self.evaluators["task"] = lambda model: {"accuracy": greedy_accuracy(
            model, self.tokenizer, task, val_problems, max_new_tokens)[0]}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        mine, size = self.val_problems[self.world.rank :: self.world.size], self.cfg.eval_batch_size
        for start in range(0, len(mine), size):
            x, y = (t.to(self.device) for t in answer_batch(self.tokenizer, mine[start : start + size]))
            logits, _ = self.model(x)
            total += F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-1, reduction="sum").item()
            count += int((y != -1).sum())
        self.model.train(was_training)
        total, count = all_reduce_sum([total, count], self.device)
        return {"val_loss": total / count}


class TaskFormatTraining(Job):
    """The answer-only SFT of the task-format model, as a run of the one skeleton (folder lock, resume, settings)."""

    command = "grpo (task-format model)"

    def __init__(self, run: RunOptions, recipe: GRPORecipe, task, held_out: HeldOut, max_new_tokens: int,
                 on_record: Callable[[dict], None]):
        super().__init__(run)
        self.recipe, self.task, self.held_out, self.max_new_tokens = recipe, task, held_out, max_new_tokens
        self.on_record = on_record

    def model(self, start: Start) -> tuple[GPT, CharTokenizer, TrainConfig]:
        cfg, tokenizer = self.recipe.base_train, task_tokenizer()
        torch.manual_seed(cfg.seed)
        return GPT(self.recipe.base_shape.config(tokenizer.vocab_size)), tokenizer, cfg

    def trainer(self, model: GPT, tokenizer, cfg: TrainConfig, start: Start) -> TaskTrainer:
        loader = ProblemLoader(ProblemStream(self.task, self.held_out.problems, seed=cfg.seed), tokenizer,
                               cfg.batch_size, start.world.rank, start.world.size)
        return TaskTrainer(model, cfg, loader, out_dir=self.run.out, tokenizer=tokenizer, device=start.device,
                           callbacks=[self.on_record], world=start.world, task=self.task,
                           val_problems=self.held_out.validation, max_new_tokens=self.max_new_tokens)

    def header(self, trainer: TaskTrainer, start: Start) -> str:
        cfg = trainer.cfg
        return (f"task-format model: answer-only SFT of a {trainer.model.num_parameters():,}-parameter GPT on "
                f"{self.task.name} problems, {cfg.max_steps} steps of {cfg.batch_size} x {start.world.size} -> "
                f"{shown(self.run.out)}")

    def epilogue(self, finished: Finished) -> str:
        final = finished.final
        return (f"task-format model: validation answer loss {final['val_loss']:.4f}, greedy accuracy "
                f"{100 * final['task_accuracy']:.1f}% after {final['step']} steps ({final['elapsed']:.0f} s)")


def pretrain_task_base(recipe: GRPORecipe, task, held_out: HeldOut, max_new_tokens: int, out: Path,
                       device=None, world: World | None = None, say=print, on_record=print_record) -> Path:
    """SFT (or finish, or reuse) the task-format model in `out`, never on a `held_out` problem; returns its last.pt.
    A finished run is reused as it is and an interrupted one resumed, so a second RL run on the same task and profile
    starts at once."""
    checkpoint = out / "last.pt"
    saved = load_checkpoint(checkpoint) if checkpoint.is_file() else None
    if saved is not None and saved["step"] >= recipe.base_train.max_steps:
        say(f"task-format model: {shown(checkpoint)} (trained earlier, {saved['step']} steps)")
        return checkpoint
    run = RunOptions(out=out, resume=saved is not None, device=None if device is None else str(device))
    run_job(TaskFormatTraining(run, recipe, task, held_out, max_new_tokens, on_record), world=world, say=say)
    return checkpoint


def check_tokenizer(tokenizer, task_name: str, where: str) -> None:
    """A TaskError unless `tokenizer` encodes every character of the tasks' ALPHABET and back, with the newline
    that ends an answer as one token (it is the stop token of sampling)."""
    if tokenizer is None:
        raise TaskError(f"{where} carries no tokenizer, so it cannot write {task_name} problems; use --base pretrain")
    try:
        round_trip = tokenizer.decode(tokenizer.encode(ALPHABET)) == ALPHABET
        newline = len(tokenizer.encode(END)) == 1
    except ValueError:  # a character tokenizer that never saw digits or operators
        round_trip = newline = False
    if not (round_trip and newline):
        raise TaskError(f"the tokenizer of {where} cannot write {task_name} problems (it must encode each of "
                        f"{ALPHABET!r}, the newline as one token); use --base pretrain")


def check_base_path(base: str) -> None:
    """A CheckpointError for a --base that is neither `pretrain` nor an existing path (checked before the run
    folder is claimed, so that a typo creates nothing)."""
    if base != "pretrain" and not Path(base).exists():
        raise CheckpointError(f"--base {base}: no such run folder or checkpoint; give one, or --base pretrain")


def load_base(base: str, recipe: GRPORecipe, profile: str, task, held_out: HeldOut, max_new_tokens: int,
              out: Path, device=None, world: World | None = None, say=print, on_record=print_record):
    """(model, tokenizer, description) of --base: `pretrain` (the task-format model, in OUT/base-<task>-<profile>),
    or a run folder or checkpoint whose tokenizer can write the task.

    Its arguments are what training the task-format model needs when --base is `pretrain`.
    """
    if base == "pretrain":
        checkpoint = pretrain_task_base(recipe, task, held_out, max_new_tokens, out / f"base-{task.name}-{profile}",
                                        device, world, say, on_record)
        model, tokenizer, _ = load_model(checkpoint)
        return model, tokenizer, f"task-format model trained in {shown(checkpoint.parent)}"
    check_base_path(base)
    model, tokenizer, _ = load_model(base)
    check_tokenizer(tokenizer, task.name, shown(base))
    longest = max(len(tokenizer.encode(p.prompt)) for p in held_out.problems) + max_new_tokens
    if longest > model.config.block_size:
        raise TaskError(f"{shown(base)} has a context of {model.config.block_size} tokens; {task.name} prompts and "
                        f"answers need {longest}: use --base pretrain or a model with a longer context")
    return model, tokenizer, shown(base)
