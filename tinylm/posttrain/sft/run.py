"""Chat fine-tuning (SFT) of a pretrained model, through the one run skeleton: `sft(run, options)`.

Two tasks. `stories` (tinylm.posttrain.stories): the story base, pretrained first in runs/stories-base-<profile>,
learns to write a story that meets an instruction a program checks; the validation instructions' pass rate (the
verifier's, greedy replies) chooses best.pt, and the report gives the test pass rate of the base asked in plain text
(`baseline`) and of best.pt (`after`), with Wilson intervals. `instruct`: Alpaca-style records
(tinylm.data.instruct, split three ways), mixed with a share of pretraining text so the model keeps its language;
the validation answer loss chooses best.pt, and the base in plain text (tinylm.posttrain.plain), the base with the
chat tokens and best.pt are measured alike on the test conversations. Either way the base gets the chat tokens when
it lacks them and the loss counts answer tokens only. OUT/sft_eval.json keeps the report beside metrics.jsonl,
best.pt, last.pt and settings.json. With LoRA only adapters train (and the new chat tokens' rows), at the recipe's
LoRA learning rate; OUT/adapters.pt keeps best.pt's. `python -m tinylm.sft` is the command line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...config import TrainConfig
from ...data.conversations import ConversationLoader, MixtureLoader
from ...data.instruct import InstructDataError, build_examples, load_records, split_three_ways, to_messages
from ...data.tokens import RandomWindowSampler
from ...distributed import World
from ...errors import InputError
from ...model.lora import ADAPTERS_FILE, LoRAOptions, save_run_adapters
from ...paths import shown
from ...tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ROLES, ChatTemplate, chat_token_ids
from ...train.checkpoint import load_model, model_to_resume
from ...train.options import RunOptions, given
from ...train.progress import format_record
from ...train.run import Finished, Job, Start, run_job
from ..chat_base import BASE_RECIPES, pretraining_tokens
from ..plain import PLAIN_PROMPT
from ..replies import REPLY_TOKENS
from ..stories import (
    SFT_REPORT,
    STORY_BASE_RECIPES,
    STORY_REPLY_TOKENS,
    load_story_task,
    pretrain_story_base,
    story_base_folder,
    story_verifier,
)
from ..vocab import add_chat_tokens
from .base import load_base
from .recipes import SFT_RECIPES, TASKS, SFTRecipe, default_task
from .report import (
    chat_measure,
    instruct_epilogue,
    plain_measure,
    plain_story_replies,
    story_epilogue,
    story_pass_rate,
)
from .trainer import SFTTrainer, VerifiedSFTTrainer, story_replies


@dataclass(frozen=True)
class SFTOptions:
    """What SFT is asked for beyond the shared options; None means the recipe's (resumed: the saved run's).
    `task`: stories (the cpu and smoke profiles' default) or instruct (gpu's); `base`: pretrain (stories: the story
    base; instruct: the small base), gpt2, a run folder, a checkpoint or a transformers folder; `data` (instruct):
    instruct or a JSON/JSONL file; `lora`: LoRA adapters instead of every weight (a dict, as settings.json holds it,
    is read too)."""

    task: str | None = None
    base: str | None = None
    data: str | None = None
    pretraining_share: float | None = None
    system_prompt: str | None = None
    lora: LoRAOptions | None = None

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise InputError(f"--task {self.task}: SFT's tasks are {' and '.join(TASKS)}")
        if self.pretraining_share is not None and not 0 <= self.pretraining_share < 1:
            raise InputError(f"--pretraining-share must be at least 0 and below 1, got {self.pretraining_share:g} "
                             "(the rest of the batches are chat)")
        if self.task == "stories" and (self.data is not None or self.pretraining_share):
            raise InputError(f"{'--data' if self.data is not None else '--pretraining-share'} is for --task "
                             "instruct: the story task trains on its own instructions only")
        if isinstance(self.lora, dict):
            object.__setattr__(self, "lora", LoRAOptions(**{**self.lora, "targets": tuple(self.lora["targets"])}))


def print_sft_record(record: dict) -> None:
    """A trainer record as tinylm.train.progress prints it; a stories evaluation prints the validation pass rate,
    which best.pt follows, before the answer loss."""
    if "pass_rate" in record:
        line = (f"{record['event']:>5} step {record['step']:>6} | validation pass rate "
                f"{100 * record['pass_rate']:.1f}% | best {100 * record['best_pass_rate']:.1f}% "
                f"| answer loss {record['val_loss']:.4f}")
    else:
        line = format_record(record)
    print(line, flush=True)


class SFTJob(Job):
    """SFT of `options.base` on `options.task`'s conversations, by the task's and profile's recipe."""

    command = "sft"
    files = (*Job.files, SFT_REPORT, ADAPTERS_FILE)
    report_name = SFT_REPORT
    reload_best = True

    def __init__(self, run: RunOptions, options: SFTOptions, on_record: Callable[[dict], None] = print_sft_record):
        def folder(profile: str) -> str:
            return f"sft-{options.task or default_task(profile)}-{profile}"

        super().__init__(run.resolved(folder), options, given(run, options))
        self.on_record = on_record

    @property
    def stories(self) -> bool:
        return self.options.task == "stories"

    @property
    def recipe(self) -> SFTRecipe:
        return SFT_RECIPES[self.options.task][self.run.profile]

    def settle(self, saved: dict[str, Any]) -> None:
        self.saved_task = saved.get("task", "instruct" if saved else None)  # before the story task: instruct
        super().settle(saved)

    def defaults(self) -> dict[str, Any]:
        task = self.options.task or self.saved_task or default_task(self.run.profile)
        recipe = SFT_RECIPES[task][self.run.profile]
        return {"task": task, "base": recipe.base, "data": None if task == "stories" else "instruct",
                "pretraining_share": recipe.pretraining_share, "system_prompt": DEFAULT_SYSTEM_PROMPT}

    def recipe_values(self) -> dict[str, Any]:
        values = {"lora_learning_rate": self.recipe.lora_learning_rate}
        if self.stories:
            return {**values, "held_out": self.recipe.held_out, "reply_tokens": STORY_REPLY_TOKENS}
        return {**values, "epochs": self.recipe.epochs, "eval_prompts": self.recipe.eval_prompts}

    def data(self, start: Start) -> None:
        if self.stories:
            task, held_out = load_story_task(), self.recipe.held_out
            self.val_instructions, self.test_instructions = task.validation[:held_out], task.test[:held_out]
            self.records = {"train": [i.record() for i in task.train],
                            "validation": [i.record() for i in self.val_instructions],
                            "test": [i.record() for i in self.test_instructions]}
            self.source = "the story task (TinyStories sample)"
        else:
            records, self.source = load_records(self.options.data)
            split = split_three_ways(records)
            self.records = {"train": split.train, "validation": split.validation, "test": split.test}
        if self.run.max_seconds is not None:
            start.say(self._unbounded())

    def model(self, start: Start) -> tuple[Any, Any, TrainConfig]:
        self.base_model = None  # a new run's base as it came, for the plain-text baseline
        if self.stories:
            self.story_base = self._story_base(start)
            self.verifier = story_verifier(self.story_base, load_story_task())  # cached: the task loaded above
        if start.saved is not None:
            self.description = f"resumed from {shown(self.run.out / 'last.pt')}"
            return (*model_to_resume(start.saved), self.resumed_train(start.saved))
        if self.stories and self.options.base == "pretrain":
            base_model, base_tokenizer, _ = load_model(self.story_base)
            self.description = f"the story base in {shown(self.story_base.parent)}"
        else:
            texts = [] if self.stories else _chat_texts(self.records["train"], self.options.system_prompt, self.source)
            base_model, base_tokenizer, self.description = load_base(self.options.base, self.run, texts, start)
        self.base_model, self.base_tokenizer = base_model, base_tokenizer
        model, tokenizer = add_chat_tokens(base_model, base_tokenizer)
        if tokenizer is not base_tokenizer:
            start.say(f"added <|im_start|>, <|im_end|>, <|pad|>: vocabulary {base_tokenizer.vocab_size:,} -> "
                      f"{tokenizer.vocab_size:,} tokens, embedding {base_model.config.vocab_size:,} -> "
                      f"{model.config.vocab_size:,} rows (new rows: the mean token row)")
        cfg = self.recipe.train
        if self.options.lora is not None:
            # the chat tokens' rows train too when they were just added (they start equal: see tinylm.model.lora)
            new_rows = [] if tokenizer is base_tokenizer else chat_token_ids(tokenizer).values()
            cfg, line = self.options.lora.adapt(model, cfg, self.recipe.lora_learning_rate, token_ids=new_rows)
            start.say(line)
        return model, tokenizer, cfg.override(**self.run.train_changes())

    def _story_base(self, start: Start) -> Path:
        """The story base whose verifier scores this run: the one the run's report names (resumed), else --base
        pretrain's (pretrained now unless finished earlier) or --base itself."""
        report = self.run.out / SFT_REPORT
        if start.saved is not None and report.is_file():
            named = json.loads(report.read_text(encoding="utf-8")).get("verifier", {}).get("base")
            if named and Path(named).exists():
                return Path(named)
        if self.options.base == "pretrain":
            return pretrain_story_base(self.run.profile, device=start.device, world=start.world,
                                       say=start.say).resolve()
        if self.options.base == "gpt2" or (Path(self.options.base) / "config.json").is_file():
            raise InputError(f"--task stories --base {self.options.base}: the story task starts from a story model "
                             "(pretrain, or a tinylm run folder or checkpoint), which also serves as the verifier's "
                             "fluency guard")
        found = Path(self.options.base)
        return (found / "best.pt" if found.is_dir() else found).resolve()

    def trainer(self, model, tokenizer, cfg: TrainConfig, start: Start) -> SFTTrainer:
        """The SFTTrainer over chat batches (instruct: mixed with pretraining text); each evaluation also scores as
        many training answers as there are validation conversations (memorisation) and counts the passes over the
        chat data."""
        template = ChatTemplate(tokenizer)
        self._examples(template, model.config.block_size, start.say)
        if start.saved is None and self.recipe.epochs and self.run.max_steps is None:
            per_step = cfg.batch_size * cfg.grad_accum_steps * start.world.size
            epochs = round(self.recipe.epochs * len(self.train_examples) / per_step)
            cfg = cfg.override(max_steps=max(cfg.warmup_steps + 1, epochs))
        loader = self._loader(tokenizer, template, cfg, model.config.block_size, start.world)
        common = dict(out_dir=self.run.out, tokenizer=tokenizer, device=start.device, callbacks=[self.on_record],
                      world=start.world, val_conversations=self.val_examples.rendered, template=template)
        if self.stories:
            trainer = VerifiedSFTTrainer(model, cfg, loader, verifier=self.verifier, system_prompt=self.prompt,
                                         val_instructions=self.val_instructions, **common)
        else:
            trainer = SFTTrainer(model, cfg, loader, **common)
        self.train_sample = train_sample = self.train_examples.rendered[: len(self.val_examples)]
        chat = self.chat_loader
        trainer.evaluators.update(
            train=lambda _: {"answer_loss": trainer.answer_loss(train_sample)},
            chat=lambda _: {"epochs": chat.epoch + chat.cursor / len(chat.order)})
        return trainer

    @property
    def prompt(self) -> str:
        return self.options.system_prompt

    def _examples(self, template: ChatTemplate, block_size: int, say: Callable[[str], None]) -> None:
        """The three splits as conversations of at most `block_size` tokens; an error where one is left empty."""
        self.train_examples, self.val_examples, self.test_examples = (
            build_examples(self.records[part], template, block_size, self.prompt)
            for part in ("train", "validation", "test"))
        chooses = "the pass rate chooses best.pt" if self.stories else "chooses best.pt"
        parts = {"train": self.train_examples, f"validation ({chooses})": self.val_examples,
                 "test (reported)": self.test_examples}
        if empty := [name.split()[0] for name, part in parts.items() if not len(part)]:
            raise InstructDataError(f"{self.source} leaves no usable conversation for {empty[0]} ("
                                    + "; ".join(f"{name}: {part.describe()}" for name, part in parts.items()) + ")")
        say(f"data: {self.source}" + "".join(f"\n  {name}: {part.describe()}" for name, part in parts.items()))
        shown_prompts = self.recipe.eval_prompts
        test = self.test_examples
        self.prompts, self.references = test.prompts()[:shown_prompts], test.answers()[:shown_prompts]

    def _loader(self, tokenizer, template: ChatTemplate, cfg: TrainConfig, block_size: int, world: World):
        """Chat batches, mixed with windows of pretraining text at the options' share."""
        share = self.options.pretraining_share
        loader = self.chat_loader = ConversationLoader(self.train_examples.rendered, cfg.batch_size, template.pad,
                                                       seed=cfg.seed, rank=world.rank, world_size=world.size)
        if share > 0:
            text, _ = pretraining_tokens(tokenizer)
            windows = RandomWindowSampler(text, block_size, cfg.batch_size, cfg.seed, world.rank, world.size)
            loader = MixtureLoader({"chat": loader, "pretraining": windows}, {"chat": 1 - share, "pretraining": share},
                                   seed=cfg.seed)
        return loader

    def header(self, trainer: SFTTrainer, start: Start) -> str:
        cfg, share = trainer.cfg, self.options.pretraining_share
        data = (f"{len(self.train_examples):,} story instructions" if self.stories else
                f"{100 * (1 - share):.0f}% chat, {100 * share:.0f}% pretraining text")
        return (f"fine-tuning {self.description} | {trainer.model.num_parameters():,} parameters | profile "
                f"{self.run.profile} | {cfg.max_steps} steps of {cfg.batch_size} x {start.world.size} | {data} | "
                f"{100 * self.chat_loader.padding_fraction():.1f}% padding | device {trainer.device} | run folder "
                f"{shown(self.run.out)}")

    def _unbounded(self) -> str:
        """The plan line of a run with a time budget: what --max-seconds does not bound, so that nobody waits."""
        extra, test = [], len(self.records["test"])
        if self.options.base == "pretrain" and self.stories:
            extra.append(f"pretraining the story base first, unless {shown(story_base_folder(self.run.profile))} "
                         f"holds it ({STORY_BASE_RECIPES[self.run.profile][1].max_steps:,} steps)")
        elif self.options.base == "pretrain":
            extra.append(f"pretraining the small base first, unless {shown(self.run.out / 'base')} holds it "
                         f"({BASE_RECIPES[self.run.profile][1].max_steps:,} steps)")
        if self.stories:
            extra.append(f"the evaluations before and after (greedy replies of up to {STORY_REPLY_TOKENS} tokens to "
                         f"{test} test instructions, from the base and from best.pt) and the pass rate of the "
                         f"{len(self.records['validation'])} validation instructions at each evaluation")
        else:
            prompts = test if self.recipe.eval_prompts is None else min(test, self.recipe.eval_prompts)
            extra.append(f"the evaluations before and after (answer loss on up to {test} test conversations, "
                         f"greedy replies of up to {REPLY_TOKENS} tokens to {prompts} prompts)")
        return (f"plan: --max-seconds {self.run.max_seconds:g} bounds the fine-tuning steps only; on top of them come "
                + " and ".join(extra))

    def before(self, trainer: SFTTrainer, report: dict, world: World) -> None:
        """The measurements before the first step: the validation and training answers' loss too, the first points
        of the curves the evaluations draw (a gap already there is no memorisation)."""
        test = self.test_examples
        report.update(profile=self.run.profile, task=self.options.task, base=self.description, data=self.source,
                      train=self.train_examples.counts, validation=self.val_examples.counts, test=test.counts)
        start = {"validation_answer_loss": trainer.answer_loss(self.val_examples.rendered),
                 "train_answer_loss": trainer.answer_loss(self.train_sample)}
        if self.stories:
            report.update(verifier={"base": str(self.story_base), "max_loss": self.verifier.max_loss},
                          before={"answer_loss": trainer.answer_loss(test.rendered), **start}, pass_rate={})
            if self.base_model is not None and world.is_main:  # a new run: the base as it came, in plain text
                replies = plain_story_replies(self.base_model, self.base_tokenizer, self.test_instructions,
                                              trainer.device)
                measured = story_pass_rate(replies, self.test_instructions, self.verifier)
                report["pass_rate"]["baseline"] = measured.pop("pass_rate")
                report["baseline"] = measured
            return
        if self.base_model is not None:  # a new run: the base as it came, asked in plain text
            report["baseline"] = plain_measure(self.base_model, self.base_tokenizer, test.messages, self.prompts,
                                               self.references, trainer.cfg, trainer.device, world)
        report["before"] = {**chat_measure(trainer, test.rendered, self.prompts, self.references, world), **start}

    def after(self, trainer: SFTTrainer, report: dict, world: World) -> None:
        if world.is_main and (lora := save_run_adapters(trainer.model, self.run.out, self.description)):
            report["lora"] = lora
        chosen = {"checkpoint": "best.pt", "step": trainer.best_step}
        if self.stories:
            after = {"answer_loss": trainer.answer_loss(self.test_examples.rendered), **chosen,
                     "validation_pass_rate": trainer.best_score}
            if world.is_main:
                replies = story_replies(trainer.model, trainer.template, self.test_instructions, self.prompt)
                measured = story_pass_rate(replies, self.test_instructions, self.verifier)
                report.setdefault("pass_rate", {})["after"] = measured.pop("pass_rate")
                after.update(measured)
        else:
            after = {**chat_measure(trainer, self.test_examples.rendered, self.prompts, self.references, world),
                     **chosen, "validation_answer_loss": trainer.best_score}
        report.update(after=after, steps=trainer.step, sft_seconds=round(trainer.elapsed, 1))

    def epilogue(self, finished: Finished) -> str:
        if self.stories:
            return story_epilogue(finished.report, self.run.out)
        return instruct_epilogue(finished.report, self.run.out, len(self.test_examples), len(self.val_examples))


