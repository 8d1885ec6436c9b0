"""One RL run, start to finish: `reinforce(task, base=..., out=...)`, what `python -m tinylm.rl` runs.

It is a Job of the one run skeleton (tinylm.train.run: the folder lock, --resume, an --overwrite that keeps the old
run until the new one has a checkpoint, the report). The start builds the policy: `--base pretrain` trains the
task-format model first, in OUT/base-<task>-<profile>, reused once finished (tinylm.posttrain.task_base); a run
folder or checkpoint whose tokenizer can write the task is loaded instead. Before training, the held-out accuracy of
that starting model is measured (step 0, which best.pt keeps if nothing beats it); GRPO then trains it
(tinylm.posttrain.grpo), measuring at every evaluation. OUT/rl_eval.json reports the accuracy before and after
(best.pt, the best evaluation) with 95% Wilson intervals, the steps, the seconds and the settings; an epilogue says
where everything went and what to run next. Only rank 0 speaks and writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config import GPTConfig, TrainConfig
from ..distributed import World
from ..eval.uncertainty import wilson_interval
from ..model.gpt import GPT
from ..paths import runs_dir, shown
from ..runtime import resolve_profile
from ..tokenizers.saved import tokenizer_from_dict
from ..train.run import Finished, Job, run_job
from ..train.trainer import RUN_FILES
from .grpo import GRPOTrainer, check_rollout_memory, print_rl_record
from .grpo_recipes import RL_RECIPES
from .task_base import check_base_path, load_base, task_tokenizer
from .tasks import get_task, held_out_problems

RL_REPORT = "rl_eval.json"


def measured(accuracy: float, n: int) -> dict:
    """An accuracy on n problems with its 95% Wilson interval."""
    correct = round(accuracy * n)
    low, high = wilson_interval(correct, n)
    return {"accuracy": correct / n, "correct": correct, "n": n, "interval": [low, high]}


def describe(result: dict) -> str:
    """'41.2% [36.9, 45.6]' (the 95% interval in points)."""
    low, high = result["interval"]
    return f"{100 * result['accuracy']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


class Reinforcement(Job):
    """GRPO on `task` from `base`; `train` overrides fields of the recipe's TrainConfig, `grpo` its GRPO knobs."""

    files = (*RUN_FILES, RL_REPORT)
    report_name = RL_REPORT

    def __init__(self, task: str, base: str, profile: str, out: Path, resume: bool, overwrite: bool, train: dict,
                 grpo: dict, on_record: Callable[[dict], None]):
        super().__init__(out, resume, overwrite)
        self.profile, self.base, self.on_record = profile, base, on_record
        self.recipe = RL_RECIPES[profile].replace(train=train, **grpo)
        self.overrides = train
        self.settings, self.max_new_tokens = self.recipe.tasks.get(task, ({}, 0))
        self.task = get_task(task, **self.settings)  # an unknown task fails here, before the run folder is touched
        if not resume:
            check_base_path(base)

    def start(self, saved, device, world, say) -> GRPOTrainer:
        recipe, task = self.recipe, self.task
        held_out = held_out_problems(task, recipe.held_out)
        if saved is not None:  # the saved run's own settings, with this call's budgets and learning rate
            grpo = saved["grpo"]["settings"]
            budgets = {k: v for k, v in self.overrides.items()
                       if k in ("max_steps", "max_seconds", "learning_rate", "min_lr")}
            recipe = self.recipe = recipe.replace(train={**TrainConfig.from_dict(saved["train_config"]).to_dict(),
                                                         **budgets}, **grpo)
            held_out = held_out_problems(task, recipe.held_out)
            model = GPT(GPTConfig.from_dict(saved["model_config"]))
            tokenizer = tokenizer_from_dict(saved["tokenizer"])
            self.description = f"the run in {shown(self.out)} (resumed)"
        else:
            if self.base == "pretrain":  # a step that cannot fit fails now, not after the task-format SFT
                check_rollout_memory(GPT(recipe.base_shape.config(task_tokenizer().vocab_size)), recipe, device, world)
            model, tokenizer, self.description = load_base(self.base, recipe, self.profile, task, held_out,
                                                           self.max_new_tokens, self.out, device, world, say)
        trainer = GRPOTrainer(model, tokenizer, task, recipe, held_out, self.max_new_tokens, device=device,
                              world=world, out_dir=self.out, callbacks=[self.on_record])
        cfg = recipe.train
        budget = f" (at most {cfg.max_seconds:g} s)" if cfg.max_seconds else ""
        say(f"GRPO on {task.name} {self.settings} from {self.description} | {model.num_parameters():,} parameters | "
            f"profile {self.profile} | {cfg.max_steps} steps{budget}: rollouts of {recipe.prompts} prompts x "
            f"{recipe.group_size} completions, {recipe.updates} update(s) each | reward {recipe.reward} | lr "
            f"{cfg.learning_rate:g} | {recipe.held_out} held-out problems | device {device} | run folder "
            f"{shown(self.out)}")
        return trainer

    def before(self, trainer: GRPOTrainer, report: dict, world: World) -> None:
        # step 0: the starting model, which best.pt keeps if nothing beats it. No last.pt yet: under --overwrite the
        # old run stays until this run has trained and saved a state of its own.
        start = trainer.evaluate_and_save(save_last=False)
        report.update(task=self.task.name, settings=self.settings, profile=self.profile, base=self.description,
                      reward=self.recipe.reward, held_out=self.recipe.held_out,
                      before=measured(start["accuracy"], self.recipe.held_out))

    def after(self, trainer: GRPOTrainer, report: dict, world: World) -> None:
        report.update(after={**measured(trainer.best_score, self.recipe.held_out), "checkpoint": "best.pt",
                             "step": trainer.best_step},
                      steps=trainer.step, rl_seconds=round(trainer.elapsed, 1), recipe=self.recipe.settings(),
                      train=trainer.cfg.to_dict(), device=str(trainer.device), processes=world.size)

    def epilogue(self, finished: Finished) -> str:
        report, trainer, out = finished.report, finished.trainer, self.out
        gain = 100 * (report["after"]["accuracy"] - report["before"]["accuracy"])
        example = trainer.held_out[0].prompt
        return (f"held-out accuracy ({self.recipe.held_out} problems, greedy, 95% interval): "
                f"{describe(report['before'])} before -> {describe(report['after'])} after (best.pt, step "
                f"{trainer.best_step}): {gain:+.1f} points in {trainer.step} steps, {trainer.elapsed:.0f} s of RL\n"
                f"wall time {report['wall_seconds']:.0f} s; report in {shown(out / RL_REPORT)}, curves in "
                f"{shown(out / 'metrics.jsonl')}\n"
                f"next: python -m tinylm.sample --ckpt {shown(out)} --prompt '{example}' --temperature 0 "
                f"--max-new-tokens {self.max_new_tokens} --stop '\\n'   (or notebook 11 for the curves)")


