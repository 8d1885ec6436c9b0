"""What the generated tasks (arithmetic, countdown) share: problems a program draws and checks, written in the
characters of ALPHABET, an answer ending at the newline, held-out problems fixed by seed, and the model RL starts
from.

A policy gradient can only reinforce what the policy sometimes does: a random model never writes "57\\n" after
"23+34=", so every reward and advantage is 0. `--base pretrain` therefore first fine-tunes a small character GPT on
the task's training problems with the loss on the answer only (the task-format model, runs/<task>-base-<profile>),
which solves a minority of the held-out problems and leaves the rest for RL. It never trains on a held-out problem.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch

from ...config import ModelShape, TrainConfig
from ...data.conversations import pad_conversations
from ...distributed import all_reduce_sum
from ...eval.loss import answer_loss_sum
from ...model.gpt import GPT
from ...paths import runs_dir, shown
from ...tokenizers.char import CharTokenizer
from ...tokenizers.chat_template import RenderedChat
from ...train.options import RunOptions, given
from ...train.prerequisite import Prerequisite
from ...train.progress import print_record
from ...train.run import Finished, Job, Start
from ...train.trainer import Trainer
from ..recipes import GRPO_TRAIN, GRPORecipe
from ..task import HeldOut, PostTrainingTask, ProblemStream, Score, TaskError, greedy_pass_rate

ALPHABET = "\n ()*+-/0123456789:=>"  # every character a prompt or a well-formed answer of either task uses
END = "\n"


# The task-format model's SFT: 64 problems a step at a constant 3e-3, no weight decay, no gradient clipping, AdamW's
# default betas, 1,500 steps (a shorter run's start depends more on the seed:
# docs/notes/2026-11-25-post-training-runs.md).
FORMAT_TRAIN = TrainConfig(batch_size=64, max_steps=1500, warmup_steps=0, learning_rate=3e-3, min_lr=3e-3,
                           weight_decay=0.0, beta2=0.999, grad_clip=None, eval_interval=500, log_interval=100,
                           eval_batch_size=256, dtype="float32")
FORMAT_RECIPES = {
    "smoke": (ModelShape(block_size=32, n_layer=1, n_head=2, n_embd=32),
              dataclasses.replace(FORMAT_TRAIN, batch_size=32, max_steps=30, warmup_steps=2, eval_interval=0,
                                  log_interval=10)),
    "cpu": (ModelShape(block_size=32, n_layer=2, n_head=4, n_embd=64), FORMAT_TRAIN),
    "gpu": (ModelShape(block_size=64, n_layer=4, n_head=4, n_embd=128),
            dataclasses.replace(FORMAT_TRAIN, max_steps=3000, warmup_steps=100, log_interval=250, eval_interval=500,
                                dtype="auto")),
}
# GRPO: 8 completions for each of 32 prompts per rollout, temperature 1, 2 clipped updates per rollout (ε = 0.2),
# advantages scaled by the group's std, no KL penalty. A step count, not a clock, bounds the cpu run, so a loaded
# machine trains the same recipe for longer instead of less. The gpu recipe is not measured.
RECIPES = {
    "grpo": {  # smoke: the pipeline runs, nothing is expected to learn
        "smoke": GRPORecipe(base="pretrain", train=dataclasses.replace(GRPO_TRAIN, max_steps=6, eval_interval=3,
                                                                       log_interval=2),
                            prompts=4, group_size=4, updates=1, validation=32, test=32),
        "cpu": GRPORecipe(base="pretrain", train=GRPO_TRAIN, prompts=32),
        "gpu": GRPORecipe(base="pretrain", train=dataclasses.replace(GRPO_TRAIN, max_steps=4000, log_interval=40,
                                                                     dtype="auto"),
                          prompts=64, validation=1000, test=1000),
    },
}


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str  # one correct completion (without the newline); countdown accepts any expression that checks
    numbers: tuple[int, ...] = ()
    target: int | None = None


FORMAT_REWARD = 0.1  # a well-formed wrong answer's reward: enough to learn the format, well below a correct one


def answer_text(completion: str) -> tuple[str, bool]:
    """The completion up to its first newline, and whether a newline ended it."""
    text, newline, _ = completion.partition(END)
    return text.strip(), bool(newline)


def checked(correct: bool, well_formed: bool) -> Score:
    """A generated task's score: 1 for a correct answer, FORMAT_REWARD for a well-formed wrong one, else 0."""
    return Score(reward=1.0 if correct else FORMAT_REWARD if well_formed else 0.0, correct=correct,
                 well_formed=well_formed, kinds={"well_formed": well_formed})


def task_tokenizer() -> CharTokenizer:
    """One id per character of ALPHABET: every prompt and every well-formed answer of both tasks."""
    return CharTokenizer(list(ALPHABET))


