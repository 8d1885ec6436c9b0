"""One GRPO run on a task, start to finish, in one function that reads top to bottom: `grpo(run, options)`, what
`python -m tinylm.grpo` runs; the steps it shares with SFT and DPO are tinylm.train.run's and tinylm.posttrain.job's.

The policy starts from the task's base: a generated task's task-format model (`--base pretrain`, made first where it
is missing), the story task's SFT run, or a run or checkpoint the task can use. The held-out problems are never
trained on: the validation problems choose best.pt (scored at step 0, so best.pt may be the start), the test
problems report, measured once on the start and once on best.pt (tinylm.posttrain.task.measure), with pass@k where
the recipe samples for it. OUT/grpo_eval.json keeps the report; only rank 0 speaks and writes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from ...distributed import World
from ...errors import InputError
from ...paths import shown
from ...train import run as steps
from ...train.options import RunOptions
from .. import job
from ..job import Method, PostTrainingOptions, Settled
from ..recipes import GRPORecipe
from .rollout import pass_at_rates, sampled_correct
from .trainer import GRPOTrainer, check_rollout_memory, format_grpo_record

GRPO = Method("grpo", GRPORecipe)


def grpo(run: RunOptions = RunOptions(), options: PostTrainingOptions = PostTrainingOptions(), *,
         world: World | None = None, say: Callable[[str], None] = print,
         on_record: Callable[[dict], None] | None = None) -> dict:
    """GRPO on `options.task` (default: arithmetic) from `options.base` into `run.out` (default
    runs/grpo-<task>-<profile>); returns the report that OUT/grpo_eval.json keeps. Only rank 0 speaks and writes;
    `on_record` gets every trainer record (default: printed)."""
    started = time.perf_counter()
    _refuse_options(run, options)
    settled = job.settle(GRPO, run, options, world=world, say=say)
    run, task, world, say = settled.run, settled.task, settled.world, settled.say
    task.rewarded_by(settled.recipe.reward)  # a reward the task cannot pay fails before anything is loaded
    on_record = on_record or (lambda record: print(format_grpo_record(record, task.measure_name), flush=True))

    def check_memory(prerequisite, device) -> None:  # a step that cannot fit fails before the task-format model trains
        if prerequisite.model is not None and prerequisite.progress() is None:
            check_rollout_memory(prerequisite.model(), settled.recipe, device, world)

    base, model, tokenizer = job.start_from(settled, before_prerequisite=check_memory)
    with steps.claimed(run, GRPO.files, world, say) as start:
        held = task.held_out(settled.recipe.validation, settled.recipe.test)
        if start.saved is not None:
            description = f"resumed from {shown(run.out)}"
            model, tokenizer, cfg = job.resumed(settled, start)
        else:
            description, cfg = base.description, settled.recipe.train.override(**run.train_changes())
        if run.learning_rate is not None:  # GRPO's rate is constant: a new --learning-rate is its floor too
            cfg = dataclasses.replace(cfg, min_lr=cfg.learning_rate)
        recipe = dataclasses.replace(settled.recipe, train=cfg)
        trainer = GRPOTrainer(model, tokenizer, task, recipe, held, device=start.device, world=world,
                              out_dir=start.out, callbacks=[on_record])
        steps.continue_saved(trainer, start, run.out)
        budget = f" (at most {cfg.max_seconds:g} s)" if cfg.max_seconds else ""
        header = (f"GRPO on {task.name} from {description} | {trainer.model.num_parameters():,} parameters | "
                  f"profile {run.profile} | {cfg.max_steps} steps{budget}: rollouts of {recipe.prompts} prompts x "
                  f"{recipe.group_size} completions, {recipe.updates} update(s) each | reward {recipe.reward} | "
                  f"baseline {recipe.baseline} | lr {cfg.learning_rate:g} | {len(held.validation)} validation and "
                  f"{len(held.test)} test problems | device {start.device} | run folder {shown(run.out)}")
        with job.trained(dataclasses.replace(settled, recipe=recipe), trainer, base, start, header) as report:
            if "before" not in report:
                # The start on both splits: validation at step 0 (an evaluation, which best.pt keeps if nothing beats
                # it), test once. No last.pt yet: under --overwrite the old run stays until this run has saved one.
                validation = trainer.evaluate_and_save(save_last=False)
                report.update(task=task.name, profile=run.profile, base=description, reward=recipe.reward,
                              validation={"before": validation["pass_rate"]},
                              before=job.measure_on(trainer, task, held.test))
                if recipe.pass_at_samples:
                    report["pass_at"] = {"samples": recipe.pass_at_samples, "temperature": recipe.temperature,
                                         "problems": min(recipe.pass_at_problems or recipe.test, len(held.test)),
                                         "before": _pass_at(trainer, held.test)}
                steps.write_report(start.out / GRPO.report_name, report, world)
            steps.fit(trainer)
        job.measure_after(settled, trainer, description, held.test, report)
        report.update(device=str(trainer.device), processes=world.size)
        if recipe.pass_at_samples:
            report["pass_at"]["after"] = _pass_at(trainer, held.test)
        report["wall_seconds"] = round(time.perf_counter() - started, 1)  # this call's, a base's training included
        steps.write_report(run.out / GRPO.report_name, report, world)
        if world.is_main:
            say(_epilogue(settled, trainer, held.validation, report))
    return report


def _refuse_options(run: RunOptions, options: PostTrainingOptions) -> None:
    """What GRPO does not take: a batch size (a step is prompts x completions), samples while training, LoRA."""
    batch = [name for name in ("batch_size", "grad_accum_steps", "total_batch_tokens") if name in (run.set or {})]
    if run.batch_size is not None or batch:
        given = "--batch-size" if run.batch_size is not None else f"--set {batch[0]}"
        raise InputError("GRPO has no batch size of its own: a step trains on the recipe's prompts times its "
                         f"group_size completions (--set prompts=N, --set group_size=G); drop {given}")
    if "sample_interval" in (run.set or {}):
        raise InputError("--set sample_interval: GRPO writes no samples while it trains (its report shows "
                         "replies); drop it")
    if options.lora is not None:
        raise InputError("GRPO trains every weight: drop --lora-rank")


def _pass_at(trainer: GRPOTrainer, problems: list) -> dict:
    """pass@1 and pass@n of the policy from n samples at the rollouts' temperature on the first `pass_at_problems`,
    with each problem's count of correct samples (for a paired test) under "correct"."""
    recipe = trainer.recipe
    n, sampled = recipe.pass_at_samples, problems[: recipe.pass_at_problems or len(problems)]
    correct = sampled_correct(trainer.model, trainer.tokenizer, trainer.task, sampled, n,
                              temperature=recipe.temperature, seed=trainer.cfg.seed,
                              batch_size=trainer.cfg.eval_batch_size)
    return {**{str(k): value for k, value in pass_at_rates(correct, n, (1, n)).items()}, "correct": correct}


def _epilogue(settled: Settled, trainer: GRPOTrainer, validation: list, report: dict[str, Any]) -> str:
    out = settled.run.out
    gain = 100 * (report["after"]["pass_rate"] - report["before"]["pass_rate"])
    lines = [*job.measured_lines(settled.task, report),
             f"{job.best_line(settled, trainer, validation)}: {gain:+.1f} points on the test problems"]
    if "pass_at" in report:
        at = report["pass_at"]
        rates = ", ".join(f"pass@{k} {100 * at['before'][k]:.1f}% -> {100 * at['after'][k]:.1f}%"
                          for k in at["before"] if k != "correct")
        lines.append(f"sampled at temperature {at['temperature']:g}, {at['samples']} for each of "
                     f"{at['problems']} test problems: {rates}")
    lines += [f"{job.time_line(settled, report)}, curves in {shown(out / 'metrics.jsonl')}",
              f"next: {settled.task.example_command(shown(out))}"]
    return "\n".join(lines)
