"""Preference tuning of a chat model with DPO, through the same Trainer as pretraining and SFT: `dpo(...)`.

The base must be a chat model (an SFT run, `python -m tinylm.finetune`'s --out, or one of its checkpoints): its
tokenizer has the chat tokens, and it is also the frozen reference. The records are tinylm.data.preference's,
split three ways as SFT split its instructions, so the held-out prompts are ones neither run trained on: the
validation pairs choose (every evaluation scores their DPO loss; best.pt is the lowest), the test pairs report.

Two models are measured the same way on the test pairs: the base (`before`, which is the reference, so its implicit
rewards are all 0) and best.pt (`after`, which also keeps its step and the validation loss that chose it):
`tinylm.posttrain.dpo.preference_summary` (DPO loss, preference accuracy with its Wilson interval, mean margin and
rewards, the model's own preference), and the greedy replies to the test prompts: the share that is closer to the
chosen answer than to the rejected one by token F1 (tinylm.eval.overlap), with its Wilson interval, ties apart.
OUT/dpo_eval.json keeps them, with a few replies, and the seconds. OUT also gets metrics.jsonl, best.pt and last.pt
as every Trainer run writes them, under the same rules: one run per folder (run lock), --resume continues exactly,
--overwrite keeps the old run until the new one has a checkpoint. `python -m tinylm.dpo` is the command line
(tinylm/cli/dpo.py).

LoRA composes with DPO (`lora=LoRAOptions(...)`, tinylm.model.lora, as in finetune): the base, merged if its own SFT
used LoRA, stays frozen and only the adapters train, at the recipe's LoRA learning rate (B starts at zero, so the
wrapped model starts as the reference: every margin 0). The reference needs no copy in memory here, LoRA or not,
since its log-probabilities are computed once before training. The checkpoints keep the adapters apart (resume
continues them, `load_model` merges them) and OUT/adapters.pt keeps best.pt's alone.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from ..config import TrainConfig
from ..data.preference import PreferenceDataError, build_pairs, load_preferences, split_preferences
from ..distributed import World
from ..errors import InputError
from ..eval.overlap import token_f1
from ..eval.uncertainty import wilson_interval
from ..model.gpt import GPT
from ..model.lora import ADAPTERS_FILE, LoRAOptions, save_run_adapters
from ..paths import runs_dir, shown
from ..runtime import autocast, resolve_dtype, resolve_profile
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ChatTemplate, chat_token_ids
from ..train.checkpoint import CheckpointError, load_model, model_to_resume
from ..train.progress import format_record
from ..train.run import Finished, Job, run_job
from ..train.trainer import RUN_FILES
from .dpo import DPO_RECIPES, DPOTrainer, PairLoader, pair_logprobs
from .sft import stop_rate
from .sft_run import REPLY_TOKENS, SHOWN_REPLIES

DPO_REPORT = "dpo_eval.json"


class NotAChatModel(InputError):
    """--base is a model without the chat tokens: DPO starts from a chat (SFT) model."""


def load_chat_base(base: str | Path) -> tuple[GPT, object, str]:
    """(model with dropout off, tokenizer, description) of a chat model's run folder or checkpoint."""
    if not Path(base).exists():
        raise NotAChatModel(f"no chat model at {shown(base)}: DPO starts from a fine-tuned chat model; run python -m "
                            "tinylm.finetune first and pass its --out as --base")
    model, tokenizer, _ = load_model(base)
    if tokenizer is None or chat_token_ids(tokenizer) is None:
        raise NotAChatModel(f"{shown(base)} is not a chat model (its tokenizer has no <|im_start|>/<|im_end|>): DPO "
                            "starts from a fine-tuned chat model; run python -m tinylm.finetune first and pass its "
                            "--out as --base")
    policy = GPT(dataclasses.replace(model.config, dropout=0.0))  # tinylm.posttrain.dpo says why
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
        _, replies = stop_rate(trainer.model, trainer.template, [p.prompt for p in pairs], REPLY_TOKENS)
        texts = [trainer.tokenizer.decode(r) for r in replies]
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