def held_out_problems(task, count: int, seed: int = 1234) -> list[Problem]:
    """`count` problems with distinct prompts, the same for the same task, count and seed."""
    rng, problems, seen = random.Random(seed), [], set()
    for _ in range(100 * count):
        problem = task.sample(rng)
        if problem.prompt not in seen:
            seen.add(problem.prompt)
            problems.append(problem)
            if len(problems) == count:
                return problems
    raise TaskError(f"{task.name} has fewer than {count} distinct problems at these settings: ask for fewer")


class GeneratedTask(PostTrainingTask):
    """A subclass gives `name`, `settings` (profile -> what `configure` takes; keywords of the constructor change
    them), `configure`, `sample(rng)` and `score(problem, text)`; `recipes` and `format_recipes` (profile ->
    (ModelShape, TrainConfig) of the task-format model) are these, unless it says otherwise."""

    rewards = ("correct", "format")
    measure_name = "accuracy"
    recipes = RECIPES
    format_recipes: ClassVar[dict[str, tuple[ModelShape, TrainConfig]]] = FORMAT_RECIPES
    settings: ClassVar[dict[str, dict[str, Any]]]

    def __init__(self, profile: str, data: str | None = None, **settings):
        super().__init__(data)
        self.profile, self.format_only = profile, False
        self.configure(**{**self.settings[profile], **settings})

    def configure(self, **settings) -> None:
        raise NotImplementedError

    def score(self, problem: Problem, completion: str) -> Score:
        raise NotImplementedError

    def prompt_ids(self, tokenizer, problem: Problem) -> list[int]:
        return tokenizer.encode(problem.prompt)

    def generation(self, tokenizer) -> dict:
        return {"stop_tokens": tokenizer.encode(END)}

    def reply_texts(self, tokenizer, completions: list[list[int]]) -> list[str]:
        return [tokenizer.decode(ids).partition(END)[0] for ids in completions]

    def score_completions(self, tokenizer, problems: Sequence[Problem], completions: list[list[int]]) -> list[Score]:
        """Each completion's ids (the stop token included when it came) read as text and checked; under the format
        reward a well-formed answer pays in full, right or wrong (reward hacking), and `correct` still tells."""
        scores = [self.score(problem, tokenizer.decode(ids)) for problem, ids in zip(problems, completions)]
        if self.format_only:
            scores = [Score(float(s.well_formed), s.correct, s.well_formed, s.kinds) for s in scores]
        return scores

    def rewarded_by(self, reward: str) -> GeneratedTask:
        super().rewarded_by(reward)
        paying = copy.copy(self)
        paying.format_only = reward == "format"
        return paying

    def held_out(self, validation: int | None, test: int | None) -> HeldOut:
        problems = held_out_problems(self, validation + test)
        return HeldOut(problems[:validation], problems[validation:])

    def answers(self, tokenizer, problems: Sequence[Problem], block_size: int) -> list[RenderedChat]:
        """Prompt, answer and the newline that ends it; the answer and the newline are what the loss counts."""
        rendered = []
        for problem in problems:
            prompt, answer = tokenizer.encode(problem.prompt), tokenizer.encode(problem.answer + END)
            rendered.append(RenderedChat(prompt + answer, [False] * len(prompt) + [True] * len(answer)))
        return rendered

    def example_command(self, out: str) -> str:
        example = self.sample(random.Random(0)).prompt
        return (f"python -m tinylm.sample --ckpt {out} --prompt '{example}' --temperature 0 --max-new-tokens "
                f"{self.reply_tokens} --stop '\\n'")

    def check_start(self, model, tokenizer, where: str, method: str, recipe) -> None:
        """A TaskError unless the tokenizer writes every character of ALPHABET (the newline as one token: it stops
        sampling) and the context holds the longest prompt and answer."""
        if tokenizer is None:
            raise TaskError(f"{where} carries no tokenizer, so it cannot write {self.name} problems; use --base "
                            "pretrain")
        try:
            writes = tokenizer.decode(tokenizer.encode(ALPHABET)) == ALPHABET and len(tokenizer.encode(END)) == 1
        except ValueError:  # a character tokenizer that never saw digits or operators
            writes = False
        if not writes:
            raise TaskError(f"the tokenizer of {where} cannot write {self.name} problems (it must encode each of "
                            f"{ALPHABET!r}, the newline as one token); use --base pretrain")
        longest = max(len(tokenizer.encode(p.prompt)) for p in self.held_out(recipe.validation, recipe.test).problems)
        if longest + self.reply_tokens > model.config.block_size:
            raise TaskError(f"{where} has a context of {model.config.block_size} tokens; {self.name} prompts and "
                            f"answers need {longest + self.reply_tokens}: use --base pretrain or a model with a longer "
                            "context")

    def prerequisite(self, method: str, base: str, profile: str, recipe) -> Prerequisite | None:
        """--base pretrain: the task-format model, never trained on the held-out problems of the profile's recipe,
        and so on none of a run's that holds out as many problems or fewer (each count's are the first of one list)."""
        if base != "pretrain":
            return None
        shape, cfg = self.format_recipes[profile]
        usual = self.recipe(method, profile)
        if recipe.validation + recipe.test > usual.validation + usual.test:
            raise TaskError(f"--set validation={recipe.validation} test={recipe.test}: the task-format model of "
                            f"--base pretrain never sees {usual.validation + usual.test} held-out problems; hold out "
                            "that many or fewer, or start from a model of your own (--base)")
        held_out = self.held_out(usual.validation, usual.test)
        return Prerequisite(label="task-format model", out=runs_dir() / f"{self.name}-base-{profile}", profile=profile,
                            steps=cfg.max_steps, job=lambda run: TaskFormatTraining(run, self, held_out, shape, cfg),
                            model=lambda: GPT(shape.config(task_tokenizer().vocab_size)))


