"""One RL run, start to finish: `reinforce(task, base=..., out=...)`, what `python -m tinylm.rl` runs.

The stages: the run folder is checked and locked (one run per folder; --resume and --overwrite as in
tinylm.train); the starting model is built (`--base pretrain`: the task-format SFT in OUT/base-<task>-<profile>,
reused once finished) or loaded from a run folder or checkpoint; GRPO trains it (tinylm.posttrain.grpo_trainer), measuring the
held-out accuracy at step 0 and every eval_interval steps; OUT/rl_eval.json reports the accuracy before and after
(best.pt) with 95% Wilson intervals, the steps, the seconds and the settings; an epilogue says where everything
went and what to run next. An overwritten run survives a new one that fails before its first checkpoint (its
files are set aside, as tinylm.train does). Only rank 0 speaks and writes.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Callable

from ..config import GPTConfig
from ..distributed import World, current_world, device_for
from ..eval.uncertainty import wilson_interval
from ..model.gpt import GPT
from ..paths import atomic_write, runs_dir, shown
from ..runtime import resolve_device, resolve_profile
from ..tokenizers.saved import tokenizer_from_dict
from ..train.checkpoint import load_training_checkpoint
from ..train.run import set_aside_old_run, settle_old_run
from ..train.runlock import claim_run_folder
from .grpo_recipes import RL_RECIPES
from .grpo_trainer import RL_RUN_FILES, GRPOTrainer, print_rl_record
from .task_base import check_base_path, load_base
from .tasks import get_task, held_out_problems


def measured(accuracy: float, n: int) -> dict:
    """An accuracy on n problems with its 95% Wilson interval."""
    correct = round(accuracy * n)
    low, high = wilson_interval(correct, n)
    return {"accuracy": correct / n, "correct": correct, "n": n, "interval": [low, high]}


def describe(result: dict) -> str:
    """'41.2% [36.9, 45.6]' (the 95% interval in points)."""
    low, high = result["interval"]
    return f"{100 * result['accuracy']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def reinforce(task: str = "arithmetic", *, base: str = "pretrain", profile: str | None = None,
              out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
              max_steps: int | None = None, max_seconds: float | None = None, group_size: int | None = None,
              seed: int | None = None, kl_coef: float | None = None, reward: str | None = None,
              device: str | None = None, world: World | None = None, say: Callable[[str], None] = print,
              on_record: Callable[[dict], None] = print_rl_record) -> dict:
    """GRPO on `task` from `base` into `out` (default runs/rl-<task>-<profile>); returns the report that
    OUT/rl_eval.json keeps. The options override the profile's recipe (None: the recipe's); a resumed run keeps
    its own settings except max_steps and max_seconds."""
    started = time.perf_counter()
    world = world or current_world()
    if not world.is_main:
        say = on_record = _silent
    profile = resolve_profile(profile)
    recipe = RL_RECIPES[profile].replace(max_steps=max_steps, max_seconds=max_seconds, group_size=group_size,
                                         seed=seed, kl_coef=kl_coef, reward=reward)
    settings, max_new_tokens = recipe.tasks.get(task, ({}, 0))
    task_obj = get_task(task, **settings)  # an unknown task fails here, before the run folder is touched
    if not resume:
        check_base_path(base)
    out = Path(out) if out is not None else runs_dir() / f"rl-{task}-{profile}"
    with contextlib.ExitStack() as held:
        claim_run_folder(out, held, world.is_main, resume, overwrite, say)
        device = resolve_device(device_for(world, device))
        held_out = held_out_problems(task_obj, recipe.held_out)
        saved = load_training_checkpoint(out / "last.pt") if resume else None
        if saved is not None:
            recipe = recipe.replace(**{k: v for k, v in saved["train_config"].items() if k != "task"}).replace(
                max_steps=max_steps, max_seconds=max_seconds)
            model = GPT(GPTConfig.from_dict(saved["model_config"]))
            tokenizer, description = tokenizer_from_dict(saved["tokenizer"]), f"resumed from {shown(out / 'last.pt')}"
        else:
            model, tokenizer, description = load_base(base, recipe, profile, task_obj, held_out, max_new_tokens, out,
                                                      device, world, say)
        trainer = GRPOTrainer(model, tokenizer, task_obj, recipe, held_out, max_new_tokens, device=device,
                              world=world, out_dir=out, callbacks=[on_record])
        if saved is not None:
            trainer.load_state_dict(saved)
        say(f"GRPO on {task} {settings} from {description} | {model.num_parameters():,} parameters | profile "
            f"{profile} | {recipe.max_steps} steps" + (f" (at most {recipe.max_seconds:g} s)" if recipe.max_seconds
                                                       else "")
            + f" of {recipe.prompts} prompts x {recipe.group_size} completions, {recipe.updates} update(s) each | "
            f"reward {recipe.reward} | lr {recipe.learning_rate:g} | {recipe.held_out} held-out problems | device "
            f"{device} | run folder {shown(out)}")
        set_aside = set_aside_old_run(out, RL_RUN_FILES) if overwrite and world.is_main else None
        try:
            trainer.fit()
        finally:
            if set_aside is not None:
                settle_old_run(out, set_aside)
        report = {"task": task, "settings": settings, "profile": profile, "base": description, "reward": recipe.reward,
                  "held_out": recipe.held_out,
                  "before": measured(trainer.before["accuracy"], recipe.held_out),
                  "after": {**measured(trainer.best_accuracy, recipe.held_out), "checkpoint": "best.pt",
                            "step": trainer.best_step},
                  "steps": trainer.step, "rl_seconds": round(trainer.elapsed, 1),
                  "wall_seconds": round(time.perf_counter() - started, 1),  # this invocation's, base SFT included
                  "recipe": recipe.settings(), "device": str(device), "processes": world.size}
        if world.is_main:
            with atomic_write(out / "rl_eval.json") as f:
                f.write(json.dumps(report, indent=2).encode("utf-8"))
            gain = 100 * (report["after"]["accuracy"] - report["before"]["accuracy"])
            example = held_out[0].prompt
            say(f"held-out accuracy ({recipe.held_out} problems, greedy, 95% interval): "
                f"{describe(report['before'])} before -> {describe(report['after'])} after (best.pt, step "
                f"{trainer.best_step}): {gain:+.1f} points in {trainer.step} steps, {trainer.elapsed:.0f} s of RL\n"
                f"wall time {report['wall_seconds']:.0f} s; report in {shown(out / 'rl_eval.json')}, curves in "
                f"{shown(out / 'metrics.jsonl')}\n"
                f"next: python -m tinylm.sample --ckpt {shown(out)} --prompt '{example}' --temperature 0 "
                f"--max-new-tokens {max_new_tokens} --stop '\\n'   (or notebook 11 for the curves)")
        return report


def _silent(*args, **kwargs) -> None:
    pass

