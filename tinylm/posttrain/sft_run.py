"""Chat fine-tuning (SFT) of a pretrained model, through the same Trainer as pretraining: `finetune(...)`.

The base gets the chat tokens (`tinylm.posttrain.vocab.add_chat_tokens`) when it lacks them; every record becomes a
ChatML conversation with the loss on its answer only; a share of the batches (`pretraining_share`) is pretraining
text, so the model keeps its language.

Two held-out splits (tinylm.data.instruct.split_three_ways), neither ever trained on. The validation conversations
choose: every evaluation scores their answer tokens' loss, and best.pt is the lowest; each eval record also carries
the loss on as many training conversations' answers (`train_answer_loss`: the gap between the two is memorisation)
and the passes made over the training conversations (`chat_epochs`). The test conversations report: three models are
measured the same way on them, and on nothing else: the base asked in plain text (`baseline`,
tinylm.posttrain.plain: the fair comparison), the base with the chat tokens asked in ChatML (`before`) and best.pt
(`after`, which also keeps its step and the validation loss that chose it): answer loss, the share of greedy replies
that end within REPLY_TOKENS, and each reply's token F1 and ROUGE-L against the reference answer
(tinylm.eval.overlap). OUT/chat_eval.json keeps them, with a few replies, and the wall time. OUT also gets
metrics.jsonl, best.pt and last.pt, as `tinylm.train.run.train` writes them, and an overwritten run survives a new
one that fails before its first checkpoint, as there.

Bases: `gpt2` is OpenAI's GPT-2 124M from Hugging Face (online; offline, a folder saved by transformers or a tinylm
checkpoint made from one with `python -m tinylm.interop import`); a run folder or checkpoint; `pretrain` pretrains
the profile's small base first, in OUT/base (`tinylm.posttrain.chat_base` says why). `python -m tinylm.finetune` is the
command line (tinylm/cli/finetune.py).

LoRA (`lora=LoRAOptions(...)`, tinylm.model.lora): the base stays frozen and only low-rank adapters train, with
the new chat tokens' rows when the base lacked them, at the recipe's LoRA learning rate. The checkpoints keep
the adapters apart (resume continues them; `load_model` merges them, so chat, serve and export read best.pt
like any other) and OUT/adapters.pt keeps best.pt's adapters alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from ..config import TrainConfig
from ..data.conversations import ConversationLoader, MixtureLoader
from ..data.instruct import InstructDataError, build_examples, load_records, split_three_ways, to_messages
from ..data.tokens import RandomWindowSampler
from ..distributed import World, all_reduce_sum
from ..errors import InputError
from ..eval.loss import answer_loss_sum
from ..eval.overlap import rouge_l, token_f1
from ..model.lora import ADAPTERS_FILE, LoRAOptions, save_run_adapters
from ..paths import runs_dir, shown
from ..runtime import autocast, resolve_dtype, resolve_profile
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ROLES, ChatTemplate, chat_token_ids
from ..tokenizers.gpt2 import BPETokenizer
from ..train.checkpoint import CheckpointError, load_model, model_to_resume
from ..train.progress import print_record
from ..train.run import Finished, Job, run_job
from ..train.trainer import RUN_FILES
from .chat_base import BASE_RECIPES, BaseModelUnavailable, pretrain_base, pretraining_tokens
from .plain import PLAIN_PROMPT, plain_replies, render_plain
from .sft import SFT_RECIPES, ChatTrainer, stop_rate
from .vocab import add_chat_tokens

CHAT_REPORT = "chat_eval.json"
REPLY_TOKENS = 200  # a test reply "stops" when <|im_end|> comes within this many tokens
SHOWN_REPLIES = 3  # test prompts whose replies before and after SFT go into chat_eval.json


def load_base(base: str, profile: str, out: Path, instruction_texts: list[str], device, world: World,
              say: Callable[[str], None] = print):
    """(model, tokenizer, description) of --base."""
    if base == "pretrain":
        if profile not in BASE_RECIPES:
            raise InputError(f"--base pretrain trains the small base of the cpu and smoke profiles; the {profile} "
                             "profile starts from --base gpt2, a run folder or a checkpoint")
        checkpoint = pretrain_base(profile, out / "base", instruction_texts, device, world, say)
        model, tokenizer, _ = load_model(checkpoint)
        return model, tokenizer, f"small base pretrained in {shown(checkpoint.parent)}"
    if base == "gpt2" or (Path(base) / "config.json").is_file():
        from ..interop.hf_gpt2 import from_hf_gpt2

        how = ("Offline, point --base at a local copy: a folder saved by transformers (GPT2LMHeadModel."
               "save_pretrained: config.json and model.safetensors), or a tinylm checkpoint made from one with "
               "python -m tinylm.interop import --hf FOLDER --out gpt2.pt.")
        if base == "gpt2" and os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
            raise BaseModelUnavailable(f"--base gpt2 downloads OpenAI's GPT-2 124M from Hugging Face, but "
                                       f"HF_HUB_OFFLINE is set. {how}")
        try:
            return from_hf_gpt2(base), BPETokenizer("gpt2"), f"GPT-2 through transformers ({base})"
        except OSError as error:
            raise BaseModelUnavailable(f"could not load GPT-2 from {base!r}: it needs the network. {how}") from error
    model, tokenizer, _ = load_model(base)
    if tokenizer is None:
        raise CheckpointError(f"{shown(base)} carries no tokenizer; chat fine-tuning needs GPT-2's BPE tokenizer")
    return model, tokenizer, shown(base)


def _unbounded(profile: str, base: str, out: Path, test: int, eval_prompts: int | None,
               max_seconds: float) -> str:
    """The plan line of a run with a time budget: what --max-seconds does not bound, so that nobody waits for it."""
    extra = []
    if base == "pretrain":
        extra.append(f"pretraining the small base first, unless {shown(out / 'base')} holds it "
                     f"({BASE_RECIPES[profile][1].max_steps:,} steps)")
    prompts = test if eval_prompts is None else min(test, eval_prompts)
    extra.append(f"the evaluations before and after (answer loss on up to {test} test conversations, "
                 f"greedy replies of up to {REPLY_TOKENS} tokens to {prompts} prompts)")
    return (f"plan: --max-seconds {max_seconds:g} bounds the fine-tuning steps only; on top of them come "
            + " and ".join(extra))


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


def _scored(texts: list[str], stopped: list[bool], prompts: list[list[dict]], references: list[str],
            started: float) -> dict:
    """The stop rate, each reply's token F1 and ROUGE-L against its reference (and their means), a few replies."""
    f1 = [token_f1(t, r) for t, r in zip(texts, references)]
    lcs = [rouge_l(t, r) for t, r in zip(texts, references)]
    return {"stop_rate": sum(stopped) / max(1, len(stopped)), "stopped": sum(stopped), "prompts": len(prompts),
            "token_f1": sum(f1) / max(1, len(f1)), "rouge_l": sum(lcs) / max(1, len(lcs)),
            "scores": {"token_f1": f1, "rouge_l": lcs}, "seconds": round(time.perf_counter() - started, 1),
            "replies": [{"prompt": p[-1]["content"], "reply": t} for p, t in zip(prompts[:SHOWN_REPLIES], texts)]}