class ProblemLoader:
    """The Trainer's batches: fresh training problems each step, never a held-out one. Every rank draws the whole
    global batch from the same stream and keeps its slice, so the stream's state is the same on every rank."""

    def __init__(self, stream: ProblemStream, tokenizer, batch_size: int, rank: int = 0, world_size: int = 1):
        self.stream, self.tokenizer = stream, tokenizer
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def next_batch(self, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        problems = self.stream.take(self.batch_size * self.world_size)
        mine = problems[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        x, y = pad_conversations(self.stream.task.answers(self.tokenizer, mine, 0), 0)
        return x.to(device), y.to(device)

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


class TaskTrainer(Trainer):
    """The Trainer validating on the validation problems' answer tokens (leave val_tokens out); each evaluation also
    records their greedy pass rate (`task_pass_rate`)."""

    def __init__(self, *args, task: GeneratedTask, val_problems: list[Problem], **kwargs):
        super().__init__(*args, **kwargs)
        self.task, self.val_problems = task, val_problems
        self.evaluators["task"] = lambda model: {"pass_rate": greedy_pass_rate(model, self.tokenizer, task,
                                                                               val_problems)["pass_rate"]}

    def evaluate(self) -> dict[str, float]:
        answers = self.task.answers(self.tokenizer, self.val_problems, 0)
        total, count = answer_loss_sum(self.model, answers, self.cfg.eval_batch_size, self.device, 0,
                                       tokenizer=self.tokenizer, rank=self.world.rank, world_size=self.world.size)
        total, count = all_reduce_sum([total, count], self.device)
        return {"val_loss": total / count}


class TaskFormatTraining(Job):
    """The answer-only SFT of the task-format model, through the steps every run takes (folder lock, resume,
    settings)."""

    command = "task-format model"

    def __init__(self, run: RunOptions, task: GeneratedTask, held_out: HeldOut, shape: ModelShape, cfg: TrainConfig,
                 on_record: Callable[[dict], None] = print_record):
        super().__init__(run, given=given(run))  # its resume rule compares the profile and device too
        self.task, self.held_out, self.shape, self.cfg, self.on_record = task, held_out, shape, cfg, on_record

    def model(self, start: Start) -> tuple[GPT, CharTokenizer, TrainConfig]:
        tokenizer = task_tokenizer()
        cfg = self.cfg.override(**self.run.train_changes()) if start.saved is None else self.resumed_train(start.saved)
        torch.manual_seed(cfg.seed)
        return GPT(self.shape.config(tokenizer.vocab_size)), tokenizer, cfg

    def trainer(self, model: GPT, tokenizer, cfg: TrainConfig, start: Start) -> TaskTrainer:
        loader = ProblemLoader(ProblemStream(self.task, self.held_out.problems, seed=cfg.seed), tokenizer,
                               cfg.batch_size, start.world.rank, start.world.size)
        return TaskTrainer(model, cfg, loader, out_dir=start.out, tokenizer=tokenizer, device=start.device,
                           callbacks=[self.on_record], world=start.world, task=self.task,
                           val_problems=self.held_out.validation)

    def header(self, trainer: TaskTrainer, start: Start) -> str:
        cfg = trainer.cfg
        return (f"task-format model: answer-only SFT of a {trainer.model.num_parameters():,}-parameter GPT on "
                f"{self.task.name} problems, {cfg.max_steps} steps of {cfg.batch_size} x {start.world.size} -> "
                f"{shown(self.run.out)}")

    def epilogue(self, finished: Finished) -> str:
        final = finished.final
        return (f"task-format model: validation answer loss {final['val_loss']:.4f}, greedy accuracy "
                f"{100 * final['task_pass_rate']:.1f}% after {final['step']} steps ({final['elapsed']:.0f} s)")
