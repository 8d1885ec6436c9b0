"""Preference tuning of a chat model with DPO on a task, through the one run skeleton: `dpo(run, options)`.

The start is a chat model (an SFT run) and the frozen reference, whose log-probabilities of every pair are computed
once before training and saved with the run. The pairs are the task's own where it has them (preference), else made
on-policy by its check from the start's sampled replies (tinylm.posttrain.on_policy), kept in OUT/pairs.json so that
--resume, or another run from the same start (--data RUN), trains on the same ones. The validation split chooses
best.pt (the task's pass rate, or the DPO loss of its pairs); the report measures the test split before and after
(tinylm.posttrain.task.measure) with the preference figures of the held-out pairs. With LoRA only the adapters train
(B starts at zero: the model starts as the reference); OUT/adapters.pt keeps best.pt's.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Any, Callable

from ...config import TrainConfig
from ...data.preference import PreferenceDataError, build_pairs
from ...distributed import World
from ...model.gpt import GPT
from ...model.lora import ADAPTERS_FILE
from ...paths import shown
from ...runtime import autocast, resolve_dtype
from ...tokenizers.chat_template import ChatTemplate
from ...train.checkpoint import CheckpointError
from ...train.options import RunOptions
from ...train.run import Finished, Start, run_job
from ..chat_task import ChatTask
from ..job import PostTrainingJob, PostTrainingOptions
from ..on_policy import PAIRS_FILE, on_policy_pairs, own_pairs, read_pairs, write_pairs
from ..recipes import DPORecipe
from ..task import PostTrainingTask
from .objective import pair_logprobs
from .trainer import DPOTrainer, PairLoader

PARTS = ("train", "validation", "test")


class DPOJob(PostTrainingJob):
    """DPO of the chat model `options.base` on `options.task`'s pairs, by the task's recipe for the profile."""

    method, recipe_type, command = "dpo", DPORecipe, "dpo"
    task_type = ChatTask
    extra_files = (ADAPTERS_FILE, PAIRS_FILE)
    loss_name = "DPO loss"

    def make_task(self, task_type: type[PostTrainingTask]) -> PostTrainingTask:
        """A task with pairs of its own reads --data; for one whose pairs are made on-policy, --data names the run
        whose pairs to train on."""
        data = self.options.data if task_type.takes_data else None
        self.pairs_from = None if task_type.takes_data or self.options.data is None else Path(self.options.data)
        return task_type(self.run.profile, data, self.options.system_prompt)

    def data(self, start: Start) -> None:
        self.held = self.task.held_out(self.recipe.held_out, self.recipe.held_out)

    def model(self, start: Start) -> tuple[GPT, Any, TrainConfig]:
        if resumed := self.resumed(start):
            return resumed
        model = GPT(dataclasses.replace(self.start_model.config, dropout=0.0))  # the trainer's docstring says why
        model.load_state_dict(self.start_model.state_dict())
        self.start_model = None  # copied: the reference is its log-probabilities, computed once (trainer.py)
        # under LoRA only the adapters train: SFT trained the chat tokens' rows
        return model, self.start_tokenizer, self.with_lora(model, self.recipe.train, start.say)

    def trainer(self, model: GPT, tokenizer, cfg: TrainConfig, start: Start) -> DPOTrainer:
        template = ChatTemplate(tokenizer)
        records = self._pair_records(model, tokenizer, cfg, start)
        self.pairs = {part: build_pairs(records[part], template, model.config.block_size, self.task.system_prompt)
                      for part in records}
        if empty := [part for part in records if not len(self.pairs[part])]:
            raise PreferenceDataError(f"no pair for {empty[0]}: " + "; ".join(
                f"{part}: {pairs.describe()}" for part, pairs in self.pairs.items()) + (
                "" if self.on_policy is None else " (every reply passed, or every reply failed: DPO needs both; "
                "start from another SFT run, --base)"))
        start.say("pairs:" + "".join(f"\n  {part}: {pairs.describe()}" for part, pairs in self.pairs.items()))
        if self.run.max_seconds is not None:
            start.say(f"plan: --max-seconds {self.run.max_seconds:g} bounds the DPO steps only; the pairs, the "
                      "reference log-probabilities and the measurements before and after "
                      f"({len(self.held.test)} test problems, greedy replies) come on top")
        reference = self._references(model, template, cfg, start)
        self.loader = PairLoader(self.pairs["train"].pairs, reference["train"], cfg.batch_size, template.pad,
                                 seed=cfg.seed, rank=start.world.rank, world_size=start.world.size)
        test = self.pairs.get("test")
        return DPOTrainer(model, cfg, self.loader, out_dir=start.out, tokenizer=tokenizer, device=start.device,
                          callbacks=[self.on_record], world=start.world, beta=self.recipe.beta, template=template,
                          val_pairs=self.pairs["validation"].pairs, val_reference=reference["validation"],
                          test_pairs=test.pairs if test else (), test_reference=reference.get("test"),
                          chooser=self.chooser(tokenizer, self.held.validation, start.world))

    def _pair_records(self, model: GPT, tokenizer, cfg: TrainConfig, start: Start) -> dict[str, list[dict]]:
        """The task's pairs (train, validation, test), or on-policy ones (train, validation): the run's own
        (resumed), another run's from the same start (--data), or sampled now from a recipe-sized draw of the training
        problems and from the validation ones."""
        self.on_policy = None
        if (fixed := self.task.pair_records()) is not None:
            return fixed
        names = PARTS[:2]
        if start.saved is not None:
            self.on_policy, self.sampled_by = read_pairs(self.run.out / PAIRS_FILE, names, "the pairs this run "
                                                         "trained on are lost, so it cannot resume; start it again "
                                                         "with --overwrite")
        elif self.pairs_from is not None:
            self.on_policy, self.sampled_by = own_pairs(self.pairs_from, self.start_path, PARTS[:2], "--data takes a "
                                                        "DPO run folder (or its pairs.json) whose on-policy pairs "
                                                        "this run trains on")
        else:
            clock, recipe = time.perf_counter(), self.recipe
            model.to(start.device)
            train = self.task.train_problems()
            if recipe.instructions is not None and recipe.instructions < len(train):
                train = random.Random(cfg.seed).sample(train, recipe.instructions)
            self.on_policy = {name: on_policy_pairs(model, tokenizer, self.task, problems, recipe.samples,
                                                    cfg.seed + offset, f"{name} replies")
                              for offset, (name, problems) in enumerate(zip(names, (train, self.held.validation)))}
            start.say(f"on-policy pairs sampled from the starting model in {time.perf_counter() - clock:.0f} s")
            self.sampled_by = {"base": self.start_path, "seed": cfg.seed, "samples": recipe.samples}
        start.say("on-policy pairs (chosen: a reply the task's check ranks highest, a pass where one passed; rejected: "
                  "a failing one it ranks lowest):"
                  + "".join(f"\n  {name}: {part.describe()}" for name, part in self.on_policy.items()))
        return {name: part.records for name, part in self.on_policy.items()}

    def _references(self, model: GPT, template: ChatTemplate, cfg: TrainConfig, start: Start) -> dict:
        """The reference's log-probabilities of every part's pairs: the very numbers the saved run trained against,
        or the start's (frozen) computed now."""
        if start.saved is not None:
            saved = start.saved["dpo"]
            if saved.get("test_reference") is None and "test" in self.pairs:
                raise CheckpointError(f"{shown(self.run.out / 'last.pt')} comes from a DPO run without a test split "
                                      "(an older tinylm): its test pairs have no saved reference; start the run "
                                      "again with --overwrite")
            return {"train": saved["reference"], "validation": saved.get("val_reference"),
                    "test": saved.get("test_reference")}
        clock, device = time.perf_counter(), start.device
        model.to(device)
        score = dict(pad_id=template.pad, batch_size=cfg.eval_batch_size, device=device,
                     autocast_ctx=autocast(device, resolve_dtype(device, cfg.dtype)),
                     vocab_limit=template.tokenizer.vocab_size)
        references = {part: pair_logprobs(model, pairs.pairs, **score) for part, pairs in self.pairs.items()}
        start.say(f"reference log-probabilities of {sum(len(p) for p in self.pairs.values()):,} pairs (the start, "
                  f"frozen): {time.perf_counter() - clock:.1f} s")
        return references

    def saved_options(self, saved: dict) -> dict[str, Any]:
        return {**super().saved_options(saved), "beta": saved["dpo"]["beta"]}

    def record_line(self, record: dict) -> str:
        line = super().record_line(record)
        if "preference_accuracy" in record:
            line += (f" | validation preference accuracy {100 * record['preference_accuracy']:.1f}% "
                     f"| margin {record['preference_margin']:+.3f}")
        return line

    def header(self, trainer: DPOTrainer, start: Start) -> str:
        cfg = trainer.cfg
        return (f"DPO ({self.task.name}) of {self.description} | beta {trainer.beta:g} | "
                f"{trainer.model.num_parameters():,} parameters | profile {self.run.profile} | {cfg.max_steps} steps "
                f"of {cfg.batch_size} x {trainer.grad_accum_steps} x {start.world.size} pairs | "
                f"{100 * self.loader.padding_fraction():.1f}% padding | device {trainer.device} | run folder "
                f"{shown(self.run.out)}")

    def _preference(self, trainer: DPOTrainer) -> dict:
        """The preference figures of the held-out pairs: validation (which chose), test (where the task has some)."""
        held = {"validation": trainer.preference(trainer.val_pairs, trainer.val_reference)}
        if trainer.test_pairs:
            held["test"] = trainer.preference(trainer.test_pairs, trainer.test_reference)
        return held

    def before(self, trainer: DPOTrainer, report: dict, world: World) -> None:
        report.update(profile=self.run.profile, task=self.task.name, base=self.description, beta=trainer.beta,
                      pairs={part: pairs.counts for part, pairs in self.pairs.items()})
        if self.on_policy is not None:
            report["sampled"] = {name: part.counts for name, part in self.on_policy.items()}
            if world.is_main:
                write_pairs(trainer.out_dir, self.on_policy, self.sampled_by)
        report.update(before=self.measure(trainer, self.held.test, world),
                      preference={"before": self._preference(trainer)})

    def after(self, trainer: DPOTrainer, report: dict, world: World) -> None:
        super().after(trainer, report, world)
        report["preference"]["after"] = self._preference(trainer)

    def epilogue(self, finished: Finished) -> str:
        report, out = finished.report, self.run.out
        before, after = report["preference"]["before"], report["preference"]["after"]
        part = "test" if "test" in after else "validation"
        b, a = before[part], after[part]
        lines = [*self.measured_lines(report),
                 f"{part} preference accuracy (implicit reward of chosen > rejected, {a['pairs']} pairs; ties count "
                 f"half): {100 * b['accuracy']:.1f}% before, {100 * a['accuracy']:.1f}% after (95% interval "
                 f"{100 * a['accuracy_low']:.1f}-{100 * a['accuracy_high']:.1f}%); mean margin {a['margin']:+.3f} "
                 f"(chosen reward {a['chosen_reward']:+.3f}, rejected {a['rejected_reward']:+.3f})",
                 self.chosen_line(finished.trainer),
                 self.time_line(report, f" on {report['pairs']['train']['kept']} pairs")
                 + (f", pairs in {shown(out / PAIRS_FILE)}" if self.on_policy else ""),
                 f"next: {self.task.example_command(shown(out))}"]
        return "\n".join(lines)


def dpo(run: RunOptions = RunOptions(), options: PostTrainingOptions = PostTrainingOptions(), *,
        world: World | None = None, say: Callable[[str], None] = print,
        on_record: Callable[[dict], None] | None = None) -> dict:
    """Tune the chat model `options.base` (default: the task's SFT run, runs/sft-<task>-<profile>) with DPO into
    `run.out` (default runs/dpo-<task>-<profile>), and return the report OUT/dpo_eval.json keeps: the test split
    measured before and after, the preference figures of the held-out pairs, steps and seconds. Only rank 0 speaks
    and writes; `on_record` gets every trainer record (default: printed)."""
    job = DPOJob(run, options, on_record or (lambda record: print(job.record_line(record), flush=True)))
    return run_job(job, world=world, say=say).report