def _measure(trainer: ChatTrainer, conversations: list, prompts: list[list[dict]], references: list[str],
             world: World) -> dict:
    """Answer-token loss on `conversations` (the test split); greedy replies to `prompts`, scored."""
    measured = {"answer_loss": trainer.answer_loss(conversations)}  # every rank: the sums are reduced across ranks
    if world.is_main:
        started = time.perf_counter()
        _, replies = stop_rate(trainer.model, trainer.template, prompts, REPLY_TOKENS)
        texts = [trainer.tokenizer.decode(r) for r in replies]
        measured.update(_scored(texts, [len(r) < REPLY_TOKENS for r in replies], prompts, references, started))
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
        measured.update(_scored(texts, stopped, prompts, references, started))
    return measured


class FineTuning(Job):
    """SFT of `base` on the instruction records of `data`; `train` overrides fields of the recipe's TrainConfig.

    It takes what `finetune` resolved (eleven settings, as the command has options).
    """

    files = (*RUN_FILES, CHAT_REPORT, ADAPTERS_FILE)
    report_name = CHAT_REPORT
    reload_best = True

    def __init__(self, profile: str, base: str | None, data: str, out: Path, resume: bool, overwrite: bool,
                 train: dict, pretraining_share: float | None, system_prompt: str, lora: LoRAOptions | None,
                 on_record: Callable[[dict], None]):
        super().__init__(out, resume, overwrite)
        self.profile, self.recipe = profile, SFT_RECIPES[profile]
        self.base, self.data, self.overrides, self.system_prompt = base or self.recipe.base, data, train, system_prompt
        self.share = self.recipe.pretraining_share if pretraining_share is None else pretraining_share
        self.lora, self.on_record = lora, on_record

    def start(self, saved, device, world, say) -> ChatTrainer:
        records, self.source = load_records(self.data)
        split = split_three_ways(records)
        train_records, recipe, out = split.train, self.recipe, self.out
        if self.overrides.get("max_seconds") is not None:
            say(_unbounded(self.profile, self.base, out, len(split.test), recipe.eval_prompts,
                           self.overrides["max_seconds"]))
        texts = _chat_texts(train_records, self.system_prompt, self.source)
        self.base_model = None
        if saved is not None:
            model, tokenizer = model_to_resume(saved)
            self.description = f"resumed from {shown(out / 'last.pt')}"
            cfg = TrainConfig.from_dict(saved["train_config"])
        else:
            base_model, base_tokenizer, self.description = load_base(self.base, self.profile, out, texts, device,
                                                                     world, say)
            self.base_model, self.base_tokenizer = base_model, base_tokenizer  # for the plain-text baseline
            model, tokenizer = add_chat_tokens(base_model, base_tokenizer)
            if tokenizer is not base_tokenizer:
                say(f"added <|im_start|>, <|im_end|>, <|pad|>: vocabulary {base_tokenizer.vocab_size:,} -> "
                    f"{tokenizer.vocab_size:,} tokens, embedding {base_model.config.vocab_size:,} -> "
                    f"{model.config.vocab_size:,} rows (new rows: the mean token row)")
            cfg = recipe.train
            if self.lora is not None:
                # the chat tokens' rows train too when they were just added (they start equal: see tinylm.model.lora)
                new_rows = [] if tokenizer is base_tokenizer else chat_token_ids(tokenizer).values()
                cfg, line = self.lora.adapt(model, cfg, recipe.lora_learning_rate, token_ids=new_rows)
                say(line)
        template = ChatTemplate(tokenizer)
        block_size = model.config.block_size
        self.train_examples = build_examples(train_records, template, block_size, self.system_prompt)
        self.val_examples = val = build_examples(split.validation, template, block_size, self.system_prompt)
        self.test_examples = test = build_examples(split.test, template, block_size, self.system_prompt)
        parts = {"train": self.train_examples, "validation (chooses best.pt)": val, "test (reported)": test}
        if empty := [name.split()[0] for name, part in parts.items() if not len(part)]:
            raise InstructDataError(f"{self.source} leaves no usable conversation for {empty[0]} ("
                                    + "; ".join(f"{name}: {part.describe()}" for name, part in parts.items()) + ")")
        say(f"data: {self.source}" + "".join(f"\n  {name}: {part.describe()}" for name, part in parts.items()))
        self.prompts, self.references = test.prompts()[: recipe.eval_prompts], test.answers()[: recipe.eval_prompts]
        options = dict(self.overrides)
        if saved is None and recipe.epochs and options.get("max_steps") is None:
            per_step = options.get("batch_size", cfg.batch_size) * cfg.grad_accum_steps * world.size
            options["max_steps"] = max(cfg.warmup_steps + 1, round(recipe.epochs * len(self.train_examples) / per_step))
        cfg = cfg.override(**options)
        trainer = self._trainer(model, tokenizer, template, cfg, device, world)
        say(f"fine-tuning {self.description} | {model.num_parameters():,} parameters | profile {self.profile} | "
            f"{cfg.max_steps} steps of {cfg.batch_size} x {world.size} | {100 * (1 - self.share):.0f}% chat, "
            f"{100 * self.share:.0f}% pretraining text | {100 * self.chat_loader.padding_fraction():.1f}% padding | "
            f"device {trainer.device} | run folder {shown(out)}")
        return trainer

    def _trainer(self, model, tokenizer, template, cfg: TrainConfig, device, world) -> ChatTrainer:
        """The ChatTrainer over chat batches mixed with pretraining text; each evaluation also scores as many
        training answers as there are validation conversations (memorisation) and counts the passes over the chat
        data."""
        loader = self.chat_loader = ConversationLoader(self.train_examples.rendered, cfg.batch_size, template.pad,
                                                       seed=cfg.seed, rank=world.rank, world_size=world.size)
        if self.share > 0:
            text, _ = pretraining_tokens(tokenizer)
            windows = RandomWindowSampler(text, model.config.block_size, cfg.batch_size, cfg.seed, world.rank,
                                          world.size)
            loader = MixtureLoader({"chat": loader, "pretraining": windows},
                                   {"chat": 1 - self.share, "pretraining": self.share}, seed=cfg.seed)
        trainer = ChatTrainer(model, cfg, loader, out_dir=self.out, tokenizer=tokenizer, device=device,
                              callbacks=[self.on_record], world=world, val_conversations=self.val_examples.rendered,
                              template=template)
        train_sample, chat = self.train_examples.rendered[: len(self.val_examples)], self.chat_loader
        trainer.evaluators.update(
            train=lambda _: {"answer_loss": trainer.answer_loss(train_sample)},
            chat=lambda _: {"epochs": chat.epoch + chat.cursor / len(chat.order)})
        return trainer

    def before(self, trainer: ChatTrainer, report: dict, world: World) -> None:
        test = self.test_examples
        if self.base_model is not None:  # a new run: the base as it came, asked in plain text
            report["baseline"] = _measure_plain(self.base_model, self.base_tokenizer, test.messages,
                                                self.prompts, self.references, trainer.cfg, trainer.device, world)
        report.update(profile=self.profile, base=self.description, data=self.source,
                      train=self.train_examples.counts, validation=self.val_examples.counts, test=test.counts,
                      before=_measure(trainer, test.rendered, self.prompts, self.references, world))

    def after(self, trainer: ChatTrainer, report: dict, world: World) -> None:
        if world.is_main and (lora := save_run_adapters(trainer.model, self.out, self.description)):
            report["lora"] = lora
        after = _measure(trainer, self.test_examples.rendered, self.prompts, self.references, world)
        report.update(after={**after, "checkpoint": "best.pt", "step": trainer.best_step,
                             "validation_answer_loss": trainer.best_score},
                      steps=trainer.step, sft_seconds=round(trainer.elapsed, 1))

    def epilogue(self, finished: Finished) -> str:
        report, out = finished.report, self.out
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
                f"wall time {report['wall_seconds']:.0f} s; report in {shown(out / CHAT_REPORT)}\n"
                f"next: python -m tinylm.chat --ckpt {shown(out)}   or   "
                f"python -m tinylm.serve --ckpt {shown(out)} --port 8000")


