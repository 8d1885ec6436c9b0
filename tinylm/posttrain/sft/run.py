"""Chat fine-tuning (SFT) of a pretrained model, through the one run skeleton: `sft(run, options)`.

The base (`load_base`) gets the chat tokens when it lacks them; every record becomes a ChatML conversation with
the loss on its answer only, and a share of the batches is pretraining text, so the model keeps its language. The
records split three ways (tinylm.data.instruct.split_three_ways): the validation conversations choose best.pt (the
lowest answer loss), the test ones report. Three models are measured alike on the test conversations: the base
asked in plain text (`baseline`, tinylm.posttrain.plain), the base with the chat tokens (`before`) and best.pt
(`after`): answer loss and greedy replies (tinylm.posttrain.replies). OUT/sft_eval.json keeps them; OUT also gets
metrics.jsonl, best.pt, last.pt and settings.json. With LoRA only adapters train (and the new chat tokens' rows),
at the recipe's LoRA learning rate; OUT/adapters.pt keeps best.pt's. `python -m tinylm.sft` is the command line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ...config import TrainConfig
from ...data.conversations import ConversationLoader, MixtureLoader
from ...data.instruct import InstructDataError, build_examples, load_records, split_three_ways, to_messages
from ...data.tokens import RandomWindowSampler
from ...distributed import World, all_reduce_sum
from ...errors import InputError
from ...eval.loss import answer_loss_sum
from ...model.lora import ADAPTERS_FILE, LoRAOptions, save_run_adapters
from ...paths import shown
from ...runtime import autocast, resolve_dtype
from ...tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ROLES, ChatTemplate, chat_token_ids
from ...train.checkpoint import model_to_resume
from ...train.options import RunOptions, given
from ...train.progress import print_record
from ...train.run import Finished, Job, Start, run_job
from ..chat_base import BASE_RECIPES, pretraining_tokens
from ..plain import PLAIN_PROMPT, plain_replies, render_plain
from ..replies import REPLY_TOKENS, chat_replies, scored
from ..vocab import add_chat_tokens
from .base import load_base
from .recipes import SFT_RECIPES, SFTRecipe
from .trainer import SFTTrainer

SFT_REPORT = "sft_eval.json"


@dataclass(frozen=True)
class SFTOptions:
    """What SFT is asked for beyond the shared options; None means the recipe's (resumed: the saved run's).
    `base`: pretrain, gpt2, a run folder, a checkpoint or a transformers folder; `data`: instruct or a JSON/JSONL
    file; `lora`: LoRA adapters instead of every weight (a dict, as settings.json holds it, is read too)."""

    base: str | None = None
    data: str | None = None
    pretraining_share: float | None = None
    system_prompt: str | None = None
    lora: LoRAOptions | None = None

    def __post_init__(self) -> None:
        if self.pretraining_share is not None and not 0 <= self.pretraining_share < 1:
            raise InputError(f"--pretraining-share must be at least 0 and below 1, got {self.pretraining_share:g} "
                             "(the rest of the batches are chat)")
        if isinstance(self.lora, dict):
            object.__setattr__(self, "lora", LoRAOptions(**{**self.lora, "targets": tuple(self.lora["targets"])}))


class SFTJob(Job):
    """SFT of `options.base` on the instruction records of `options.data`, by the profile's recipe."""

    command = "sft"
    files = (*Job.files, SFT_REPORT, ADAPTERS_FILE)
    report_name = SFT_REPORT
    reload_best = True

    def __init__(self, run: RunOptions, options: SFTOptions, on_record: Callable[[dict], None] = print_record):
        super().__init__(run.resolved(lambda profile: f"sft-{profile}"), options, given(run, options))
        self.on_record = on_record

    @property
    def recipe(self) -> SFTRecipe:
        return SFT_RECIPES[self.run.profile]

    def defaults(self) -> dict[str, Any]:
        return {"base": self.recipe.base, "data": "instruct", "pretraining_share": self.recipe.pretraining_share,
                "system_prompt": DEFAULT_SYSTEM_PROMPT}

    def recipe_values(self) -> dict[str, Any]:
        return {"epochs": self.recipe.epochs, "eval_prompts": self.recipe.eval_prompts,
                "lora_learning_rate": self.recipe.lora_learning_rate}

    def data(self, start: Start) -> None:
        records, self.source = load_records(self.options.data)
        self.split = split_three_ways(records)
        if self.run.max_seconds is not None:
            start.say(self._unbounded())
        self.texts = _chat_texts(self.split.train, self.options.system_prompt, self.source)

    def model(self, start: Start) -> tuple[Any, Any, TrainConfig]:
        self.base_model = None  # a new run's base as it came, for the plain-text baseline
        if start.saved is not None:
            self.description = f"resumed from {shown(self.run.out / 'last.pt')}"
            return (*model_to_resume(start.saved), self.resumed_train(start.saved))
        base_model, base_tokenizer, self.description = load_base(self.options.base, self.run, self.texts, start)
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

    def trainer(self, model, tokenizer, cfg: TrainConfig, start: Start) -> SFTTrainer:
        """The SFTTrainer over chat batches mixed with pretraining text; each evaluation also scores as many
        training answers as there are validation conversations (memorisation) and counts the passes over the chat
        data."""
        template = ChatTemplate(tokenizer)
        self._examples(template, model.config.block_size, start.say)
        if start.saved is None and self.recipe.epochs and self.run.max_steps is None:
            per_step = cfg.batch_size * cfg.grad_accum_steps * start.world.size
            epochs = round(self.recipe.epochs * len(self.train_examples) / per_step)
            cfg = cfg.override(max_steps=max(cfg.warmup_steps + 1, epochs))
        loader = self._loader(tokenizer, template, cfg, model.config.block_size, start.world)
        trainer = SFTTrainer(model, cfg, loader, out_dir=self.run.out, tokenizer=tokenizer,
                             device=start.device, callbacks=[self.on_record], world=start.world,
                             val_conversations=self.val_examples.rendered, template=template)
        train_sample, chat = self.train_examples.rendered[: len(self.val_examples)], self.chat_loader
        trainer.evaluators.update(
            train=lambda _: {"answer_loss": trainer.answer_loss(train_sample)},
            chat=lambda _: {"epochs": chat.epoch + chat.cursor / len(chat.order)})
        return trainer

    def _examples(self, template: ChatTemplate, block_size: int, say: Callable[[str], None]) -> None:
        """The three splits as conversations of at most `block_size` tokens; an error where one is left empty."""
        split, prompt = self.split, self.options.system_prompt
        self.train_examples = build_examples(split.train, template, block_size, prompt)
        self.val_examples = build_examples(split.validation, template, block_size, prompt)
        self.test_examples = test = build_examples(split.test, template, block_size, prompt)
        parts = {"train": self.train_examples, "validation (chooses best.pt)": self.val_examples,
                 "test (reported)": test}
        if empty := [name.split()[0] for name, part in parts.items() if not len(part)]:
            raise InstructDataError(f"{self.source} leaves no usable conversation for {empty[0]} ("
                                    + "; ".join(f"{name}: {part.describe()}" for name, part in parts.items()) + ")")
        say(f"data: {self.source}" + "".join(f"\n  {name}: {part.describe()}" for name, part in parts.items()))
        shown_prompts = self.recipe.eval_prompts
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
        return (f"fine-tuning {self.description} | {trainer.model.num_parameters():,} parameters | profile "
                f"{self.run.profile} | {cfg.max_steps} steps of {cfg.batch_size} x {start.world.size} | "
                f"{100 * (1 - share):.0f}% chat, {100 * share:.0f}% pretraining text | "
                f"{100 * self.chat_loader.padding_fraction():.1f}% padding | device {trainer.device} | run folder "
                f"{shown(self.run.out)}")

    def _unbounded(self) -> str:
        """The plan line of a run with a time budget: what --max-seconds does not bound, so that nobody waits."""
        extra, test = [], len(self.split.test)
        if self.options.base == "pretrain":
            extra.append(f"pretraining the small base first, unless {shown(self.run.out / 'base')} holds it "
                         f"({BASE_RECIPES[self.run.profile][1].max_steps:,} steps)")
        prompts = test if self.recipe.eval_prompts is None else min(test, self.recipe.eval_prompts)
        extra.append(f"the evaluations before and after (answer loss on up to {test} test conversations, "
                     f"greedy replies of up to {REPLY_TOKENS} tokens to {prompts} prompts)")
        return (f"plan: --max-seconds {self.run.max_seconds:g} bounds the fine-tuning steps only; on top of them come "
                + " and ".join(extra))

    def before(self, trainer: SFTTrainer, report: dict, world: World) -> None:
        test = self.test_examples
        if self.base_model is not None:  # a new run: the base as it came, asked in plain text
            report["baseline"] = _measure_plain(self.base_model, self.base_tokenizer, test.messages,
                                                self.prompts, self.references, trainer.cfg, trainer.device, world)
        report.update(profile=self.run.profile, base=self.description, data=self.source,
                      train=self.train_examples.counts, validation=self.val_examples.counts, test=test.counts,
                      before=_measure(trainer, test.rendered, self.prompts, self.references, world))

    def after(self, trainer: SFTTrainer, report: dict, world: World) -> None:
        if world.is_main and (lora := save_run_adapters(trainer.model, self.run.out, self.description)):
            report["lora"] = lora
        after = _measure(trainer, self.test_examples.rendered, self.prompts, self.references, world)
        report.update(after={**after, "checkpoint": "best.pt", "step": trainer.best_step,
                             "validation_answer_loss": trainer.best_score},
                      steps=trainer.step, sft_seconds=round(trainer.elapsed, 1))

    def epilogue(self, finished: Finished) -> str:
        report, out = finished.report, self.run.out
        before, after, baseline = report["before"], report["after"], report.get("baseline")
        plain = "" if baseline is None else f" (base in plain text: {baseline['answer_loss']:.4f})"
        return (f"answer-token loss on the {len(self.test_examples)} test conversations (they chose nothing): "
                f"{before['answer_loss']:.4f} before, {after['answer_loss']:.4f} after{plain}; best.pt is step "
                f"{after['step']}, the lowest answer loss on the {len(self.val_examples)} validation "
                f"conversations ({after['validation_answer_loss']:.4f})\n"
                f"replies ending with <|im_end|> within {REPLY_TOKENS} tokens: {100 * before['stop_rate']:.1f}% "
                f"before, {100 * after['stop_rate']:.1f}% after ({after['prompts']} test prompts, greedy)"
                + ("" if baseline is None else f"; the base in plain text ends {100 * baseline['stop_rate']:.1f}% "
                   "at a blank line or <|endoftext|>") + "\n"
                f"ROUGE-L against the reference answers: {after['rouge_l']:.3f} after"
                + ("" if baseline is None else f", {baseline['rouge_l']:.3f} for the base in plain text") + "\n"
                f"wall time {report['wall_seconds']:.0f} s; report in {shown(out / SFT_REPORT)}\n"
                f"next: python -m tinylm.chat --ckpt {shown(out)}   or   "
                f"python -m tinylm.serve --ckpt {shown(out)} --port 8000")