def reinforce(task: str = "arithmetic", *, base: str = "pretrain", profile: str | None = None,
              out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
              max_steps: int | None = None, max_seconds: float | None = None, learning_rate: float | None = None,
              seed: int | None = None, dtype: str | None = None, group_size: int | None = None,
              kl_coef: float | None = None, reward: str | None = None, device: str | None = None,
              world: World | None = None, say: Callable[[str], None] = print,
              on_record: Callable[[dict], None] = print_rl_record) -> dict:
    """GRPO on `task` from `base` into `out` (default runs/rl-<task>-<profile>); returns the report that
    OUT/rl_eval.json keeps. The options override the profile's recipe (None: the recipe's); a resumed run keeps
    its own settings except max_steps, max_seconds and learning_rate.

    The keyword arguments are the command's options, one for one (tinylm/cli/rl.py), hence their number.
    """
    profile = resolve_profile(profile)
    train = {"max_steps": max_steps, "max_seconds": max_seconds, "learning_rate": learning_rate, "seed": seed,
             "dtype": dtype}
    if learning_rate is not None:  # GRPO's rate is constant: the floor moves with the peak
        train["min_lr"] = learning_rate
    job = Reinforcement(task, base, profile, Path(out) if out is not None else runs_dir() / f"rl-{task}-{profile}",
                        resume, overwrite, {k: v for k, v in train.items() if v is not None},
                        {"group_size": group_size, "kl_coef": kl_coef, "reward": reward}, on_record)
    return run_job(job, device=device, world=world, say=say).report