def finetune(profile: str | None = None, *, base: str | None = None, data: str = "instruct",
             out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
             max_steps: int | None = None, max_seconds: float | None = None, learning_rate: float | None = None,
             pretraining_share: float | None = None, system_prompt: str = DEFAULT_SYSTEM_PROMPT,
             batch_size: int | None = None, seed: int | None = None, device: str | None = None,
             dtype: str | None = None, lora: LoRAOptions | None = None, world: World | None = None,
             say: Callable[[str], None] = print, on_record: Callable[[dict], None] = print_record) -> dict:
    """Fine-tune `base` (default: the profile's: gpt2 on a GPU profile, a small base pretrained first on cpu and
    smoke) on the instruction records of `data` into `out` (default runs/chat-<profile>), and return the report
    that OUT/chat_eval.json keeps: answer-token loss and stop rate before and after, steps and seconds.
    The options override the profile's SFT recipe (None: the recipe's); `lora` trains adapters instead of every
    weight (a resumed run keeps the settings it was started with). Only rank 0 speaks and writes.

    The keyword arguments are the command's options, one for one (tinylm/cli/finetune.py), hence their number.
    """
    profile = resolve_profile(profile)
    train = {"max_steps": max_steps, "max_seconds": max_seconds, "learning_rate": learning_rate,
             "batch_size": batch_size, "seed": seed, "dtype": dtype}
    job = FineTuning(profile, base, data, Path(out) if out is not None else runs_dir() / f"chat-{profile}", resume,
                     overwrite, {k: v for k, v in train.items() if v is not None}, pretraining_share, system_prompt,
                     lora, on_record)
    return run_job(job, device=device, world=world, say=say).report
