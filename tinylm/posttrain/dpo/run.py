"""Preference tuning of a chat model with DPO on a task: `dpo(run, options)`, one function read top to bottom.

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
from typing import Callable

from ...data.preference import PreferenceDataError, build_pairs
from ...distributed import World
from ...model.gpt import GPT
from ...model.lora import ADAPTERS_FILE
from ...paths import shown
from ...runtime import autocast, resolve_dtype
from ...tokenizers.chat_template import ChatTemplate
from ...train import run as steps
from ...train.options import RunOptions
from .. import job
from ..chat_task import ChatTask
from ..job import Method, PostTrainingOptions, Settled
from ..on_policy import PAIRS_FILE, on_policy_pairs, own_pairs, read_pairs, write_pairs
from ..recipes import DPORecipe
from .objective import pair_logprobs
from .trainer import DPOTrainer, PairLoader

DPO = Method("dpo", DPORecipe, loss_name="DPO loss", task_type=ChatTask, extra_files=(ADAPTERS_FILE, PAIRS_FILE),
             data_names_a_run=True)


def dpo(run: RunOptions = RunOptions(), options: PostTrainingOptions = PostTrainingOptions(), *,
        world: World | None = None, say: Callable[[str], None] = print,
        on_record: Callable[[dict], None] | None = None) -> dict:
    """Tune the chat model `options.base` (default: the task's SFT run, runs/sft-<task>-<profile>) with DPO into
    `run.out` (default runs/dpo-<task>-<profile>), and return the report OUT/dpo_eval.json keeps: the test split
    measured before and after, the preference figures of the held-out pairs, steps and seconds. Only rank 0 speaks
    and writes; `on_record` gets every trainer record (default: printed)."""
    started = time.perf_counter()
    settled = job.settle(DPO, run, options, world=world, say=say)
    run, task, recipe, world, say = settled.run, settled.task, settled.recipe, settled.world, settled.say
    on_record = on_record or (lambda record: print(_record_line(settled, record), flush=True))
    base, start_model, tokenizer = job.start_from(settled)
    with steps.claimed(run, DPO.files, world, say) as start:
        held = task.held_out(recipe.held_out, recipe.held_out)
        if start.saved is not None:
            description = f"resumed from {shown(run.out / 'last.pt')}"
            model, tokenizer, cfg = job.resumed(settled, start)
        else:
            description = base.description
            model = GPT(dataclasses.replace(start_model.config, dropout=0.0))  # the trainer's docstring says why
            model.load_state_dict(start_model.state_dict())
            start_model = None  # copied: the reference is its log-probabilities, computed once (trainer.py)
            # under LoRA only the adapters train: SFT trained the chat tokens' rows
            cfg = job.with_lora(settled, model, recipe.train)

        template = ChatTemplate(tokenizer)
        model.to(start.device)  # where it samples on-policy pairs and scores the reference's log-probabilities
        records, on_policy, sampled_by = _pair_records(settled, base.recorded.get("path"), model, tokenizer, cfg.seed,
                                                       held.validation)
        pairs = {part: build_pairs(records[part], template, model.config.block_size, task.system_prompt)
                 for part in records}
        if empty := [part for part in records if not len(pairs[part])]:
            raise PreferenceDataError(f"no pair for {empty[0]}: " + "; ".join(
                f"{part}: {split.describe()}" for part, split in pairs.items()) + (
                "" if on_policy is None else " (every reply passed, or every reply failed: DPO needs both; "
                "start from another SFT run, --base)"))
        say("pairs:" + "".join(f"\n  {part}: {split.describe()}" for part, split in pairs.items()))
        if run.max_seconds is not None:
            say(f"plan: --max-seconds {run.max_seconds:g} bounds the DPO steps only; the pairs, the reference "
                "log-probabilities and the measurements before and after "
                f"({len(held.test)} test problems, greedy replies) come on top")
        reference = _references(pairs, model, template, cfg, start)
        loader = PairLoader(pairs["train"].pairs, reference["train"], cfg.batch_size, template.pad, seed=cfg.seed,
                            world=world)
        test = pairs.get("test")
        trainer = DPOTrainer(model, cfg, loader, out_dir=start.out, tokenizer=tokenizer, device=start.device,
                             callbacks=[on_record], world=world, beta=recipe.beta, template=template,
                             val_pairs=pairs["validation"].pairs, val_reference=reference["validation"],
                             test_pairs=test.pairs if test else (), test_reference=reference.get("test"),
                             chooser=job.chooser(settled, tokenizer, held.validation, cfg.eval_batch_size))
        steps.continue_saved(trainer, start, run.out)

        cfg = trainer.cfg
        header = (f"DPO ({task.name}) of {description} | beta {trainer.beta:g} | "
                  f"{trainer.model.num_parameters():,} parameters | profile {run.profile} | {cfg.max_steps} steps of "
                  f"{cfg.batch_size} x {trainer.grad_accum_steps} x {world.size} pairs | "
                  f"{100 * loader.padding_fraction():.1f}% padding | device {trainer.device} | run folder "
                  f"{shown(run.out)}")
        with job.trained(settled, trainer, base, start, header) as report:
            if "before" not in report:
                report.update(profile=run.profile, task=task.name, base=description, beta=trainer.beta,
                              pairs={part: split.counts for part, split in pairs.items()})
                if on_policy is not None:
                    report["sampled"] = {name: part.counts for name, part in on_policy.items()}
                    if world.is_main:
                        write_pairs(trainer.out_dir, on_policy, sampled_by)
                report.update(before=job.measure_on(trainer, task, held.test),
                              preference={"before": _preference(trainer)})
                steps.write_report(start.out / DPO.report_name, report, world)
            steps.fit(trainer)
        # the adapters name the model they adapt, not a resumed run's last.pt
        job.measure_after(settled, trainer, base.description or description, held.test, report)
        report["preference"]["after"] = _preference(trainer)
        report["wall_seconds"] = round(time.perf_counter() - started, 1)  # this call's, a base's training included
        steps.write_report(run.out / DPO.report_name, report, world)
        if world.is_main:
            say(_epilogue(settled, trainer, held.validation, report, on_policy is not None))
    return report


def _pair_records(settled: Settled, start_path: str | None, model: GPT, tokenizer, seed: int,
                  validation: list) -> tuple[dict[str, list[dict]], dict | None, dict | None]:
    """(records, on_policy, sampled_by): the task's pairs (train, validation, test), or on-policy ones (train,
    validation): the run's own (resumed), another run's from the same start (--data), or sampled now by `model` from
    a recipe-sized draw of the training problems and from the validation ones, with what sampled them."""
    task, run, recipe = settled.task, settled.run, settled.recipe
    if (fixed := task.pair_records()) is not None:
        return fixed, None, None
    names = ("train", "validation")  # on-policy pairs are sampled for these; the task's test problems report
    if run.resume:
        on_policy, sampled_by = read_pairs(run.out / PAIRS_FILE, names, "the pairs this run trained on are lost, so "
                                           "it cannot resume; start it again with --overwrite")
    elif settled.data_run is not None:
        on_policy, sampled_by = own_pairs(settled.data_run, start_path, names, "--data takes a DPO run folder (or its "
                                          "pairs.json) whose on-policy pairs this run trains on")
    else:
        clock = time.perf_counter()
        train = task.train_problems()
        if recipe.instructions is not None and recipe.instructions < len(train):
            train = random.Random(seed).sample(train, recipe.instructions)
        on_policy = {name: on_policy_pairs(model, tokenizer, task, problems, recipe.samples, f"{name} replies",
                                           seed=seed + offset)
                     for offset, (name, problems) in enumerate(zip(names, (train, validation)))}
        settled.say(f"on-policy pairs sampled from the starting model in {time.perf_counter() - clock:.0f} s")
        sampled_by = {"base": start_path, "seed": seed, "samples": recipe.samples}
    settled.say("on-policy pairs (chosen: a reply the task's check ranks highest, a pass where one passed; "
                "rejected: a failing one it ranks lowest):"
                + "".join(f"\n  {name}: {part.describe()}" for name, part in on_policy.items()))
    return {name: part.records for name, part in on_policy.items()}, on_policy, sampled_by


def _references(pairs: dict, model: GPT, template: ChatTemplate, cfg, start: steps.Start) -> dict:
    """The reference's log-probabilities of every part's pairs: the very numbers the saved run trained against,
    or the start's (frozen) computed now."""
    if start.saved is not None:
        saved = start.saved["dpo"]
        return {"train": saved["reference"], "validation": saved["val_reference"], "test": saved["test_reference"]}
    clock, device = time.perf_counter(), start.device
    with autocast(device, resolve_dtype(device, cfg.dtype)):
        references = {part: pair_logprobs(model, split.pairs, template.pad, cfg.eval_batch_size, device,
                                          template.tokenizer.vocab_size) for part, split in pairs.items()}
    start.say(f"reference log-probabilities of {sum(len(p) for p in pairs.values()):,} pairs (the start, "
              f"frozen): {time.perf_counter() - clock:.1f} s")
    return references