def sft(run: RunOptions = RunOptions(), options: SFTOptions = SFTOptions(), *, world: World | None = None,
        say: Callable[[str], None] = print, on_record: Callable[[dict], None] = print_sft_record) -> dict:
    """Fine-tune `options.base` on `options.task` (default: stories from the story base on cpu and smoke, the
    instruction set from GPT-2 124M on gpu) into `run.out` (default runs/sft-<task>-<profile>), and return the report
    OUT/sft_eval.json keeps: stories: the test pass rates of the base in plain text and of best.pt ("pass_rate");
    instruct: answer-token loss, stop rate and overlap before and after; steps and seconds. Only rank 0 speaks and
    writes."""
    return run_job(SFTJob(run, options, on_record), world=world, say=say).report


def _chat_texts(records: list, system_prompt: str, source: str) -> list[str]:
    """Every text the template will encode for these records: what a trimmed base vocabulary must cover.
    An error, before any base is loaded or trained, when no record can become a conversation."""
    texts = [system_prompt, "\n", *(f"{role}\n" for role in ROLES), PLAIN_PROMPT.format(instruction="")]
    usable = 0
    for record in records:
        try:
            texts += [message["content"] for message in to_messages(record, system_prompt)]
            usable += 1
        except ValueError:  # a record the rules skip adds nothing
            continue
    if not usable:
        raise InstructDataError(f"{source} leaves no usable conversation for training: every record is malformed "
                                "or has an empty answer (records need instruction and output, or messages)")
    return texts