def sft(run: RunOptions = RunOptions(), options: SFTOptions = SFTOptions(), *, world: World | None = None,
        say: Callable[[str], None] = print, on_record: Callable[[dict], None] = print_record) -> dict:
    """Fine-tune `options.base` (default: the profile's: gpt2 on the gpu profile, a small base pretrained first on
    cpu and smoke) into `run.out` (default runs/sft-<profile>), and return the report that OUT/sft_eval.json keeps:
    answer-token loss, stop rate and overlap before and after, steps and seconds. Only rank 0 speaks and writes."""
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


def _measure(trainer: SFTTrainer, conversations: list, prompts: list[list[dict]], references: list[str],
             world: World) -> dict:
    """Answer-token loss on `conversations` (the test split); greedy replies to `prompts`, scored."""
    measured = {"answer_loss": trainer.answer_loss(conversations)}  # every rank: the sums are reduced across ranks
    if world.is_main:
        started = time.perf_counter()
        texts, stopped = chat_replies(trainer.model, trainer.template, prompts)
        measured.update(scored(texts, stopped, prompts, references, started))
    return measured


def _measure_plain(model, tokenizer, conversations: list[list[dict]], prompts: list[list[dict]],
                   references: list[str], cfg: TrainConfig, device, world: World) -> dict:
    """The base model asked in plain text (tinylm.posttrain.plain), measured as `_measure` measures the chat model."""
    model = model.to(device)
    total, count = answer_loss_sum(model, [render_plain(tokenizer, c) for c in conversations], cfg.eval_batch_size,
                                   device, tokenizer.eot_token, autocast(device, resolve_dtype(device, cfg.dtype)),
                                   tokenizer, rank=world.rank, world_size=world.size)
    total, count = all_reduce_sum([total, count], device)
    measured = {"answer_loss": total / count}
    if world.is_main:
        started = time.perf_counter()
        texts, stopped = plain_replies(model, tokenizer, prompts, REPLY_TOKENS)
        measured.update(scored(texts, stopped, prompts, references, started))
    return measured
