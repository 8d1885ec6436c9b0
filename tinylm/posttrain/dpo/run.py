"""Preference tuning of a chat model with DPO, through the one run skeleton: `dpo(run, options)`.

The base must be a chat model (an SFT run folder or checkpoint): its tokenizer has the chat tokens, and it is also
the frozen reference, whose log-probabilities of every pair are computed once before training and saved with the
run. The records (tinylm.data.preference) split three ways as SFT's instructions do, so that no held-out prompt was
trained on by either run: the validation pairs choose best.pt (the lowest DPO loss), the test pairs report. The base
(`before`, the reference itself) and best.pt (`after`) are measured alike on the test pairs: the preference summary
(tinylm.posttrain.dpo.objective) and the greedy replies, the share closer to the chosen answer than to the rejected
one by token F1, with its Wilson interval. OUT/dpo_eval.json keeps them; OUT also gets metrics.jsonl, best.pt,
last.pt and settings.json. With LoRA only the adapters train, at the recipe's LoRA learning rate (B starts at zero,
so the model starts as the reference); OUT/adapters.pt keeps best.pt's. `python -m tinylm.dpo` is the command line.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...config import TrainConfig
from ...data.preference import PreferenceDataError, build_pairs, load_preferences, split_preferences
from ...distributed import World
from ...errors import InputError
from ...eval.overlap import token_f1
from ...eval.uncertainty import wilson_interval
from ...model.gpt import GPT
from ...model.lora import ADAPTERS_FILE, LoRAOptions, save_run_adapters
from ...paths import runs_dir, shown
from ...runtime import autocast, resolve_dtype
from ...tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ChatTemplate, chat_token_ids
from ...train.checkpoint import CheckpointError, load_model, model_to_resume
from ...train.options import RunOptions, given
from ...train.progress import format_record
from ...train.run import Finished, Job, Start, run_job
from ..replies import REPLY_TOKENS, SHOWN_REPLIES, chat_replies
from .objective import pair_logprobs
from .recipes import DPO_RECIPES, DPORecipe
from .trainer import DPOTrainer, PairLoader

DPO_REPORT = "dpo_eval.json"


@dataclass(frozen=True)
class DPOOptions:
    """What DPO is asked for beyond the shared options; None means the recipe's (resumed: the saved run's).
    `base`: the chat model to tune, an SFT run folder or checkpoint (default runs/sft-<profile>); `data`: preference
    or a JSON/JSONL file; `beta`: how far the model may move from the base; `lora`: LoRA adapters instead of every
    weight (a dict, as settings.json holds it, is read too)."""

    base: str | Path | None = None
    data: str | None = None
    beta: float | None = None
    system_prompt: str | None = None
    lora: LoRAOptions | None = None

    def __post_init__(self) -> None:
        if self.base is not None:
            object.__setattr__(self, "base", str(self.base))
        if isinstance(self.lora, dict):
            object.__setattr__(self, "lora", LoRAOptions(**{**self.lora, "targets": tuple(self.lora["targets"])}))


class NotAChatModel(InputError):
    """--base is a model without the chat tokens: DPO starts from a chat (SFT) model."""


def load_chat_base(base: str | Path) -> tuple[GPT, object, str]:
    """(model with dropout off, tokenizer, description) of a chat model's run folder or checkpoint."""
    if not Path(base).exists():
        raise NotAChatModel(f"no chat model at {shown(base)}: DPO starts from a fine-tuned chat model; run python -m "
                            "tinylm.sft first and pass its --out as --base")
    model, tokenizer, _ = load_model(base)
    if tokenizer is None or chat_token_ids(tokenizer) is None:
        raise NotAChatModel(f"{shown(base)} is not a chat model (its tokenizer has no <|im_start|>/<|im_end|>): DPO "
                            "starts from a fine-tuned chat model; run python -m tinylm.sft first and pass its "
                            "--out as --base")
    policy = GPT(dataclasses.replace(model.config, dropout=0.0))  # tinylm.posttrain.dpo.trainer says why
    policy.load_state_dict(model.state_dict())
    return policy, tokenizer, shown(base)


def print_dpo_record(record: dict) -> None:
    """A trainer record as tinylm.train.progress prints it; an evaluation adds the validation preference accuracy."""
    line = format_record(record)
    if "preference_accuracy" in record:
        line += (f" | validation preference accuracy {100 * record['preference_accuracy']:.1f}% "
                 f"| margin {record['preference_margin']:+.3f}")
    print(line, flush=True)


