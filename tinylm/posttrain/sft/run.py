"""Chat fine-tuning (SFT) of a pretrained model on a task, through the one run skeleton: `sft(run, options)`.

The base gets the chat tokens where it lacks them, and the loss counts answer tokens only; a task with pretraining
text mixes it in at the recipe's share, so the model keeps its language. The validation split chooses best.pt (the
task's pass rate, or the answer loss where no program checks a reply); the report measures the test split three
times alike (tinylm.posttrain.task.measure): the base asked in plain text, the start, and best.pt. With LoRA only
adapters train (and the new chat tokens' rows), at the recipe's LoRA rate; OUT/adapters.pt keeps best.pt's. For a
task whose pairs DPO samples on-policy, --data names such a DPO run: SFT then trains its start on the passing chosen
replies alone (rejection-sampling fine-tuning), DPO's control with the same replies and no rejected ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ...config import TrainConfig
from ...data.conversations import ConversationLoader, MixtureLoader
from ...data.instruct import InstructDataError, build_examples
from ...data.tokens import RandomWindowSampler
from ...distributed import World
from ...model.lora import ADAPTERS_FILE
from ...paths import shown
from ...tokenizers.chat_template import ChatTemplate, chat_token_ids
from ...train.options import RunOptions
from ...train.run import Finished, Start, run_job
from ..chat_task import ChatTask
from ..job import PostTrainingJob, PostTrainingOptions
from ..on_policy import passing_chosen
from ..recipes import SFTRecipe
from ..task import TaskError
from ..vocab import add_chat_tokens
from .trainer import SFTTrainer


class SFTJob(PostTrainingJob):
    """SFT of `options.base` on `options.task`'s conversations, by the task's recipe for the profile."""

    method, recipe_type, command = "sft", SFTRecipe, "sft"
    task_type = ChatTask
    extra_files = (ADAPTERS_FILE,)
    loss_name = "answer loss"

    def make_task(self, task_type: type[ChatTask]) -> ChatTask:
        """A task that reads data sets takes --data; for one that does not, --data names a DPO run whose passing
        chosen replies to train on."""
        self.chosen_from = None if task_type.takes_data or self.options.data is None else Path(self.options.data)
        data = self.options.data if task_type.takes_data else None
        return task_type(self.run.profile, data, self.options.system_prompt)

    def source(self) -> str:
        if self.chosen_from is None:
            return self.task.source()
        return f"{self.task.source()}, training on the passing chosen replies of {shown(self.chosen_from)}"

    def data(self, start: Start) -> None:
        self.held = self.task.held_out(self.recipe.held_out, self.recipe.held_out)
        train = (self.task.train_records() if self.chosen_from is None
                 else passing_chosen(self.chosen_from, self.started_from().get("path")))
        self.records = {"train": train, "validation": [p.record() for p in self.held.validation],
                        "test": [p.record() for p in self.held.test]}
        if self.run.max_seconds is not None:
            start.say(f"plan: --max-seconds {self.run.max_seconds:g} bounds the fine-tuning steps only; on top of them "
                      f"come the measurements before and after (greedy replies of up to {self.task.reply_tokens} "
                      f"tokens to {len(self.held.test)} test problems, from the base and from best.pt) and each "
                      "evaluation's")

    def model(self, start: Start) -> tuple[Any, Any, TrainConfig]:
        if resumed := self.resumed(start):
            return resumed
        base_model, base_tokenizer = self.start_model, self.start_tokenizer
        model, tokenizer = add_chat_tokens(base_model, base_tokenizer)
        self.from_base = tokenizer is not base_tokenizer  # a base, not a chat model: SFT's baseline asks it plainly
        if self.from_base:
            start.say(f"added <|im_start|>, <|im_end|>, <|pad|>: vocabulary {base_tokenizer.vocab_size:,} -> "
                      f"{tokenizer.vocab_size:,} tokens, embedding {base_model.config.vocab_size:,} -> "
                      f"{model.config.vocab_size:,} rows (new rows: the mean token row)")
        # under LoRA the chat tokens' rows train too when they were just added (they start equal: tinylm.model.lora)
        new_rows = [] if tokenizer is base_tokenizer else chat_token_ids(tokenizer).values()
        return model, tokenizer, self.with_lora(model, self.recipe.train, start.say, token_ids=new_rows)

    def trainer(self, model, tokenizer, cfg: TrainConfig, start: Start) -> SFTTrainer:
        """The SFTTrainer over chat batches (mixed with pretraining text where the task has some); each evaluation
        also scores as many training answers as there are validation conversations (memorisation) and counts the
        passes over the chat data."""
        template = ChatTemplate(tokenizer)
        self._examples(template, model.config.block_size, start.say)
        if start.saved is None and self.recipe.epochs and self.run.max_steps is None:
            per_step = cfg.batch_size * cfg.grad_accum_steps * start.world.size
            cfg = cfg.override(max_steps=max(cfg.warmup_steps + 1,
                                             round(self.recipe.epochs * len(self.examples["train"]) / per_step)))
        world, share = start.world, self.recipe.pretraining_share
        chat = loader = ConversationLoader(self.examples["train"].rendered, cfg.batch_size, template.pad, seed=cfg.seed,
                                           rank=world.rank, world_size=world.size)
        if share > 0:
            if (text := self.task.pretraining_text(tokenizer)) is None:
                raise TaskError(f"--set pretraining_share={share:g}: the {self.task.name} task has no pretraining "
                                "text to mix in; leave it at 0")
            windows = RandomWindowSampler(text, model.config.block_size, cfg.batch_size, cfg.seed, world.rank,
                                          world.size)
            loader = MixtureLoader({"chat": chat, "pretraining": windows}, {"chat": 1 - share, "pretraining": share},
                                   seed=cfg.seed)
        trainer = SFTTrainer(model, cfg, loader, out_dir=start.out, tokenizer=tokenizer, device=start.device,
                             callbacks=[self.on_record], world=world, template=template,
                             val_conversations=self.examples["validation"].rendered,
                             chooser=self.chooser(tokenizer, self.held.validation, world))
        self.chat_loader, self.train_sample = chat, self.examples["train"].rendered[: len(self.examples["validation"])]
        trainer.evaluators.update(
            train=lambda _: {"answer_loss": trainer.answer_loss(self.train_sample)},
            chat=lambda _: {"epochs": chat.epoch + chat.cursor / len(chat.order)})
        return trainer

    def _examples(self, template: ChatTemplate, block_size: int, say: Callable[[str], None]) -> None:
        """The three splits as conversations of at most `block_size` tokens; an error where one is left empty."""
        self.examples = {part: build_examples(records, template, block_size, self.task.system_prompt)
                         for part, records in self.records.items()}
        named = {"train": "train", "validation": "validation (chooses best.pt)", "test": "test (reported)"}
        if empty := [part for part, examples in self.examples.items() if not len(examples)]:
            raise InstructDataError(f"{self.source()} leaves no usable conversation for {empty[0]} ("
                                    + "; ".join(f"{named[p]}: {e.describe()}" for p, e in self.examples.items()) + ")")
        say(f"data: {self.source()}"
            + "".join(f"\n  {named[part]}: {examples.describe()}" for part, examples in self.examples.items()))

    def header(self, trainer: SFTTrainer, start: Start) -> str:
        cfg, share = trainer.cfg, self.recipe.pretraining_share
        data = f"{100 * (1 - share):.0f}% chat, {100 * share:.0f}% pretraining text" if share else "chat only"
        return (f"fine-tuning {self.description} on {self.task.name} | {trainer.model.num_parameters():,} parameters "
                f"| profile {self.run.profile} | {cfg.max_steps} steps of {cfg.batch_size} x {start.world.size} | "
                f"{data} | {100 * self.chat_loader.padding_fraction():.1f}% padding | device {trainer.device} | run "
                f"folder {shown(self.run.out)}")

    def before(self, trainer: SFTTrainer, report: dict, world: World) -> None:
        """The test split measured on the base asked in plain text (a new run from a base) and on the start; the
        validation and training answers' loss too, the first points of the curves the evaluations draw."""
        report.update(profile=self.run.profile, task=self.task.name, base=self.description, data=self.source(),
                      **{part: examples.counts for part, examples in self.examples.items()})
        if self.start_model is not None and self.from_base:
            report["baseline"] = self.measure(trainer, self.held.test, world, task=self.task.plain(),
                                              model=self.start_model.to(trainer.device),
                                              tokenizer=self.start_tokenizer)
        report["before"] = {**self.measure(trainer, self.held.test, world),
                            "validation_answer_loss": trainer.answer_loss(self.examples["validation"].rendered),
                            "train_answer_loss": trainer.answer_loss(self.train_sample)}
        self.start_model = None  # measured: its memory goes before training

    def epilogue(self, finished: Finished) -> str:
        report, out = finished.report, shown(self.run.out)
        lines = [*self.measured_lines(report), self.chosen_line(finished.trainer), self.time_line(report),
                 f"next: {self.task.example_command(out)}"
                 + (f"   or   python -m tinylm.dpo --task {self.task.name} --base {out}" if "dpo" in self.task.recipes
                    else f"   or   python -m tinylm.serve --ckpt {out} --port 8000")]
        return "\n".join(lines)


def sft(run: RunOptions = RunOptions(), options: PostTrainingOptions = PostTrainingOptions(), *,
        world: World | None = None, say: Callable[[str], None] = print,
        on_record: Callable[[dict], None] | None = None) -> dict:
    """Fine-tune `options.base` on `options.task` (default: stories) into `run.out` (default
    runs/sft-<task>-<profile>), and return the report OUT/sft_eval.json keeps: the test split measured on the base
    in plain text ("baseline"), before and after ("after": best.pt), steps and seconds. Only rank 0 speaks and
    writes; `on_record` gets every trainer record (default: printed)."""
    job = SFTJob(run, options, on_record or (lambda record: print(job.record_line(record), flush=True)))
    return run_job(job, world=world, say=say).report
