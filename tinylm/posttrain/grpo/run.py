"""One GRPO run on a task, start to finish, through the one run skeleton: `grpo(run, options)`, what
`python -m tinylm.grpo` runs.

The policy starts from the task's base: a generated task's task-format model (`--base pretrain`, made first where it
is missing), the story task's SFT run, or a run or checkpoint the task can use. The held-out problems are never
trained on: the validation problems choose best.pt (scored at step 0, so best.pt may be the start), the test
problems report, measured once on the start and once on best.pt (tinylm.posttrain.task.measure), with pass@k where
the recipe samples for it. OUT/grpo_eval.json keeps the report; only rank 0 speaks and writes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ...config import GPTConfig, TrainConfig
from ...distributed import World
from ...errors import InputError
from ...model.gpt import GPT
from ...paths import shown
from ...tokenizers.saved import tokenizer_from_dict
from ...train.options import RunOptions
from ...train.prerequisite import Prerequisite
from ...train.run import Finished, Start, run_job
from ..job import PostTrainingJob, PostTrainingOptions
from ..recipes import GRPORecipe
from .rollout import pass_at_rates, sampled_correct
from .trainer import GRPOTrainer, check_rollout_memory, format_grpo_record


class GRPOJob(PostTrainingJob):
    """GRPO on `options.task` from `options.base`, by the task's recipe for the profile."""

    method, recipe_type, command = "grpo", GRPORecipe, "grpo"

    def __init__(self, run: RunOptions, options: PostTrainingOptions, on_record: Callable[[dict], None]):
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
        super().__init__(run, options, on_record)

    def record_line(self, record: dict) -> str:
        return format_grpo_record(record, self.task.measure_name)

    def settle(self, saved: dict[str, Any]) -> None:
        super().settle(saved)
        self.task.rewarded_by(self.recipe.reward)  # a reward the task cannot pay fails before anything is loaded

    def saved_options(self, saved: dict) -> dict[str, Any]:
        return {"task": saved["grpo"]["task"], **saved["grpo"]["settings"]}

    def before_prerequisite(self, prerequisite: Prerequisite, device, world: World) -> None:
        """A GRPO step that cannot fit fails now, not after the task-format model has trained."""
        if prerequisite.model is not None and prerequisite.progress() is None:
            check_rollout_memory(prerequisite.model(), self.recipe, device, world)

    def data(self, start: Start) -> None:
        self.held = self.task.held_out(self.recipe.validation, self.recipe.test)

    def model(self, start: Start) -> tuple[GPT, Any, TrainConfig]:
        if start.saved is not None:
            self.description = f"resumed from {shown(self.run.out)}"
            return (GPT(GPTConfig.from_dict(start.saved["model_config"])),
                    tokenizer_from_dict(start.saved["tokenizer"]), self._constant_rate(self.resumed_train(start.saved)))
        return (self.start_model, self.start_tokenizer,
                self._constant_rate(self.recipe.train.override(**self.run.train_changes())))

    def _constant_rate(self, cfg: TrainConfig) -> TrainConfig:
        """GRPO's rate is constant: a new --learning-rate is its floor too."""
        return cfg if self.run.learning_rate is None else dataclasses.replace(cfg, min_lr=cfg.learning_rate)

    def trainer(self, model: GPT, tokenizer, cfg: TrainConfig, start: Start) -> GRPOTrainer:
        self.recipe = dataclasses.replace(self.recipe, train=cfg)
        return GRPOTrainer(model, tokenizer, self.task, self.recipe, self.held, device=start.device, world=start.world,
                           out_dir=start.out, callbacks=[self.on_record])

    def header(self, trainer: GRPOTrainer, start: Start) -> str:
        recipe, cfg = self.recipe, self.recipe.train
        budget = f" (at most {cfg.max_seconds:g} s)" if cfg.max_seconds else ""
        return (f"GRPO on {self.task.name} from {self.description} | {trainer.model.num_parameters():,} parameters | "
                f"profile {self.run.profile} | {cfg.max_steps} steps{budget}: rollouts of {recipe.prompts} prompts x "
                f"{recipe.group_size} completions, {recipe.updates} update(s) each | reward {recipe.reward} | "
                f"baseline {recipe.baseline} | lr {cfg.learning_rate:g} | {len(self.held.validation)} validation and "
                f"{len(self.held.test)} test problems | device {start.device} | run folder {shown(self.run.out)}")

    def measured(self, trainer: GRPOTrainer, world: World) -> tuple[dict, dict | None]:
        """The policy on the test problems (tinylm.posttrain.task.measure), and pass@1 and pass@n from n samples at
        the rollouts' temperature on the first `pass_at_problems` (where the recipe samples), with each problem's
        count of correct samples (for a paired test) under "correct"."""
        recipe, problems = self.recipe, self.held.test
        test = self.measure(trainer, problems, world)
        if not recipe.pass_at_samples:
            return test, None
        n, sampled = recipe.pass_at_samples, problems[: recipe.pass_at_problems or len(problems)]
        correct = sampled_correct(trainer.model, trainer.tokenizer, self.task, sampled, n,
                                  temperature=recipe.temperature, seed=trainer.cfg.seed,
                                  batch_size=trainer.cfg.eval_batch_size)
        return test, {**{str(k): value for k, value in pass_at_rates(correct, n, (1, n)).items()}, "correct": correct}

    def before(self, trainer: GRPOTrainer, report: dict, world: World) -> None:
        """The start on both splits: validation at step 0 (an evaluation, which best.pt keeps if nothing beats it),
        test once. No last.pt yet: under --overwrite the old run stays until this run has trained and saved a state
        of its own."""
        recipe = self.recipe
        start = trainer.evaluate_and_save(save_last=False)
        test, at = self.measured(trainer, world)
        report.update(task=self.task.name, profile=self.run.profile, base=self.description, reward=recipe.reward,
                      validation={"before": start["pass_rate"]}, before=test)
        if at is not None:
            report["pass_at"] = {"samples": recipe.pass_at_samples, "temperature": recipe.temperature,
                                 "problems": min(recipe.pass_at_problems or recipe.test, len(self.held.test)),
                                 "before": at}

    def after(self, trainer: GRPOTrainer, report: dict, world: World) -> None:
        """best.pt (loaded by the skeleton) on the test problems, and the validation score that chose it."""
        test, at = self.measured(trainer, world)
        report.update(after={**test, **self.chosen(trainer)}, steps=trainer.step,
                      train_seconds=round(trainer.elapsed, 1), device=str(trainer.device), processes=world.size)
        if at is not None:
            report["pass_at"]["after"] = at

    def epilogue(self, finished: Finished) -> str:
        report, trainer, out = finished.report, finished.trainer, self.run.out
        gain = 100 * (report["after"]["pass_rate"] - report["before"]["pass_rate"])
        lines = [*self.measured_lines(report),
                 f"{self.chosen_line(trainer)}: {gain:+.1f} points on the test problems"]
        if "pass_at" in report:
            at = report["pass_at"]
            rates = ", ".join(f"pass@{k} {100 * at['before'][k]:.1f}% -> {100 * at['after'][k]:.1f}%"
                              for k in at["before"] if k != "correct")
            lines.append(f"sampled at temperature {at['temperature']:g}, {at['samples']} for each of "
                         f"{at['problems']} test problems: {rates}")
        lines += [f"{self.time_line(report)}, curves in {shown(out / 'metrics.jsonl')}",
                  f"next: {self.task.example_command(shown(out))}"]
        return "\n".join(lines)


def grpo(run: RunOptions = RunOptions(), options: PostTrainingOptions = PostTrainingOptions(), *,
         world: World | None = None, say: Callable[[str], None] = print,
         on_record: Callable[[dict], None] | None = None) -> dict:
    """GRPO on `options.task` (default: arithmetic) from `options.base` into `run.out` (default
    runs/grpo-<task>-<profile>); returns the report that OUT/grpo_eval.json keeps. Only rank 0 speaks and writes;
    `on_record` gets every trainer record (default: printed)."""
    job = GRPOJob(run, options, on_record or (lambda record: print(job.record_line(record), flush=True)))
    return run_job(job, world=world, say=say).report