def _measure(trainer: DPOTrainer, pairs, world: World) -> dict:
    """The preference summary on the test pairs (every rank) and, on rank 0, the greedy replies to the prompts of
    `pairs` scored against their chosen and rejected answers."""
    measured = {"preference": trainer.preference(trainer.test_pairs, trainer.test_reference)}
    if world.is_main:
        started = time.perf_counter()
        texts, _ = chat_replies(trainer.model, trainer.template, [p.prompt for p in pairs])
        to_chosen = [token_f1(t, p.chosen_text) for t, p in zip(texts, pairs)]
        to_rejected = [token_f1(t, p.rejected_text) for t, p in zip(texts, pairs)]
        closer = sum(c > r for c, r in zip(to_chosen, to_rejected))
        low, high = wilson_interval(closer, len(pairs))
        measured["replies"] = {
            "prompts": len(pairs), "closer_to_chosen": closer / len(pairs), "closer_low": low, "closer_high": high,
            "ties": sum(c == r for c, r in zip(to_chosen, to_rejected)),
            "f1_chosen": sum(to_chosen) / len(pairs), "f1_rejected": sum(to_rejected) / len(pairs),
            "seconds": round(time.perf_counter() - started, 1),
            "shown": [{"prompt": p.prompt[-1]["content"], "reply": t, "chosen": p.chosen_text,
                       "rejected": p.rejected_text} for p, t in zip(pairs[:SHOWN_REPLIES], texts)]}
    return measured


class DPOJob(Job):
    """DPO of the chat model `options.base` on the preference records of `options.data`, by the profile's recipe."""

    command = "dpo"
    files = (*Job.files, DPO_REPORT, ADAPTERS_FILE)
    report_name = DPO_REPORT
    reload_best = True

    def __init__(self, run: RunOptions, options: DPOOptions, on_record: Callable[[dict], None]):
        super().__init__(run.resolved(lambda profile: f"dpo-{profile}"), options, given(run, options))
        self.on_record = on_record

    @property
    def recipe(self) -> DPORecipe:
        return DPO_RECIPES[self.run.profile]

    def defaults(self) -> dict[str, Any]:
        return {"base": str(runs_dir() / f"sft-{self.run.profile}"), "data": "preference", "beta": self.recipe.beta,
                "system_prompt": DEFAULT_SYSTEM_PROMPT}

    def recipe_values(self) -> dict[str, Any]:
        return {"eval_prompts": self.recipe.eval_prompts, "lora_learning_rate": self.recipe.lora_learning_rate}

    def saved_options(self, saved: dict) -> dict[str, Any]:
        return {"beta": saved["dpo"]["beta"]}

    def data(self, start: Start) -> None:
        records, self.source = load_preferences(self.options.data)
        self.split = split_preferences(records)

    def model(self, start: Start) -> tuple[GPT, Any, TrainConfig]:
        if start.saved is not None:
            self.description = f"resumed from {shown(self.run.out / 'last.pt')}"
            return (*model_to_resume(start.saved), self.resumed_train(start.saved))
        model, tokenizer, self.description = load_chat_base(self.options.base)
        cfg = self.recipe.train
        if self.options.lora is not None:  # the chat tokens' rows were trained by SFT: only the adapters train here
            cfg, line = self.options.lora.adapt(model, cfg, self.recipe.lora_learning_rate)
            start.say(line)
        return model, tokenizer, cfg.override(**self.run.train_changes())

    def trainer(self, model: GPT, tokenizer, cfg: TrainConfig, start: Start) -> DPOTrainer:
        template = ChatTemplate(tokenizer)
        train, val, test = self._pairs(template, model.config.block_size, start.say)
        reference, val_reference, test_reference = self._references(model, template, cfg, start)
        self.loader = PairLoader(train.pairs, reference, cfg.batch_size, template.pad, seed=cfg.seed,
                                 rank=start.world.rank, world_size=start.world.size)
        return DPOTrainer(model, cfg, self.loader, out_dir=self.run.out, tokenizer=tokenizer,
                          device=start.device, callbacks=[self.on_record], world=start.world,
                          beta=self.options.beta, template=template, val_pairs=val.pairs,
                          val_reference=val_reference, test_pairs=test.pairs, test_reference=test_reference)

    def _pairs(self, template: ChatTemplate, block_size: int, say: Callable[[str], None]) -> tuple:
        """The three splits as pairs of conversations of at most `block_size` tokens; an error where one is empty."""
        self.train_pairs, self.val_pairs, self.test_pairs = parts = tuple(
            build_pairs(part, template, block_size, self.options.system_prompt)
            for part in (self.split.train, self.split.validation, self.split.test))
        named = dict(zip(("train", "validation (chooses best.pt)", "test (reported)"), parts))
        if empty := [name.split()[0] for name, part in named.items() if not len(part)]:
            raise PreferenceDataError(f"{self.source} leaves no usable pair for {empty[0]} ("
                                      + "; ".join(f"{name}: {part.describe()}" for name, part in named.items()) + ")")
        say(f"data: {self.source}" + "".join(f"\n  {name}: {part.describe()}" for name, part in named.items()))
        if self.run.max_seconds is not None:
            say(f"plan: --max-seconds {self.run.max_seconds:g} bounds the DPO steps only; the reference "
                f"log-probabilities and the measurements before and after ({len(self.test_pairs)} test pairs, greedy "
                f"replies of up to {REPLY_TOKENS} tokens) come on top")
        self.shown_pairs = self.test_pairs.pairs[: self.recipe.eval_prompts]
        return parts

    def _references(self, model: GPT, template: ChatTemplate, cfg: TrainConfig, start: Start) -> tuple:
        """The reference's log-probabilities of the train, validation and test pairs: the very numbers the saved run
        trained against, or the base's (frozen) computed now."""
        if start.saved is not None:
            saved = start.saved["dpo"]
            if saved.get("test_reference") is None:
                raise CheckpointError(f"{shown(self.run.out / 'last.pt')} comes from a DPO run without a test split "
                                      "(an older tinylm): its test pairs have no saved reference; start the run "
                                      "again with --overwrite")
            return saved["reference"], saved.get("val_reference", saved.get("held_out_reference")), \
                saved["test_reference"]
        clock, device = time.perf_counter(), start.device
        model.to(device)
        score = dict(pad_id=template.pad, batch_size=cfg.eval_batch_size, device=device,
                     autocast_ctx=autocast(device, resolve_dtype(device, cfg.dtype)),
                     vocab_limit=template.tokenizer.vocab_size)
        parts = (self.train_pairs, self.val_pairs, self.test_pairs)
        references = tuple(pair_logprobs(model, part.pairs, **score) for part in parts)
        start.say(f"reference log-probabilities of {sum(len(part) for part in parts):,} pairs (the base, frozen): "
                  f"{time.perf_counter() - clock:.1f} s")
        return references

    def header(self, trainer: DPOTrainer, start: Start) -> str:
        cfg = trainer.cfg
        return (f"DPO of {self.description} | beta {trainer.beta:g} | {trainer.model.num_parameters():,} parameters "
                f"| profile {self.run.profile} | {cfg.max_steps} steps of {cfg.batch_size} x "
                f"{trainer.grad_accum_steps} x {start.world.size} pairs | {100 * self.loader.padding_fraction():.1f}% "
                f"padding | device {trainer.device} | run folder {shown(self.run.out)}")

    def before(self, trainer: DPOTrainer, report: dict, world: World) -> None:
        report.update(profile=self.run.profile, base=self.description, data=self.source, beta=trainer.beta,
                      train=self.train_pairs.counts, validation=self.val_pairs.counts, test=self.test_pairs.counts,
                      before=_measure(trainer, self.shown_pairs, world))

    def after(self, trainer: DPOTrainer, report: dict, world: World) -> None:
        if world.is_main and (lora := save_run_adapters(trainer.model, self.run.out, self.description)):
            report["lora"] = lora
        report.update(after={**_measure(trainer, self.shown_pairs, world), "checkpoint": "best.pt",
                             "step": trainer.best_step, "validation_loss": trainer.best_score},
                      steps=trainer.step, dpo_seconds=round(trainer.elapsed, 1))

    def epilogue(self, finished: Finished) -> str:
        return _epilogue(finished.report, self.run.out)


