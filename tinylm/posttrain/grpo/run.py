"""One GRPO run, start to finish, through the one run skeleton: `grpo(run, options)`, what `python -m tinylm.grpo`
runs.

The start builds the policy: `--base pretrain` trains the task-format model first, in OUT/base-<task>-<profile>,
reused once finished (tinylm.posttrain.grpo.task_base); a run folder or checkpoint whose tokenizer can write the task
is loaded instead. The held-out problems (tinylm.posttrain.grpo.tasks.HeldOut) are never trained on: the validation
problems choose best.pt (scored at step 0, so best.pt may be the starting model, and at every evaluation), the test
problems report (scored once on the starting model and once on best.pt, so the reported gain is not the best of many
looks at the same problems). OUT/grpo_eval.json keeps the test accuracy before and after with 95% Wilson intervals,
the validation figures that chose, the steps and the seconds; OUT also gets metrics.jsonl, best.pt, last.pt and
settings.json. Only rank 0 speaks and writes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from ...config import GPTConfig, TrainConfig
from ...distributed import World
from ...errors import InputError
from ...eval.uncertainty import wilson_interval
from ...model.gpt import GPT
from ...paths import runs_dir, shown
from ...tokenizers.saved import tokenizer_from_dict
from ...train.options import RunOptions, given
from ...train.run import Finished, Job, Start, run_job
from .recipes import grpo_recipe
from .rollout import greedy_completions, sampled_pass_at
from .story_writing import (
    StoryWritingTask,
    check_story_policy_path,
    load_story_policy,
    story_report,
    story_writing_task,
)
from .task_base import check_base_path, load_base, task_tokenizer
from .tasks import TASKS, TaskError, check_task_name, get_task
from .trainer import GRPOTrainer, check_rollout_memory, print_grpo_record

GRPO_REPORT = "grpo_eval.json"


@dataclass(frozen=True)
class GRPOOptions:
    """What GRPO is asked for beyond the shared options; None means the recipe's (resumed: the saved run's).
    `task`: arithmetic, countdown or stories; `base`: pretrain (a task-format model first), a run folder or a
    checkpoint (stories: an SFT stories run); `group_size`: completions per prompt; `kl_coef`: the KL penalty's
    weight; `reward`: correct, or a weaker check (format; stories: constraints)."""

    task: str | None = None
    base: str | None = None
    group_size: int | None = None
    kl_coef: float | None = None
    reward: str | None = None

    def __post_init__(self) -> None:
        if self.task is not None:  # an unknown task, or a reward it cannot pay, fails before the folder is touched
            check_task_name(self.task)
            rewards = StoryWritingTask.rewards if self.task == "stories" else TASKS[self.task].rewards
            if self.reward is not None and self.reward not in rewards:
                raise TaskError(f"reward {self.reward!r}: {self.task} pays {' or '.join(rewards)}")
        if self.base is not None:
            object.__setattr__(self, "base", str(self.base))


def measured(accuracy: float, n: int) -> dict:
    """An accuracy on n problems with its 95% Wilson interval."""
    correct = round(accuracy * n)
    low, high = wilson_interval(correct, n)
    return {"accuracy": correct / n, "correct": correct, "n": n, "interval": [low, high]}


def describe(result: dict) -> str:
    """'41.2% [36.9, 45.6]' (the 95% interval in points)."""
    low, high = result["interval"]
    return f"{100 * result['accuracy']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


class GRPOJob(Job):
    """GRPO on `options.task` from `options.base`, by the profile's recipe."""

    command = "grpo"
    files = (*Job.files, GRPO_REPORT)
    report_name = GRPO_REPORT
    reload_best = True  # the test figure after training is best.pt's

    def __init__(self, run: RunOptions, options: GRPOOptions, on_record: Callable[[dict], None]):
        if run.batch_size is not None:
            raise InputError("GRPO has no batch size of its own: a step trains on the recipe's prompts times "
                             "--group-size completions; drop batch_size")
        task = options.task or "arithmetic"
        super().__init__(run.resolved(lambda profile: f"grpo-{task}-{profile}"), options, given(run, options))
        self.on_record = on_record
        if not run.resume and task == "stories":  # a typo, or no SFT run yet, fails before the folder is touched
            check_story_policy_path(options.base or self.defaults()["base"], self.run.profile)
        elif not run.resume and options.base is not None:
            check_base_path(options.base)

    def defaults(self) -> dict[str, Any]:
        """A new run's task is arithmetic; the story task starts from the profile's SFT stories run."""
        task, profile = self.options.task or "arithmetic", self.run.profile
        recipe = grpo_recipe(task, profile)
        base = str(runs_dir() / f"sft-stories-{profile}") if task == "stories" else "pretrain"
        return {"task": "arithmetic", "base": base, "group_size": recipe.group_size, "kl_coef": recipe.kl_coef,
                "reward": recipe.reward}

    def data(self, start: Start) -> None:
        """The recipe (a resumed run's own knobs), the task (the story task's verifier on the device) and its
        held-out problems."""
        options, profile = self.options, self.run.profile
        knobs = {"group_size": options.group_size, "kl_coef": options.kl_coef, "reward": options.reward}
        if start.saved is not None:
            knobs = {**start.saved["grpo"]["settings"], **knobs}
        self.recipe = grpo_recipe(options.task, profile).replace(**knobs)
        self.task_settings, self.max_new_tokens = self.recipe.tasks.get(options.task, ({}, 0))
        if options.task == "stories":
            self.task = story_writing_task(options.base, profile, start.device)
        else:
            self.task = get_task(options.task, **self.task_settings)
        self.task.rewarded_by(self.recipe.reward)  # a reward the task cannot pay fails before anything is loaded
        self.held_out = self.task.held_out(self.recipe.validation, self.recipe.test)

    def recipe_values(self) -> dict[str, Any]:
        settings = self.recipe.settings()
        return {"task_settings": self.task_settings, "max_new_tokens": self.max_new_tokens,
                **{k: v for k, v in settings.items() if k not in ("group_size", "kl_coef", "reward")}}

    def saved_options(self, saved: dict) -> dict[str, Any]:
        settings = saved["grpo"]["settings"]
        return {"task": saved["grpo"]["task"], **{k: settings[k] for k in ("group_size", "kl_coef", "reward")}}

    def model(self, start: Start) -> tuple[GPT, Any, TrainConfig]:
        if start.saved is not None:
            self.description = f"resumed from {shown(self.run.out)}"
            return (GPT(GPTConfig.from_dict(start.saved["model_config"])),
                    tokenizer_from_dict(start.saved["tokenizer"]), self._constant_rate(self.resumed_train(start.saved)))
        recipe, base = self.recipe, self.options.base
        if isinstance(self.task, StoryWritingTask):
            model, tokenizer, self.description = load_story_policy(base)
            return model, tokenizer, self._constant_rate(recipe.train.override(**self.run.train_changes()))
        if base == "pretrain":  # a step that cannot fit fails now, not after the task-format SFT
            check_rollout_memory(GPT(recipe.base_shape.config(task_tokenizer().vocab_size)), recipe, start.device,
                                 start.world)
        model, tokenizer, self.description = load_base(base, recipe, self.run.profile, self.task, self.held_out,
                                                       self.max_new_tokens, self.run.out, start.device, start.world,
                                                       start.say)
        return model, tokenizer, self._constant_rate(recipe.train.override(**self.run.train_changes()))

    def _constant_rate(self, cfg: TrainConfig) -> TrainConfig:
        """GRPO's rate is constant: a new --learning-rate is its floor too."""
        return cfg if self.run.learning_rate is None else dataclasses.replace(cfg, min_lr=cfg.learning_rate)

    def trainer(self, model: GPT, tokenizer, cfg: TrainConfig, start: Start) -> GRPOTrainer:
        self.recipe = dataclasses.replace(self.recipe, train=cfg)
        return GRPOTrainer(model, tokenizer, self.task, self.recipe, self.held_out, self.max_new_tokens,
                           device=start.device, world=start.world, out_dir=self.run.out, callbacks=[self.on_record])

    def header(self, trainer: GRPOTrainer, start: Start) -> str:
        recipe, cfg, held_out = self.recipe, self.recipe.train, self.held_out
        budget = f" (at most {cfg.max_seconds:g} s)" if cfg.max_seconds else ""
        settings = f" {self.task_settings}" if self.task_settings else ""
        return (f"GRPO on {self.task.name}{settings} from {self.description} | "
                f"{trainer.model.num_parameters():,} parameters | profile {self.run.profile} | {cfg.max_steps} "
                f"steps{budget}: rollouts of {recipe.prompts} prompts x {recipe.group_size} completions, "
                f"{recipe.updates} update(s) each | reward {recipe.reward} | lr {cfg.learning_rate:g} | "
                f"{len(held_out.validation)} validation and {len(held_out.test)} test problems | device "
                f"{start.device} | run folder {shown(self.run.out)}")

    def test_measures(self, trainer: GRPOTrainer) -> dict[str, Any]:
        """The policy on the test problems: the greedy accuracy with its interval ("accuracy"), the story task's
        `pass_rate` of the greedy replies ("pass_rate"), and pass@1 and pass@n from n samples at the rollouts'
        temperature on the first `pass_at_problems` ("pass_at", when the recipe samples). The story task's are
        measured whole by every rank."""
        recipe, problems = self.recipe, trainer.held_out.test
        if not isinstance(self.task, StoryWritingTask):
            measures = {"accuracy": measured(trainer.accuracy_on(problems)["accuracy"], len(problems))}
        else:
            replies = greedy_completions(trainer.model, trainer.tokenizer, self.task, problems, self.max_new_tokens,
                                         batch_size=trainer.cfg.eval_batch_size)
            rates = story_report(self.task, trainer.tokenizer, problems, replies)
            measures = {"accuracy": measured(rates["pass_rate"], len(problems)), "pass_rate": rates}
        if recipe.pass_at_samples:
            n, sampled = recipe.pass_at_samples, problems[: recipe.pass_at_problems or len(problems)]
            at = sampled_pass_at(trainer.model, trainer.tokenizer, self.task, sampled, n, (1, n),
                                 self.max_new_tokens, temperature=recipe.temperature, seed=trainer.cfg.seed,
                                 batch_size=trainer.cfg.eval_batch_size)
            measures["pass_at"] = {str(k): value for k, value in at.items()}
        return measures

    def before(self, trainer: GRPOTrainer, report: dict, world: World) -> None:
        """The starting model on both splits: validation at step 0 (an evaluation, which best.pt keeps if nothing
        beats it), test once. No last.pt yet: under --overwrite the old run stays until this run has trained and
        saved a state of its own."""
        recipe, held_out = self.recipe, trainer.held_out
        start = trainer.evaluate_and_save(save_last=False)
        test = self.test_measures(trainer)
        report.update(task=self.task.name, settings=self.task_settings, profile=self.run.profile, base=self.description,
                      reward=recipe.reward, validation_problems=len(held_out.validation),
                      test_problems=len(held_out.test), before=test["accuracy"],
                      validation={"before": measured(start["accuracy"], len(held_out.validation))})
        if "pass_rate" in test:
            report["pass_rate"] = {"before": test["pass_rate"]}
        if "pass_at" in test:
            report["pass_at"] = {"samples": recipe.pass_at_samples, "temperature": recipe.temperature,
                                 "problems": min(recipe.pass_at_problems or recipe.test, len(held_out.test)),
                                 "before": test["pass_at"]}

    def after(self, trainer: GRPOTrainer, report: dict, world: World) -> None:
        """best.pt (loaded by the skeleton) on the test problems, and the validation score that chose it."""
        recipe = self.recipe
        test = self.test_measures(trainer)
        report["validation"]["best"] = {**measured(trainer.best_score, len(trainer.held_out.validation)),
                                        "step": trainer.best_step}
        report.update(after={**test["accuracy"], "checkpoint": "best.pt", "step": trainer.best_step},
                      steps=trainer.step, grpo_seconds=round(trainer.elapsed, 1), recipe=recipe.settings(),
                      train=trainer.cfg.to_dict(), device=str(trainer.device), processes=world.size)
        for name in ("pass_rate", "pass_at"):
            if name in test:
                report[name]["after"] = test[name]

    def epilogue(self, finished: Finished) -> str:
        report, trainer, out = finished.report, finished.trainer, self.run.out
        gain = 100 * (report["after"]["accuracy"] - report["before"]["accuracy"])
        chosen = report["validation"]["best"]
        stories = isinstance(self.task, StoryWritingTask)
        measure = "verifier pass rate" if stories else "accuracy"
        lines = [f"test {measure} ({report['test_problems']} held-out problems that chose nothing, greedy, 95% "
                 f"interval): {describe(report['before'])} before -> {describe(report['after'])} after (best.pt, step "
                 f"{trainer.best_step}, chosen on {report['validation_problems']} validation problems where it scored "
                 f"{100 * chosen['accuracy']:.1f}%): {gain:+.1f} points in {trainer.step} steps, "
                 f"{trainer.elapsed:.0f} s of GRPO"]
        if "pass_at" in report:
            at = report["pass_at"]
            rates = ", ".join(f"pass@{k} {100 * at['before'][k]:.1f}% -> {100 * at['after'][k]:.1f}%"
                              for k in at["before"])
            lines.append(f"sampled at temperature {at['temperature']:g}, {at['samples']} for each of "
                         f"{at['problems']} test problems: {rates}")
        lines.append(f"wall time {report['wall_seconds']:.0f} s; report in {shown(out / GRPO_REPORT)}, curves in "
                     f"{shown(out / 'metrics.jsonl')}")
        if stories:
            lines.append(f"next: python -m tinylm.chat --ckpt {shown(out)}   (type an instruction such as "
                         f"'{trainer.held_out.test[0].prompt}')")
        else:
            example = trainer.held_out.test[0].prompt
            lines.append(f"next: python -m tinylm.sample --ckpt {shown(out)} --prompt '{example}' "
                         f"--temperature 0 --max-new-tokens {self.max_new_tokens} --stop '\\n'   (or notebook 11 for "
                         "the curves)")
        return "\n".join(lines)


def grpo(run: RunOptions = RunOptions(), options: GRPOOptions = GRPOOptions(), *, world: World | None = None,
         say: Callable[[str], None] = print, on_record: Callable[[dict], None] = print_grpo_record) -> dict:
    """GRPO on `options.task` from `options.base` into `run.out` (default runs/grpo-<task>-<profile>); returns the
    report that OUT/grpo_eval.json keeps. Only rank 0 speaks and writes."""
    return run_job(GRPOJob(run, options, on_record), world=world, say=say).report