class PreferenceTuning(Job):
    """DPO of the chat model `base` on the preference records of `data`; `train` overrides fields of the recipe's
    TrainConfig.

    It takes what `dpo` resolved (eleven settings, as the command has options).
    """

    files = (*RUN_FILES, DPO_REPORT, ADAPTERS_FILE)
    report_name = DPO_REPORT
    reload_best = True

    def __init__(self, profile: str, base: Path, data: str, out: Path, beta: float | None, resume: bool,
                 overwrite: bool, train: dict, system_prompt: str, lora: LoRAOptions | None,
                 on_record: Callable[[dict], None]):
        super().__init__(out, resume, overwrite)
        self.profile, self.recipe, self.base, self.data, self.beta = profile, DPO_RECIPES[profile], base, data, beta
        self.overrides, self.system_prompt, self.lora, self.on_record = train, system_prompt, lora, on_record

    def start(self, saved, device, world, say) -> DPOTrainer:
        recipe, out, beta = self.recipe, self.out, self.beta
        records, source = load_preferences(self.data)
        split = split_preferences(records)
        if saved is not None:
            saved_beta = saved["dpo"]["beta"]
            if beta is not None and beta != saved_beta:
                raise InputError(f"--beta {beta:g}: the run in {shown(out)} trains with beta {saved_beta:g}; resume "
                                 "it without --beta, or start another run (--out)")
            beta = saved_beta
            model, tokenizer = model_to_resume(saved)
            self.description = f"resumed from {shown(out / 'last.pt')}"
            cfg = TrainConfig.from_dict(saved["train_config"])
        else:
            model, tokenizer, self.description = load_chat_base(self.base)
            cfg = recipe.train
            if self.lora is not None:  # the chat tokens' rows were trained by SFT: only the adapters train here
                cfg, line = self.lora.adapt(model, cfg, recipe.lora_learning_rate)
                say(line)
        beta = recipe.beta if beta is None else beta
        cfg = cfg.override(**self.overrides)
        template = ChatTemplate(tokenizer)
        block_size = model.config.block_size
        train_pairs, val_pairs, test_pairs = (build_pairs(part, template, block_size, self.system_prompt)
                                               for part in (split.train, split.validation, split.test))
        parts = {"train": train_pairs, "validation (chooses best.pt)": val_pairs, "test (reported)": test_pairs}
        if empty := [name.split()[0] for name, part in parts.items() if not len(part)]:
            raise PreferenceDataError(f"{source} leaves no usable pair for {empty[0]} ("
                                      + "; ".join(f"{name}: {part.describe()}" for name, part in parts.items()) + ")")
        say(f"data: {source}" + "".join(f"\n  {name}: {part.describe()}" for name, part in parts.items()))
        if max_seconds := self.overrides.get("max_seconds"):
            say(f"plan: --max-seconds {max_seconds:g} bounds the DPO steps only; the reference log-probabilities and "
                f"the measurements before and after ({len(test_pairs)} test pairs, greedy replies of up to "
                f"{REPLY_TOKENS} tokens) come on top")
        if saved is not None:  # the very numbers the interrupted run trained against
            reference, val_reference = saved["dpo"]["reference"], saved["dpo"]["held_out_reference"]
            test_reference = saved["dpo"].get("test_reference")
            if test_reference is None:
                raise CheckpointError(f"{shown(out / 'last.pt')} comes from a DPO run without a test split (an older "
                                      "tinylm): its test pairs have no saved reference; start the run again with "
                                      "--overwrite")
        else:
            clock = time.perf_counter()
            model.to(device)
            score = dict(pad_id=template.pad, batch_size=cfg.eval_batch_size, device=device,
                         autocast_ctx=autocast(device, resolve_dtype(device, cfg.dtype)),
                         vocab_limit=tokenizer.vocab_size)
            reference, val_reference, test_reference = (pair_logprobs(model, part.pairs, **score)
                                                        for part in (train_pairs, val_pairs, test_pairs))
            say(f"reference log-probabilities of {len(train_pairs) + len(val_pairs) + len(test_pairs):,} pairs (the "
                f"base, frozen): {time.perf_counter() - clock:.1f} s")
        loader = PairLoader(train_pairs.pairs, reference, cfg.batch_size, template.pad, seed=cfg.seed,
                            rank=world.rank, world_size=world.size)
        trainer = DPOTrainer(model, cfg, loader, out_dir=out, tokenizer=tokenizer, device=device,
                             callbacks=[self.on_record], world=world, beta=beta, template=template,
                             val_pairs=val_pairs.pairs, val_reference=val_reference, test_pairs=test_pairs.pairs,
                             test_reference=test_reference)
        say(f"DPO of {self.description} | beta {beta:g} | {model.num_parameters():,} parameters | profile "
            f"{self.profile} | {cfg.max_steps} steps of {cfg.batch_size} x {trainer.grad_accum_steps} x {world.size} "
            f"pairs | {100 * loader.padding_fraction():.1f}% padding | device {trainer.device} | run folder "
            f"{shown(out)}")
        self.source, self.used_beta = source, beta
        self.train_pairs, self.val_pairs, self.test_pairs = train_pairs, val_pairs, test_pairs
        self.shown_pairs = test_pairs.pairs[: recipe.eval_prompts]
        return trainer

    def before(self, trainer: DPOTrainer, report: dict, world: World) -> None:
        report.update(profile=self.profile, base=self.description, data=self.source, beta=self.used_beta,
                      train=self.train_pairs.counts, validation=self.val_pairs.counts, test=self.test_pairs.counts,
                      before=_measure(trainer, self.shown_pairs, world))

    def after(self, trainer: DPOTrainer, report: dict, world: World) -> None:
        if world.is_main and (lora := save_run_adapters(trainer.model, self.out, self.description)):
            report["lora"] = lora
        report.update(after={**_measure(trainer, self.shown_pairs, world), "checkpoint": "best.pt",
                             "step": trainer.best_step, "validation_loss": trainer.best_score},
                      steps=trainer.step, dpo_seconds=round(trainer.elapsed, 1))

    def epilogue(self, finished: Finished) -> str:
        return _epilogue(finished.report, self.out)


