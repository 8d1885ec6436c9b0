"""Preference tuning of a chat model with DPO, through the one run skeleton: `dpo(run, options)`.

The base is a chat model (an SFT run folder or checkpoint) and the frozen reference, whose log-probabilities of every
pair are computed once before training and saved with the run. Two tasks. `stories`: pairs made on-policy by the
story verifier (tinylm.posttrain.dpo.on_policy) from training and validation instructions, kept in OUT/pairs.json;
the validation pass rate chooses best.pt; the report gives the pass rate of greedy replies to the test instructions
before (the SFT model) and after (best.pt), and the answer loss of the test stories (is the story-telling kept?).
`preference`: the records (tinylm.data.preference) split three ways as SFT's instructions do; the validation pairs
choose best.pt (the lowest DPO loss); the test pairs report the preference summary (tinylm.posttrain.dpo.objective)
and the share of greedy replies closer to the chosen answer by token F1, with its Wilson interval. OUT/dpo_eval.json
keeps the figures, beside metrics.jsonl, best.pt, last.pt and settings.json. With LoRA only the adapters train, at
the recipe's LoRA learning rate (B starts at zero: the model starts as the reference); OUT/adapters.pt keeps best.pt's.
`python -m tinylm.dpo` is the command line.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...config import TrainConfig
from ...data.preference import PreferenceDataError, build_pairs, load_preferences, split_preferences
from ...distributed import World
from ...errors import InputError
from ...model.gpt import GPT
from ...model.lora import ADAPTERS_FILE, LoRAOptions, save_run_adapters
from ...paths import runs_dir, shown
from ...runtime import autocast, resolve_dtype
from ...tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ChatTemplate, chat_token_ids
from ...train.checkpoint import CheckpointError, load_model, model_to_resume
from ...train.options import RunOptions, given
from ...train.progress import format_record
from ...train.run import Finished, Job, Start, run_job
from ..replies import REPLY_TOKENS
from ..stories import load_story_task, story_verifier, verifier_base
from .objective import pair_logprobs
from .on_policy import PAIRS_FILE, on_policy_pairs, read_pairs, write_pairs
from .recipes import DPO_RECIPES, TASKS, DPORecipe, default_task
from .report import DPO_REPORT, preference_epilogue, preference_measure, story_epilogue, story_measure
from .trainer import DPOTrainer, PairLoader, VerifiedDPOTrainer


@dataclass(frozen=True)
class DPOOptions:
    """What DPO is asked for beyond the shared options; None means the recipe's (resumed: the saved run's).
    `task`: stories (pairs the verifier makes from the model's replies; the default on cpu and smoke) or preference;
    `base`: the chat model to tune, an SFT run folder or checkpoint (default runs/sft-stories-<profile> or
    runs/sft-instruct-<profile>); `data`: preference or a JSON/JSONL file, or for stories a stories run whose pairs
    to train on (sampled from the same base; default: sample new ones); `beta`: how far the model may move from the
    base; `lora`: LoRA adapters instead of every weight (a dict, as settings.json holds it, is read too)."""

    task: str | None = None
    base: str | Path | None = None
    data: str | None = None
    beta: float | None = None
    system_prompt: str | None = None
    lora: LoRAOptions | None = None

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise InputError(f"--task {self.task}: DPO's tasks are {' and '.join(TASKS)}")
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
    """A trainer record as tinylm.train.progress prints it; an evaluation adds the validation pass rate (the story
    task's, which best.pt follows) and preference accuracy."""
    if "pass_rate" in record:
        line = (f"{record['event']:>5} step {record['step']:>6} | validation pass rate "
                f"{100 * record['pass_rate']:.1f}% | best {100 * record['best_pass_rate']:.1f}% "
                f"| DPO loss {record['val_loss']:.4f}")
    else:
        line = format_record(record)
    if "preference_accuracy" in record:
        line += (f" | validation preference accuracy {100 * record['preference_accuracy']:.1f}% "
                 f"| margin {record['preference_margin']:+.3f}")
    print(line, flush=True)


class DPOJob(Job):
    """DPO of the chat model `options.base` on `options.task`'s pairs, by the task's and profile's recipe."""

    command = "dpo"
    files = (*Job.files, DPO_REPORT, ADAPTERS_FILE, PAIRS_FILE)
    report_name = DPO_REPORT
    reload_best = True

    def __init__(self, run: RunOptions, options: DPOOptions, on_record: Callable[[dict], None]):
        def folder(profile: str) -> str:
            return f"dpo-{options.task or default_task(profile)}-{profile}"

        super().__init__(run.resolved(folder), options, given(run, options))
        self.on_record = on_record

    @property
    def stories(self) -> bool:
        return self.options.task == "stories"

    @property
    def prompt(self) -> str:
        return self.options.system_prompt

    @property
    def recipe(self) -> DPORecipe:
        return DPO_RECIPES[self.options.task][self.run.profile]

    def settle(self, saved: dict[str, Any]) -> None:
        self.saved_task = saved.get("task", "preference" if saved else None)  # before the story task: preference
        super().settle(saved)

    def defaults(self) -> dict[str, Any]:
        task = self.options.task or self.saved_task or default_task(self.run.profile)
        sft_run = f"sft-{'stories' if task == 'stories' else 'instruct'}-{self.run.profile}"
        return {"task": task, "base": str(runs_dir() / sft_run), "data": None if task == "stories" else "preference",
                "beta": DPO_RECIPES[task][self.run.profile].beta, "system_prompt": DEFAULT_SYSTEM_PROMPT}

    def recipe_values(self) -> dict[str, Any]:
        values = {"lora_learning_rate": self.recipe.lora_learning_rate}
        if self.stories:
            return {**values, "instructions": self.recipe.instructions, "samples": self.recipe.samples,
                    "held_out": self.recipe.held_out}
        return {**values, "eval_prompts": self.recipe.eval_prompts}

    def saved_options(self, saved: dict) -> dict[str, Any]:
        return {"beta": saved["dpo"]["beta"]}

    def data(self, start: Start) -> None:
        if self.stories:
            task, held_out = load_story_task(), self.recipe.held_out
            self.train_instructions, self.val_instructions, self.test_instructions = (
                task.train, task.validation[:held_out], task.test[:held_out])
            return
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
        if self.stories:
            self.verifier_at = verifier_base(self.options.base, self.run.profile)
            self.verifier = story_verifier(self.verifier_at)
            self._story_pairs(model, template, cfg, start)
        else:
            self._pairs(template, model.config.block_size, start.say)
        reference, val_reference, test_reference = self._references(model, template, cfg, start)
        self.loader = PairLoader(self.train_pairs.pairs, reference, cfg.batch_size, template.pad, seed=cfg.seed,
                                 rank=start.world.rank, world_size=start.world.size)
        common = dict(out_dir=self.run.out, tokenizer=tokenizer, device=start.device, callbacks=[self.on_record],
                      world=start.world, beta=self.options.beta, template=template, val_pairs=self.val_pairs.pairs,
                      val_reference=val_reference)
        if self.stories:
            return VerifiedDPOTrainer(model, cfg, self.loader, verifier=self.verifier, system_prompt=self.prompt,
                                      val_instructions=self.val_instructions, **common)
        return DPOTrainer(model, cfg, self.loader, test_pairs=self.test_pairs.pairs, test_reference=test_reference,
                          **common)

    def _story_pairs(self, model: GPT, template: ChatTemplate, cfg: TrainConfig, start: Start) -> None:
        """The on-policy pairs of a recipe-sized draw of the training instructions and of the validation ones:
        sampled now from the starting model, or those of another run from it (--data), or (resumed) the run's own."""
        names = ("train", "validation")
        if start.saved is not None:
            self.sampled, self.sampled_by = read_pairs(self.run.out / PAIRS_FILE, names, "the pairs this run "
                                                       "trained on are lost, so it cannot resume; start it again "
                                                       "with --overwrite")
        elif self.options.data is not None:
            self.sampled = self._pairs_of_another_run(Path(self.options.data))
        else:
            clock, recipe, block_size = time.perf_counter(), self.recipe, model.config.block_size
            model.to(start.device)
            train = self.train_instructions
            if recipe.instructions is not None and recipe.instructions < len(train):
                train = random.Random(cfg.seed).sample(train, recipe.instructions)
            self.sampled = {name: on_policy_pairs(model, template, self.verifier, instructions, recipe.samples,
                                                  cfg.seed + offset, self.prompt, block_size, f"{name} replies")
                            for offset, (name, instructions) in enumerate(zip(names, (train, self.val_instructions)))}
            start.say(f"on-policy pairs sampled from the starting model in {time.perf_counter() - clock:.0f} s")
            self.sampled_by = {"base": self.base_path, "seed": cfg.seed, "samples": recipe.samples}
        block_size = model.config.block_size
        self.train_pairs, self.val_pairs = (build_pairs(self.sampled[name].records, template, block_size, self.prompt)
                                            for name in ("train", "validation"))
        if not len(self.train_pairs) or not len(self.val_pairs):
            raise InputError("the starting model's replies gave no pair for "
                             f"{'training' if not len(self.train_pairs) else 'validation'} (every reply passed, or "
                             "every reply failed): DPO needs both; start from another SFT run (--base)")
        start.say("on-policy pairs (chosen: a reply the verifier ranks highest, a pass where one passed; rejected: a "
                  "failing one it ranks lowest):"
                  + "".join(f"\n  {name}: {part.describe()}" for name, part in self.sampled.items()))
        if self.run.max_seconds is not None:
            start.say(f"plan: --max-seconds {self.run.max_seconds:g} bounds the DPO steps only; the pairs, the "
                      "reference log-probabilities and the measurements before and after "
                      f"({len(self.test_instructions)} test instructions, greedy replies) come on top")

    @property
    def base_path(self) -> str:
        return str(Path(self.options.base).resolve())

    def _pairs_of_another_run(self, given: Path) -> dict:
        """The pairs of the stories run (folder or pairs.json) at `given`, which must have sampled them from this
        run's base: pairs from another model are not on-policy."""
        path = given / PAIRS_FILE if given.is_dir() else given
        sampled, self.sampled_by = read_pairs(path, ("train", "validation"), "--data takes a DPO stories run folder "
                                              "(or its pairs.json), whose pairs this run trains on")
        if self.sampled_by.get("base") != self.base_path:
            raise InputError(f"--data {shown(given)}: its pairs were sampled from {self.sampled_by.get('base')}, not "
                             f"from --base {shown(self.options.base)}; on-policy pairs come from the model DPO starts "
                             "from: pass that run's base, or leave --data out to sample new pairs")
        return sampled

    def _pairs(self, template: ChatTemplate, block_size: int, say: Callable[[str], None]) -> None:
        """The three splits as pairs of conversations of at most `block_size` tokens; an error where one is empty."""
        self.train_pairs, self.val_pairs, self.test_pairs = parts = tuple(
            build_pairs(part, template, block_size, self.prompt)
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

    def _references(self, model: GPT, template: ChatTemplate, cfg: TrainConfig, start: Start) -> tuple:
        """The reference's log-probabilities of the train, validation and (preference) test pairs: the very numbers
        the saved run trained against, or the base's (frozen) computed now."""
        if start.saved is not None:
            saved = start.saved["dpo"]
            if saved.get("test_reference") is None and not self.stories:
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
        parts = (self.train_pairs, self.val_pairs) + (() if self.stories else (self.test_pairs,))
        references = tuple(pair_logprobs(model, part.pairs, **score) for part in parts)
        start.say(f"reference log-probabilities of {sum(len(part) for part in parts):,} pairs (the base, frozen): "
                  f"{time.perf_counter() - clock:.1f} s")
        return references if not self.stories else (*references, None)

    def header(self, trainer: DPOTrainer, start: Start) -> str:
        cfg = trainer.cfg
        return (f"DPO ({self.options.task}) of {self.description} | beta {trainer.beta:g} | "
                f"{trainer.model.num_parameters():,} parameters | profile {self.run.profile} | {cfg.max_steps} steps "
                f"of {cfg.batch_size} x {trainer.grad_accum_steps} x {start.world.size} pairs | "
                f"{100 * self.loader.padding_fraction():.1f}% padding | device {trainer.device} | run folder "
                f"{shown(self.run.out)}")

    def before(self, trainer: DPOTrainer, report: dict, world: World) -> None:
        report.update(profile=self.run.profile, task=self.options.task, base=self.description, beta=trainer.beta)
        if not self.stories:
            report.update(data=self.source, train=self.train_pairs.counts, validation=self.val_pairs.counts,
                          test=self.test_pairs.counts, before=preference_measure(trainer, self.shown_pairs, world))
            return
        if world.is_main:
            write_pairs(self.run.out, self.sampled, self.sampled_by)
        measured = story_measure(trainer, self.verifier, self.test_instructions, self.prompt, world)
        report.update(verifier={"base": str(self.verifier_at), "max_loss": self.verifier.max_loss},
                      pairs={name: part.counts for name, part in self.sampled.items()},
                      pass_rate={"before": measured.pop("pass_rate", None)}, before=measured)

    def after(self, trainer: DPOTrainer, report: dict, world: World) -> None:
        if world.is_main and (lora := save_run_adapters(trainer.model, self.run.out, self.description)):
            report["lora"] = lora
        chosen = {"checkpoint": "best.pt", "step": trainer.best_step}
        if self.stories:
            measured = story_measure(trainer, self.verifier, self.test_instructions, self.prompt, world)
            report["pass_rate"]["after"] = measured.pop("pass_rate", None)
            report["after"] = {**measured, **chosen, "validation_pass_rate": trainer.best_score,
                               "validation_preference": trainer.preference(trainer.val_pairs, trainer.val_reference)}
        else:
            report["after"] = {**preference_measure(trainer, self.shown_pairs, world), **chosen,
                               "validation_loss": trainer.best_score}
        report.update(steps=trainer.step, dpo_seconds=round(trainer.elapsed, 1))

    def epilogue(self, finished: Finished) -> str:
        return (story_epilogue if self.stories else preference_epilogue)(finished.report, self.run.out)


def dpo(run: RunOptions = RunOptions(), options: DPOOptions = DPOOptions(), *, world: World | None = None,
        say: Callable[[str], None] = print, on_record: Callable[[dict], None] = print_dpo_record) -> dict:
    """Tune the chat model `options.base` (default runs/sft-<task>-<profile>, the SFT command's default run folder)
    with DPO into `run.out` (default runs/dpo-<task>-<profile>), and return the report OUT/dpo_eval.json keeps:
    stories: the test pass rate before and after ("pass_rate") and the answer loss of the test stories; preference:
    the test preference accuracy, margins and greedy replies before and after; steps and seconds. Only rank 0 speaks
    and writes."""
    return run_job(DPOJob(run, options, on_record), world=world, say=say).report