def dpo(run: RunOptions = RunOptions(), options: DPOOptions = DPOOptions(), *, world: World | None = None,
        say: Callable[[str], None] = print, on_record: Callable[[dict], None] = print_dpo_record) -> dict:
    """Tune the chat model `options.base` (default runs/sft-<profile>, the SFT command's default run folder) with DPO
    into `run.out` (default runs/dpo-<profile>), and return the report OUT/dpo_eval.json keeps: the test preference
    accuracy, margins and greedy replies before and after, steps and seconds. Only rank 0 speaks and writes."""
    return run_job(DPOJob(run, options, on_record), world=world, say=say).report


def _epilogue(report: dict, out: Path) -> str:
    """What the run measured, where it went, and the next command."""
    before, after = report["before"], report["after"]
    pb, pa = before["preference"], after["preference"]
    rb, ra = before["replies"], after["replies"]
    return (f"test preference accuracy (implicit reward of chosen > rejected, {pa['pairs']} test pairs that chose "
            f"nothing): {100 * pb['accuracy']:.1f}% before (the reference itself: {pb['ties']} ties count half), "
            f"{100 * pa['accuracy']:.1f}% after (95% interval {100 * pa['accuracy_low']:.1f}-"
            f"{100 * pa['accuracy_high']:.1f}%); mean margin {pa['margin']:+.3f} (chosen reward "
            f"{pa['chosen_reward']:+.3f}, rejected {pa['rejected_reward']:+.3f}); best.pt is step {after['step']}, the "
            f"lowest DPO loss on the validation pairs ({after['validation_loss']:.4f})\n"
            f"the model's own preference (log-probability of chosen > rejected): "
            f"{100 * pb['likelihood_accuracy']:.1f}% before, {100 * pa['likelihood_accuracy']:.1f}% after\n"
            f"greedy replies closer to the chosen answer than to the rejected one (token F1, {ra['prompts']} test "
            f"prompts): {100 * rb['closer_to_chosen']:.1f}% before, {100 * ra['closer_to_chosen']:.1f}% after "
            f"({rb['ties']} and {ra['ties']} ties); their mean token F1 against the chosen answers: "
            f"{rb['f1_chosen']:.3f} before, {ra['f1_chosen']:.3f} after\n"
            f"{report['steps']} steps in {report['dpo_seconds']:.0f} s of training, wall time "
            f"{report['wall_seconds']:.0f} s; report in {shown(out / DPO_REPORT)}\n"
            f"next: python -m tinylm.chat --ckpt {shown(out)}")