def _record_line(settled: Settled, record: dict) -> str:
    line = job.record_line(settled, record)
    if "preference_accuracy" in record:
        line += (f" | validation preference accuracy {100 * record['preference_accuracy']:.1f}% "
                 f"| margin {record['preference_margin']:+.3f}")
    return line


def _preference(trainer: DPOTrainer) -> dict:
    """The preference figures of the held-out pairs: validation (which chose), test (where the task has some)."""
    held = {"validation": trainer.preference(trainer.val_pairs, trainer.val_reference)}
    if trainer.test_pairs:
        held["test"] = trainer.preference(trainer.test_pairs, trainer.test_reference)
    return held


def _epilogue(settled: Settled, trainer: DPOTrainer, validation: list, report: dict, on_policy: bool) -> str:
    out, task = settled.run.out, settled.task
    before, after = report["preference"]["before"], report["preference"]["after"]
    part = "test" if "test" in after else "validation"
    b, a = before[part], after[part]
    lines = [*job.measured_lines(task, report),
             f"{part} preference accuracy (implicit reward of chosen > rejected, {a['pairs']} pairs; ties count "
             f"half): {100 * b['accuracy']:.1f}% before, {100 * a['accuracy']:.1f}% after (95% interval "
             f"{100 * a['accuracy_low']:.1f}-{100 * a['accuracy_high']:.1f}%); mean margin {a['margin']:+.3f} "
             f"(chosen reward {a['chosen_reward']:+.3f}, rejected {a['rejected_reward']:+.3f})",
             job.best_line(settled, trainer, validation),
             job.time_line(settled, report, f" on {report['pairs']['train']['kept']} pairs")
             + (f", pairs in {shown(out / PAIRS_FILE)}" if on_policy else ""),
             f"next: {task.example_command(shown(out))}"]
    return "\n".join(lines)