def dpo(profile: str | None = None, *, base: str | Path | None = None, data: str = "preference",
        out: str | Path | None = None, beta: float | None = None, resume: bool = False, overwrite: bool = False,
        max_steps: int | None = None, max_seconds: float | None = None, learning_rate: float | None = None,
        batch_size: int | None = None, seed: int | None = None, device: str | None = None, dtype: str | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT, lora: LoRAOptions | None = None, world: World | None = None,
        say: Callable[[str], None] = print, on_record: Callable[[dict], None] = print_dpo_record) -> dict:
    """Tune the chat model `base` (default runs/chat-<profile>, finetune's default --out) with DPO on the preference
    records of `data` into `out` (default runs/dpo-<profile>), and return the report OUT/dpo_eval.json keeps: the
    test preference accuracy, margins and greedy replies before and after, steps and seconds. beta and the
    options override the profile's recipe (tinylm.posttrain.dpo.DPO_RECIPES; None: the recipe's); `lora` trains
    adapters instead of every weight (a resumed run keeps the settings it was started with). Only rank 0 speaks and
    writes.

    The keyword arguments are the command's options, one for one (tinylm/cli/dpo.py), hence their number.
    """
    profile = resolve_profile(profile)
    train = {"max_steps": max_steps, "max_seconds": max_seconds, "learning_rate": learning_rate,
             "batch_size": batch_size, "seed": seed, "dtype": dtype}
    job = PreferenceTuning(profile, Path(base) if base is not None else runs_dir() / f"chat-{profile}", data,
                           Path(out) if out is not None else runs_dir() / f"dpo-{profile}", beta, resume, overwrite,
                           {k: v for k, v in train.items() if v is not None}, system_prompt, lora, on_record)
    return run_job(job, device=device, world=world, say=say).report


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
            f"{report['wall_seconds']:.0f} s; report in {shown(out / 'dpo_eval.json')}\n"
            f"next: python -m tinylm.chat --ckpt {shown(out)}")
